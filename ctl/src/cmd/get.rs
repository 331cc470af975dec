//! `gwctl get KIND [NAME]`: tables like kubectl, or manifests (`-o yaml` re-applies as is).

use super::{objects, parse_kind, Ctx};
use crate::cli::{Format, GetArgs};
use crate::error::{CliError, CliResult};
use crate::output::{self, age, table};
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
    if objs.is_empty()
        && kind.is_tenant_scoped()
        && matches!(ctx.output, Format::Table | Format::Wide)
    {
        if let Some(t) = &ctx.tenant {
            eprintln!("No {} found in tenant {t}.", plural(kind));
            return Ok(0);
        }
    }
    render(ctx.output, kind, &objs, a.name.is_some());
    Ok(0)
}

/// `routes`, `alert rules`.
fn plural(kind: Kind) -> String {
    match kind {
        Kind::AlertRule => "alert rules".to_owned(),
        k => format!("{k}s"),
    }
}

/// Prints objects in `format`.
pub fn render(format: Format, kind: Kind, objs: &[Object], single: bool) {
    if objs.is_empty() && matches!(format, Format::Table | Format::Wide) {
        eprintln!("No {} found.", plural(kind));
        return;
    }
    print!("{}", text(format, kind, objs, single));
}

/// Objects as text in `format`: `-o yaml` is a multi-document manifest `apply` takes back.
pub fn text(format: Format, kind: Kind, objs: &[Object], single: bool) -> String {
    match format {
        Format::Yaml => manifest::to_yaml(objs),
        Format::Json => {
            let values: Vec<_> = objs.iter().map(manifest::to_value).collect();
            let v = if single && values.len() == 1 {
                values[0].clone()
            } else {
                serde_json::Value::Array(values)
            };
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Table | Format::Wide => output::text(&rows(kind, objs, format == Format::Wide)),
    }
}

fn d(x: std::time::Duration) -> String {
    gw_proto::model::format_duration(x)
}

/// A route's timeout: `none` for `0s`.
pub fn route_timeout(x: std::time::Duration) -> String {
    match x.is_zero() {
        true => "none".into(),
        false => d(x),
    }
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
    if let Some(d) = &r.direct_response {
        return format!("direct {}", d.status);
    }
    if let Some(x) = &r.redirect {
        return format!("redirect {}", x.code);
    }
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
        (Kind::Listener, _) => vec![
            "NAME",
            "NODE CLUSTER",
            "ADDRESS",
            "PORT",
            "IDLE TIMEOUT",
            "HEADERS TIMEOUT",
            "MAX CONN DURATION",
            "STREAM IDLE TIMEOUT",
            "TLS",
            "AGE",
        ],
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
                    match s.idle_timeout.is_zero() {
                        true => "never".into(),
                        false => d(s.idle_timeout),
                    },
                    match s.request_headers_timeout.is_zero() {
                        true => "-".into(),
                        false => d(s.request_headers_timeout),
                    },
                    match s.max_connection_duration.is_zero() {
                        true => "-".into(),
                        false => d(s.max_connection_duration),
                    },
                    match s.stream_idle_timeout.is_zero() {
                        true => "never".into(),
                        false => d(s.stream_idle_timeout),
                    },
                    match (&s.tls, s.https_redirect) {
                        (Some(t), _) => format!("{} cert(s)", t.certificates.len()),
                        (None, true) => "redirect".into(),
                        (None, false) => "-".into(),
                    },
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
                    r.extend([
                        route_timeout(s.timeout),
                        retry,
                        m.resource_version.to_string(),
                    ]);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn quickstart() -> Vec<Object> {
        let text = include_str!("../../../examples/quickstart.yaml");
        manifest::parse(text)
            .unwrap()
            .into_iter()
            .map(|d| {
                let mut o = d.object;
                o.validate().unwrap();
                o
            })
            .collect()
    }

    fn of(kind: Kind) -> Vec<Object> {
        quickstart()
            .into_iter()
            .filter(|o| o.spec.kind() == kind)
            .collect()
    }

    #[test]
    fn route_tables() {
        assert_eq!(
            text(Format::Table, Kind::Route, &of(Kind::Route), false),
            "\
TENANT  NAME      HOSTS          MATCH           CLUSTERS                    AGE
acme    users     *              prefix /users   users-svc                   -
acme    orders    *              prefix /orders  orders-svc=90,users-svc=10  -
acme    api-host  api.acme.test  path /status    users-svc                   -
"
        );
        assert_eq!(
            text(Format::Wide, Kind::Route, &of(Kind::Route), false),
            "\
TENANT  NAME      HOSTS          MATCH           METHODS   CLUSTERS                    TIMEOUT  RETRY                            VERSION  AGE
acme    users     *              prefix /users   GET,POST  users-svc                   15s      2x on 5xx,connect-failure,reset  0        -
acme    orders    *              prefix /orders  *         orders-svc=90,users-svc=10  5s       -                                0        -
acme    api-host  api.acme.test  path /status    *         users-svc                   15s      -                                0        -
"
        );
    }

    #[test]
    fn a_route_answered_by_the_proxy_says_how() {
        let spec = |yaml: &str| match manifest::parse(&format!(
            "apiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: t}}\nspec: {yaml}\n"
        ))
        .unwrap()
        .remove(0)
        .object
        .spec
        {
            Spec::Route(r) => r,
            _ => panic!("not a route"),
        };
        assert_eq!(
            targets(&spec("{directResponse: {status: 410}}")),
            "direct 410"
        );
        assert_eq!(
            targets(&spec("{redirect: {scheme: https}}")),
            "redirect 301"
        );
        assert_eq!(
            targets(&spec("{redirect: {path: /new, code: 308}}")),
            "redirect 308"
        );
    }

    #[test]
    fn cluster_and_tenant_tables() {
        assert_eq!(
            text(Format::Table, Kind::Cluster, &of(Kind::Cluster), false),
            "\
TENANT  NAME        LB           ENDPOINTS  AGE
acme    users-svc   round_robin  2          -
acme    orders-svc  least_conn   1          -
"
        );
        assert_eq!(
            text(Format::Wide, Kind::Cluster, &of(Kind::Cluster), false),
            "\
TENANT  NAME        LB           ENDPOINTS  CONNECT TIMEOUT  HEALTH CHECK      BREAKER     FALLBACK   VERSION  AGE
acme    users-svc   round_robin  2          1s               /health every 5s  5x/50%/30s  -          0        -
acme    orders-svc  least_conn   1          5s               -                 5x/50%/30s  users-svc  0        -
"
        );
        assert_eq!(
            text(Format::Table, Kind::Tenant, &of(Kind::Tenant), false),
            "NAME  DISPLAY NAME  VERSION  AGE\nacme  ACME Corp     0        -\n"
        );
    }

    #[test]
    fn yaml_is_a_manifest_that_reads_back_the_same() {
        let objs = quickstart();
        let yaml = text(Format::Yaml, Kind::Route, &objs, false);
        assert_eq!(
            yaml.split("---\n").nth(3).unwrap(),
            "\
apiVersion: gw/v1
kind: Route
metadata:
  name: users
  tenant: acme
spec:
  cluster: users-svc
  match:
    headers:
    - exact: acme
      name: x-tenant-id
    methods:
    - GET
    - POST
    pathPrefix: /users
  retry:
    attempts: 2
    on:
    - 5xx
    - connect-failure
    - reset
    perTryTimeout: 2s
  timeout: 15s
"
        );
        let back: Vec<Object> = manifest::parse(&yaml)
            .unwrap()
            .into_iter()
            .map(|d| {
                let mut o = d.object;
                o.validate().unwrap();
                o
            })
            .collect();
        assert_eq!(back, objs);
    }

    #[test]
    fn json_is_one_object_for_one_name_and_a_list_otherwise() {
        let routes = of(Kind::Route);
        let one: serde_json::Value =
            serde_json::from_str(&text(Format::Json, Kind::Route, &routes[..1], true)).unwrap();
        assert_eq!(one["metadata"]["name"], "users");
        assert_eq!(one["spec"]["retry"]["perTryTimeout"], "2s");
        let all: serde_json::Value =
            serde_json::from_str(&text(Format::Json, Kind::Route, &routes, false)).unwrap();
        assert_eq!(all.as_array().map(Vec::len), Some(3));
    }
}
