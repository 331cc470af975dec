//! gRPC through the gateway: a Cluster with `protocol: http2` (Envoy's upstream
//! `http2_protocol_options`) in front of a real gRPC service (the control plane's own API, served
//! by tonic), reached through a stock Envoy 1.40 and through gw-proxy from the same manifest. A
//! tonic client gets the same answers from both: unary calls' replies (grpc-status in the
//! trailers), an error status (a trailers-only answer), and the proxies' own replies (no endpoint,
//! no route) as gRPC statuses.

#![allow(clippy::unwrap_used)]

use gw_e2e::serving::on_both_with;
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::clusters_client::ClustersClient;
use gw_proto::gateway::v1::routes_client::RoutesClient;
use gw_proto::gateway::v1::tenants_client::TenantsClient;
use std::net::SocketAddr;

async fn check(who: &'static str, addr: SocketAddr) {
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("{who}: connect: {e:?}"));
    let mut tenants = TenantsClient::new(ch);
    // Several calls over the one client connection, each a stream of the proxy's HTTP/2
    // connection upstream.
    for _ in 0..3 {
        let list = tenants
            .list_tenants(pb::ListRequest::default())
            .await
            .unwrap_or_else(|e| panic!("{who}: ListTenants: {e:?}"))
            .into_inner();
        let names: Vec<_> = list
            .tenants
            .iter()
            .filter_map(|t| t.metadata.as_ref().map(|m| m.name.as_str()))
            .collect();
        assert_eq!(names, ["acme"], "{who}");
    }
    // An error comes back as the service's status (tonic answers it trailers-only), not as an
    // HTTP error of the proxy's.
    let missing = tenants
        .get_tenant(pb::GetRequest {
            name: "nobody".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound, "{who}: {missing:?}");

    // The proxy's own replies reach a gRPC client as gRPC statuses (Envoy's mapping): a cluster
    // with no endpoint (503) is UNAVAILABLE, a path no route takes (404) UNIMPLEMENTED.
    let ch = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let none = ClustersClient::new(ch.clone())
        .list_clusters(pb::ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(none.code(), tonic::Code::Unavailable, "{who}: {none:?}");
    let unrouted = RoutesClient::new(ch)
        .list_routes(pb::ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        unrouted.code(),
        tonic::Code::Unimplemented,
        "{who}: {unrouted:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_carry_grpc_to_an_http2_cluster_alike() {
    on_both_with(
        "grpc",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |api| {
            format!(
                "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: api, tenant: acme}}\n\
                 spec: {{protocol: http2, endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: api, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /gateway.v1.Tenants/}}, cluster: api}}\n\
                 ---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: empty, tenant: acme}}\n\
                 spec: {{protocol: http2}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: empty, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /gateway.v1.Clusters/}}, cluster: empty}}\n",
                api.port()
            )
        },
        check,
    )
    .await;
}
