//! Chaos with real upstream *processes* under a running load: three `gw-demo-upstream` processes
//! behind one cluster, two clients sending without pause (one route without retries, one with),
//! one process killed with SIGKILL mid-load and restarted on the same port.
//!
//! What must hold: the client without retries sees at most `consecutiveFailures` errors, the one
//! with retries none; the killed endpoint's breaker opens, and after the restart it comes back
//! through HALF_OPEN and takes traffic again.

#![allow(clippy::unwrap_used)]

mod common;

use common::{admin_json, client, eventually, free_port, get, metric, stack};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncBufReadExt;

/// A `gw-demo-upstream` process on `port`, returned once it listens.
async fn upstream_process(port: u16) -> tokio::process::Child {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gw-demo-upstream"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--name", "demo"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let line = tokio::io::BufReader::new(out)
        .lines()
        .next_line()
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(line.contains(" on "), "upstream did not start: {line:?}");
    child
}

/// What one client saw: `(status, upstream)` per request, in order.
type Seen = Arc<Mutex<Vec<(u16, String)>>>;

fn load(
    p: std::net::SocketAddr,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let h = client();
        let mut i = 0u64;
        while !stop.load(SeqCst) {
            let r = get(&h, p, &format!("{prefix}/{i}")).await;
            s.lock().unwrap().push((r.status, r.upstream));
            i += 1;
        }
    });
    (seen, task)
}

fn count(seen: &Seen) -> usize {
    seen.lock().unwrap().len()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_and_restarted_upstream_process_under_load() {
    let ports = [free_port(), free_port(), free_port()];
    let mut procs = Vec::new();
    for port in ports {
        procs.push(upstream_process(port).await);
    }
    let victim = format!("127.0.0.1:{}", ports[2]);
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: svc, tenant: t}}\nspec:\n  \
         connectTimeout: 1s\n  \
         endpoints: [{{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}, {{address: 127.0.0.1, port: {}}}]\n  \
         circuitBreaker: {{consecutiveFailures: 3, openTimeout: 2s, halfOpenSuccesses: 2}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: plain, tenant: t}}\nspec: {{match: {{pathPrefix: /plain}}, cluster: svc}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: retried, tenant: t}}\n\
         spec: {{match: {{pathPrefix: /retried}}, cluster: svc, retry: {{attempts: 2, on: [connect-failure, reset, 5xx]}}}}\n",
        ports[0], ports[1], ports[2]
    );
    let (cp, proxy) = stack(&yaml, "edge", "/plain/warm").await;
    let (p, admin) = (proxy.listen_addr(), proxy.admin_addr());
    let h = client();
    let breaker = |h: common::HttpClient| {
        let victim = victim.clone();
        async move {
            let d = admin_json(&h, admin, "/clusters").await;
            d[0]["endpoints"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["address"] == victim.as_str())
                .map(|e| e["breaker"].as_str().unwrap_or("").to_owned())
                .unwrap_or_default()
        }
    };

    let stop = Arc::new(AtomicBool::new(false));
    let (plain, plain_task) = load(p, "/plain", stop.clone());
    let (retried, retried_task) = load(p, "/retried", stop.clone());
    eventually(10, "load running", || async {
        (count(&plain) >= 30 && count(&retried) >= 30).then_some(())
    })
    .await;

    // SIGKILL one process mid-load.
    let mut killed = procs.pop().unwrap();
    killed.kill().await.unwrap();
    let at_kill = (count(&plain), count(&retried));
    eventually(10, "the dead endpoint's breaker open", || async {
        (breaker(h.clone()).await == "open").then_some(())
    })
    .await;
    eventually(10, "load continuing past the kill", || async {
        (count(&plain) >= at_kill.0 + 60 && count(&retried) >= at_kill.1 + 60).then_some(())
    })
    .await;

    // Restart it on the same port: HALF_OPEN after openTimeout, CLOSED after two good probes,
    // then it takes traffic again.
    procs.push(upstream_process(ports[2]).await);
    let at_restart = count(&plain);
    eventually(15, "the breaker closed again", || async {
        (breaker(h.clone()).await == "closed").then_some(())
    })
    .await;
    eventually(10, "traffic back on the restarted process", || async {
        let seen = plain.lock().unwrap();
        seen[at_restart..]
            .iter()
            .any(|(s, u)| *s == 200 && *u == victim)
            .then_some(())
    })
    .await;
    stop.store(true, SeqCst);
    plain_task.await.unwrap();
    retried_task.await.unwrap();

    let errors = |seen: &Seen| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|(s, _)| *s != 200)
            .count()
    };
    let (plain_errors, retried_errors) = (errors(&plain), errors(&retried));
    let m = String::from_utf8(get(&h, admin, "/metrics").await.body.to_vec()).unwrap();
    let changes = |from: &str, to: &str| {
        let line = format!(
            "gw_circuit_state_changes_total{{tenant=\"t\",cluster=\"svc\",endpoint=\"{victim}\",from=\"{from}\",to=\"{to}\"}}"
        );
        metric(&m, &line).unwrap_or(0.0) as usize
    };
    // Each half-open probe that found the process still dead (the restart came after
    // openTimeout on a slow machine) is one more error for a client without retries.
    let reopened = changes("half_open", "open");
    assert!(
        plain_errors <= 3 + reopened,
        "without retries at most consecutiveFailures (3) errors (+{reopened} half-open probes), saw {plain_errors} in {}",
        count(&plain)
    );
    assert_eq!(
        retried_errors,
        0,
        "with retries no client-visible error in {}",
        count(&retried)
    );
    for (from, to) in [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ] {
        assert!(changes(from, to) >= 1, "{from} → {to} not counted");
    }
    proxy.shutdown().await;
    cp.shutdown().await;
}
