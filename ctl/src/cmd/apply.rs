//! `gwctl apply -f`: create or update, batched, idempotent; `--dry-run`; `--prune`.

use super::{objects, Ctx};
use crate::cli::{ApplyArgs, Format};
use crate::error::{CliError, CliResult, StatusContext};
use crate::manifests::{self, locate_server_error, Doc};
use crate::output::{paint, Progress};
use gw_proto::convert::object_to_pb;
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{Kind, ObjectKey, Spec};
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
    let order = apply_order(&docs);
    // A dry run changes nothing, so a later batch could not see what an earlier one would have
    // created: it goes in one call.
    let batch = if a.dry_run {
        docs.len()
    } else {
        a.batch.max(1)
    };
    let progress = (docs.len() > batch).then(|| Progress::new("applying", docs.len()));
    let mut outcomes: Vec<Option<&str>> = vec![None; docs.len()];
    let mut done = 0;
    let started = std::time::Instant::now();
    let mut calls = 0;
    for chunk in order.chunks(batch) {
        let objects = chunk
            .iter()
            .map(|&i| object_to_pb(&docs[i].object))
            .collect();
        let resp = match c
            .config()
            .apply(c.req(pb::ApplyRequest {
                objects,
                dry_run: a.dry_run,
            }))
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let mut e = server_error(&docs, "apply", s);
                if done > 0 {
                    // Earlier batches were their own transactions: say what they did.
                    report(ctx, &docs, &outcomes, a.dry_run);
                    e = e.note(format!(
                        "{done} of {} objects (listed above) were applied before this batch",
                        docs.len()
                    ));
                }
                return Err(e);
            }
        };
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
            outcomes[i] = Some(by_key.get(&key).map_or("applied", |&x| outcome(x)));
        }
        done += chunk.len();
        calls += 1;
        if let Some(p) = &progress {
            p.update(done);
        }
    }
    report(ctx, &docs, &outcomes, a.dry_run);
    if ctx.verbose {
        eprintln!(
            "applied {} objects in {calls} call(s), {:.2}s",
            docs.len(),
            started.elapsed().as_secs_f64()
        );
    }
    if a.prune {
        prune(ctx, &c, &docs, a.dry_run).await?;
    }
    Ok(0)
}

/// The order objects are sent in: what others reference first (tenants, then clusters — a
/// fallback cluster before the clusters falling back to it — then routes, then alert rules), so
/// every batch only references objects that exist or are in it. Otherwise file order.
pub fn apply_order(docs: &[Doc]) -> Vec<usize> {
    let fallback: HashMap<(&str, &str), &str> = docs
        .iter()
        .filter_map(|d| match &d.object.spec {
            Spec::Cluster(c) => c.fallback_cluster.as_deref().map(|f| {
                (
                    (d.object.meta.tenant.as_str(), d.object.meta.name.as_str()),
                    f,
                )
            }),
            _ => None,
        })
        .collect();
    // How many fallback hops lead from a cluster to one without a fallback in the files; a cycle
    // (which the server refuses anyway) stops at the number of clusters.
    let depth = |tenant: &str, name: &str| {
        let mut n = 0;
        let mut cur = name;
        while let Some(next) = fallback.get(&(tenant, cur)) {
            n += 1;
            cur = next;
            if n > fallback.len() {
                break;
            }
        }
        n
    };
    let mut order: Vec<usize> = (0..docs.len()).collect();
    order.sort_by_key(|&i| {
        let o = &docs[i].object;
        let d = match o.spec {
            Spec::Cluster(_) => depth(&o.meta.tenant, &o.meta.name),
            _ => 0,
        };
        (o.spec.kind(), d)
    });
    order
}

/// Prints one line per applied object, in file order (or a list with `-o json|yaml`).
fn report(ctx: &Ctx, docs: &[Doc], outcomes: &[Option<&str>], dry_run: bool) {
    let applied = docs
        .iter()
        .zip(outcomes)
        .filter_map(|(d, o)| o.map(|o| (d, o)));
    match ctx.output {
        Format::Json | Format::Yaml => {
            let v: Vec<serde_json::Value> = applied
                .map(|(d, o)| {
                    let m = &d.object.meta;
                    serde_json::json!({
                        "kind": d.object.spec.kind().manifest_name(), "tenant": m.tenant,
                        "name": m.name, "outcome": o, "dryRun": dry_run,
                    })
                })
                .collect();
            if ctx.output == Format::Json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{}", serde_yaml::to_string(&v).unwrap_or_default());
            }
        }
        Format::Table | Format::Wide => {
            let suffix = if dry_run { " (dry run)" } else { "" };
            for (d, o) in applied {
                println!("{} {}{suffix}", d.object.key(), paint(o));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(yaml: &str) -> Vec<Doc> {
        gw_proto::manifest::parse(yaml)
            .unwrap()
            .into_iter()
            .map(|d| Doc {
                file: "f".into(),
                index: d.index,
                object: d.object,
            })
            .collect()
    }

    #[test]
    fn referenced_objects_go_first() {
        let d = docs(
            "\
apiVersion: gw/v1
kind: Route
metadata: {name: r, tenant: t}
spec: {cluster: a}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: a, tenant: t}
spec: {fallbackCluster: b}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: b, tenant: t}
spec: {fallbackCluster: c}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: c, tenant: t}
---
apiVersion: gw/v1
kind: Tenant
metadata: {name: t}
",
        );
        let names: Vec<&str> = apply_order(&d)
            .into_iter()
            .map(|i| d[i].object.meta.name.as_str())
            .collect();
        assert_eq!(names, ["t", "c", "b", "a", "r"]);
    }
}
