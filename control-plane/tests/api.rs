//! The gateway.v1 API over real gRPC: status codes, field-named errors, paging, reflection.

#![allow(clippy::unwrap_used)]

mod support;

use gw_control_plane::server::{Config, ControlPlane};
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::clusters_client::ClustersClient;
use gw_proto::gateway::v1::config_client::ConfigClient;
use gw_proto::gateway::v1::endpoints_client::EndpointsClient;
use gw_proto::gateway::v1::routes_client::RoutesClient;
use gw_proto::gateway::v1::tenants_client::TenantsClient;
use support::meta;
use tonic::transport::Channel;
use tonic::Code;

async fn start() -> (ControlPlane, Channel) {
    let cp = ControlPlane::start(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    let ch = support::channel(&cp).await;
    (cp, ch)
}

fn route(name: &str, cluster: &str) -> pb::Route {
    pb::Route {
        metadata: meta(name, "acme"),
        spec: Some(pb::RouteSpec {
            cluster: cluster.into(),
            r#match: Some(pb::RouteMatch {
                path: Some(pb::route_match::Path::PathPrefix(format!("/{name}"))),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

async fn seed(ch: &Channel) {
    let t = TenantsClient::new(ch.clone())
        .create_tenant(pb::Tenant {
            metadata: meta("acme", ""),
            spec: None,
        })
        .await
        .unwrap()
        .into_inner();
    let r = t.result.unwrap();
    assert!(r.revision > 0);
    assert_eq!(r.revision, r.resource_version);
    ClustersClient::new(ch.clone())
        .create_cluster(pb::Cluster {
            metadata: meta("users-svc", "acme"),
            spec: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn mutations_return_versions_and_errors_name_fields() {
    let (cp, ch) = start().await;
    seed(&ch).await;
    let mut routes = RoutesClient::new(ch.clone());
    let created = routes
        .create_route(route("users", "users-svc"))
        .await
        .unwrap()
        .into_inner();
    let rv = created.result.unwrap().resource_version;
    assert_eq!(
        created.route.unwrap().metadata.unwrap().resource_version,
        rv
    );

    // A missing cluster is refused, naming the field.
    let e = routes
        .create_route(route("orders", "orders-svc"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        e.message(),
        "spec.cluster: cluster \"orders-svc\" does not exist in tenant \"acme\""
    );

    // A bad field is refused, naming the field.
    let mut bad = route("bad", "users-svc");
    bad.spec.as_mut().unwrap().retry = Some(pb::RetryPolicy {
        attempts: 2,
        on: vec!["5xx".into()],
        per_try_timeout: Some(prost_types::Duration {
            seconds: 0,
            nanos: 0,
        }),
    });
    let e = routes.create_route(bad).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(e.message(), "spec.retry.perTryTimeout: must be > 0");

    // Stale resource_version → ABORTED.
    let mut upd = route("users", "users-svc");
    upd.metadata.as_mut().unwrap().resource_version = rv + 100;
    assert_eq!(
        routes.update_route(upd).await.unwrap_err().code(),
        Code::Aborted
    );
    // Duplicate → ALREADY_EXISTS; missing → NOT_FOUND.
    assert_eq!(
        routes
            .create_route(route("users", "users-svc"))
            .await
            .unwrap_err()
            .code(),
        Code::AlreadyExists
    );
    let get = pb::GetRequest {
        name: "nope".into(),
        tenant: "acme".into(),
    };
    assert_eq!(
        routes.get_route(get).await.unwrap_err().code(),
        Code::NotFound
    );

    // Deleting a cluster in use → FAILED_PRECONDITION naming the routes.
    let del = pb::DeleteRequest {
        name: "users-svc".into(),
        tenant: "acme".into(),
        resource_version: 0,
    };
    let e = ClustersClient::new(ch.clone())
        .delete_cluster(del)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(
        e.message(),
        "cluster acme/users-svc is still used by route users"
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn batch_apply_is_all_or_nothing() {
    let (cp, ch) = start().await;
    let mut config = ConfigClient::new(ch.clone());
    let objects = vec![
        pb::Object {
            kind: Some(pb::object::Kind::Tenant(pb::Tenant {
                metadata: meta("acme", ""),
                spec: None,
            })),
        },
        pb::Object {
            kind: Some(pb::object::Kind::Cluster(pb::Cluster {
                metadata: meta("users-svc", "acme"),
                spec: None,
            })),
        },
        pb::Object {
            kind: Some(pb::object::Kind::Route(route("users", "users-svc"))),
        },
        pb::Object {
            kind: Some(pb::object::Kind::Route(route("broken", "missing"))),
        },
    ];
    let e = config
        .apply(pb::ApplyRequest {
            objects: objects.clone(),
            dry_run: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().starts_with("Route acme/broken: spec.cluster:"),
        "{}",
        e.message()
    );
    let rev = config
        .get_revision(pb::GetRevisionRequest {})
        .await
        .unwrap()
        .into_inner()
        .revision;
    assert_eq!(rev, 0, "nothing half-written");

    let good = objects[..3].to_vec();
    let r = config
        .apply(pb::ApplyRequest {
            objects: good.clone(),
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r
        .results
        .iter()
        .all(|x| x.outcome == pb::ApplyOutcome::Created as i32));
    let r2 = config
        .apply(pb::ApplyRequest {
            objects: good,
            dry_run: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r2
        .results
        .iter()
        .all(|x| x.outcome == pb::ApplyOutcome::Unchanged as i32));
    assert_eq!(r.revision, r2.revision);
    cp.shutdown().await;
}

#[tokio::test]
async fn lists_page_and_registry_works_over_grpc() {
    let (cp, ch) = start().await;
    seed(&ch).await;
    let mut routes = RoutesClient::new(ch.clone());
    for i in 0..7 {
        routes
            .create_route(route(&format!("r{i}"), "users-svc"))
            .await
            .unwrap();
    }
    let mut token = String::new();
    let mut seen = 0;
    loop {
        let req = pb::ListRequest {
            tenant: "acme".into(),
            page: Some(pb::PageRequest {
                page_size: 3,
                page_token: token,
            }),
        };
        let page = routes.list_routes(req).await.unwrap().into_inner();
        assert!(page.routes.len() <= 3);
        seen += page.routes.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, 7);

    let mut eps = EndpointsClient::new(ch.clone());
    let reg = pb::RegisterEndpointRequest {
        tenant: "acme".into(),
        cluster: "users-svc".into(),
        address: "127.0.0.1".into(),
        port: 9000,
        weight: 3,
        ttl: Some(prost_types::Duration {
            seconds: 30,
            nanos: 0,
        }),
        ..Default::default()
    };
    let r = eps.register(reg.clone()).await.unwrap().into_inner();
    assert!(r.created);
    assert!(r.endpoint.unwrap().expires_at.is_some());
    let key = pb::EndpointKey {
        tenant: "acme".into(),
        cluster: "users-svc".into(),
        address: "127.0.0.1".into(),
        port: 9000,
    };
    assert!(eps
        .heartbeat(key.clone())
        .await
        .unwrap()
        .into_inner()
        .expires_at
        .is_some());
    let d = pb::DiscoverRequest {
        tenant: "acme".into(),
        cluster: "users-svc".into(),
        page: None,
    };
    let found = eps
        .discover(d.clone())
        .await
        .unwrap()
        .into_inner()
        .endpoints;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].weight, 3);
    eps.deregister(key.clone()).await.unwrap();
    assert!(eps
        .discover(d)
        .await
        .unwrap()
        .into_inner()
        .endpoints
        .is_empty());
    assert_eq!(eps.heartbeat(key).await.unwrap_err().code(), Code::NotFound);
    let bad = pb::RegisterEndpointRequest { port: 0, ..reg };
    let e = eps.register(bad).await.unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "port: 0 must be in 1..=65535")
    );
    cp.shutdown().await;
}

#[tokio::test]
async fn serves_reflection_and_health() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let (cp, ch) = start().await;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("no list")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "gateway.v1.Tenants",
        "gateway.v1.Routes",
        "gateway.v1.Endpoints",
        "gateway.v1.Config",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    // /healthz over plain HTTP.
    let mut s = tokio::net::TcpStream::connect(cp.http_addr())
        .await
        .unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(body.contains("ok revision=0"), "{body}");
    cp.shutdown().await;
}
