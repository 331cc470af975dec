//! A lean scripted ADS client (SotW or Delta) for tests and the benchmark: sends exactly the
//! requests a test writes, hands back every response.

use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use gw_proto::envoy::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use gw_proto::envoy::pb::google::rpc::Status;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

/// Type URLs.
pub mod types {
    /// CDS.
    pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
    /// EDS.
    pub const ENDPOINTS: &str =
        "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
    /// LDS.
    pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
    /// RDS.
    pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
}

/// The node a client presents.
pub fn node(id: &str, cluster: &str) -> Node {
    Node {
        id: id.to_owned(),
        cluster: cluster.to_owned(),
        user_agent_name: "gw-e2e".into(),
        ..Default::default()
    }
}

/// An `error_detail` for a NACK.
pub fn error(message: &str) -> Option<Status> {
    Some(Status {
        code: 3,
        message: message.to_owned(),
        details: Vec::new(),
    })
}

async fn channel(
    addr: SocketAddr,
) -> anyhow::Result<AggregatedDiscoveryServiceClient<tonic::transport::Channel>> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    Ok(AggregatedDiscoveryServiceClient::new(ch)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20))
}

/// A Delta ADS stream.
#[derive(Debug)]
pub struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl DeltaClient {
    /// Opens a stream; `first` is sent at once (the server answers nothing before a request).
    pub async fn connect(
        addr: SocketAddr,
        first: DeltaDiscoveryRequest,
    ) -> anyhow::Result<DeltaClient> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await?;
        let rx = channel(addr)
            .await?
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(DeltaClient { tx, rx })
    }

    /// Sends a request.
    pub async fn send(&self, req: DeltaDiscoveryRequest) -> anyhow::Result<()> {
        Ok(self.tx.send(req).await?)
    }

    /// The next response, within `limit`.
    pub async fn recv(&mut self, limit: Duration) -> anyhow::Result<DeltaDiscoveryResponse> {
        match tokio::time::timeout(limit, self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => anyhow::bail!("stream ended"),
            Ok(Err(e)) => anyhow::bail!("stream failed: {e}"),
            Err(_) => anyhow::bail!("no response within {limit:?}"),
        }
    }

    /// ACKs `resp`.
    pub async fn ack(&self, resp: &DeltaDiscoveryResponse) -> anyhow::Result<()> {
        self.send(DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        })
        .await
    }
}

/// A wildcard subscription request for `type_url`.
pub fn delta_subscribe(
    node: Option<Node>,
    type_url: &str,
    names: &[&str],
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node,
        type_url: type_url.to_owned(),
        resource_names_subscribe: names.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// A SotW ADS stream.
#[derive(Debug)]
pub struct SotwClient {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl SotwClient {
    /// Opens a stream; `first` is sent at once.
    pub async fn connect(addr: SocketAddr, first: DiscoveryRequest) -> anyhow::Result<SotwClient> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(first).await?;
        let rx = channel(addr)
            .await?
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(SotwClient { tx, rx })
    }

    /// Sends a request.
    pub async fn send(&self, req: DiscoveryRequest) -> anyhow::Result<()> {
        Ok(self.tx.send(req).await?)
    }

    /// The next response, within `limit`.
    pub async fn recv(&mut self, limit: Duration) -> anyhow::Result<DiscoveryResponse> {
        match tokio::time::timeout(limit, self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => anyhow::bail!("stream ended"),
            Ok(Err(e)) => anyhow::bail!("stream failed: {e}"),
            Err(_) => anyhow::bail!("no response within {limit:?}"),
        }
    }

    /// ACKs (`error` = `None`) or NACKs `resp`, keeping the subscription `names`.
    pub async fn answer(
        &self,
        resp: &DiscoveryResponse,
        names: &[&str],
        acked_version: &str,
        error: Option<Status>,
    ) -> anyhow::Result<()> {
        self.send(DiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            version_info: acked_version.to_owned(),
            resource_names: names.iter().map(|s| (*s).to_owned()).collect(),
            error_detail: error,
            ..Default::default()
        })
        .await
    }
}

/// A SotW subscription request.
pub fn sotw_subscribe(node: Option<Node>, type_url: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        node,
        type_url: type_url.to_owned(),
        resource_names: names.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}
