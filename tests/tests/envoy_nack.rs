//! A route Envoy refuses (a regex over RE2's default program size limit, which gw's own
//! validation accepts): Envoy NACKs, keeps serving the previous routes, and the Fleet API shows
//! NACKED with Envoy's error and the gw route it came from; removing the route recovers.

#![allow(clippy::unwrap_used)]

use gw_e2e::envoy::{self, Envoy, Mode};
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, free_port, http, wait};
use gw_proto::gateway::v1::fleet_client::FleetClient;
use gw_proto::gateway::v1::{GetProxyRequest, Proxy, SyncStatus};
use gw_proto::model::{Kind, ObjectKey};
use std::net::SocketAddr;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

async fn proxy_where(grpc: SocketAddr, node: &str, cond: impl Fn(&Proxy) -> bool) -> Proxy {
    let fleet = FleetClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    wait::until("proxy state", LIMIT, || {
        let mut fleet = fleet.clone();
        let req = GetProxyRequest {
            node_id: node.to_owned(),
        };
        let cond = &cond;
        async move {
            let p = fleet.get_proxy(req).await.ok()?.into_inner();
            cond(&p).then_some(p)
        }
    })
    .await
    .unwrap()
}

async fn nack_scenario(mode: Mode) {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let up = Upstream::start("ok").await.unwrap();
    let port = free_port();
    control::apply(
        &cp,
        &format!(
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
metadata: {{name: svc, tenant: acme}}
spec: {{endpoints: [{{address: 127.0.0.1, port: {up}}}]}}
---
apiVersion: gw/v1
kind: Route
metadata: {{name: good, tenant: acme}}
spec: {{match: {{pathPrefix: /good}}, cluster: svc}}
"#,
            up = up.port()
        ),
    )
    .await
    .unwrap();
    let node = format!("nack-{mode:?}").to_lowercase();
    let envoy = Envoy::start(&bin, cp.grpc_addr(), &node, "edge", mode)
        .await
        .unwrap();
    envoy.wait_ready().await.unwrap();
    let proxy = SocketAddr::from(([127, 0, 0, 1], port));
    wait::until("traffic", LIMIT, || async {
        (http::get(proxy, "x", "/good").await.ok()?.status == 200).then_some(())
    })
    .await
    .unwrap();

    let complex = "/(a|b|c|d|e|f|g|h|i|j|k|l|m){1,40}/x";
    control::apply(
        &cp,
        &format!(
            "apiVersion: gw/v1\nkind: Route\nmetadata: {{name: complex, tenant: acme}}\n\
             spec: {{match: {{pathRegex: \"{complex}\"}}, cluster: svc}}\n"
        ),
    )
    .await
    .unwrap();
    let p = proxy_where(cp.grpc_addr(), &node, |p| {
        p.status == SyncStatus::Nacked as i32
    })
    .await;
    let nack = p.last_nack.unwrap();
    assert_eq!(nack.r#type, "RDS", "{nack:?}");
    assert_eq!(nack.objects, ["route/acme/complex"], "{nack:?}");
    assert!(nack.error_detail.contains("program size"), "{nack:?}");
    // Envoy keeps the last good config.
    assert_eq!(http::get(proxy, "x", "/good").await.unwrap().status, 200);

    let key = ObjectKey {
        kind: Kind::Route,
        tenant: "acme".into(),
        name: "complex".into(),
    };
    cp.store().delete(&key, 0).await.unwrap();
    let p = proxy_where(cp.grpc_addr(), &node, |p| {
        p.status == SyncStatus::Synced as i32
    })
    .await;
    assert!(p.last_nack.is_none());
    drop(envoy);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_nack_is_reported_and_recovered() {
    nack_scenario(Mode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_nack_is_reported_and_recovered() {
    nack_scenario(Mode::Delta).await;
}
