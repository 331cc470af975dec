//! `gwctl describe KIND NAME`: everything about one object on one screen — its spec, the
//! clusters and endpoints it reaches with their health and breaker state, recent stats and events.
//! Fetching is here; turning what was fetched into text is in `describe/render.rs`.

mod render;

use super::{objects, parse_kind, Ctx};
use crate::cli::{DescribeArgs, Format};
use crate::client::Client;
use crate::error::{CliError, CliResult, StatusContext};
use gw_proto::gateway::v1 as pb;
use gw_proto::model::{Kind, Object, Spec};

/// How far back `describe` looks for stats.
const STATS_WINDOW_SECS: i64 = 900;
/// How far back `describe` looks for events.
const EVENTS_WINDOW_SECS: i64 = 3600;

/// Endpoints of one cluster, and what the proxies report about each.
#[derive(Debug, Default)]
pub struct ClusterEndpoints {
    /// Cluster name.
    pub name: String,
    /// Static, registered and discovered endpoints.
    pub endpoints: Vec<pb::Endpoint>,
    /// Health and breaker state as reported by each proxy.
    pub states: Vec<pb::EndpointState>,
}

/// Everything `describe` shows about one object.
#[derive(Debug)]
pub struct Report {
    /// The object.
    pub object: Object,
    /// For a route, the clusters it sends to; for a cluster, itself.
    pub clusters: Vec<ClusterEndpoints>,
    /// Traffic over the last 15 minutes (`None`: this kind has no stats).
    pub stats: Option<Option<pb::StatsRow>>,
    /// For a tenant: the number of clusters and routes it owns.
    pub owned: Vec<(Kind, Vec<String>)>,
    /// Recent events about the object, oldest first.
    pub events: Vec<pb::Event>,
}

/// Runs `describe`.
pub async fn run(ctx: &Ctx, a: DescribeArgs) -> CliResult<u8> {
    if matches!(a.kind.as_str(), "proxy" | "proxies") {
        return super::fleet::describe(ctx, &a.name).await;
    }
    if matches!(a.kind.as_str(), "endpoint" | "endpoints" | "ep") {
        let Some((cluster, addr)) = a.name.split_once('/') else {
            return Err(CliError::other(
                "describe endpoint CLUSTER/ADDRESS:PORT (with --tenant)",
            ));
        };
        let tenant = ctx.require_tenant("describe endpoint")?.to_owned();
        let c = ctx.client().await?;
        let ce = cluster_endpoints(&c, &tenant, cluster).await?;
        let stats = stats(&c, "endpoint", &tenant, &a.name).await?;
        print!(
            "{}",
            render::endpoint(&tenant, &ce, addr, stats.as_ref(), crate::output::color())
        );
        return Ok(0);
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
    let report = fetch(&c, o).await?;
    print!("{}", render::report(&report, crate::output::color()));
    Ok(0)
}

/// Gathers what `describe` shows about `object`.
async fn fetch(c: &Client, object: Object) -> CliResult<Report> {
    let tenant = object.meta.tenant.clone();
    let name = object.meta.name.clone();
    let mut clusters = Vec::new();
    let mut stats_of = None;
    let mut owned = Vec::new();
    match &object.spec {
        Spec::Route(r) => {
            for cl in r.clusters() {
                clusters.push(cluster_endpoints(c, &tenant, cl).await?);
            }
            stats_of = Some("route");
        }
        Spec::Cluster(_) => {
            clusters.push(cluster_endpoints(c, &tenant, &name).await?);
            stats_of = Some("cluster");
        }
        Spec::Tenant(_) => {
            for kind in [Kind::Cluster, Kind::Route, Kind::AlertRule] {
                let names = objects::list(c, kind, Some(&name))
                    .await?
                    .into_iter()
                    .map(|o| o.meta.name)
                    .collect();
                owned.push((kind, names));
            }
        }
        Spec::Listener(_) | Spec::AlertRule(_) => {}
    }
    let stats = match stats_of {
        Some(kind) => Some(stats(c, kind, &tenant, &name).await?),
        None => None,
    };
    let events = events(c, &object).await?;
    Ok(Report {
        object,
        clusters,
        stats,
        owned,
        events,
    })
}

async fn cluster_endpoints(c: &Client, tenant: &str, cluster: &str) -> CliResult<ClusterEndpoints> {
    let req = pb::DiscoverRequest {
        tenant: tenant.into(),
        cluster: cluster.into(),
        page: None,
    };
    let endpoints = c
        .endpoints()
        .discover(c.req(req))
        .await
        .context(format!("endpoints of cluster {cluster}"))?
        .endpoints;
    let states = c
        .stats()
        .get_endpoint_states(c.req(pb::EndpointStatesRequest {
            tenant: tenant.into(),
            cluster: cluster.into(),
        }))
        .await
        .context(format!("endpoint state of cluster {cluster}"))?
        .states;
    Ok(ClusterEndpoints {
        name: cluster.to_owned(),
        endpoints,
        states,
    })
}

async fn stats(
    c: &Client,
    kind: &str,
    tenant: &str,
    name: &str,
) -> CliResult<Option<pb::StatsRow>> {
    let req = pb::StatsRequest {
        kind: kind.into(),
        tenant: tenant.into(),
        name: name.into(),
        since: Some(prost_types::Duration {
            seconds: STATS_WINDOW_SECS,
            nanos: 0,
        }),
    };
    let rows = c.stats().get_stats(c.req(req)).await.context("stats")?.rows;
    Ok(rows.into_iter().next())
}

/// Whether an event is about `o`: its `object` is `KIND/NAME` or `KIND/TENANT/NAME`, or
/// something under either (`cluster/acme/users-svc/10.0.0.1:80`).
fn concerns(event_object: &str, o: &Object) -> bool {
    let kind = o.spec.kind().as_str();
    let short = format!("{kind}/{}", o.meta.name);
    let full = format!("{kind}/{}/{}", o.meta.tenant, o.meta.name);
    [short, full].iter().any(|me| {
        event_object == me
            || event_object
                .strip_prefix(me.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Recent events about the object, oldest first.
async fn events(c: &Client, o: &Object) -> CliResult<Vec<pb::Event>> {
    let req = pb::ListEventsRequest {
        tenant: o.meta.tenant.clone(),
        since: Some(prost_types::Duration {
            seconds: EVENTS_WINDOW_SECS,
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
        if concerns(&e.object, o) {
            mine.push(e);
        }
    }
    Ok(mine)
}
