//! Snapshot tests of `describe` output.

use super::*;
use crate::cmd::describe::{ClusterEndpoints, Report};

fn quickstart(name: &str) -> Object {
    let text = include_str!("../../../../../examples/quickstart.yaml");
    let mut o = gw_proto::manifest::parse(text)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .find(|o| o.meta.name == name)
        .unwrap();
    o.validate().unwrap();
    o.meta.resource_version = 4;
    o.meta.created_revision = 2;
    o
}

fn ep(address: &str, port: u32, weight: u32, source: pb::EndpointSource) -> pb::Endpoint {
    pb::Endpoint {
        address: address.into(),
        port,
        weight,
        source: source as i32,
        ..Default::default()
    }
}

fn state(node: &str, endpoint: &str, healthy: bool, breaker: &str) -> pb::EndpointState {
    pb::EndpointState {
        node: node.into(),
        endpoint: endpoint.into(),
        healthy,
        breaker: breaker.into(),
        ..Default::default()
    }
}

fn users_svc() -> ClusterEndpoints {
    ClusterEndpoints {
        name: "users-svc".into(),
        endpoints: vec![
            ep("127.0.0.1", 18081, 1, pb::EndpointSource::Static),
            ep("127.0.0.1", 18082, 1, pb::EndpointSource::Static),
            ep("10.0.0.7", 9000, 3, pb::EndpointSource::Registry),
        ],
        states: vec![
            state("edge-1", "127.0.0.1:18081", true, "closed"),
            state("edge-2", "127.0.0.1:18081", true, "closed"),
            state("edge-1", "127.0.0.1:18082", false, "open"),
            state("edge-2", "127.0.0.1:18082", true, "half_open"),
        ],
    }
}

#[test]
fn route_with_endpoints_stats_and_events() {
    let r = Report {
        object: quickstart("users"),
        clusters: vec![users_svc()],
        stats: Some(Some(pb::StatsRow {
            requests: 1200,
            success_rate: 0.995,
            status_5xx: 6,
            upstream_errors: 2,
            p50_ms: 3.25,
            p99_ms: 41.0,
            ..Default::default()
        })),
        owned: vec![],
        events: vec![pb::Event {
            at: Some(prost_types::Timestamp {
                seconds: 1_763_856_000,
                nanos: 0,
            }),
            kind: "config_nacked".into(),
            severity: "warning".into(),
            object: "route/acme/users".into(),
            message: "edge-1 rejected RDS".into(),
            ..Default::default()
        }],
    };
    assert_eq!(
        report(&r, false),
        "\
Kind:          Route
Name:          users
Tenant:        acme
Version:       4 (created at revision 2)
Age:           -
Hosts:         *
Match:         prefix /users
Methods:       GET, POST
Header:        x-tenant-id = acme
Clusters:      users-svc
Timeout:       15s
Retry:         2 attempts on 5xx, connect-failure, reset, 2s per try

Cluster users-svc: 3 endpoint(s)
  ENDPOINT         WEIGHT  SOURCE    HEALTH     BREAKER  REPORTED BY
  127.0.0.1:18081  1       static    healthy    closed   2 proxies
  127.0.0.1:18082  1       static    unhealthy  open     2 proxies
  10.0.0.7:9000    3       registry  -          -        none

Stats (15m):   1200 requests, 99.50% success, 5xx 6, upstream errors 2, p50 3.2ms p99 41.0ms

Events (1h):
  2025-11-23T00:00:00.000Z  warning  config_nacked        edge-1 rejected RDS
"
    );
}

#[test]
fn cluster_without_traffic_or_events() {
    let r = Report {
        object: quickstart("orders-svc"),
        clusters: vec![ClusterEndpoints {
            name: "orders-svc".into(),
            endpoints: vec![ep("127.0.0.1", 18082, 3, pb::EndpointSource::Static)],
            states: vec![],
        }],
        stats: Some(None),
        owned: vec![],
        events: vec![],
    };
    assert_eq!(
        report(&r, false),
        "\
Kind:          Cluster
Name:          orders-svc
Tenant:        acme
Version:       4 (created at revision 2)
Age:           -
LB:            least_conn
Connect:       5s
Breaker:       opens after 5 failures or 50% failing (min 20 requests), open 30s, 3 probes to close
Failures:      5xx, connect-failure, reset, timeout
Limits:        1024 connections, 1024 pending, 1024 requests, 3 retries
Fallback:      users-svc
Protocol:      http1

Cluster orders-svc: 1 endpoint(s)
  ENDPOINT         WEIGHT  SOURCE  HEALTH  BREAKER  REPORTED BY
  127.0.0.1:18082  3       static  -       -        none

Stats (15m):   no traffic

Events (1h):   none
"
    );
}

#[test]
fn tenant_lists_what_it_owns() {
    let r = Report {
        object: quickstart("acme"),
        clusters: vec![],
        stats: None,
        owned: vec![
            (Kind::Cluster, vec!["orders-svc".into(), "users-svc".into()]),
            (Kind::Route, vec!["users".into()]),
            (Kind::AlertRule, vec![]),
        ],
        events: vec![],
    };
    assert_eq!(
        report(&r, false),
        "\
Kind:          Tenant
Name:          acme
Version:       4 (created at revision 2)
Age:           -
Display name:  ACME Corp
Clusters:      2 (orders-svc, users-svc)
Routes:        1 (users)
Alert rules:   none

Events (1h):   none
"
    );
}

#[test]
fn endpoint_as_each_proxy_sees_it() {
    let mut c = users_svc();
    c.endpoints[1].metadata.insert("zone".into(), "a".into());
    let out = endpoint("acme", &c, "127.0.0.1:18082", None, false);
    assert_eq!(
        out,
        "\
Endpoint:      127.0.0.1:18082
Cluster:       acme/users-svc
Weight:        1
Source:        static
Metadata:      zone=a

PROXY   HEALTH     BREAKER    REPORTED
edge-1  unhealthy  open       -
edge-2  healthy    half_open  -

Stats (15m):   no traffic
"
    );
}

/// `s` without ANSI colour sequences.
fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn colours_only_when_asked_and_columns_stay_aligned() {
    let r = Report {
        object: quickstart("users-svc"),
        clusters: vec![users_svc()],
        stats: None,
        owned: vec![],
        events: vec![],
    };
    let plain = report(&r, false);
    let coloured = report(&r, true);
    assert!(!plain.contains('\x1b'));
    assert!(coloured.contains('\x1b'));
    assert_eq!(strip_ansi(&coloured), plain);
}

#[test]
fn upstream_tls_in_one_line() {
    use gw_proto::model::UpstreamTls;
    let pem = include_str!("../../../../../proto/src/model/testdata/ca.pem");
    let cases = [
        (
            UpstreamTls {
                sni: "api.example.com".into(),
                ca: pem.repeat(2),
                ..Default::default()
            },
            "SNI api.example.com, verified against 2 CA certificate(s), name checked",
        ),
        (
            UpstreamTls::default(),
            "no SNI, verified against the system's CAs (/etc/ssl/certs/ca-certificates.crt)",
        ),
        (
            UpstreamTls {
                sni: "a.test".into(),
                insecure_skip_verify: true,
                ..Default::default()
            },
            "SNI a.test, certificates NOT verified",
        ),
    ];
    for (tls, want) in cases {
        assert_eq!(tls_summary(&tls), want);
    }
    let mut o = quickstart("orders-svc");
    if let Spec::Cluster(c) = &mut o.spec {
        c.tls = Some(UpstreamTls::default());
    }
    let r = Report {
        object: o,
        clusters: vec![],
        stats: None,
        owned: vec![],
        events: vec![],
    };
    assert!(report(&r, false).contains("\nTLS:           no SNI, verified"));
}

#[test]
fn a_listeners_private_keys_are_not_shown() {
    let text = "apiVersion: gw/v1\nkind: Listener\nmetadata: {name: edge}\n\
                spec: {port: 8443, tls: {certificates: [{certChain: CERT, privateKey: \
                \"-----BEGIN PRIVATE KEY-----\\nsecret\\n-----END PRIVATE KEY-----\\n\"}]}}\n";
    let object = gw_proto::manifest::parse(text).unwrap().remove(0).object;
    let r = Report {
        object,
        clusters: vec![],
        stats: None,
        owned: vec![],
        events: vec![],
    };
    let out = report(&r, false);
    assert!(out.contains("certChain: CERT"), "{out}");
    assert!(out.contains("privateKey: (hidden)"), "{out}");
    assert!(!out.contains("secret"), "{out}");
}

#[test]
fn a_routes_rewrite_in_one_line() {
    let with = |spec: &str| {
        let text = format!(
            "apiVersion: gw/v1\nkind: Route\nmetadata: {{name: api, tenant: acme}}\nspec: {spec}\n"
        );
        let mut object = gw_proto::manifest::parse(&text).unwrap().remove(0).object;
        object.validate().unwrap();
        report(
            &Report {
                object,
                clusters: vec![],
                stats: None,
                owned: vec![],
                events: vec![],
            },
            false,
        )
    };
    let out = with(
        "{match: {pathPrefix: /api/}, cluster: svc, rewrite: {prefix: /}, \
         requestHeaders: {set: {x-a: '1'}, remove: [x-c]}, responseHeaders: {add: {x-b: '2'}}}",
    );
    assert!(out.contains("Rewrite:       /api/ -> /\n"), "{out}");
    assert!(
        out.contains("Req headers:   set x-a=1; remove x-c\n"),
        "{out}"
    );
    assert!(out.contains("Resp headers:  add x-b=2\n"), "{out}");
    let out = with(
        "{match: {pathPrefix: /api/}, cluster: svc, rewrite: {prefix: /, host: users.internal}}",
    );
    assert!(
        out.contains("Rewrite:       /api/ -> /, host users.internal\n"),
        "{out}"
    );
    // A redirect says what it changes; no timeout (nothing goes upstream).
    let out = with(
        "{match: {pathPrefix: /old/}, redirect: {scheme: https, prefix: /new/, stripQuery: true, \
         code: 308}}",
    );
    assert!(
        out.contains("Redirect:      308: scheme https, /old/ -> /new/, query dropped\n"),
        "{out}"
    );
    assert!(!out.contains("Timeout:"), "{out}");
}
