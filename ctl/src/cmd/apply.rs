//! `gwctl apply -f`: create or update, batched, idempotent; `--dry-run`; `--prune`.

use super::{objects, Ctx};
use crate::cli::ApplyArgs;
use crate::error::{CliError, CliResult, StatusContext};
use crate::manifests::{self, locate_server_error, Doc};
use crate::output::{paint, Progress};
use gw_proto::convert::object_to_pb;
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{Kind, ObjectKey};
use std::collections::{HashMap, HashSet};

fn outcome(o: i32) -> &'static str {
    match pb::ApplyOutcome::try_from(o) {
        Ok(pb::ApplyOutcome::Created) => "created",
        Ok(pb::ApplyOutcome::Configured) => "configured",
        Ok(pb::ApplyOutcome::Unchanged) => "unchanged",
        _ => "applied",
    }
}

/// Maps a server error about one object back to its file and document.
pub fn server_error(docs: &[Doc], context: &str, status: tonic::Status) -> CliError {
    match locate_server_error(docs, status.message()) {
        Some(m) => CliError::Status {
            context: String::new(),
            status: tonic::Status::new(status.code(), m),
        },
        None => CliError::Status {
            context: context.into(),
            status,
        },
    }
}

/// Runs `apply`.
pub async fn run(ctx: &Ctx, a: ApplyArgs) -> CliResult<u8> {
    let docs = manifests::read(&a.files)?;
    if let Some(t) = &ctx.tenant {
        if let Some(d) = docs
            .iter()
            .find(|d| d.object.spec.kind().is_tenant_scoped() && d.object.meta.tenant != *t)
        {
            return Err(CliError::other(format!(
                "{}: not in tenant {t:?} given by --tenant",
                d.location()
            )));
        }
    }
    let c = ctx.client().await?;
    // Dependencies first, so each batch can reference what earlier batches created.
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.sort_by_key(|&i| docs[i].object.spec.kind());
    let batch = a.batch.max(1);
    let progress = (docs.len() > batch).then(|| Progress::new("applying", docs.len()));
    let mut outcomes = vec![""; docs.len()];
    let mut done = 0;
    for chunk in order.chunks(batch) {
        let objects = chunk
            .iter()
            .map(|&i| object_to_pb(&docs[i].object))
            .collect();
        let resp = c
            .config()
            .apply(c.req(pb::ApplyRequest {
                objects,
                dry_run: a.dry_run,
            }))
            .await
            .map_err(|s| server_error(&docs, "apply", s))?
            .into_inner();
        let by_key: HashMap<(&str, &str, &str), i32> = resp
            .results
            .iter()
            .map(|r| {
                (
                    (r.kind.as_str(), r.tenant.as_str(), r.name.as_str()),
                    r.outcome,
                )
            })
            .collect();
        for &i in chunk {
            let o = &docs[i].object;
            let key = (
                o.spec.kind().as_str(),
                o.meta.tenant.as_str(),
                o.meta.name.as_str(),
            );
            outcomes[i] = by_key.get(&key).map_or("applied", |&x| outcome(x));
        }
        done += chunk.len();
        if let Some(p) = &progress {
            p.update(done);
        }
    }
    let suffix = if a.dry_run { " (dry run)" } else { "" };
    for (d, o) in docs.iter().zip(&outcomes) {
        println!("{} {}{suffix}", d.object.key(), paint(o));
    }
    if a.prune {
        prune(ctx, &c, &docs, a.dry_run).await?;
    }
    Ok(0)
}

/// Deletes objects of `--tenant` the files no longer contain.
async fn prune(ctx: &Ctx, c: &crate::client::Client, docs: &[Doc], dry_run: bool) -> CliResult<()> {
    let tenant = ctx.require_tenant("--prune")?;
    let keep: HashSet<ObjectKey> = docs.iter().map(|d| d.object.key()).collect();
    let mut gone = Vec::new();
    for kind in [Kind::AlertRule, Kind::Route, Kind::Cluster] {
        for o in objects::list(c, kind, Some(tenant)).await? {
            if !keep.contains(&o.key()) {
                gone.push(o.key());
            }
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    if !dry_run {
        let refs = gone
            .iter()
            .map(|k| pb::ObjectRef {
                kind: k.kind.as_str().into(),
                tenant: k.tenant.clone(),
                name: k.name.clone(),
            })
            .collect();
        c.config()
            .delete_objects(c.req(pb::DeleteObjectsRequest {
                objects: refs,
                ignore_missing: true,
            }))
            .await
            .context("prune")?;
    }
    let suffix = if dry_run { " (dry run)" } else { "" };
    for k in gone {
        println!("{k} {}{suffix}", paint("pruned"));
    }
    Ok(())
}
