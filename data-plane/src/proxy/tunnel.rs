//! HTTP/1.1 upgrades (WebSocket, SPDY and the like), as Envoy's `upgrade_configs`.
//!
//! An upgrade request (`Upgrade` with `Connection: upgrade`) that its route allows goes upstream
//! with both headers, over a connection of its own ([`upstream::Tunnel`]). When the upstream
//! answers `101`, hyper hands over both sockets once the `101` has gone downstream, and the
//! bytes are copied both ways: an end of stream from one side is passed to the other, and the
//! tunnel is over when both have ended, either fails, or nothing has moved either way for the
//! stream idle timeout. The route's timeout bounds the wait for the `101`, not the tunnel (as
//! Envoy).
//!
//! The tunnel runs in the downstream connection's task ([`Slot`]), so the drain and shutdown see
//! it like any request. It is recorded (status `101`, its whole life as latency) when it ends,
//! or when its task is dropped.

use super::{upstream, Pending, Recorder};
use crate::config::ClusterRt;
use crate::endpoint::Endpoint;
use crate::limits::{Held, Limit};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// An upgraded exchange waiting for its two sockets.
pub struct Tunnel {
    /// The downstream socket, once hyper has sent the `101`.
    pub down: OnUpgrade,
    /// The upstream socket, once hyper has read the `101`.
    pub up: OnUpgrade,
    /// Its upstream connection's unit of `max_connections`.
    pub conn: upstream::Tunnel,
    /// The stream idle timeout in force for its route.
    pub idle: Option<Duration>,
    /// It counts as a request in flight while it lives.
    pub active: Active,
}

/// A tunnel counted as a request in flight, as Envoy counts an upgraded stream as active until
/// it ends: on its endpoint (what `least_conn` and `response_time` weigh) and against its
/// cluster's `max_requests` (its unit taken again after the 101, best effort: the one its
/// request held was given back just before).
pub struct Active {
    ep: Arc<Endpoint>,
    _unit: Option<Held>,
}

impl Active {
    /// `ep`'s request in flight from now, and one of `cluster`'s requests.
    pub fn new(ep: Arc<Endpoint>, cluster: Option<&ClusterRt>) -> Active {
        ep.in_flight.fetch_add(1, Ordering::Relaxed);
        let _unit = cluster.and_then(|c| c.load.try_take_uncounted(Limit::Requests, &c.maxima));
        Active { ep, _unit }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.ep.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tunnel {
    /// Copies both ways until the tunnel is over, then records the request (also when the run
    /// is dropped: a tunnel still open at the end of the drain).
    pub(super) async fn run(self, pending: Pending) {
        let Tunnel {
            down,
            up,
            conn,
            idle,
            active,
        } = self;
        let mut record = Recorder::new(Some(pending));
        let (Ok(down), Ok(up)) = tokio::join!(down, up) else {
            record.cut = "reset";
            return;
        };
        copy(TokioIo::new(down), TokioIo::new(up), idle).await;
        drop(conn);
        drop(active);
    }
}

/// Copies `a` to `b` and `b` to `a` until both directions have ended or one fails, or, with
/// `idle`, until nothing has moved for that long.
async fn copy<A, B>(a: A, b: B, idle: Option<Duration>)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let base = Instant::now();
    let last = AtomicU64::new(0);
    let mut a = Moving {
        io: a,
        base,
        last: &last,
    };
    let mut b = Moving {
        io: b,
        base,
        last: &last,
    };
    let both = tokio::io::copy_bidirectional(&mut a, &mut b);
    let Some(idle) = idle else {
        let _ = both.await;
        return;
    };
    tokio::pin!(both);
    let quiet_until = || base + Duration::from_micros(last.load(Ordering::Relaxed)) + idle;
    loop {
        tokio::select! {
            _ = both.as_mut() => return,
            _ = tokio::time::sleep_until(quiet_until()) => {
                if quiet_until() <= Instant::now() {
                    return;
                }
            }
        }
    }
}

/// A socket that notes when bytes last moved through it (µs since `base`, in `last`).
struct Moving<'a, T> {
    io: T,
    base: Instant,
    last: &'a AtomicU64,
}

impl<T> Moving<'_, T> {
    fn moved(&self) {
        let now = self.base.elapsed().as_micros() as u64;
        self.last.store(now, Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Moving<'_, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.moved();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Moving<'_, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.moved();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A tunnel to run once its `101` has gone downstream: put in that response's extensions by
/// [`handle`](super::handle), taken by the task serving the connection, which runs it after
/// hyper has handed the socket over.
#[derive(Clone, Default)]
pub struct Slot(Arc<Mutex<Option<Run>>>);

/// A tunnel's run, boxed.
pub type Run = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Slot {
    /// A slot holding `f`.
    pub fn new(f: impl Future<Output = ()> + Send + 'static) -> Slot {
        Slot(Arc::new(Mutex::new(Some(Box::pin(f)))))
    }

    /// Makes it hold `f`.
    pub fn put(&self, f: Run) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(f);
    }

    /// What it holds, taken out.
    pub fn take(&self) -> Option<Run> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
