//! HTTP/2 clusters (Envoy's upstream `http2_protocol_options`) against a real HTTP/2-only
//! upstream (cleartext, prior knowledge): requests from HTTP/2 and HTTP/1.1 clients reach it as
//! HTTP/2 streams sharing one connection, with `te: trailers` kept and the host as the
//! `:authority`; bodies and trailers come back whole (what gRPC needs); a request without a body
//! is retried per the route; what gw-proxy cannot follow is refused and the previous config
//! serves.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use gw_proto::envoy::pb::envoy::config::route::v3 as rt;
use gw_proxy::config::{fixture, type_url, Resources};
use gw_proxy::server::{Proxy, ProxyConfig};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Frames = StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, String>>>>;

/// An HTTP/2-only upstream: answers with the request's body, the version, `te` and authority it
/// saw in headers, and a `grpc-status: 0` trailer; `/unavailable…` answers 503; `/grpc-N/…`
/// answers gRPC status N trailers-only (`200`, headers only); `/gather/N` answers once N such
/// requests are open at once. Counts its connections, requests and the body bytes it read. With
/// `goaway`, each connection says GOAWAY as its first request comes (and serves that one).
struct Up {
    addr: SocketAddr,
    conns: Arc<AtomicU32>,
    requests: Arc<AtomicU32>,
    bytes: Arc<AtomicU32>,
}

async fn upstream() -> Up {
    upstream_with(false).await
}

async fn upstream_with(goaway: bool) -> Up {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (conns, requests) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let bytes = Arc::new(AtomicU32::new(0));
    let (c, r, b) = (conns.clone(), requests.clone(), bytes.clone());
    let gathered = Arc::new((AtomicU32::new(0), tokio::sync::Notify::new()));
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let (r, b) = (r.clone(), b.clone());
            let gathered = gathered.clone();
            let first = Arc::new(tokio::sync::Notify::new());
            let came = first.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    r.fetch_add(1, Ordering::SeqCst);
                    came.notify_one();
                    let gathered = gathered.clone();
                    let b = b.clone();
                    async move {
                        if req.uri().path().starts_with("/slow") {
                            // Service time, so the connection stays open meanwhile.
                            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                        }
                        if let Some((_, n)) = req.uri().path().split_once("/gather/") {
                            let n: u32 = n.parse().unwrap();
                            let (open, all) = &*gathered;
                            let here = all.notified();
                            if open.fetch_add(1, Ordering::SeqCst) + 1 >= n {
                                all.notify_waiters();
                            } else {
                                here.await;
                            }
                        }
                        let seen = |name: &str| {
                            req.headers()
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned()
                        };
                        let te = seen("te");
                        let host = seen("host");
                        let authority = req.uri().authority().map(|a| a.to_string());
                        let version = format!("{:?}", req.version());
                        let unavailable = req.uri().path().starts_with("/unavailable");
                        let grpc = req
                            .uri()
                            .path()
                            .strip_prefix("/grpc-")
                            .and_then(|p| p.split('/').next())
                            .map(str::to_owned);
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        b.fetch_add(body.len() as u32, Ordering::SeqCst);
                        let mut trailers = hyper::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames: Vec<Result<Frame<Bytes>, String>> = match &grpc {
                            Some(_) => Vec::new(),
                            None => vec![Ok(Frame::data(body)), Ok(Frame::trailers(trailers))],
                        };
                        let mut resp: Response<Frames> =
                            Response::new(StreamBody::new(futures::stream::iter(frames)));
                        if unavailable {
                            *resp.status_mut() = hyper::StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let h = resp.headers_mut();
                        if let Some(code) = grpc {
                            h.insert("content-type", "application/grpc".parse().unwrap());
                            h.insert("grpc-status", code.parse().unwrap());
                        }
                        h.insert("x-seen-version", version.parse().unwrap());
                        h.insert("x-seen-te", te.parse().unwrap());
                        h.insert("x-seen-host", host.parse().unwrap());
                        let authority = authority.unwrap_or_default();
                        h.insert("x-seen-authority", authority.parse().unwrap());
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .max_concurrent_streams(gw_proxy::proxy::upstream::H2_STREAMS as u32)
                    .serve_connection(TokioIo::new(s), svc);
                tokio::pin!(conn);
                if goaway {
                    tokio::select! {
                        _ = conn.as_mut() => return,
                        _ = first.notified() => conn.as_mut().graceful_shutdown(),
                    }
                }
                let _ = conn.await;
            });
        }
    });
    Up {
        addr,
        conns,
        requests,
        bytes,
    }
}

/// Route `/` to cluster `t/h2`, an HTTP/2 cluster of `up` (retrying 5xx and gRPC's UNAVAILABLE
/// twice when `retry`).
fn config(up: &Up, retry: bool) -> Resources {
    let mut route = fixture::prefix_route("t/all", "/", "t/h2");
    if let (true, Some(a)) = (retry, fixture::action(&mut route)) {
        a.retry_policy = Some(rt::RetryPolicy {
            retry_on: "5xx,unavailable".into(),
            num_retries: Some(gw_proto::envoy::pb::google::protobuf::UInt32Value { value: 2 }),
            ..Default::default()
        });
    }
    let mut res = fixture::simple(vec![route], &[("t/h2", "round_robin", vec![(up.addr, 1)])]);
    let mut c = fixture::cluster("t/h2", "round_robin");
    fixture::http2(&mut c);
    res.insert(type_url::CLUSTER, "t/h2", "2", &c);
    res
}

async fn proxy(res: Resources) -> Proxy {
    let p = Proxy::start(ProxyConfig::for_tests(None, "h2-up"))
        .await
        .unwrap();
    p.shared().apply(res).unwrap();
    p
}

/// An HTTP/2 (prior knowledge) client of the proxy, sending bodies of type `B`.
async fn h2_client<B>(p: &Proxy) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = TokioIo::new(
        tokio::net::TcpStream::connect(p.listen_addr())
            .await
            .unwrap(),
    );
    let (c, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    c
}

#[tokio::test]
async fn http2_clusters_get_streams_on_one_connection_with_their_trailers() {
    let up = upstream().await;
    let p = proxy(config(&up, false)).await;
    let mut c = h2_client(&p).await;
    // gRPC's shape: POST, `te: trailers`, a body; the answer's body and trailers come back.
    let mut calls = Vec::new();
    for i in 0..20 {
        let req = Request::builder()
            .method("POST")
            .uri(format!("http://svc.test/echo.Echo/Say{i}"))
            .header("te", "trailers")
            .header("content-type", "application/grpc")
            .body(Full::new(Bytes::from(format!("hello {i}"))))
            .unwrap();
        calls.push(c.send_request(req));
    }
    for (i, call) in calls.into_iter().enumerate() {
        let resp = call.await.unwrap();
        assert_eq!(resp.status(), 200);
        let h = resp.headers().clone();
        assert_eq!(h["x-seen-version"], "HTTP/2.0");
        assert_eq!(h["x-seen-te"], "trailers");
        assert_eq!(h["x-seen-authority"], "svc.test");
        assert_eq!(h["x-seen-host"], "", "the host goes as the :authority");
        let body = resp.into_body().collect().await.unwrap();
        let trailers = body.trailers().cloned().expect("no trailers came back");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(body.to_bytes(), format!("hello {i}").as_bytes());
    }
    // An HTTP/1.1 client (the native path hands such a request to hyper's client): the same
    // upstream connection carries it.
    let mut s = tokio::net::TcpStream::connect(p.listen_addr())
        .await
        .unwrap();
    s.write_all(b"GET /plain HTTP/1.1\r\nHost: h1.test\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("x-seen-version: HTTP/2.0\r\n"), "{got}");
    assert!(got.contains("x-seen-authority: h1.test\r\n"), "{got}");
    assert_eq!(up.requests.load(Ordering::SeqCst), 21);
    assert_eq!(up.conns.load(Ordering::SeqCst), 1, "one shared connection");
}

#[tokio::test]
async fn requests_are_retried_on_an_http2_cluster_with_their_bodies() {
    let up = upstream().await;
    let p = proxy(config(&up, true)).await;
    let mut c = h2_client(&p).await;
    let tries = || up.requests.load(Ordering::SeqCst);
    let read = || up.bytes.load(Ordering::SeqCst);
    let req = Request::get("http://svc.test/unavailable")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!(tries(), 3, "the first try and two retries");
    // A body is sent again whole on each retry (Envoy buffers it for retries, as gw-proxy copies
    // it going up).
    // (Another proxy: five failures in a row would open the endpoint's breaker.)
    let p = proxy(config(&up, true)).await;
    let mut c = h2_client(&p).await;
    let req = Request::post("http://svc.test/unavailable")
        .body(Full::new(Bytes::from_static(b"again")))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!((tries(), read()), (6, 15), "three tries of five bytes");

    // A gRPC status in a trailers-only answer: retried when the route names it (`unavailable`),
    // not otherwise (INTERNAL); the last answer reaches the client as it came.
    let grpc = |code: u32| {
        Request::post(format!("http://svc.test/grpc-{code}/echo.Echo/Say"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(Full::new(Bytes::from_static(b"\0\0\0\0\x01x")))
            .unwrap()
    };
    let resp = c.send_request(grpc(14)).await.unwrap();
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["grpc-status"].to_str().unwrap()
        ),
        (200, "14")
    );
    assert_eq!(
        (tries(), read()),
        (9, 33),
        "UNAVAILABLE: three tries with the message"
    );
    let resp = c.send_request(grpc(13)).await.unwrap();
    assert_eq!(
        (
            resp.status().as_u16(),
            resp.headers()["grpc-status"].to_str().unwrap()
        ),
        (200, "13")
    );
    assert_eq!(tries(), 10, "INTERNAL is not retried");

    // A body longer than the retry buffer (Envoy's 1 MiB) is sent once: no copy of it is kept.
    let chunks: Vec<Result<Frame<Bytes>, String>> = (0..17)
        .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; 64 * 1024]))))
        .collect();
    let mut c = h2_client::<Frames>(&p).await;
    let resp = c
        .send_request(
            Request::post("http://svc.test/unavailable")
                .body(StreamBody::new(futures::stream::iter(chunks)))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    assert_eq!((tries(), read()), (11, 39 + 17 * 64 * 1024), "sent once");
}

#[tokio::test]
async fn upstream_protocol_options_gw_proxy_cannot_follow_are_refused() {
    use gw_proto::envoy::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        UpstreamProtocolOptions, UseDownstreamHttpConfig,
    };
    let up = upstream().await;
    let p = proxy(config(&up, false)).await;
    let mut bad = config(&up, false);
    let mut c = fixture::cluster("t/h2", "round_robin");
    c.typed_extension_protocol_options.insert(
        gw_proto::http_protocol::KEY.into(),
        gw_proto::http_protocol::with(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
            UseDownstreamHttpConfig::default(),
        )),
    );
    bad.insert(type_url::CLUSTER, "t/h2", "3", &c);
    let err = p.shared().apply(bad).unwrap_err().to_string();
    assert!(
        err.contains("t/h2") && err.contains("explicit_http_config"),
        "{err}"
    );
    // The previous config (HTTP/2) still serves.
    let mut c = h2_client(&p).await;
    let resp = c
        .send_request(
            Request::get("http://svc.test/x")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-seen-version"], "HTTP/2.0");
}

#[tokio::test]
async fn past_the_stream_limit_another_connection_is_opened() {
    // More streams open at once than one connection takes: the upstream answers none until all
    // have come, which they can only on a second connection.
    let up = upstream().await;
    let p = proxy(config(&up, false)).await;
    let mut c = h2_client(&p).await;
    let n = gw_proxy::proxy::upstream::H2_STREAMS + 20;
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let req = Request::get(format!("http://svc.test/gather/{n}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            c.send_request(req)
        })
        .collect();
    let all = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        futures::future::join_all(calls),
    )
    .await
    .expect("streams past the limit were held back on the full connection");
    assert!(all.into_iter().all(|r| r.unwrap().status() == 200));
    assert_eq!(up.conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_connection_that_said_goaway_is_replaced_without_a_failed_request() {
    // The upstream says GOAWAY as the first request comes and serves it for 500 ms, its
    // connection open meanwhile: a request sent then goes on a new connection.
    let up = upstream_with(true).await;
    let p = proxy(config(&up, false)).await;
    let mut c = h2_client(&p).await;
    let post = |path: &str, body: &'static str| {
        Request::post(format!("http://svc.test{path}"))
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap()
    };
    let first = tokio::spawn(c.send_request(post("/slow", "first")));
    let t0 = std::time::Instant::now();
    while up.requests.load(Ordering::SeqCst) == 0 {
        assert!(t0.elapsed().as_secs() < 10, "the first request never came");
        tokio::task::yield_now().await;
    }
    let resp = c.send_request(post("/then", "second")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "second".as_bytes());
    let resp = first.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests.load(Ordering::SeqCst), 2);
    assert_eq!(up.conns.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_host_that_cannot_be_an_authority_is_the_clients_error() {
    let up = upstream().await;
    let p = proxy(config(&up, true)).await;
    let mut s = tokio::net::TcpStream::connect(p.listen_addr())
        .await
        .unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\nHost: a{b\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert!(got.starts_with("HTTP/1.1 400 "), "{got}");
    assert_eq!(up.requests.load(Ordering::SeqCst), 0);
    assert_eq!(up.conns.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn an_http2_clusters_endpoints_are_probed_over_http2() {
    let up = upstream().await;
    let mut res = config(&up, false);
    // gw's spec for the cluster, as the control plane sends it: an HTTP health check.
    let mut c = fixture::cluster("t/h2", "round_robin");
    fixture::http2(&mut c);
    fixture::health_check(&mut c, Some("/health"));
    res.insert(type_url::CLUSTER, "t/h2", "2", &c);
    let p = proxy(res).await;
    // Probes reach the HTTP/2-only upstream (an HTTP/1.1 one would never get a request in), and
    // the endpoint stays healthy.
    let t0 = std::time::Instant::now();
    while up.requests.load(Ordering::SeqCst) < 3 {
        assert!(
            t0.elapsed().as_secs() < 10,
            "no health probe reached the upstream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let cfg = p.shared().config.load_full();
    let cluster = cfg.clusters.get("t/h2").unwrap();
    assert!(cluster.endpoints.iter().all(|e| e.is_healthy()));
}

#[tokio::test]
async fn a_grpc_request_gets_the_proxys_own_replies_as_grpc_statuses() {
    // `/svc` goes to a cluster without endpoints (503); nothing else is routed (404).
    let route = fixture::prefix_route("t/svc", "/svc", "t/none");
    let res = fixture::simple(vec![route], &[("t/none", "round_robin", vec![])]);
    let p = proxy(res).await;
    let mut c = h2_client(&p).await;
    let call = |path: &str, grpc: bool| {
        let mut r = Request::post(format!("http://svc.test{path}"));
        if grpc {
            r = r.header("content-type", "application/grpc+proto");
        }
        r.body(Full::new(Bytes::new())).unwrap()
    };
    for (path, code, msg) in [
        ("/svc/Echo", "14", "no healthy upstream"),
        ("/other/Echo", "12", "no route matched"),
    ] {
        let resp = c.send_request(call(path, true)).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        assert_eq!(h["content-type"], "application/grpc", "{path}");
        assert_eq!(h["grpc-status"], code, "{path}");
        assert_eq!(h["grpc-message"], msg, "{path}");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body.is_empty(), "{path}: {body:?}");
        // Not gRPC: the plain reply.
        let resp = c.send_request(call(path, false)).await.unwrap();
        assert_ne!(resp.status(), 200, "{path}");
    }
    // Stats keep what happened, not the 200 the gRPC client got: both are upstream errors
    // (no healthy upstream), no 2xx.
    let route = p
        .shared()
        .registries
        .stats
        .get("route", "t", "svc")
        .snapshot();
    assert_eq!((route.classes[1], route.classes[5]), (0, 2));
}
