//! The service registry: endpoints register, list, heartbeat, deregister.

use crate::env::{q, Env};

#[tokio::test(flavor = "multi_thread")]
async fn registry_register_list_heartbeat_deregister() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let reg = env
        .run(&[
            "endpoints",
            "register",
            "-t",
            "acme",
            "--cluster",
            "users-svc",
            "--address",
            "10.0.0.7",
            "--port",
            "9000",
            "--weight",
            "3",
            "--ttl",
            "30s",
            "--meta",
            "zone=a",
        ])
        .await;
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    assert!(
        reg.stdout
            .starts_with("endpoint acme/users-svc/10.0.0.7:9000 registered (lease until "),
        "{}",
        reg.stdout
    );
    let list = env
        .run(&["endpoints", "list", "-t", "acme", "--cluster", "users-svc"])
        .await;
    let rows: Vec<Vec<&str>> = list
        .stdout
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{}", list.stdout);
    assert_eq!(
        rows[0][..6],
        ["acme", "users-svc", "10.0.0.7", "9000", "3", "registry"]
    );
    assert_eq!(rows[0][8], "zone=a");
    assert_eq!(rows[1][5], "static");
    // Without --tenant: every tenant's endpoints, like `kubectl get -A`.
    let all = env.run(&["get", "endpoints"]).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert_eq!(all.stdout.lines().count(), 1 + 4, "{}", all.stdout);
    let yaml = env
        .run(&["endpoints", "list", "-t", "acme", "-o", "json"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&yaml.stdout).unwrap();
    let registered = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == "10.0.0.7")
        .unwrap();
    assert_eq!(registered["metadata"]["zone"], "a");
    assert_eq!(registered["source"], "registry");
    assert!(registered["expiresAt"].is_string());
    let hb = env
        .run(&[
            "endpoints",
            "heartbeat",
            "-t",
            "acme",
            "--cluster",
            "users-svc",
            "--address",
            "10.0.0.7",
            "--port",
            "9000",
        ])
        .await;
    assert!(hb.stdout.contains("renewed until"), "{}", hb.stdout);
    let dereg = env
        .run(&[
            "endpoints",
            "deregister",
            "-t",
            "acme",
            "--cluster",
            "users-svc",
            "--address",
            "10.0.0.7",
            "--port",
            "9000",
        ])
        .await;
    assert_eq!(dereg.code, 0);
    let again = env
        .run(&[
            "endpoints",
            "deregister",
            "-t",
            "acme",
            "--cluster",
            "users-svc",
            "--address",
            "10.0.0.7",
            "--port",
            "9000",
        ])
        .await;
    assert_eq!(again.code, 1);
    assert!(again.stderr.contains("not found"), "{}", again.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_without_heartbeats_expires_by_itself() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let key = [
        "-t",
        "acme",
        "--cluster",
        "orders-svc",
        "--address",
        "10.1.1.1",
        "--port",
        "80",
    ];
    let mut args = vec!["endpoints", "register", "--ttl", "3s"];
    args.extend(key);
    let reg = env.run(&args).await;
    assert_eq!(reg.code, 0, "{}", reg.stderr);
    let listed = |out: &str| out.contains("10.1.1.1");
    let list = ["get", "endpoints", "-t", "acme", "--cluster", "orders-svc"];
    assert!(listed(&env.run(&list).await.stdout));
    // The lease runs out on the server's clock: poll for the outcome, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while listed(&env.run(&list).await.stdout) {
        assert!(
            std::time::Instant::now() < deadline,
            "the endpoint never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut args = vec!["endpoints", "heartbeat"];
    args.extend(key);
    let hb = env.run(&args).await;
    assert_eq!(hb.code, 1);
    assert!(
        hb.stderr.contains("expired or never registered"),
        "{}",
        hb.stderr
    );
}
