//! Pooled keep-alive HTTP/1.1 connections to one endpoint.
//!
//! Idle connections wait in stacks owned by the [`Endpoint`](crate::endpoint::Endpoint), so they
//! survive config updates that keep the endpoint. Each worker thread has a stack of its own
//! ([`set_worker`]): a connection's socket is registered with the runtime of the worker that
//! opened it, and only that worker's event loop reports it ready, so a connection stays with its
//! worker (Envoy's connection pools are per worker thread too). The most recently used goes out
//! first (as Envoy's and hyper's pools), so a quiet spell lets the others age out rather than
//! keeping every connection barely warm. A connection is checked out for one
//! request and comes back when its response body has been read to the end ([`PooledBody`]); a
//! body dropped half-read closes it instead, so a connection is never reused mid-response.

use super::ReqBody;
use crate::limits::{ClusterLoad, Held, Limit, Maxima};
use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;

/// Read buffer of a new raw connection, and the most an idle one keeps.
const IDLE_BUF: usize = 8 * 1024;
const IDLE_BUF_MAX: usize = 16 * 1024;

/// Idle connections kept per endpoint and worker; more are closed when they come back.
pub const MAX_IDLE: usize = 512;

/// Every this many connections given back, the least recently used idle one is checked.
pub const PRUNE_EVERY: usize = 16;

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
    /// The TLS handshake failed (or the endpoint's certificate was refused).
    #[error("TLS with {addr}: {source}")]
    Tls {
        /// The endpoint.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP/1.1 handshake failed.
    #[error("handshake with {addr}: {source}")]
    Handshake {
        /// The endpoint.
        addr: String,
        /// Why.
        source: hyper::Error,
    },
}

/// Why a request got no connection.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The cluster is at `max_connections` and its pending queue is full.
    #[error("pending request queue full")]
    Overflow,
}

/// A raw HTTP/1.1 connection for the native path, boxed: it is handed along several times per
/// request (pool, try, answer, relay, pool), and a pointer is cheaper to move than the ~200
/// bytes it points to. One allocation per connection, not per request.
pub type RawConn = Box<Raw>;

/// What a [`RawConn`] holds: the socket and what was read past the last response. Counted
/// against the cluster's `max_connections` while it exists.
#[derive(Debug)]
pub struct Raw {
    /// The socket.
    pub io: TcpStream,
    /// Bytes read and not yet used.
    pub buf: BytesMut,
    /// Whether it carried an exchange before this one (a closed-under-us race is possible).
    pub reused: bool,
    /// The last response head read.
    pub head: super::h1::Head,
    /// How that response's body ends.
    pub body: super::h1::BodyLen,
    /// The upstream closes after that response.
    pub close: bool,
    /// That response's `Connection` header names other headers ([`Framing::named`]).
    ///
    /// [`Framing::named`]: super::h1::Framing::named
    pub named: bool,
    _unit: Held,
}

/// An upstream connection's socket for hyper's client: plaintext, or TLS over it (a cluster's
/// `transport_socket`). The native path's raw connections are plaintext only. A type of its own
/// (over tokio-util's `Either`, which does the reading and writing) so that hyper-util's client
/// can take it too (its `Connection`, for health probes).
#[derive(Debug)]
pub struct UpIo(tokio_util::either::Either<TcpStream, Box<TlsStream>>);

/// TLS over TCP, as a client.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

impl UpIo {
    /// Plain TCP.
    pub fn plain(s: TcpStream) -> UpIo {
        UpIo(tokio_util::either::Either::Left(s))
    }

    /// TLS over TCP.
    pub fn tls(s: TlsStream) -> UpIo {
        UpIo(tokio_util::either::Either::Right(Box::new(s)))
    }
}

impl tokio::io::AsyncRead for UpIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for UpIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

impl hyper_util::client::legacy::connect::Connection for UpIo {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        let c = hyper_util::client::legacy::connect::Connected::new();
        match &self.0 {
            tokio_util::either::Either::Right(s)
                if s.get_ref().1.alpn_protocol() == Some(b"h2") =>
            {
                c.negotiated_h2()
            }
            _ => c,
        }
    }
}

/// A TCP connection to `address` within `timeout`, with TLS over it when `tls` says so (the
/// handshake within the same timeout).
pub async fn dial(
    address: &str,
    socket: Option<SocketAddr>,
    tls: Option<&crate::tls::UpstreamTls>,
    timeout: Duration,
) -> Result<UpIo, ConnectError> {
    let connect = async {
        let stream = match socket {
            Some(a) => TcpStream::connect(a).await,
            None => TcpStream::connect(address).await,
        }
        .map_err(|source| ConnectError::Connect {
            addr: address.to_owned(),
            source,
        })?;
        let _ = stream.set_nodelay(true);
        match tls {
            None => Ok(UpIo::plain(stream)),
            Some(tls) => match tls.connect(stream, address).await {
                Ok(s) => Ok(UpIo::tls(s)),
                Err(source) => Err(ConnectError::Tls {
                    addr: address.to_owned(),
                    source,
                }),
            },
        }
    };
    match tokio::time::timeout(timeout, connect).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout(address.to_owned())),
    }
}

thread_local! {
    /// Which worker this thread is (0 outside workers).
    static WORKER: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Makes this thread worker `i`: the connections it opens and reuses are its own
/// ([`ConnPool`]'s stack `i`). A thread that never calls it is worker 0.
pub fn set_worker(i: usize) {
    WORKER.with(|w| w.set(i));
}

/// This thread's stack among `stacks` (the first when there are fewer stacks than workers: a
/// pool made before the proxy said how many workers it runs).
fn mine<T>(stacks: &[T]) -> &T {
    let i = WORKER.with(std::cell::Cell::get);
    stacks.get(i).unwrap_or(&stacks[0])
}

/// A connection kind the pool keeps: hyper's client connection or a [`RawConn`].
pub trait Pooled: Sized + Send + 'static {
    /// `pool`'s idle connections of this kind, one stack per worker, most recently used last.
    fn stacks(pool: &ConnPool) -> &[Mutex<Vec<Self>>];
    /// This worker's stack of `pool`'s idle connections of this kind.
    fn stack(pool: &ConnPool) -> &Mutex<Vec<Self>> {
        mine(Self::stacks(pool))
    }
    /// Takes this worker's most recently used idle connection of this kind from `pool`.
    fn pop(pool: &ConnPool) -> Option<Self> {
        locked(Self::stack(pool)).pop()
    }
    /// Made ready to wait idle (before it joins a stack).
    fn to_idle(&mut self) {}
    /// Gives an idle connection of this kind to this worker's stack of `pool`, unless that
    /// holds [`MAX_IDLE`] already (then it is closed); whether it was kept.
    fn push(pool: &ConnPool, mut c: Self) -> bool {
        c.to_idle();
        let mut stack = locked(Self::stack(pool));
        let room = stack.len() < MAX_IDLE;
        if room {
            stack.push(c);
        }
        room
    }
    /// Takes the least recently used idle connection of this kind from worker `w`'s stack of
    /// `pool` when its upstream is known to have closed it ([`gone`](Self::gone)). Any thread
    /// may look: readiness is kept up by the owning worker's event loop, idle or not.
    fn oldest_if_gone(pool: &ConnPool, w: usize) -> Option<Self> {
        let stacks = Self::stacks(pool);
        let mut stack = locked(&stacks[w % stacks.len()]);
        let gone = stack.first_mut().is_some_and(Self::gone);
        gone.then(|| stack.remove(0))
    }
    /// Takes a least recently used idle connection of this kind from `pool`, this worker's if
    /// it has one, else any worker's (closing it makes room; any thread may drop a socket).
    fn evict_oldest(pool: &ConnPool) -> Option<Self> {
        let own = std::iter::once(Self::stack(pool));
        own.chain(Self::stacks(pool)).find_map(|s| {
            let mut stack = locked(s);
            (!stack.is_empty()).then(|| stack.remove(0))
        })
    }
    /// Whether an idle connection is known to be unusable without waiting (closed, or sent
    /// something unasked).
    fn gone(&mut self) -> bool;
    /// Whether an idle connection is still usable (it may have been closed while idle).
    fn alive(&mut self) -> impl std::future::Future<Output = bool> + Send;
    /// Whether it is known closed.
    fn is_closed(&self) -> bool;
    /// A connection over a fresh `stream`, counted by `unit` for as long as it is open.
    fn open(
        stream: UpIo,
        unit: Held,
        addr: &str,
    ) -> impl std::future::Future<Output = Result<Self, ConnectError>> + Send;
}

impl Pooled for SendRequest<ReqBody> {
    fn stacks(pool: &ConnPool) -> &[Mutex<Vec<Self>>] {
        &pool.idle
    }

    fn gone(&mut self) -> bool {
        SendRequest::is_closed(self)
    }

    async fn alive(&mut self) -> bool {
        // A connection whose previous response just ended becomes ready at once; a closed one
        // errors.
        self.ready().await.is_ok()
    }

    fn is_closed(&self) -> bool {
        SendRequest::is_closed(self)
    }

    async fn open(stream: UpIo, unit: Held, addr: &str) -> Result<Self, ConnectError> {
        let (send, conn) = handshake(stream, addr).await?;
        drive_counted(conn, unit);
        Ok(send)
    }
}

/// Drives a client connection's I/O in a task of its own; it counts against the cluster's
/// `max_connections` (`unit`) until it ends.
fn drive_counted<F: std::future::Future + Send + 'static>(conn: F, unit: Held) {
    tokio::spawn(async move {
        let _ = conn.await;
        drop(unit);
    });
}

/// hyper's HTTP/1.1 client handshake over `stream`.
async fn handshake(
    stream: UpIo,
    addr: &str,
) -> Result<
    (
        SendRequest<ReqBody>,
        http1::Connection<TokioIo<UpIo>, ReqBody>,
    ),
    ConnectError,
> {
    http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|source| ConnectError::Handshake {
            addr: addr.to_owned(),
            source,
        })
}

/// A connection for one HTTP/1.1 upgrade: hyper's client, which hands the socket over after a
/// `101`. Never pooled (the tunnel uses it up); counted against the cluster's
/// `max_connections` for as long as it or its tunnel lives.
pub struct Tunnel {
    /// Sends the upgrade request.
    pub send: SendRequest<ReqBody>,
    /// Its unit of `max_connections`.
    pub unit: Held,
}

/// Tunnels are never idle: an empty stack (checkout looks at one only while waiting for room).
static NO_TUNNELS: Mutex<Vec<Tunnel>> = Mutex::new(Vec::new());

impl Pooled for Tunnel {
    fn stacks(_: &ConnPool) -> &[Mutex<Vec<Self>>] {
        std::slice::from_ref(&NO_TUNNELS)
    }

    fn gone(&mut self) -> bool {
        self.send.is_closed()
    }

    async fn alive(&mut self) -> bool {
        !self.send.is_closed()
    }

    fn is_closed(&self) -> bool {
        true
    }

    async fn open(stream: UpIo, unit: Held, addr: &str) -> Result<Self, ConnectError> {
        let (send, conn) = handshake(stream, addr).await?;
        // Ends when the response is not a 101 and the connection closes, or hands the socket
        // to the tunnel after one.
        tokio::spawn(conn.with_upgrades());
        Ok(Tunnel { send, unit })
    }
}

impl Pooled for RawConn {
    fn stacks(pool: &ConnPool) -> &[Mutex<Vec<Self>>] {
        &pool.raw_idle
    }

    fn to_idle(&mut self) {
        // A large body grew the read buffer; an idle connection keeps a small one (a buffer
        // holding unasked-for bytes stays, so the liveness check still refuses the connection).
        if self.buf.is_empty() && self.buf.capacity() > IDLE_BUF_MAX {
            self.buf = BytesMut::with_capacity(IDLE_BUF);
        }
    }

    fn gone(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        // Readiness is cached from epoll: a quiet socket costs no system call here. One that
        // shows readable has either closed (EOF) or sent something unasked; neither is reused.
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => false,
            Poll::Ready(Err(_)) => true,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                !matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
        }
    }

    async fn alive(&mut self) -> bool {
        !self.gone()
    }

    fn is_closed(&self) -> bool {
        false
    }

    async fn open(stream: UpIo, unit: Held, addr: &str) -> Result<Self, ConnectError> {
        // A TLS cluster's requests take hyper's client; the native path never asks for one.
        let UpIo(tokio_util::either::Either::Left(stream)) = stream else {
            return Err(ConnectError::Tls {
                addr: addr.to_owned(),
                source: std::io::Error::other("raw connections are plaintext"),
            });
        };
        Ok(Box::new(Raw {
            io: stream,
            buf: BytesMut::with_capacity(IDLE_BUF),
            reused: false,
            head: super::h1::Head::default(),
            body: super::h1::BodyLen::Length(0),
            close: false,
            named: false,
            _unit: unit,
        }))
    }
}

/// A sender on an HTTP/2 connection to an endpoint (cloned for each request).
pub type H2 = hyper::client::conn::http2::SendRequest<ReqBody>;

/// Streams a worker opens on one HTTP/2 connection before it opens another (RFC 9113 asks
/// servers to allow at least 100 concurrent streams).
pub const H2_STREAMS: usize = 100;

/// A worker's HTTP/2 connections to an endpoint.
#[derive(Debug, Default)]
pub struct H2Slot {
    conns: Vec<H2Conn>,
    /// When a connect last failed: requests that were waiting then fail with it.
    failed_at: Option<std::time::Instant>,
}

/// One HTTP/2 connection and how many streams are open on it.
#[derive(Debug)]
struct H2Conn {
    send: H2,
    streams: Arc<AtomicUsize>,
}

/// A stream counted on its HTTP/2 connection until dropped (with the response body).
#[derive(Debug)]
pub struct H2Stream(Arc<AtomicUsize>);

impl H2Stream {
    fn new(streams: &Arc<AtomicUsize>) -> H2Stream {
        streams.fetch_add(1, Ordering::Relaxed);
        H2Stream(streams.clone())
    }
}

impl Drop for H2Stream {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An idle stack, locked (a panic while it was held left it whole: pushes and pops only).
fn locked<T>(m: &Mutex<Vec<T>>) -> MutexGuard<'_, Vec<T>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The idle connections of one endpoint.
#[derive(Debug)]
pub struct ConnPool {
    address: String,
    socket: Option<SocketAddr>,
    // One stack per worker. Held for a push or a pop only (an uncontended lock is one atomic
    // operation each way, and never allocates, where a lock-free queue allocated a block every
    // 31 pushes).
    idle: Box<[Mutex<Vec<SendRequest<ReqBody>>>]>,
    raw_idle: Box<[Mutex<Vec<RawConn>>]>,
    /// Each worker's HTTP/2 connections (an HTTP/2 cluster's), shared by its requests; held
    /// across a connect, so requests arriving meanwhile wait for that one.
    h2: Box<[tokio::sync::Mutex<H2Slot>]>,
    idle_count: AtomicUsize,
    /// Connections given back, for pruning every [`PRUNE_EVERY`]th time.
    checkins: AtomicUsize,
    /// The cluster's limits and counts.
    load: Arc<ClusterLoad>,
    /// TLS over each connection (the cluster's `transport_socket`).
    tls: Option<Arc<crate::tls::UpstreamTls>>,
}

impl ConnPool {
    /// An empty pool for `address` (`host:port`) with a cluster of its own (default limits),
    /// for one worker.
    pub fn new(address: &str) -> ConnPool {
        ConnPool::in_cluster(address, Arc::default(), 1)
    }

    /// An empty pool for `address` whose connections count against `load`, with an idle stack
    /// for each of `workers` workers.
    pub fn in_cluster(address: &str, load: Arc<ClusterLoad>, workers: usize) -> ConnPool {
        let workers = workers.max(1);
        ConnPool {
            address: address.to_owned(),
            socket: address.parse().ok(),
            idle: (0..workers).map(|_| Mutex::default()).collect(),
            raw_idle: (0..workers).map(|_| Mutex::default()).collect(),
            h2: (0..workers).map(|_| Default::default()).collect(),
            idle_count: AtomicUsize::new(0),
            checkins: AtomicUsize::new(0),
            load,
            tls: None,
        }
    }

    /// Which TLS settings its connections are made with (0: plaintext).
    pub fn tls_id(&self) -> u64 {
        self.tls.as_ref().map_or(0, |t| t.id)
    }

    /// This pool, its connections secured by `tls`.
    pub fn with_tls(mut self, tls: Option<Arc<crate::tls::UpstreamTls>>) -> ConnPool {
        self.tls = tls;
        self
    }

    /// Idle connections now.
    pub fn idle(&self) -> usize {
        self.idle_count.load(Ordering::Relaxed)
    }

    /// The cluster's limits and counts.
    pub fn load(&self) -> &Arc<ClusterLoad> {
        &self.load
    }

    /// An idle connection that is still open, if any.
    async fn take_idle<C: Pooled>(&self) -> Option<C> {
        while let Some(mut c) = C::pop(self) {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
            if c.alive().await {
                return Some(c);
            }
        }
        None
    }

    /// Closes one idle connection, the least recently used; whether there was one.
    fn evict_one(&self) -> bool {
        let evicted = <SendRequest<ReqBody>>::evict_oldest(self)
            .map(drop)
            .is_some()
            || RawConn::evict_oldest(self).map(drop).is_some();
        if evicted {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
        }
        evicted
    }

    /// A connection of kind `C`: an idle one (when `reuse`) if any is still open, else a new
    /// one. At the cluster's `max_connections` the request waits (as a pending request, itself
    /// limited) for one of ours to come back (taken even without `reuse`: it has just finished
    /// an exchange) or any of the cluster's to close; an idle connection of a `sibling` endpoint
    /// is closed to make room.
    pub async fn checkout<C: Pooled>(
        &self,
        connect_timeout: Duration,
        reuse: bool,
        max: &Maxima,
        siblings: &[Arc<crate::endpoint::Endpoint>],
    ) -> Result<C, CheckoutError> {
        if reuse {
            if let Some(c) = self.take_idle().await {
                return Ok(c);
            }
        }
        // Connecting (and waiting) are boxed: rare, and their futures would otherwise make every
        // checkout's state, which each request moves about, several times larger.
        if let Some(unit) = self.load.try_take(Limit::Connections, max) {
            return Ok(Box::pin(self.connect(connect_timeout, unit)).await?);
        }
        Box::pin(self.wait_for_room(connect_timeout, max, siblings)).await
    }

    /// [`checkout`](Self::checkout) at the cluster's `max_connections`: as a pending request.
    async fn wait_for_room<C: Pooled>(
        &self,
        connect_timeout: Duration,
        max: &Maxima,
        siblings: &[Arc<crate::endpoint::Endpoint>],
    ) -> Result<C, CheckoutError> {
        let Some(_pending) = self.load.try_take(Limit::Pending, max) else {
            return Err(CheckoutError::Overflow);
        };
        loop {
            let freed = self.load.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            std::sync::atomic::fence(Ordering::SeqCst);
            if let Some(c) = self.take_idle().await {
                return Ok(c);
            }
            if let Some(unit) = self.load.try_take_uncounted(Limit::Connections, max) {
                return Ok(self.connect(connect_timeout, unit).await?);
            }
            // Make room: an idle connection of the other kind here, or any idle one elsewhere
            // in the cluster, is worth less than a waiting request. Its close wakes us.
            if !self.evict_one() {
                for s in siblings {
                    if !std::ptr::eq(&s.pool, self) && s.pool.evict_one() {
                        break;
                    }
                }
            }
            freed.await;
        }
    }

    /// Returns a connection whose exchange is complete.
    pub fn checkin<C: Pooled>(&self, c: C) {
        if c.is_closed() {
            return;
        }
        // Counted before it can be taken, so the count never goes below zero.
        self.idle_count.fetch_add(1, Ordering::Relaxed);
        if C::push(self, c) {
            self.load.wake_pending();
        } else {
            self.idle_count.fetch_sub(1, Ordering::Relaxed);
        }
        // Most recently used goes out first, so the connections at the bottom of a stack can
        // sit unused for long: now and then the oldest is looked at, and closed when its
        // upstream has closed it (it would otherwise hold a descriptor and a connection unit).
        // The stacks are taken in turn, so a worker that no longer sends to this endpoint has
        // its connections looked at too.
        let n = self.checkins.fetch_add(1, Ordering::Relaxed);
        if n.is_multiple_of(PRUNE_EVERY) {
            if let Some(dead) = C::oldest_if_gone(self, n / PRUNE_EVERY) {
                self.idle_count.fetch_sub(1, Ordering::Relaxed);
                drop(dead);
            }
        }
    }

    /// A stream on one of this worker's HTTP/2 connections to the endpoint: one with room (fewer
    /// than [`H2_STREAMS`] streams open, as an upstream's limit is not known ahead), else a new
    /// one, as Envoy's HTTP/2 pools open another connection at the stream limit. `fresh` skips
    /// those open (one just handed a request back unsent: it had received GOAWAY). The slot is
    /// held across a connect, so a burst makes one connection; requests that waited on a connect
    /// that failed fail with it, not each after a connect of its own. A new connection counts
    /// against `max_connections`; at the limit the request overflows.
    pub async fn h2(
        &self,
        connect_timeout: Duration,
        max: &Maxima,
        fresh: bool,
    ) -> Result<(H2, H2Stream), CheckoutError> {
        let arrived = std::time::Instant::now();
        let mut slot = mine(&self.h2).lock().await;
        slot.conns.retain(|c| !c.send.is_closed());
        if !fresh {
            if let Some(c) = slot
                .conns
                .iter()
                .find(|c| c.streams.load(Ordering::Relaxed) < H2_STREAMS)
            {
                return Ok((c.send.clone(), H2Stream::new(&c.streams)));
            }
        }
        if slot.failed_at.is_some_and(|at| at >= arrived) {
            return Err(CheckoutError::Connect(ConnectError::Timeout(
                self.address.clone(),
            )));
        }
        let Some(unit) = self.load.try_take(Limit::Connections, max) else {
            return Err(CheckoutError::Overflow);
        };
        let made = async {
            let stream = self.dial(connect_timeout).await?;
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .timer(hyper_util::rt::TokioTimer::new())
                .handshake(TokioIo::new(stream))
                .await
                .map_err(|source| ConnectError::Handshake {
                    addr: self.address.clone(),
                    source,
                })
        };
        let (send, conn) = match Box::pin(made).await {
            Ok(c) => c,
            Err(e) => {
                slot.failed_at = Some(std::time::Instant::now());
                return Err(e.into());
            }
        };
        drive_counted(conn, unit);
        let c = H2Conn {
            send,
            streams: Arc::default(),
        };
        let out = (c.send.clone(), H2Stream::new(&c.streams));
        if fresh {
            // The ones it replaces take no new streams.
            slot.conns.clear();
        }
        slot.conns.push(c);
        Ok(out)
    }

    /// A new connection, counted by `unit` for as long as it is open.
    async fn connect<C: Pooled>(&self, timeout: Duration, unit: Held) -> Result<C, ConnectError> {
        let stream = self.dial(timeout).await?;
        C::open(stream, unit, &self.address).await
    }

    /// Closes every idle connection (the endpoint has been replaced: its TLS settings changed),
    /// and keeps no HTTP/2 connection for new streams.
    pub fn close_idle(&self) {
        for stack in self.idle.iter() {
            let n = std::mem::take(&mut *locked(stack)).len();
            self.idle_count.fetch_sub(n, Ordering::Relaxed);
        }
        for stack in self.raw_idle.iter() {
            let n = std::mem::take(&mut *locked(stack)).len();
            self.idle_count.fetch_sub(n, Ordering::Relaxed);
        }
        for slot in self.h2.iter() {
            if let Ok(mut s) = slot.try_lock() {
                s.conns.clear();
            }
        }
    }

    /// A connection to the endpoint (TLS when the cluster says so), within `timeout`.
    pub(crate) async fn dial(&self, timeout: Duration) -> Result<UpIo, ConnectError> {
        dial(&self.address, self.socket, self.tls.as_deref(), timeout).await
    }
}

/// A response body that gives its connection back to the pool once read to the end.
#[derive(Debug)]
pub struct PooledBody {
    inner: Incoming,
    conn: Option<(SendRequest<ReqBody>, Arc<crate::endpoint::Endpoint>)>,
    /// What else lives as long as the body: the unit of `max_connections` of a connection
    /// that is not pooled, or an HTTP/2 stream's count on its connection.
    _held: Held2,
}

/// What an answer's connection is: an HTTP/1.1 one to give back, or a stream of an HTTP/2 one.
#[derive(Debug)]
pub enum UpConn {
    /// Back to the pool when the body has been read.
    H1(SendRequest<ReqBody>),
    /// Counted on its shared connection until the body is done with.
    H2(H2Stream),
}

/// See [`PooledBody`].
#[derive(Debug)]
enum Held2 {
    Nothing,
    Unit(#[allow(dead_code)] Held),
    Stream(#[allow(dead_code)] H2Stream),
}

impl PooledBody {
    /// Wraps `inner`, read from `conn` to `endpoint` (an HTTP/2 stream: its connection stays
    /// shared whatever becomes of the body).
    pub fn new(
        inner: Incoming,
        conn: UpConn,
        endpoint: Arc<crate::endpoint::Endpoint>,
    ) -> PooledBody {
        match conn {
            UpConn::H1(c) => PooledBody {
                inner,
                conn: Some((c, endpoint)),
                _held: Held2::Nothing,
            },
            UpConn::H2(s) => PooledBody {
                inner,
                conn: None,
                _held: Held2::Stream(s),
            },
        }
    }

    /// Wraps `inner`, read from a connection that closes after it (a refused upgrade's,
    /// counted by `unit` until then).
    pub fn unpooled(inner: Incoming, unit: Held) -> PooledBody {
        PooledBody {
            inner,
            conn: None,
            _held: Held2::Unit(unit),
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
    use crate::proxy::replay::Again;
    use http_body_util::{BodyExt, Either, Full};
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
            let mut c: SendRequest<ReqBody> = ep
                .pool
                .checkout(Duration::from_secs(1), true, &Maxima::default(), &[])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let req = Request::builder()
                .uri("/")
                .header("host", "x")
                .body(Either::Right(Again::empty()));
            let resp = c
                .send_request(req.unwrap_or_else(|e| panic!("{e}")))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let body = PooledBody::new(resp.into_body(), UpConn::H1(c), ep.clone());
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
                .checkout::<SendRequest<ReqBody>>(
                    Duration::from_secs(1),
                    true,
                    &Maxima::default(),
                    &[]
                )
                .await,
            Err(CheckoutError::Connect(ConnectError::Connect { .. }))
        ));
    }

    #[tokio::test]
    async fn at_the_connection_limit_an_idle_sibling_connection_makes_room() {
        let (addr_a, _) = upstream().await;
        let (addr_b, _) = upstream().await;
        let load: Arc<ClusterLoad> = Arc::default();
        let reg = crate::endpoint::EndpointRegistry::default();
        let cfg = crate::breaker::BreakerConfig::default();
        let a = reg.get_with("c", &addr_a.to_string(), 1, &cfg, &load, None);
        let b = reg.get_with("c", &addr_b.to_string(), 1, &cfg, &load, None);
        let siblings = [a.clone(), b.clone()];
        let max = Maxima([1, 1, 8, 3]);
        // One exchange with `a` leaves its one connection idle: the cluster is at its limit.
        exchange_leaving_idle(&a, &max, &siblings).await;
        assert_eq!((a.pool.idle(), load.current(Limit::Connections)), (1, 1));
        // `b` needs one: `a`'s idle connection is closed to make room, and `b` connects.
        let got = b
            .pool
            .checkout(Duration::from_secs(1), true, &max, &siblings)
            .await;
        let mut got: SendRequest<ReqBody> = got.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.pool.idle(), 0, "the idle sibling was closed");
        let req = Request::builder()
            .uri("/")
            .header("host", "x")
            .body(Either::Right(Again::empty()))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = got
            .send_request(req)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(resp.status(), 200, "b's new connection works");
        assert_eq!(load.current(Limit::Connections), 1);
        assert_eq!(load.overflows(Limit::Connections), 1);
        // With `b`'s connection busy and the pending queue (1) taken, a third waits no more:
        let _pending = load.try_take(Limit::Pending, &max);
        assert!(matches!(
            a.pool
                .checkout::<SendRequest<ReqBody>>(Duration::from_secs(1), true, &max, &siblings)
                .await,
            Err(CheckoutError::Overflow)
        ));
    }

    /// One hyper exchange with `ep`, read to the end: its connection goes back idle.
    async fn exchange_leaving_idle(
        ep: &Arc<crate::endpoint::Endpoint>,
        max: &Maxima,
        siblings: &[Arc<crate::endpoint::Endpoint>],
    ) {
        let mut c: SendRequest<ReqBody> = ep
            .pool
            .checkout(Duration::from_secs(1), true, max, siblings)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let req = Request::builder()
            .uri("/")
            .header("host", "x")
            .body(Either::Right(Again::empty()))
            .unwrap_or_else(|e| panic!("{e}"));
        let resp = c.send_request(req).await.unwrap_or_else(|e| panic!("{e}"));
        PooledBody::new(resp.into_body(), UpConn::H1(c), ep.clone())
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn an_idle_connection_of_the_other_kind_makes_room() {
        let (addr, _) = upstream().await;
        let reg = crate::endpoint::EndpointRegistry::default();
        let load = Arc::new(ClusterLoad::default());
        let a = reg.get_with("c", &addr.to_string(), 1, &Default::default(), &load, None);
        let siblings = [a.clone()];
        let max = Maxima([1, 1, 8, 3]);
        // An HTTP/2 client's request (hyper) leaves the cluster's one connection idle.
        exchange_leaving_idle(&a, &max, &siblings).await;
        assert_eq!((a.pool.idle(), load.current(Limit::Connections)), (1, 1));
        // An HTTP/1.1 request (native) needs a raw connection: the idle hyper one is closed.
        let raw = tokio::time::timeout(
            Duration::from_secs(10),
            a.pool
                .checkout::<RawConn>(Duration::from_secs(1), true, &max, &siblings),
        )
        .await
        .unwrap_or_else(|_| panic!("waited for a connection that never came back"));
        assert!(raw.is_ok());
        assert_eq!((a.pool.idle(), load.current(Limit::Connections)), (0, 1));
    }

    /// An upstream that closes the first connection it accepts and keeps the second (sent on
    /// the channel).
    async fn closes_the_first_connection() -> (
        SocketAddr,
        tokio::sync::oneshot::Receiver<std::io::Result<(TcpStream, SocketAddr)>>,
    ) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (kept_tx, kept_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            drop(l.accept().await);
            let _ = kept_tx.send(l.accept().await);
        });
        (addr, kept_rx)
    }

    /// Until the upstream's close has reached the socket's readiness (the driver runs between
    /// yields).
    async fn until_gone(c: &mut RawConn) {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !c.gone() {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the upstream's close never showed");
    }

    #[tokio::test]
    async fn an_idle_connection_its_upstream_closed_is_pruned_from_the_bottom() {
        let (addr, kept_rx) = closes_the_first_connection().await;
        let load = Arc::new(ClusterLoad::default());
        let pool = ConnPool::in_cluster(&addr.to_string(), load.clone(), 1);
        let max = Maxima::default();
        let connect = || pool.checkout::<RawConn>(Duration::from_secs(1), false, &max, &[]);
        let mut dead = connect().await.unwrap();
        until_gone(&mut dead).await;
        let live = connect().await.unwrap();
        let _kept = kept_rx.await;
        assert_eq!(load.current(Limit::Connections), 2);
        pool.checkin(dead);
        pool.checkin(live);
        // The live one goes out and comes back (most recently used first) until a checkin
        // looks at the bottom of the stack.
        for _ in 0..PRUNE_EVERY {
            let c: RawConn = pool
                .checkout(Duration::from_secs(1), true, &max, &[])
                .await
                .unwrap();
            pool.checkin(c);
        }
        assert_eq!(pool.idle(), 1, "the closed connection was pruned");
        assert_eq!(
            load.current(Limit::Connections),
            1,
            "and its unit given back"
        );
    }

    #[tokio::test]
    async fn a_dead_idle_connection_of_a_worker_gone_quiet_is_pruned_by_another() {
        let (addr, kept_rx) = closes_the_first_connection().await;
        let load = Arc::new(ClusterLoad::default());
        let pool = ConnPool::in_cluster(&addr.to_string(), load.clone(), 2);
        let max = Maxima::default();
        let connect = || pool.checkout::<RawConn>(Duration::from_secs(1), true, &max, &[]);
        // Worker 1 leaves its connection idle, and sends no more; the upstream closes it.
        set_worker(1);
        let mut dead = connect().await.unwrap();
        until_gone(&mut dead).await;
        pool.checkin(dead);
        // Worker 0 keeps using a connection of its own.
        set_worker(0);
        let live = connect().await.unwrap();
        let _kept = kept_rx.await;
        pool.checkin(live);
        assert_eq!((pool.idle(), load.current(Limit::Connections)), (2, 2));
        for _ in 0..2 * PRUNE_EVERY {
            let c: RawConn = connect().await.unwrap();
            pool.checkin(c);
        }
        assert_eq!(
            (pool.idle(), load.current(Limit::Connections)),
            (1, 1),
            "worker 1's closed connection was pruned, its unit given back"
        );
    }

    #[tokio::test]
    async fn each_worker_reuses_its_own_connections_and_any_may_make_room() {
        let (addr, _) = upstream().await;
        let load = Arc::new(ClusterLoad::default());
        let pool = ConnPool::in_cluster(&addr.to_string(), load.clone(), 2);
        let max = Maxima::default();
        let checkout = || pool.checkout::<RawConn>(Duration::from_secs(1), true, &max, &[]);
        // Worker 1 gives a connection back: worker 0 does not get it, worker 1 does.
        set_worker(1);
        let c = checkout().await.unwrap();
        pool.checkin(c);
        set_worker(0);
        assert_eq!((pool.idle(), RawConn::pop(&pool).is_none()), (1, true));
        let fresh = checkout().await.unwrap();
        assert_eq!(
            load.current(Limit::Connections),
            2,
            "worker 0 opened its own"
        );
        set_worker(1);
        assert!(RawConn::pop(&pool).is_some(), "worker 1 has its connection");
        // Room is made from any worker's idle connections.
        set_worker(0);
        pool.checkin(fresh);
        set_worker(1);
        assert!(
            pool.evict_one(),
            "worker 1 closed worker 0's idle connection"
        );
        // A pool made for fewer workers than there are gives the others its first stack.
        let small = ConnPool::new(&addr.to_string());
        small.checkin(checkout().await.unwrap());
        set_worker(0);
        assert!(RawConn::pop(&small).is_some());
    }
}
