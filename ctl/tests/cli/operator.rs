//! Operator conveniences and failure modes: describe, completion, config file, unreachable servers.

use crate::env::{q, Env};
use assert_cmd::Command;

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_names_the_address() {
    let out = tokio::task::spawn_blocking(|| {
        Command::cargo_bin("gwctl")
            .unwrap()
            .args(["--server", "http://127.0.0.1:1", "get", "tenants"])
            .env("GW_CONFIG", "/nonexistent/gw.yaml")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "error: cannot reach the control plane at http://127.0.0.1:1: connection refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_completion_and_config() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let d = env.run(&["describe", "route", "users", "-t", "acme"]).await;
    assert_eq!(d.code, 0, "{}", d.stderr);
    for want in [
        "Name:          users",
        "Clusters:      users-svc",
        "Retry:         2 attempts on 5xx, connect-failure, reset, 2s per try",
        "Cluster users-svc: 2 endpoint(s)",
        "127.0.0.1:18081",
        "Stats (15m):   no traffic",
    ] {
        assert!(d.stdout.contains(want), "missing {want:?} in\n{}", d.stdout);
    }
    // A route without a timeout and with its own idle timeout off (Envoy's 0s: none), which lets
    // WebSocket upgrades through (written in any case, kept in lower case).
    let streams = env.file(
        "streams.yaml",
        "apiVersion: gw/v1\nkind: Route\nmetadata: {name: events, tenant: acme}\n\
         spec: {match: {pathPrefix: /events}, cluster: users-svc, timeout: 0s, idleTimeout: 0s, upgrades: [WebSocket]}\n",
    );
    let applied = env.run(&["apply", "-f", streams.to_str().unwrap()]).await;
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let e = env
        .run(&["describe", "route", "events", "-t", "acme"])
        .await;
    for want in [
        "Timeout:       none",
        "Idle timeout:  none",
        "Upgrades:      websocket",
    ] {
        assert!(e.stdout.contains(want), "missing {want:?} in\n{}", e.stdout);
    }
    let c = env
        .run(&["describe", "cluster", "orders-svc", "-t", "acme"])
        .await;
    for want in ["Fallback:      users-svc", "Protocol:      http1"] {
        assert!(c.stdout.contains(want), "missing {want:?} in\n{}", c.stdout);
    }
    let comp = env.run(&["completion", "bash"]).await;
    assert!(comp.stdout.contains("_gwctl()"), "bash completion");
    for shell in ["zsh", "fish"] {
        assert_eq!(env.run(&["completion", shell]).await.code, 0);
    }
    // config set-server is used when neither --server nor GW_SERVER is given.
    let config = env.dir.path().join("config.yaml");
    let server = env.server();
    let out = tokio::task::spawn_blocking(move || {
        let set = Command::cargo_bin("gwctl")
            .unwrap()
            .env("GW_CONFIG", &config)
            .env_remove("GW_SERVER")
            .args(["config", "set-server", &server])
            .output()
            .unwrap();
        assert!(set.status.success());
        Command::cargo_bin("gwctl")
            .unwrap()
            .env("GW_CONFIG", &config)
            .env_remove("GW_SERVER")
            .args(["get", "tenants"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("acme"),
        "{:?}",
        out
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_addresses_are_named_and_diff_errors_exit_2() {
    let env = Env::start().await;
    // The control plane's HTTP port answers, but not with gRPC.
    let http = format!("http://{}", env.cp.http_addr());
    let out = env.run(&["--server", &http, "get", "tenants"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!("error: {http} is not a gw control plane's gRPC address (is it the HTTP port? the gRPC default is :18000)")
    );
    let tls = env
        .run(&["--server", "https://127.0.0.1:1", "get", "tenants"])
        .await;
    assert_eq!(
        tls.stderr.trim(),
        "error: --server https://127.0.0.1:1: an https control plane needs --ca (the PEM CA of its certificate)"
    );
    // diff: 1 means "different", so errors are 2.
    let out = env
        .run(&["--server", "127.0.0.1:1", "diff", "-f", &q()])
        .await;
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.trim(),
        "error: cannot reach the control plane at http://127.0.0.1:1: connection refused"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn describe_tenant_and_verbose_not_found() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let d = env.run(&["describe", "tenant", "acme"]).await;
    assert_eq!(d.code, 0, "{}", d.stderr);
    assert!(
        d.stdout
            .contains("Routes:        3 (api-host, orders, users)\n"),
        "{}",
        d.stdout
    );
    let missing = env
        .run(&["-v", "delete", "route", "nope", "-t", "acme"])
        .await;
    assert_eq!(missing.code, 1);
    assert_eq!(
        missing.stderr.trim(),
        "error: route/acme/nope not found (gRPC status NotFound)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_errors_are_one_line_with_exit_code_2() {
    let env = Env::start().await;
    let out = env.run(&["get", "routes", "--colour"]).await;
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr,
        "error: unexpected argument '--colour' found; tip: a similar argument exists: '--cluster'; usage: gwctl get --cluster <CLUSTER> <KIND> [NAME]\n"
    );
}
