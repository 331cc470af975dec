//! The ADS client: one stream to the control plane, Delta by default (SotW by flag).
//!
//! The protocols are I/O-free state machines ([`delta::DeltaClient`], [`sotw::SotwClient`]):
//! each response is applied to a copy of the held resources and compiled; success swaps the
//! runtime config and ACKs, failure NACKs with the compile error as `error_detail` and keeps
//! serving the previous config. When the stream fails the proxy keeps its last-known-good
//! config and reconnects with jittered exponential backoff ([`backoff`]); with a config cache
//! ([`cache`]) every accepted config is written to disk, so a proxy can start while the control
//! plane is down.

pub mod backoff;
pub mod cache;
pub mod delta;
pub mod sotw;

use crate::config::{type_url, Resources};
use crate::server::Shared;
use gw_proto::envoy::pb::envoy::config::cluster::v3::Cluster;
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use gw_proto::envoy::pb::envoy::config::listener::v3::Listener;
use gw_proto::envoy::pb::envoy::config::route::v3::RouteConfiguration;
use gw_proto::envoy::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use gw_proto::envoy::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// Which ADS variant to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Incremental xDS.
    Delta,
    /// State of the world.
    Sotw,
}

/// Why a response or the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    /// A resource does not decode as its type.
    #[error("{type_url}: cannot decode: {source}")]
    Decode {
        /// Its type.
        type_url: String,
        /// Why.
        source: prost::DecodeError,
    },
    /// A resource of another type than the response's.
    #[error("resource {name:?} has type {got}, expected {want}")]
    WrongType {
        /// Its name, if given.
        name: String,
        /// Its type.
        got: String,
        /// The response's type.
        want: String,
    },
    /// A type gw-proxy does not subscribe to.
    #[error("unsupported resource type {0}")]
    UnsupportedType(String),
    /// The stream could not be opened.
    #[error("opening the ADS stream: {0}")]
    Open(tonic::Status),
    /// The stream broke.
    #[error("ADS stream: {0}")]
    Stream(tonic::Status),
    /// Our side of the stream is gone.
    #[error("ADS request channel closed")]
    Closed,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct XdsOptions {
    /// Delta or SotW.
    pub mode: Mode,
    /// Our identity.
    pub node: Node,
    /// Where accepted configs are cached, if anywhere.
    pub cache_dir: Option<PathBuf>,
}

/// Name of an encoded resource of `type_url`.
pub fn resource_name(type_url: &str, body: &[u8]) -> Result<String, XdsError> {
    let err = |source| XdsError::Decode {
        type_url: type_url.to_owned(),
        source,
    };
    Ok(match type_url {
        type_url::CLUSTER => Cluster::decode(body).map_err(err)?.name,
        type_url::ENDPOINT => {
            ClusterLoadAssignment::decode(body)
                .map_err(err)?
                .cluster_name
        }
        type_url::LISTENER => Listener::decode(body).map_err(err)?.name,
        type_url::ROUTE => RouteConfiguration::decode(body).map_err(err)?.name,
        other => return Err(XdsError::UnsupportedType(other.to_owned())),
    })
}

/// The `error_detail` of a NACK.
pub fn nack(msg: String) -> RpcStatus {
    RpcStatus {
        code: tonic::Code::InvalidArgument as i32,
        message: msg,
        details: Vec::new(),
    }
}

/// Compiles `candidate`; on success it is served (and cached).
fn accept(shared: &Shared, opts: &XdsOptions, candidate: &Resources) -> Result<(), String> {
    shared.apply(candidate.clone()).map_err(|e| e.to_string())?;
    if let Some(dir) = &opts.cache_dir {
        if let Err(e) = cache::save(dir, candidate) {
            tracing::warn!(error = %e, "writing config cache");
        }
    }
    Ok(())
}

/// Runs the client until `stop`: connect, sync, and on failure back off and reconnect.
pub async fn run(
    shared: Arc<Shared>,
    channel: Channel,
    opts: XdsOptions,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = backoff::Backoff::default();
    loop {
        let mut progressed = false;
        let result = tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            r = session(&shared, channel.clone(), &opts, &mut progressed) => r,
        };
        shared.xds.connected.store(false, Ordering::Relaxed);
        if progressed {
            backoff.reset();
        }
        match result {
            Ok(()) => tracing::info!("xDS stream closed by the control plane; reconnecting"),
            Err(e) => {
                tracing::warn!(error = %e, "xDS stream failed; serving last-known-good config")
            }
        }
        let wait = backoff.next(rand::random::<f64>());
        shared.xds.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn session(
    shared: &Shared,
    channel: Channel,
    opts: &XdsOptions,
    progressed: &mut bool,
) -> Result<(), XdsError> {
    let held = shared.config.load().resources.clone();
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let mut accept = |c: &Resources| accept(shared, opts, c);
    match opts.mode {
        Mode::Delta => {
            let mut sm = delta::DeltaClient::new(opts.node.clone(), held);
            let (tx, rx) = mpsc::channel(16);
            for r in sm.start() {
                tx.send(r).await.map_err(|_| XdsError::Closed)?;
            }
            let mut stream = client
                .delta_aggregated_resources(ReceiverStream::new(rx))
                .await
                .map_err(XdsError::Open)?
                .into_inner();
            shared.xds.connected.store(true, Ordering::Relaxed);
            while let Some(resp) = stream.message().await.map_err(XdsError::Stream)? {
                let step = sm.on_response(&resp, &mut accept);
                shared.xds.count(step.accepted);
                if step.accepted {
                    *progressed = true;
                    shared
                        .xds
                        .set_version(&resp.type_url, &resp.system_version_info);
                }
                for r in step.requests {
                    tx.send(r).await.map_err(|_| XdsError::Closed)?;
                }
            }
        }
        Mode::Sotw => {
            let mut sm = sotw::SotwClient::new(opts.node.clone(), held);
            let (tx, rx) = mpsc::channel(16);
            for r in sm.start() {
                tx.send(r).await.map_err(|_| XdsError::Closed)?;
            }
            let mut stream = client
                .stream_aggregated_resources(ReceiverStream::new(rx))
                .await
                .map_err(XdsError::Open)?
                .into_inner();
            shared.xds.connected.store(true, Ordering::Relaxed);
            while let Some(resp) = stream.message().await.map_err(XdsError::Stream)? {
                let step = sm.on_response(&resp, &mut accept);
                shared.xds.count(step.accepted);
                if step.accepted {
                    *progressed = true;
                    shared.xds.set_version(&resp.type_url, &resp.version_info);
                }
                for r in step.requests {
                    tx.send(r).await.map_err(|_| XdsError::Closed)?;
                }
            }
        }
    }
    Ok(())
}
