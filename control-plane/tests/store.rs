//! The store suite: every test runs against real SQLite and real PostgreSQL (fresh database each).

#![allow(clippy::unwrap_used)]

use gw_control_plane::clock::ManualClock;
use gw_control_plane::store::{ApplyOutcome, Store, StoreError, StoreOptions};
use gw_control_plane::testing::PgTestDb;
use gw_proto::manifest;
use gw_proto::model::{Endpoint, EndpointKey, EndpointSource, Kind, Object, ObjectKey, Spec};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const QUICKSTART: &str = r#"
apiVersion: gw/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: users-svc, tenant: acme}
spec:
  endpoints: [{address: 127.0.0.1, port: 18081}]
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: orders-svc, tenant: acme}
spec:
  lb: least_conn
  fallbackCluster: users-svc
---
apiVersion: gw/v1
kind: Route
metadata: {name: users, tenant: acme}
spec:
  match: {pathPrefix: /users}
  cluster: users-svc
---
apiVersion: gw/v1
kind: Route
metadata: {name: orders, tenant: acme}
spec:
  match: {pathPrefix: /orders}
  weightedClusters: [{cluster: orders-svc, weight: 90}, {cluster: users-svc, weight: 10}]
"#;

fn objects(yaml: &str) -> Vec<Object> {
    manifest::parse(yaml)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .collect()
}

fn key(kind: Kind, tenant: &str, name: &str) -> ObjectKey {
    ObjectKey {
        kind,
        tenant: tenant.into(),
        name: name.into(),
    }
}

/// Runs `f` against a fresh SQLite store and a fresh PostgreSQL store.
async fn on_both<F, Fut>(label: &str, clock: Option<ManualClock>, f: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let opts = |url: &str| {
        let o = StoreOptions::new(url);
        match &clock {
            Some(c) => o.with_clock(Arc::new(c.clone())),
            None => o,
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("userdb.sqlite").display());
    f(Store::connect(opts(&sqlite)).await.unwrap()).await;
    if let Some(db) = PgTestDb::create(label).await {
        f(Store::connect(opts(&db.url)).await.unwrap()).await;
    }
}

#[tokio::test]
async fn apply_is_idempotent_and_reports_outcomes() {
    on_both("apply_idempotent", None, |store| async move {
        let first = store.apply(objects(QUICKSTART), false).await.unwrap();
        assert!(first
            .results
            .iter()
            .all(|(_, o, _)| *o == ApplyOutcome::Created));
        assert_eq!(first.revision, 1, "one batch = one revision");
        let again = store.apply(objects(QUICKSTART), false).await.unwrap();
        assert!(
            again
                .results
                .iter()
                .all(|(_, o, _)| *o == ApplyOutcome::Unchanged),
            "{:?}",
            again.results
        );
        assert_eq!(again.revision, 1, "nothing changed, no revision bump");

        let changed = QUICKSTART.replace("pathPrefix: /users", "pathPrefix: /people");
        let third = store.apply(objects(&changed), false).await.unwrap();
        let outcomes: Vec<_> = third
            .results
            .iter()
            .map(|(k, o, _)| (k.name.as_str(), *o))
            .collect();
        assert!(outcomes.contains(&("users", ApplyOutcome::Configured)));
        assert_eq!(
            outcomes
                .iter()
                .filter(|(_, o)| *o == ApplyOutcome::Configured)
                .count(),
            1
        );
        assert_eq!(third.revision, 2);
        let users = store
            .get(&key(Kind::Route, "acme", "users"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(users.meta.resource_version, 2);
        assert_eq!(users.meta.created_revision, 1);
        let Spec::Route(r) = users.spec else {
            panic!("route")
        };
        assert_eq!(r.match_.path_prefix.as_deref(), Some("/people"));
    })
    .await;
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    on_both("dry_run", None, |store| async move {
        let report = store.apply(objects(QUICKSTART), true).await.unwrap();
        assert!(report
            .results
            .iter()
            .all(|(_, o, _)| *o == ApplyOutcome::Created));
        assert_eq!(store.revision().await.unwrap(), 0);
        assert!(store
            .get(&key(Kind::Tenant, "", "acme"))
            .await
            .unwrap()
            .is_none());
    })
    .await;
}

#[tokio::test]
async fn invalid_input_names_the_field_and_writes_nothing() {
    on_both("invalid", None, |store| async move {
        let bad = format!(
            "{QUICKSTART}---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: acme}}\nspec: {{cluster: users-svc, retry: {{perTryTimeout: 0s}}}}\n"
        );
        let err = store.apply(objects(&bad), false).await.unwrap_err();
        assert!(matches!(err, StoreError::Invalid(_)));
        assert_eq!(err.to_string(), "Route acme/r: spec.retry.perTryTimeout: must be > 0");

        let missing = QUICKSTART.replace("cluster: users-svc\n", "cluster: nope\n");
        let err = store.apply(objects(&missing), false).await.unwrap_err();
        assert_eq!(err.to_string(), "Route acme/users: spec.cluster: cluster \"nope\" does not exist in tenant \"acme\"");
        assert_eq!(store.revision().await.unwrap(), 0, "nothing half-written");
        assert!(store.get(&key(Kind::Tenant, "", "acme")).await.unwrap().is_none());

        let no_tenant = objects(QUICKSTART).into_iter().skip(1).collect();
        let err = store.apply(no_tenant, false).await.unwrap_err();
        assert!(err.to_string().contains("metadata.tenant: tenant \"acme\" does not exist"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn create_update_conflict_and_delete_rules() {
    on_both("crud", None, |store| async move {
        store.apply(objects(QUICKSTART), false).await.unwrap();
        let tenant = objects(QUICKSTART).remove(0);
        assert!(matches!(
            store.create(tenant).await,
            Err(StoreError::AlreadyExists(_))
        ));

        let mut route = store
            .get(&key(Kind::Route, "acme", "users"))
            .await
            .unwrap()
            .unwrap();
        let rv = route.meta.resource_version;
        let Spec::Route(r) = &mut route.spec else {
            panic!()
        };
        r.timeout = Duration::from_secs(3);
        let (updated, rev) = store.update(route.clone()).await.unwrap();
        assert!(updated.meta.resource_version > rv);
        assert_eq!(updated.meta.resource_version, rev);
        // The same stale version again: ABORTED.
        let Spec::Route(r) = &mut route.spec else {
            panic!()
        };
        r.timeout = Duration::from_secs(4);
        assert!(matches!(
            store.update(route).await,
            Err(StoreError::Conflict { .. })
        ));

        let err = store
            .delete(&key(Kind::Cluster, "acme", "users-svc"), 0)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::FailedPrecondition(_)));
        assert_eq!(
            err.to_string(),
            "cluster acme/users-svc is still used by route orders, route users, cluster orders-svc"
        );
        let err = store
            .delete(&key(Kind::Tenant, "", "acme"), 0)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "tenant acme still owns 2 clusters, 2 routes; delete those first"
        );
        assert!(matches!(
            store.delete(&key(Kind::Route, "acme", "nope"), 0).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            store.delete(&key(Kind::Route, "acme", "users"), 1).await,
            Err(StoreError::Conflict { .. })
        ));

        // Deleting the whole file in one call works whatever the order given.
        let keys: Vec<ObjectKey> = objects(QUICKSTART).iter().map(Object::key).collect();
        let (deleted, _) = store.delete_many(&keys, false).await.unwrap();
        assert!(deleted.iter().all(|d| *d));
        assert!(store
            .list(Kind::Route, None, 0, "")
            .await
            .unwrap()
            .items
            .is_empty());
    })
    .await;
}

#[tokio::test]
async fn list_pages_through_everything() {
    on_both("paging", None, |store| async move {
        let mut yaml = String::from("apiVersion: gw/v1\nkind: Tenant\nmetadata: {name: t}\n---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {name: c, tenant: t}\n");
        for i in 0..25 {
            yaml.push_str(&format!(
                "---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: r{i:02}, tenant: t}}\nspec: {{cluster: c, match: {{path: /r{i}}}}}\n"
            ));
        }
        store.apply(objects(&yaml), false).await.unwrap();
        let mut token = String::new();
        let mut names = Vec::new();
        loop {
            let page = store.list(Kind::Route, Some("t"), 10, &token).await.unwrap();
            names.extend(page.items.iter().map(|o| o.meta.name.clone()));
            match page.next_page_token {
                Some(t) => token = t,
                None => break,
            }
        }
        let want: Vec<String> = (0..25).map(|i| format!("r{i:02}")).collect();
        assert_eq!(names, want);
    })
    .await;
}

fn registration(port: u32, ttl: Option<Duration>) -> Endpoint {
    Endpoint {
        key: EndpointKey {
            tenant: "acme".into(),
            cluster: "users-svc".into(),
            address: "10.0.0.1".into(),
            port,
        },
        weight: 2,
        metadata: [("zone".to_string(), "a".to_string())].into(),
        source: EndpointSource::Registry,
        ttl,
        expires_at_ms: None,
        registered_at_ms: 0,
        resource_version: 0,
        healthy: true,
    }
}

#[tokio::test]
async fn registry_register_heartbeat_expire_deregister() {
    let clock = ManualClock::new(1_700_000_000_000);
    let c = clock.clone();
    on_both("registry", Some(clock), move |store| {
        let clock = c.clone();
        async move {
            store.apply(objects(QUICKSTART), false).await.unwrap();
            let (ep, created, _) = store
                .register_endpoint(registration(9000, Some(Duration::from_secs(30))))
                .await
                .unwrap();
            assert!(created);
            assert_eq!(ep.expires_at_ms, Some(clock.now_ms_for_test() + 30_000));
            store
                .register_endpoint(registration(9001, None))
                .await
                .unwrap();
            let (_, created, _) = store
                .register_endpoint(registration(9001, None))
                .await
                .unwrap();
            assert!(!created, "re-registering updates");

            let page = store
                .discover("acme", Some("users-svc"), 0, "")
                .await
                .unwrap();
            let ports: Vec<_> = page.items.iter().map(|e| (e.key.port, e.source)).collect();
            assert_eq!(
                ports,
                vec![
                    (9000, EndpointSource::Registry),
                    (9001, EndpointSource::Registry),
                    (18081, EndpointSource::Static)
                ]
            );

            // A heartbeat at 20 s renews the lease to 50 s.
            clock.advance(Duration::from_secs(20));
            let k9000 = registration(9000, None).key;
            assert!(store.heartbeat(&k9000).await.unwrap().is_some());
            clock.advance(Duration::from_secs(20));
            assert_eq!(
                store
                    .discover("acme", Some("users-svc"), 0, "")
                    .await
                    .unwrap()
                    .items
                    .len(),
                3,
                "renewed"
            );
            // No heartbeat for another 15 s: gone from reads at once, and reaped.
            clock.advance(Duration::from_secs(15));
            let before = store.revision().await.unwrap();
            assert_eq!(
                store
                    .discover("acme", Some("users-svc"), 0, "")
                    .await
                    .unwrap()
                    .items
                    .len(),
                2
            );
            assert!(matches!(
                store.heartbeat(&k9000).await,
                Err(StoreError::NotFound(_))
            ));
            assert_eq!(store.reap_expired().await.unwrap(), 1);
            assert_eq!(
                store.revision().await.unwrap(),
                before + 1,
                "expiry is a config change"
            );
            assert_eq!(store.reap_expired().await.unwrap(), 0);

            store
                .deregister_endpoint(&registration(9001, None).key)
                .await
                .unwrap();
            assert!(matches!(
                store
                    .deregister_endpoint(&registration(9001, None).key)
                    .await,
                Err(StoreError::NotFound(_))
            ));
            let missing = Endpoint {
                key: EndpointKey {
                    cluster: "nope".into(),
                    ..registration(1, None).key
                },
                ..registration(1, None)
            };
            assert!(matches!(
                store.register_endpoint(missing).await,
                Err(StoreError::NotFound(_))
            ));
            let snap = store.snapshot().await.unwrap();
            assert!(snap.endpoints.is_empty());
            assert_eq!(snap.objects.len(), 5);
        }
    })
    .await;
}

trait NowForTest {
    fn now_ms_for_test(&self) -> i64;
}

impl NowForTest for ManualClock {
    fn now_ms_for_test(&self) -> i64 {
        use gw_control_plane::clock::Clock;
        self.now_ms()
    }
}

#[tokio::test]
async fn alert_rules_are_stored_objects_with_checked_references() {
    on_both("alert_rules", None, |store| async move {
        store.apply(objects(QUICKSTART), false).await.unwrap();
        let rule = |scope: &str, threshold: &str| {
            format!(
                "apiVersion: gw/v1\nkind: AlertRule\nmetadata: {{name: users-errors, tenant: acme}}\n\
                 spec: {{metric: error_rate, scope: {scope}, threshold: {threshold}, window: 1m, for: 30s, \
                 webhook: {{url: 'http://127.0.0.1:9999/hook', secret: s3cr3t}}}}\n"
            )
        };
        let r = store.apply(objects(&rule("{route: users}", "0.05")), false).await.unwrap();
        assert_eq!(r.results[0].1, ApplyOutcome::Created);
        let again = store.apply(objects(&rule("{route: users, tenant: acme}", "0.05")), false).await.unwrap();
        assert_eq!(again.results[0].1, ApplyOutcome::Unchanged, "own tenant in scope is the default");
        let e = store.apply(objects(&rule("{route: nope}", "0.05")), false).await.unwrap_err();
        assert_eq!(e.to_string(), "AlertRule acme/users-errors: spec.scope.route: route \"nope\" does not exist in tenant \"acme\"");
        let e = store.apply(objects(&rule("{route: users}", "1.5")), false).await.unwrap_err();
        assert!(e.to_string().ends_with("spec.threshold: is a fraction of requests: must be in [0, 1]"), "{e}");
        let e = store.apply(objects(&rule("{route: users}", "250ms")), false).await.unwrap_err();
        assert!(e.to_string().ends_with("spec.threshold: must be a number for error_rate"), "{e}");
        let listed = store.list(Kind::AlertRule, Some("acme"), 0, "").await.unwrap();
        assert_eq!(listed.items.len(), 1);
    })
    .await;
}

fn discovered(address: &str, port: u32, zone: &str) -> Endpoint {
    Endpoint {
        key: EndpointKey {
            tenant: "acme".into(),
            cluster: "users-svc".into(),
            address: address.into(),
            port,
        },
        weight: 1,
        metadata: [("zone".to_string(), zone.to_string())].into(),
        source: EndpointSource::Kubernetes,
        ttl: None,
        expires_at_ms: None,
        registered_at_ms: 0,
        resource_version: 0,
        healthy: true,
    }
}

#[tokio::test]
async fn discovered_endpoints_sync_as_one_write_per_change() {
    on_both("discovered", None, |store| async move {
        store.apply(objects(QUICKSTART), false).await.unwrap();
        // users-svc also takes endpoints from Kubernetes Service shop/users.
        let asks = |k8s: &str| {
            format!(
                "apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: users-svc, tenant: acme}}\n\
                 spec: {{endpoints: [{{address: 127.0.0.1, port: 18081}}]{k8s}}}\n"
            )
        };
        let k8s = ", kubernetes: {namespace: shop, service: users}";
        store.apply(objects(&asks(k8s)), false).await.unwrap();
        let service = |name: &str| gw_proto::model::KubernetesDiscovery {
            namespace: "shop".into(),
            service: name.into(),
            port: String::new(),
        };
        let users = service("users");
        let from = &users;
        let listed = |store: Store| async move {
            let page = store
                .discover("acme", Some("users-svc"), 0, "")
                .await
                .unwrap();
            page.items
                .iter()
                .map(|e| {
                    (
                        e.key.address.clone(),
                        e.key.port,
                        e.source,
                        e.metadata.get("zone").cloned(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let a = discovered("10.1.0.1", 8080, "a");
        let b = discovered("10.1.0.2", 8080, "b");
        let before = store.revision().await.unwrap();
        let rev = store
            .sync_discovered_endpoints("acme", "users-svc", from, &[a.clone(), b.clone()])
            .await
            .unwrap()
            .expect("two new endpoints are a write");
        assert_eq!(rev, before + 1, "one revision for the whole set");
        let k8s = EndpointSource::Kubernetes;
        assert_eq!(
            listed(store.clone()).await,
            vec![
                ("10.1.0.1".into(), 8080, k8s, Some("a".into())),
                ("10.1.0.2".into(), 8080, k8s, Some("b".into())),
                ("127.0.0.1".into(), 18081, EndpointSource::Static, None),
            ]
        );
        // The same set again (a relist, another replica): no write, no revision.
        assert_eq!(
            store
                .sync_discovered_endpoints("acme", "users-svc", from, &[a.clone(), b.clone()])
                .await
                .unwrap(),
            None
        );
        assert_eq!(store.revision().await.unwrap(), rev);

        // A registered endpoint is the registry's: discovery neither takes it over nor removes it.
        let mut reg = registration(8080, None);
        reg.key.address = "10.1.0.3".into();
        store.register_endpoint(reg).await.unwrap();
        // b moves zone, a goes, 10.1.0.3 shows up in Kubernetes too.
        let b2 = discovered("10.1.0.2", 8080, "c");
        let c = discovered("10.1.0.3", 8080, "c");
        store
            .sync_discovered_endpoints("acme", "users-svc", from, &[b2.clone(), c])
            .await
            .unwrap()
            .expect("a change");
        assert_eq!(
            listed(store.clone()).await,
            vec![
                ("10.1.0.2".into(), 8080, k8s, Some("c".into())),
                (
                    "10.1.0.3".into(),
                    8080,
                    EndpointSource::Registry,
                    Some("a".into())
                ),
                ("127.0.0.1".into(), 18081, EndpointSource::Static, None),
            ]
        );
        // A set from another Service (a watch that should have stopped) is refused.
        let orders = service("orders");
        let fresh = discovered("10.1.0.4", 8080, "d");
        assert!(matches!(
            store
                .sync_discovered_endpoints("acme", "users-svc", &orders, &[fresh])
                .await,
            Err(StoreError::NotFound(_))
        ));
        let sources = |store: Store| async move {
            listed(store)
                .await
                .into_iter()
                .map(|e| e.2)
                .collect::<Vec<_>>()
        };
        // Nothing from Kubernetes: its endpoints go, the registered one stays.
        store
            .sync_discovered_endpoints("acme", "users-svc", from, &[])
            .await
            .unwrap()
            .expect("a change");
        let reg_static = vec![EndpointSource::Registry, EndpointSource::Static];
        assert_eq!(sources(store.clone()).await, reg_static);
        store
            .sync_discovered_endpoints("acme", "users-svc", from, std::slice::from_ref(&b2))
            .await
            .unwrap();
        // Pointing the cluster at another Service drops the old one's endpoints in the same
        // write (one revision), and so does no longer asking: no stale set outlives its Service.
        let before = store.revision().await.unwrap();
        let to_orders = ", kubernetes: {namespace: shop, service: orders}";
        let report = store.apply(objects(&asks(to_orders)), false).await.unwrap();
        assert_eq!(report.revision, before + 1);
        assert_eq!(sources(store.clone()).await, reg_static);
        // The old Service's watch, late, is refused.
        assert!(matches!(
            store
                .sync_discovered_endpoints("acme", "users-svc", from, std::slice::from_ref(&b2))
                .await,
            Err(StoreError::NotFound(_))
        ));
        store
            .sync_discovered_endpoints("acme", "users-svc", &orders, std::slice::from_ref(&b2))
            .await
            .unwrap()
            .expect("a change");
        // A dry run drops nothing.
        store.apply(objects(&asks("")), true).await.unwrap();
        assert_eq!(
            sources(store.clone()).await,
            vec![
                EndpointSource::Kubernetes,
                EndpointSource::Registry,
                EndpointSource::Static
            ]
        );
        let before = store.revision().await.unwrap();
        let report = store.apply(objects(&asks("")), false).await.unwrap();
        assert_eq!(report.revision, before + 1);
        assert_eq!(sources(store.clone()).await, reg_static);

        // Bad input names the field and writes nothing; a missing cluster is NotFound.
        let rev = store.revision().await.unwrap();
        let mut bad = discovered("10.1.0.9", 0, "a");
        bad.key.port = 0;
        match store
            .sync_discovered_endpoints("acme", "users-svc", from, &[b2, bad])
            .await
        {
            Err(StoreError::Invalid(m)) => assert!(m.starts_with("endpoints[1].port"), "{m}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        let mut elsewhere = discovered("10.1.0.1", 8080, "a");
        elsewhere.key.cluster = "gone".into();
        assert!(matches!(
            store
                .sync_discovered_endpoints("acme", "gone", from, &[elsewhere])
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.revision().await.unwrap(), rev);
    })
    .await;
}

#[tokio::test]
async fn tokens_bootstrap_rotate_and_go_with_their_tenant() {
    on_both("tokens", None, |store| async move {
        let auth = |store: Store, secret: String| async move {
            let tokens = gw_control_plane::auth::Tokens::load(store).await.unwrap();
            tokens.authenticate(&secret).map(|p| p.name)
        };
        let first = "first-secret-0123456789".to_owned();
        store.ensure_admin_token("admin", &first).await.unwrap();
        // Twice (two replicas starting together) is the same token.
        let again = store.ensure_admin_token("admin", &first).await.unwrap();
        assert_eq!((again.role.as_str(), again.expires_at_ms), ("admin", None));
        assert_eq!(
            auth(store.clone(), first.clone()).await.as_deref(),
            Some("admin")
        );
        // Rotating the secret replaces it.
        let second = "second-secret-0123456789".to_owned();
        store.ensure_admin_token("admin", &second).await.unwrap();
        assert_eq!(auth(store.clone(), first).await, None);
        assert_eq!(auth(store.clone(), second).await.as_deref(), Some("admin"));
        assert!(matches!(
            store.ensure_admin_token("admin", "short").await,
            Err(StoreError::Invalid(m)) if m.starts_with("secret")
        ));
        // Bounds on the TTL; a tenant's tokens are deleted with it.
        store.apply(objects(QUICKSTART), false).await.unwrap();
        for ttl in [
            Duration::from_millis(500),
            Duration::from_secs(11 * 366 * 24 * 3600),
        ] {
            assert!(matches!(
                store.create_token("x", "viewer", "", Some(ttl), None).await,
                Err(StoreError::Invalid(m)) if m.starts_with("ttl")
            ));
        }
        let (_, ci) = store
            .create_token("ci", "tenant-admin", "acme", None, Some("ci.acme.example"))
            .await
            .unwrap();
        assert_eq!(auth(store.clone(), ci.clone()).await.as_deref(), Some("ci"));
        // Bound to a certificate subject: unique, named by field when malformed.
        let listed = store.list_tokens().await.unwrap();
        let bound = listed.iter().find(|t| t.name == "ci").unwrap();
        assert_eq!(bound.subject.as_deref(), Some("ci.acme.example"));
        assert!(matches!(
            store.create_token("ci2", "viewer", "", None, Some("ci.acme.example")).await,
            Err(StoreError::AlreadyExists(m)) if m.contains("ci.acme.example")
        ));
        for bad in ["", &"x".repeat(65), "ops\nadmin"] {
            assert!(matches!(
                store.create_token("ci3", "viewer", "", None, Some(bad)).await,
                Err(StoreError::Invalid(m)) if m.starts_with("subject")
            ));
        }
        // A token made again under the same name is another principal: what held the old one
        // (a followed event stream) is not valid any more.
        let tokens = gw_control_plane::auth::Tokens::load(store.clone())
            .await
            .unwrap();
        let held = tokens.authenticate(&ci).unwrap();
        assert!(tokens.still_valid(&held));
        store.revoke_token("ci").await.unwrap();
        let (_, ci) = store
            .create_token("ci", "tenant-admin", "acme", None, None)
            .await
            .unwrap();
        tokens.reload().await.unwrap();
        assert!(!tokens.still_valid(&held));
        assert!(tokens.still_valid(&tokens.authenticate(&ci).unwrap()));
        // Its history too: a later tenant of the same name must not read it.
        store
            .record_event(gw_control_plane::store::EventRecord {
                kind: "breaker_transition".into(),
                severity: "warning".into(),
                tenant: "acme".into(),
                message: "old news".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let acme_events = |store: Store| async move {
            let f = gw_control_plane::store::EventFilter {
                tenant: "acme".into(),
                ..Default::default()
            };
            store.list_events(&f).await.unwrap().len()
        };
        assert_eq!(acme_events(store.clone()).await, 1);
        let mut keys: Vec<ObjectKey> = objects(QUICKSTART).iter().map(|o| o.key()).collect();
        keys.reverse();
        store.delete_many(&keys, false).await.unwrap();
        assert_eq!(auth(store.clone(), ci).await, None);
        assert_eq!(acme_events(store.clone()).await, 0);
        let names: Vec<_> = store
            .list_tokens()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["admin"]);
    })
    .await;
}
