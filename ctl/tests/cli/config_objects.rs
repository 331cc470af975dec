//! apply, get, delete, diff: the config objects.

use crate::env::{q, quickstart, Env};

#[tokio::test(flavor = "multi_thread")]
async fn apply_is_idempotent_and_reports_each_object() {
    let env = Env::start().await;
    let first = env.run(&["apply", "-f", &q()]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        first.stdout,
        "tenant/acme created\ncluster/acme/users-svc created\ncluster/acme/orders-svc created\n\
         route/acme/users created\nroute/acme/orders created\nroute/acme/api-host created\n"
    );
    let again = env.run(&["apply", "-f", &q()]).await;
    assert_eq!(again.code, 0);
    assert_eq!(again.stdout.lines().count(), 6);
    assert!(
        again.stdout.lines().all(|l| l.ends_with(" unchanged")),
        "{}",
        again.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn get_lists_and_yaml_round_trips() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let table = env.run(&["get", "routes", "--tenant", "acme"]).await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("TENANT"), "{}", table.stdout);
    let cells: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        cells[1][..5],
        ["acme", "api-host", "api.acme.test", "path", "/status"]
    );
    assert_eq!(
        cells[2][..6],
        [
            "acme",
            "orders",
            "*",
            "prefix",
            "/orders",
            "orders-svc=90,users-svc=10"
        ]
    );
    assert_eq!(
        cells[3][..6],
        ["acme", "users", "*", "prefix", "/users", "users-svc"]
    );

    for kind in ["tenants", "clusters", "listeners"] {
        assert_eq!(env.run(&["get", kind]).await.code, 0);
    }
    // A listener shows its connection timeouts (Envoy's defaults unless set; off as never / -).
    let l = env.file(
        "listener.yaml",
        "apiVersion: gw/v1\nkind: Listener\nmetadata: {name: edge}\n\
         spec: {nodeCluster: edge, port: 8443, requestHeadersTimeout: 10s, maxConnectionDuration: 10m, \
         streamIdleTimeout: 30s}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {name: inner}\n\
         spec: {nodeCluster: inner, port: 8081, idleTimeout: 0s, streamIdleTimeout: 0s}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {name: plain}\n\
         spec: {nodeCluster: plain, port: 8082}\n",
    );
    let applied = env.run(&["apply", "-f", l.to_str().unwrap()]).await;
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    let table = env.run(&["get", "listeners"]).await.stdout;
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().take(8).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        row("edge"),
        ["edge", "edge", "0.0.0.0", "8443", "1h", "10s", "10m", "30s"],
        "{table}"
    );
    assert_eq!(
        row("inner"),
        ["inner", "inner", "0.0.0.0", "8081", "never", "-", "-", "never"],
        "{table}"
    );
    assert_eq!(
        row("plain"),
        ["plain", "plain", "0.0.0.0", "8082", "1h", "-", "-", "5m"],
        "{table}"
    );
    // The values round-trip through the API: 30s, an explicit 0s (off) and the 5m default.
    let json = env.run(&["get", "listeners", "-o", "json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let sit = |name: &str| {
        v.as_array()
            .or_else(|| v["items"].as_array())
            .into_iter()
            .flatten()
            .find(|o| o["metadata"]["name"] == name)
            .map(|o| o["spec"]["streamIdleTimeout"].clone())
    };
    assert_eq!(sit("edge"), Some("30s".into()), "{}", json.stdout);
    assert_eq!(sit("inner"), Some("0s".into()), "{}", json.stdout);
    assert_eq!(sit("plain"), Some("5m".into()), "{}", json.stdout);
    let yaml = env.run(&["get", "clusters", "-o", "yaml"]).await;
    assert!(yaml.stdout.contains("kind: Cluster"), "{}", yaml.stdout);
    let f = env.file("clusters.yaml", &yaml.stdout);
    let re = env.run(&["apply", "-f", f.to_str().unwrap()]).await;
    assert_eq!(re.code, 0, "{}", re.stderr);
    assert!(
        re.stdout.lines().all(|l| l.ends_with(" unchanged")),
        "{}",
        re.stdout
    );

    let json = env
        .run(&["get", "route", "users", "-t", "acme", "-o", "json"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["spec"]["retry"]["perTryTimeout"], "2s");
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_by_name_and_by_file() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let refused = env
        .run(&["delete", "cluster", "users-svc", "--tenant", "acme"])
        .await;
    assert_eq!(refused.code, 1);
    assert_eq!(
        refused.stderr.trim(),
        "error: deleting cluster/acme/users-svc: cluster acme/users-svc is still used by route api-host, route orders, route users, cluster orders-svc"
    );
    let del = env
        .run(&["delete", "route", "users", "--tenant", "acme"])
        .await;
    assert_eq!(
        (del.code, del.stdout.as_str()),
        (0, "route/acme/users deleted\n")
    );
    let gone = env
        .run(&["get", "route", "users", "--tenant", "acme"])
        .await;
    assert_eq!(
        (gone.code, gone.stderr.trim()),
        (1, "error: route/acme/users not found")
    );
    let all = env.run(&["delete", "-f", &q(), "--ignore-not-found"]).await;
    assert_eq!(all.code, 0, "{}", all.stderr);
    assert!(all.stdout.contains("route/acme/users not found"));
    assert!(all.stdout.contains("tenant/acme deleted"));
    let none = env.run(&["get", "tenants"]).await;
    assert_eq!(none.stderr.trim(), "No tenants found.");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_one_line_naming_file_document_object_and_field() {
    let env = Env::start().await;
    let text = std::fs::read_to_string(quickstart()).unwrap();
    let bad = env.file(
        "bad.yaml",
        &text.replace("perTryTimeout: 2s", "perTryTimeout: 0s"),
    );
    let out = env.run(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: {}: document 4 (Route acme/users): spec.retry.perTryTimeout: must be > 0",
            bad.display()
        )
    );
    // A reference only the server can check.
    let dangling = env.file(
        "dangling.yaml",
        &text.replace(
            "cluster: users-svc\n  timeout: 15s",
            "cluster: nope\n  timeout: 15s",
        ),
    );
    let out = env
        .run(&["apply", "-f", dangling.to_str().unwrap(), "--verbose"])
        .await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr.trim(),
        format!(
            "error: {}: document 4 (Route acme/users): spec.cluster: cluster \"nope\" does not exist in tenant \"acme\" (gRPC status InvalidArgument)",
            dangling.display()
        )
    );
    assert_eq!(
        env.run(&["get", "tenants"]).await.stderr.trim(),
        "No tenants found.",
        "nothing half-written"
    );
    let typo = env.file(
        "typo.yaml",
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: a}\nspec: {displayNme: x}\n",
    );
    let out = env.run(&["apply", "-f", typo.to_str().unwrap()]).await;
    assert!(
        out.stderr.starts_with(&format!(
            "error: {}: document 1 (Tenant a): spec.displayNme: unknown field",
            typo.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn diff_dry_run_and_prune() {
    let env = Env::start().await;
    let new = env.run(&["diff", "-f", &q()]).await;
    assert_eq!(new.code, 1);
    assert!(new.stdout.contains("+ route/acme/users (new)"));
    let dry = env.run(&["apply", "-f", &q(), "--dry-run"]).await;
    assert!(
        dry.stdout.lines().all(|l| l.ends_with("created (dry run)")),
        "{}",
        dry.stdout
    );
    assert_eq!(
        env.run(&["diff", "-f", &q()]).await.code,
        1,
        "dry run changed nothing"
    );
    env.run(&["apply", "-f", &q()]).await;
    let same = env.run(&["diff", "-f", &q()]).await;
    assert_eq!((same.code, same.stdout.as_str()), (0, ""));

    let text = std::fs::read_to_string(quickstart()).unwrap();
    let changed = env.file("changed.yaml", &text.replace("timeout: 5s", "timeout: 7s"));
    let d = env.run(&["diff", "-f", changed.to_str().unwrap()]).await;
    assert_eq!(d.code, 1);
    assert_eq!(
        d.stdout,
        "~ route/acme/orders\n    ~ spec.timeout: 5s -> 7s\n"
    );

    // Prune: a file without the api-host route deletes it.
    let cut = text
        .split("---\napiVersion: gw/v1\nkind: Route\nmetadata: {name: api-host")
        .next()
        .unwrap();
    let smaller = env.file("smaller.yaml", cut);
    let pd = env
        .run(&[
            "diff",
            "-f",
            smaller.to_str().unwrap(),
            "--prune",
            "-t",
            "acme",
        ])
        .await;
    assert!(
        pd.stdout
            .contains("- route/acme/api-host (not in the files)"),
        "{}",
        pd.stdout
    );
    let pr = env
        .run(&[
            "apply",
            "-f",
            smaller.to_str().unwrap(),
            "--prune",
            "-t",
            "acme",
        ])
        .await;
    assert_eq!(pr.code, 0, "{}", pr.stderr);
    assert!(
        pr.stdout.ends_with("route/acme/api-host pruned\n"),
        "{}",
        pr.stdout
    );
    assert_eq!(
        env.run(&["get", "route", "api-host", "-t", "acme"])
            .await
            .code,
        1
    );

    let broken = env.run(&["diff", "-f", "/nonexistent.yaml"]).await;
    assert_eq!(broken.code, 2);
}

/// A tenant, a cluster and `n` routes.
fn many_routes(n: usize) -> String {
    let mut docs = vec![
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: big}\n".to_owned(),
        "apiVersion: gw/v1\nkind: Cluster\nmetadata: {name: backend, tenant: big}\nspec:\n  endpoints: [{address: 127.0.0.1, port: 18081}]\n".to_owned(),
    ];
    // Routes first in the file: apply must still send the tenant and cluster before them.
    for i in 0..n {
        docs.insert(
            0,
            format!("apiVersion: gw/v1\nkind: Route\nmetadata: {{name: r{i}, tenant: big}}\nspec:\n  match: {{pathPrefix: /r{i}}}\n  cluster: backend\n"),
        );
    }
    docs.join("---\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn large_apply_from_stdin_is_batched_with_progress_lines() {
    let env = Env::start().await;
    let text = many_routes(1200);
    // A dry run is one call, so routes can see the cluster an earlier batch would have created.
    let dry = env
        .run_with_stdin(&["apply", "-f", "-", "--batch", "500", "--dry-run"], &text)
        .await;
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert!(dry
        .stdout
        .lines()
        .all(|l| l.ends_with(" created (dry run)")));
    let out = env
        .run_with_stdin(&["apply", "-f", "-", "--batch", "500"], &text)
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1202);
    assert_eq!(lines[0], "route/big/r1199 created", "file order is kept");
    assert_eq!(lines[1200], "tenant/big created");
    assert!(lines.iter().all(|l| l.ends_with(" created")));
    // Not a terminal: plain progress lines on stderr, one per batch.
    assert_eq!(
        out.stderr,
        "applying 500/1202\napplying 1000/1202\napplying 1202/1202\n"
    );

    // Listing follows pages (the client asks for 1000 per page).
    let list = env.run(&["get", "routes", "-t", "big"]).await;
    assert_eq!(list.stdout.lines().count(), 1201, "{}", list.stderr);

    // diff of a large file fetches by listing, and finds nothing to change.
    let f = env.file("big.yaml", &text);
    let same = env.run(&["diff", "-f", f.to_str().unwrap()]).await;
    assert_eq!(
        (same.code, same.stdout.as_str()),
        (0, ""),
        "{}",
        same.stderr
    );

    // --verbose says what it cost.
    let again = env
        .run_with_stdin(&["-v", "apply", "-f", "-", "--batch", "500"], &text)
        .await;
    assert!(again.stdout.lines().all(|l| l.ends_with(" unchanged")));
    let summary = again.stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("applied 1202 objects in 3 call(s), "),
        "{summary}"
    );

    let del = env.run_with_stdin(&["delete", "-f", "-"], &text).await;
    assert_eq!(del.code, 0, "{}", del.stderr);
    assert!(del.stdout.lines().all(|l| l.ends_with(" deleted")));
    assert_eq!(
        env.run(&["get", "tenants"]).await.stderr.trim(),
        "No tenants found."
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_batch_says_what_earlier_batches_applied() {
    let env = Env::start().await;
    let mut docs = vec![
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: t}\n".to_owned(),
        "apiVersion: gw/v1\nkind: Cluster\nmetadata: {name: c, tenant: t}\n".to_owned(),
    ];
    for (name, cluster) in [("a", "c"), ("b", "c"), ("d", "nope")] {
        docs.push(format!(
            "apiVersion: gw/v1\nkind: Route\nmetadata: {{name: {name}, tenant: t}}\nspec: {{cluster: {cluster}}}\n"
        ));
    }
    let f = env.file("partial.yaml", &docs.join("---\n"));
    let f = f.to_str().unwrap();
    let out = env.run(&["apply", "-f", f, "--batch", "3"]).await;
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stdout,
        "tenant/t created\ncluster/t/c created\nroute/t/a created\n"
    );
    assert_eq!(
        out.stderr,
        format!("applying 3/5\nerror: {f}: document 5 (Route t/d): spec.cluster: cluster \"nope\" does not exist in tenant \"t\"; 3 of 5 objects (listed above) were applied before this batch\n")
    );
    // Machine-readable outcomes.
    let ok = env.file("ok.yaml", &docs[..4].join("---\n"));
    let json = env
        .run(&["apply", "-f", ok.to_str().unwrap(), "-o", "json"])
        .await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[3]["kind"], "Route");
    assert_eq!(v[3]["name"], "b");
    assert_eq!(v[3]["outcome"], "created");
    assert_eq!(v[2]["outcome"], "unchanged");
}
