//! Upstream HTTP servers that answer every request with `200` and their own name in the body
//! and in `x-upstream`, so tests can see which one Envoy picked.

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    /// Its name (the response body).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    /// Starts an upstream called `name` on `127.0.0.1:0`.
    pub async fn start(name: &str) -> anyhow::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let label = name.to_owned();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let label = label.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let label = label.clone();
                        async move {
                            let resp = Response::builder()
                                .header("x-upstream", label.as_str())
                                .header("x-seen-path", req.uri().path())
                                .body(Full::new(Bytes::from(label)))
                                .unwrap_or_default();
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .await;
                });
            }
        });
        Ok(Upstream {
            name: name.to_owned(),
            addr,
            task,
        })
    }

    /// The port as a manifest wants it.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}
