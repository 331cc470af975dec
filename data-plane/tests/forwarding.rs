//! The forwarding path against real upstreams, config fed directly (no control plane): routing
//! outcomes, weighted clusters, HTTP/2 prior knowledge, retries and when they are not allowed,
//! header rules, every strategy's preference under real traffic, and config churn under load.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::raw;
use gw_proto::envoy::pb::envoy::config::route::v3 as rt;
use gw_proxy::config::fixture::{self, ClusterDef};
use gw_proxy::server::{Proxy, ProxyConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An upstream answering `status` after `delay` (simulated service time, not synchronisation),
/// naming itself in `x-upstream` and echoing request headers as `x-seen-<name>`; it reads each
/// request's body whole first, and counts requests and body bytes.
struct Up {
    addr: SocketAddr,
    hits: Arc<AtomicU32>,
    bytes: Arc<AtomicU32>,
}

async fn upstream(name: &'static str, status: u16, delay: Duration) -> Up {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (hits, bytes) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let (h, b) = (hits.clone(), bytes.clone());
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let (h, b) = (h.clone(), b.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    let b = b.clone();
                    async move {
                        let (req, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes().len());
                        b.fetch_add(body.unwrap_or(0) as u32, Ordering::SeqCst);
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                        let mut r = Response::new(Full::new(Bytes::from_static(name.as_bytes())));
                        *r.status_mut() = StatusCode::from_u16(status).unwrap();
                        r.headers_mut().insert("x-upstream", name.parse().unwrap());
                        let path = req.uri.path_and_query().map_or("", |p| p.as_str());
                        r.headers_mut().insert("x-path", path.parse().unwrap());
                        // Each name's lines, joined: a header sent twice shows both.
                        for k in req.headers.keys() {
                            let all: Vec<&str> = req
                                .headers
                                .get_all(k)
                                .iter()
                                .map(|v| v.to_str().unwrap_or("?"))
                                .collect();
                            let seen = format!("x-seen-{k}");
                            r.headers_mut().insert(
                                hyper::header::HeaderName::from_bytes(seen.as_bytes()).unwrap(),
                                all.join(" | ").parse().unwrap(),
                            );
                        }
                        r.headers_mut()
                            .insert("x-from-upstream", "u".parse().unwrap());
                        r.headers_mut()
                            .insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
                        // How many lines named so came: a header sent twice shows.
                        let n = req.headers.get_all("x-envoy-original-path").iter().count();
                        r.headers_mut().insert("x-original-paths", n.into());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Up { addr, hits, bytes }
}

type Http = Client<HttpConnector, Full<Bytes>>;

async fn call(
    c: &Http,
    p: SocketAddr,
    method: &str,
    path: &str,
    h: &[(&str, &str)],
    body: &'static str,
) -> (u16, String, hyper::HeaderMap) {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{p}{path}"));
    for (k, v) in h {
        b = b.header(*k, *v);
    }
    let resp = c
        .request(
            b.body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let up = headers
        .get("x-upstream")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    resp.into_body().collect().await.unwrap();
    (status, up, headers)
}

/// An HTTP/1.1 client and an HTTP/2 (prior knowledge) one.
fn clients() -> (Http, Http) {
    let h1: Http = Client::builder(TokioExecutor::new()).build_http();
    let h2: Http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    (h1, h2)
}

async fn proxy_with(routes: Vec<rt::Route>, clusters: &[ClusterDef<'_>]) -> Proxy {
    let proxy = Proxy::start(ProxyConfig::for_tests(None, "edge-test"))
        .await
        .unwrap();
    proxy
        .shared()
        .apply(fixture::simple(routes, clusters))
        .unwrap();
    proxy
}

/// What `proxy` says when fed `routes` to cluster `t/a` at `a`: the NACK's text (it must refuse).
fn refused(proxy: &Proxy, routes: Vec<rt::Route>, a: SocketAddr) -> String {
    proxy
        .shared()
        .apply(fixture::simple(
            routes,
            &[("t/a", "round_robin", vec![(a, 1)])],
        ))
        .unwrap_err()
        .to_string()
}

fn retry(r: &mut rt::Route, on: &str, n: u32) {
    fixture::action(r).unwrap().retry_policy = Some(rt::RetryPolicy {
        retry_on: on.into(),
        num_retries: Some(gw_proto::envoy::pb::google::protobuf::UInt32Value { value: n }),
        ..Default::default()
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn statuses_weights_h2c_and_headers() {
    let a = upstream("a", 200, Duration::ZERO).await;
    let b = upstream("b", 200, Duration::ZERO).await;
    let mut split = fixture::prefix_route("t/split", "/split", "t/a");
    fixture::action(&mut split).unwrap().cluster_specifier = Some(
        rt::route_action::ClusterSpecifier::WeightedClusters(rt::WeightedCluster {
            clusters: [("t/a", 90), ("t/b", 10)]
                .map(|(n, w)| rt::weighted_cluster::ClusterWeight {
                    name: n.into(),
                    weight: Some(gw_proto::envoy::pb::google::protobuf::UInt32Value { value: w }),
                    ..Default::default()
                })
                .to_vec(),
            ..Default::default()
        }),
    );
    let proxy = proxy_with(
        vec![
            split,
            fixture::prefix_route("t/empty", "/empty", "t/none"),
            fixture::prefix_route("t/a", "/", "t/a"),
        ],
        &[
            ("t/a", "round_robin", vec![(a.addr, 1)]),
            ("t/b", "round_robin", vec![(b.addr, 1)]),
            ("t/none", "round_robin", vec![]),
        ],
    )
    .await;
    let p = proxy.listen_addr();
    let c: Http = Client::builder(TokioExecutor::new()).build_http();

    let mut seen = HashMap::new();
    for _ in 0..1000 {
        *seen
            .entry(call(&c, p, "GET", "/split", &[], "").await.1)
            .or_insert(0) += 1;
    }
    let to_b = seen.get("b").copied().unwrap_or(0);
    assert!((50..=150).contains(&to_b), "90/10 split: {seen:?}");

    assert_eq!(
        call(&c, p, "GET", "/empty", &[], "").await.0,
        503,
        "no endpoint → 503"
    );

    let (status, up, h) = call(
        &c,
        p,
        "GET",
        "/x",
        &[
            ("connection", "x-drop"),
            ("x-drop", "1"),
            ("x-request-id", "rid-1"),
            ("x-forwarded-for", "10.0.0.9"),
        ],
        "",
    )
    .await;
    assert_eq!((status, up.as_str()), (200, "a"));
    assert!(
        !h.contains_key("x-seen-x-drop"),
        "headers named by Connection are hop-by-hop"
    );
    assert_eq!(h["x-seen-x-request-id"], "rid-1");
    assert_eq!(h["x-seen-x-forwarded-for"], "10.0.0.9, 127.0.0.1");

    // HTTP/2 with prior knowledge, on the same listener.
    let h2: Http = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let (status, up, h) = call(&h2, p, "GET", "/x", &[], "").await;
    assert_eq!((status, up.as_str()), (200, "a"));
    assert!(
        h.contains_key("x-seen-host"),
        "the authority becomes Host upstream"
    );
    proxy.shutdown().await;
}

/// [`raw`]: the response's status.
async fn raw_status(p: SocketAddr, request: &[u8]) -> u16 {
    let got = raw(p, request).await;
    got.get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a response: {got}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_send_the_body_again_when_it_can_be_had_whole() {
    let bad = upstream("bad", 503, Duration::ZERO).await;
    let good = upstream("good", 200, Duration::ZERO).await;
    let failing = upstream("failing", 503, Duration::ZERO).await;
    // Bound but never listening: connections are refused, and the port stays ours.
    let unanswered = tokio::net::TcpSocket::new_v4().unwrap();
    unanswered.bind(([127, 0, 0, 1], 0).into()).unwrap();
    let dead = unanswered.local_addr().unwrap();
    let mut r5xx = fixture::prefix_route("t/r", "/r", "t/mixed");
    retry(&mut r5xx, "5xx", 3);
    let mut rconn = fixture::prefix_route("t/c", "/c", "t/half-dead");
    retry(&mut rconn, "connect-failure", 2);
    let mut rfail = fixture::prefix_route("t/f", "/f", "t/failing");
    retry(&mut rfail, "5xx", 2);
    let trailing = upstream("trailing", 503, Duration::ZERO).await;
    let mut rtrail = fixture::prefix_route("t/t", "/t", "t/trailing");
    retry(&mut rtrail, "5xx", 2);
    // A per-try timeout shorter than the upload: Envoy starts it once the request is whole.
    let per_try = |r: &mut rt::Route| {
        retry(r, "5xx", 1);
        if let Some(p) = fixture::action(r).unwrap().retry_policy.as_mut() {
            p.per_try_timeout = Some(fixture::duration(Duration::from_millis(300)));
        }
    };
    let mut rupload = fixture::prefix_route("t/u", "/u", "t/upload");
    per_try(&mut rupload);
    let upload = upstream("upload", 200, Duration::ZERO).await;
    // The same timeout in front of an upstream that answers after 5 s: it runs from the
    // upload's end.
    let mut rstall = fixture::prefix_route("t/v", "/v", "t/slow");
    per_try(&mut rstall);
    // And with no retries at all (a per-try timeout still bounds the one try, as Envoy's).
    let mut ronce = fixture::prefix_route("t/w", "/w", "t/slow");
    per_try(&mut ronce);
    if let Some(p) = fixture::action(&mut ronce).unwrap().retry_policy.as_mut() {
        p.num_retries = Some(gw_proto::envoy::pb::google::protobuf::UInt32Value { value: 0 });
    }
    let mut slow = fixture::prefix_route("t/s", "/s", "t/slow");
    fixture::action(&mut slow).unwrap().timeout =
        Some(fixture::duration(Duration::from_millis(100)));
    let slow_up = upstream("slow", 200, Duration::from_secs(5)).await;
    let proxy = proxy_with(
        vec![r5xx, rconn, rfail, rtrail, rupload, rstall, ronce, slow],
        &[
            (
                "t/mixed",
                "round_robin",
                vec![(bad.addr, 1), (good.addr, 1)],
            ),
            (
                "t/half-dead",
                "round_robin",
                vec![(dead, 1), (good.addr, 1)],
            ),
            ("t/failing", "round_robin", vec![(failing.addr, 1)]),
            ("t/trailing", "round_robin", vec![(trailing.addr, 1)]),
            ("t/upload", "round_robin", vec![(upload.addr, 1)]),
            ("t/slow", "round_robin", vec![(slow_up.addr, 1)]),
        ],
    )
    .await;
    let p = proxy.listen_addr();
    let c: Http = Client::builder(TokioExecutor::new()).build_http();
    // A small body of declared length (the native path holds it whole) is sent again with each
    // retry, as Envoy sends a body it buffered: every request ends at `good` with its body, and
    // the tries that met `bad` (at least the first of them, before its breaker opened) carried
    // it too.
    for _ in 0..10 {
        assert_eq!(call(&c, p, "POST", "/r", &[], "payload").await.0, 200);
    }
    assert_eq!(good.bytes.load(Ordering::SeqCst), 10 * 7);
    let tried_bad = bad.hits.load(Ordering::SeqCst);
    assert!(tried_bad > 0, "no try met the failing endpoint");
    assert_eq!(bad.bytes.load(Ordering::SeqCst), tried_bad * 7);
    // A chunked body takes hyper's path, which copies it as it goes up for a retry. One that
    // met the dead endpoint first (one of two in a row does, round robin) is kept unsent and
    // goes whole to the other.
    let chunked = |path: &str, body: &[u8]| {
        let mut r =
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                .into_bytes();
        for piece in body.chunks(64 * 1024) {
            r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            r.extend_from_slice(piece);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
        r
    };
    let before = good.bytes.load(Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(raw_status(p, &chunked("/c", b"chunk")).await, 200);
    }
    assert_eq!(good.bytes.load(Ordering::SeqCst) - before, 10);
    // Empty-bodied requests are retried elsewhere (by now the failing endpoint's breaker has
    // opened too, which keeps them off it).
    for _ in 0..10 {
        assert_eq!(
            call(&c, p, "GET", "/r", &[], "").await.0,
            200,
            "5xx retried elsewhere"
        );
        assert_eq!(
            call(&c, p, "GET", "/c", &[], "").await.0,
            200,
            "connect failure retried"
        );
    }
    // Sent again whole after a 503: three tries of five bytes.
    assert_eq!(raw_status(p, &chunked("/f", b"chunk")).await, 503);
    let seen = || {
        (
            failing.hits.load(Ordering::SeqCst),
            failing.bytes.load(Ordering::SeqCst),
        )
    };
    assert_eq!(seen(), (3, 15));
    // One longer than the retry buffer (Envoy's 1 MiB) cannot be had again: one try, whose
    // answer stands.
    let big = vec![b'x'; 1024 * 1024 + 1];
    assert_eq!(raw_status(p, &chunked("/f", &big)).await, 503);
    assert_eq!(seen(), (4, 15 + 1024 * 1024 + 1), "sent once");
    // Trailers end a chunked body (hyper's client asks for nothing after them): sent again.
    let with_trailers = b"POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
        Connection: close\r\n\r\n5\r\nchunk\r\n0\r\nx-check: 1\r\n\r\n";
    assert_eq!(raw_status(p, with_trailers).await, 503);
    let tries = (
        trailing.hits.load(Ordering::SeqCst),
        trailing.bytes.load(Ordering::SeqCst),
    );
    assert_eq!(tries, (3, 15), "three tries with trailers");
    // An upload slower than the per-try timeout is not cut by it (a slow client, simulated);
    // the timeout runs from the upload's end: in front of an upstream that answers after 5 s,
    // both tries time out (504), where a timer never started would have waited for its 200.
    let slow_upload = |path: &str| {
        let path = path.to_owned();
        async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut s = tokio::net::TcpStream::connect(p).await.unwrap();
            let head = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                 Connection: close\r\n\r\n5\r\nfirst\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(600)).await;
            s.write_all(b"4\r\nlast\r\n0\r\n\r\n").await.unwrap();
            let mut got = String::new();
            s.read_to_string(&mut got).await.unwrap();
            got
        }
    };
    let got = slow_upload("/u").await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    assert_eq!(upload.bytes.load(Ordering::SeqCst), 9);
    let before = slow_up.hits.load(Ordering::SeqCst);
    let got = slow_upload("/v").await;
    assert!(got.starts_with("HTTP/1.1 504"), "{got}");
    assert_eq!(
        slow_up.hits.load(Ordering::SeqCst) - before,
        2,
        "the try and its retry"
    );
    let got = slow_upload("/w").await;
    assert!(got.starts_with("HTTP/1.1 504"), "{got}");
    assert_eq!(
        slow_up.hits.load(Ordering::SeqCst) - before,
        3,
        "one try, no retry"
    );

    let t = std::time::Instant::now();
    assert_eq!(call(&c, p, "GET", "/s", &[], "").await.0, 504);
    assert!(t.elapsed() < Duration::from_secs(2));
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn strategies_prefer_what_they_promise() {
    // A 10× gap wide enough that one scheduling stall on a busy CI core (which a peak-EWMA
    // remembers for its decay time) cannot make the fast endpoint look the slower one.
    let fast = upstream("fast", 200, Duration::from_millis(20)).await;
    let slow = upstream("slow", 200, Duration::from_millis(200)).await;
    let ok = upstream("ok", 200, Duration::ZERO).await;
    let failing = upstream("failing", 500, Duration::ZERO).await;
    let h1 = upstream("h1", 200, Duration::ZERO).await;
    let h2 = upstream("h2", 200, Duration::ZERO).await;
    let h3 = upstream("h3", 200, Duration::ZERO).await;
    let mut hashed = fixture::prefix_route("t/h", "/h", "t/hash");
    fixture::action(&mut hashed).unwrap().hash_policy = vec![rt::route_action::HashPolicy {
        policy_specifier: Some(rt::route_action::hash_policy::PolicySpecifier::Header(
            rt::route_action::hash_policy::Header {
                header_name: "x-user".into(),
                ..Default::default()
            },
        )),
        ..Default::default()
    }];
    let proxy = proxy_with(
        vec![
            fixture::prefix_route("t/rt", "/rt", "t/latency"),
            fixture::prefix_route("t/av", "/av", "t/avail"),
            hashed,
        ],
        &[
            (
                "t/latency",
                "response_time",
                vec![(fast.addr, 1), (slow.addr, 1)],
            ),
            (
                "t/avail",
                "availability",
                vec![(ok.addr, 1), (failing.addr, 1)],
            ),
            (
                "t/hash",
                "ip_hash",
                vec![(h1.addr, 1), (h2.addr, 1), (h3.addr, 1)],
            ),
        ],
    )
    .await;
    let p = proxy.listen_addr();
    let c: Http = Client::builder(TokioExecutor::new()).build_http();

    // response_time: 4 concurrent callers, 10× latency gap.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                call(&c, p, "GET", "/rt", &[], "").await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (f, s) = (
        fast.hits.load(Ordering::SeqCst),
        slow.hits.load(Ordering::SeqCst),
    );
    assert!(f >= 3 * s, "faster endpoint preferred: fast {f}, slow {s}");

    // availability: the failing endpoint is avoided after its first failures.
    for _ in 0..200 {
        call(&c, p, "GET", "/av", &[], "").await;
    }
    let bad = failing.hits.load(Ordering::SeqCst);
    assert!(bad <= 10, "failing endpoint avoided: {bad} of 200");

    // ip_hash on a header: a user sticks to one endpoint; users spread.
    let mut owners = HashMap::new();
    for u in 0..60 {
        let user = format!("user-{u}");
        let first = call(&c, p, "GET", "/h", &[("x-user", &user)], "").await.1;
        for _ in 0..3 {
            assert_eq!(
                call(&c, p, "GET", "/h", &[("x-user", &user)], "").await.1,
                first
            );
        }
        *owners.entry(first).or_insert(0) += 1;
    }
    assert_eq!(
        owners.len(),
        3,
        "users spread over all endpoints: {owners:?}"
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_churn_under_load_fails_nothing() {
    let a = upstream("a", 200, Duration::ZERO).await;
    let b = upstream("b", 200, Duration::ZERO).await;
    let proxy = proxy_with(
        vec![fixture::prefix_route("t/r", "/", "t/a")],
        &[
            ("t/a", "round_robin", vec![(a.addr, 1)]),
            ("t/b", "least_conn", vec![(b.addr, 1)]),
        ],
    )
    .await;
    let p = proxy.listen_addr();
    let c: Http = Client::builder(TokioExecutor::new()).build_http();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (c, stop, ok, failed) = (c.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let counter = if call(&c, p, "GET", "/x", &[], "").await.0 == 200 {
                    &ok
                } else {
                    &failed
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for i in 0..50u32 {
        let target = if i % 2 == 0 { "t/b" } else { "t/a" };
        let mut res = fixture::simple(
            vec![fixture::prefix_route("t/r", "/", target)],
            &[
                ("t/a", "round_robin", vec![(a.addr, 1)]),
                ("t/b", "least_conn", vec![(b.addr, 1 + i % 3)]),
            ],
        );
        res.insert(
            gw_proxy::config::type_url::ROUTE,
            "ingress",
            &format!("v{i}"),
            &fixture::route_config(
                "ingress",
                vec![(vec!["*"], vec![fixture::prefix_route("t/r", "/", target)])],
            ),
        );
        proxy.shared().apply(res).unwrap();
        // Let some requests through on each version.
        let seen = ok.load(Ordering::Relaxed);
        while ok.load(Ordering::Relaxed) < seen + 5 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "ok: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(a.hits.load(Ordering::SeqCst) > 0 && b.hits.load(Ordering::SeqCst) > 0);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_rewrite_the_matched_prefix_as_envoy() {
    let a = upstream("a", 200, Duration::ZERO).await;
    let rewrite = |mut r: rt::Route, to: &str| {
        fixture::action(&mut r).unwrap().prefix_rewrite = to.into();
        r
    };
    let exact = {
        let mut r = fixture::prefix_route("t/old", "/", "t/a");
        r.r#match.as_mut().unwrap().path_specifier =
            Some(rt::route_match::PathSpecifier::Path("/old".into()));
        rewrite(r, "/new")
    };
    use rt::route_action::HostRewriteSpecifier as HostRewrite;
    let host = |mut r: rt::Route, to: HostRewrite| {
        fixture::action(&mut r).unwrap().host_rewrite_specifier = Some(to);
        r
    };
    let literal = |h: &str| HostRewrite::HostRewriteLiteral(h.into());
    let proxy = proxy_with(
        vec![
            rewrite(fixture::prefix_route("t/api", "/api/", "t/a"), "/"),
            rewrite(fixture::prefix_route("t/v1", "/v1", "t/a"), "/v2"),
            exact,
            host(
                fixture::prefix_route("t/hosted", "/hosted", "t/a"),
                literal("users.internal:8080"),
            ),
            fixture::prefix_route("t/a", "/", "t/a"),
        ],
        &[("t/a", "round_robin", vec![(a.addr, 1)])],
    )
    .await;
    let p = proxy.listen_addr();
    let (h1, h2) = clients();
    // (asked, sent upstream, x-envoy-original-path)
    let cases = [
        (
            "/api/users?page=2",
            "/users?page=2",
            Some("/api/users?page=2"),
        ),
        ("/v1/items", "/v2/items", Some("/v1/items")),
        // As Envoy: the prefix is replaced literally, slashes and all.
        ("/v1", "/v2", Some("/v1")),
        ("/old?x=1", "/new?x=1", Some("/old?x=1")),
        ("/other", "/other", None),
    ];
    // The native path (bodyless, a small body), and hyper's (HTTP/2, a chunked body).
    for (client, body, chunked) in [
        (&h1, "", false),
        (&h1, "abc", false),
        (&h2, "", false),
        (&h1, "xyz", true),
    ] {
        for (asked, sent, original) in cases {
            let headers: &[(&str, &str)] = match chunked {
                true => &[
                    ("transfer-encoding", "chunked"),
                    ("x-envoy-original-path", "/spoofed"),
                ],
                false => &[("x-envoy-original-path", "/spoofed")],
            };
            let method = if body.is_empty() { "GET" } else { "POST" };
            let (status, _, h) = call(client, p, method, asked, headers, body).await;
            assert_eq!(status, 200, "{asked}");
            assert_eq!(
                h["x-path"], sent,
                "{asked} (body {body:?}, chunked {chunked})"
            );
            let lines = usize::from(original.is_some()).to_string();
            assert_eq!(
                h["x-original-paths"],
                lines.as_str(),
                "{asked}: x-envoy-original-path lines"
            );
            let got = h
                .get("x-seen-x-envoy-original-path")
                .map(|v| v.to_str().unwrap());
            // The client's own is dropped, rewritten or not (as Envoy drops it).
            assert_eq!(got, original, "{asked}");
        }
        // A host rewrite: one `Host`, the route's, whatever the client sent.
        let method = if body.is_empty() { "GET" } else { "POST" };
        let te: &[(&str, &str)] = match chunked {
            true => &[("transfer-encoding", "chunked")],
            false => &[],
        };
        let (status, _, h) = call(client, p, method, "/hosted/x?q=1", te, body).await;
        assert_eq!(status, 200);
        assert_eq!(h["x-path"], "/hosted/x?q=1");
        assert_eq!(h["x-seen-host"], "users.internal:8080", "body {body:?}");
        assert_eq!(h["x-seen-x-envoy-original-host"], p.to_string().as_str());
        let (_, _, h) = call(client, p, method, "/other", te, body).await;
        assert_eq!(h["x-seen-host"], p.to_string().as_str());
    }
    // A prefix rewrite on a regex match has no prefix to replace: refused, the rest serves.
    let mut bad = fixture::prefix_route("t/re", "/", "t/a");
    bad.r#match.as_mut().unwrap().path_specifier = Some(rt::route_match::PathSpecifier::SafeRegex(
        gw_proto::envoy::pb::envoy::r#type::matcher::v3::RegexMatcher {
            regex: "/re.*".into(),
            ..Default::default()
        },
    ));
    let err = refused(&proxy, vec![rewrite(bad, "/x")], a.addr);
    assert!(err.contains("prefix_rewrite on a regex match"), "{err}");
    // Host rewrites other than a literal, and a literal that is no host, are refused by name.
    let mut appended = fixture::prefix_route("t/h", "/h", "t/a");
    fixture::action(&mut appended)
        .unwrap()
        .append_x_forwarded_host = true;
    for (r, want) in [
        (
            host(fixture::prefix_route("t/h", "/h", "t/a"), literal("a b")),
            "host_rewrite_literal \"a b\" is not a host",
        ),
        (
            host(
                fixture::prefix_route("t/h", "/h", "t/a"),
                HostRewrite::AutoHostRewrite(gw_proto::envoy::pb::google::protobuf::BoolValue {
                    value: true,
                }),
            ),
            "a host rewrite other than host_rewrite_literal",
        ),
        (appended, "append_x_forwarded_host"),
    ] {
        let err = refused(&proxy, vec![r], a.addr);
        assert!(err.contains(want), "{err}");
    }
    assert_eq!(
        call(&h1, p, "GET", "/api/x", &[], "").await.2["x-path"],
        "/x"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_change_request_and_response_headers_as_envoy() {
    use gw_proto::envoy::pb::envoy::config::core::v3::{
        header_value_option::HeaderAppendAction, HeaderValue, HeaderValueOption,
    };
    let a = upstream("a", 200, Duration::ZERO).await;
    let option = |k: &str, v: &str, action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.into(),
            value: v.into(),
            ..Default::default()
        }),
        append_action: action as i32,
        keep_empty_value: true,
        ..Default::default()
    };
    let mut r = fixture::prefix_route("t/h", "/h", "t/a");
    r.request_headers_to_add = vec![
        option("x-set", "1", HeaderAppendAction::OverwriteIfExistsOrAdd),
        option("x-add", "2", HeaderAppendAction::AppendIfExistsOrAdd),
    ];
    r.request_headers_to_remove = vec!["x-gone".into()];
    r.response_headers_to_add = vec![
        option(
            "x-frame-options",
            "DENY",
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        ),
        option(
            "x-from-upstream",
            "p",
            HeaderAppendAction::AppendIfExistsOrAdd,
        ),
    ];
    r.response_headers_to_remove = vec!["x-upstream".into()];
    let mut dead = fixture::prefix_route("t/dead", "/dead", "t/none");
    dead.response_headers_to_add = r.response_headers_to_add.clone();
    let proxy = proxy_with(
        vec![r, dead, fixture::prefix_route("t/a", "/", "t/a")],
        &[
            ("t/a", "round_robin", vec![(a.addr, 1)]),
            ("t/none", "round_robin", vec![]),
        ],
    )
    .await;
    let p = proxy.listen_addr();
    let (h1, h2) = clients();
    let sent = [
        ("x-set", "0"),
        ("x-add", "0"),
        ("x-gone", "0"),
        ("x-kept", "k"),
    ];
    let chunked = [
        ("x-set", "0"),
        ("x-add", "0"),
        ("x-gone", "0"),
        ("x-kept", "k"),
        ("transfer-encoding", "chunked"),
    ];
    // The native path, hyper's (HTTP/2), and hyper's client (a chunked body).
    for (client, headers, body) in [
        (&h1, &sent[..], ""),
        (&h2, &sent[..], ""),
        (&h1, &chunked[..], "abc"),
    ] {
        let (status, _, h) = call(client, p, "POST", "/h", headers, body).await;
        assert_eq!(status, 200);
        let seen = |n: &str| {
            h.get(format!("x-seen-{n}"))
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(seen("x-set").as_deref(), Some("1"), "set replaces");
        assert_eq!(seen("x-add").as_deref(), Some("0 | 2"), "add appends");
        assert_eq!(seen("x-gone"), None, "remove removes");
        assert_eq!(seen("x-kept").as_deref(), Some("k"));
        let frame: Vec<_> = h.get_all("x-frame-options").iter().collect();
        assert_eq!(frame, ["DENY"], "set replaces the upstream's");
        assert!(!h.contains_key("x-upstream"), "removed from the response");
        // The proxy's own answers get the route's response changes too (as Envoy's).
        let (status, _, dead) = call(client, p, "GET", "/dead", &[], "").await;
        assert_eq!(status, 503);
        assert_eq!(dead["x-frame-options"], "DENY", "{dead:?}");
        let from: Vec<_> = h
            .get_all("x-from-upstream")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(from, ["u", "p"], "added to the response");
    }
    // Another route is untouched.
    let (_, _, h) = call(&h1, p, "GET", "/x", &sent, "").await;
    assert_eq!(h["x-seen-x-set"], "0");
    assert_eq!(h["x-upstream"], "a");
    assert_eq!(h["x-frame-options"], "SAMEORIGIN");
    // Names in any case, on the native path.
    let got = raw(
        p,
        b"GET /h HTTP/1.1\r\nHost: a\r\nX-SET: 0\r\nX-Gone: 0\r\nConnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(got.contains("x-seen-x-set: 1\r\n"), "{got}");
    assert!(!got.contains("x-seen-x-gone"), "{got}");
    // What gw-proxy cannot follow is refused by name: a substitution, a header it sets itself.
    for (k, v, why) in [
        ("x-who", "%DOWNSTREAM_REMOTE_ADDRESS%", "%-substitutions"),
        ("x-forwarded-for", "1.2.3.4", "cannot be changed"),
    ] {
        let mut r = fixture::prefix_route("t/h", "/h", "t/a");
        r.request_headers_to_add = vec![option(k, v, HeaderAppendAction::OverwriteIfExistsOrAdd)];
        let err = refused(&proxy, vec![r], a.addr);
        assert!(err.contains(why), "{k}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn routes_answer_directly_as_envoy() {
    use gw_proto::envoy::pb::envoy::config::core::v3::{data_source, DataSource};
    let a = upstream("a", 200, Duration::ZERO).await;
    let direct = |name: &str, prefix: &str, status: u32, body: &str| {
        let mut r = fixture::prefix_route(name, prefix, "t/a");
        r.action = Some(rt::route::Action::DirectResponse(
            rt::DirectResponseAction {
                status,
                body: (!body.is_empty()).then(|| DataSource {
                    specifier: Some(data_source::Specifier::InlineString(body.into())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ));
        r
    };
    let proxy = proxy_with(
        vec![
            direct("t/gone", "/gone", 410, "gone for good\n"),
            direct("t/empty", "/empty", 204, ""),
            fixture::prefix_route("t/a", "/", "t/a"),
        ],
        &[("t/a", "round_robin", vec![(a.addr, 1)])],
    )
    .await;
    let p = proxy.listen_addr();
    let (h1, h2) = clients();
    // The native path (with and without a body) and hyper's (HTTP/2): no request upstream.
    for (client, body) in [(&h1, ""), (&h1, "abc"), (&h2, "")] {
        let method = if body.is_empty() { "GET" } else { "POST" };
        let (status, up, h) = call(client, p, method, "/gone/x", &[], body).await;
        assert_eq!((status, up.as_str()), (410, ""));
        assert_eq!(h["content-type"], "text/plain");
        assert_eq!(h["content-length"], "14");
        let (status, _, h) = call(client, p, "GET", "/empty", &[], "").await;
        assert_eq!(status, 204);
        assert!(!h.contains_key("content-type"), "{h:?}");
    }
    // To a gRPC client, a gRPC answer (as Envoy's): 200, the status as grpc-status (UNKNOWN),
    // the body as grpc-message.
    let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
    let (status, _, h) = call(&h2, p, "POST", "/gone/x", &grpc, "").await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/grpc");
    assert_eq!(h["grpc-status"], "2");
    assert_eq!(
        h["grpc-message"], "gone for good%0A",
        "percent-encoded, as Envoy writes it"
    );
    assert_eq!(a.hits.load(Ordering::SeqCst), 0, "nothing went upstream");
    // Counted as the route's requests, with their HTTP status (the gRPC one's too).
    let text = common_metrics(&proxy).await;
    assert!(
        text.lines().any(|l| l.starts_with("gw_rq_total{")
            && l.contains("name=\"gone\"")
            && l.contains("class=\"4xx\"")
            && l.ends_with(" 4")),
        "{text}"
    );
    // A status outside 200..=599 is refused by name.
    let err = refused(&proxy, vec![direct("t/bad", "/bad", 99, "")], a.addr);
    assert!(err.contains("direct_response status 99"), "{err}");
}

#[tokio::test]
async fn routes_redirect_as_envoy() {
    use rt::redirect_action::{PathRewriteSpecifier as P, SchemeRewriteSpecifier as S};
    let a = upstream("a", 200, Duration::ZERO).await;
    let redirect = |name: &str, prefix: &str, x: rt::RedirectAction| {
        let mut r = fixture::prefix_route(name, prefix, "t/a");
        r.action = Some(rt::route::Action::Redirect(x));
        r
    };
    let mut to_https = redirect(
        "t/https",
        "/https",
        rt::RedirectAction {
            scheme_rewrite_specifier: Some(S::HttpsRedirect(true)),
            ..Default::default()
        },
    );
    to_https.response_headers_to_add = vec![
        gw_proto::envoy::pb::envoy::config::core::v3::HeaderValueOption {
            header: Some(gw_proto::envoy::pb::envoy::config::core::v3::HeaderValue {
                key: "x-frame-options".into(),
                value: "DENY".into(),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let routes = vec![
        to_https,
        redirect(
            "t/moved",
            "/moved",
            rt::RedirectAction {
                path_rewrite_specifier: Some(P::PathRedirect("/new?v=2".into())),
                response_code: rt::redirect_action::RedirectResponseCode::Found as i32,
                ..Default::default()
            },
        ),
        redirect(
            "t/prefix",
            "/old/",
            rt::RedirectAction {
                path_rewrite_specifier: Some(P::PrefixRewrite("/next/".into())),
                strip_query: true,
                response_code: rt::redirect_action::RedirectResponseCode::PermanentRedirect as i32,
                ..Default::default()
            },
        ),
        redirect(
            "t/elsewhere",
            "/elsewhere",
            rt::RedirectAction {
                host_redirect: "b.example.com".into(),
                port_redirect: 8443,
                ..Default::default()
            },
        ),
        fixture::prefix_route("t/a", "/", "t/a"),
    ];
    let mut res = fixture::simple(routes.clone(), &[("t/a", "round_robin", vec![(a.addr, 1)])]);
    // A virtual host that requires TLS redirects every plaintext request, before its routes.
    let mut rc = fixture::route_config(
        "ingress",
        vec![
            (
                vec!["secure.test"],
                vec![fixture::prefix_route("t/s", "/", "t/a")],
            ),
            (vec!["*"], routes),
        ],
    );
    rc.virtual_hosts[0].require_tls = rt::virtual_host::TlsRequirementType::All as i32;
    res.insert(gw_proxy::config::type_url::ROUTE, "ingress", "2", &rc);
    let proxy = Proxy::start(ProxyConfig::for_tests(None, "edge-test"))
        .await
        .unwrap();
    proxy.shared().apply(res).unwrap();
    let p = proxy.listen_addr();
    let (h1, h2) = clients();
    // The native path (with and without a body) and hyper's (HTTP/2): answered by the proxy.
    for (client, body) in [(&h1, ""), (&h1, "abc"), (&h2, "")] {
        let method = if body.is_empty() { "GET" } else { "POST" };
        let (status, up, h) = call(client, p, method, "/https/x?q=1", &[], body).await;
        assert_eq!((status, up.as_str()), (301, ""));
        assert_eq!(h["location"], format!("https://{p}/https/x?q=1"));
        // An empty body: `content-length: 0` over HTTP/1.1, none over HTTP/2 (as Envoy's).
        let h1_client = std::ptr::eq(client, &h1);
        assert_eq!(h.get("content-length").is_some_and(|v| v == "0"), h1_client);
        assert!(!h.contains_key("content-type"), "{h:?}");
        assert_eq!(h["x-frame-options"], "DENY", "the route's response headers");
        let (status, _, h) = call(client, p, "GET", "/moved/a?q=1", &[], "").await;
        let to = |h: &hyper::HeaderMap| h["location"].to_str().unwrap().to_owned();
        assert_eq!((status, to(&h)), (302, format!("http://{p}/new?v=2")));
        let (status, _, h) = call(client, p, "GET", "/old/a/b?q=1", &[], "").await;
        assert_eq!((status, to(&h)), (308, format!("http://{p}/next/a/b")));
        let (status, _, h) = call(client, p, "GET", "/elsewhere?q", &[], "").await;
        let want = "http://b.example.com:8443/elsewhere?q";
        assert_eq!((status, to(&h).as_str()), (301, want));
        let (status, up, _) = call(client, p, "GET", "/other", &[], "").await;
        assert_eq!((status, up.as_str()), (200, "a"));
    }
    // The host as the client sent it: http's default port goes with the scheme.
    let (_, _, h) = call(&h1, p, "GET", "/https", &[("host", "a.test:80")], "").await;
    assert_eq!(h["location"], "https://a.test/https");
    let (_, _, h) = call(&h1, p, "GET", "/https", &[("host", "a.test:8080")], "").await;
    assert_eq!(h["location"], "https://a.test:8080/https");
    // `require_tls`: the URL over https, whatever the path, the host kept as it is (port too),
    // however the client claims it came.
    let (status, up, h) = call(
        &h1,
        p,
        "GET",
        "/a?b=1",
        &[("host", "secure.test:80"), ("x-forwarded-proto", "https")],
        "",
    )
    .await;
    assert_eq!((status, up.as_str()), (301, ""));
    assert_eq!(h["location"], "https://secure.test:80/a?b=1");
    // To a gRPC client: 200 and grpc-status UNKNOWN, the location kept (Envoy's).
    let grpc = [("content-type", "application/grpc"), ("te", "trailers")];
    let (status, _, h) = call(&h2, p, "POST", "/https", &grpc, "").await;
    assert_eq!(status, 200);
    assert_eq!(h["grpc-status"], "2");
    assert_eq!(h["location"], format!("https://{p}/https"));
    assert!(!h.contains_key("grpc-message"), "{h:?}");
    // An absolute-form target's host wins over `Host` (Envoy's).
    let got = raw(
        p,
        b"GET http://b.test/https?x HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        got.contains("location: https://b.test/https?x\r\n"),
        "{got}"
    );
    // An upgrade the listener does not allow is refused (Envoy's 403), not redirected: a route
    // the proxy answers has no upgrades of its own.
    let got = raw(
        p,
        b"GET /https HTTP/1.1\r\nHost: a.test\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    // No host at all: refused before routing, as Envoy's codec refuses it (HTTP/1.1: 400;
    // HTTP/1.0: 426).
    let got = raw(p, b"GET /https HTTP/1.0\r\n\r\n").await;
    assert!(got.contains(" 426 "), "{got}");
    let got = raw(p, b"GET /https HTTP/1.1\r\nConnection: close\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    // An absolute-form target: `https` on this plaintext listener is refused (403), a scheme
    // other than http(s) too (400), as by Envoy.
    let got = raw(
        p,
        b"GET https://a.test/other HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    let got = raw(
        p,
        b"GET ftp://a.test/other HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    let hits = a.hits.load(Ordering::SeqCst);
    assert_eq!(hits, 3, "only the three requests to /other went upstream");
    // What cannot become a location is refused by name, and the previous config serves on.
    for (x, err) in [
        (
            rt::RedirectAction {
                scheme_rewrite_specifier: Some(S::SchemeRedirect("ht tp".into())),
                ..Default::default()
            },
            "scheme_redirect \"ht tp\" is not a scheme",
        ),
        (
            rt::RedirectAction {
                host_redirect: "a.test/evil".into(),
                ..Default::default()
            },
            "host_redirect \"a.test/evil\" is not a host",
        ),
        (
            rt::RedirectAction {
                path_rewrite_specifier: Some(P::PathRedirect("/a b".into())),
                ..Default::default()
            },
            "path_redirect \"/a b\"",
        ),
        (
            rt::RedirectAction {
                response_code: 9,
                ..Default::default()
            },
            "response_code 9",
        ),
    ] {
        let e = refused(&proxy, vec![redirect("t/bad", "/bad", x)], a.addr);
        assert!(e.contains(err), "{e}");
    }
    let mut rc = fixture::route_config("ingress", vec![(vec!["*"], Vec::new())]);
    rc.virtual_hosts[0].require_tls = rt::virtual_host::TlsRequirementType::ExternalOnly as i32;
    let mut res = fixture::simple(Vec::new(), &[("t/a", "round_robin", vec![(a.addr, 1)])]);
    res.insert(gw_proxy::config::type_url::ROUTE, "ingress", "3", &rc);
    let e = proxy.shared().apply(res).unwrap_err().to_string();
    assert!(e.contains("require_tls other than NONE and ALL"), "{e}");
    let (status, _, _) = call(&h1, p, "GET", "/https", &[], "").await;
    assert_eq!(status, 301, "the previous config serves");
}

/// The proxy's `/metrics` text.
async fn common_metrics(proxy: &Proxy) -> String {
    let c: Http = Client::builder(TokioExecutor::new()).build_http();
    let resp = c
        .request(
            Request::get(format!("http://{}/metrics", proxy.admin_addr()))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// A header matcher's exact value (Envoy's `string_match`).
fn exactly(v: &str) -> rt::header_matcher::HeaderMatchSpecifier {
    use gw_proto::envoy::pb::envoy::r#type::matcher::v3::{string_matcher, StringMatcher};
    rt::header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
        match_pattern: Some(string_matcher::MatchPattern::Exact(v.into())),
        ..Default::default()
    })
}

/// The host a request is routed by (`Host`, an HTTP/2 `:authority`, an absolute-form target's)
/// is the one header matchers see, under `:authority` (Envoy's name) as under `host`.
#[tokio::test(flavor = "multi_thread")]
async fn header_matchers_see_the_host_routing_saw() {
    let a = upstream("a", 200, Duration::ZERO).await;
    let b = upstream("b", 200, Duration::ZERO).await;
    let mut by_authority = fixture::prefix_route("t/auth", "/x", "t/b");
    by_authority.r#match.as_mut().unwrap().headers = vec![rt::HeaderMatcher {
        name: ":authority".into(),
        header_match_specifier: Some(exactly("matched.test")),
        ..Default::default()
    }];
    // The same on `host`, under a path of its own.
    let mut by_host = fixture::prefix_route("t/host", "/h", "t/b");
    by_host.r#match.as_mut().unwrap().headers = vec![rt::HeaderMatcher {
        name: "host".into(),
        header_match_specifier: Some(exactly("matched.test")),
        ..Default::default()
    }];
    let proxy = proxy_with(
        vec![
            by_host,
            by_authority,
            fixture::prefix_route("t/a", "/", "t/a"),
        ],
        &[
            ("t/a", "round_robin", vec![(a.addr, 1)]),
            ("t/b", "round_robin", vec![(b.addr, 1)]),
        ],
    )
    .await;
    let p = proxy.listen_addr();
    let (h1, _) = clients();
    // HTTP/1.1 (the native path): the Host.
    let (_, up, _) = call(&h1, p, "GET", "/x", &[("host", "matched.test")], "").await;
    assert_eq!(up, "b");
    let (_, up, _) = call(&h1, p, "GET", "/x", &[("host", "other.test")], "").await;
    assert_eq!(up, "a");
    // An absolute-form target's host, not the Host the client sent with it.
    let got = raw(
        p,
        b"GET http://matched.test/x HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(got.contains("x-upstream: b\r\n"), "{got}");
    let got = raw(
        p,
        b"GET http://matched.test/h HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await
    .to_ascii_lowercase();
    assert!(got.contains("x-upstream: b\r\n"), "a host matcher: {got}");
    // HTTP/2: the :authority.
    for (authority, want) in [("matched.test", "b"), ("other.test", "a")] {
        let tcp = tokio::net::TcpStream::connect(p).await.unwrap();
        let (mut s, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::get(format!("http://{authority}/x"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = s.send_request(req).await.unwrap();
        assert_eq!(resp.headers()["x-upstream"], want, "{authority}");
    }
}
