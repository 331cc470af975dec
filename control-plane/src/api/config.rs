//! The `Config` service: batch apply and delete, each one transaction.

use super::store_status;
use crate::auth::{check, confine, object_scope, principal, Access};
use crate::store::{ApplyOutcome, Store};
use gw_proto::convert::{object_from_pb, object_kind};
use gw_proto::gateway::v1 as pb;
use gw_proto::manifest::describe;
use gw_proto::model::{validate_name, Kind, ObjectKey};
use tonic::{Request, Response, Status};

/// Batch operations over every kind.
#[derive(Clone, Debug)]
pub struct ConfigApi {
    store: Store,
    /// The token table, reloaded after a tenant is deleted (its tokens go with it).
    tokens: Option<crate::auth::Tokens>,
}

impl ConfigApi {
    /// Serves `store`.
    pub fn new(store: Store) -> Self {
        ConfigApi {
            store,
            tokens: None,
        }
    }

    /// With auth on: the token table to reload when a delete takes tokens with it.
    pub fn with_tokens(mut self, tokens: Option<crate::auth::Tokens>) -> Self {
        self.tokens = tokens;
        self
    }

    /// The tonic service.
    pub fn into_service(self) -> pb::config_server::ConfigServer<Self> {
        pb::config_server::ConfigServer::new(self).max_decoding_message_size(64 << 20)
    }
}

fn outcome_pb(o: ApplyOutcome) -> pb::ApplyOutcome {
    match o {
        ApplyOutcome::Created => pb::ApplyOutcome::Created,
        ApplyOutcome::Configured => pb::ApplyOutcome::Configured,
        ApplyOutcome::Unchanged => pb::ApplyOutcome::Unchanged,
    }
}

#[tonic::async_trait]
impl pb::config_server::Config for ConfigApi {
    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let who = principal(&req).cloned();
        let req = req.into_inner();
        let mut objects = Vec::with_capacity(req.objects.len());
        for (i, o) in req.objects.iter().enumerate() {
            let obj = object_from_pb(o).map_err(|e| {
                let what = object_kind(o).map(|k| {
                    let meta = gw_proto::convert::object_to_pb_meta(o);
                    describe(k, &meta)
                });
                Status::invalid_argument(match what {
                    Some(w) => format!("{w}: {e}"),
                    None => format!("objects[{i}]: {e}"),
                })
            })?;
            // A manifest may carry its Tenant document: re-applying an existing tenant is its
            // own business; creating one is fleet-wide.
            let creates_tenant = obj.spec.kind() == Kind::Tenant
                && who.is_some()
                && self
                    .store
                    .get(&obj.key())
                    .await
                    .map_err(store_status)?
                    .is_none();
            let scope = object_scope(
                obj.spec.kind(),
                &obj.meta.tenant,
                &obj.meta.name,
                creates_tenant,
            );
            check(who.as_ref(), Access::Write, scope.as_deref())?;
            confine(who.as_ref(), &obj)?;
            objects.push(obj);
        }
        let report = self
            .store
            .apply(objects, req.dry_run)
            .await
            .map_err(store_status)?;
        let results = report
            .results
            .into_iter()
            .map(|(k, o, rv)| pb::ApplyResult {
                kind: k.kind.as_str().into(),
                tenant: k.tenant,
                name: k.name,
                outcome: outcome_pb(o) as i32,
                resource_version: rv,
            })
            .collect();
        Ok(Response::new(pb::ApplyResponse {
            results,
            revision: report.revision,
        }))
    }

    async fn delete_objects(
        &self,
        req: Request<pb::DeleteObjectsRequest>,
    ) -> Result<Response<pb::DeleteObjectsResponse>, Status> {
        let who = principal(&req).cloned();
        let req = req.into_inner();
        let mut keys = Vec::with_capacity(req.objects.len());
        for (i, r) in req.objects.into_iter().enumerate() {
            let kind = Kind::parse(&r.kind).ok_or_else(|| {
                Status::invalid_argument(format!("objects[{i}].kind: {:?} is not a kind", r.kind))
            })?;
            validate_name(&format!("objects[{i}].name"), &r.name)
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
            let scope = object_scope(kind, &r.tenant, &r.name, true);
            check(who.as_ref(), Access::Write, scope.as_deref())?;
            keys.push(ObjectKey {
                kind,
                tenant: r.tenant,
                name: r.name,
            });
        }
        let (deleted, revision) = self
            .store
            .delete_many(&keys, req.ignore_missing)
            .await
            .map_err(store_status)?;
        if keys.iter().any(|k| k.kind == Kind::Tenant) {
            crate::auth::reload(self.tokens.as_ref()).await;
        }
        Ok(Response::new(pb::DeleteObjectsResponse {
            deleted,
            revision,
        }))
    }

    async fn get_revision(
        &self,
        _req: Request<pb::GetRevisionRequest>,
    ) -> Result<Response<pb::GetRevisionResponse>, Status> {
        let revision = self.store.revision().await.map_err(store_status)?;
        Ok(Response::new(pb::GetRevisionResponse { revision }))
    }
}
