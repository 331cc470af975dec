//! The `Endpoints` service: the registry (register / deregister / heartbeat / discover).

use super::store_status;
use crate::auth::{authorize, Access};
use crate::store::Store;
use gw_proto::convert::{duration_from_pb, endpoint_to_pb, ts_to_pb};
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{validate_name, Endpoint, EndpointKey, EndpointSource};
use tonic::{Request, Response, Status};

/// The service registry.
#[derive(Clone, Debug)]
pub struct EndpointsApi {
    store: Store,
}

impl EndpointsApi {
    /// Serves `store`.
    pub fn new(store: Store) -> Self {
        EndpointsApi { store }
    }

    /// The tonic service.
    pub fn into_service(self) -> pb::endpoints_server::EndpointsServer<Self> {
        pb::endpoints_server::EndpointsServer::new(self)
    }
}

fn key(k: pb::EndpointKey) -> EndpointKey {
    EndpointKey {
        tenant: k.tenant,
        cluster: k.cluster,
        address: k.address,
        port: k.port,
    }
}

fn invalid(e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(e.to_string())
}

#[tonic::async_trait]
impl pb::endpoints_server::Endpoints for EndpointsApi {
    async fn register(
        &self,
        req: Request<pb::RegisterEndpointRequest>,
    ) -> Result<Response<pb::RegisterEndpointResponse>, Status> {
        authorize(&req, Access::Write, Some(&req.get_ref().tenant))?;
        let r = req.into_inner();
        let ttl = duration_from_pb("ttl", r.ttl.as_ref())
            .map_err(invalid)?
            .filter(|d| !d.is_zero());
        let ep = Endpoint {
            key: EndpointKey {
                tenant: r.tenant,
                cluster: r.cluster,
                address: r.address,
                port: r.port,
            },
            weight: if r.weight == 0 { 1 } else { r.weight },
            metadata: r.metadata.into_iter().collect(),
            source: EndpointSource::Registry,
            ttl,
            expires_at_ms: None,
            registered_at_ms: 0,
            resource_version: 0,
            healthy: true,
        };
        let (ep, created, revision) = self
            .store
            .register_endpoint(ep)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::RegisterEndpointResponse {
            result: Some(pb::WriteResult {
                revision,
                resource_version: ep.resource_version,
            }),
            endpoint: Some(endpoint_to_pb(&ep)),
            created,
        }))
    }

    async fn deregister(
        &self,
        req: Request<pb::EndpointKey>,
    ) -> Result<Response<pb::DeregisterEndpointResponse>, Status> {
        authorize(&req, Access::Write, Some(&req.get_ref().tenant))?;
        let revision = self
            .store
            .deregister_endpoint(&key(req.into_inner()))
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::DeregisterEndpointResponse { revision }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::EndpointKey>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        authorize(&req, Access::Write, Some(&req.get_ref().tenant))?;
        let expires = self
            .store
            .heartbeat(&key(req.into_inner()))
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::HeartbeatResponse {
            expires_at: expires.and_then(ts_to_pb),
        }))
    }

    async fn discover(
        &self,
        req: Request<pb::DiscoverRequest>,
    ) -> Result<Response<pb::DiscoverResponse>, Status> {
        authorize(&req, Access::Read, Some(&req.get_ref().tenant))?;
        let r = req.into_inner();
        validate_name("tenant", &r.tenant).map_err(invalid)?;
        let cluster = (!r.cluster.is_empty()).then_some(r.cluster.as_str());
        if let Some(c) = cluster {
            validate_name("cluster", c).map_err(invalid)?;
        }
        let page = r.page.unwrap_or_default();
        let p = self
            .store
            .discover(&r.tenant, cluster, page.page_size, &page.page_token)
            .await
            .map_err(store_status)?;
        Ok(Response::new(pb::DiscoverResponse {
            endpoints: p.items.iter().map(endpoint_to_pb).collect(),
            next_page_token: p.next_page_token.unwrap_or_default(),
            revision: p.revision,
        }))
    }
}
