//! Make-before-break with a real Envoy: moving a route to a brand-new cluster and deleting the old
//! one, while requests flow, fails none of them (the new cluster and its endpoints arrive before
//! the route that uses it; the old cluster goes only after the route has moved away).

#![allow(clippy::unwrap_used)]

use gw_e2e::envoy::{self, Envoy, Mode};
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, free_port, http, wait};
use gw_proto::model::{Kind, ObjectKey};
use std::net::SocketAddr;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

fn manifest(port: u16, cluster: &str, up: u16) -> String {
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

async fn switch_scenario(mode: Mode) {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let port = free_port();
    let mut ups = Vec::new();
    for i in 0..4 {
        ups.push(Upstream::start(&format!("v{i}")).await.unwrap());
    }
    control::apply(&cp, &manifest(port, "v0", ups[0].port()))
        .await
        .unwrap();
    let node = format!("mbb-{mode:?}").to_lowercase();
    let envoy = Envoy::start(&bin, cp.grpc_addr(), &node, "edge", mode)
        .await
        .unwrap();
    envoy.wait_ready().await.unwrap();
    let proxy = SocketAddr::from(([127, 0, 0, 1], port));
    wait::until("traffic", LIMIT, || async {
        (http::get(proxy, "x", "/").await.ok()?.body == "v0").then_some(())
    })
    .await
    .unwrap();

    // Requests flow the whole time; each switch adds cluster vN, moves the route, deletes vN-1.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let load = tokio::spawn(async move {
        let mut failures = Vec::new();
        let mut total = 0;
        while !*stop_rx.borrow_and_update() {
            total += 1;
            match http::get(proxy, "x", "/").await {
                Ok(r) if r.status == 200 => {}
                other => failures.push(format!("{other:?}")),
            }
        }
        (total, failures)
    });
    for (i, up) in ups.iter().enumerate().skip(1) {
        let name = format!("v{i}");
        control::apply(&cp, &manifest(port, &name, up.port()))
            .await
            .unwrap();
        let old = ObjectKey {
            kind: Kind::Cluster,
            tenant: "acme".into(),
            name: format!("v{}", i - 1),
        };
        cp.store().delete(&old, 0).await.unwrap();
        wait::until("route moved", LIMIT, || async {
            (http::get(proxy, "x", "/").await.ok()?.body == name).then_some(())
        })
        .await
        .unwrap();
    }
    let _ = stop_tx.send(true);
    let (total, failures) = load.await.unwrap();
    assert!(total > 10, "load ran: {total}");
    assert!(
        failures.is_empty(),
        "{} of {total} failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    drop(envoy);
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_sotw_switches_clusters_without_errors() {
    switch_scenario(Mode::Sotw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_delta_switches_clusters_without_errors() {
    switch_scenario(Mode::Delta).await;
}
