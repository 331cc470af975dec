//! `gwctl delete KIND NAME` and `gwctl delete -f FILE`.

use super::{parse_kind, Ctx};
use crate::cli::DeleteArgs;
use crate::error::{CliError, CliResult};
use crate::manifests;
use crate::output::paint;
use gw_proto::gateway::v1 as pb;
use gw_proto::model::Kind;

/// Runs `delete`.
pub async fn run(ctx: &Ctx, a: DeleteArgs) -> CliResult<u8> {
    if !a.files.is_empty() {
        if a.kind.is_some() {
            return Err(CliError::other(
                "give either KIND NAME or -f FILE, not both",
            ));
        }
        let docs = manifests::read(&a.files)?;
        let c = ctx.client().await?;
        let refs: Vec<pb::ObjectRef> = docs
            .iter()
            .map(|d| pb::ObjectRef {
                kind: d.object.spec.kind().as_str().into(),
                tenant: d.object.meta.tenant.clone(),
                name: d.object.meta.name.clone(),
            })
            .collect();
        let r = c
            .config()
            .delete_objects(c.req(pb::DeleteObjectsRequest {
                objects: refs,
                ignore_missing: a.ignore_not_found,
            }))
            .await
            .map_err(|s| super::apply::server_error(&docs, "delete", s))?
            .into_inner();
        for (d, deleted) in docs.iter().zip(r.deleted) {
            println!(
                "{} {}",
                d.object.key(),
                paint(if deleted { "deleted" } else { "not found" })
            );
        }
        return Ok(0);
    }
    let (Some(kind), Some(name)) = (a.kind.as_deref(), a.name.as_deref()) else {
        return Err(CliError::other(
            "usage: gwctl delete KIND NAME [--tenant T] | gwctl delete -f FILE",
        ));
    };
    let kind = parse_kind(kind)?;
    let key = super::objects::key(kind, ctx.tenant.as_deref(), name)?;
    let c = ctx.client().await?;
    let req = c.req(pb::DeleteRequest {
        name: key.name.clone(),
        tenant: key.tenant.clone(),
        resource_version: 0,
    });
    let result = match kind {
        Kind::Tenant => c.tenants().delete_tenant(req).await.map(drop),
        Kind::Listener => c.listeners().delete_listener(req).await.map(drop),
        Kind::Cluster => c.clusters().delete_cluster(req).await.map(drop),
        Kind::Route => c.routes().delete_route(req).await.map(drop),
        Kind::AlertRule => c.alert_rules().delete_alert_rule(req).await.map(drop),
    };
    result.map_err(|status| CliError::Status {
        // "route/acme/x not found" says it all; other refusals need to say what was refused.
        context: if status.code() == tonic::Code::NotFound {
            String::new()
        } else {
            format!("deleting {key}")
        },
        status,
    })?;
    println!("{key} {}", paint("deleted"));
    Ok(0)
}
