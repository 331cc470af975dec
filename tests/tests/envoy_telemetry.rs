//! A stock Envoy reports through the same path as gw-proxy: its `MetricsService` stats sink and
//! the gRPC access log gw's listeners carry reach the control plane's rollups and access logs.

#![allow(clippy::unwrap_used)]

use gw_e2e::envoy::{self, Envoy, Mode};
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, dead_port, free_port, http, wait};
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::stats_client::StatsClient;
use std::net::SocketAddr;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn envoy_stats_and_access_logs_reach_the_control_plane() {
    let Some(bin) = envoy::binary() else { return };
    let cp = control::start().await.unwrap();
    let up = Upstream::start("a").await.unwrap();
    let unanswered = dead_port();
    let (port, dead) = (free_port(), unanswered.port());
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {{nodeCluster: edge, address: 127.0.0.1, port: {port}}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: users, tenant: acme}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: down, tenant: acme}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {dead}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: users, tenant: acme}}\nspec: {{match: {{pathPrefix: /users}}, cluster: users}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: down, tenant: acme}}\nspec: {{match: {{pathPrefix: /down}}, cluster: down}}\n",
        up.port()
    );
    control::apply(&cp, &yaml).await.unwrap();
    let envoy = Envoy::start(&bin, cp.grpc_addr(), "telemetry-envoy", "edge", Mode::Delta)
        .await
        .unwrap();
    envoy.wait_ready().await.unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait::until("Envoy serving", Duration::from_secs(20), || async {
        (http::get(addr, "x", "/users/1").await.ok()?.status == 200).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    for _ in 0..10 {
        assert_eq!(http::get(addr, "x", "/users/1").await.unwrap().status, 200);
    }
    assert_eq!(http::get(addr, "x", "/down/1").await.unwrap().status, 503);

    let mut stats = StatsClient::connect(format!("http://{}", cp.grpc_addr()))
        .await
        .unwrap();
    // Cluster stats from Envoy's stats sink (cumulative counters, flushed every second).
    let rows = wait::until(
        "Envoy cluster stats in rollups",
        Duration::from_secs(30),
        || {
            let mut stats = stats.clone();
            async move {
                let req = pb::StatsRequest {
                    kind: "cluster".into(),
                    tenant: "acme".into(),
                    name: "users".into(),
                    ..Default::default()
                };
                let rows = stats.get_stats(req).await.ok()?.into_inner().rows;
                rows.into_iter().find(|r| r.status_2xx >= 11)
            }
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert_eq!(rows.name, "users");
    // The 503 from the gRPC access log, with the gw names resolved.
    let logs = wait::until("Envoy access logs", Duration::from_secs(30), || {
        let mut stats = stats.clone();
        async move {
            let req = pb::LogsRequest {
                status: "5xx".into(),
                ..Default::default()
            };
            let recs = stats.get_logs(req).await.ok()?.into_inner().records;
            (!recs.is_empty()).then_some(recs)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    let l = &logs[0];
    assert_eq!(
        (l.tenant.as_str(), l.route.as_str(), l.cluster.as_str()),
        ("acme", "down", "down")
    );
    assert_eq!(
        (l.status, l.method.as_str(), l.path.as_str()),
        (503, "GET", "/down/1")
    );
    assert_eq!(l.node, "telemetry-envoy");
    assert!(
        !l.upstream_error.is_empty(),
        "the connect failure is named: {l:?}"
    );
    let _ = stats
        .get_stats(pb::StatsRequest {
            kind: "route".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    drop(envoy);
    cp.shutdown().await;
}
