//! Upstream HTTP servers that answer every request with `200` and their own name in the body
//! and in `x-upstream`, so tests can see which one Envoy picked. A path `…/slow/MS…` answers after
//! MS milliseconds (simulated upstream latency); a path `/…/stall` sends the head and half the
//! body it promises, then nothing more. A request with `Upgrade` is answered `101` (unless its
//! path has `/plain`), with the `Upgrade` and `Connection` it got in `x-seen-upgrade` and
//! `x-seen-connection`; the connection then echoes what it is sent until the peer's end of
//! stream, and ends its own. Each counts its open connections and their peak.

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper::{Request, Response};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A running upstream; stops when dropped.
#[derive(Debug)]
pub struct Upstream {
    /// Its name (the response body).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Connections open now.
    pub open_connections: Arc<AtomicU32>,
    /// The most connections ever open at once (tests may reset it).
    pub peak_connections: Arc<AtomicU32>,
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
        let peak_connections = Arc::new(AtomicU32::new(0));
        let open_connections = Arc::new(AtomicU32::new(0));
        let open = open_connections.clone();
        let peak = peak_connections.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let label = label.clone();
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                let open = open.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let label = label.clone();
                        async move {
                            if let Some((_, ms)) = req.uri().path().split_once("/slow/") {
                                let ms: u64 = ms
                                    .split(|c: char| !c.is_ascii_digit())
                                    .next()
                                    .and_then(|d| d.parse().ok())
                                    .unwrap_or(0);
                                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                            }
                            if req.headers().contains_key("upgrade")
                                && !req.uri().path().contains("/plain")
                            {
                                return Ok(upgrade(req, &label));
                            }
                            let body = if req.uri().path().ends_with("/stall") {
                                Either::Right(Stalled(false))
                            } else {
                                Either::Left(Full::new(Bytes::from(label.clone())))
                            };
                            let resp = Response::builder()
                                .header("x-upstream", label.as_str())
                                .header("x-seen-path", req.uri().path())
                                .body(body)
                                .unwrap_or_else(|_| Response::new(Either::Left(Full::default())));
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, svc)
                        .with_upgrades()
                        .await;
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Upstream {
            name: name.to_owned(),
            addr,
            open_connections,
            peak_connections,
            task,
        })
    }

    /// The port as a manifest wants it.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

/// `101` to an upgrade request, and an echo on the upgraded connection.
fn upgrade(
    mut req: Request<hyper::body::Incoming>,
    label: &str,
) -> Response<Either<Full<Bytes>, Stalled>> {
    let seen = |name: &str| req.headers().get(name).cloned();
    let (upgrade, connection) = (seen("upgrade"), seen("connection"));
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut io = hyper_util::rt::TokioIo::new(up);
        let mut buf = [0u8; 4096];
        loop {
            match tokio::io::AsyncReadExt::read(&mut io, &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tokio::io::AsyncWriteExt::write_all(&mut io, &buf[..n])
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut io).await;
    });
    let mut r = Response::builder()
        .status(101)
        .header("connection", "upgrade")
        .header("x-upstream", label);
    if let Some(u) = &upgrade {
        r = r.header("upgrade", u).header("x-seen-upgrade", u);
    }
    if let Some(c) = connection {
        r = r.header("x-seen-connection", c);
    }
    r.body(Either::Left(Full::default()))
        .unwrap_or_else(|_| Response::new(Either::Left(Full::default())))
}

/// A body that promises 10 bytes, gives 5 (`hello`), and never the rest.
struct Stalled(bool);

impl Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 {
            return Poll::Pending;
        }
        self.0 = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"hello")))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(10)
    }
}
