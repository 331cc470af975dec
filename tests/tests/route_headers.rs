//! A route's `requestHeaders` / `responseHeaders` (Envoy's `request_headers_to_add` /
//! `_remove` and `response_headers_to_add` / `_remove`) through a stock Envoy 1.40 and through
//! gw-proxy fed the same manifest: the upstream sees the same request headers (set replaces,
//! add appends a line, remove removes) and the client the same response headers, over HTTP/1.1
//! and HTTP/2.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use gw_e2e::serving::on_both_with;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

/// An upstream answering `200`: each request header it got as `x-seen-<name>` (a name's lines
/// joined by ` | `), and `x-from-upstream: u`, `x-upstream-only: o` and
/// `x-frame-options: SAMEORIGIN` of its own.
async fn upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| {
                    let mut resp = Response::builder()
                        .header("x-from-upstream", "u")
                        .header("x-upstream-only", "o")
                        .header("x-frame-options", "SAMEORIGIN");
                    for k in req.headers().keys() {
                        let all: Vec<&str> = req
                            .headers()
                            .get_all(k)
                            .iter()
                            .map(|v| v.to_str().unwrap())
                            .collect();
                        resp = resp.header(format!("x-seen-{k}"), all.join(" | "));
                    }
                    let resp = resp
                        .body(http_body_util::Full::new(Bytes::from_static(b"up")))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

/// `GET path` to `addr` with the test's request headers, over HTTP/1.1 or HTTP/2 (prior
/// knowledge): the response's headers, each name's values joined by ` | `.
async fn get(addr: SocketAddr, path: &str, h2: bool) -> (u16, Vec<(String, String)>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(tcp);
    let mut req = Request::builder()
        .uri(format!("http://headers.test{path}"))
        .header("host", "headers.test");
    for (k, v) in [
        ("x-set", "0"),
        ("x-add", "0"),
        ("x-gone", "0"),
        ("x-kept", "k"),
    ] {
        req = req.header(k, v);
    }
    let req = req.body(Empty::<Bytes>::new()).unwrap();
    let resp = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await.unwrap()
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let (mut parts, body) = req.into_parts();
        parts.uri = path.parse().unwrap();
        s.send_request(Request::from_parts(parts, body))
            .await
            .unwrap()
    };
    let status = resp.status().as_u16();
    let mut got: Vec<(String, String)> = resp
        .headers()
        .keys()
        .filter(|k| k.as_str().starts_with("x-"))
        .map(|k| {
            let all: Vec<&str> = resp
                .headers()
                .get_all(k)
                .iter()
                .map(|v| v.to_str().unwrap())
                .collect();
            (k.as_str().to_owned(), all.join(" | "))
        })
        .collect();
    got.sort();
    resp.into_body().collect().await.unwrap();
    (status, got)
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_change_route_headers_alike() {
    let up = upstream().await.port();
    let dead = gw_e2e::dead_port();
    let dead_port = dead.port();
    on_both_with(
        "route-headers",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |_| {
            format!(
                "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: echo, tenant: acme}}\n\
                 spec: {{endpoints: [{{address: 127.0.0.1, port: {up}}}]}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: h, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /h}}, cluster: echo,\n  \
                 requestHeaders: {{set: {{x-set: '1', x-new: n}}, add: {{x-add: '2'}}, remove: [x-gone]}},\n  \
                 responseHeaders: {{set: {{x-frame-options: DENY}}, add: {{x-from-upstream: p}}, remove: [x-upstream-only]}}}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: plain, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /plain}}, cluster: echo}}\n\
                 ---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: gone, tenant: acme}}\n\
                 spec: {{endpoints: [{{address: 127.0.0.1, port: {dead_port}}}]}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: dead, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /dead}}, cluster: gone,\n  \
                 responseHeaders: {{set: {{x-frame-options: DENY}}}}}}\n"
            )
        },
        |who, addr| async move {
            for h2 in [false, true] {
                let (status, got) = get(addr, "/h/x", h2).await;
                assert_eq!(status, 200, "{who}");
                let find = |n: &str| {
                    got.iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.as_str())
                };
                let what = format!("{who} (HTTP/2: {h2}): {got:?}");
                assert_eq!(find("x-seen-x-set"), Some("1"), "set: {what}");
                assert_eq!(find("x-seen-x-new"), Some("n"), "set, new: {what}");
                assert_eq!(find("x-seen-x-add"), Some("0 | 2"), "add: {what}");
                assert_eq!(find("x-seen-x-gone"), None, "remove: {what}");
                assert_eq!(find("x-seen-x-kept"), Some("k"), "{what}");
                assert_eq!(find("x-frame-options"), Some("DENY"), "{what}");
                assert_eq!(find("x-from-upstream"), Some("u | p"), "{what}");
                assert_eq!(find("x-upstream-only"), None, "{what}");
                // A route without changes passes both ways as they are.
                let (_, got) = get(addr, "/plain/x", h2).await;
                let find = |n: &str| {
                    got.iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.as_str())
                };
                assert_eq!(find("x-seen-x-set"), Some("0"), "{who}");
                assert_eq!(find("x-seen-x-gone"), Some("0"), "{who}");
                assert_eq!(find("x-upstream-only"), Some("o"), "{who}");
                assert_eq!(find("x-frame-options"), Some("SAMEORIGIN"), "{who}");
                // The proxy's own answer (no upstream to be had) gets the route's changes too.
                let (status, got) = get(addr, "/dead/x", h2).await;
                let find = |n: &str| {
                    got.iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.as_str())
                };
                assert_eq!(status, 503, "{who}: {got:?}");
                assert_eq!(find("x-frame-options"), Some("DENY"), "{who}: {got:?}");
            }
        },
    )
    .await;
}
