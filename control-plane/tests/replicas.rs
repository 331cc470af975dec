//! Several control planes on one PostgreSQL database, and many concurrent writers.

#![allow(clippy::unwrap_used)]

use gw_control_plane::server::{Config, ControlPlane};
use gw_control_plane::store::{Store, StoreError, StoreOptions};
use gw_control_plane::testing::PgTestDb;
use gw_proto::gateway::v1 as pb;
use gw_proto::gateway::v1::tenants_client::TenantsClient;
use gw_proto::model::{Kind, Meta, Object, ObjectKey, Spec, TenantSpec};
use std::collections::HashSet;
use std::time::Duration;

#[tokio::test]
async fn two_control_planes_see_each_others_writes() {
    let Some(db) = PgTestDb::create("replicas").await else {
        return;
    };
    let a = ControlPlane::start(Config::for_tests(db.url.clone()))
        .await
        .unwrap();
    let b = ControlPlane::start(Config::for_tests(db.url.clone()))
        .await
        .unwrap();
    let mut b_changes = b.store().subscribe();
    let before = *b_changes.borrow_and_update();

    let url = format!("http://{}", a.grpc_addr());
    let mut via_a = TenantsClient::connect(url).await.unwrap();
    let meta = pb::ObjectMeta {
        name: "acme".into(),
        ..Default::default()
    };
    let written = via_a
        .create_tenant(pb::Tenant {
            metadata: Some(meta),
            spec: None,
        })
        .await
        .unwrap()
        .into_inner()
        .result
        .unwrap()
        .revision;

    // B learns of A's write through LISTEN/NOTIFY, not by polling.
    let seen = tokio::time::timeout(
        Duration::from_secs(10),
        b_changes.wait_for(|r| *r >= written),
    )
    .await
    .expect("replica B was not notified within 10s")
    .map(|r| *r)
    .unwrap();
    assert!(seen > before);
    let mut via_b = TenantsClient::connect(format!("http://{}", b.grpc_addr()))
        .await
        .unwrap();
    let got = via_b
        .get_tenant(pb::GetRequest {
            name: "acme".into(),
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.metadata.unwrap().resource_version, written);
    a.shutdown().await;
    b.shutdown().await;
}

fn counter(meta: Meta, n: u64) -> Object {
    Object {
        meta,
        spec: Spec::Tenant(TenantSpec {
            display_name: n.to_string(),
        }),
    }
}

#[tokio::test]
async fn concurrent_writers_lose_no_update_and_revisions_increase() {
    let Some(db) = PgTestDb::create("concurrency").await else {
        return;
    };
    let store = Store::connect(StoreOptions::new(&db.url)).await.unwrap();
    let key = ObjectKey {
        kind: Kind::Tenant,
        tenant: String::new(),
        name: "counter".into(),
    };
    store
        .create(counter(
            Meta {
                name: "counter".into(),
                ..Default::default()
            },
            0,
        ))
        .await
        .unwrap();

    const WRITERS: usize = 16;
    const INCREMENTS: usize = 10;
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        // Each writer has its own pool: separate connections, as separate replicas would.
        let store = Store::connect(StoreOptions::new(&db.url)).await.unwrap();
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let mut revisions = Vec::new();
            let mut conflicts = 0;
            for _ in 0..INCREMENTS {
                loop {
                    let cur = store.get(&key).await.unwrap().unwrap();
                    let Spec::Tenant(t) = &cur.spec else {
                        panic!("tenant")
                    };
                    let n: u64 = t.display_name.parse().unwrap();
                    match store.update(counter(cur.meta.clone(), n + 1)).await {
                        Ok((_, rev)) => {
                            revisions.push(rev);
                            break;
                        }
                        Err(StoreError::Conflict { .. }) => conflicts += 1,
                        Err(e) => panic!("{e}"),
                    }
                }
            }
            (revisions, conflicts)
        }));
    }
    let mut all = Vec::new();
    let mut conflicts = 0;
    for t in tasks {
        let (revs, c) = t.await.unwrap();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "per-writer revisions increase: {revs:?}"
        );
        all.extend(revs);
        conflicts += c;
    }
    let cur = store.get(&key).await.unwrap().unwrap();
    let Spec::Tenant(t) = &cur.spec else {
        panic!("tenant")
    };
    assert_eq!(
        t.display_name,
        (WRITERS * INCREMENTS).to_string(),
        "no lost update"
    );
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "every successful write has its own revision"
    );
    assert_eq!(store.revision().await.unwrap(), *all.iter().max().unwrap());
    eprintln!(
        "{} writes, {conflicts} optimistic-concurrency conflicts retried",
        all.len()
    );
}
