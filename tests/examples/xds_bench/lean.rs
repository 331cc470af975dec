//! A lean Delta ADS client for many simulated proxies: it decodes only what it needs from a
//! response (type, nonce, names) and skips the resource bodies, then ACKs.

use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;

/// `DeltaDiscoveryResponse` without the resource bodies.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LeanResponse {
    /// system_version_info.
    #[prost(string, tag = "1")]
    pub version: String,
    /// type_url.
    #[prost(string, tag = "4")]
    pub type_url: String,
    /// nonce.
    #[prost(string, tag = "5")]
    pub nonce: String,
}

pub const TYPES: [&str; 4] = [
    "type.googleapis.com/envoy.config.cluster.v3.Cluster",
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
    "type.googleapis.com/envoy.config.listener.v3.Listener",
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
];

/// What a client reports, lock-free.
#[derive(Debug, Default)]
pub struct Progress {
    /// Responses ACKed per type.
    pub acked: [AtomicU64; 4],
    /// When the last RDS ACK was sent, µs since the benchmark's epoch.
    pub last_rds_us: AtomicU64,
    /// When every type had been ACKed once, µs since the epoch (0 = not yet).
    pub synced_us: AtomicU64,
}

/// Runs one client until the stream ends. A stream that fails before its first response is
/// retried with backoff, as a proxy would: 1,000 simultaneous connects can overflow the listen
/// backlog.
pub async fn run(
    addr: SocketAddr,
    id: usize,
    epoch: Instant,
    progress: Arc<Progress>,
) -> anyhow::Result<()> {
    let mut attempt = 0u64;
    loop {
        match stream(addr, id, epoch, &progress).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt >= 50 || progress.synced_us.load(Ordering::Acquire) > 0 => {
                return Err(e)
            }
            Err(_) => {
                attempt += 1;
                let jitter = (id as u64 * 7919) % 200;
                let wait = 50 * attempt.min(20) + jitter;
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
            }
        }
    }
}

async fn stream(
    addr: SocketAddr,
    id: usize,
    epoch: Instant,
    progress: &Progress,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(256 << 20);
    grpc.ready().await?;
    let (tx, rx) = mpsc::channel::<DeltaDiscoveryRequest>(8);
    let node = Node {
        id: format!("bench-{id}"),
        cluster: "ingress".into(),
        user_agent_name: "gw-bench".into(),
        ..Default::default()
    };
    for (i, t) in TYPES.iter().enumerate() {
        let names = match i {
            1 => vec!["*".to_owned()],
            3 => vec!["ingress".to_owned()],
            _ => Vec::new(),
        };
        tx.send(DeltaDiscoveryRequest {
            node: (i == 0).then(|| node.clone()),
            type_url: (*t).to_owned(),
            resource_names_subscribe: names,
            ..Default::default()
        })
        .await?;
    }
    let path = PathAndQuery::from_static(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources",
    );
    let codec = tonic_prost::ProstCodec::<DeltaDiscoveryRequest, LeanResponse>::default();
    let mut stream = grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
        .await?
        .into_inner();
    while let Some(resp) = stream.message().await? {
        tx.send(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce,
            ..Default::default()
        })
        .await?;
        let now = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(i) = TYPES.iter().position(|t| *t == resp.type_url) {
            if i == 3 {
                progress.last_rds_us.store(now, Ordering::Release);
            }
            progress.acked[i].fetch_add(1, Ordering::AcqRel);
        }
        if progress.synced_us.load(Ordering::Acquire) == 0
            && progress.acked.iter().all(|a| a.load(Ordering::Acquire) > 0)
        {
            progress.synced_us.store(now.max(1), Ordering::Release);
        }
    }
    Ok(())
}
