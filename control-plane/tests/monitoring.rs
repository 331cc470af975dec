//! The monitoring chain on real databases: rollups → alert rules → alerts that fire and resolve by
//! themselves → signed webhooks with retries, all recorded in userdb; leader election on PostgreSQL.

#![allow(clippy::unwrap_used)]

mod support;

use gw_control_plane::clock::ManualClock;
use gw_control_plane::monitoring::evaluator::{Evaluator, NoFleet};
use gw_control_plane::monitoring::leader::Leadership;
use gw_control_plane::monitoring::webhook::{self, Sender};
use gw_control_plane::store::{EventFilter, Rollup, RollupKey, Store, StoreOptions};
use gw_control_plane::testing::PgTestDb;
use gw_proto::manifest;
use std::sync::Arc;
use std::time::Duration;

const CONFIG: &str = r#"
apiVersion: gw/v1
kind: Tenant
metadata: {name: acme}
---
apiVersion: gw/v1
kind: Cluster
metadata: {name: users-svc, tenant: acme}
---
apiVersion: gw/v1
kind: Route
metadata: {name: users, tenant: acme}
spec: {cluster: users-svc}
"#;

fn rule(url: &str) -> String {
    format!(
        "apiVersion: gw/v1\nkind: AlertRule\nmetadata: {{name: users-errors, tenant: acme}}\n\
         spec: {{metric: error_rate, scope: {{route: users}}, threshold: 0.05, window: 1m, for: 30s, \
         webhook: {{url: '{url}', secret: s3cr3t}}}}\n"
    )
}

async fn traffic(store: &Store, total: u64, failed: u64) {
    let mut r = Rollup::default();
    for i in 0..total {
        r.record(if i < failed { 503 } else { 200 }, 2_000, false);
    }
    let key = RollupKey {
        bucket_ms: store.now_ms(),
        kind: "route".into(),
        tenant: "acme".into(),
        name: "users".into(),
    };
    store.add_rollups(&[(key, r)]).await.unwrap();
}

async fn lifecycle(store: Store, clock: ManualClock) {
    let mut hooks = support::Receiver::start().await;
    let mut objs: Vec<_> = manifest::parse(CONFIG)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .collect();
    objs.extend(
        manifest::parse(&rule(&hooks.url()))
            .unwrap()
            .into_iter()
            .map(|d| d.object),
    );
    store.apply(objs, false).await.unwrap();
    let eval = Evaluator::new(store.clone(), Arc::new(NoFleet));
    let sender = Sender::new(store.clone());

    // Healthy traffic: nothing happens.
    traffic(&store, 100, 1).await;
    assert_eq!(eval.tick().await.unwrap(), 0);
    assert!(store.open_alerts().await.unwrap().is_empty());

    // 20 % errors: pending first (the rule wants 30 s), no webhook yet.
    clock.advance(Duration::from_secs(1));
    traffic(&store, 100, 40).await;
    eval.tick().await.unwrap();
    let open = store.open_alerts().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].state, "pending");
    assert_eq!(sender.deliver_due().await.unwrap(), 0);

    // Held for 30 s: firing, one webhook, even across an evaluator restart.
    clock.advance(Duration::from_secs(31));
    traffic(&store, 100, 40).await;
    let restarted = Evaluator::new(store.clone(), Arc::new(NoFleet));
    restarted.tick().await.unwrap();
    restarted.tick().await.unwrap();
    let open = store.open_alerts().await.unwrap();
    assert_eq!(open.len(), 1, "one alert per rule and scope");
    assert_eq!(open[0].state, "firing");
    assert!(open[0].value > 0.05);

    // The receiver fails once: the delivery is retried after a backoff, then delivered.
    hooks.answer_with(&[500]);
    assert_eq!(sender.deliver_due().await.unwrap(), 1);
    let first = hooks.hooks.recv().await.unwrap();
    assert_eq!(
        sender.deliver_due().await.unwrap(),
        0,
        "not due before the backoff"
    );
    clock.advance(webhook::backoff(0));
    assert_eq!(sender.deliver_due().await.unwrap(), 1);
    let fired = hooks.hooks.recv().await.unwrap();
    assert_eq!(first.raw, fired.raw, "a retry sends the same body");
    assert_eq!(fired.body["rule"], "users-errors");
    assert_eq!(fired.body["status"], "firing");
    assert_eq!(fired.body["scope"], "route/users");
    assert!(fired.body["value"].as_f64().unwrap() > 0.05);
    assert!(fired.body["startsAt"].as_str().unwrap().ends_with('Z'));
    assert!(
        fired.body.get("_secret").is_none(),
        "the secret is never sent"
    );
    assert_eq!(
        fired.signature.unwrap(),
        webhook::sign("s3cr3t", &fired.raw)
    );
    let deliveries = store.deliveries_of(&open[0].id).await.unwrap();
    assert_eq!(
        deliveries,
        vec![("firing".into(), "delivered".into(), 2, Some(200))]
    );

    // Healed: once the bad minute leaves the window the alert resolves by itself.
    clock.advance(Duration::from_secs(61));
    traffic(&store, 100, 0).await;
    eval.tick().await.unwrap();
    assert!(store.open_alerts().await.unwrap().is_empty());
    sender.deliver_due().await.unwrap();
    let resolved = hooks.hooks.recv().await.unwrap();
    assert_eq!(resolved.body["status"], "resolved");
    assert!(resolved.body["endsAt"].is_string());
    let all = store.list_alerts("acme", "", 0).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].state, "resolved");
    assert_eq!(all[0].delivery, "delivered");

    let acked = store.ack_alert(&all[0].id, "alice").await.unwrap();
    assert_eq!(acked.acked_by, "alice");
    let events = store.list_events(&EventFilter::default()).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["alert_firing", "alert_resolved"]);
}

#[tokio::test]
async fn alert_fires_delivers_and_resolves_on_sqlite() {
    let clock = ManualClock::new(1_700_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("u.sqlite").display());
    let store = Store::connect(StoreOptions::new(url).with_clock(Arc::new(clock.clone())))
        .await
        .unwrap();
    lifecycle(store, clock).await;
}

#[tokio::test]
async fn alert_fires_delivers_and_resolves_on_postgres() {
    let Some(db) = PgTestDb::create("alerts").await else {
        return;
    };
    let clock = ManualClock::new(1_700_000_000_000);
    let store = Store::connect(StoreOptions::new(&db.url).with_clock(Arc::new(clock.clone())))
        .await
        .unwrap();
    lifecycle(store, clock).await;
}

#[tokio::test]
async fn pending_alert_that_clears_never_notifies() {
    let clock = ManualClock::new(1_700_000_000_000);
    let store =
        Store::connect(StoreOptions::new("sqlite::memory:").with_clock(Arc::new(clock.clone())))
            .await
            .unwrap();
    let mut objs: Vec<_> = manifest::parse(CONFIG)
        .unwrap()
        .into_iter()
        .map(|d| d.object)
        .collect();
    objs.extend(
        manifest::parse(&rule("http://127.0.0.1:9/x"))
            .unwrap()
            .into_iter()
            .map(|d| d.object),
    );
    store.apply(objs, false).await.unwrap();
    let eval = Evaluator::new(store.clone(), Arc::new(NoFleet));
    traffic(&store, 10, 10).await;
    eval.tick().await.unwrap();
    assert_eq!(store.open_alerts().await.unwrap()[0].state, "pending");
    clock.advance(Duration::from_secs(61));
    traffic(&store, 10, 0).await;
    eval.tick().await.unwrap();
    assert!(store.open_alerts().await.unwrap().is_empty());
    assert!(store.list_alerts("", "", 0).await.unwrap().is_empty());
    assert!(store.due_deliveries(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn exactly_one_replica_leads_and_another_takes_over() {
    let Some(db) = PgTestDb::create("leader").await else {
        return;
    };
    let store = Store::connect(StoreOptions::new(&db.url)).await.unwrap();
    let mut a = Leadership::new(store.backend(), db.url.clone());
    let mut b = Leadership::new(store.backend(), db.url.clone());
    assert!(a.ensure().await);
    assert!(!b.ensure().await, "the lock is held by A");
    assert!(a.ensure().await, "A keeps leading");
    drop(a); // A's session ends, as when its process dies.
             // The server releases A's lock when it notices the closed session: poll, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !b.ensure().await {
        assert!(tokio::time::Instant::now() < deadline, "B never took over");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
