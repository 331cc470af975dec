//! An upstream that tells what reached it, and a client that reads it back: for tests that
//! compare what Envoy and gw-proxy send upstream (paths, headers) and answer (headers).
//!
//! The upstream answers every request `200` with the body `up` and:
//! - `x-seen-path`: the path and query it got;
//! - `x-seen-<name>` for each request header, a name's lines joined by ` | `;
//! - `x-from-upstream: u`, `x-upstream-only: o`, `x-frame-options: SAMEORIGIN`, of its own.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;

/// Starts the upstream on `127.0.0.1:0` (HTTP/1.1 and HTTP/2, prior knowledge); it runs until
/// the test's runtime ends.
pub async fn upstream() -> anyhow::Result<SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| {
                    let mut resp = Response::builder()
                        .header("x-from-upstream", "u")
                        .header("x-upstream-only", "o")
                        .header("x-frame-options", "SAMEORIGIN")
                        .header(
                            "x-seen-path",
                            req.uri().path_and_query().map_or("", |p| p.as_str()),
                        );
                    for k in req.headers().keys() {
                        let all: Vec<&str> = req
                            .headers()
                            .get_all(k)
                            .iter()
                            .map(|v| v.to_str().unwrap_or("?"))
                            .collect();
                        resp = resp.header(format!("x-seen-{k}"), all.join(" | "));
                    }
                    let resp = resp.body(Full::new(Bytes::from_static(b"up")));
                    async move { resp }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// A response: its status and its headers, each name's values joined by ` | `, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Status code.
    pub status: u16,
    /// `(name, values)`.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// The values of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` to `addr` with `Host: host` and `headers`, over HTTP/1.1 or HTTP/2 (prior
/// knowledge), one connection per request.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    h2: bool,
) -> anyhow::Result<Seen> {
    request(addr, host, ("GET", path), headers, "", h2).await
}

/// [`get`] with another method and a body (sent with its length).
pub async fn request(
    addr: SocketAddr,
    host: &str,
    (method, path): (&str, &str),
    headers: &[(&str, &str)],
    body: &str,
    h2: bool,
) -> anyhow::Result<Seen> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let io = TokioIo::new(tcp);
    let mut req = Request::builder().method(method).header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let body = Full::new(Bytes::from(body.to_owned()));
    let resp = if h2 {
        let req = req.uri(format!("http://{host}{path}")).body(body)?;
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        s.send_request(req).await?
    } else {
        let req = req.uri(path).body(body)?;
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        s.send_request(req).await?
    };
    let status = resp.status().as_u16();
    let mut seen: Vec<(String, String)> = resp
        .headers()
        .keys()
        .map(|k| {
            let all: Vec<&str> = resp
                .headers()
                .get_all(k)
                .iter()
                .map(|v| v.to_str().unwrap_or("?"))
                .collect();
            (k.as_str().to_owned(), all.join(" | "))
        })
        .collect();
    seen.sort();
    resp.into_body().collect().await?;
    Ok(Seen {
        status,
        headers: seen,
    })
}
