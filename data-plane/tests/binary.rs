//! The `gw-proxy` binary as an operator runs it: `--workers 2` against a control plane, every
//! worker accepting, and SIGTERM draining: the request in flight is answered, the port is closed
//! and the process exits 0.

#![allow(clippy::unwrap_used)]

mod common;

use common::{
    assert_both_workers_accepted, client, eventually, get, until_one_in_flight, Upstream,
};
use std::net::SocketAddr;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_on_every_worker_and_drains_on_sigterm() {
    let a = Upstream::start("a").await;
    let cp = gw_control_plane::server::ControlPlane::start(
        gw_control_plane::server::Config::for_tests("sqlite::memory:"),
    )
    .await
    .unwrap();
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: a, tenant: t}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: a}}\n",
        a.port()
    );
    common::apply(&cp, &yaml).await;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_gw-proxy"))
        .args(["--xds", &format!("http://{}", cp.grpc_addr())])
        .args(["--node-id", "bin-1", "--listen", "127.0.0.1:0"])
        .args(["--admin", "127.0.0.1:0", "--workers", "2"])
        .args(["--drain-timeout", "10s"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .await
        .unwrap();
    // "gw-proxy: traffic on ADDR (2 workers), admin on ADDR"
    assert!(line.contains("(2 workers)"), "{line}");
    let addr = |after: &str| -> SocketAddr {
        let rest = line.split(after).nth(1).unwrap();
        rest.split([' ', '\n']).next().unwrap().parse().unwrap()
    };
    let (p, admin) = (addr("traffic on "), addr("admin on "));
    let c = client();
    eventually(10, "routes served", || async {
        (get(&c, p, "/x").await.status == 200).then_some(())
    })
    .await;

    // 32 requests at once take 32 connections (the client opens one per request in flight), which
    // the kernel spreads over the two workers' sockets.
    let batch: Vec<_> = (0..32)
        .map(|_| {
            let c = client();
            tokio::spawn(async move { get(&c, p, "/slow/200").await.status })
        })
        .collect();
    for r in batch {
        assert_eq!(r.await.unwrap(), 200);
    }
    assert_both_workers_accepted(&c, admin).await;

    // SIGTERM with a request in flight: it is answered, then the process exits 0.
    let inflight = tokio::spawn(async move { get(&client(), p, "/slow/1000").await });
    until_one_in_flight(&c, admin).await;
    let pid = child.id().unwrap().to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(kill.success());
    let r = inflight.await.unwrap();
    assert_eq!(
        (r.status, r.upstream.as_str()),
        (200, "a"),
        "the request in flight was answered"
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait())
        .await
        .expect("still running 30 s after SIGTERM (the drain timeout is 10 s)")
        .unwrap();
    assert!(status.success(), "exit after the drain: {status}");
    assert!(
        tokio::net::TcpStream::connect(p).await.is_err(),
        "the port is closed"
    );
    cp.shutdown().await;
}
