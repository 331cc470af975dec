//! The xDS client against a scripted ADS server (a real tonic server on 127.0.0.1:0 whose
//! responses the test sends by hand): ACK, subscription following, NACK with `error_detail`
//! while the previous config keeps serving, reconnect announcing what is held, config cache.

#![allow(clippy::unwrap_used)]

mod common;

use common::{client, get, Upstream};
use gw_proto::envoy::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use gw_proto::envoy::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse, Resource,
};
use gw_proto::envoy::pb::google::protobuf::Any;
use gw_proxy::config::{fixture, type_url};
use gw_proxy::server::{Proxy, ProxyConfig};
use prost::Message;
use std::net::SocketAddr;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

/// One Delta stream as the test sees it.
struct Session {
    requests: UnboundedReceiver<DeltaDiscoveryRequest>,
    responses: UnboundedSender<Result<DeltaDiscoveryResponse, Status>>,
}

impl Session {
    async fn next(&mut self) -> DeltaDiscoveryRequest {
        tokio::time::timeout(std::time::Duration::from_secs(10), self.requests.recv())
            .await
            .expect("a request within 10 s")
            .expect("stream open")
    }

    fn send<M: Message>(&self, t: &str, nonce: &str, resources: &[(&str, &M)]) {
        let resources = resources
            .iter()
            .map(|(name, m)| Resource {
                name: (*name).into(),
                version: format!("v{nonce}"),
                resource: Some(Any {
                    type_url: t.into(),
                    value: m.encode_to_vec(),
                }),
                ..Default::default()
            })
            .collect();
        self.responses
            .send(Ok(DeltaDiscoveryResponse {
                type_url: t.into(),
                nonce: nonce.into(),
                system_version_info: format!("sys{nonce}"),
                resources,
                ..Default::default()
            }))
            .unwrap();
    }
}

struct Script {
    sessions: UnboundedSender<Session>,
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for Script {
    type StreamAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DiscoveryResponse, Status>>;
    type DeltaAggregatedResourcesStream =
        UnboundedReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        _: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented("this script speaks Delta"))
    }

    async fn delta_aggregated_resources(
        &self,
        req: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let mut inbound = req.into_inner();
        let (req_tx, requests) = unbounded_channel();
        let (responses, resp_rx) = unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if req_tx.send(m).is_err() {
                    break;
                }
            }
        });
        let _ = self.sessions.send(Session {
            requests,
            responses,
        });
        Ok(Response::new(UnboundedReceiverStream::new(resp_rx)))
    }
}

async fn script_server() -> (SocketAddr, UnboundedReceiver<Session>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (sessions, rx) = unbounded_channel();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AggregatedDiscoveryServiceServer::new(Script { sessions }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (addr, rx)
}

fn assert_ack(r: &DeltaDiscoveryRequest, t: &str, nonce: &str) {
    assert_eq!((r.type_url.as_str(), r.response_nonce.as_str()), (t, nonce));
    assert!(
        r.error_detail.is_none(),
        "expected an ACK: {:?}",
        r.error_detail
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acks_nacks_reconnects_and_caches() {
    let up = Upstream::start("a").await;
    let (xds, mut sessions) = script_server().await;
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = ProxyConfig::for_tests(Some(format!("http://{xds}")), "edge-script");
    cfg.cache_dir = Some(cache.path().to_owned());
    let proxy = Proxy::start(cfg.clone()).await.unwrap();
    let c = client();
    let p = proxy.listen_addr();

    let mut s = sessions.recv().await.unwrap();
    let opening = [s.next().await, s.next().await];
    assert_eq!(opening[0].type_url, type_url::CLUSTER);
    assert_eq!(opening[1].type_url, type_url::LISTENER);
    assert_eq!(opening[0].node.as_ref().unwrap().id, "edge-script");

    s.send(
        type_url::CLUSTER,
        "1",
        &[("t/a", &fixture::cluster("t/a", "round_robin"))],
    );
    assert_ack(&s.next().await, type_url::CLUSTER, "1");
    let eds = s.next().await;
    assert_eq!(eds.type_url, type_url::ENDPOINT);
    assert_eq!(eds.resource_names_subscribe, ["t/a"]);
    s.send(
        type_url::ENDPOINT,
        "2",
        &[("t/a", &fixture::endpoints("t/a", &[(up.addr, 1)]))],
    );
    assert_ack(&s.next().await, type_url::ENDPOINT, "2");
    s.send(
        type_url::LISTENER,
        "3",
        &[("ingress", &fixture::listener("ingress", 8080, "rc"))],
    );
    assert_ack(&s.next().await, type_url::LISTENER, "3");
    assert_eq!(s.next().await.resource_names_subscribe, ["rc"]);
    let good = fixture::route_config(
        "rc",
        vec![(vec!["*"], vec![fixture::prefix_route("t/r", "/", "t/a")])],
    );
    s.send(type_url::ROUTE, "4", &[("rc", &good)]);
    assert_ack(&s.next().await, type_url::ROUTE, "4");
    // Applied before the ACK went out.
    assert_eq!(get(&c, proxy.admin_addr(), "/ready").await.status, 200);
    assert_eq!(get(&c, p, "/x").await.upstream, "a");

    // A route configuration that cannot compile: NACK naming it, old routes keep serving.
    let mut bad_route = fixture::prefix_route("t/bad", "/", "t/a");
    bad_route.r#match.as_mut().unwrap().path_specifier = Some(
        gw_proto::envoy::pb::envoy::config::route::v3::route_match::PathSpecifier::SafeRegex(
            gw_proto::envoy::pb::envoy::r#type::matcher::v3::RegexMatcher {
                regex: "(unclosed".into(),
                ..Default::default()
            },
        ),
    );
    let bad = fixture::route_config("rc", vec![(vec!["*"], vec![bad_route])]);
    s.send(type_url::ROUTE, "5", &[("rc", &bad)]);
    let nack = s.next().await;
    assert_eq!(nack.response_nonce, "5");
    let detail = nack.error_detail.expect("a NACK").message;
    assert!(
        detail.contains("t/bad") && detail.contains("regex"),
        "{detail}"
    );
    assert_eq!(
        get(&c, p, "/x").await.upstream,
        "a",
        "previous config still served"
    );

    // The control plane drops the stream: last-known-good keeps serving, and the next stream
    // announces what is held.
    s.responses
        .send(Err(Status::unavailable("restarting")))
        .unwrap();
    assert_eq!(get(&c, p, "/x").await.upstream, "a");
    let mut s2 = sessions.recv().await.unwrap();
    let mut opening = Vec::new();
    for _ in 0..4 {
        opening.push(s2.next().await);
    }
    let cds = opening
        .iter()
        .find(|r| r.type_url == type_url::CLUSTER)
        .unwrap();
    assert_eq!(cds.initial_resource_versions["t/a"], "v1");
    let rds = opening
        .iter()
        .find(|r| r.type_url == type_url::ROUTE)
        .unwrap();
    assert_eq!(rds.resource_names_subscribe, ["rc"]);
    assert_eq!(rds.initial_resource_versions["rc"], "v4");
    assert_eq!(get(&c, p, "/x").await.upstream, "a");
    proxy.shutdown().await;

    // A proxy started with the control plane unreachable serves the cached config at once.
    drop(s2);
    let dead = common::dead_port();
    let dead_addr = format!("127.0.0.1:{}", dead.port());
    let cold = Proxy::start(ProxyConfig {
        xds: Some(format!("http://{dead_addr}")),
        ..cfg
    })
    .await
    .unwrap();
    assert_eq!(get(&c, cold.admin_addr(), "/ready").await.status, 200);
    assert_eq!(get(&c, cold.listen_addr(), "/x").await.upstream, "a");
    cold.shutdown().await;
}
