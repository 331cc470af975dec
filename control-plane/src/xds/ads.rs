//! The Aggregated Discovery Service: one task per stream, SotW or Delta.
//!
//! A stream task owns its [`Session`] and `select!`s on the client's next request, a new snapshot
//! (a `watch` channel: a slow client only ever sees the latest one), the make-before-break gate's
//! deadline and shutdown. Responses go through a small bounded channel, so a client that does
//! not read stalls only its own task.

use super::fleet::{Fleet, NodeInfo};
use super::session::{AckOutcome, Session};
use super::snapshot::{ResourceType, Snapshot};
use super::{delta, events::now_ms, sotw};
use futures::Stream;
use gw_proto::envoy::pb::envoy::config::core::v3::{node, Node};
use gw_proto::envoy::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use gw_proto::envoy::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Responses buffered per stream before the task waits for the client.
const STREAM_BUFFER: usize = 8;

/// The ADS gRPC service.
#[derive(Debug, Clone)]
pub struct AdsServer {
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    fleet: Fleet,
    shutdown: watch::Receiver<bool>,
    metrics: Option<crate::metrics::ControlPlaneMetrics>,
}

impl AdsServer {
    /// A server streaming `snapshots`, recording streams in `fleet`, ending streams on `shutdown`.
    pub fn new(
        snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
        fleet: Fleet,
        shutdown: watch::Receiver<bool>,
    ) -> AdsServer {
        AdsServer {
            snapshots,
            fleet,
            shutdown,
            metrics: None,
        }
    }

    /// Counts pushes, ACKs, NACKs and push-to-ACK latency in `metrics`.
    pub fn with_metrics(
        mut self,
        metrics: Option<crate::metrics::ControlPlaneMetrics>,
    ) -> AdsServer {
        self.metrics = metrics;
        self
    }

    /// As a tonic service (messages up to 64 MiB: a large fleet's CDS is big).
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<AdsServer> {
        AggregatedDiscoveryServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }

    fn spawn<P: Protocol>(
        &self,
        req: Request<Streaming<P::Req>>,
    ) -> Response<ReceiverStream<Result<P::Resp, Status>>> {
        let peer = req.remote_addr().map(|a| a.to_string()).unwrap_or_default();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let stream = Stream_ {
            incoming: req.into_inner(),
            tx,
            snapshots: self.snapshots.clone(),
            fleet: self.fleet.clone(),
            shutdown: self.shutdown.clone(),
            peer,
            metrics: self.metrics.clone(),
            sent_at: [None; 4],
        };
        tokio::spawn(stream.run::<P>());
        Response::new(ReceiverStream::new(rx))
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = BoxStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = BoxStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        req: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let r = self.spawn::<Sotw>(req);
        Ok(r.map(|s| Box::pin(s) as BoxStream<_>))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let r = self.spawn::<Delta>(req);
        Ok(r.map(|s| Box::pin(s) as BoxStream<_>))
    }
}

/// What differs between SotW and Delta.
trait Protocol: Send + 'static {
    type Req: prost::Message + Default + Send + 'static;
    type Resp: Send + 'static;
    const NAME: &'static str;
    fn node(req: &Self::Req) -> Option<&Node>;
    fn handle(
        s: &mut Session,
        req: &Self::Req,
        now_ms: i64,
    ) -> Result<(ResourceType, AckOutcome), String>;
    fn responses(s: &mut Session, snap: &Snapshot, now: Instant) -> Vec<Self::Resp>;
    fn type_url(resp: &Self::Resp) -> &str;
}

struct Sotw;
impl Protocol for Sotw {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    const NAME: &'static str = "sotw";
    fn type_url(resp: &DiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn node(req: &DiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn handle(
        s: &mut Session,
        r: &DiscoveryRequest,
        ms: i64,
    ) -> Result<(ResourceType, AckOutcome), String> {
        sotw::handle(s, r, ms)
    }
    fn responses(s: &mut Session, snap: &Snapshot, now: Instant) -> Vec<DiscoveryResponse> {
        sotw::responses(s, snap, now)
    }
}

struct Delta;
impl Protocol for Delta {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta";
    fn type_url(resp: &DeltaDiscoveryResponse) -> &str {
        &resp.type_url
    }
    fn node(req: &DeltaDiscoveryRequest) -> Option<&Node> {
        req.node.as_ref()
    }
    fn handle(
        s: &mut Session,
        r: &DeltaDiscoveryRequest,
        ms: i64,
    ) -> Result<(ResourceType, AckOutcome), String> {
        delta::handle(s, r, ms)
    }
    fn responses(s: &mut Session, snap: &Snapshot, now: Instant) -> Vec<DeltaDiscoveryResponse> {
        delta::responses(s, snap, now)
    }
}

/// One stream's task state.
struct Stream_<Req, Resp> {
    incoming: Streaming<Req>,
    tx: mpsc::Sender<Result<Resp, Status>>,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
    fleet: Fleet,
    shutdown: watch::Receiver<bool>,
    peer: String,
    metrics: Option<crate::metrics::ControlPlaneMetrics>,
    /// When the last response of each type was sent (push-to-ACK latency).
    sent_at: [Option<Instant>; 4],
}

impl<Req, Resp> Stream_<Req, Resp> {
    async fn run<P: Protocol<Req = Req, Resp = Resp>>(mut self)
    where
        Req: prost::Message + Default + Send + 'static,
        Resp: Send + 'static,
    {
        let first = match self.incoming.message().await {
            Ok(Some(r)) => r,
            _ => return,
        };
        let node = P::node(&first).cloned().unwrap_or_default();
        let handle = self.fleet.connect(node_info(&node, &self.peer), P::NAME);
        let mut session = Session::new(node.cluster.clone());
        // Serve nothing until the first snapshot exists: an empty one would wipe the proxy.
        let mut snap = {
            let ready = tokio::select! {
                r = self.snapshots.wait_for(Option::is_some) => r.ok().and_then(|s| s.clone()),
                _ = crate::server::stopped(&mut self.shutdown) => None,
            };
            match ready {
                Some(s) => s,
                None => return,
            }
        };
        self.snapshots.mark_unchanged();
        let mut next = Some(first);
        loop {
            if let Some(req) = next.take() {
                match P::handle(&mut session, &req, now_ms()) {
                    Ok((t, AckOutcome::Nack(nack))) => {
                        self.observe(t, false);
                        handle.nacked(t, &nack)
                    }
                    Ok((t, AckOutcome::Ack)) => self.observe(t, true),
                    Ok(_) => {}
                    Err(e) => {
                        let _ = self.tx.send(Err(Status::invalid_argument(e))).await;
                        return;
                    }
                }
            }
            for resp in P::responses(&mut session, &snap, Instant::now()) {
                let type_url = P::type_url(&resp).to_owned();
                if self.tx.send(Ok(resp)).await.is_err() {
                    return;
                }
                self.pushed(&type_url, P::NAME);
            }
            handle.update(&session);
            let deadline = session.gate_deadline().map(tokio::time::Instant::from_std);
            tokio::select! {
                r = self.incoming.message() => match r {
                    Ok(Some(r)) => next = Some(r),
                    Ok(None) => return,
                    Err(e) => {
                        tracing::debug!(error = %e, peer = %self.peer, "xds stream ended");
                        return;
                    }
                },
                changed = self.snapshots.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if let Some(s) = self.snapshots.borrow_and_update().clone() {
                        snap = s;
                    }
                }
                _ = sleep_until(deadline) => {}
                _ = crate::server::stopped(&mut self.shutdown) => return,
            }
        }
    }
}

impl<Req, Resp> Stream_<Req, Resp> {
    fn pushed(&mut self, type_url: &str, mode: &str) {
        if let Some(t) = ResourceType::from_type_url(type_url) {
            self.sent_at[t.index()] = Some(Instant::now());
        }
        if let Some(m) = &self.metrics {
            m.xds_pushes.with_label_values(&[type_url, mode]).inc();
        }
    }

    fn observe(&mut self, t: ResourceType, ack: bool) {
        let Some(m) = &self.metrics else { return };
        let url = t.type_url();
        if ack {
            m.xds_acks.with_label_values(&[url]).inc();
            if let Some(at) = self.sent_at[t.index()].take() {
                m.xds_push_to_ack
                    .with_label_values(&[url])
                    .observe(at.elapsed().as_secs_f64());
            }
        } else {
            m.xds_nacks.with_label_values(&[url]).inc();
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn node_info(node: &Node, peer: &str) -> NodeInfo {
    let version = match &node.user_agent_version_type {
        Some(node::UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
        Some(node::UserAgentVersionType::UserAgentBuildVersion(b)) => b
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
            .unwrap_or_default(),
        None => String::new(),
    };
    NodeInfo {
        id: node.id.clone(),
        cluster: node.cluster.clone(),
        address: peer.to_owned(),
        user_agent: format!("{} {version}", node.user_agent_name)
            .trim()
            .to_owned(),
    }
}
