//! Retries of requests with bodies, and on gRPC statuses, through a stock Envoy 1.40 and through
//! gw-proxy fed the same manifest: a route's `retry.on: [5xx]` sends a POST again with its body
//! (Envoy buffers the body for that, up to its 1 MiB buffer limit; past it the request is sent
//! once and the answer stands), and `retry.on: [unavailable]` retries a gRPC call whose
//! trailers-only answer says UNAVAILABLE, but not one that says INTERNAL.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use gw_e2e::serving::on_both_with;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Tries = Arc<Mutex<HashMap<String, (u32, usize)>>>;

/// An upstream (HTTP/1.1 and HTTP/2 prior knowledge) that fails the first try of each request
/// key (`x-key`) and answers the next with the body it got: `/post/…` with `503` then `200`;
/// `/flaky.Svc/Unavailable` and `/flaky.Svc/Internal` with a trailers-only gRPC status (14, 13)
/// then `grpc-status: 0` in the trailers. Counts each key's tries and the body bytes they carried.
async fn flaky() -> (SocketAddr, Tries) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let tries: Tries = Arc::default();
    let t = tries.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let t = t.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let t = t.clone();
                    async move {
                        let (head, body) = req.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let key = head.headers["x-key"].to_str().unwrap().to_owned();
                        let n = {
                            let mut t = t.lock().unwrap();
                            let e = t.entry(key).or_default();
                            *e = (e.0 + 1, e.1 + body.len());
                            e.0
                        };
                        let path = head.uri.path();
                        let resp = match path.strip_prefix("/flaky.Svc/") {
                            None if n == 1 => Response::builder()
                                .status(503)
                                .body(Full::new(Bytes::from_static(b"busy")).boxed()),
                            None => Response::builder().body(Full::new(body).boxed()),
                            Some(method) if n == 1 => {
                                let code = if method == "Internal" { "13" } else { "14" };
                                Response::builder()
                                    .header("content-type", "application/grpc")
                                    .header("grpc-status", code)
                                    .body(Full::new(Bytes::new()).boxed())
                            }
                            Some(_) => {
                                let mut trailers = hyper::HeaderMap::new();
                                trailers.insert("grpc-status", "0".parse().unwrap());
                                let frames = futures::stream::iter([
                                    Ok::<_, std::convert::Infallible>(Frame::data(body)),
                                    Ok(Frame::trailers(trailers)),
                                ]);
                                Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(http_body_util::StreamBody::new(frames).boxed())
                            }
                        };
                        Ok::<_, std::convert::Infallible>(resp.unwrap())
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    (addr, tries)
}

/// `request` over a connection of its own (it says `Connection: close`): status and body.
async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    let got = String::from_utf8_lossy(&got).into_owned();
    let status = got.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = got.split_once("\r\n\r\n").map_or("", |b| b.1).to_owned();
    (status, body)
}

/// A POST to `/post/` with `x-key: key` and `body`, of declared length or chunked.
fn post(key: &str, body: &[u8], chunked: bool) -> Vec<u8> {
    let mut r = format!("POST /post/ HTTP/1.1\r\nHost: x\r\nx-key: {key}\r\nConnection: close\r\n")
        .into_bytes();
    if chunked {
        r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        for piece in body.chunks(16 * 1024) {
            r.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            r.extend_from_slice(piece);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"0\r\n\r\n");
    } else {
        r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        r.extend_from_slice(body);
    }
    r
}

async fn check(who: &'static str, addr: SocketAddr, tries: Tries) {
    let seen = |key: &str| tries.lock().unwrap().get(&format!("{who}-{key}")).copied();
    // Retried with its body, of declared length and chunked: the second try's 200 echoes it.
    let (status, body) = raw(addr, &post(&format!("{who}-small"), b"hello", false)).await;
    assert_eq!((status, body.as_str()), (200, "hello"), "{who}");
    assert_eq!(seen("small"), Some((2, 10)), "{who}");
    let (status, body) = raw(addr, &post(&format!("{who}-chunked"), b"chunks", true)).await;
    assert_eq!(status, 200, "{who}: {body}");
    assert!(body.contains("chunks"), "{who}: {body}");
    assert_eq!(seen("chunked"), Some((2, 12)), "{who}");
    // Longer than the retry buffer: sent once, its 503 stands.
    let big = vec![b'x'; 2 * 1024 * 1024];
    for (key, chunked) in [("big", false), ("big-chunked", true)] {
        let (status, _) = raw(addr, &post(&format!("{who}-{key}"), &big, chunked)).await;
        assert_eq!(status, 503, "{who}: {key}");
        assert_eq!(seen(key), Some((1, big.len())), "{who}: {key}");
    }

    // gRPC over HTTP/2 to an HTTP/2 cluster: UNAVAILABLE is retried (the route names it), and
    // the second try's answer comes back whole; INTERNAL is not.
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (mut c, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let message = Bytes::from_static(b"\0\0\0\0\x03abc");
    for (method, status, tried) in [("Unavailable", "0", 2), ("Internal", "13", 1)] {
        let req = Request::post(format!("http://x/flaky.Svc/{method}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("x-key", format!("{who}-{method}"))
            .body(Full::new(message.clone()))
            .unwrap();
        let resp = c.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200, "{who}: {method}");
        let in_headers = resp.headers().get("grpc-status").cloned();
        let body = resp.into_body().collect().await.unwrap();
        let got = in_headers.or_else(|| body.trailers()?.get("grpc-status").cloned());
        assert_eq!(
            got.as_ref().map(|v| v.to_str().unwrap()),
            Some(status),
            "{who}: {method}"
        );
        if status == "0" {
            assert_eq!(body.to_bytes(), message, "{who}: {method}");
        }
        assert_eq!(
            seen(method),
            Some((tried, tried as usize * message.len())),
            "{who}: {method}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_and_gw_proxy_retry_bodies_and_grpc_statuses_alike() {
    let (up, tries) = flaky().await;
    on_both_with(
        "retries",
        "idleTimeout: 60s",
        &[("/svc", "")],
        |_| {
            let port = up.port();
            format!(
                "---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: flaky, tenant: acme}}\n\
                 spec: {{endpoints: [{{address: 127.0.0.1, port: {port}}}]}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: post, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /post/}}, cluster: flaky, \
                 retry: {{attempts: 2, on: [5xx]}}}}\n\
                 ---\napiVersion: gw/v1\nkind: Cluster\nmetadata: {{name: flaky-h2, tenant: acme}}\n\
                 spec: {{protocol: http2, endpoints: [{{address: 127.0.0.1, port: {port}}}]}}\n\
                 ---\napiVersion: gw/v1\nkind: Route\nmetadata: {{name: grpc, tenant: acme}}\n\
                 spec: {{match: {{pathPrefix: /flaky.Svc/}}, cluster: flaky-h2, \
                 retry: {{attempts: 2, on: [unavailable]}}}}\n"
            )
        },
        |who, addr| check(who, addr, tries.clone()),
    )
    .await;
}
