//! A route's `rewrite: {prefix}` (Envoy's RouteAction `prefix_rewrite`) through a stock Envoy
//! 1.40 and through gw-proxy fed the same manifest: the same path reaches the upstream (the
//! matched prefix replaced literally, the rest and the query kept; an exact path replaced whole),
//! with the original in `x-envoy-original-path`, over HTTP/1.1 and HTTP/2.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use gw_e2e::serving::on_both_with;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

/// An upstream answering `200` with the path and query it got (`x-seen-path`) and the
/// `x-envoy-original-path` values, joined (`x-seen-original`, `-` for none).
async fn upstream() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| {
                    let path = req.uri().path_and_query().map_or("", |p| p.as_str());
                    let all: Vec<&str> = req
                        .headers()
                        .get_all("x-envoy-original-path")
                        .iter()
                        .map(|v| v.to_str().unwrap())
                        .collect();
                    let original = if all.is_empty() {
                        "-".to_owned()
                    } else {
                        all.join(",")
                    };
                    let resp = Response::builder()
                        .header("x-seen-path", path)
                        .header("x-seen-original", original)
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

/// `GET path` to `addr` over HTTP/1.1, or HTTP/2 with prior knowledge: the path and the
/// original path the upstream saw.
async fn get(addr: SocketAddr, path: &str, h2: bool) -> (u16, String, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let io = TokioIo::new(tcp);
    let req = Request::builder()
        .uri(format!("http://rewrite.test{path}"))
        .header("host", "rewrite.test")
        // A client's own: dropped by both, rewritten or not.
        .header("x-envoy-original-path", "/spoofed")
        .body(Empty::<Bytes>::new())
        .unwrap();
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
    let seen = |h: &str| {
        resp.headers()
            .get(h)
            .map_or(String::new(), |v| v.to_str().unwrap().to_owned())
    };
    let got = (
        resp.status().as_u16(),
        seen("x-seen-path"),
        seen("x-seen-original"),
    );
    resp.into_body().collect().await.unwrap();
    got
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_rewrite_prefixes_alike() {
    let up = upstream().await.port();
    let route = |name: &str, path: &str, rest: &str| {
        format!(
            "---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: {name}, tenant: acme}}\n\
             spec: {{match: {{{path}}}, cluster: echo{rest}}}\n"
        )
    };
    on_both_with(
        "rewrite",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |_| {
            [
                format!(
                    "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: echo, tenant: acme}}\n\
                     spec: {{endpoints: [{{address: 127.0.0.1, port: {up}}}]}}\n"
                ),
                route("api", "pathPrefix: /api/", ", rewrite: {prefix: /}"),
                route("v1", "pathPrefix: /v1", ", rewrite: {prefix: /v2}"),
                route("old", "path: /old", ", rewrite: {prefix: /new/place}"),
                route("plain", "pathPrefix: /plain", ""),
            ]
            .concat()
        },
        |who, addr| async move {
            // (asked, sent upstream, x-envoy-original-path)
            let cases = [
                ("/api/users?page=2", "/users?page=2", "/api/users?page=2"),
                ("/api/", "/", "/api/"),
                ("/v1/items", "/v2/items", "/v1/items"),
                ("/v1", "/v2", "/v1"),
                ("/v1x", "/v2x", "/v1x"),
                ("/old?q=a%20b", "/new/place?q=a%20b", "/old?q=a%20b"),
                ("/plain/x", "/plain/x", "-"),
            ];
            for h2 in [false, true] {
                for (asked, sent, original) in cases {
                    let got = get(addr, asked, h2).await;
                    assert_eq!(
                        got,
                        (200, sent.to_owned(), original.to_owned()),
                        "{who}: {asked} (HTTP/2: {h2})"
                    );
                }
            }
        },
    )
    .await;
}
