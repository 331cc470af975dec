//! Tenants, Listeners, Clusters and Routes services: create / update / get / list / delete.

use super::store_status;
use crate::auth::{
    check, confine, list_scope, object_scope, reload, Access, Principal, Role, Tokens,
};
use crate::store::Store;
use gw_proto::convert::{self, object_to_pb};
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{FieldError, Kind, Object, ObjectKey};
use tonic::{Request, Response, Status};

fn invalid(e: FieldError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn key(kind: Kind, tenant: String, name: String) -> Result<ObjectKey, Status> {
    gw_proto::model::validate_name("name", &name).map_err(invalid)?;
    if kind.is_tenant_scoped() {
        gw_proto::model::validate_name("tenant", &tenant).map_err(invalid)?;
    }
    Ok(ObjectKey { kind, tenant, name })
}

/// What the four object services share.
#[derive(Clone, Debug)]
struct Objects {
    store: Store,
    kind: Kind,
    /// The token table, reloaded after a tenant is deleted (its tokens go with it).
    tokens: Option<Tokens>,
}

impl Objects {
    async fn create(
        &self,
        who: Option<&Principal>,
        o: Result<Object, FieldError>,
    ) -> Result<(pb::Object, pb::WriteResult), Status> {
        self.write(who, o, true).await
    }

    async fn update(
        &self,
        who: Option<&Principal>,
        o: Result<Object, FieldError>,
    ) -> Result<(pb::Object, pb::WriteResult), Status> {
        self.write(who, o, false).await
    }

    async fn write(
        &self,
        who: Option<&Principal>,
        o: Result<Object, FieldError>,
        create: bool,
    ) -> Result<(pb::Object, pb::WriteResult), Status> {
        let o = o.map_err(invalid)?;
        let scope = object_scope(o.spec.kind(), &o.meta.tenant, &o.meta.name, create);
        check(who, Access::Write, scope.as_deref())?;
        confine(who, &o)?;
        let written = if create {
            self.store.create(o).await
        } else {
            self.store.update(o).await
        };
        let (o, revision) = written.map_err(store_status)?;
        let result = pb::WriteResult {
            revision,
            resource_version: o.meta.resource_version,
        };
        Ok((object_to_pb(&o), result))
    }

    async fn get(
        &self,
        who: Option<&Principal>,
        req: pb::GetRequest,
    ) -> Result<pb::Object, Status> {
        let key = key(self.kind, req.tenant, req.name)?;
        let scope = object_scope(self.kind, &key.tenant, &key.name, false);
        check(who, Access::Read, scope.as_deref())?;
        match self.store.get(&key).await.map_err(store_status)? {
            Some(o) => Ok(shown(&o, who)),
            None => Err(Status::not_found(format!("{key} not found"))),
        }
    }

    async fn list(
        &self,
        who: Option<&Principal>,
        req: pb::ListRequest,
    ) -> Result<(Vec<pb::Object>, String, u64), Status> {
        let page = req.page.unwrap_or_default();
        // A scoped caller's tenant list is its own Tenant object, and nothing else (not even
        // the names in page tokens).
        if let (Kind::Tenant, Some(mine)) = (self.kind, who.filter(|p| !p.tenant.is_empty())) {
            check(who, Access::Read, Some(&mine.tenant))?;
            let key = ObjectKey {
                kind: Kind::Tenant,
                tenant: String::new(),
                name: mine.tenant.clone(),
            };
            let own = self.store.get(&key).await.map_err(store_status)?;
            let revision = self.store.revision().await.map_err(store_status)?;
            return Ok((
                own.iter().map(|o| shown(o, who)).collect(),
                String::new(),
                revision,
            ));
        }
        // Tenant-scoped kinds list the caller's tenant; listeners are fleet-wide.
        let asked = match self.kind {
            k if k.is_tenant_scoped() => list_scope(who, &req.tenant)?,
            _ => {
                check(who, Access::Read, None)?;
                req.tenant.clone()
            }
        };
        let tenant = (!asked.is_empty()).then_some(asked.as_str());
        let p = self
            .store
            .list(self.kind, tenant, page.page_size, &page.page_token)
            .await
            .map_err(store_status)?;
        Ok((
            p.items.iter().map(|o| shown(o, who)).collect(),
            p.next_page_token.unwrap_or_default(),
            p.revision,
        ))
    }

    async fn delete(
        &self,
        who: Option<&Principal>,
        req: pb::DeleteRequest,
    ) -> Result<pb::DeleteResponse, Status> {
        let key = key(self.kind, req.tenant, req.name)?;
        let scope = object_scope(self.kind, &key.tenant, &key.name, true);
        check(who, Access::Write, scope.as_deref())?;
        let revision = self
            .store
            .delete(&key, req.resource_version)
            .await
            .map_err(store_status)?;
        if self.kind == Kind::Tenant {
            reload(self.tokens.as_ref()).await;
        }
        Ok(pb::DeleteResponse { revision })
    }
}

/// An object as `who` reads it: a listener's private keys only for an admin (or with auth off);
/// others get them as `(hidden)`, which no apply accepts as a key.
fn shown(o: &Object, who: Option<&Principal>) -> pb::Object {
    use gw_proto::model::Spec;
    match (&o.spec, who) {
        (Spec::Listener(l), Some(p)) if p.role != Role::Admin && l.tls.is_some() => {
            let mut hidden = o.clone();
            hidden.spec = Spec::Listener(gw_proto::model::ListenerSpec {
                tls: l.tls.as_ref().map(|t| t.redacted()),
                ..l.clone()
            });
            object_to_pb(&hidden)
        }
        _ => object_to_pb(o),
    }
}

/// Generates one object service: its struct, constructor and tonic trait impl.
macro_rules! object_service {
    (
        $api:ident, $kind:expr, $server_mod:ident :: $trait_:ident, $server:ident, $msg:ident, $resp:ident, $field:ident,
        $list_resp:ident, $list_field:ident, $from_pb:path, $variant:ident,
        $create:ident, $update:ident, $get:ident, $list:ident, $delete:ident
    ) => {
        #[doc = concat!("The `", stringify!($trait_), "` service.")]
        #[derive(Clone, Debug)]
        pub struct $api(Objects);

        impl $api {
            /// Serves objects from `store`.
            pub fn new(store: Store) -> Self {
                $api(Objects {
                    store,
                    kind: $kind,
                    tokens: None,
                })
            }

            /// With auth on: the token table to reload when a delete takes tokens with it.
            pub fn with_tokens(mut self, tokens: Option<Tokens>) -> Self {
                self.0.tokens = tokens;
                self
            }

            /// The tonic service.
            pub fn into_service(self) -> pb::$server_mod::$server<Self> {
                pb::$server_mod::$server::new(self)
            }
        }

        fn unwrap_variant(o: pb::Object) -> Result<pb::$msg, Status> {
            match o.kind {
                Some(pb::object::Kind::$variant(x)) => Ok(x),
                _ => Err(Status::internal("store returned another kind")),
            }
        }

        #[tonic::async_trait]
        impl pb::$server_mod::$trait_ for $api {
            async fn $create(&self, req: Request<pb::$msg>) -> Result<Response<pb::$resp>, Status> {
                let who = crate::auth::principal(&req);
                let (o, result) = self.0.create(who, $from_pb(req.get_ref())).await?;
                Ok(Response::new(pb::$resp {
                    $field: Some(unwrap_variant(o)?),
                    result: Some(result),
                }))
            }

            async fn $update(&self, req: Request<pb::$msg>) -> Result<Response<pb::$resp>, Status> {
                let who = crate::auth::principal(&req);
                let (o, result) = self.0.update(who, $from_pb(req.get_ref())).await?;
                Ok(Response::new(pb::$resp {
                    $field: Some(unwrap_variant(o)?),
                    result: Some(result),
                }))
            }

            async fn $get(
                &self,
                req: Request<pb::GetRequest>,
            ) -> Result<Response<pb::$msg>, Status> {
                let who = crate::auth::principal(&req).cloned();
                Ok(Response::new(unwrap_variant(
                    self.0.get(who.as_ref(), req.into_inner()).await?,
                )?))
            }

            async fn $list(
                &self,
                req: Request<pb::ListRequest>,
            ) -> Result<Response<pb::$list_resp>, Status> {
                let who = crate::auth::principal(&req).cloned();
                let (items, next_page_token, revision) =
                    self.0.list(who.as_ref(), req.into_inner()).await?;
                let $list_field = items
                    .into_iter()
                    .map(unwrap_variant)
                    .collect::<Result<_, _>>()?;
                Ok(Response::new(pb::$list_resp {
                    $list_field,
                    next_page_token,
                    revision,
                }))
            }

            async fn $delete(
                &self,
                req: Request<pb::DeleteRequest>,
            ) -> Result<Response<pb::DeleteResponse>, Status> {
                let who = crate::auth::principal(&req).cloned();
                Ok(Response::new(
                    self.0.delete(who.as_ref(), req.into_inner()).await?,
                ))
            }
        }
    };
}

mod tenants {
    use super::*;
    object_service!(
        TenantsApi,
        Kind::Tenant,
        tenants_server::Tenants,
        TenantsServer,
        Tenant,
        TenantResponse,
        tenant,
        ListTenantsResponse,
        tenants,
        convert::tenant_from_pb,
        Tenant,
        create_tenant,
        update_tenant,
        get_tenant,
        list_tenants,
        delete_tenant
    );
}

mod listeners {
    use super::*;
    object_service!(
        ListenersApi,
        Kind::Listener,
        listeners_server::Listeners,
        ListenersServer,
        Listener,
        ListenerResponse,
        listener,
        ListListenersResponse,
        listeners,
        convert::listener_from_pb,
        Listener,
        create_listener,
        update_listener,
        get_listener,
        list_listeners,
        delete_listener
    );
}

mod clusters {
    use super::*;
    object_service!(
        ClustersApi,
        Kind::Cluster,
        clusters_server::Clusters,
        ClustersServer,
        Cluster,
        ClusterResponse,
        cluster,
        ListClustersResponse,
        clusters,
        convert::cluster_from_pb,
        Cluster,
        create_cluster,
        update_cluster,
        get_cluster,
        list_clusters,
        delete_cluster
    );
}

mod routes {
    use super::*;
    object_service!(
        RoutesApi,
        Kind::Route,
        routes_server::Routes,
        RoutesServer,
        Route,
        RouteResponse,
        route,
        ListRoutesResponse,
        routes,
        convert::route_from_pb,
        Route,
        create_route,
        update_route,
        get_route,
        list_routes,
        delete_route
    );
}

mod alert_rules {
    use super::*;
    object_service!(
        AlertRulesApi,
        Kind::AlertRule,
        alert_rules_server::AlertRules,
        AlertRulesServer,
        AlertRule,
        AlertRuleResponse,
        alert_rule,
        ListAlertRulesResponse,
        alert_rules,
        convert::alert_rule_from_pb,
        AlertRule,
        create_alert_rule,
        update_alert_rule,
        get_alert_rule,
        list_alert_rules,
        delete_alert_rule
    );
}

pub use alert_rules::AlertRulesApi;
pub use clusters::ClustersApi;
pub use listeners::ListenersApi;
pub use routes::RoutesApi;
pub use tenants::TenantsApi;
