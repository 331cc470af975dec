//! gw-proxy end to end: a real control plane, real upstreams, the proxy on real sockets.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{
    admin_json, apply, client, eventually, free_port, get, named, send, HttpClient, Upstream,
};
use gw_control_plane::server::{Config, ControlPlane};
use gw_proxy::server::{Proxy, ProxyConfig};
use gw_proxy::xds::Mode;
use std::collections::HashMap;
use std::net::SocketAddr;

fn manifest(a: &Upstream, b: &Upstream, c: &Upstream) -> String {
    format!(
        r#"
apiVersion: gw/v1
kind: Tenant
metadata: {{name: acme}}
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: users, tenant: acme}}
spec:
  endpoints: [{{address: 127.0.0.1, port: {a}}}, {{address: 127.0.0.1, port: {b}}}]
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: orders, tenant: acme}}
spec:
  endpoints: [{{address: 127.0.0.1, port: {c}}}]
---
apiVersion: gw/v1
kind: Route
metadata: {{name: users, tenant: acme}}
spec:
  match: {{pathPrefix: /users}}
  cluster: users
---
apiVersion: gw/v1
kind: Route
metadata: {{name: orders-admin, tenant: acme}}
spec:
  match: {{pathPrefix: /orders, headers: [{{name: x-role, exact: admin}}], methods: [POST]}}
  cluster: users
---
apiVersion: gw/v1
kind: Route
metadata: {{name: orders, tenant: acme}}
spec:
  match: {{pathPrefix: /orders}}
  cluster: orders
  timeout: 300ms
---
apiVersion: gw/v1
kind: Route
metadata: {{name: flaky, tenant: acme}}
spec:
  match: {{pathPrefix: /flaky}}
  cluster: orders
  retry: {{attempts: 3, on: [5xx]}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: echo, tenant: acme}}
spec:
  match: {{pathPrefix: /echo}}
  cluster: orders
---
apiVersion: gw/v1
kind: Route
metadata: {{name: host-only, tenant: acme}}
spec:
  match: {{hosts: [api.acme.test], path: /status/200}}
  cluster: orders
"#,
        a = a.port(),
        b = b.port(),
        c = c.port()
    )
}

/// Waits until the proxy serves the whole manifest: `/ready` alone is not enough, because a
/// control plane may first publish its built-in default listener with no routes (a complete,
/// servable config) before the applied manifest's snapshot.
async fn ready(c: &HttpClient, proxy: &Proxy) {
    let admin = proxy.admin_addr();
    eventually(
        10,
        "proxy ready with the manifest's routes",
        || async move {
            let dump: serde_json::Value =
                serde_json::from_slice(&get(c, admin, "/config_dump").await.body).ok()?;
            (dump["ready"] == true && dump["routes"].as_u64() >= Some(MANIFEST_ROUTES))
                .then_some(())
        },
    )
    .await;
}

/// Routes in [`manifest`].
const MANIFEST_ROUTES: u64 = 6;

struct World {
    cp: ControlPlane,
    proxy: Proxy,
    ups: [Upstream; 3],
    c: HttpClient,
}

async fn world(mode: Mode) -> World {
    let cp = ControlPlane::start(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    apply(&cp, &manifest(&ups[0], &ups[1], &ups[2])).await;
    let mut cfg = ProxyConfig::for_tests(Some(format!("http://{}", cp.grpc_addr())), "edge-1");
    cfg.mode = mode;
    let proxy = Proxy::start(cfg).await.unwrap();
    let c = client();
    ready(&c, &proxy).await;
    World { cp, proxy, ups, c }
}

async fn routes_and_balances(mode: Mode) {
    let w = world(mode).await;
    let p = w.proxy.listen_addr();
    let mut seen = HashMap::new();
    for _ in 0..20 {
        let r = get(&w.c, p, "/users/1").await;
        assert_eq!(r.status, 200);
        *seen.entry(r.upstream).or_insert(0) += 1;
    }
    assert_eq!(
        seen.get("a"),
        Some(&10),
        "round robin spreads evenly: {seen:?}"
    );
    assert_eq!(seen.get("b"), Some(&10));
    assert_eq!(get(&w.c, p, "/orders/1").await.upstream, "c");
    let admin_post = send(
        &w.c,
        p,
        "POST",
        "/orders/1",
        &[("x-role", "admin")],
        Bytes::new(),
    )
    .await;
    assert!(
        ["a", "b"].contains(&admin_post.upstream.as_str()),
        "header + method match"
    );
    let get_admin = send(
        &w.c,
        p,
        "GET",
        "/orders/1",
        &[("x-role", "admin")],
        Bytes::new(),
    )
    .await;
    assert_eq!(get_admin.upstream, "c", "method must match too");
    assert_eq!(get(&w.c, p, "/nothing").await.status, 404);
    let host = send(
        &w.c,
        p,
        "GET",
        "/status/200",
        &[("host", "api.acme.test")],
        Bytes::new(),
    )
    .await;
    assert_eq!((host.status, host.upstream.as_str()), (200, "c"));
    let r = get(&w.c, p, "/users/1").await;
    assert!(
        r.headers.contains_key("x-seen-x-request-id"),
        "x-request-id generated"
    );
    assert_eq!(r.headers["x-seen-x-forwarded-for"], "127.0.0.1");
    let kept = send(
        &w.c,
        p,
        "GET",
        "/users/1",
        &[("x-request-id", "abc")],
        Bytes::new(),
    )
    .await;
    assert_eq!(kept.headers["x-seen-x-request-id"], "abc");
    w.proxy.shutdown().await;
    w.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_and_balances_over_delta_xds() {
    routes_and_balances(Mode::Delta).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_and_balances_over_sotw_xds() {
    routes_and_balances(Mode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn timeouts_retries_and_streaming_bodies() {
    let w = world(Mode::Delta).await;
    let p = w.proxy.listen_addr();
    // `/flaky/2` fails twice with 503: three retries on 5xx hide it from the client.
    let before = w.ups[2].hits.load(std::sync::atomic::Ordering::SeqCst);
    let flaky = get(&w.c, p, "/flaky/2").await;
    assert_eq!(flaky.status, 200, "retried past two 503s");
    assert_eq!(
        w.ups[2].hits.load(std::sync::atomic::Ordering::SeqCst) - before,
        3
    );
    // A 4 MiB body streams through and back unchanged.
    let big: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let echo = send(&w.c, p, "POST", "/echo", &[], Bytes::from(big.clone())).await;
    assert_eq!(echo.status, 200);
    assert_eq!(echo.body.len(), big.len());
    assert!(echo.body == big, "body intact");
    w.proxy.shutdown().await;
    w.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn per_route_timeout_gives_504() {
    let w = world(Mode::Delta).await;
    let p = w.proxy.listen_addr();
    apply(
        &w.cp,
        "apiVersion: gw/v1\nkind: Route\nmetadata: {name: slow, tenant: acme}\nspec: {match: {pathPrefix: /slow}, cluster: orders, timeout: 200ms}\n",
    )
    .await;
    let c = &w.c;
    let r = eventually(10, "slow route", || async move {
        let r = get(c, p, "/slow/3000").await;
        (r.status != 404).then_some(r)
    })
    .await;
    assert_eq!(r.status, 504);
    w.proxy.shutdown().await;
    w.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_changes_follow_without_restart() {
    let w = world(Mode::Delta).await;
    let p = w.proxy.listen_addr();
    // Move /users to the orders cluster.
    apply(&w.cp, "apiVersion: gw/v1\nkind: Route\nmetadata: {name: users, tenant: acme}\nspec: {match: {pathPrefix: /users}, cluster: orders}\n").await;
    let c = &w.c;
    eventually(10, "route change", || async move {
        (get(c, p, "/users/1").await.upstream == "c").then_some(())
    })
    .await;
    // Register a new endpoint for orders; traffic reaches it.
    let d = Upstream::start("d").await;
    let ep = gw_proto::model::Endpoint {
        key: gw_proto::model::EndpointKey {
            tenant: "acme".into(),
            cluster: "orders".into(),
            address: "127.0.0.1".into(),
            port: u32::from(d.port()),
        },
        weight: 1,
        metadata: Default::default(),
        source: gw_proto::model::EndpointSource::Registry,
        ttl: None,
        expires_at_ms: None,
        registered_at_ms: 0,
        resource_version: 0,
        healthy: true,
    };
    w.cp.store().register_endpoint(ep).await.unwrap();
    eventually(10, "new endpoint", || async move {
        (get(c, p, "/orders/1").await.upstream == "d").then_some(())
    })
    .await;
    w.proxy.shutdown().await;
    w.cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn keeps_serving_without_control_plane_and_starts_from_cache() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("u.sqlite").display());
    // It comes back on the same address later: a port from below the ephemeral range, which
    // no port-0 bind or outgoing connection can take in between.
    let cp = ControlPlane::start(Config {
        grpc: ([127, 0, 0, 1], free_port()).into(),
        ..Config::for_tests(db.clone())
    })
    .await
    .unwrap();
    let grpc = cp.grpc_addr();
    let ups = [
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    ];
    apply(&cp, &manifest(&ups[0], &ups[1], &ups[2])).await;
    let cache = dir.path().join("cache");
    let mut cfg = ProxyConfig::for_tests(Some(format!("http://{grpc}")), "edge-lkg");
    cfg.cache_dir = Some(cache.clone());
    let proxy = Proxy::start(cfg.clone()).await.unwrap();
    let c = client();
    ready(&c, &proxy).await;
    let p = proxy.listen_addr();
    cp.shutdown().await;
    // Control plane gone: last-known-good config keeps serving.
    for _ in 0..5 {
        let r = get(&c, p, "/orders/1").await;
        assert_eq!(r.upstream, "c", "{} {:?}", r.status, r.body);
    }
    // A proxy started now, with no control plane, serves from the cache.
    let fresh = Proxy::start(ProxyConfig {
        node_id: "edge-cold".into(),
        ..cfg.clone()
    })
    .await
    .unwrap();
    assert_eq!(
        get(&c, fresh.admin_addr(), "/ready").await.status,
        200,
        "ready from cache at once"
    );
    assert_eq!(
        get(&c, fresh.listen_addr(), "/orders/1").await.upstream,
        "c"
    );
    // The control plane returns on the same address with a change: the proxy resyncs.
    let back = ControlPlane::start(Config {
        grpc,
        ..Config::for_tests(db)
    })
    .await
    .unwrap();
    apply(&back, "apiVersion: gw/v1\nkind: Route\nmetadata: {name: orders, tenant: acme}\nspec: {match: {pathPrefix: /orders}, cluster: users}\n").await;
    eventually(30, "resync after reconnect", || async {
        let u = get(&c, p, "/orders/1").await.upstream;
        (u == "a" || u == "b").then_some(())
    })
    .await;
    fresh.shutdown().await;
    proxy.shutdown().await;
    back.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_endpoints_report_state() {
    let w = world(Mode::Delta).await;
    let p = w.proxy.listen_addr();
    for _ in 0..4 {
        get(&w.c, p, "/users/1").await;
    }
    let a: SocketAddr = w.proxy.admin_addr();
    // A request is counted when its exchange ends, which can be just after the client has the
    // whole response: the last one may land a moment after the client moved on.
    let m = eventually(5, "all four requests counted", || async {
        let m = String::from_utf8(get(&w.c, a, "/metrics").await.body.to_vec()).unwrap();
        let counted = m
            .contains(r#"gw_rq_total{kind="route",tenant="acme",name="users",class="2xx"} 4"#)
            && m.contains(
                r#"gw_rq_duration_ms_count{kind="cluster",tenant="acme",name="users"} 4"#,
            );
        counted.then_some(m)
    })
    .await;
    assert!(m.contains("gw_xds_connected 1"));
    let clusters = admin_json(&w.c, a, "/clusters").await;
    let users = named(&clusters, "acme/users");
    assert_eq!(users["endpoints"].as_array().unwrap().len(), 2);
    let dump = admin_json(&w.c, a, "/config_dump").await;
    assert_eq!(dump["ready"], true);
    assert_eq!(dump["listener"], "ingress");
    w.proxy.shutdown().await;
    w.cp.shutdown().await;
}
