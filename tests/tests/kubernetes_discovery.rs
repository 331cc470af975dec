//! Kubernetes discovery end to end: a cluster whose endpoints come from a Service's
//! EndpointSlices. A fake API server stands at the `SliceSource` boundary (an API server is the
//! one part that cannot run here); the control plane, userdb, xDS, gw-proxy and the upstreams are
//! real.

#![allow(clippy::unwrap_used)]

use gw_control_plane::discovery::FakeApiServer;
use gw_control_plane::server::{Config, ControlPlane};
use gw_control_plane::store::EventFilter;
use gw_control_plane::testing::PgTestDb;
use gw_e2e::upstream::Upstream;
use gw_e2e::{control, free_port, http, wait};
use gw_proto::model::EndpointSource;
use gw_proxy::server::{Proxy, ProxyConfig};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(20);

/// Slice `name` of Service `service` in namespace `shop`: pods at `(address, ready)` listening on
/// `port`, named `http` as the Service names it.
fn slice(name: &str, service: &str, port: u16, pods: &[(&str, bool)]) -> EndpointSlice {
    let endpoints: Vec<_> = pods
        .iter()
        .enumerate()
        .map(|(i, (address, ready))| {
            serde_json::json!({
                "addresses": [address],
                "conditions": {"ready": ready, "serving": ready, "terminating": !ready},
                "nodeName": "node-1",
                "zone": "zone-a",
                "targetRef": {"kind": "Pod", "namespace": "shop", "name": format!("{name}-pod-{i}")}
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .expect("an EndpointSlice")
}

fn manifest(listener_port: u16, users_spec: &str) -> String {
    format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: acme}}\n---\n\
         apiVersion: gw/v1\nkind: Listener\nmetadata: {{name: edge}}\nspec: {{nodeCluster: edge, address: 127.0.0.1, port: {listener_port}}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: users, tenant: acme}}\nspec: {users_spec}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: users, tenant: acme}}\nspec: {{match: {{hosts: [api.acme.test], pathPrefix: /users}}, cluster: users}}\n"
    )
}

const FROM_KUBERNETES: &str = "{kubernetes: {namespace: shop, service: users, port: http}}";

/// Which upstreams answered `n` requests.
async fn answering(gw: SocketAddr, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for i in 0..n {
        match http::get(gw, "api.acme.test", &format!("/users/{i}")).await {
            Ok(r) if r.status == 200 => {
                seen.insert(r.body);
            }
            Ok(r) => {
                seen.insert(format!("status {}", r.status));
            }
            Err(e) => {
                seen.insert(format!("error {e}"));
            }
        }
    }
    seen
}

async fn until_answering(gw: SocketAddr, want: &[&str]) {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let last = std::sync::Mutex::new(BTreeSet::new());
    let r = wait::until("the upstreams to answer", LIMIT, || {
        let (want, last) = (&want, &last);
        async move {
            let seen = answering(gw, 12).await;
            let done = &seen == want;
            *last.lock().unwrap() = seen;
            done.then_some(())
        }
    })
    .await;
    assert!(
        r.is_ok(),
        "wanted {want:?}, last saw {:?}",
        last.lock().unwrap()
    );
}

async fn proxy(cp: &ControlPlane) -> Proxy {
    let mut cfg = ProxyConfig::for_tests(Some(format!("http://{}", cp.grpc_addr())), "k8s-gw");
    cfg.node_cluster = "edge".into();
    Proxy::start(cfg).await.expect("gw-proxy")
}

fn with_fake_api(db: &str, api: &FakeApiServer) -> Config {
    let mut cfg = Config::for_tests(db);
    cfg.discovery.source = Some(Arc::new(api.clone()));
    cfg.discovery.resync = Duration::from_millis(200);
    cfg
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clusters_endpoints_follow_its_services_endpointslices() {
    let api = FakeApiServer::new();
    let (a, b, c) = (
        Upstream::start("a").await.unwrap(),
        Upstream::start("b").await.unwrap(),
        Upstream::start("c").await.unwrap(),
    );
    // One pod ready; one terminating on an address nothing serves (routing there would fail).
    api.apply(slice(
        "users-1",
        "users",
        a.port(),
        &[("127.0.0.1", true), ("127.0.0.9", false)],
    ));
    // Another Service's slice in the same namespace is not this cluster's.
    api.apply(slice(
        "orders-1",
        "orders",
        c.port(),
        &[("127.0.0.1", true)],
    ));
    let cp = ControlPlane::start(with_fake_api("sqlite::memory:", &api))
        .await
        .unwrap();
    let listener = free_port();
    control::apply(&cp, &manifest(listener, FROM_KUBERNETES))
        .await
        .unwrap();
    let gw = proxy(&cp).await;
    let at = gw.listen_addr();
    until_answering(at, &["a"]).await;
    assert_eq!(cp.metrics().discovery_watches.get(), 1);
    // Counted by the watch after its write returns, which the proxy may have seen first.
    wait::until("the write counted", LIMIT, || async {
        (cp.metrics().discovery_writes.get() >= 1).then_some(())
    })
    .await
    .unwrap();

    let eps = cp
        .store()
        .discover("acme", Some("users"), 0, "")
        .await
        .unwrap();
    assert_eq!(eps.items.len(), 1, "{:?}", eps.items);
    let ep = &eps.items[0];
    assert_eq!(ep.source, EndpointSource::Kubernetes);
    assert_eq!(ep.key.port, u32::from(a.port()));
    assert_eq!(
        ep.metadata.get("pod").map(String::as_str),
        Some("users-1-pod-0")
    );
    assert_eq!(ep.metadata.get("zone").map(String::as_str), Some("zone-a"));

    // Scale out: a second slice.
    api.apply(slice("users-2", "users", b.port(), &[("127.0.0.1", true)]));
    until_answering(at, &["a", "b"]).await;

    // a's pod stops being ready: no more traffic to it.
    api.apply(slice("users-1", "users", a.port(), &[("127.0.0.1", false)]));
    until_answering(at, &["b"]).await;
    assert_eq!(answering(at, 30).await, BTreeSet::from(["b".to_owned()]));

    // The watch relists with nothing changed: no write. The change after it proves the relist
    // was handled (one watch, events in order): the revision moves by that one write only.
    let rev = cp.store().revision().await.unwrap();
    api.relist();
    api.apply(slice("users-1", "users", a.port(), &[("127.0.0.1", true)]));
    until_answering(at, &["a", "b"]).await;
    assert_eq!(
        cp.store().revision().await.unwrap(),
        rev + 1,
        "the relist wrote nothing"
    );

    // Someone deregisters a discovered endpoint through the API: the next resync puts it back.
    let b_key = gw_proto::model::EndpointKey {
        tenant: "acme".into(),
        cluster: "users".into(),
        address: "127.0.0.1".into(),
        port: u32::from(b.port()),
    };
    cp.store().deregister_endpoint(&b_key).await.unwrap();
    wait::until("the resync to restore the endpoint", LIMIT, || async {
        let eps = cp
            .store()
            .discover("acme", Some("users"), 0, "")
            .await
            .ok()?;
        eps.items.iter().any(|e| e.key == b_key).then_some(())
    })
    .await
    .unwrap();
    until_answering(at, &["a", "b"]).await;

    let events = cp
        .store()
        .list_events(&EventFilter {
            kind: "endpoints_discovered".into(),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert!(events.len() >= 4, "{events:?}");
    assert!(events
        .iter()
        .all(|e| e.object == "cluster/users" && e.tenant == "acme"));

    // The cluster is pointed at another Service: its pods take over, the old watch ends.
    let to_orders = "{kubernetes: {namespace: shop, service: orders, port: http}}";
    control::apply(&cp, &manifest(listener, to_orders))
        .await
        .unwrap();
    until_answering(at, &["c"]).await;
    wait::until("the watches to move", LIMIT, || async {
        (api.watching("shop", "users") == 0 && api.watching("shop", "orders") == 1).then_some(())
    })
    .await
    .unwrap();

    // The cluster stops asking Kubernetes: the discovered endpoints go, the watch ends, and the
    // static endpoint serves.
    let spec = format!(
        "{{endpoints: [{{address: 127.0.0.1, port: {}}}]}}",
        c.port()
    );
    control::apply(&cp, &manifest(listener, &spec))
        .await
        .unwrap();
    // The write that changed the spec dropped the discovered endpoints.
    let eps = cp
        .store()
        .discover("acme", Some("users"), 0, "")
        .await
        .unwrap();
    let sources: Vec<_> = eps.items.iter().map(|e| e.source).collect();
    assert_eq!(sources, vec![EndpointSource::Static]);
    until_answering(at, &["c"]).await;
    wait::until("the watch to end", LIMIT, || async {
        (api.watching("shop", "orders") == 0).then_some(())
    })
    .await
    .unwrap();

    gw.shutdown().await;
    cp.shutdown().await;
}

/// Two replicas on one PostgreSQL userdb: one watches, and when it goes the other takes over.
#[tokio::test(flavor = "multi_thread")]
async fn one_replica_watches_and_another_takes_over() {
    let Some(db) = PgTestDb::create("k8s_discovery").await else {
        return;
    };
    let api = FakeApiServer::new();
    let a = Upstream::start("a").await.unwrap();
    let b = Upstream::start("b").await.unwrap();
    api.apply(slice("users-1", "users", a.port(), &[("127.0.0.1", true)]));
    // The first replica starts alone, so it leads; the second starts once it watches.
    let first = ControlPlane::start(with_fake_api(&db.url, &api))
        .await
        .unwrap();
    control::apply(&first, &manifest(free_port(), FROM_KUBERNETES))
        .await
        .unwrap();
    wait::until("the first replica to watch", LIMIT, || async {
        (api.watching("shop", "users") == 1).then_some(())
    })
    .await
    .unwrap();
    let second = ControlPlane::start(with_fake_api(&db.url, &api))
        .await
        .unwrap();
    let endpoint_ports = |cp: &ControlPlane| {
        let store = cp.store().clone();
        async move {
            let eps = store.discover("acme", Some("users"), 0, "").await.ok()?;
            Some(eps.items.iter().map(|e| e.key.port).collect::<Vec<_>>())
        }
    };
    wait::until("the endpoint in userdb", LIMIT, || async {
        (endpoint_ports(&second).await? == vec![u32::from(a.port())]).then_some(())
    })
    .await
    .unwrap();
    wait::until("the second replica to try the lock", LIMIT, || async {
        second.discovery_leading().is_some().then_some(())
    })
    .await
    .unwrap();
    assert_eq!(second.discovery_leading(), Some(false));
    assert_eq!(first.discovery_leading(), Some(true));
    assert_eq!(api.watching("shop", "users"), 1, "one replica watches");

    // The leader goes away; the other replica takes the lock and watches.
    first.shutdown().await;
    api.apply(slice("users-2", "users", b.port(), &[("127.0.0.1", true)]));
    let mut want = vec![u32::from(a.port()), u32::from(b.port())];
    want.sort_unstable();
    wait::until(
        "the second replica to write the new slice",
        LIMIT,
        || async {
            let mut got = endpoint_ports(&second).await?;
            got.sort_unstable();
            (got == want).then_some(())
        },
    )
    .await
    .unwrap();
    assert_eq!(second.discovery_leading(), Some(true));
    assert_eq!(api.watching("shop", "users"), 1);
    second.shutdown().await;
}

/// A control plane started without `--kubernetes` keeps what an earlier one discovered for a
/// cluster that still asks, and drops it in the write that stops the cluster asking.
#[tokio::test(flavor = "multi_thread")]
async fn discovered_endpoints_go_with_the_spec_on_a_replica_without_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("userdb.sqlite").display());
    let api = FakeApiServer::new();
    let a = Upstream::start("a").await.unwrap();
    api.apply(slice("users-1", "users", a.port(), &[("127.0.0.1", true)]));
    let listener = free_port();
    let first = ControlPlane::start(with_fake_api(&db, &api)).await.unwrap();
    control::apply(&first, &manifest(listener, FROM_KUBERNETES))
        .await
        .unwrap();
    let discovered = |cp: &ControlPlane| {
        let store = cp.store().clone();
        async move {
            let eps = store.discover("acme", Some("users"), 0, "").await.ok()?;
            Some(
                eps.items
                    .iter()
                    .filter(|e| e.source == EndpointSource::Kubernetes)
                    .count(),
            )
        }
    };
    wait::until("the discovered endpoint", LIMIT, || async {
        (discovered(&first).await? == 1).then_some(())
    })
    .await
    .unwrap();
    first.shutdown().await;

    let mut cfg = Config::for_tests(&db);
    cfg.discovery.resync = Duration::from_millis(200);
    let second = ControlPlane::start(cfg).await.unwrap();
    // Still asked for: kept, though nobody watches now.
    assert_eq!(second.discovery_leading(), None);
    assert_eq!(discovered(&second).await, Some(1));
    let spec = format!(
        "{{endpoints: [{{address: 127.0.0.1, port: {}}}]}}",
        a.port()
    );
    control::apply(&second, &manifest(listener, &spec))
        .await
        .unwrap();
    assert_eq!(discovered(&second).await, Some(0));
    second.shutdown().await;
}
