//! gwctl as a user runs it: the real binary against a real control plane (in-process, SQLite).

#![allow(clippy::unwrap_used)]

use assert_cmd::Command;
use gw_control_plane::server::{Config, ControlPlane};
use std::path::{Path, PathBuf};

struct Env {
    cp: ControlPlane,
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn start() -> Env {
        let cp = ControlPlane::start(Config::for_tests("sqlite::memory:"))
            .await
            .unwrap();
        Env {
            cp,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn server(&self) -> String {
        format!("http://{}", self.cp.grpc_addr())
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    async fn run(&self, args: &[&str]) -> Out {
        let server = self.server();
        let config = self.dir.path().join("config.yaml");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let out = Command::cargo_bin("gwctl")
                .unwrap()
                .env("GW_SERVER", server)
                .env("GW_CONFIG", config)
                .env("NO_COLOR", "1")
                .env_remove("GW_TOKEN")
                .args(&args)
                .output()
                .unwrap();
            Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .await
        .unwrap()
    }
}

fn quickstart() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart.yaml")
}

fn q() -> String {
    quickstart().display().to_string()
}

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
    let c = env
        .run(&["describe", "cluster", "orders-svc", "-t", "acme"])
        .await;
    assert!(
        c.stdout.contains("Fallback:      users-svc"),
        "{}",
        c.stdout
    );
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
