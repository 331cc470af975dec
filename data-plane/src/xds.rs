//! The ADS client: one stream to the control plane, Delta by default (SotW by flag).
//!
//! Each response is applied to a copy of the held resources and compiled; success swaps the
//! runtime config and ACKs, failure NACKs with the compile error as `error_detail` and keeps
//! serving the previous config. When the stream fails the proxy keeps its last-known-good
//! config and reconnects with jittered exponential backoff; with a config cache it also writes
//! every accepted config to disk and can start from it while the control plane is down.

pub mod cache;

use crate::config::{self, type_url, Raw, Resources};
use crate::server::Shared;
use gw_proto::envoy::pb::envoy::config::cluster::v3::Cluster;
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use gw_proto::envoy::pb::envoy::config::listener::v3::Listener;
use gw_proto::envoy::pb::envoy::config::route::v3::RouteConfiguration;
use gw_proto::envoy::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use gw_proto::envoy::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use gw_proto::envoy::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// Which ADS variant to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Incremental xDS.
    Delta,
    /// State of the world.
    Sotw,
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
pub fn resource_name(type_url: &str, body: &[u8]) -> Result<String, String> {
    let err = |e: prost::DecodeError| format!("{type_url}: cannot decode: {e}");
    Ok(match type_url {
        type_url::CLUSTER => Cluster::decode(body).map_err(err)?.name,
        type_url::ENDPOINT => {
            ClusterLoadAssignment::decode(body)
                .map_err(err)?
                .cluster_name
        }
        type_url::LISTENER => Listener::decode(body).map_err(err)?.name,
        type_url::ROUTE => RouteConfiguration::decode(body).map_err(err)?.name,
        other => return Err(format!("unsupported resource type {other}")),
    })
}

/// Tries `candidate`: on success it becomes the served config (and is cached).
fn accept(shared: &Shared, opts: &XdsOptions, candidate: Resources) -> Result<(), String> {
    let rt = config::compile(&candidate, &shared.registries)?;
    shared.config.store(Arc::new(rt));
    if let Some(dir) = &opts.cache_dir {
        if let Err(e) = cache::save(dir, &candidate) {
            tracing::warn!(error = %e, "writing config cache");
        }
    }
    Ok(())
}

fn nack(msg: String) -> Option<RpcStatus> {
    Some(RpcStatus {
        code: tonic::Code::InvalidArgument as i32,
        message: msg,
        details: Vec::new(),
    })
}

/// Runs the client until `stop`: connect, sync, and on failure back off and reconnect.
pub async fn run(
    shared: Arc<Shared>,
    channel: Channel,
    opts: XdsOptions,
    mut stop: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            r = session(&shared, channel.clone(), &opts) => r,
        };
        shared.xds.connected.store(false, Ordering::Relaxed);
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, attempt = failures, "xDS stream failed; serving last-known-good config");
            }
        }
        // Exponential backoff with full jitter: 100 ms · 2^n, at most 10 s.
        let cap = Duration::from_millis(100)
            .saturating_mul(1 << failures.min(7))
            .min(Duration::from_secs(10));
        let wait = cap.mul_f64(0.5 + rand::random::<f64>() * 0.5);
        shared.xds.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn session(shared: &Shared, channel: Channel, opts: &XdsOptions) -> Result<(), String> {
    match opts.mode {
        Mode::Delta => delta(shared, channel, opts).await,
        Mode::Sotw => sotw(shared, channel, opts).await,
    }
}

async fn delta(shared: &Shared, channel: Channel, opts: &XdsOptions) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(16);
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let held = shared.config.load().resources.clone();
    let versions = |t: &str| -> HashMap<String, String> {
        held.of(t)
            .map(|(n, r)| (n.clone(), r.version.clone()))
            .collect()
    };
    // Wildcard CDS and LDS first; EDS and RDS follow by name as clusters and listeners arrive.
    let mut subscribed: HashMap<&'static str, Vec<String>> = HashMap::new();
    let first = |t: &'static str, names: Vec<String>| DeltaDiscoveryRequest {
        node: Some(opts.node.clone()),
        type_url: t.into(),
        resource_names_subscribe: names,
        initial_resource_versions: versions(t),
        ..Default::default()
    };
    let eds = config::eds_names(&held);
    let rds = config::rds_names(&held);
    let mut initial = vec![
        first(type_url::CLUSTER, Vec::new()),
        first(type_url::LISTENER, Vec::new()),
    ];
    if !eds.is_empty() {
        initial.push(first(type_url::ENDPOINT, eds.clone()));
    }
    if !rds.is_empty() {
        initial.push(first(type_url::ROUTE, rds.clone()));
    }
    subscribed.insert(type_url::ENDPOINT, eds);
    subscribed.insert(type_url::ROUTE, rds);
    for r in initial {
        tx.send(r).await.map_err(|e| e.to_string())?;
    }
    let mut stream = client
        .delta_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("opening delta ADS stream: {e}"))?
        .into_inner();
    shared.xds.connected.store(true, Ordering::Relaxed);
    while let Some(resp) = stream.message().await.map_err(|e| e.to_string())? {
        let ack = apply_delta(shared, opts, &resp);
        let accepted = ack.is_ok();
        shared.xds.count(accepted);
        tx.send(DeltaDiscoveryRequest {
            node: None,
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            error_detail: ack.err().and_then(nack),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        if accepted {
            let res = shared.config.load().resources.clone();
            for (t, names) in [
                (type_url::ENDPOINT, config::eds_names(&res)),
                (type_url::ROUTE, config::rds_names(&res)),
            ] {
                let old = subscribed.get(t).cloned().unwrap_or_default();
                if old == names {
                    continue;
                }
                let add: Vec<String> = names.iter().filter(|n| !old.contains(n)).cloned().collect();
                let remove: Vec<String> =
                    old.iter().filter(|n| !names.contains(n)).cloned().collect();
                subscribed.insert(t, names);
                tx.send(DeltaDiscoveryRequest {
                    node: None,
                    type_url: t.into(),
                    resource_names_subscribe: add,
                    resource_names_unsubscribe: remove,
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

fn apply_delta(
    shared: &Shared,
    opts: &XdsOptions,
    resp: &DeltaDiscoveryResponse,
) -> Result<(), String> {
    let mut candidate = shared.config.load().resources.clone();
    let map = candidate.by_type.entry(resp.type_url.clone()).or_default();
    for r in &resp.resources {
        let Some(any) = &r.resource else { continue };
        if any.type_url != resp.type_url {
            return Err(format!(
                "resource {} has type {}, expected {}",
                r.name, any.type_url, resp.type_url
            ));
        }
        let name = if r.name.is_empty() {
            resource_name(&resp.type_url, &any.value)?
        } else {
            r.name.clone()
        };
        map.insert(
            name,
            Raw {
                version: r.version.clone(),
                body: any.value.clone().into(),
            },
        );
    }
    for name in &resp.removed_resources {
        map.remove(name);
    }
    accept(shared, opts, candidate)?;
    shared
        .xds
        .set_version(&resp.type_url, &resp.system_version_info);
    Ok(())
}

async fn sotw(shared: &Shared, channel: Channel, opts: &XdsOptions) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<DiscoveryRequest>(16);
    let mut client =
        AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(256 << 20);
    let mut accepted_version: BTreeMap<String, String> = BTreeMap::new();
    let mut names: HashMap<&'static str, Vec<String>> = HashMap::new();
    let req =
        |t: &str, version: String, names: Vec<String>, nonce: String, err: Option<RpcStatus>| {
            DiscoveryRequest {
                version_info: version,
                node: Some(opts.node.clone()),
                resource_names: names,
                type_url: t.into(),
                response_nonce: nonce,
                error_detail: err,
                ..Default::default()
            }
        };
    for t in [type_url::CLUSTER, type_url::LISTENER] {
        tx.send(req(t, String::new(), Vec::new(), String::new(), None))
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut stream = client
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|e| format!("opening ADS stream: {e}"))?
        .into_inner();
    shared.xds.connected.store(true, Ordering::Relaxed);
    while let Some(resp) = stream.message().await.map_err(|e| e.to_string())? {
        let result = apply_sotw(shared, opts, &resp);
        shared.xds.count(result.is_ok());
        let t = resp.type_url.as_str();
        let subscribed = match t {
            type_url::ENDPOINT => names.get(type_url::ENDPOINT).cloned().unwrap_or_default(),
            type_url::ROUTE => names.get(type_url::ROUTE).cloned().unwrap_or_default(),
            _ => Vec::new(),
        };
        match result {
            Ok(()) => {
                accepted_version.insert(resp.type_url.clone(), resp.version_info.clone());
                tx.send(req(
                    t,
                    resp.version_info.clone(),
                    subscribed,
                    resp.nonce.clone(),
                    None,
                ))
                .await
                .map_err(|e| e.to_string())?;
                let res = shared.config.load().resources.clone();
                for (kind, want) in [
                    (type_url::ENDPOINT, config::eds_names(&res)),
                    (type_url::ROUTE, config::rds_names(&res)),
                ] {
                    if names.get(kind) != Some(&want) {
                        names.insert(kind, want.clone());
                        let version = accepted_version.get(kind).cloned().unwrap_or_default();
                        tx.send(req(kind, version, want, String::new(), None))
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                }
            }
            Err(msg) => {
                let version = accepted_version.get(t).cloned().unwrap_or_default();
                tx.send(req(t, version, subscribed, resp.nonce.clone(), nack(msg)))
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

fn apply_sotw(shared: &Shared, opts: &XdsOptions, resp: &DiscoveryResponse) -> Result<(), String> {
    let mut candidate = shared.config.load().resources.clone();
    let mut fresh = BTreeMap::new();
    for any in &resp.resources {
        if any.type_url != resp.type_url {
            return Err(format!(
                "a resource has type {}, expected {}",
                any.type_url, resp.type_url
            ));
        }
        let name = resource_name(&resp.type_url, &any.value)?;
        fresh.insert(
            name,
            Raw {
                version: resp.version_info.clone(),
                body: any.value.clone().into(),
            },
        );
    }
    candidate.by_type.insert(resp.type_url.clone(), fresh);
    accept(shared, opts, candidate)?;
    shared.xds.set_version(&resp.type_url, &resp.version_info);
    Ok(())
}
