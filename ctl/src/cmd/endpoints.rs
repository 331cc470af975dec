//! `gwctl endpoints register|deregister|heartbeat|list`: the origin's service registry.

use super::Ctx;
use crate::cli::{EndpointArgs, EndpointKeyArgs, EndpointsCommand, Format};
use crate::error::{CliError, CliResult, StatusContext};
use crate::output::{print, table, ts_ms};
use gw_proto::gateway::v1 as pb;

fn key(ctx: &Ctx, k: &EndpointKeyArgs) -> CliResult<pb::EndpointKey> {
    Ok(pb::EndpointKey {
        tenant: ctx.require_tenant("endpoints")?.to_owned(),
        cluster: k.cluster.clone(),
        address: k.address.clone(),
        port: k.port,
    })
}

/// Runs an `endpoints` subcommand.
pub async fn run(ctx: &Ctx, cmd: EndpointsCommand) -> CliResult<u8> {
    match cmd {
        EndpointsCommand::Register(a) => register(ctx, a).await,
        EndpointsCommand::Deregister(k) => {
            let key = key(ctx, &k)?;
            let c = ctx.client().await?;
            c.endpoints()
                .deregister(c.req(key.clone()))
                .await
                .context("deregister")?;
            println!(
                "endpoint {}/{}/{}:{} deregistered",
                key.tenant, key.cluster, key.address, key.port
            );
            Ok(0)
        }
        EndpointsCommand::Heartbeat(k) => {
            let key = key(ctx, &k)?;
            let c = ctx.client().await?;
            let r = c
                .endpoints()
                .heartbeat(c.req(key.clone()))
                .await
                .context("heartbeat")?;
            match r.expires_at {
                Some(t) => println!(
                    "endpoint {}:{} renewed until {}",
                    key.address,
                    key.port,
                    crate::output::time(Some(&t))
                ),
                None => println!("endpoint {}:{} has no TTL", key.address, key.port),
            }
            Ok(0)
        }
        EndpointsCommand::List { cluster } => list(ctx, cluster).await,
    }
}

async fn register(ctx: &Ctx, a: EndpointArgs) -> CliResult<u8> {
    let k = key(ctx, &a.key)?;
    let ttl = match &a.ttl {
        Some(s) => Some(super::parse_duration("ttl", s)?),
        None => None,
    };
    let mut metadata = std::collections::HashMap::new();
    for kv in &a.metadata {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| CliError::other(format!("--meta {kv:?}: use KEY=VALUE")))?;
        metadata.insert(k.to_owned(), v.to_owned());
    }
    let c = ctx.client().await?;
    let req = pb::RegisterEndpointRequest {
        tenant: k.tenant.clone(),
        cluster: k.cluster.clone(),
        address: k.address.clone(),
        port: k.port,
        weight: a.weight,
        metadata,
        ttl,
    };
    let r = c
        .endpoints()
        .register(c.req(req))
        .await
        .context("register")?;
    let verb = if r.created { "registered" } else { "updated" };
    let lease = r
        .endpoint
        .as_ref()
        .and_then(|e| e.expires_at.as_ref())
        .map(|t| format!(" (lease until {})", crate::output::time(Some(t))))
        .unwrap_or_default();
    println!(
        "endpoint {}/{}/{}:{} {verb}{lease}",
        k.tenant, k.cluster, k.address, k.port
    );
    Ok(0)
}

/// Every endpoint of `tenant` (of one cluster when given), following pages.
async fn discover(
    c: &crate::client::Client,
    tenant: &str,
    cluster: Option<&str>,
) -> CliResult<Vec<pb::Endpoint>> {
    let mut all = Vec::new();
    let mut token = String::new();
    loop {
        let req = pb::DiscoverRequest {
            tenant: tenant.to_owned(),
            cluster: cluster.unwrap_or_default().to_owned(),
            page: Some(pb::PageRequest {
                page_size: 1000,
                page_token: token,
            }),
        };
        let r = c
            .endpoints()
            .discover(c.req(req))
            .await
            .context(format!("listing endpoints of tenant {tenant}"))?;
        all.extend(r.endpoints);
        if r.next_page_token.is_empty() {
            return Ok(all);
        }
        token = r.next_page_token;
    }
}

/// Lists endpoints of `--tenant` (optionally one cluster), or of every tenant.
pub async fn list(ctx: &Ctx, cluster: Option<String>) -> CliResult<u8> {
    let c = ctx.client().await?;
    let all = match ctx.tenant.as_deref() {
        Some(t) => discover(&c, t, cluster.as_deref()).await?,
        None => {
            if cluster.is_some() {
                ctx.require_tenant("--cluster")?;
            }
            let mut all = Vec::new();
            for t in super::objects::list(&c, gw_proto::model::Kind::Tenant, None).await? {
                all.extend(discover(&c, &t.meta.name, None).await?);
            }
            all
        }
    };
    match ctx.output {
        Format::Json | Format::Yaml => {
            let v: Vec<serde_json::Value> = all
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "tenant": e.tenant, "cluster": e.cluster, "address": e.address, "port": e.port,
                        "weight": e.weight, "metadata": e.metadata, "source": source(e.source),
                        "expiresAt": e.expires_at.as_ref().map(|t| crate::output::time(Some(t))),
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
            if all.is_empty() {
                eprintln!("No endpoints found.");
                return Ok(0);
            }
            let mut t = table(&[
                "TENANT", "CLUSTER", "ADDRESS", "PORT", "WEIGHT", "SOURCE", "EXPIRES", "METADATA",
            ]);
            for e in &all {
                let expires = match ts_ms(e.expires_at.as_ref()) {
                    0 => "-".to_owned(),
                    ms => {
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        format!("in {}s", ((ms - now) / 1000).max(0))
                    }
                };
                let mut meta: Vec<String> =
                    e.metadata.iter().map(|(k, v)| format!("{k}={v}")).collect();
                meta.sort();
                t.add_row(vec![
                    e.tenant.clone(),
                    e.cluster.clone(),
                    e.address.clone(),
                    e.port.to_string(),
                    e.weight.to_string(),
                    source(e.source).into(),
                    expires,
                    meta.join(","),
                ]);
            }
            print(&t);
        }
    }
    Ok(0)
}

fn source(s: i32) -> &'static str {
    match pb::EndpointSource::try_from(s) {
        Ok(pb::EndpointSource::Static) => "static",
        Ok(pb::EndpointSource::Registry) => "registry",
        Ok(pb::EndpointSource::Kubernetes) => "kubernetes",
        _ => "-",
    }
}
