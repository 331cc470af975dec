//! The monitoring chain end to end: a real proxy reports stats to a real control plane; an
//! endpoint starts failing → the error-rate alert fires → webhook; it heals → the alert resolves
//! by itself → webhook. Access logs of the failures reach `Stats.GetLogs`.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, eventually, get, webhook_receiver, Upstream};
use gw_control_plane::server::{Config, ControlPlane};
use gw_proto::gateway::v1 as pb;
use gw_proxy::server::{Proxy, ProxyConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn failing_endpoint_fires_and_resolves_an_alert() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn")
        .with_test_writer()
        .try_init();
    let cp = ControlPlane::start(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    let up = Upstream::start("a").await;
    let (hook, mut hooks) = webhook_receiver().await;
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: users, tenant: acme}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {}}}], circuitBreaker: {{openTimeout: 1s}}}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: users, tenant: acme}}\nspec: {{match: {{pathPrefix: /users}}, cluster: users}}\n---\n\
         apiVersion: gw/v1\nkind: AlertRule\nmetadata: {{name: users-errors, tenant: acme}}\n\
         spec: {{metric: error_rate, scope: {{route: users}}, threshold: 0.2, window: 3s, for: 0s, webhook: {{url: 'http://{hook}/hook', secret: s3cr3t}}}}\n",
        up.port()
    );
    common::apply(&cp, &yaml).await;
    let proxy = Proxy::start(ProxyConfig::for_tests(
        Some(format!("http://{}", cp.grpc_addr())),
        "edge-1",
    ))
    .await
    .unwrap();
    let c = client();
    let (admin, p) = (proxy.admin_addr(), proxy.listen_addr());
    eventually(10, "proxy ready", || async {
        (get(&c, admin, "/ready").await.status == 200).then_some(())
    })
    .await;
    // Ready can come from an earlier snapshot than the manifest's: wait for the route itself.
    eventually(10, "route served", || async {
        (get(&c, p, "/users/0").await.status == 200).then_some(())
    })
    .await;

    // The control plane counts the proxy as connected.
    let cp_http = cp.http_addr();
    eventually(10, "connected-proxies gauge", || async {
        let m = String::from_utf8(get(&c, cp_http, "/metrics").await.body.to_vec()).unwrap();
        m.contains(r#"gw_xds_connected_proxies{node_cluster="ingress"} 1"#)
            .then_some(())
    })
    .await;

    // Healthy traffic, then the endpoint fails.
    for _ in 0..20 {
        assert_eq!(get(&c, p, "/users/1").await.status, 200);
    }
    up.failing.store(true, Ordering::SeqCst);
    let fired = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            assert_eq!(get(&c, p, "/users/1").await.status, 503);
            if let Ok(h) = hooks.try_recv() {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let fired = fired.expect("no firing webhook within 20 s");
    assert_eq!(fired["status"], "firing");
    assert_eq!(fired["rule"], "users-errors");
    assert_eq!(fired["scope"], "route/users");
    assert!(fired["value"].as_f64().unwrap() > 0.2);

    // Heal: the breaker (open for 1 s) probes the endpoint back in, the bad seconds leave the 3 s
    // window and the alert resolves by itself.
    up.failing.store(false, Ordering::SeqCst);
    let resolved = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            get(&c, p, "/users/1").await;
            if let Ok(h) = hooks.try_recv() {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("no resolved webhook within 20 s");
    assert_eq!(resolved["status"], "resolved");
    assert_eq!(
        get(&c, p, "/users/1").await.status,
        200,
        "healed and the breaker closed"
    );

    // The failures were logged, with the route, cluster and endpoint they went to.
    let url = format!("http://{}", cp.grpc_addr());
    let mut stats = pb::stats_client::StatsClient::connect(url).await.unwrap();
    let logs = eventually(10, "5xx access logs", || {
        let mut stats = stats.clone();
        async move {
            let req = pb::LogsRequest {
                status: "5xx".into(),
                route: "users".into(),
                limit: 10_000,
                ..Default::default()
            };
            let recs = stats.get_logs(req).await.unwrap().into_inner().records;
            (!recs.is_empty()).then_some(recs)
        }
    })
    .await;
    // Upstream 503s name the endpoint; once the breaker opened, the proxy's own 503s say why.
    let upstream = logs
        .iter()
        .find(|l| !l.endpoint.is_empty())
        .expect("an upstream 503 was logged");
    assert_eq!(upstream.tenant, "acme");
    assert_eq!(upstream.cluster, "users");
    assert_eq!(upstream.endpoint, format!("127.0.0.1:{}", up.port()));
    assert_eq!(upstream.status, 503);
    assert_eq!(upstream.node, "edge-1");
    if let Some(refused) = logs.iter().find(|l| l.endpoint.is_empty()) {
        assert_eq!(refused.upstream_error, "no_healthy_upstream");
    }
    let rows = stats
        .get_stats(pb::StatsRequest {
            kind: "route".into(),
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rows;
    assert!(rows[0].requests >= 20 && rows[0].status_5xx > 0, "{rows:?}");
    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_the_drain_records_is_reported_before_the_proxy_stops() {
    let up = Upstream::start("a").await;
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: users, tenant: acme}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: slow, tenant: acme}}\nspec: {{match: {{pathPrefix: /slow}}, cluster: users, timeout: 500ms}}\n",
        up.port()
    );
    let (cp, proxy) = common::stack(&yaml, "edge-drain", "/slow/0").await;
    let c = client();
    let (admin, p) = (proxy.admin_addr(), proxy.listen_addr());
    // A request that times out (504) only after the shutdown has begun.
    let cc = c.clone();
    let late = tokio::spawn(async move { get(&cc, p, "/slow/3000").await.status });
    common::until_one_in_flight(&c, admin).await;
    proxy.shutdown().await;
    assert_eq!(late.await.unwrap(), 504);
    // Its access log reached the control plane before the proxy stopped.
    let url = format!("http://{}", cp.grpc_addr());
    let stats = pb::stats_client::StatsClient::connect(url).await.unwrap();
    let req = pb::LogsRequest {
        status: "5xx".into(),
        route: "slow".into(),
        limit: 100,
        ..Default::default()
    };
    let recs = eventually(10, "the drain's access log", || {
        let (mut stats, req) = (stats.clone(), req.clone());
        async move {
            let recs = stats.get_logs(req).await.unwrap().into_inner().records;
            (!recs.is_empty()).then_some(recs)
        }
    })
    .await;
    assert_eq!(recs[0].status, 504);
    assert_eq!(recs[0].upstream_error, "timeout");
    assert_eq!(recs[0].node, "edge-drain");
    cp.shutdown().await;
}
