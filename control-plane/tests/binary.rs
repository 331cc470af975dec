//! The `gw-control-plane` binary: creates and migrates its SQLite userdb on first start, says where
//! it listens, logs JSON when asked, and exits cleanly on SIGTERM.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

#[test]
fn starts_on_fresh_sqlite_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("userdb.sqlite");
    let mut child = Command::new(env!("CARGO_BIN_EXE_gw-control-plane"))
        .args([
            "--db",
            &format!("sqlite://{}", db.display()),
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .args(["--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.starts_with("gw-control-plane: gRPC on 127.0.0.1:"),
        "{line}"
    );
    assert!(db.exists(), "userdb file created on first start");
    let http = line
        .split("HTTP on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();

    let mut s = std::net::TcpStream::connect(&http).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "graceful exit on SIGTERM, got {status}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let first = logs.lines().next().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(first).unwrap_or_else(|e| panic!("not JSON ({e}): {first}"));
    assert_eq!(v["fields"]["message"], "control plane listening");
    assert!(logs.contains("shutting down"), "{logs}");
}

#[test]
fn bad_database_url_is_one_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_gw-control-plane"))
        .args([
            "--db",
            "mysql://x",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unsupported database URL \"mysql://x\""),
        "{err}"
    );
}

/// Starts the binary on `db` with ephemeral ports; returns the child and its gRPC address.
fn spawn(db: &str) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gw-control-plane"))
        .args(["--db", db, "--grpc", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let grpc = line
        .split("gRPC on ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_owned();
    (child, format!("http://{grpc}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_on_one_postgres_see_each_others_writes() {
    use gw_proto::gateway::v1 as pb;
    let Some(db) = gw_control_plane::testing::PgTestDb::create("two_processes").await else {
        return;
    };
    let (mut a, url_a) = spawn(&db.url);
    let (mut b, url_b) = spawn(&db.url);
    let mut via_a = pb::tenants_client::TenantsClient::connect(url_a)
        .await
        .unwrap();
    let meta = pb::ObjectMeta {
        name: "from-a".into(),
        ..Default::default()
    };
    via_a
        .create_tenant(pb::Tenant {
            metadata: Some(meta),
            spec: None,
        })
        .await
        .unwrap();
    let mut via_b = pb::tenants_client::TenantsClient::connect(url_b)
        .await
        .unwrap();
    let got = via_b
        .get_tenant(pb::GetRequest {
            name: "from-a".into(),
            tenant: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().metadata.unwrap().name, "from-a");
    for c in [&mut a, &mut b] {
        Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(c.wait().unwrap().success());
    }
}
