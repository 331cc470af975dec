//! Per-endpoint circuit breakers under a running load, with real upstream processes' sockets:
//! a killed endpoint costs at most `consecutiveFailures` client-visible errors without retries
//! and none with retries, is skipped while open, and comes back through HALF_OPEN.

#![allow(clippy::unwrap_used)]

mod common;

use common::{
    admin_json, client, dead_port, eventually, free_port, get, metric, named, stack, Upstream,
};

#[tokio::test(flavor = "multi_thread")]
async fn breaker_opens_skips_and_recovers() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    // c is started again on its address later: a port from below the ephemeral range, which no
    // other test's port-0 bind or outgoing connection can take in between.
    let c_addr = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let c = Upstream::start_on("c", c_addr).await;
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 3, openTimeout: 2s, halfOpenSuccesses: 2}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: plain, tenant: t}}\nspec: {{match: {{pathPrefix: /plain}}, cluster: svc}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: retried, tenant: t}}\n\
         spec: {{match: {{pathPrefix: /retried}}, cluster: svc, retry: {{attempts: 2, on: [connect-failure, reset, 5xx]}}}}\n",
        a.port(),
        b.port(),
        c.port()
    );
    let (cp, proxy) = stack(&yaml, "edge", "/plain/0").await;
    let (p, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let h = client();

    // Endpoint c dies. Without retries clients see at most consecutiveFailures (3) errors.
    drop(c);
    let mut failed = 0;
    let mut seen_c = 0;
    for i in 0..60 {
        let r = get(&h, p, &format!("/plain/{i}")).await;
        if r.status != 200 {
            failed += 1;
        }
        if r.upstream == "c" {
            seen_c += 1;
        }
    }
    let m = String::from_utf8(get(&h, admin, "/metrics").await.body.to_vec()).unwrap();
    // Had the 60 requests taken longer than openTimeout (a stalled CI core), each half-open
    // probe to the dead endpoint is one more error, and is counted as HALF_OPEN → OPEN.
    let reopened = metric(
        &m,
        &format!(
            "gw_circuit_state_changes_total{{tenant=\"t\",cluster=\"svc\",endpoint=\"{c_addr}\",from=\"half_open\",to=\"open\"}}"
        ),
    )
    .unwrap_or(0.0) as usize;
    assert!(
        (1..=3 + reopened).contains(&failed),
        "{failed} client-visible errors, want 1..=3 (+{reopened} half-open probes)"
    );
    assert_eq!(seen_c, 0);
    let dump = admin_json(&h, admin, "/clusters").await;
    let eps = dump[0]["endpoints"].as_array().unwrap();
    let c_state = eps
        .iter()
        .find(|e| e["address"] == c_addr.to_string())
        .unwrap();
    assert!(
        c_state["breaker"] == "open" || c_state["breaker"] == "half_open",
        "{dump}"
    );
    let open_line = format!(
        "gw_circuit_state_changes_total{{tenant=\"t\",cluster=\"svc\",endpoint=\"{c_addr}\",from=\"closed\",to=\"open\"}} 1"
    );
    assert!(
        m.contains(&open_line),
        "missing {open_line} in\n{}",
        m.lines()
            .filter(|l| l.contains("changes"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // The transition reached the control plane as an event (what `gwctl events` shows).
    let store = cp.store().clone();
    let c_key = c_addr.to_string();
    eventually(10, "breaker event in userdb", || async {
        let f = gw_control_plane::store::EventFilter {
            kind: "breaker_transition".into(),
            ..Default::default()
        };
        let events = store.list_events(&f).await.ok()?;
        events
            .iter()
            .any(|e| {
                e.attributes.get("endpoint") == Some(&c_key)
                    && e.attributes.get("to").map(String::as_str) == Some("open")
            })
            .then_some(())
    })
    .await;

    // It comes back: after openTimeout, half-open probes succeed and traffic returns.
    let _c = Upstream::start_on("c", c_addr).await;
    eventually(15, "c back in rotation", || async {
        let mut back = false;
        for i in 0..6 {
            back |= get(&h, p, &format!("/plain/r{i}")).await.upstream == "c";
        }
        back.then_some(())
    })
    .await;
    // Two probe successes close the breaker again (HALF_OPEN → CLOSED).
    eventually(15, "c's breaker closed", || async {
        get(&h, p, "/plain/probe").await;
        let dump: serde_json::Value =
            serde_json::from_slice(&get(&h, admin, "/clusters").await.body).ok()?;
        let eps = dump[0]["endpoints"].as_array()?.clone();
        eps.iter()
            .any(|e| e["address"] == c_key.as_str() && e["breaker"] == "closed")
            .then_some(())
    })
    .await;

    // With retries on connect failure, killing b costs clients nothing.
    drop(b);
    for i in 0..60 {
        let r = get(&h, p, &format!("/retried/{i}")).await;
        assert_eq!(r.status, 200, "request {i} failed despite retries");
    }
    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn active_health_checks_take_an_endpoint_out_and_back() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}]\n  \
         healthCheck: {{path: /health, interval: 200ms, timeout: 500ms, healthyThreshold: 2, unhealthyThreshold: 2}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: svc}}\n",
        a.port(),
        b.port()
    );
    let (cp, proxy) = stack(&yaml, "edge", "/x").await;
    let (p, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let h = client();
    let b_key = b.addr.to_string();
    let health_of_b = || async {
        let dump: serde_json::Value =
            serde_json::from_slice(&get(&h, admin, "/clusters").await.body).ok()?;
        let eps = dump[0]["endpoints"].as_array()?.clone();
        eps.iter()
            .find(|e| e["address"] == b_key.as_str())
            .and_then(|e| e["healthy"].as_bool())
    };

    // b's health endpoint starts failing: two failed probes mark it unhealthy; traffic avoids it.
    b.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let store = cp.store().clone();
    eventually(10, "b marked unhealthy", || async {
        (health_of_b().await == Some(false)).then_some(())
    })
    .await;
    for i in 0..20 {
        let r = get(&h, p, &format!("/x/{i}")).await;
        assert_eq!(
            (r.status, r.upstream.as_str()),
            (200, "a"),
            "unhealthy b gets no traffic"
        );
    }
    eventually(10, "health event in userdb", || async {
        let f = gw_control_plane::store::EventFilter {
            kind: "health_transition".into(),
            ..Default::default()
        };
        let events = store.list_events(&f).await.ok()?;
        events
            .iter()
            .any(|e| e.message.contains("healthy -> unhealthy"))
            .then_some(())
    })
    .await;
    // It heals: two good probes bring it back and it shares traffic again.
    b.failing.store(false, std::sync::atomic::Ordering::SeqCst);
    eventually(10, "b healthy again", || async {
        (health_of_b().await == Some(true)).then_some(())
    })
    .await;
    eventually(10, "b serves again", || async {
        let mut hit = false;
        for i in 0..4 {
            hit |= get(&h, p, &format!("/y/{i}")).await.upstream == "b";
        }
        hit.then_some(())
    })
    .await;
    let m = String::from_utf8(get(&h, admin, "/metrics").await.body.to_vec()).unwrap();
    assert!(m.contains(&format!(
        "gw_endpoint_healthy{{tenant=\"t\",cluster=\"svc\",endpoint=\"{b_key}\"}} 1"
    )));
    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_dead_and_overloaded_clusters_fail_fast() {
    let slow = Upstream::start("slow").await;
    let fine = Upstream::start("fine").await;
    let dead = [dead_port(), dead_port()];
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: mixed, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 2, openTimeout: 30s}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: dead, tenant: t}}\nspec:\n  \
         connectTimeout: 1s\n  endpoints: [{{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 1, openTimeout: 30s}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: small, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}]\n  limits: {{maxRequests: 2}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: mixed, tenant: t}}\nspec: {{match: {{pathPrefix: /slow/2}}, cluster: mixed, timeout: 800ms}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: dead, tenant: t}}\nspec: {{match: {{pathPrefix: /dead}}, cluster: dead}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: small, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: small}}\n",
        slow.port(),
        fine.port(),
        dead[0].port(),
        dead[1].port(),
        fine.port()
    );
    let (cp, proxy) = stack(&yaml, "edge", "/ok").await;
    let (p, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let h = client();

    // Slow endpoints (`/slow/2000` takes 2 s on both, the route allows 800 ms): timeouts count as
    // failures, the breakers open, and from then on the answer is immediate.
    let mut timeouts = 0;
    for _ in 0..6 {
        if get(&h, p, "/slow/2000").await.status == 504 {
            timeouts += 1;
        }
    }
    assert!(timeouts >= 2, "{timeouts} timeouts");
    let started = std::time::Instant::now();
    let r = get(&h, p, "/slow/2000").await;
    assert_eq!(
        r.status, 503,
        "both breakers open: refused at once, not another timeout"
    );
    assert!(started.elapsed() < std::time::Duration::from_millis(500));

    // Every endpoint down: fast 503s, never timeouts.
    for _ in 0..5 {
        let started = std::time::Instant::now();
        assert_eq!(get(&h, p, "/dead/x").await.status, 503);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "a dead cluster answers fast"
        );
    }

    // Limits: with maxRequests 2, a burst of 20 slow requests (route `small`) gets 503 at once for
    // most of them, counted.
    let burst: Vec<_> = (0..20)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                (
                    get(&h, p, &format!("/slow/1000?{i}")).await.status,
                    t.elapsed(),
                )
            })
        })
        .collect();
    let mut overflow = 0;
    for b in burst {
        let (status, took) = b.await.unwrap();
        if status == 503 {
            overflow += 1;
            assert!(
                took < std::time::Duration::from_millis(600),
                "overflow is answered at once, well before the upstream's 1 s"
            );
        }
    }
    assert!(overflow >= 10, "{overflow} of 20 refused by maxRequests 2");
    let m = String::from_utf8(get(&h, admin, "/metrics").await.body.to_vec()).unwrap();
    let counted = metric(
        &m,
        "gw_upstream_overflow_total{tenant=\"t\",cluster=\"small\",limit=\"max_requests\"}",
    )
    .unwrap_or(0.0);
    assert!(
        counted >= f64::from(overflow),
        "overflow counted: {counted}: {:?}",
        m.lines()
            .filter(|l| l.contains("overflow"))
            .collect::<Vec<_>>()
    );
    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_and_pending_limits_queue_then_refuse() {
    let narrow = Upstream::start("narrow").await;
    let wide = Upstream::start("wide").await;
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: narrow, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}]\n  limits: {{maxConnections: 2, maxPendingRequests: 3}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: wide, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}]\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: narrow, tenant: t}}\nspec: {{match: {{pathPrefix: /slow}}, cluster: narrow}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: wide, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: wide}}\n",
        narrow.port(),
        wide.port()
    );
    let (cp, proxy) = stack(&yaml, "edge", "/ok").await;
    let (p, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let h = client();

    // Ten slow requests at once: two go out on the two connections allowed, three wait as
    // pending requests and are served on those connections when they come back, the rest are
    // refused at once.
    let burst: Vec<_> = (0..10)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move {
                let t = std::time::Instant::now();
                let r = get(&h, p, &format!("/slow/1000?{i}")).await;
                (r.status, r.upstream, t.elapsed())
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for b in burst {
        let (status, upstream, took) = b.await.unwrap();
        match status {
            200 => {
                assert_eq!(upstream, "narrow");
                ok += 1;
            }
            503 => {
                assert!(
                    took < std::time::Duration::from_millis(600),
                    "overflow is answered at once, not after queueing (1 s): {took:?}"
                );
                refused += 1;
            }
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(ok >= 5, "two sent and three pending are all served: {ok}");
    assert!(refused >= 1, "past three pending, requests are refused");
    assert_eq!(ok + refused, 10);
    assert!(
        narrow.peak_conns.load(std::sync::atomic::Ordering::SeqCst) <= 2,
        "the upstream never saw more than maxConnections"
    );
    let m = String::from_utf8(get(&h, admin, "/metrics").await.body.to_vec()).unwrap();
    let lbl = |limit: &str| format!("{{tenant=\"t\",cluster=\"narrow\",limit=\"{limit}\"}}");
    let pending_overflow = metric(
        &m,
        &format!("gw_upstream_overflow_total{}", lbl("max_pending_requests")),
    );
    assert_eq!(
        pending_overflow,
        Some(f64::from(refused)),
        "every refusal counted"
    );
    let cx_overflow = metric(
        &m,
        &format!("gw_upstream_overflow_total{}", lbl("max_connections")),
    )
    .unwrap();
    assert!(cx_overflow >= 3.0 + f64::from(refused), "{cx_overflow}");
    assert_eq!(
        metric(
            &m,
            &format!("gw_upstream_limit_current{}", lbl("max_pending_requests"))
        ),
        Some(0.0),
        "nothing left waiting"
    );
    assert_eq!(
        metric(
            &m,
            &format!("gw_upstream_limit_max{}", lbl("max_connections"))
        ),
        Some(2.0)
    );
    let dump = admin_json(&h, admin, "/clusters").await;
    let narrow_dump = named(&dump, "t/narrow");
    assert_eq!(
        narrow_dump["limits"]["max_pending_requests"]["overflows"],
        serde_json::json!(refused),
        "{narrow_dump}"
    );
    assert!(
        narrow_dump["limits"]["max_connections"]["current"]
            .as_u64()
            .unwrap()
            <= 2
    );

    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fail_on_decides_what_opens_a_breaker() {
    let up = Upstream::start("up").await;
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: picky, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 2, openTimeout: 30s, failOn: [gateway-error]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: all, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: picky}}\n",
        up.port()
    );
    let (cp, proxy) = stack(&yaml, "edge", "/ok").await;
    let (p, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let h = client();
    let breaker = || async {
        let d = admin_json(&h, admin, "/clusters").await;
        d[0]["endpoints"][0]["breaker"].as_str().unwrap().to_owned()
    };
    // A 500 is not a gateway error: with `failOn: [gateway-error]` it never opens the breaker.
    for _ in 0..6 {
        let r = get(&h, p, "/status/500").await;
        assert_eq!((r.status, r.upstream.as_str()), (500, "up"));
    }
    assert_eq!(breaker().await, "closed");
    // Two 502s do.
    for _ in 0..2 {
        assert_eq!(get(&h, p, "/status/502").await.status, 502);
    }
    assert_eq!(breaker().await, "open");
    let r = get(&h, p, "/ok").await;
    assert_eq!(r.status, 503, "refused while open");
    assert_eq!(r.upstream, "", "answered by the proxy");
    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_hang_up_mid_request_do_not_open_breakers() {
    use std::sync::atomic::Ordering::SeqCst;
    use tokio::io::AsyncWriteExt;
    let up = Upstream::start("up").await;
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 2, openTimeout: 30s}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: all, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: svc}}\n",
        up.port()
    );
    let (cp, proxy) = stack(&yaml, "edge", "/ok").await;
    let (p, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let h = client();
    let in_flight = |d: &serde_json::Value| d[0]["endpoints"][0]["inFlight"].as_u64().unwrap();
    // Five clients send a slow request and reset their connection once it reached the upstream
    // (as a load generator stopping does): the proxy drops those requests, and none of them is
    // the endpoint's failure.
    for i in 0..5 {
        let before = up.hits.load(SeqCst);
        let mut s = tokio::net::TcpStream::connect(p).await.unwrap();
        s.write_all(format!("GET /slow/5000?{i} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        eventually(5, "the request reached the upstream", || async {
            (up.hits.load(SeqCst) > before).then_some(())
        })
        .await;
        s.set_zero_linger().unwrap();
        drop(s);
        eventually(3, "the proxy dropped the request", || async {
            let d = admin_json(&h, admin, "/clusters").await;
            (in_flight(&d) == 0).then_some(())
        })
        .await;
    }
    let d = admin_json(&h, admin, "/clusters").await;
    assert_eq!(d[0]["endpoints"][0]["breaker"], "closed", "{d}");
    assert_eq!(get(&h, p, "/ok").await.status, 200);
    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_with_nothing_usable_sends_to_its_fallback() {
    let backup = Upstream::start("backup").await;
    let (dead, dead2) = (dead_port(), dead_port());
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: backup, tenant: t}}\nspec:\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}]\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: primary, tenant: t}}\nspec:\n  \
         connectTimeout: 1s\n  endpoints: [{{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 1, openTimeout: 30s}}\n  fallbackCluster: backup\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: primary2, tenant: t}}\nspec:\n  \
         connectTimeout: 1s\n  endpoints: [{{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 1, openTimeout: 30s}}\n  fallbackCluster: backup\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: plain, tenant: t}}\nspec: {{match: {{pathPrefix: /plain}}, cluster: primary}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: retried, tenant: t}}\n\
         spec: {{match: {{pathPrefix: /retried}}, cluster: primary2, retry: {{attempts: 1, on: [connect-failure]}}}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: ok, tenant: t}}\nspec: {{match: {{pathPrefix: /ok}}, cluster: backup}}\n",
        backup.port(),
        dead.port(),
        dead2.port()
    );
    let (cp, proxy) = stack(&yaml, "edge", "/ok").await;
    let p = proxy.listen_addr();
    let h = client();
    // Without retries the one request that finds the endpoint dead fails (and opens its
    // breaker); from then on the primary has nothing usable and the backup answers.
    let mut failed = 0;
    for i in 0..10 {
        let r = get(&h, p, &format!("/plain/{i}")).await;
        if r.status == 200 {
            assert_eq!(r.upstream, "backup");
        } else {
            failed += 1;
        }
    }
    assert_eq!(failed, 1, "only the request that found the endpoint dead");
    // With a retry on connect failure not even that one fails: the retry goes to the backup.
    for i in 0..10 {
        let r = get(&h, p, &format!("/retried/{i}")).await;
        assert_eq!((r.status, r.upstream.as_str()), (200, "backup"));
    }
    proxy.shutdown().await;
    cp.shutdown().await;
}
