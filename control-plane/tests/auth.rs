//! Bearer tokens over real gRPC, on SQLite and on PostgreSQL: who may call, what each role may
//! read and change, tenant scoping, revocation and expiry.

#![allow(clippy::unwrap_used)]

mod support;

use gw_control_plane::clock::ManualClock;
use gw_control_plane::server::{Config, ControlPlane};
use gw_control_plane::store::{Store, StoreOptions};
use gw_control_plane::testing::PgTestDb;
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::clusters_client::ClustersClient;
use gw_proto::gateway::v1::config_client::ConfigClient;
use gw_proto::gateway::v1::endpoints_client::EndpointsClient;
use gw_proto::gateway::v1::fleet_client::FleetClient;
use gw_proto::gateway::v1::listeners_client::ListenersClient;
use gw_proto::gateway::v1::tenants_client::TenantsClient;
use gw_proto::gateway::v1::tokens_client::TokensClient;
use std::sync::Arc;
use std::time::Duration;
use support::meta;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const ADMIN: &str = "admin-secret-0123456789";

fn as_<T>(token: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    if !token.is_empty() {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    r
}

fn cluster(name: &str, tenant: &str) -> pb::Cluster {
    pb::Cluster {
        metadata: meta(name, tenant),
        spec: None,
    }
}

fn denied<T: std::fmt::Debug>(r: Result<tonic::Response<T>, Status>, code: Code, says: &str) {
    match r {
        Err(s) => {
            assert_eq!(s.code(), code, "{s:?}");
            assert!(
                s.message().contains(says),
                "{:?} lacks {says:?}",
                s.message()
            );
        }
        Ok(r) => panic!("expected {code:?}, got {r:?}"),
    }
}

fn apply_of(objects: Vec<pb::Object>) -> pb::ApplyRequest {
    pb::ApplyRequest {
        objects,
        dry_run: false,
    }
}

fn obj_cluster(name: &str, tenant: &str) -> pb::Object {
    pb::Object {
        kind: Some(pb::object::Kind::Cluster(cluster(name, tenant))),
    }
}

fn obj_tenant(name: &str) -> pb::Object {
    pb::Object {
        kind: Some(pb::object::Kind::Tenant(pb::Tenant {
            metadata: meta(name, ""),
            spec: None,
        })),
    }
}

async fn token(ch: &Channel, name: &str, role: &str, tenant: &str, ttl: u64) -> String {
    TokensClient::new(ch.clone())
        .create_token(as_(
            ADMIN,
            pb::CreateTokenRequest {
                name: name.into(),
                role: role.into(),
                tenant: tenant.into(),
                ttl_seconds: ttl,
                subject: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .secret
}

async fn cluster_names(ch: &Channel, tok: &str, tenant: &str) -> Result<Vec<String>, Status> {
    let r = ClustersClient::new(ch.clone())
        .list_clusters(as_(
            tok,
            pb::ListRequest {
                tenant: tenant.into(),
                page: None,
            },
        ))
        .await?;
    Ok(r.into_inner()
        .clusters
        .iter()
        .map(|c| {
            let m = c.metadata.as_ref().unwrap();
            format!("{}/{}", m.tenant, m.name)
        })
        .collect())
}

async fn scenario(db: &str) {
    let clock = ManualClock::new(1_800_000_000_000);
    let store = Store::connect(StoreOptions::new(db).with_clock(Arc::new(clock.clone())))
        .await
        .unwrap();
    let mut cfg = Config::for_tests(db);
    cfg.auth = true;
    cfg.admin_token = Some(ADMIN.into());
    let cp = ControlPlane::start_with_store(cfg, store).await.unwrap();
    let ch = support::channel(&cp).await;
    let tenants = || TenantsClient::new(ch.clone());
    let clusters = || ClustersClient::new(ch.clone());
    let list = || pb::ListRequest::default();

    // No token, or a wrong one: nothing.
    denied(
        tenants().list_tenants(as_("", list())).await,
        Code::Unauthenticated,
        "a bearer token is required",
    );
    denied(
        tenants().list_tenants(as_("gw_nope", list())).await,
        Code::Unauthenticated,
        "not valid",
    );
    assert_eq!(cp.metrics().api_unauthenticated.get(), 2);

    // The admin sets up two tenants with a cluster each.
    ConfigClient::new(ch.clone())
        .apply(as_(
            ADMIN,
            apply_of(vec![
                obj_tenant("acme"),
                obj_tenant("globex"),
                obj_cluster("users", "acme"),
                obj_cluster("billing", "globex"),
            ]),
        ))
        .await
        .unwrap();
    let acme = token(&ch, "acme-admin", "tenant-admin", "acme", 0).await;
    let viewer = token(&ch, "auditor", "viewer", "", 0).await;
    let acme_viewer = token(&ch, "acme-ro", "viewer", "acme", 60).await;

    // Bad token requests name the field; names are unique.
    let create = |name: &str, role: &str, tenant: &str| pb::CreateTokenRequest {
        name: name.into(),
        role: role.into(),
        tenant: tenant.into(),
        ttl_seconds: 0,
        subject: String::new(),
    };
    let tokens = || TokensClient::new(ch.clone());
    denied(
        tokens()
            .create_token(as_(ADMIN, create("x", "tenant-admin", "")))
            .await,
        Code::InvalidArgument,
        "tenant: is required",
    );
    denied(
        tokens()
            .create_token(as_(ADMIN, create("x", "admin", "acme")))
            .await,
        Code::InvalidArgument,
        "tenant: an admin token covers every tenant",
    );
    denied(
        tokens()
            .create_token(as_(ADMIN, create("x", "viewer", "initech")))
            .await,
        Code::InvalidArgument,
        "tenant: tenant initech does not exist",
    );
    denied(
        tokens()
            .create_token(as_(ADMIN, create("x", "root", "")))
            .await,
        Code::InvalidArgument,
        "role: \"root\" is not admin, tenant-admin or viewer",
    );
    denied(
        tokens()
            .create_token(as_(ADMIN, create("auditor", "viewer", "")))
            .await,
        Code::AlreadyExists,
        "auditor",
    );

    let me = tokens()
        .who_am_i(as_(&acme, pb::WhoAmIRequest {}))
        .await
        .unwrap()
        .into_inner();
    assert!(me.auth_enabled);
    assert_eq!(
        (me.name.as_str(), me.role.as_str(), me.tenant.as_str()),
        ("acme-admin", "tenant-admin", "acme")
    );

    // A tenant-admin sees and changes its tenant only.
    assert_eq!(
        cluster_names(&ch, &acme, "").await.unwrap(),
        vec!["acme/users"]
    );
    let err = cluster_names(&ch, &acme, "globex").await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message()
            .contains("token acme-admin (tenant-admin of tenant acme) may not read tenant globex"),
        "{}",
        err.message()
    );
    clusters()
        .create_cluster(as_(&acme, cluster("orders", "acme")))
        .await
        .unwrap();
    denied(
        clusters()
            .create_cluster(as_(&acme, cluster("evil", "globex")))
            .await,
        Code::PermissionDenied,
        "may not change tenant globex",
    );
    denied(
        clusters()
            .get_cluster(as_(
                &acme,
                pb::GetRequest {
                    name: "billing".into(),
                    tenant: "globex".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "may not read tenant globex",
    );
    denied(
        tenants()
            .create_tenant(as_(
                &acme,
                pb::Tenant {
                    metadata: meta("initech", ""),
                    spec: None,
                },
            ))
            .await,
        Code::PermissionDenied,
        "may not change fleet-wide objects",
    );
    let own: Vec<_> = tenants()
        .list_tenants(as_(&acme, list()))
        .await
        .unwrap()
        .into_inner()
        .tenants
        .iter()
        .map(|t| t.metadata.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(own, vec!["acme"]);
    denied(
        ListenersClient::new(ch.clone())
            .list_listeners(as_(&acme, list()))
            .await,
        Code::PermissionDenied,
        "fleet-wide",
    );
    denied(
        FleetClient::new(ch.clone())
            .list_proxies(as_(&acme, pb::ListProxiesRequest::default()))
            .await,
        Code::PermissionDenied,
        "fleet-wide",
    );
    denied(
        tokens()
            .list_tokens(as_(&acme, pb::ListTokensRequest {}))
            .await,
        Code::PermissionDenied,
        "fleet-wide",
    );
    // Its own manifest (with the Tenant document) applies; one with another tenant's object is
    // refused whole.
    ConfigClient::new(ch.clone())
        .apply(as_(
            &acme,
            apply_of(vec![obj_tenant("acme"), obj_cluster("carts", "acme")]),
        ))
        .await
        .unwrap();
    denied(
        ConfigClient::new(ch.clone())
            .apply(as_(
                &acme,
                apply_of(vec![
                    obj_cluster("more", "acme"),
                    obj_cluster("more", "globex"),
                ]),
            ))
            .await,
        Code::PermissionDenied,
        "globex",
    );
    assert_eq!(
        cluster_names(&ch, ADMIN, "").await.unwrap(),
        vec!["acme/carts", "acme/orders", "acme/users", "globex/billing"],
        "nothing of the refused apply was written"
    );
    let ep = |tenant: &str| pb::RegisterEndpointRequest {
        tenant: tenant.into(),
        cluster: "users".into(),
        address: "10.0.0.1".into(),
        port: 8080,
        ..Default::default()
    };
    EndpointsClient::new(ch.clone())
        .register(as_(&acme, ep("acme")))
        .await
        .unwrap();
    denied(
        EndpointsClient::new(ch.clone())
            .register(as_(&acme, ep("globex")))
            .await,
        Code::PermissionDenied,
        "globex",
    );

    // What reaches beyond the tenant stays the admin's: a route not confined by the tenant
    // header (routes share one table; hosts belong to no tenant), Kubernetes discovery, and a
    // Tenant document for a tenant that does not exist yet.
    let route = |name: &str, header: Option<&str>| pb::Route {
        metadata: meta(name, "acme"),
        spec: Some(pb::RouteSpec {
            cluster: "users".into(),
            r#match: Some(pb::RouteMatch {
                hosts: vec!["globex.example".into()],
                headers: header
                    .map(|v| pb::HeaderMatch {
                        name: "x-tenant-id".into(),
                        r#match: Some(pb::header_match::Match::Exact(v.into())),
                    })
                    .into_iter()
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    let routes = || gw_proto::gateway::v1::routes_client::RoutesClient::new(ch.clone());
    denied(
        routes().create_route(as_(&acme, route("grab", None))).await,
        Code::PermissionDenied,
        "spec.match.headers: a tenant-admin token's routes must match {name: x-tenant-id, exact: acme}",
    );
    denied(
        routes()
            .create_route(as_(&acme, route("grab", Some("globex"))))
            .await,
        Code::PermissionDenied,
        "x-tenant-id",
    );
    routes()
        .create_route(as_(&acme, route("own", Some("acme"))))
        .await
        .unwrap();
    routes()
        .create_route(as_(ADMIN, route("by-host", None)))
        .await
        .unwrap();
    let discovering = pb::Cluster {
        metadata: meta("pods", "acme"),
        spec: Some(pb::ClusterSpec {
            kubernetes: Some(pb::KubernetesDiscovery {
                namespace: "kube-system".into(),
                service: "kube-dns".into(),
                port: String::new(),
            }),
            ..Default::default()
        }),
    };
    denied(
        clusters().create_cluster(as_(&acme, discovering)).await,
        Code::PermissionDenied,
        "spec.kubernetes",
    );
    denied(
        ConfigClient::new(ch.clone())
            .apply(as_(&acme, apply_of(vec![obj_tenant("initech")])))
            .await,
        Code::PermissionDenied,
        "fleet-wide",
    );

    // Alert rules over fleet-wide metrics, and webhooks, are the admin's too.
    let rule = |metric: &str, webhook: bool| {
        let hook = if webhook {
            ", webhook: {url: \"http://10.0.0.1/\"}"
        } else {
            ""
        };
        let yaml = format!(
            "apiVersion: gw/v1\nkind: AlertRule\nmetadata: {{name: r, tenant: acme}}\n\
             spec: {{metric: {metric}, threshold: 1, window: 1m{hook}}}\n"
        );
        let o = gw_proto::manifest::parse(&yaml).unwrap().remove(0).object;
        apply_of(vec![gw_proto::convert::object_to_pb(&o)])
    };
    for (metric, webhook, says) in [
        (
            "proxy_nacked",
            false,
            "spec.metric: proxy_nacked is measured over the whole fleet",
        ),
        ("error_rate", true, "spec.webhook: webhooks are the admin's"),
    ] {
        denied(
            ConfigClient::new(ch.clone())
                .apply(as_(&acme, rule(metric, webhook)))
                .await,
            Code::PermissionDenied,
            says,
        );
    }
    ConfigClient::new(ch.clone())
        .apply(as_(&acme, rule("error_rate", false)))
        .await
        .unwrap();

    // A tenant's tokens go with it.
    ConfigClient::new(ch.clone())
        .apply(as_(ADMIN, apply_of(vec![obj_tenant("temp")])))
        .await
        .unwrap();
    let temp = token(&ch, "temp-ro", "viewer", "temp", 0).await;
    tenants()
        .delete_tenant(as_(
            ADMIN,
            pb::DeleteRequest {
                name: "temp".into(),
                tenant: String::new(),
                resource_version: 0,
            },
        ))
        .await
        .unwrap();
    denied(
        tenants().list_tenants(as_(&temp, list())).await,
        Code::Unauthenticated,
        "not valid",
    );

    // Viewers read (everything, or their tenant) and change nothing.
    assert_eq!(cluster_names(&ch, &viewer, "").await.unwrap().len(), 4);
    // A TLS listener's private key is read by admins only.
    let key = include_str!("../../proto/src/model/testdata/edge-key.pem");
    let tls_listener = pb::Listener {
        metadata: meta("secure", ""),
        spec: Some(pb::ListenerSpec {
            port: 8443,
            tls: Some(pb::ListenerTls {
                certificates: vec![pb::TlsCertificate {
                    cert_chain: include_str!("../../proto/src/model/testdata/edge.pem").into(),
                    private_key: key.into(),
                }],
                min_version: String::new(),
            }),
            ..Default::default()
        }),
    };
    let listeners = || ListenersClient::new(ch.clone());
    listeners()
        .create_listener(as_(ADMIN, tls_listener))
        .await
        .unwrap();
    let key_of = |l: pb::Listener| {
        l.spec.unwrap().tls.unwrap().certificates[0]
            .private_key
            .clone()
    };
    let get = || pb::GetRequest {
        name: "secure".into(),
        ..Default::default()
    };
    let seen = listeners().get_listener(as_(&viewer, get())).await.unwrap();
    assert_eq!(key_of(seen.into_inner()), "(hidden)");
    let listed = listeners()
        .list_listeners(as_(&viewer, list()))
        .await
        .unwrap();
    let listed = listed.into_inner().listeners.remove(0);
    assert_eq!(key_of(listed), "(hidden)");
    let seen = listeners().get_listener(as_(ADMIN, get())).await.unwrap();
    assert_eq!(key_of(seen.into_inner()), key);
    denied(
        clusters()
            .create_cluster(as_(&viewer, cluster("x", "acme")))
            .await,
        Code::PermissionDenied,
        "token auditor (viewer) may not change tenant acme",
    );
    assert_eq!(cluster_names(&ch, &acme_viewer, "").await.unwrap().len(), 3);
    assert!(cluster_names(&ch, &acme_viewer, "globex").await.is_err());

    // Revocation takes effect at once on this replica; an expired token stops working.
    tokens()
        .revoke_token(as_(
            ADMIN,
            pb::RevokeTokenRequest {
                name: "acme-admin".into(),
            },
        ))
        .await
        .unwrap();
    denied(
        clusters().list_clusters(as_(&acme, list())).await,
        Code::Unauthenticated,
        "not valid",
    );
    clock.advance(Duration::from_secs(61));
    denied(
        clusters().list_clusters(as_(&acme_viewer, list())).await,
        Code::Unauthenticated,
        "not valid",
    );
    assert!(cluster_names(&ch, &viewer, "").await.is_ok());
    let names: Vec<_> = tokens()
        .list_tokens(as_(ADMIN, pb::ListTokensRequest {}))
        .await
        .unwrap()
        .into_inner()
        .tokens
        .into_iter()
        .map(|t| (t.name, t.role, t.tenant))
        .collect();
    assert_eq!(
        names,
        vec![
            ("acme-ro".to_owned(), "viewer".to_owned(), "acme".to_owned()),
            ("admin".into(), "admin".into(), String::new()),
            ("auditor".into(), "viewer".into(), String::new()),
        ]
    );
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_roles_and_tenants_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(&format!(
        "sqlite://{}",
        dir.path().join("userdb.sqlite").display()
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_roles_and_tenants_on_postgres() {
    let Some(db) = PgTestDb::create("auth").await else {
        return;
    };
    scenario(&db.url).await;
}

#[tokio::test]
async fn without_auth_every_call_is_the_admins() {
    let cp = ControlPlane::start(Config::for_tests("sqlite::memory:"))
        .await
        .unwrap();
    let ch = support::channel(&cp).await;
    let me = TokensClient::new(ch.clone())
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!me.auth_enabled);
    assert_eq!(me.role, "admin");
    TenantsClient::new(ch)
        .create_tenant(pb::Tenant {
            metadata: meta("acme", ""),
            spec: None,
        })
        .await
        .unwrap();
    cp.shutdown().await;
}
