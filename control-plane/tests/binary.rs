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
