//! Pooled keep-alive HTTP/1.1 connections to one endpoint.
//!
//! Idle connections wait in a lock-free queue owned by the [`Endpoint`](crate::endpoint::Endpoint),
//! so they survive config updates that keep the endpoint. A connection is checked out for one
//! request and comes back when its response body has been read to the end ([`PooledBody`]); a
//! body dropped half-read closes it instead, so a connection is never reused mid-response.

use super::ReqBody;
use bytes::Bytes;
use crossbeam_queue::SegQueue;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Idle connections kept per endpoint; more are closed when they come back.
pub const MAX_IDLE: usize = 512;

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// TCP connect failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The endpoint.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// TCP connect took longer than the cluster's connect timeout.
    #[error("connect to {0}: timed out")]
    Timeout(String),
    /// The HTTP/1.1 handshake failed.
    #[error("handshake with {addr}: {source}")]
    Handshake {
        /// The endpoint.
        addr: String,
        /// Why.
        source: hyper::Error,
    },
}

/// The idle connections of one endpoint.
#[derive(Debug)]
pub struct ConnPool {
    address: String,
    socket: Option<SocketAddr>,
    // Grows in small blocks on demand, so idle endpoints cost almost nothing.
    idle: SegQueue<SendRequest<ReqBody>>,
    idle_count: AtomicUsize,
}

impl ConnPool {
    /// An empty pool for `address` (`host:port`).
    pub fn new(address: &str) -> ConnPool {
        ConnPool {
            address: address.to_owned(),
            socket: address.parse().ok(),
            idle: SegQueue::new(),
            idle_count: AtomicUsize::new(0),
        }
    }

    /// Idle connections now.
    pub fn idle(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed)
    }

    /// A ready connection: an idle one if any is still open, else a new one.
    pub async fn checkout(
        &self,
        connect_timeout: Duration,
    ) -> Result<SendRequest<ReqBody>, ConnectError> {
        while let Some(mut c) = self.idle.pop() {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            // A connection whose previous response just ended becomes ready at once; a closed
            // one errors and is dropped.
            if c.ready().await.is_ok() {
                return Ok(c);
            }
        }
        self.connect(connect_timeout).await
    }

    /// Returns a connection whose exchange is complete.
    pub fn checkin(&self, c: SendRequest<ReqBody>) {
        if c.is_closed() {
            return;
        }
        // The cap is approximate under races, which is all it needs to be.
        if self.idle_count.fetch_add(1, Ordering::Relaxed) < MAX_IDLE {
            self.idle.push(c);
        } else {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A new connection (never an idle one).
    pub async fn connect(&self, timeout: Duration) -> Result<SendRequest<ReqBody>, ConnectError> {
        let connect = async {
            match self.socket {
                Some(a) => TcpStream::connect(a).await,
                None => TcpStream::connect(self.address.as_str()).await,
            }
        };
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(ConnectError::Connect {
                    addr: self.address.clone(),
                    source,
                })
            }
            Err(_) => return Err(ConnectError::Timeout(self.address.clone())),
        };
        let _ = stream.set_nodelay(true);
        let (send, conn) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ConnectError::Handshake {
                addr: self.address.clone(),
                source,
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }
}

/// A response body that gives its connection back to the pool once read to the end.
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    conn: Option<(SendRequest<ReqBody>, Arc<crate::endpoint::Endpoint>)>,
}

impl PooledBody {
    /// Wraps `inner`, read from `conn` to `endpoint`.
    pub fn new(
        inner: Incoming,
        conn: SendRequest<ReqBody>,
        endpoint: Arc<crate::endpoint::Endpoint>,
    ) -> PooledBody {
        PooledBody {
            inner,
            conn: Some((conn, endpoint)),
        }
    }

    fn release(&mut self) {
        if let Some((c, ep)) = self.conn.take() {
            ep.pool.checkin(c);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.inner.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.conn = None,
            _ => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // Read to the end (or empty): reusable. Otherwise the unread rest would corrupt the
        // next exchange, so the connection closes with the dropped sender.
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Either, Empty, Full};
    use hyper::{Request, Response};
    use hyper_util::rt::TokioExecutor;
    use std::sync::atomic::AtomicU32;

    /// An upstream counting the connections it accepted.
    async fn upstream() -> (SocketAddr, Arc<AtomicU32>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let conns = Arc::new(AtomicU32::new(0));
        let c = conns.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(|_req: Request<Incoming>| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                            Bytes::from_static(b"hello"),
                        )))
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        (addr, conns)
    }

    #[tokio::test]
    async fn a_connection_is_reused_once_its_body_is_read() {
        let (addr, conns) = upstream().await;
        let ep = Arc::new(crate::endpoint::Endpoint::new(addr.to_string(), 1));
        for _ in 0..5 {
            let mut c = ep
                .pool
                .checkout(Duration::from_secs(1))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let req = Request::builder()
                .uri("/")
                .header("host", "x")
                .body(Either::Right(Empty::new()));
            let resp = c
                .send_request(req.unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let body = PooledBody::new(resp.into_body(), c, ep.clone());
            let bytes = body
                .collect()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .to_bytes();
            assert_eq!(&bytes[..], b"hello");
            assert_eq!(ep.pool.idle(), 1, "back in the pool once read");
        }
        assert_eq!(
            conns.load(Ordering::SeqCst),
            1,
            "one connection served all five"
        );
        assert!(matches!(
            ConnPool::new("127.0.0.1:1")
                .checkout(Duration::from_secs(1))
                .await,
            Err(ConnectError::Connect { .. })
        ));
    }
}
