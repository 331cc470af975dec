//! `gwctl get KIND [NAME]`: tables like kubectl, or manifests (`-o yaml` re-applies as is).

use super::{objects, parse_kind, Ctx};
use crate::cli::{Format, GetArgs};
use crate::error::{CliError, CliResult};
use crate::output::{age, print, table};
use gw_proto::manifest;
use gw_proto::model::{self, Kind, Object, Spec};

/// Runs `get`.
pub async fn run(ctx: &Ctx, a: GetArgs) -> CliResult<u8> {
    match a.kind.as_str() {
        "endpoints" | "endpoint" | "ep" => {
            return super::endpoints::list(ctx, a.cluster.or(a.name)).await;
        }
        "proxies" | "proxy" => {
            let args = crate::cli::ProxiesArgs {
                node_cluster: None,
                all: false,
            };
            return super::fleet::proxies(ctx, args).await;
        }
        _ => {}
    }
    let kind = parse_kind(&a.kind)?;
    let c = ctx.client().await?;
    let objs = match &a.name {
        Some(name) => {
            let key = objects::key(kind, ctx.tenant.as_deref(), name)?;
            match objects::get(&c, &key).await? {
                Some(o) => vec![o],
                None => return Err(CliError::other(format!("{key} not found"))),
            }
        }
        None => objects::list(&c, kind, ctx.tenant.as_deref()).await?,
    };
    render(ctx.output, kind, &objs, a.name.is_some());
    Ok(0)
}

/// Prints objects in `format`.
pub fn render(format: Format, kind: Kind, objs: &[Object], single: bool) {
    match format {
        Format::Yaml => print!("{}", manifest::to_yaml(objs)),
        Format::Json => {
            let values: Vec<_> = objs.iter().map(manifest::to_value).collect();
            let v = if single && values.len() == 1 {
                values[0].clone()
            } else {
                serde_json::Value::Array(values)
            };
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
        Format::Table | Format::Wide => {
            if objs.is_empty() {
                eprintln!("No {kind}s found.");
                return;
            }
            print(&rows(kind, objs, format == Format::Wide));
        }
    }
}

fn d(x: std::time::Duration) -> String {
    gw_proto::model::format_duration(x)
}

/// `prefix /users`, `path /x`, `regex ^/u/`.
pub fn path_match(m: &model::RouteMatch) -> String {
    if let Some(p) = &m.path {
        format!("path {p}")
    } else if let Some(p) = &m.path_regex {
        format!("regex {p}")
    } else {
        format!("prefix {}", m.path_prefix.as_deref().unwrap_or("/"))
    }
}

/// `users-svc` or `orders-svc=90,users-svc=10`.
pub fn targets(r: &model::RouteSpec) -> String {
    match &r.cluster {
        Some(c) => c.clone(),
        None => r
            .weighted_clusters
            .iter()
            .map(|w| format!("{}={}", w.cluster, w.weight))
            .collect::<Vec<_>>()
            .join(","),
    }
}

fn rows(kind: Kind, objs: &[Object], wide: bool) -> comfy_table::Table {
    let headers: Vec<&str> = match (kind, wide) {
        (Kind::Tenant, _) => vec!["NAME", "DISPLAY NAME", "VERSION", "AGE"],
        (Kind::Listener, _) => vec!["NAME", "NODE CLUSTER", "ADDRESS", "PORT", "AGE"],
        (Kind::Cluster, false) => vec!["TENANT", "NAME", "LB", "ENDPOINTS", "AGE"],
        (Kind::Cluster, true) => {
            vec![
                "TENANT",
                "NAME",
                "LB",
                "ENDPOINTS",
                "CONNECT TIMEOUT",
                "HEALTH CHECK",
                "BREAKER",
                "FALLBACK",
                "VERSION",
                "AGE",
            ]
        }
        (Kind::Route, false) => vec!["TENANT", "NAME", "HOSTS", "MATCH", "CLUSTERS", "AGE"],
        (Kind::Route, true) => vec![
            "TENANT", "NAME", "HOSTS", "MATCH", "METHODS", "CLUSTERS", "TIMEOUT", "RETRY",
            "VERSION", "AGE",
        ],
        (Kind::AlertRule, _) => vec![
            "TENANT",
            "NAME",
            "METRIC",
            "SCOPE",
            "THRESHOLD",
            "WINDOW",
            "FOR",
            "WEBHOOK",
            "AGE",
        ],
    };
    let mut t = table(&headers);
    for o in objs {
        let m = &o.meta;
        let row: Vec<String> = match &o.spec {
            Spec::Tenant(s) => vec![
                m.name.clone(),
                s.display_name.clone(),
                m.resource_version.to_string(),
                age(m.created_at_ms),
            ],
            Spec::Listener(s) => {
                vec![
                    m.name.clone(),
                    s.node_cluster.clone(),
                    s.address.clone(),
                    s.port.to_string(),
                    age(m.created_at_ms),
                ]
            }
            Spec::Cluster(s) => {
                let mut r = vec![
                    m.tenant.clone(),
                    m.name.clone(),
                    s.lb.as_str().into(),
                    s.endpoints.len().to_string(),
                ];
                if wide {
                    let hc = match &s.health_check {
                        Some(h) => format!(
                            "{} every {}",
                            h.path.as_deref().unwrap_or("tcp"),
                            d(h.interval)
                        ),
                        None => "-".into(),
                    };
                    let cb = &s.circuit_breaker;
                    r.extend([
                        d(s.connect_timeout),
                        hc,
                        format!(
                            "{}x/{}%/{}",
                            cb.consecutive_failures,
                            (cb.failure_rate_threshold * 100.0).round(),
                            d(cb.open_timeout)
                        ),
                        s.fallback_cluster.clone().unwrap_or_else(|| "-".into()),
                        m.resource_version.to_string(),
                    ]);
                }
                r.push(age(m.created_at_ms));
                r
            }
            Spec::Route(s) => {
                let hosts = if s.match_.hosts.is_empty() {
                    "*".into()
                } else {
                    s.match_.hosts.join(",")
                };
                let mut r = vec![
                    m.tenant.clone(),
                    m.name.clone(),
                    hosts,
                    path_match(&s.match_),
                ];
                if wide {
                    let methods = if s.match_.methods.is_empty() {
                        "*".into()
                    } else {
                        s.match_.methods.join(",")
                    };
                    r.push(methods);
                }
                r.push(targets(s));
                if wide {
                    let retry = match &s.retry {
                        Some(x) => format!("{}x on {}", x.attempts, x.on.join(",")),
                        None => "-".into(),
                    };
                    r.extend([d(s.timeout), retry, m.resource_version.to_string()]);
                }
                r.push(age(m.created_at_ms));
                r
            }
            Spec::AlertRule(s) => {
                let threshold = match s.threshold {
                    model::Threshold::Number(n) => n.to_string(),
                    model::Threshold::Duration(x) => d(x),
                };
                vec![
                    m.tenant.clone(),
                    m.name.clone(),
                    s.metric.as_str().into(),
                    s.scope.key(&m.tenant),
                    threshold,
                    d(s.window),
                    d(s.for_),
                    s.webhook
                        .as_ref()
                        .map_or_else(|| "-".into(), |w| w.url.clone()),
                    age(m.created_at_ms),
                ]
            }
        };
        t.add_row(row);
    }
    t
}
