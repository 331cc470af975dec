//! Conformance: the same manifest served by a stock Envoy 1.40 and by gw-proxy, both configured
//! over xDS by one control plane, answers every deterministic request the same way — same
//! upstream, same status code.

#![allow(clippy::unwrap_used)]

use gw_e2e::envoy::{self, Envoy, Mode};
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, dead_port, free_port, http, wait};
use gw_proxy::server::{Proxy, ProxyConfig};
use std::net::SocketAddr;
use std::time::Duration;

fn manifest(port: u16, a: &Upstream, b: &Upstream, c: &Upstream, dead: u16) -> String {
    format!(
        r#"
apiVersion: gw/v1
kind: Tenant
metadata: {{name: acme}}
---
apiVersion: gw/v1
kind: Listener
metadata: {{name: edge}}
spec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}}}
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: a, tenant: acme}}
spec: {{endpoints: [{{address: 127.0.0.1, port: {pa}}}]}}
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: b, tenant: acme}}
spec: {{endpoints: [{{address: 127.0.0.1, port: {pb}}}]}}
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: c, tenant: acme}}
spec: {{endpoints: [{{address: 127.0.0.1, port: {pc}}}]}}
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: down, tenant: acme}}
spec: {{connectTimeout: 1s, endpoints: [{{address: 127.0.0.1, port: {dead}}}]}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: exact, tenant: acme}}
spec: {{match: {{hosts: [api.acme.test], path: /exact}}, cluster: c}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: regex, tenant: acme}}
spec: {{match: {{hosts: [api.acme.test], pathRegex: "/items/[0-9]+"}}, cluster: c}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: admin, tenant: acme}}
spec: {{match: {{hosts: [api.acme.test], pathPrefix: /users, headers: [{{name: x-role, exact: admin}}]}}, cluster: b}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: writes, tenant: acme}}
spec: {{match: {{hosts: [api.acme.test], pathPrefix: /users, methods: [POST, PUT]}}, cluster: c}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: users, tenant: acme}}
spec: {{match: {{hosts: [api.acme.test], pathPrefix: /users}}, cluster: a}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: wild, tenant: acme}}
spec: {{match: {{hosts: ["*.wild.test"], pathPrefix: /}}, cluster: b}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: broken, tenant: acme}}
spec: {{match: {{hosts: [api.acme.test], pathPrefix: /down}}, cluster: down}}
"#,
        pa = a.port(),
        pb = b.port(),
        pc = c.port()
    )
}

/// (method, host, path, headers)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    ("GET", "api.acme.test", "/users/1", &[]),
    ("GET", "api.acme.test", "/users/1", &[("x-role", "admin")]),
    ("GET", "api.acme.test", "/users/1", &[("x-role", "viewer")]),
    ("POST", "api.acme.test", "/users", &[]),
    ("PUT", "api.acme.test", "/users/9", &[]),
    ("DELETE", "api.acme.test", "/users/9", &[]),
    ("GET", "api.acme.test", "/exact", &[]),
    ("GET", "api.acme.test", "/exact/more", &[]),
    ("GET", "api.acme.test", "/items/42", &[]),
    ("GET", "api.acme.test", "/items/abc", &[]),
    ("GET", "x.wild.test", "/anything", &[]),
    ("GET", "deep.x.wild.test", "/anything", &[]),
    ("GET", "other.test", "/users/1", &[]),
    ("GET", "api.acme.test", "/nothing", &[]),
    ("GET", "api.acme.test", "/down/1", &[]),
];

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_answer_alike() {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let (a, b, c) = (
        Upstream::start("a").await.unwrap(),
        Upstream::start("b").await.unwrap(),
        Upstream::start("c").await.unwrap(),
    );
    let unanswered = dead_port();
    let dead = unanswered.port();
    let port = free_port();
    control::apply(&cp, &manifest(port, &a, &b, &c, dead))
        .await
        .unwrap();

    let envoy = Envoy::start(
        &bin,
        cp.grpc_addr(),
        "conformance-envoy",
        "edge",
        Mode::Delta,
    )
    .await
    .unwrap();
    envoy.wait_ready().await.unwrap();
    let envoy_addr = SocketAddr::from(([127, 0, 0, 1], port));

    let mut cfg =
        ProxyConfig::for_tests(Some(format!("http://{}", cp.grpc_addr())), "conformance-gw");
    cfg.node_cluster = "edge".into();
    let gw = Proxy::start(cfg).await.unwrap();
    let admin = gw.admin_addr();
    wait::until("gw-proxy ready", Duration::from_secs(20), || async {
        (http::get(admin, "admin", "/ready").await.ok()?.status == 200).then_some(())
    })
    .await
    .unwrap();
    wait::until("Envoy serving", Duration::from_secs(20), || async {
        (http::get(envoy_addr, "api.acme.test", "/users/1")
            .await
            .ok()?
            .status
            == 200)
            .then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));

    let mut mismatches = Vec::new();
    let mut seen = Vec::new();
    for (method, host, path, headers) in CASES {
        let e = http::send(envoy_addr, method, host, path, headers)
            .await
            .unwrap();
        let g = http::send(gw.listen_addr(), method, host, path, headers)
            .await
            .unwrap();
        let upstream = |r: &http::Reply| {
            if r.status == 200 {
                r.body.clone()
            } else {
                String::new()
            }
        };
        seen.push((g.status, upstream(&g)));
        if (e.status, upstream(&e)) != (g.status, upstream(&g)) {
            mismatches.push(format!(
                "{method} {host}{path} {headers:?}: envoy {} {:?}, gw-proxy {} {:?}",
                e.status,
                upstream(&e),
                g.status,
                upstream(&g)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "Envoy and gw-proxy disagree:\n{}",
        mismatches.join("\n")
    );
    // And both agree with what the manifest says (so agreeing on nothing cannot pass).
    let want: Vec<(u16, &str)> = vec![
        (200, "a"),
        (200, "b"),
        (200, "a"),
        (200, "c"),
        (200, "c"),
        (200, "a"),
        (200, "c"),
        (404, ""),
        (200, "c"),
        (404, ""),
        (200, "b"),
        (200, "b"),
        (404, ""),
        (404, ""),
        (503, ""),
    ];
    let got: Vec<(u16, &str)> = seen.iter().map(|(s, u)| (*s, u.as_str())).collect();
    assert_eq!(got, want);
    gw.shutdown().await;
    drop(envoy);
    cp.shutdown().await;
}
