//! Stock Envoy 1.40 against the real control plane, in SotW and in Delta mode: routing by host,
//! path, header and method; weighted split; round robin; a route change and an endpoint change
//! followed without restart; the proxy shown as SYNCED by the Fleet API.

#![allow(clippy::unwrap_used)]

use gw_e2e::envoy::{self, Envoy, Mode};
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, free_port, http, wait};
use gw_proto::gateway::v1::fleet_client::FleetClient;
use gw_proto::gateway::v1::{ListProxiesRequest, SyncStatus};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn manifest(port: u16, a: &Upstream, b: &Upstream, c: &Upstream, d: &Upstream) -> String {
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
metadata: {{name: users-svc, tenant: acme}}
spec:
  lb: round_robin
  connectTimeout: 1s
  endpoints: [{{address: 127.0.0.1, port: {pa}}}, {{address: 127.0.0.1, port: {pb}}}]
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: orders-svc, tenant: acme}}
spec:
  endpoints: [{{address: 127.0.0.1, port: {pc}}}]
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: canary, tenant: acme}}
spec:
  endpoints: [{{address: 127.0.0.1, port: {pd}}}]
---
apiVersion: gw/v1
kind: Route
metadata: {{name: users, tenant: acme}}
spec:
  match: {{hosts: [api.acme.test], pathPrefix: /users, methods: [GET]}}
  cluster: users-svc
  timeout: 5s
  retry: {{attempts: 2, on: [5xx, connect-failure], perTryTimeout: 1s}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: users-write, tenant: acme}}
spec:
  match: {{hosts: [api.acme.test], pathPrefix: /users, methods: [POST, PUT]}}
  cluster: orders-svc
---
apiVersion: gw/v1
kind: Route
metadata: {{name: orders, tenant: acme}}
spec:
  match: {{pathPrefix: /orders, headers: [{{name: x-tenant-id, exact: acme}}]}}
  cluster: orders-svc
---
apiVersion: gw/v1
kind: Route
metadata: {{name: split, tenant: acme}}
spec:
  match: {{path: /split}}
  weightedClusters: [{{cluster: users-svc, weight: 50}}, {{cluster: canary, weight: 50}}]
"#,
        pa = a.port(),
        pb = b.port(),
        pc = c.port(),
        pd = d.port(),
    )
}

/// Upstream names answering `n` requests.
async fn spread(proxy: SocketAddr, host: &str, path: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let r = http::get(proxy, host, path).await.unwrap();
        assert_eq!(r.status, 200, "{host}{path}: {r:?}");
        *seen.entry(r.body).or_insert(0) += 1;
    }
    seen
}

async fn routing_scenario(mode: Mode) {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let (a, b, c, d) = (
        Upstream::start("a").await.unwrap(),
        Upstream::start("b").await.unwrap(),
        Upstream::start("c").await.unwrap(),
        Upstream::start("d").await.unwrap(),
    );
    let port = free_port();
    control::apply(&cp, &manifest(port, &a, &b, &c, &d))
        .await
        .unwrap();
    let node = format!("edge-{mode:?}").to_lowercase();
    let envoy = Envoy::start(&bin, cp.grpc_addr(), &node, "edge", mode)
        .await
        .unwrap();
    envoy.wait_ready().await.unwrap();
    let proxy = SocketAddr::from(([127, 0, 0, 1], port));

    // Host + path + method.
    let first = wait::until("listener serving /users", LIMIT, || async {
        let r = http::get(proxy, "api.acme.test", "/users/1").await.ok()?;
        (r.status == 200).then_some(r)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert!(["a", "b"].contains(&first.body.as_str()), "{first:?}");
    let rr = spread(proxy, "api.acme.test", "/users", 20).await;
    assert_eq!(
        rr.keys().collect::<Vec<_>>(),
        ["a", "b"],
        "round robin over both: {rr:?}"
    );
    assert!(rr.values().all(|n| *n >= 5), "round robin spreads: {rr:?}");
    assert_eq!(
        http::get(proxy, "other.test", "/users")
            .await
            .unwrap()
            .status,
        404
    );
    let post = http::send(proxy, "POST", "api.acme.test", "/users", &[])
        .await
        .unwrap();
    assert_eq!((post.status, post.body.as_str()), (200, "c"));
    let del = http::send(proxy, "DELETE", "api.acme.test", "/users", &[])
        .await
        .unwrap();
    assert_eq!(del.status, 404, "no route for DELETE");

    // Header match.
    let hdr = [("x-tenant-id", "acme")];
    let o = http::send(proxy, "GET", "any.test", "/orders", &hdr)
        .await
        .unwrap();
    assert_eq!((o.status, o.body.as_str()), (200, "c"));
    assert_eq!(
        http::get(proxy, "any.test", "/orders")
            .await
            .unwrap()
            .status,
        404
    );

    // Weighted split 50/50 between users-svc (a, b) and canary (d).
    let split = spread(proxy, "any.test", "/split", 200).await;
    let canary = split.get("d").copied().unwrap_or(0);
    eprintln!(
        "{mode:?}: split {split:?}, round robin {rr:?}, envoy admin {}",
        envoy.admin
    );
    assert!(
        (60..=140).contains(&canary),
        "about half to canary: {split:?}"
    );

    // Timeout and retry policy made it into Envoy's route.
    let dump = envoy.config_dump().await.unwrap().to_string();
    assert!(
        dump.contains(r#""num_retries":2"#),
        "retry policy in config_dump"
    );
    assert!(
        dump.contains(r#""per_try_timeout":"1s""#),
        "per-try timeout in config_dump"
    );
    assert!(
        dump.contains(r#""timeout":"5s""#),
        "route timeout in config_dump"
    );

    // Route change: users → canary, followed without restart.
    control::apply(
        &cp,
        r#"
apiVersion: gw/v1
kind: Route
metadata: {name: users, tenant: acme}
spec:
  match: {hosts: [api.acme.test], pathPrefix: /users, methods: [GET]}
  cluster: canary
"#,
    )
    .await
    .unwrap();
    wait::until("route change applied", LIMIT, || async {
        let r = http::get(proxy, "api.acme.test", "/users").await.ok()?;
        (r.body == "d").then_some(())
    })
    .await
    .unwrap();

    // Endpoint change: register a second orders endpoint; traffic reaches it.
    let e = Upstream::start("e").await.unwrap();
    control::register(&cp, "acme", "orders-svc", e.port(), 1)
        .await
        .unwrap();
    wait::until("registered endpoint receives traffic", LIMIT, || async {
        let r = http::send(proxy, "GET", "any.test", "/orders", &hdr)
            .await
            .ok()?;
        (r.body == "e").then_some(())
    })
    .await
    .unwrap();

    // Fleet: the proxy is listed, SYNCED, with every type ACKed.
    let mut fleet = FleetClient::connect(format!("http://{}", cp.grpc_addr()))
        .await
        .unwrap();
    let proxy_status = wait::until("proxy SYNCED in Fleet", LIMIT, || {
        let mut fleet = fleet.clone();
        let node = node.clone();
        async move {
            let list = fleet
                .list_proxies(ListProxiesRequest::default())
                .await
                .ok()?
                .into_inner();
            let p = list.proxies.into_iter().find(|p| p.node_id == node)?;
            (p.status == SyncStatus::Synced as i32).then_some(p)
        }
    })
    .await
    .unwrap();
    assert_eq!(proxy_status.node_cluster, "edge");
    let expected = if mode == Mode::Delta { "delta" } else { "sotw" };
    assert_eq!(proxy_status.protocol, expected);
    let types: Vec<_> = proxy_status
        .types
        .iter()
        .map(|t| t.r#type.as_str())
        .collect();
    assert_eq!(types, ["CDS", "EDS", "LDS", "RDS"]);
    assert!(proxy_status
        .types
        .iter()
        .all(|t| !t.acked_version.is_empty() && t.nack.is_none()));
    assert!(
        proxy_status.user_agent.starts_with("envoy"),
        "{}",
        proxy_status.user_agent
    );
    let _ = fleet
        .get_proxy(gw_proto::gateway::v1::GetProxyRequest {
            node_id: node.clone(),
        })
        .await
        .unwrap();

    drop(envoy);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_routes_and_follows_changes() {
    routing_scenario(Mode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_routes_and_follows_changes() {
    routing_scenario(Mode::Delta).await;
}
