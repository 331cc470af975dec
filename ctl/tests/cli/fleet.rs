//! `proxies` and `describe proxy` against a proxy the control plane really sees: a scripted SotW
//! ADS client that ACKs one CDS response and NACKs the next.

use crate::env::{q, Env};
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use gw_proto::envoy::pb::envoy::service::discovery::v3::DiscoveryRequest;
use gw_proto::envoy::pb::google::rpc::Status;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

/// How the scripted proxy answers responses.
#[derive(Clone, Debug, PartialEq)]
enum Answer {
    Ack,
    Nack(String),
}

/// A proxy that answers every CDS response as told, like a real one would: the control plane may
/// send several (push coalescing), and an answer to an outdated nonce is ignored.
struct Proxy {
    answer: tokio::sync::watch::Sender<Answer>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn connect(env: &Env, id: &str) -> Proxy {
        let (tx, rx) = mpsc::channel(8);
        tx.send(DiscoveryRequest {
            node: Some(Node {
                id: id.into(),
                cluster: "ingress".into(),
                ..Default::default()
            }),
            type_url: CDS.into(),
            ..Default::default()
        })
        .await
        .unwrap();
        let mut responses = AggregatedDiscoveryServiceClient::connect(env.server())
            .await
            .unwrap()
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        let (answer, how) = tokio::sync::watch::channel(Answer::Ack);
        let task = tokio::spawn(async move {
            let mut acked = String::new();
            while let Ok(Some(r)) = responses.message().await {
                let error_detail = match &*how.borrow() {
                    Answer::Ack => {
                        acked = r.version_info.clone();
                        None
                    }
                    Answer::Nack(m) => Some(Status {
                        code: 3,
                        message: m.clone(),
                        details: vec![],
                    }),
                };
                let req = DiscoveryRequest {
                    type_url: CDS.into(),
                    version_info: acked.clone(),
                    response_nonce: r.nonce.clone(),
                    error_detail,
                    ..Default::default()
                };
                if tx.send(req).await.is_err() {
                    return;
                }
            }
        });
        Proxy { answer, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs `args` until `done(stdout)`, within a deadline: the control plane records ACKs
/// asynchronously.
async fn until(env: &Env, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = env.run(args).await;
        assert_eq!(out.code, 0, "{}", out.stderr);
        if done(&out.stdout) {
            return out.stdout;
        }
        assert!(
            Instant::now() < deadline,
            "never got there:\n{}",
            out.stdout
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn proxies_show_acks_and_nacks() {
    let env = Env::start().await;
    env.run(&["apply", "-f", &q()]).await;
    let none = env.run(&["proxies"]).await;
    assert_eq!(none.stderr.trim(), "No proxies connected.");

    let proxy = Proxy::connect(&env, "edge-test").await;
    let acked = |out: &str| {
        out.lines().any(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&"edge-test") && cells.get(6).is_some_and(|v| *v != "-")
        })
    };
    let table = until(&env, &["proxies"], acked).await;
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("edge-test "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!((row[1], row[3]), ("ingress", "sotw"), "{table}");

    // A change makes a new CDS response; this proxy refuses it.
    proxy
        .answer
        .send(Answer::Nack("bad cluster users-svc".into()))
        .unwrap();
    let text = std::fs::read_to_string(crate::env::quickstart()).unwrap();
    let f = env.file(
        "changed.yaml",
        &text.replace("connectTimeout: 1s", "connectTimeout: 2s"),
    );
    env.run(&["apply", "-f", f.to_str().unwrap()]).await;
    let table = until(&env, &["proxies"], |out| out.contains("NACKED")).await;
    assert!(table.contains("edge-test NACKed CDS version "), "{table}");
    assert!(table.contains(": bad cluster users-svc\n"), "{table}");
    let d = env.run(&["describe", "proxy", "edge-test"]).await;
    assert_eq!(d.code, 0, "{}", d.stderr);
    for want in [
        "Node:          edge-test\n",
        "Node cluster:  ingress\n",
        "Protocol:      sotw\n",
        "Status:        NACKED\n",
        "): bad cluster users-svc\n",
    ] {
        assert!(d.stdout.contains(want), "missing {want:?} in\n{}", d.stdout);
    }
    // Both show up as events, and on the object the NACK blames.
    let ev = until(&env, &["events"], |out| out.contains("config_nacked")).await;
    assert!(ev.contains("proxy_connected      proxy/edge-test"), "{ev}");
    let d = env
        .run(&["describe", "cluster", "orders-svc", "-t", "acme"])
        .await;
    assert!(
        d.stdout
            .contains("  error    config_nacked        edge-test refused CDS version"),
        "{}",
        d.stdout
    );
    let lines = env.run(&["events", "-o", "json"]).await;
    for l in lines.stdout.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(e["kind"].is_string());
    }
    let json = env.run(&["proxies", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["nodeId"], "edge-test");
    assert_eq!(v[0]["status"], "NACKED");
    drop(proxy);
}
