//! Breaker parity: the same manifest gives a stock Envoy 1.40 `outlier_detection` (consecutive
//! 5xx, ejection for the open timeout) and gw-proxy its per-endpoint breaker; with one dead
//! endpoint of three, both stop sending to it after `consecutiveFailures` failures.
//!
//! Limits parity: `limits` gives Envoy `circuit_breakers` thresholds and gw-proxy the same
//! limits; a burst against `maxConnections: 1, maxPendingRequests: 1` is queued then refused
//! with 503 at once by both, and the upstream never sees a second connection.

#![allow(clippy::unwrap_used)]

use gw_e2e::envoy;
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, dead_port, free_port, http, serving, wait};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

async fn failures(addr: SocketAddr, n: usize) -> (usize, usize) {
    let (mut failed, mut ok) = (0, 0);
    for i in 0..n {
        let r = http::get(addr, "x", &format!("/svc/{i}")).await.unwrap();
        if r.status == 200 {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    (failed, ok)
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_both_eject_a_dead_endpoint() {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let (a, b) = (
        Upstream::start("a").await.unwrap(),
        Upstream::start("b").await.unwrap(),
    );
    let unanswered = dead_port();
    let (port, dead) = (free_port(), unanswered.port());
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: acme}}\nspec:\n  \
         connectTimeout: 1s\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {dead}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 3, openTimeout: 30s}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: svc, tenant: acme}}\nspec: {{match: {{pathPrefix: /svc}}, cluster: svc}}\n",
        a.port(),
        b.port()
    );
    control::apply(&cp, &yaml).await.unwrap();

    let (envoy, envoy_addr) = serving::envoy(&bin, &cp, "parity-envoy", port, "/svc/warm").await;
    let gw = serving::gw_proxy(&cp, "parity-gw", "/svc/warm").await;
    let gw_addr = gw.listen_addr();

    // Sixty sequential requests; a third would go to the dead endpoint without ejection.
    let (e_failed, e_ok) = failures(envoy_addr, 60).await;
    let (g_failed, g_ok) = failures(gw_addr, 60).await;
    // Envoy ejects on its main thread and hands the host set back to the worker: on a busy
    // machine the round robin can reach the dead host once more before the hand-off lands.
    assert!(
        e_failed <= 4,
        "Envoy: {e_failed} failures, {e_ok} ok\n{}",
        envoy.clusters().await.unwrap()
    );
    assert!(g_failed <= 3, "gw-proxy: {g_failed} failures, {g_ok} ok");
    let clusters = envoy.clusters().await.unwrap();
    assert!(
        clusters
            .lines()
            .any(|l| l.contains(&format!(":{dead}::health_flags::/failed_outlier_check"))),
        "Envoy ejected the dead endpoint:\n{clusters}"
    );
    let dump = http::get(gw.admin_addr(), "x", "/clusters")
        .await
        .unwrap()
        .body;
    assert!(
        dump.contains("\"breaker\": \"open\""),
        "gw-proxy opened its breaker: {dump}"
    );
    gw.shutdown().await;
    drop(envoy);
    cp.shutdown().await;
}

/// Eight slow requests at once: `(ok, refused at once)`.
async fn burst(addr: SocketAddr) -> (usize, usize) {
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                let r = http::get(addr, "x", &format!("/slow/1000/{i}"))
                    .await
                    .unwrap();
                (r.status, t.elapsed())
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let (status, took) = t.await.unwrap();
        match status {
            200 => ok += 1,
            // Refused at once: well before the upstream's 1 s answer.
            503 if took < Duration::from_millis(600) => refused += 1,
            s => panic!("status {s} after {took:?}"),
        }
    }
    (ok, refused)
}

/// A burst through `who` against `maxConnections: 1, maxPendingRequests: 1`: one sent, one
/// queued (so at least two served), the rest refused at once, one upstream connection at most.
async fn limits_hold(who: &str, addr: SocketAddr, up: &Upstream) {
    let (ok, refused) = burst(addr).await;
    assert!(ok >= 2 && refused >= 1, "{who}: {ok} ok, {refused} refused");
    assert_eq!(ok + refused, 8);
    assert_eq!(
        up.peak_connections.load(Ordering::SeqCst),
        1,
        "{who} held one connection"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_both_enforce_cluster_limits() {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let up = Upstream::start("narrow").await.unwrap();
    let port = free_port();
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: narrow, tenant: acme}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}]\n  \
         limits: {{maxConnections: 1, maxPendingRequests: 1}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: narrow, tenant: acme}}\nspec: {{match: {{pathPrefix: /}}, cluster: narrow}}\n",
        up.port()
    );
    control::apply(&cp, &yaml).await.unwrap();

    let (envoy, envoy_addr) = serving::envoy(&bin, &cp, "limits-envoy", port, "/warm").await;
    limits_hold("Envoy", envoy_addr, &up).await;
    drop(envoy);
    wait::until(
        "Envoy's connection closed",
        Duration::from_secs(10),
        || async { (up.open_connections.load(Ordering::SeqCst) == 0).then_some(()) },
    )
    .await
    .unwrap();
    up.peak_connections.store(0, Ordering::SeqCst);

    let gw = serving::gw_proxy(&cp, "limits-gw", "/warm").await;
    let gw_addr = gw.listen_addr();
    limits_hold("gw-proxy", gw_addr, &up).await;
    gw.shutdown().await;
    cp.shutdown().await;
}
