//! The native HTTP/1.1 path: what most traffic takes, written like HAProxy's or Envoy's codec
//! rather than as two HTTP libraries back to back.
//!
//! A downstream connection is read into one buffer; a request head is parsed in place
//! (`httparse`, offsets only), routed on borrowed bytes, and written upstream as one buffer —
//! request line, the headers minus hop-by-hop ones, `x-forwarded-for`, `x-request-id`, and the
//! body — over a pooled raw connection. The response head is parsed the same way and sent
//! downstream with the first body bytes in one write; the rest of the body is relayed as it
//! comes (`Content-Length`, chunked passed through, or until close). No header map, no task
//! per upstream connection, no channels: two reads and two writes per exchange.
//!
//! Whatever this path does not handle goes to hyper for the rest of the connection, with the
//! bytes read so far: HTTP/2 prior knowledge, HTTP/1.0, `Upgrade`, `Expect`, chunked or large
//! (> 64 KiB) request bodies (hyper streams them), absolute-form targets, a request without
//! `Host`, a `Connection` header naming other headers, malformed requests (hyper answers 400).
//! The attempt loop (balancing, breakers, limits, timeouts, retries, fallback) is the same
//! [`forward`](super::forward::forward) for both.

use super::forward::{self, Exchange, Reply, Try, TryTimer};
use super::h1::{self, put_header, BodyLen, Chunks, Head, Parsed};
use super::headers;
use super::upstream::RawConn;
use super::{Asked, Done, Downstream};
use crate::config::listener::{wait_deadline, Timeouts};
use crate::config::ClusterRt;
use crate::drain::Drain;
use crate::endpoint::Endpoint;
use crate::server::Shared;
use bytes::{Buf, Bytes, BytesMut};
use hyper::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Request bodies up to this size are read whole before forwarding; larger ones go to hyper,
/// which streams them.
pub const MAX_BUFFERED_BODY: usize = 64 * 1024;
/// How long each read of a request body may take.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Reads ask for at least this much room.
const READ_CHUNK: usize = 8 * 1024;

/// The hyper server connections are handed to.
pub type HyperServer = hyper_util::server::conn::auto::Builder<TokioExecutor>;

/// Makes room in `buf` for a read.
pub(super) fn room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
}

/// A body with more than this left is read [`BODY_CHUNK`] at a time.
const BIG_BODY: u64 = 32 * 1024;
/// Room asked for by reads of a large body: fewer, larger reads (1 MiB responses moved about 3×
/// faster than with 8 KiB reads, on both downstream paths).
const BODY_CHUNK: usize = 64 * 1024;

/// Makes room in `buf` for a read of a body with `left` bytes to come (`u64::MAX`: unknown).
pub(super) fn room_for_body(buf: &mut BytesMut, left: u64) {
    if left > BIG_BODY && buf.capacity() - buf.len() < BODY_CHUNK / 2 {
        buf.reserve(BODY_CHUNK);
    } else {
        room(buf);
    }
}

/// How often a waiting connection reads its listener's timeouts again, at the latest.
const RECHECK: Duration = Duration::from_secs(60);

/// Closes after a reply of our own to a request that was still arriving: our side is shut
/// first, and what the client still sends is read and dropped for a moment, so the close does not
/// become a reset that loses the reply (as Envoy's delayed close).
async fn linger(mut io: TcpStream) {
    let _ = io.shutdown().await;
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while matches!(io.read(&mut scratch).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Reads more of `io` into `buf`: the count read (0 at end of stream).
async fn fill(io: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    room(buf);
    io.read_buf(buf).await
}

/// Serves one downstream connection.
pub async fn serve_connection(
    mut io: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    hyper: Arc<HyperServer>,
) {
    let mut drained = shared.drain.waiter();
    let down = Arc::new(Downstream::new(peer));
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut up = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(1024);
    let mut head = Head::default();
    // The listener's timeouts. Idle: no request in flight since `waiting_since`. A head, from
    // its first byte (`head_since`): the request-headers bound (Envoy's stream idle default
    // without one), and the idle timer no longer runs. One timer per connection, re-armed only
    // when it fires (or when a head's first byte brings the deadline forward), and at least
    // every RECHECK, when the listener's current timeouts are read again: a listener change
    // reaches open connections within that.
    // A connection past the listener's maximum age is closed at its next request boundary.
    let mut timeouts = shared.config.load().timeouts;
    let accepted = tokio::time::Instant::now();
    let mut waiting_since = accepted;
    let mut head_since: Option<tokio::time::Instant> = None;
    let expires = |t: &Timeouts| t.max_connection.map(|d| accepted + d);
    let deadline = |t: &Timeouts, waiting_since, head_since| {
        wait_deadline(
            waiting_since,
            head_since,
            t.idle_or(shared.idle_timeout),
            t.head(),
            expires(t),
        )
    };
    // What a connection handed to hyper keeps of the listener's timeouts.
    let handed = |t: &Timeouts| (t.idle_or(shared.idle_timeout), t.head(), expires(t));
    let arm = |at: Option<tokio::time::Instant>| {
        let recheck = tokio::time::Instant::now() + RECHECK;
        at.map_or(recheck, |at| at.min(recheck))
    };
    let timer = tokio::time::sleep_until(arm(deadline(&timeouts, waiting_since, None)));
    tokio::pin!(timer);
    loop {
        let n = loop {
            if !buf.is_empty() {
                match head.parse_request(&buf) {
                    Parsed::Done(n) => break n,
                    Parsed::Partial if buf.len() < h1::MAX_HEAD => {
                        if head_since.is_none() {
                            let now = tokio::time::Instant::now();
                            head_since = Some(now);
                            let at = now + timeouts.head();
                            if at < timer.deadline() {
                                timer.as_mut().reset(at);
                            }
                        }
                    }
                    _ => {
                        let t = handed(&timeouts);
                        return give_up(io, buf.freeze(), down, &shared, &hyper, t).await;
                    }
                }
            }
            // Bytes already received are read before a timer or the drain ends the wait, so a
            // request that beat them is served (with `connection: close`) rather than dropped.
            let read = tokio::select! {
                biased;
                r = fill(&mut io, &mut buf) => r,
                // Idle between requests: a drain closes the connection here.
                _ = drained.wait(), if buf.is_empty() => return,
                _ = timer.as_mut() => {
                    let cfg = shared.config.load();
                    // The listener now speaks TLS: this plaintext connection ends while idle,
                    // as Envoy drains a changed filter chain's connections.
                    if cfg.listener_tls.is_some() && buf.is_empty() {
                        return;
                    }
                    timeouts = cfg.timeouts;
                    let now = tokio::time::Instant::now();
                    match deadline(&timeouts, waiting_since, head_since) {
                        Some(d) if now >= d => {
                            if head_since.is_some() {
                                // As Envoy: 408, and the connection is closed.
                                let _ = write_local(
                                    &mut io,
                                    &mut out,
                                    StatusCode::REQUEST_TIMEOUT,
                                    "request headers not received in time\n",
                                    false,
                                    true,
                                    timeouts.stream_idle,
                                    None,
                                )
                                .await;
                                linger(io).await;
                            }
                            return;
                        }
                        d => timer.as_mut().reset(arm(d)),
                    }
                    continue;
                }
            };
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
        };
        head.own(buf.split_to(n).freeze());
        let f = h1::framing(&head);
        let len = match f.body {
            BodyLen::Length(n) if n <= MAX_BUFFERED_BODY as u64 => n as usize,
            _ => usize::MAX,
        };
        if f.unusual
            || len == usize::MAX
            || !head.http11
            || !head.target.of_bytes(&head.bytes).starts_with(b"/")
            || !f.host
        {
            let all = [&head.bytes[..], &buf[..]].concat();
            let t = handed(&timeouts);
            return give_up(io, all.into(), down, &shared, &hyper, t).await;
        }
        while buf.len() < len {
            match tokio::time::timeout(BODY_READ_TIMEOUT, fill(&mut io, &mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
        let body = buf.split_to(len);
        let close = f.close || shared.drain.draining();
        let state = ConnState {
            pipelined: &mut buf,
            up: &mut up,
            out: &mut out,
            drain: &shared.drain,
            expires: expires(&timeouts).map(tokio::time::Instant::into_std),
            ended: &mut waiting_since,
            timer: timer.as_mut(),
        };
        match exchange(&shared, &down, &head, &body, close, &mut io, state).await {
            Then::Next => {}
            Then::Close => {
                let _ = io.shutdown().await;
                return;
            }
            // Dropped with a zero linger: the client sees a reset, not an end.
            Then::Reset => return,
            // For hyper's client (an HTTP/2 or TLS cluster): the request, whole, goes first.
            Then::HandOff => {
                let all = [&head.bytes[..], &body[..], &buf[..]].concat();
                let t = handed(&timeouts);
                return give_up(io, all.into(), down, &shared, &hyper, t).await;
            }
        }
        // The idle deadline that starts now may come before the timer: after a head that came
        // in pieces, or when the timer was moved on to a try's deadline during the exchange.
        let idle_at = deadline(&timeouts, waiting_since, None);
        if head_since.take().is_some() || idle_at.is_some_and(|at| at < timer.deadline()) {
            timer.as_mut().reset(arm(idle_at));
        }
    }
}

/// A connection's buffers, kept across its requests, and the drain signal.
struct ConnState<'a> {
    /// Bytes read past the current request (a pipelined next one).
    pipelined: &'a mut BytesMut,
    /// The upstream request.
    up: &'a mut Vec<u8>,
    /// Response heads and local replies.
    out: &'a mut Vec<u8>,
    /// True once the proxy drains: the response in flight says `connection: close`.
    drain: &'a Drain,
    /// The connection's maximum age: a request started after it gets `connection: close`.
    expires: Option<Instant>,
    /// Set to when the exchange ended (the connection is idle from then).
    ended: &'a mut tokio::time::Instant,
    /// The connection's timer, which bounds the tries too (see [`ConnTimer`]).
    timer: Pin<&'a mut tokio::time::Sleep>,
}

/// A connection's one timer as [`forward`](forward::forward) bounds its tries with it. It is
/// moved to a try's deadline only when set later than that, and when it fires early (set for an
/// earlier request, or for the idle wait), it is moved on to the deadline. Back-to-back requests
/// on a connection then touch the timer wheel about twice per route timeout, not twice per
/// request as a timer per try does. The connection loop re-arms it for the idle wait when it
/// fires there, and brings it back after an exchange when the idle deadline comes sooner.
struct ConnTimer<'a>(Pin<&'a mut tokio::time::Sleep>);

impl TryTimer for ConnTimer<'_> {
    async fn within<F: std::future::Future>(
        &mut self,
        at: Instant,
        f: Pin<&mut F>,
    ) -> Option<F::Output> {
        let at = tokio::time::Instant::from_std(at);
        if self.0.deadline() > at {
            self.0.as_mut().reset(at);
        }
        let timer = &mut self.0;
        let passed = async move {
            loop {
                timer.as_mut().await;
                if tokio::time::Instant::now() >= at {
                    return;
                }
                timer.as_mut().reset(at);
            }
        };
        tokio::select! {
            biased;
            r = f => Some(r),
            () = passed => None,
        }
    }
}

/// Resolves when the client hangs up (end of stream or an error), reading whatever else it
/// sends (a pipelined request) into `buf` meanwhile.
async fn hung_up(io: &TcpStream, buf: &mut BytesMut) {
    loop {
        if io.readable().await.is_err() {
            return;
        }
        if buf.len() >= h1::MAX_HEAD + MAX_BUFFERED_BODY {
            // Enough read ahead; the rest waits in the socket.
            return std::future::pending().await;
        }
        room(buf);
        match io.try_read_buf(buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

/// What becomes of a downstream connection after an exchange.
enum Then {
    /// It carries the next request.
    Next,
    /// It is closed (our side shut first).
    Close,
    /// It is reset: a response cut short whose end the client could not otherwise tell.
    Reset,
    /// Nothing was sent: the request's route takes hyper's client, so hyper gets the
    /// connection, this request first.
    HandOff,
}

impl Then {
    fn from_ok(ok: bool) -> Then {
        match ok {
            true => Then::Next,
            false => Then::Close,
        }
    }
}

/// One request: route, forward, answer.
async fn exchange(
    shared: &Shared,
    down: &Downstream,
    head: &Head,
    body: &[u8],
    close: bool,
    io: &mut TcpStream,
    state: ConnState<'_>,
) -> Then {
    let ConnState {
        pipelined,
        up,
        out,
        drain,
        expires,
        ended,
        timer,
    } = state;
    let started = Instant::now();
    let cfg = shared.config.load_full();
    // Past its age, or the listener now speaks TLS (this connection is plaintext): the
    // response says `connection: close`.
    let close = close || expires.is_some_and(|at| started >= at) || cfg.listener_tls.is_some();
    let host = head.get("host").unwrap_or_default();
    // Checked as UTF-8 once (httparse has: method a token, target visible ASCII).
    let (method, target) = (head.method(), head.target());
    let Some(route) = cfg.routes.find(host, method, target, head) else {
        shared.no_route.fetch_add(1, Ordering::Relaxed);
        let ok = write_local(
            io,
            out,
            StatusCode::NOT_FOUND,
            "no route matched\n",
            false,
            close,
            cfg.timeouts.stream_idle,
            None,
        )
        .await;
        *ended = tokio::time::Instant::now();
        return Then::from_ok(ok);
    };
    // An HTTP/2 or TLS cluster (hyper's client carries it), or a direct response (answered on
    // hyper's path): one field read while there is none.
    if cfg.takes_hyper(route) {
        return Then::HandOff;
    }
    // The upstream request, whole: request line, headers, body.
    up.clear();
    let mut forwarded_for: Option<&[u8]> = None;
    let mut request_id: Option<&[u8]> = None;
    // A route's prefix rewrite: the target sent upstream, and the original in
    // `x-envoy-original-path` (Envoy's; one the client sent is dropped, rewritten or not).
    let rewritten = route.rewritten(target);
    let rewriting = rewritten.is_some();
    // The route's request header changes, if any.
    let ops = route.request_headers.as_deref();
    head.copy_lines_to(
        up,
        rewritten.as_deref().map(str::as_bytes),
        |name, value| {
            // What an edge Envoy drops from a client is dropped (`x-envoy-*` headers that would
            // steer an Envoy behind, `x-forwarded-client-cert`): `headers::dropped_from_client`,
            // which hyper's path asks too.
            if h1::is_hop_by_hop(name)
                || headers::dropped_from_client(name)
                || ops.is_some_and(|o| o.drops(name))
            {
                return false;
            }
            match name.len() {
                15 if name.eq_ignore_ascii_case(b"x-forwarded-for") => {
                    forwarded_for.get_or_insert(value);
                    return false;
                }
                12 if name.eq_ignore_ascii_case(b"x-request-id") => {
                    request_id.get_or_insert(value);
                }
                // Replaced by the connection's scheme (this path serves plaintext only), as an
                // edge Envoy (`use_remote_address`) replaces it: a client cannot claim HTTPS.
                17 if name.eq_ignore_ascii_case(b"x-forwarded-proto") => return false,
                _ => {}
            }
            true
        },
    );
    if let Some(o) = ops {
        o.put(up);
    }
    up.extend_from_slice(b"x-forwarded-proto: http\r\n");
    if rewriting {
        put_header(up, b"x-envoy-original-path", target.as_bytes());
    }
    if route.original_host {
        put_header(up, b"x-envoy-original-host", host);
    }
    up.extend_from_slice(b"x-forwarded-for: ");
    if let Some(prev) = forwarded_for {
        up.extend_from_slice(prev);
        up.extend_from_slice(b", ");
    }
    up.extend_from_slice(down.peer_ip.as_bytes());
    up.extend_from_slice(b"\r\nx-envoy-external-address: ");
    up.extend_from_slice(down.peer_ip.as_bytes());
    up.extend_from_slice(b"\r\n");
    let generated;
    let request_id = match request_id {
        Some(id) => id,
        None => {
            generated = headers::request_id_bytes();
            put_header(up, b"x-request-id", &generated);
            &generated[..]
        }
    };
    up.extend_from_slice(b"\r\n");
    up.extend_from_slice(body);

    let ctx = forward::pick_context(route, down.peer, head);
    let mut ex = Native::new(up.as_slice(), body.is_empty(), method == "HEAD");
    // A client that hangs up while the upstream works gets its request dropped (no verdict on
    // the endpoint), as hyper and Envoy do.
    let mut timer = ConnTimer(timer);
    let outcome = tokio::select! {
        biased;
        o = forward::forward(&cfg, route, ctx, &mut ex, started, &mut timer) => o,
        _ = hung_up(io, pipelined) => return Then::Close,
    };
    let close = close || drain.draining();
    let idle = route.stream_idle(cfg.timeouts.stream_idle);
    let mut cut = None;
    let (status, then) = match outcome.reply {
        Reply::Local(status, msg, overloaded) => (
            status.as_u16(),
            Then::from_ok(
                write_local(
                    io,
                    out,
                    status,
                    msg,
                    overloaded,
                    close,
                    idle,
                    route.response_headers.as_deref(),
                )
                .await,
            ),
        ),
        Reply::Upstream((conn, ep)) => {
            let status = conn.head.status;
            let relayed =
                match start_relay(out, conn, &ep, close, route.response_headers.as_deref()) {
                    // The common case: one write, no future for the rest made.
                    Start::Whole { down_close } => match write_within(io, out, idle).await {
                        Ok(()) if !down_close => Relayed::Open,
                        _ => Relayed::Closed,
                    },
                    Start::Partial(rest) => {
                        // The route's timeout runs until the response has been relayed whole, as
                        // Envoy's.
                        let bounds = Bounds {
                            started,
                            timeout: route.timeout,
                            idle,
                        };
                        relay_rest(io, out, rest, &ep, bounds, &mut timer).await
                    }
                    Start::Broken => Relayed::Closed,
                };
            match relayed {
                Relayed::Open => (status, Then::Next),
                Relayed::Closed => (status, Then::Close),
                Relayed::Cut { why, reset } => {
                    cut = Some(why);
                    (status, if reset { Then::Reset } else { Then::Close })
                }
            }
        }
    };
    let done = Done {
        started,
        route,
        cluster: outcome.cluster.as_ref(),
        endpoint: outcome.endpoint,
        status,
        upstream_error: cut.unwrap_or(outcome.upstream_error),
    };
    let now = done.record(shared, down.peer, || Asked {
        request_id: String::from_utf8_lossy(request_id).into_owned(),
        method: method.to_owned(),
        authority: String::from_utf8_lossy(host).into_owned(),
        path: target.to_owned(),
    });
    *ended = now.into();
    then
}

/// A reply of our own. False when the downstream connection cannot go on.
/// `ops`: the matched route's response header changes (Envoy makes them to its local replies
/// too).
#[allow(clippy::too_many_arguments)]
async fn write_local(
    io: &mut TcpStream,
    out: &mut Vec<u8>,
    status: StatusCode,
    msg: &str,
    overloaded: bool,
    close: bool,
    idle: Option<Duration>,
    ops: Option<&crate::router::HeaderOps>,
) -> bool {
    use std::io::Write;
    out.clear();
    let kept = |name: &str| ops.is_none_or(|o| !o.drops(name.as_bytes()));
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n{}content-length: {}\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        // An empty reply has no type (as Envoy's).
        if kept("content-type") && !msg.is_empty() {
            "content-type: text/plain\r\n"
        } else {
            ""
        },
        msg.len()
    );
    if overloaded && kept(headers::X_GW_OVERLOADED.as_str()) {
        put_header(out, headers::X_GW_OVERLOADED.as_str().as_bytes(), b"true");
    }
    if let Some(o) = ops {
        o.put(out);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(msg.as_bytes());
    write_within(io, out, idle).await.is_ok() && !close
}

/// How a relay ended.
enum Relayed {
    /// The response went whole; the downstream connection may carry another request.
    Open,
    /// The downstream connection is to close: it failed, its response says so, or the client
    /// stopped reading for longer than the stream idle timeout.
    Closed,
    /// The route's timeout passed before the response was relayed whole, or the upstream sent
    /// nothing for the stream idle timeout (`why`, for stats and the access log): the connection
    /// ends mid-response, as Envoy resets the stream. `reset` when the client could not tell
    /// the end from a whole response (a body delimited by the close): it gets a reset instead.
    Cut { why: &'static str, reset: bool },
}

/// What bounds a response's relay: the route's timeout from when the request started (a
/// deadline for all of it) and the listener's stream idle timeout (for each step: a write
/// downstream, a read upstream).
#[derive(Clone, Copy)]
struct Bounds {
    started: Instant,
    timeout: Option<Duration>,
    idle: Option<Duration>,
}

/// `f`'s output, or `None` when `idle` passes first (`None`: no bound).
async fn within_idle<F: std::future::Future>(idle: Option<Duration>, f: F) -> Option<F::Output> {
    match idle {
        Some(d) => tokio::time::timeout(d, f).await.ok(),
        None => Some(f.await),
    }
}

/// How much of `buf` the socket takes at once (0 when it would block): no future, no timer.
fn write_at_once(io: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    match io.try_write(buf) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
        r => r,
    }
}

/// A read of the upstream's body, bounded by `idle`: the count read, or how the relay ends
/// (closed when the read fails, cut when `idle` passes first).
async fn read_within(conn: &mut RawConn, idle: Option<Duration>) -> Result<usize, Relayed> {
    within_idle(idle, conn.io.read_buf(&mut conn.buf))
        .await
        .ok_or(Relayed::Cut {
            why: "stream_idle_timeout",
            reset: false,
        })?
        .map_err(|_| Relayed::Closed)
}

/// Writes `buf` downstream; a client that takes none of it for `idle` is given up (closed).
/// What the socket takes at once costs no timer (the common case).
async fn write_within(
    io: &mut TcpStream,
    buf: &[u8],
    idle: Option<Duration>,
) -> Result<(), Relayed> {
    if buf.is_empty() {
        return Ok(());
    }
    let n = write_at_once(io, buf).map_err(|_| Relayed::Closed)?;
    if n == buf.len() {
        return Ok(());
    }
    within_idle(idle, io.write_all(&buf[n..]))
        .await
        .ok_or(Relayed::Closed)?
        .map_err(|_| Relayed::Closed)
}

/// How the relay of a response starts.
enum Start {
    /// The whole response is in `out` (the upstream connection released): one write, then the
    /// downstream connection goes on unless `down_close`.
    Whole { down_close: bool },
    /// The head is in `out`; the body goes on ([`relay_rest`]).
    Partial(Relay),
    /// The body's framing is broken.
    Broken,
}

/// A response whose body is still coming, as [`start_relay`] leaves it.
struct Relay {
    conn: RawConn,
    body: Body,
    /// Body bytes at hand in `conn.buf`, and whether the body ends with them.
    n: usize,
    ended: bool,
    down_close: bool,
}

/// Puts the upstream's response head in `out`, with the body when all of it is at hand (the
/// common case: the upstream connection goes back to its pool before the client is sent the
/// response, so a request waiting for a connection does not wait on the client's socket, nor a
/// client that has its answer find the connection still out).
fn start_relay(
    out: &mut Vec<u8>,
    mut conn: RawConn,
    ep: &Endpoint,
    close: bool,
    ops: Option<&crate::router::HeaderOps>,
) -> Start {
    let framing = conn.body;
    out.clear();
    match ops {
        None => conn.head.copy_end_to_end(out, conn.named, |_| false),
        // The route's response header changes.
        Some(o) => {
            conn.head
                .copy_end_to_end(out, conn.named, |name| o.drops(name));
            o.put(out);
        }
    }
    // Chunks pass through as they came, so their framing header goes with them.
    if framing == BodyLen::Chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    let down_close = close || framing == BodyLen::Close;
    if down_close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let mut body = Body {
        framing,
        chunks: Chunks::default(),
        left: match framing {
            BodyLen::Length(n) => n,
            _ => u64::MAX,
        },
    };
    let Ok((n, ended)) = body.take(&conn.buf) else {
        return Start::Broken;
    };
    if n <= 16 * 1024 && ended {
        out.extend_from_slice(&conn.buf[..n]);
        conn.buf.advance(n);
        release(conn, ep);
        return Start::Whole { down_close };
    }
    Start::Partial(Relay {
        conn,
        body,
        n,
        ended,
        down_close,
    })
}

/// Sends a response [`start_relay`] began downstream: the head and the body bytes at hand, then
/// the rest of the body as it arrives, within `bounds`. The upstream connection goes back to its
/// pool when the body ended cleanly.
async fn relay_rest(
    io: &mut TcpStream,
    out: &mut Vec<u8>,
    relay: Relay,
    ep: &Endpoint,
    bounds: Bounds,
    timer: &mut ConnTimer<'_>,
) -> Relayed {
    let Relay {
        mut conn,
        mut body,
        n,
        ended,
        down_close,
    } = relay;
    let (idle, framing) = (bounds.idle, body.framing);
    let rest = async {
        // The head with the body bytes at hand, or without them when they are many.
        let at_hand = if n <= 16 * 1024 {
            out.extend_from_slice(&conn.buf[..n]);
            0
        } else {
            n
        };
        write_within(io, out, idle).await?;
        write_within(io, &conn.buf[..at_hand], idle).await?;
        conn.buf.advance(n);
        body.left = body.left.saturating_sub(n as u64);
        let mut ended = ended;
        while !ended {
            room_for_body(&mut conn.buf, body.left);
            match read_within(&mut conn, idle).await? {
                0 if body.framing == BodyLen::Close => break,
                0 => return Err(Relayed::Closed),
                _ => {}
            }
            let (n, end) = body.take(&conn.buf).map_err(|()| Relayed::Closed)?;
            write_within(io, &conn.buf[..n], idle).await?;
            conn.buf.advance(n);
            body.left = body.left.saturating_sub(n as u64);
            ended = end;
        }
        if ended {
            release(conn, ep);
        }
        Ok(match down_close {
            true => Relayed::Closed,
            false => Relayed::Open,
        })
    };
    let relayed = match bounds.timeout {
        Some(t) => timer
            .within(bounds.started + t, pin!(rest))
            .await
            .unwrap_or(Err(Relayed::Cut {
                why: "timeout",
                reset: false,
            })),
        None => rest.await,
    };
    match relayed.unwrap_or_else(|ended| ended) {
        // A body delimited by the close would look whole if it ended with one.
        Relayed::Cut { why, .. } if framing == BodyLen::Close => {
            let _ = io.set_zero_linger();
            Relayed::Cut { why, reset: true }
        }
        relayed => relayed,
    }
}

/// A response body's framing as it is relayed.
struct Body {
    framing: BodyLen,
    chunks: Chunks,
    /// Bytes left of a counted body.
    left: u64,
}

impl Body {
    /// How much of `buf` is body, and whether the body ends there.
    fn take(&mut self, buf: &BytesMut) -> Result<(usize, bool), ()> {
        match self.framing {
            BodyLen::Length(_) => {
                let n = (buf.len() as u64).min(self.left) as usize;
                Ok((n, n as u64 == self.left))
            }
            BodyLen::Chunked => {
                let n = self.chunks.scan(buf).map_err(|_| ())?;
                Ok((n, self.chunks.done()))
            }
            BodyLen::Close => Ok((buf.len(), false)),
        }
    }
}

/// Puts a connection whose response has been read whole back in its endpoint's pool, unless it
/// is to close or holds bytes past the response.
fn release(mut conn: RawConn, ep: &Endpoint) {
    if !conn.close && conn.buf.is_empty() {
        conn.reused = true;
        ep.pool.checkin(conn);
    }
}

/// The native path's way of sending one try: a serialized request without a body, or with one
/// held whole, over a raw pooled connection. Held whole, it may be sent as often as the route's
/// retries say.
pub(super) struct Native<'a> {
    request: &'a [u8],
    bodyless: bool,
    head_request: bool,
}

impl<'a> Native<'a> {
    /// Sends `request` (head and whole body); `bodyless` when it has no body (only then is it
    /// sent again unasked when a pooled connection turns out closed).
    pub(super) fn new(request: &'a [u8], bodyless: bool, head_request: bool) -> Native<'a> {
        Native {
            request,
            bodyless,
            head_request,
        }
    }
}

/// Why a round trip got no response head.
enum Failed {
    /// Nothing came back: on a reused connection, most likely closed while idle.
    Unanswered,
    /// The connection broke, or sent something that is not an HTTP/1 response.
    Broken,
}

impl Native<'_> {
    /// Writes the request on `conn` and reads the response head into `conn.head`.
    async fn round_trip(&self, conn: &mut RawConn) -> Result<(), Failed> {
        // Most requests fit the socket at once: no future for the write is made.
        let sent = write_at_once(&conn.io, self.request).map_err(|_| Failed::Unanswered)?;
        if sent < self.request.len() {
            conn.io
                .write_all(&self.request[sent..])
                .await
                .map_err(|_| Failed::Unanswered)?;
        }
        let mut answered = false;
        loop {
            if !conn.buf.is_empty() {
                answered = true;
                match conn.head.parse_response(&conn.buf) {
                    Parsed::Done(n) => {
                        conn.head.own(conn.buf.split_to(n).freeze());
                        match conn.head.status {
                            101 => return Err(Failed::Broken),
                            // Interim responses (100, 103) are dropped.
                            s if s < 200 => continue,
                            _ => {}
                        }
                        let f = h1::framing(&conn.head);
                        if f.bad_length {
                            return Err(Failed::Broken);
                        }
                        conn.body = h1::response_body(&conn.head, &f, self.head_request);
                        conn.close = f.close;
                        conn.named = f.named;
                        return Ok(());
                    }
                    Parsed::Partial if conn.buf.len() < h1::MAX_HEAD => {}
                    _ => return Err(Failed::Broken),
                }
            }
            match fill(&mut conn.io, &mut conn.buf).await {
                Ok(n) if n > 0 => {}
                _ if answered => return Err(Failed::Broken),
                _ => return Err(Failed::Unanswered),
            }
        }
    }
}

impl Exchange for Native<'_> {
    type Answer = (RawConn, Arc<Endpoint>);

    fn next(&mut self) -> bool {
        true
    }

    fn again(&self) -> bool {
        true
    }

    async fn send(&mut self, cluster: &ClusterRt, ep: &Arc<Endpoint>) -> Try<Self::Answer> {
        let mut conn: RawConn = match forward::connection(cluster, ep, true).await {
            Ok(c) => c,
            Err(t) => return t,
        };
        match self.round_trip(&mut conn).await {
            Ok(()) => Try::Answer((conn, ep.clone())),
            // A pooled connection closed under us (keep-alive race) and nothing came back: a
            // request with no body goes once more on a fresh connection. (One with a body may
            // have been acted on; only the route's retries send it again.)
            Err(Failed::Unanswered) if conn.reused && self.bodyless => {
                drop(conn);
                match forward::connection::<RawConn, _>(cluster, ep, false).await {
                    Ok(mut fresh) => match self.round_trip(&mut fresh).await {
                        Ok(()) => Try::Answer((fresh, ep.clone())),
                        Err(_) => Try::Reset,
                    },
                    Err(t) => t,
                }
            }
            Err(_) => Try::Reset,
        }
    }

    fn status(a: &Self::Answer) -> u16 {
        a.0.head.status
    }
}

/// Serves a client connection to a TLS listener: the handshake (bounded by the filter chain's
/// `transport_socket_connect_timeout`, else as a request head is; given up when the proxy
/// drains), then hyper for the rest of its life, HTTP/2 or HTTP/1.1 as ALPN agreed (without
/// ALPN, by what the client speaks).
pub async fn serve_tls(
    io: TcpStream,
    peer: SocketAddr,
    tls: Arc<crate::tls::ServerTls>,
    timeouts: Timeouts,
    shared: Arc<Shared>,
    hyper: Arc<HyperServer>,
) {
    use crate::tls::HandshakeError;
    let accepted = tokio::time::Instant::now();
    let mut drained = shared.drain.waiter();
    let limit = tls.handshake_timeout.unwrap_or_else(|| timeouts.head());
    let stream = tokio::select! {
        r = tokio::time::timeout(limit, tls.accept(io)) => match r {
            Ok(Ok(s)) => s,
            // Closed before its hello (a port probe): no handshake to count.
            Ok(Err(HandshakeError::Closed)) => return,
            Ok(Err(HandshakeError::Failed(e))) => {
                shared.tls_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                shared.tls_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = drained.wait() => return,
    };
    let protocol = match stream.get_ref().1.alpn_protocol() {
        Some(b"h2") => Some(hyper::Version::HTTP_2),
        Some(b"http/1.1") => Some(hyper::Version::HTTP_11),
        _ => None,
    };
    let down = Arc::new(Downstream::new_tls(peer));
    let handed = (
        timeouts.idle_or(shared.idle_timeout),
        timeouts.head(),
        timeouts.max_connection.map(|d| accepted + d),
    );
    let under = Listening {
        tls: Some(tls.id),
        protocol,
    };
    drop(drained);
    hand_off(stream, Bytes::new(), down, shared, &hyper, handed, under).await;
}

/// What a connection handed to hyper was accepted under.
struct Listening {
    /// The listener's TLS settings (`None`: plaintext); when they change, the connection is
    /// drained, as Envoy drains a changed filter chain's connections.
    tls: Option<u64>,
    /// The protocol ALPN agreed, if any (else hyper tells them apart by the first bytes).
    protocol: Option<hyper::Version>,
}

impl Listening {
    const PLAIN: Listening = Listening {
        tls: None,
        protocol: None,
    };
}

/// Connections under TLS settings that changed are drained over up to this long.
const CHANGE_SPREAD: Duration = Duration::from_secs(5);

/// Resolves once the listener's TLS settings are no longer `under`.
async fn tls_changed(shared: &Shared, under: Option<u64>) {
    let mut told = shared.listener_tls.subscribe();
    // The sender lives in `Shared`, which the caller holds: `wait_for` cannot fail; were it to,
    // the connection would go on as the drain decides.
    if told.wait_for(|now| *now != under).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// [`hand_off`] of a plaintext connection the native path does not serve (`read`: the bytes it
/// has read).
async fn give_up(
    io: TcpStream,
    read: Bytes,
    down: Arc<Downstream>,
    shared: &Arc<Shared>,
    hyper: &HyperServer,
    t: (Option<Duration>, Duration, Option<tokio::time::Instant>),
) {
    hand_off(io, read, down, shared.clone(), hyper, t, Listening::PLAIN).await;
}

/// Gives the connection to hyper for the rest of its life, bytes read so far first.
async fn hand_off<I: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: I,
    read: Bytes,
    down: Arc<Downstream>,
    shared: Arc<Shared>,
    hyper: &HyperServer,
    (idle, head, expires): (Option<Duration>, Duration, Option<tokio::time::Instant>),
    under: Listening,
) {
    use futures::FutureExt;
    // hyper's HTTP/1 header read timeout runs from when it starts waiting for a head, so on
    // the connections it serves one timer bounds both the wait between requests and the head
    // (the shorter of the two), and it closes without a 408.
    let mut builder = match under.protocol {
        Some(hyper::Version::HTTP_2) => hyper.clone().http2_only(),
        Some(_) => hyper.clone().http1_only(),
        None => hyper.clone(),
    };
    builder
        .http1()
        .header_read_timeout(idle.map_or(head, |i| i.min(head)));
    let activity = Arc::new(Activity::new());
    let active = activity.clone();
    let drain = shared.clone();
    let mut drained = drain.drain.waiter();
    // An upgrade's tunnel, run here once hyper has handed the socket over after its `101`.
    let tunnel = super::tunnel::Slot::default();
    let upgraded = tunnel.clone();
    let svc = hyper::service::service_fn(move |req| {
        let stream = Active::start(&active);
        let upgraded = upgraded.clone();
        // Boxed: hyper moves the future it is given into a task per HTTP/2 stream, and the
        // unboxed state machine (~4 KiB) was copied several times per request on the way.
        Box::pin(super::handle(shared.clone(), down.clone(), req)).map(move |mut resp| {
            if let Some(t) = resp.extensions_mut().remove::<super::tunnel::Slot>() {
                if let Some(f) = t.take() {
                    upgraded.put(f);
                }
            }
            Ok::<_, std::convert::Infallible>(resp.map(|body| Tracked {
                body,
                _stream: stream,
            }))
        })
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(Rewind { read, io }), svc);
    tokio::pin!(conn);
    // The connection first: bytes already read (a request the native path handed over) are
    // taken up before any of the others can shut it down (a shutdown while hyper still reads
    // the protocol's first bytes would drop them unanswered).
    let ended = tokio::select! {
        biased;
        _ = conn.as_mut() => true,
        _ = drained.wait() => false,
        // No request in flight for the idle timeout: HTTP/2 gets GOAWAY, then the close.
        _ = activity.idle_for(idle) => false,
        // Past the maximum age: HTTP/2 gets GOAWAY and its streams finish; HTTP/1.1 ends
        // after the response in flight (hyper's graceful shutdown turns keep-alive off).
        _ = tokio::time::sleep_until(expires.unwrap_or_else(tokio::time::Instant::now)), if expires.is_some() => false,
        // The listener turned TLS on or off, or changed its certificates: drained, the
        // connections spread over a few seconds (a certificate rotation does not make every
        // client reconnect at once).
        _ = async {
            tls_changed(&drain, under.tls).await;
            let spread = rand::random::<u64>() % CHANGE_SPREAD.as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(spread)).await;
        } => false,
    };
    if !ended {
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
    if let Some(t) = tunnel.take() {
        t.await;
    }
}

/// Requests in flight on a connection hyper serves, and since when it has had none.
struct Activity {
    active: AtomicUsize,
    /// When the last request ended, in µs since `base`.
    idle_since: AtomicU64,
    base: tokio::time::Instant,
    /// Signalled when the last request in flight ends.
    ended: tokio::sync::Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            base: tokio::time::Instant::now(),
            ended: tokio::sync::Notify::new(),
        }
    }

    /// Resolves once no request has been in flight for `timeout` (never for `None`).
    async fn idle_for(&self, timeout: Option<Duration>) {
        let Some(timeout) = timeout else {
            return std::future::pending().await;
        };
        loop {
            let ended = self.ended.notified();
            let since = self.idle_since.load(Ordering::Acquire);
            if self.active.load(Ordering::Acquire) > 0 {
                ended.await;
                continue;
            }
            tokio::time::sleep_until(self.base + Duration::from_micros(since) + timeout).await;
            if self.active.load(Ordering::Acquire) == 0
                && self.idle_since.load(Ordering::Acquire) == since
            {
                return;
            }
        }
    }
}

/// One request in flight (until its response body is done or dropped).
struct Active(Arc<Activity>);

impl Active {
    fn start(a: &Arc<Activity>) -> Active {
        a.active.fetch_add(1, Ordering::AcqRel);
        Active(a.clone())
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        let a = &self.0;
        let now = a.base.elapsed().as_micros() as u64;
        a.idle_since.store(now, Ordering::Release);
        if a.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.ended.notify_waiters();
        }
    }
}

/// A response body that keeps its request counted as in flight.
struct Tracked<B> {
    body: B,
    _stream: Active,
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// A socket with bytes already read from it put back in front.
struct Rewind<I> {
    read: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewind<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.read.is_empty() {
            let n = self.read.len().min(buf.remaining());
            buf.put_slice(&self.read[..n]);
            self.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewind<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = l.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let client = TcpStream::connect(addr)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let (server, _) = l.accept().await.unwrap_or_else(|e| panic!("{e}"));
        (client, server)
    }

    #[tokio::test]
    async fn a_pipelined_request_read_while_watching_for_a_hang_up_is_kept() {
        let (mut client, server) = pair().await;
        let mut buf = BytesMut::new();
        client
            .write_all(b"GET /next HTTP/1.1\r\n")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        server.readable().await.unwrap_or_else(|e| panic!("{e}"));
        // More bytes are not a hang-up: they are kept for the next request.
        assert!(hung_up(&server, &mut buf).now_or_never().is_none());
        assert_eq!(&buf[..], b"GET /next HTTP/1.1\r\n");
        // The client closing is.
        client.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
        hung_up(&server, &mut buf).await;
        assert_eq!(&buf[..], b"GET /next HTTP/1.1\r\n");
    }
}
