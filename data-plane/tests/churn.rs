//! Config churn and protocol coverage: 50 route updates while load runs lose no request; HTTP/2
//! (h2c, prior knowledge) downstream; SIGTERM-style drain lets in-flight requests finish.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{
    assert_both_workers_accepted, client, eventually, get, stack_on, until_one_in_flight, Upstream,
};
use gw_control_plane::server::ControlPlane;
use gw_proxy::server::Proxy;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

async fn setup() -> (ControlPlane, Proxy, Upstream, Upstream) {
    setup_on(0).await
}

async fn setup_on(workers: usize) -> (ControlPlane, Proxy, Upstream, Upstream) {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let yaml = format!(
        "apiVersion: gw/v1\nkind: Tenant\nmetadata: {{name: t}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: a, tenant: t}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: b, tenant: t}}\nspec: {{endpoints: [{{address: 127.0.0.1, port: {}}}]}}\n---\n\
         apiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: a}}\n",
        a.port(),
        b.port()
    );
    let (cp, proxy) = stack_on(&yaml, "edge", "/x", workers).await;
    (cp, proxy, a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_route_updates_under_load_lose_no_request() {
    fifty_updates_under_load(0).await.0.shutdown().await;
}

/// The same with two proxy workers, which share the routing table: the 8 load connections are
/// spread over the two workers' sockets by the kernel, and no request fails on either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_route_updates_under_load_lose_no_request_on_two_workers() {
    let proxy = fifty_updates_under_load(2).await;
    assert_both_workers_accepted(&client(), proxy.1).await;
    proxy.0.shutdown().await;
}

/// 50 route updates while 8 connections send requests in turn, none failing; then the control
/// plane is shut and the proxy (of `workers` workers) returned with its admin address.
async fn fifty_updates_under_load(workers: usize) -> (Proxy, std::net::SocketAddr) {
    let (cp, proxy, _a, _b) = setup_on(workers).await;
    let p = proxy.listen_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for _ in 0..8 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = get(&c, p, "/x").await;
                if r.status == 200 { &ok } else { &failed }.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for i in 0..50 {
        let target = if i % 2 == 0 { "b" } else { "a" };
        let yaml = format!(
            "apiVersion: gw/v1\nkind: Route\nmetadata: {{name: r, tenant: t}}\nspec: {{match: {{pathPrefix: /}}, cluster: {target}, timeout: {}s}}\n",
            10 + i
        );
        common::apply(&cp, &yaml).await;
        // Each update must reach the proxy before the next: wait until traffic follows it.
        let c = client();
        eventually(10, "update applied", || async {
            (get(&c, p, "/x").await.upstream == target).then_some(())
        })
        .await;
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(ok > 100, "load ran ({ok} requests)");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during 50 updates",
        ok + failed
    );
    cp.shutdown().await;
    let admin = proxy.admin_addr();
    (proxy, admin)
}

#[tokio::test(flavor = "multi_thread")]
async fn serves_http2_prior_knowledge() {
    let (cp, proxy, _a, _b) = setup().await;
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let req = hyper::Request::get(format!("http://{}/h2", proxy.listen_addr()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = h2.request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-upstream"], "a");
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "a");
    proxy.shutdown().await;
    cp.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn drain_finishes_in_flight_requests_and_refuses_new_ones() {
    let (cp, proxy, _a, _b) = setup().await;
    let p = proxy.listen_addr();
    let c = client();
    // A request that takes 500 ms upstream is in flight when the drain starts.
    let inflight = tokio::spawn(async move { get(&c, p, "/slow/500").await });
    until_one_in_flight(&client(), proxy.admin_addr()).await;
    proxy.shutdown().await;
    let r = inflight.await.unwrap();
    assert_eq!(
        (r.status, r.upstream.as_str()),
        (200, "a"),
        "the in-flight request completed"
    );
    assert!(
        tokio::net::TcpStream::connect(p).await.is_err(),
        "new connections are refused after the drain"
    );
    cp.shutdown().await;
}
