//! `gwctl describe KIND NAME`: everything about one object on one screen — its spec, the
//! clusters and endpoints it reaches with their health and breaker state, recent stats and events.

use super::{objects, parse_kind, Ctx};
use crate::cli::{DescribeArgs, Format};
use crate::client::Client;
use crate::error::{CliError, CliResult, StatusContext};
use crate::output::{age, paint, print, table, time};
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{format_duration as d, Object, Spec};

/// Runs `describe`.
pub async fn run(ctx: &Ctx, a: DescribeArgs) -> CliResult<u8> {
    if matches!(a.kind.as_str(), "proxy" | "proxies") {
        return super::fleet::describe(ctx, &a.name).await;
    }
    if matches!(a.kind.as_str(), "endpoint" | "endpoints") {
        let Some((cluster, _)) = a.name.split_once('/') else {
            return Err(CliError::other("describe endpoint CLUSTER/ADDRESS:PORT"));
        };
        let c = ctx.client().await?;
        let tenant = ctx.require_tenant("describe endpoint")?.to_owned();
        return endpoint(&c, &tenant, cluster, &a.name).await;
    }
    let kind = parse_kind(&a.kind)?;
    let key = objects::key(kind, ctx.tenant.as_deref(), &a.name)?;
    let c = ctx.client().await?;
    let Some(o) = objects::get(&c, &key).await? else {
        return Err(CliError::other(format!("{key} not found")));
    };
    if matches!(ctx.output, Format::Json | Format::Yaml) {
        super::get::render(ctx.output, kind, &[o], true);
        return Ok(0);
    }
    header(&o);
    match &o.spec {
        Spec::Route(r) => {
            let m = &r.match_;
            println!(
                "Hosts:         {}",
                if m.hosts.is_empty() {
                    "*".into()
                } else {
                    m.hosts.join(", ")
                }
            );
            println!("Match:         {}", super::get::path_match(m));
            if !m.methods.is_empty() {
                println!("Methods:       {}", m.methods.join(", "));
            }
            for h in &m.headers {
                let how = h
                    .exact
                    .as_ref()
                    .map(|v| format!("= {v}"))
                    .or(h.prefix.as_ref().map(|v| format!("^= {v}")))
                    .or(h.regex.as_ref().map(|v| format!("~ {v}")))
                    .unwrap_or_else(|| "present".into());
                println!("Header:        {} {how}", h.name);
            }
            println!("Clusters:      {}", super::get::targets(r));
            println!("Timeout:       {}", d(r.timeout));
            if let Some(x) = &r.retry {
                let per_try = x
                    .per_try_timeout
                    .map(|t| format!(", {} per try", d(t)))
                    .unwrap_or_default();
                println!(
                    "Retry:         {} attempts on {}{per_try}",
                    x.attempts,
                    x.on.join(", ")
                );
            }
            if let Some(h) = &r.hash_on {
                println!("Hash on:       {h}");
            }
            for cl in r.clusters() {
                println!();
                cluster_endpoints(&c, &o.meta.tenant, cl).await?;
            }
            stats(&c, "route", &o.meta.tenant, &o.meta.name).await?;
        }
        Spec::Cluster(s) => {
            println!("LB:            {}", s.lb.as_str());
            println!("Connect:       {}", d(s.connect_timeout));
            if let Some(h) = &s.health_check {
                println!(
                    "Health check:  {} every {}, timeout {}, healthy after {}, unhealthy after {}",
                    h.path.as_deref().unwrap_or("tcp connect"),
                    d(h.interval),
                    d(h.timeout),
                    h.healthy_threshold,
                    h.unhealthy_threshold
                );
            }
            let b = &s.circuit_breaker;
            println!(
                "Breaker:       opens after {} failures or {}% failing (min {} requests), open {}, {} probes to close",
                b.consecutive_failures,
                b.failure_rate_threshold * 100.0,
                b.minimum_requests,
                d(b.open_timeout),
                b.half_open_successes
            );
            let l = &s.limits;
            println!(
                "Limits:        {} connections, {} pending, {} requests, {} retries",
                l.max_connections, l.max_pending_requests, l.max_requests, l.max_retries
            );
            if let Some(f) = &s.fallback_cluster {
                println!("Fallback:      {f}");
            }
            println!();
            cluster_endpoints(&c, &o.meta.tenant, &o.meta.name).await?;
            stats(&c, "cluster", &o.meta.tenant, &o.meta.name).await?;
        }
        _ => super::get::render(Format::Yaml, kind, std::slice::from_ref(&o), true),
    }
    events(&c, &o.meta.tenant, &o.meta.name).await?;
    Ok(0)
}

fn header(o: &Object) {
    println!("Kind:          {}", o.spec.kind().manifest_name());
    println!("Name:          {}", o.meta.name);
    if !o.meta.tenant.is_empty() {
        println!("Tenant:        {}", o.meta.tenant);
    }
    println!(
        "Version:       {} (created at revision {})",
        o.meta.resource_version, o.meta.created_revision
    );
    println!("Age:           {}", age(o.meta.created_at_ms));
    if !o.meta.labels.is_empty() {
        let l: Vec<String> = o
            .meta
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("Labels:        {}", l.join(", "));
    }
}

async fn cluster_endpoints(c: &Client, tenant: &str, cluster: &str) -> CliResult<()> {
    let req = pb::DiscoverRequest {
        tenant: tenant.into(),
        cluster: cluster.into(),
        page: None,
    };
    let eps = c
        .endpoints()
        .discover(c.req(req))
        .await
        .context(format!("endpoints of {cluster}"))?
        .endpoints;
    let states = c
        .stats()
        .get_endpoint_states(c.req(pb::EndpointStatesRequest {
            tenant: tenant.into(),
            cluster: cluster.into(),
        }))
        .await
        .context("endpoint state")?
        .states;
    println!("Cluster {cluster}: {} endpoint(s)", eps.len());
    if eps.is_empty() {
        return Ok(());
    }
    let mut t = table(&[
        "  ENDPOINT",
        "WEIGHT",
        "SOURCE",
        "HEALTH",
        "BREAKER",
        "REPORTED BY",
    ]);
    for e in &eps {
        let addr = format!("{}:{}", e.address, e.port);
        let mine: Vec<&pb::EndpointState> = states.iter().filter(|s| s.endpoint == addr).collect();
        let health = if mine.is_empty() {
            "-"
        } else if mine.iter().all(|s| s.healthy) {
            "healthy"
        } else {
            "unhealthy"
        };
        let breaker = mine
            .iter()
            .map(|s| s.breaker.as_str())
            .max_by_key(|b| match *b {
                "open" => 2,
                "half_open" => 1,
                _ => 0,
            });
        let source = match pb::EndpointSource::try_from(e.source) {
            Ok(pb::EndpointSource::Static) => "static",
            Ok(pb::EndpointSource::Kubernetes) => "kubernetes",
            _ => "registry",
        };
        t.add_row(vec![
            format!("  {addr}"),
            e.weight.to_string(),
            source.into(),
            paint(health),
            paint(breaker.unwrap_or("-")),
            mine.len().to_string() + " proxies",
        ]);
    }
    print(&t);
    Ok(())
}

async fn stats(c: &Client, kind: &str, tenant: &str, name: &str) -> CliResult<()> {
    let req = pb::StatsRequest {
        kind: kind.into(),
        tenant: tenant.into(),
        name: name.into(),
        since: Some(prost_types::Duration {
            seconds: 900,
            nanos: 0,
        }),
    };
    let rows = c.stats().get_stats(c.req(req)).await.context("stats")?.rows;
    println!();
    match rows.first() {
        None => println!("Stats (15m):   no traffic"),
        Some(r) => println!(
            "Stats (15m):   {} requests, {:.2}% success, 5xx {}, upstream errors {}, p50 {:.1}ms p99 {:.1}ms",
            r.requests,
            r.success_rate * 100.0,
            r.status_5xx,
            r.upstream_errors,
            r.p50_ms,
            r.p99_ms
        ),
    }
    Ok(())
}

async fn events(c: &Client, tenant: &str, name: &str) -> CliResult<()> {
    let req = pb::ListEventsRequest {
        tenant: tenant.into(),
        since: Some(prost_types::Duration {
            seconds: 3600,
            nanos: 0,
        }),
        limit: 500,
        ..Default::default()
    };
    let mut stream = c.events().list_events(c.req(req)).await.context("events")?;
    let mut mine = Vec::new();
    while let Some(e) = stream.message().await.map_err(|status| CliError::Status {
        context: "events".into(),
        status,
    })? {
        if e.object.ends_with(&format!("/{name}")) || e.object.contains(&format!("/{name}/")) {
            mine.push(e);
        }
    }
    println!();
    if mine.is_empty() {
        println!("Events (1h):   none");
        return Ok(());
    }
    println!("Events (1h):");
    for e in mine.iter().rev().take(10).rev() {
        println!(
            "  {}  {:<8} {:<20} {}",
            time(e.at.as_ref()),
            e.severity,
            e.kind,
            e.message
        );
    }
    Ok(())
}

async fn endpoint(c: &Client, tenant: &str, cluster: &str, name: &str) -> CliResult<u8> {
    let states = c
        .stats()
        .get_endpoint_states(c.req(pb::EndpointStatesRequest {
            tenant: tenant.into(),
            cluster: cluster.into(),
        }))
        .await
        .context("endpoint state")?
        .states;
    let addr = name.split_once('/').map_or(name, |(_, a)| a);
    println!("Endpoint:      {addr}");
    println!("Cluster:       {tenant}/{cluster}");
    let mut t = table(&["PROXY", "HEALTH", "BREAKER", "REPORTED"]);
    for s in states.iter().filter(|s| s.endpoint == addr) {
        t.add_row(vec![
            s.node.clone(),
            paint(if s.healthy { "healthy" } else { "unhealthy" }),
            paint(&s.breaker),
            time(s.updated_at.as_ref()),
        ]);
    }
    print(&t);
    stats(c, "endpoint", tenant, &format!("{cluster}/{addr}")).await?;
    Ok(0)
}
