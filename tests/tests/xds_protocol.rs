//! The ADS server driven by scripted clients against a real control plane: NACKs are reported by
//! the Fleet API with the error and the gw object; a client that stops reading blocks nobody;
//! Delta sends only what changed; a write through one replica reaches proxies on another.

#![allow(clippy::unwrap_used)]

use gw_e2e::xds_client::{self, types, DeltaClient, SotwClient};
use gw_e2e::{control, wait};
use gw_proto::gateway::v1::fleet_client::FleetClient;
use gw_proto::gateway::v1::{GetProxyRequest, Proxy, SyncStatus};
use std::net::SocketAddr;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(10);

const BASE: &str = r#"
apiVersion: gw/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: users-svc, tenant: acme}
spec: {endpoints: [{address: 127.0.0.1, port: 9}]}
---
apiVersion: gw/v1
kind: Route
metadata: {name: users, tenant: acme}
spec: {match: {pathPrefix: /users}, cluster: users-svc}
"#;

fn cluster(name: &str, timeout: &str) -> String {
    format!(
        "apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: {name}, tenant: acme}}\n\
         spec: {{connectTimeout: {timeout}, endpoints: [{{address: 127.0.0.1, port: 9}}]}}\n"
    )
}

async fn proxy_where(
    grpc: SocketAddr,
    node: &str,
    what: &str,
    cond: impl Fn(&Proxy) -> bool,
) -> Proxy {
    let fleet = FleetClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    wait::until(what, LIMIT, || {
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

#[tokio::test]
async fn sotw_nack_is_reported_with_error_and_object_then_cleared() {
    let cp = control::start().await.unwrap();
    control::apply(&cp, BASE).await.unwrap();
    let node = xds_client::node("nacker", "ingress");
    let mut c = SotwClient::connect(
        cp.grpc_addr(),
        xds_client::sotw_subscribe(Some(node), types::CLUSTER, &[]),
    )
    .await
    .unwrap();
    let cds = c.recv(LIMIT).await.unwrap();
    assert_eq!(cds.resources.len(), 1);
    c.answer(
        &cds,
        &[],
        "",
        xds_client::error("cluster acme/users-svc: scripted rejection"),
    )
    .await
    .unwrap();
    let p = proxy_where(cp.grpc_addr(), "nacker", "NACKED", |p| {
        p.status == SyncStatus::Nacked as i32
    })
    .await;
    let nack = p.last_nack.unwrap();
    assert_eq!(nack.r#type, "CDS");
    assert_eq!(
        nack.error_detail,
        "cluster acme/users-svc: scripted rejection"
    );
    assert_eq!(nack.objects, ["cluster/acme/users-svc"]);
    assert_eq!(nack.version, cds.version_info);
    assert_eq!(p.protocol, "sotw");

    // The same config is not pushed again; a fix is, and its ACK clears the NACK.
    control::apply(&cp, &cluster("users-svc", "2s"))
        .await
        .unwrap();
    let fixed = c.recv(LIMIT).await.unwrap();
    assert_ne!(fixed.version_info, cds.version_info);
    c.answer(&fixed, &[], &fixed.version_info, None)
        .await
        .unwrap();
    let p = proxy_where(cp.grpc_addr(), "nacker", "SYNCED after fix", |p| {
        p.status == SyncStatus::Synced as i32
    })
    .await;
    assert!(p.last_nack.is_none());
    assert_eq!(p.types[0].acked_version, fixed.version_info);
    cp.shutdown().await;
}

#[tokio::test]
async fn delta_nack_of_routes_names_the_route_and_disconnect_is_shown() {
    let cp = control::start().await.unwrap();
    control::apply(&cp, BASE).await.unwrap();
    let node = xds_client::node("delta-nacker", "ingress");
    let mut c = DeltaClient::connect(
        cp.grpc_addr(),
        xds_client::delta_subscribe(Some(node), types::ROUTE, &["ingress"]),
    )
    .await
    .unwrap();
    let rds = c.recv(LIMIT).await.unwrap();
    assert_eq!(rds.resources[0].name, "ingress");
    let mut nack = xds_client::delta_subscribe(None, types::ROUTE, &[]);
    nack.response_nonce = rds.nonce.clone();
    nack.error_detail = xds_client::error("route acme/users: unsupported");
    c.send(nack).await.unwrap();
    let p = proxy_where(cp.grpc_addr(), "delta-nacker", "NACKED", |p| {
        p.status == SyncStatus::Nacked as i32
    })
    .await;
    let n = p.last_nack.unwrap();
    assert_eq!(
        (n.r#type.as_str(), n.objects.as_slice()),
        ("RDS", &["route/acme/users".to_owned()][..])
    );
    assert_eq!(p.protocol, "delta");
    drop(c);
    proxy_where(cp.grpc_addr(), "delta-nacker", "DISCONNECTED", |p| {
        p.status == SyncStatus::Disconnected as i32
    })
    .await;
    cp.shutdown().await;
}

#[tokio::test]
async fn delta_sends_only_changed_and_removed_resources() {
    let cp = control::start().await.unwrap();
    control::apply(&cp, BASE).await.unwrap();
    control::apply(&cp, &cluster("b", "1s")).await.unwrap();
    let mut c = DeltaClient::connect(
        cp.grpc_addr(),
        xds_client::delta_subscribe(Some(xds_client::node("d", "ingress")), types::CLUSTER, &[]),
    )
    .await
    .unwrap();
    // The publisher may not have seen the second write yet: read until the client has both.
    let mut have = std::collections::BTreeSet::new();
    while have.len() < 2 {
        let r = c.recv(LIMIT).await.unwrap();
        have.extend(r.resources.iter().map(|r| r.name.clone()));
        c.ack(&r).await.unwrap();
    }
    assert_eq!(
        have.into_iter().collect::<Vec<_>>(),
        ["acme/b", "acme/users-svc"]
    );
    control::apply(&cp, &cluster("b", "3s")).await.unwrap();
    let change = c.recv(LIMIT).await.unwrap();
    let names: Vec<_> = change.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["acme/b"]);
    assert!(change.removed_resources.is_empty());
    c.ack(&change).await.unwrap();
    let key = gw_proto::model::ObjectKey {
        kind: gw_proto::model::Kind::Cluster,
        tenant: "acme".into(),
        name: "b".into(),
    };
    cp.store().delete(&key, 0).await.unwrap();
    let removal = c.recv(LIMIT).await.unwrap();
    assert!(removal.resources.is_empty());
    assert_eq!(removal.removed_resources, ["acme/b"]);
    cp.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_blocks_nobody() {
    let cp = control::start().await.unwrap();
    control::apply(&cp, BASE).await.unwrap();
    // The stuck client subscribes, then never reads nor ACKs.
    let _stuck = SotwClient::connect(
        cp.grpc_addr(),
        xds_client::sotw_subscribe(
            Some(xds_client::node("stuck", "ingress")),
            types::CLUSTER,
            &[],
        ),
    )
    .await
    .unwrap();
    let mut live = DeltaClient::connect(
        cp.grpc_addr(),
        xds_client::delta_subscribe(
            Some(xds_client::node("live", "ingress")),
            types::CLUSTER,
            &[],
        ),
    )
    .await
    .unwrap();
    let r = live.recv(LIMIT).await.unwrap();
    live.ack(&r).await.unwrap();
    // Many big-ish changes: the stuck stream's buffers fill up long before the last one.
    let mut yaml = String::new();
    for i in 0..200 {
        yaml += &cluster(&format!("filler-{i}"), "1s");
        yaml += "---\n";
    }
    control::apply(&cp, &yaml).await.unwrap();
    for n in 2..30 {
        control::apply(&cp, &cluster("users-svc", &format!("{n}s")))
            .await
            .unwrap();
    }
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let r = live.recv(LIMIT).await.unwrap();
        live.ack(&r).await.unwrap();
        let body = r
            .resources
            .iter()
            .find(|x| x.name == "acme/users-svc")
            .and_then(|x| x.resource.as_ref());
        if let Some(any) = body {
            use prost::Message;
            let c =
                gw_proto::envoy::pb::envoy::config::cluster::v3::Cluster::decode(&any.value[..])
                    .unwrap();
            if c.connect_timeout.map(|d| d.seconds) == Some(29) {
                break;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "live client starved"
        );
    }
    cp.shutdown().await;
}

#[tokio::test]
async fn a_write_through_one_replica_reaches_proxies_on_another() {
    use gw_control_plane::server::{Config, ControlPlane};
    let Some(db) = gw_control_plane::testing::PgTestDb::create("xds_replicas").await else {
        return;
    };
    let a = ControlPlane::start(Config::for_tests(db.url.clone()))
        .await
        .unwrap();
    let b = ControlPlane::start(Config::for_tests(db.url.clone()))
        .await
        .unwrap();
    control::apply(&a, BASE).await.unwrap();
    let mut c = DeltaClient::connect(
        b.grpc_addr(),
        xds_client::delta_subscribe(
            Some(xds_client::node("on-b", "ingress")),
            types::CLUSTER,
            &[],
        ),
    )
    .await
    .unwrap();
    let mut have = std::collections::BTreeSet::new();
    while !have.contains("acme/users-svc") {
        let r = c.recv(LIMIT).await.unwrap();
        have.extend(r.resources.iter().map(|r| r.name.clone()));
        c.ack(&r).await.unwrap();
    }
    control::apply(&a, &cluster("from-a", "1s")).await.unwrap();
    loop {
        let r = c.recv(LIMIT).await.unwrap();
        c.ack(&r).await.unwrap();
        if r.resources.iter().any(|r| r.name == "acme/from-a") {
            break;
        }
    }
    a.shutdown().await;
    b.shutdown().await;
}
