//! Live objects from the control plane, as domain objects.

use crate::client::Client;
use crate::error::{CliError, CliResult, StatusContext};
use gw_proto::convert;
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{FieldError, Kind, Object, ObjectKey};
use std::collections::{BTreeMap, HashMap};

/// Above this many objects of one kind in one tenant, listing them is cheaper than one get each.
const LIST_THRESHOLD: usize = 16;

fn conv(r: Result<Object, FieldError>) -> CliResult<Object> {
    r.map_err(|e| {
        CliError::other(format!(
            "the server sent an object this gwctl cannot read: {e}"
        ))
    })
}

/// One object; `None` when it does not exist.
pub async fn get(c: &Client, key: &ObjectKey) -> CliResult<Option<Object>> {
    let req = pb::GetRequest {
        name: key.name.clone(),
        tenant: key.tenant.clone(),
    };
    let what = format!("getting {key}");
    let r = match key.kind {
        Kind::Tenant => c
            .tenants()
            .get_tenant(c.req(req))
            .await
            .map(|r| convert::tenant_from_pb(r.get_ref())),
        Kind::Listener => c
            .listeners()
            .get_listener(c.req(req))
            .await
            .map(|r| convert::listener_from_pb(r.get_ref())),
        Kind::Cluster => c
            .clusters()
            .get_cluster(c.req(req))
            .await
            .map(|r| convert::cluster_from_pb(r.get_ref())),
        Kind::Route => c
            .routes()
            .get_route(c.req(req))
            .await
            .map(|r| convert::route_from_pb(r.get_ref())),
        Kind::AlertRule => c
            .alert_rules()
            .get_alert_rule(c.req(req))
            .await
            .map(|r| convert::alert_rule_from_pb(r.get_ref())),
    };
    match r {
        Ok(o) => conv(o).map(Some),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(CliError::Status {
            context: what,
            status,
        }),
    }
}

/// Every object of `kind` (of `tenant` when given), following pages.
pub async fn list(c: &Client, kind: Kind, tenant: Option<&str>) -> CliResult<Vec<Object>> {
    let mut out = Vec::new();
    let mut token = String::new();
    let what = format!("listing {kind}s");
    loop {
        let req = pb::ListRequest {
            tenant: tenant.unwrap_or_default().to_owned(),
            page: Some(pb::PageRequest {
                page_size: 1000,
                page_token: token,
            }),
        };
        let next = match kind {
            Kind::Tenant => {
                let r = c.tenants().list_tenants(c.req(req)).await.context(&what)?;
                for x in &r.tenants {
                    out.push(conv(convert::tenant_from_pb(x))?);
                }
                r.next_page_token
            }
            Kind::Listener => {
                let r = c
                    .listeners()
                    .list_listeners(c.req(req))
                    .await
                    .context(&what)?;
                for x in &r.listeners {
                    out.push(conv(convert::listener_from_pb(x))?);
                }
                r.next_page_token
            }
            Kind::Cluster => {
                let r = c
                    .clusters()
                    .list_clusters(c.req(req))
                    .await
                    .context(&what)?;
                for x in &r.clusters {
                    out.push(conv(convert::cluster_from_pb(x))?);
                }
                r.next_page_token
            }
            Kind::Route => {
                let r = c.routes().list_routes(c.req(req)).await.context(&what)?;
                for x in &r.routes {
                    out.push(conv(convert::route_from_pb(x))?);
                }
                r.next_page_token
            }
            Kind::AlertRule => {
                let r = c
                    .alert_rules()
                    .list_alert_rules(c.req(req))
                    .await
                    .context(&what)?;
                for x in &r.alert_rules {
                    out.push(conv(convert::alert_rule_from_pb(x))?);
                }
                r.next_page_token
            }
        };
        if next.is_empty() {
            return Ok(out);
        }
        token = next;
    }
}

/// The live versions of `keys` (missing ones are absent from the map): one list call per kind
/// and tenant with many objects, one get per object otherwise.
pub async fn fetch(c: &Client, keys: &[ObjectKey]) -> CliResult<HashMap<ObjectKey, Object>> {
    let mut groups: BTreeMap<(Kind, &str), Vec<&ObjectKey>> = BTreeMap::new();
    for k in keys {
        groups
            .entry((k.kind, k.tenant.as_str()))
            .or_default()
            .push(k);
    }
    let mut out = HashMap::new();
    for ((kind, tenant), group) in groups {
        if group.len() > LIST_THRESHOLD {
            let tenant = (!tenant.is_empty()).then_some(tenant);
            for o in list(c, kind, tenant).await? {
                out.insert(o.key(), o);
            }
        } else {
            for k in group {
                if let Some(o) = get(c, k).await? {
                    out.insert(k.clone(), o);
                }
            }
        }
    }
    Ok(out)
}

/// A key from the command line: tenant-scoped kinds need `--tenant`.
pub fn key(kind: Kind, tenant: Option<&str>, name: &str) -> CliResult<ObjectKey> {
    let tenant = if kind.is_tenant_scoped() {
        tenant
            .ok_or_else(|| CliError::other(format!("a {kind} belongs to a tenant: add --tenant")))?
            .to_owned()
    } else {
        String::new()
    };
    Ok(ObjectKey {
        kind,
        tenant,
        name: name.to_owned(),
    })
}
