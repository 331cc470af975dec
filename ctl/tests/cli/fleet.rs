//! `proxies` and `describe proxy` against a proxy the control plane really sees: a scripted SotW
//! ADS client that ACKs one CDS response and NACKs the next.

use crate::env::{q, Env};
use gw_proto::envoy::pb::envoy::config::core::v3::Node;
use gw_proto::envoy::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use gw_proto::envoy::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use gw_proto::envoy::pb::google::rpc::Status;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";

struct Proxy {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: tonic::Streaming<DiscoveryResponse>,
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
        let rx = AggregatedDiscoveryServiceClient::connect(env.server())
            .await
            .unwrap()
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        Proxy { tx, rx }
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        tokio::time::timeout(Duration::from_secs(15), self.rx.message())
            .await
            .expect("a CDS response")
            .unwrap()
            .unwrap()
    }

    /// ACKs `r`, or NACKs it with `error`.
    async fn answer(&self, r: &DiscoveryResponse, acked_version: &str, error: Option<&str>) {
        self.tx
            .send(DiscoveryRequest {
                type_url: CDS.into(),
                version_info: acked_version.into(),
                response_nonce: r.nonce.clone(),
                error_detail: error.map(|m| Status {
                    code: 3,
                    message: m.into(),
                    details: vec![],
                }),
                ..Default::default()
            })
            .await
            .unwrap();
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

    let mut proxy = Proxy::connect(&env, "edge-test").await;
    let first = proxy.recv().await;
    proxy.answer(&first, &first.version_info, None).await;
    let v = first.version_info.chars().take(12).collect::<String>();
    let table = until(&env, &["proxies"], |out| {
        out.lines()
            .any(|l| l.starts_with("edge-test ") && l.contains(&format!("  {v}")))
    })
    .await;
    let row: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("edge-test "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..4], ["edge-test", "ingress", row[2], "sotw"]);

    // A change makes a new CDS response; this proxy refuses it.
    let text = std::fs::read_to_string(crate::env::quickstart()).unwrap();
    let f = env.file(
        "changed.yaml",
        &text.replace("connectTimeout: 1s", "connectTimeout: 2s"),
    );
    env.run(&["apply", "-f", f.to_str().unwrap()]).await;
    let second = proxy.recv().await;
    proxy
        .answer(&second, &first.version_info, Some("bad cluster users-svc"))
        .await;
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
    let json = env.run(&["proxies", "-o", "json"]).await;
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["nodeId"], "edge-test");
    assert_eq!(v[0]["status"], "NACKED");
    drop(proxy);
}
