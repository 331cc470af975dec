//! A control plane restart never makes Envoy drop config: Envoy keeps serving while the control
//! plane is down, reconnects to the new process (same userdb), ends up SYNCED with the same
//! resource versions, and follows writes made through the new process.

#![allow(clippy::unwrap_used)]

use gw_control_plane::server::{Config, ControlPlane};
use gw_e2e::envoy::{self, Envoy, Mode};
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, free_port, http, wait};
use gw_proto::gateway::v1::fleet_client::FleetClient;
use gw_proto::gateway::v1::{GetProxyRequest, SyncStatus};
use std::net::SocketAddr;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(30);

fn manifest(port: u16, up: u16, cluster: &str) -> String {
    format!(
        r#"
apiVersion: gw/v1
kind: Tenant
metadata: {{name: acme}}
---
apiVersion: gw/v1
kind: Listener
metadata: {{name: edge}}
spec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}}}
---
apiVersion: gw/v1
kind: Cluster
metadata: {{name: {cluster}, tenant: acme}}
spec: {{endpoints: [{{address: 127.0.0.1, port: {up}}}]}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: all, tenant: acme}}
spec: {{match: {{pathPrefix: /}}, cluster: {cluster}}}
"#
    )
}

/// `(type, name, version)` of every dynamic resource in a config dump.
fn versions(dump: &serde_json::Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for section in dump["configs"].as_array().into_iter().flatten() {
        for key in [
            "dynamic_active_clusters",
            "dynamic_listeners",
            "dynamic_route_configs",
        ] {
            for r in section[key].as_array().into_iter().flatten() {
                let name = r["cluster"]["name"]
                    .as_str()
                    .or(r["name"].as_str())
                    .or(r["route_config"]["name"].as_str())
                    .unwrap_or_default();
                let version = r["version_info"]
                    .as_str()
                    .or(r["active_state"]["version_info"].as_str())
                    .unwrap_or_default();
                out.push((key.to_owned(), name.to_owned(), version.to_owned()));
            }
        }
    }
    out.sort();
    out
}

async fn synced(grpc: SocketAddr, node: &str) {
    let fleet = FleetClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    wait::until("proxy SYNCED", LIMIT, || {
        let mut fleet = fleet.clone();
        let req = GetProxyRequest {
            node_id: node.to_owned(),
        };
        async move {
            let p = fleet.get_proxy(req).await.ok()?.into_inner();
            (p.status == SyncStatus::Synced as i32).then_some(())
        }
    })
    .await
    .unwrap();
}

async fn restart_scenario(mode: Mode) {
    let Some(bin) = envoy::binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("userdb.sqlite").display());
    // The second control plane takes the first one's port: one from below the ephemeral range,
    // which no port-0 bind or outgoing connection can take in between.
    let cfg = Config {
        grpc: ([127, 0, 0, 1], free_port()).into(),
        ..Config::for_tests(db)
    };
    let cp = ControlPlane::start(cfg.clone()).await.unwrap();
    let up = Upstream::start("one").await.unwrap();
    let port = free_port();
    control::apply(&cp, &manifest(port, up.port(), "one"))
        .await
        .unwrap();
    let node = format!("restart-{mode:?}").to_lowercase();
    let envoy = Envoy::start(&bin, cp.grpc_addr(), &node, "edge", mode)
        .await
        .unwrap();
    envoy.wait_ready().await.unwrap();
    let proxy = SocketAddr::from(([127, 0, 0, 1], port));
    wait::until("traffic", LIMIT, || async {
        (http::get(proxy, "x", "/").await.ok()?.body == "one").then_some(())
    })
    .await
    .unwrap();
    synced(cp.grpc_addr(), &node).await;
    let before = versions(&envoy.config_dump().await.unwrap());
    assert!(before.len() >= 3, "{before:?}");

    // Control plane down: Envoy keeps its config.
    cp.shutdown().await;
    assert_eq!(http::get(proxy, "x", "/").await.unwrap().body, "one");

    // A new process on the same port and userdb: same versions, nothing dropped.
    let cp = ControlPlane::start(cfg).await.unwrap();
    synced(cp.grpc_addr(), &node).await;
    assert_eq!(http::get(proxy, "x", "/").await.unwrap().body, "one");
    let after = versions(&envoy.config_dump().await.unwrap());
    assert_eq!(before, after, "content-hash versions survive a restart");

    // And the new process pushes changes.
    let two = Upstream::start("two").await.unwrap();
    control::apply(&cp, &manifest(port, two.port(), "two"))
        .await
        .unwrap();
    wait::until(
        "traffic follows a write through the new process",
        LIMIT,
        || async { (http::get(proxy, "x", "/").await.ok()?.body == "two").then_some(()) },
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nconfig: {:?}\nlog:\n{}",
            futures::executor::block_on(envoy.config_dump()).map(|d| versions(&d)),
            envoy.log()
        )
    });
    drop(envoy);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_survives_control_plane_restart() {
    restart_scenario(Mode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_survives_control_plane_restart() {
    restart_scenario(Mode::Delta).await;
}
