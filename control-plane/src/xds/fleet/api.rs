//! `gateway.v1.Fleet`: the proxies connected over xDS and their sync status.

use super::{Fleet, ProxyRecord, SyncStatus};
use crate::xds::session::Nack;
use crate::xds::snapshot::ResourceType;
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::fleet_server::{Fleet as FleetService, FleetServer};
use tonic::{Request, Response, Status};

/// The Fleet gRPC service.
#[derive(Debug, Clone)]
pub struct FleetApi {
    fleet: Fleet,
}

impl FleetApi {
    /// A service over `fleet`.
    pub fn new(fleet: Fleet) -> FleetApi {
        FleetApi { fleet }
    }

    /// As a tonic service.
    pub fn into_service(self) -> FleetServer<FleetApi> {
        FleetServer::new(self)
    }
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    async fn list_proxies(
        &self,
        req: Request<pb::ListProxiesRequest>,
    ) -> Result<Response<pb::ListProxiesResponse>, Status> {
        // Proxies serve every tenant: fleet-wide.
        crate::auth::authorize(&req, crate::auth::Access::Read, None)?;
        let req = req.into_inner();
        let current = self.fleet.current_revision();
        let proxies = self
            .fleet
            .list()
            .iter()
            .filter(|r| req.include_disconnected || r.disconnected_at_ms.is_none())
            .filter(|r| req.node_cluster.is_empty() || r.node_cluster == req.node_cluster)
            .map(|r| proxy(r, current))
            .collect();
        Ok(Response::new(pb::ListProxiesResponse {
            proxies,
            current_revision: current,
        }))
    }

    async fn get_proxy(
        &self,
        req: Request<pb::GetProxyRequest>,
    ) -> Result<Response<pb::Proxy>, Status> {
        crate::auth::authorize(&req, crate::auth::Access::Read, None)?;
        let id = req.into_inner().node_id;
        let current = self.fleet.current_revision();
        self.fleet
            .get(&id)
            .map(|r| Response::new(proxy(&r, current)))
            .ok_or_else(|| Status::not_found(format!("no proxy with node id {id:?}")))
    }
}

/// The protobuf form of a record.
pub fn proxy(r: &ProxyRecord, current: u64) -> pb::Proxy {
    let status = match r.status(current) {
        SyncStatus::Synced => pb::SyncStatus::Synced,
        SyncStatus::Stale => pb::SyncStatus::Stale,
        SyncStatus::Nacked => pb::SyncStatus::Nacked,
        SyncStatus::Disconnected => pb::SyncStatus::Disconnected,
    };
    pb::Proxy {
        node_id: r.node_id.clone(),
        node_cluster: r.node_cluster.clone(),
        address: r.address.clone(),
        connected_since: Some(timestamp(r.connected_at_ms)),
        status: status as i32,
        protocol: r.protocol.to_owned(),
        types: ResourceType::ORDER
            .into_iter()
            .filter(|t| r.types[t.index()].requested)
            .map(|t| {
                let p = &r.types[t.index()];
                pb::XdsTypeStatus {
                    r#type: t.short().to_owned(),
                    type_url: t.type_url().to_owned(),
                    sent_version: p.sent_version.clone(),
                    acked_version: p.acked_version.clone(),
                    resources: u32::try_from(p.resources).unwrap_or(u32::MAX),
                    nack: p.nack.as_ref().map(|n| nack(t, n)),
                }
            })
            .collect(),
        last_nack: r.last_nack().map(|(t, n)| nack(t, n)),
        synced_revision: r.synced_revision,
        current_revision: current,
        disconnected_at: r.disconnected_at_ms.map(timestamp),
        user_agent: r.user_agent.clone(),
        stream_id: r.stream_id,
    }
}

fn nack(t: ResourceType, n: &Nack) -> pb::XdsNack {
    pb::XdsNack {
        r#type: t.short().to_owned(),
        version: n.version.clone(),
        error_detail: n.error.clone(),
        objects: n.objects.clone(),
        at: Some(timestamp(n.at_ms)),
    }
}

fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    }
}
