//! The attempt loop: pick an endpoint, send, and retry per the route's policy.
//!
//! A retry needs the request again: its body whole, as the native path holds it, or as the hyper
//! path copied it going up ([`replay`](super::replay), Envoy's retry buffer); a request whose body
//! cannot be had again whole is not retried (never sent twice with a partial body). Each try is
//! bounded by the per-try timeout and the route's overall timeout; a timeout answers 504. When the
//! cluster has no usable endpoint its fallback cluster (if any) is tried; with none, 503.

use super::replay::{Again, Recording, Teed};
use super::upstream::{CheckoutError, Pooled, Tunnel, UpConn};
use super::ReqBody;
use crate::config::{ClusterRt, RuntimeConfig};
use crate::endpoint::Endpoint;
use crate::lb::{fast_rand, hash_key, PickContext};
use crate::limits::{Held, Limit};
use crate::router::{HashOn, Headers, Retry, Route};
use http_body_util::Either;
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Instant;

/// What goes downstream: the upstream's answer, or a reply of our own.
pub enum Reply<A> {
    /// An upstream answered (its body not yet read).
    Upstream(A),
    /// A local reply: status, body, and whether a cluster limit refused the request.
    Local(StatusCode, &'static str, bool),
}

/// How one request ended, for stats and the access log.
pub struct Outcome<A> {
    /// What goes downstream.
    pub reply: Reply<A>,
    /// The cluster that answered (or failed).
    pub cluster: Option<Arc<ClusterRt>>,
    /// Index of the endpoint in that cluster.
    pub endpoint: Option<usize>,
    /// Why the upstream failed; empty when it answered.
    pub upstream_error: &'static str,
}

impl<A> Outcome<A> {
    fn local(
        status: StatusCode,
        msg: &'static str,
        cluster: Option<Arc<ClusterRt>>,
        endpoint: Option<usize>,
        err: &'static str,
    ) -> Outcome<A> {
        Outcome {
            reply: Reply::Local(status, msg, false),
            cluster,
            endpoint,
            upstream_error: err,
        }
    }
}

/// One way of carrying a request upstream: hyper's client (any downstream protocol) or the
/// native HTTP/1 path. [`forward`] decides where and how often; this sends one try.
pub trait Exchange {
    /// An upstream's answer, body unread.
    type Answer;
    /// Readies the request for the next try; false when it cannot be sent (again).
    fn next(&mut self) -> bool;
    /// Whether the request could be sent once more (asked before a retry is decided on).
    fn again(&self) -> bool;
    /// Sends the readied request to `ep` of `cluster` and waits for the response head.
    fn send(
        &mut self,
        cluster: &ClusterRt,
        ep: &Arc<Endpoint>,
    ) -> impl std::future::Future<Output = Try<Self::Answer>>;
    /// The answer's status.
    fn status(a: &Self::Answer) -> u16;
    /// The gRPC status in the answer's headers (a trailers-only answer), if any.
    fn grpc_status(_: &Self::Answer) -> Option<u32> {
        None
    }
    /// Whether the request's body may still be streaming up while a try waits (its progress
    /// then counts as the stream's, so the stream idle timeout does not bound the wait).
    fn streams_body(&self) -> bool {
        false
    }
    /// Whether the route's per-try timeout bounds the try about to be sent from its start:
    /// Envoy starts it once the request has been read whole, so not while a body may still be
    /// streaming up (then it starts at [`body_end`](Self::body_end), if the exchange can tell).
    fn per_try_bounded(&self) -> bool {
        true
    }
    /// What tells when the request's body, still streaming, has ended.
    fn body_end(&self) -> Option<Recording> {
        None
    }
}

/// How [`forward`] bounds a try by its deadline.
pub trait TryTimer {
    /// `f`'s output, or `None` when `at` passes first. `f` is pinned by the caller, so the
    /// try's future is not copied into this one's.
    fn within<F: Future>(
        &mut self,
        at: Instant,
        f: Pin<&mut F>,
    ) -> impl Future<Output = Option<F::Output>>;
}

/// A timer of its own for each try.
pub struct PerTry;

impl TryTimer for PerTry {
    async fn within<F: Future>(&mut self, at: Instant, f: Pin<&mut F>) -> Option<F::Output> {
        tokio::time::timeout_at(at.into(), f).await.ok()
    }
}

/// The balancer's input for this request: the hash of what the route hashes on.
pub fn pick_context(route: &Route, client: SocketAddr, headers: &impl Headers) -> PickContext {
    PickContext {
        hash: route
            .hash_on
            .as_ref()
            .and_then(|h| hash_of(h, client, headers)),
    }
}

fn hash_of(h: &HashOn, client: SocketAddr, headers: &impl Headers) -> Option<u64> {
    match h {
        HashOn::SourceIp => Some(match client.ip() {
            std::net::IpAddr::V4(ip) => hash_key(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash_key(&ip.octets()),
        }),
        HashOn::Header(name) => headers.values(name.as_str()).next().map(hash_key),
        HashOn::Cookie(name) => headers
            .values("cookie")
            .filter_map(|v| std::str::from_utf8(v).ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| {
                kv.trim()
                    .strip_prefix(name.as_str())?
                    .strip_prefix('=')
                    .map(|v| hash_key(v.as_bytes()))
            }),
    }
}

/// Whether `r` retries an answer of status `s` (and gRPC status `grpc`, asked only when the
/// route retries on some).
fn retry_on_answer(r: &Retry, s: u16, grpc: impl FnOnce() -> Option<u32>) -> bool {
    (r.on_5xx && (500..600).contains(&s))
        || (r.on_gateway_error && matches!(s, 502..=504))
        || (r.on_retriable_4xx && s == 409)
        || (r.on_grpc != 0 && grpc().is_some_and(|c| c < 32 && r.on_grpc & (1 << c) != 0))
}

/// What one try gave.
pub enum Try<A> {
    /// A response head.
    Answer(A),
    /// No connection could be made.
    ConnectFailed,
    /// The connection failed before a response head.
    Reset,
    /// The per-try or route timeout passed first.
    TimedOut,
    /// The cluster's pending queue is full.
    Overflow,
}

/// A connection of kind `C` to `ep` for one try (`reuse`: an idle one will do), or how the try
/// ends without one.
pub async fn connection<C: Pooled, A>(
    cluster: &ClusterRt,
    ep: &Endpoint,
    reuse: bool,
) -> Result<C, Try<A>> {
    ep.pool
        .checkout(
            cluster.connect_timeout,
            reuse,
            &cluster.maxima,
            &cluster.endpoints,
        )
        .await
        .map_err(checkout_failed)
}

/// How a try ends that got no connection.
fn checkout_failed<A>(e: CheckoutError) -> Try<A> {
    match e {
        CheckoutError::Overflow => Try::Overflow,
        CheckoutError::Connect(_) => Try::ConnectFailed,
    }
}

/// hyper's client: a request with a body (which it streams), from any downstream protocol, over
/// a pooled HTTP/1.1 connection, or over an HTTP/2 cluster's shared connection (any request
/// whose route may reach one). When the route may retry, the head is kept and the body copied
/// as it goes up ([`Teed`]); a retry sends the copy, once the body went up whole within
/// [`RETRY_BUFFER`](super::replay::RETRY_BUFFER). A request no connection could be had for is
/// kept as it is for the next try, body and all.
pub struct HyperExchange {
    first: Option<(Parts, Incoming)>,
    again: Option<(hyper::Method, hyper::Uri, hyper::HeaderMap)>,
    copy: Option<Recording>,
    ready: Option<Request<ReqBody>>,
    /// Whether the body may still be streaming up while a try waits.
    streams: bool,
}

impl HyperExchange {
    /// `parts` + `body`, under the route's `retry` policy: when it may send the request again,
    /// its head and body are copied; with a per-try timeout (which runs from the body's end),
    /// the body's end is watched.
    pub fn new(parts: Parts, body: Incoming, retry: Option<&Retry>) -> HyperExchange {
        let streams = !body.is_end_stream();
        let retried = retry.is_some_and(|r| r.attempts > 0);
        let per_try = retry.is_some_and(|r| r.per_try_timeout.is_some());
        let again = retried.then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.headers.clone(),
            )
        });
        HyperExchange {
            first: Some((parts, body)),
            again,
            copy: match (streams, retried, per_try) {
                (true, true, _) => Some(Recording::default()),
                // Its end is watched for the per-try timeout; nothing is kept.
                (true, false, true) => Some(Recording::ends_only()),
                _ => None,
            },
            ready: None,
            streams,
        }
    }
}

/// hyper's answer: the response, its connection (HTTP/1.1: back to the endpoint's pool when
/// the body has been read; HTTP/2: the stream, counted on its shared connection) and endpoint.
pub type HyperAnswer = (Response<Incoming>, UpConn, Arc<Endpoint>);

impl Exchange for HyperExchange {
    type Answer = HyperAnswer;

    fn next(&mut self) -> bool {
        if self.ready.is_some() {
            // Not sent: no connection could be had for it.
            return true;
        }
        self.ready = match (self.first.take(), &self.again) {
            (Some((parts, body)), _) => Some(Request::from_parts(
                parts,
                Either::Left(Teed::new(body, self.copy.clone())),
            )),
            (None, Some((method, uri, headers))) => {
                let body = match &self.copy {
                    Some(copy) => copy.again(),
                    None => Some(Again::empty()),
                };
                body.map(|body| {
                    let mut r = Request::new(Either::Right(body));
                    *r.method_mut() = method.clone();
                    *r.uri_mut() = uri.clone();
                    *r.headers_mut() = headers.clone();
                    r
                })
            }
            (None, None) => None,
        };
        self.ready.is_some()
    }

    fn again(&self) -> bool {
        self.ready.is_some()
            || (self.again.is_some() && self.copy.as_ref().is_none_or(Recording::whole))
    }

    async fn send(&mut self, cluster: &ClusterRt, ep: &Arc<Endpoint>) -> Try<HyperAnswer> {
        if cluster.http2 {
            return send_h2(&mut self.ready, cluster, ep).await;
        }
        let mut conn: SendRequest<ReqBody> = match connection(cluster, ep, true).await {
            Ok(c) => c,
            Err(t) => return t,
        };
        let Some(req) = self.ready.take() else {
            return Try::Reset;
        };
        match conn.try_send_request(req).await {
            Ok(resp) => Try::Answer((resp, UpConn::H1(conn), ep.clone())),
            // Handed back unsent: a pooled connection closed under us (keep-alive race).
            // The request never left, so one fresh connection may carry it, body or not.
            Err(mut e) => match e.take_message() {
                Some(req) => {
                    match connection::<SendRequest<ReqBody>, _>(cluster, ep, false).await {
                        Ok(mut fresh) => match fresh.send_request(req).await {
                            Ok(resp) => Try::Answer((resp, UpConn::H1(fresh), ep.clone())),
                            Err(_) => Try::Reset,
                        },
                        // Still unsent: kept for the next try, body and all.
                        Err(t) => {
                            self.ready = Some(req);
                            t
                        }
                    }
                }
                None => Try::Reset,
            },
        }
    }

    fn status(a: &HyperAnswer) -> u16 {
        a.0.status().as_u16()
    }

    fn grpc_status(a: &HyperAnswer) -> Option<u32> {
        std::str::from_utf8(a.0.headers().get("grpc-status")?.as_bytes())
            .ok()?
            .parse()
            .ok()
    }

    fn streams_body(&self) -> bool {
        self.streams
    }

    fn body_end(&self) -> Option<Recording> {
        self.copy.clone()
    }

    fn per_try_bounded(&self) -> bool {
        // A retry sends the copy, whole; the downstream's body may still be streaming.
        !self.streams
            || self
                .ready
                .as_ref()
                .is_some_and(|r| matches!(r.body(), Either::Right(_)))
    }
}

impl Drop for HyperExchange {
    fn drop(&mut self) {
        // No retry follows: what the first try still sends up is not kept.
        if let Some(copy) = &self.copy {
            copy.abandon();
        }
    }
}

/// Sends the request in `slot` (HTTP/1.1 in origin form, as made for upstreams) on one of `ep`'s
/// shared HTTP/2 connections: the `Host` (checked by `handle`) becomes the `:authority`. When no
/// connection can be had the request stays in `slot`, unsent; one handed back unsent (the
/// connection had received GOAWAY, or closed) goes once more, on a fresh connection.
async fn send_h2(
    slot: &mut Option<Request<ReqBody>>,
    cluster: &ClusterRt,
    ep: &Arc<Endpoint>,
) -> Try<HyperAnswer> {
    let h2 = |fresh| ep.pool.h2(cluster.connect_timeout, &cluster.maxima, fresh);
    let (mut conn, mut stream) = match h2(false).await {
        Ok(c) => c,
        Err(e) => return checkout_failed(e),
    };
    let Some(req) = slot.take() else {
        return Try::Reset;
    };
    let (mut parts, body) = req.into_parts();
    let host = parts.headers.remove(hyper::header::HOST);
    let authority = host
        .as_ref()
        .and_then(|h| h.to_str().ok())
        .unwrap_or(ep.address.as_str());
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = match hyper::Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
    {
        Ok(u) => u,
        Err(_) => return Try::Reset,
    };
    parts.version = hyper::Version::HTTP_2;
    let mut req = Request::from_parts(parts, body);
    for fresh in [false, true] {
        if fresh {
            (conn, stream) = match h2(true).await {
                Ok(c) => c,
                Err(e) => return checkout_failed(e),
            };
        }
        match conn.try_send_request(req).await {
            Ok(resp) => return Try::Answer((resp, UpConn::H2(stream), ep.clone())),
            Err(mut e) => match e.take_message() {
                Some(unsent) => req = unsent,
                None => return Try::Reset,
            },
        }
    }
    Try::Reset
}

/// An HTTP/1.1 upgrade request, sent once over a connection of its own ([`Tunnel`]).
pub struct UpgradeExchange {
    ready: Option<Request<ReqBody>>,
}

impl UpgradeExchange {
    /// `parts` (with their `Upgrade` and `Connection: upgrade`) + `body`, for the only try.
    pub fn new(parts: Parts, body: Incoming) -> UpgradeExchange {
        UpgradeExchange {
            ready: Some(Request::from_parts(
                parts,
                Either::Left(Teed::new(body, None)),
            )),
        }
    }
}

/// An upgrade's answer: the response (a `101`, or a refusal to relay as it is), the connection
/// it came on, and the endpoint.
pub type UpgradeAnswer = (Response<Incoming>, Tunnel, Arc<Endpoint>);

impl Exchange for UpgradeExchange {
    type Answer = UpgradeAnswer;

    fn next(&mut self) -> bool {
        self.ready.is_some()
    }

    fn again(&self) -> bool {
        false
    }

    fn per_try_bounded(&self) -> bool {
        // The route's timeout bounds the wait for the `101`, as Envoy's; no try of its own.
        false
    }

    async fn send(&mut self, cluster: &ClusterRt, ep: &Arc<Endpoint>) -> Try<UpgradeAnswer> {
        let Some(req) = self.ready.take() else {
            return Try::Reset;
        };
        let mut tunnel: Tunnel = match connection(cluster, ep, false).await {
            Ok(c) => c,
            Err(t) => return t,
        };
        match tunnel.send.send_request(req).await {
            Ok(resp) => Try::Answer((resp, tunnel, ep.clone())),
            Err(_) => Try::Reset,
        }
    }

    fn status(a: &UpgradeAnswer) -> u16 {
        a.0.status().as_u16()
    }
}

/// Forwards the request `ex` carries per `route`, retried while `ex` can send it again.
/// `started` is when the request arrived (the route's timeout runs from then); `timer` bounds
/// each try.
pub async fn forward<E: Exchange>(
    cfg: &RuntimeConfig,
    route: &Route,
    ctx: PickContext,
    ex: &mut E,
    started: Instant,
    timer: &mut impl TryTimer,
) -> Outcome<E::Answer> {
    let name = route.target.pick(fast_rand() as u32);
    let Some(mut cluster) = cfg.clusters.get(name).cloned() else {
        return Outcome::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "no such cluster\n",
            None,
            None,
            "no_cluster",
        );
    };
    let Some(_request) = cluster.load.try_take(Limit::Requests, &cluster.maxima) else {
        return overflow(cluster);
    };
    let retry = route.retry.as_ref();
    let attempts = retry.map_or(0, |r| r.attempts);
    // The listener's stream idle timeout: nothing moves on the stream while it waits for a
    // response head, retries or not (as Envoy's, which only the downstream stream resets).
    let idle = match ex.streams_body() {
        false => route.stream_idle(cfg.timeouts.stream_idle),
        true => None,
    };
    // The route's deadline, or the stream idle timeout's when that comes first (the stream
    // idle timeout's, only when it is strictly earlier).
    let (bound, idle_first) = match (route.timeout, idle) {
        (Some(t), Some(i)) if i < t => (Some(i), true),
        (Some(t), _) => (Some(t), false),
        (None, i) => (i, i.is_some()),
    };
    let deadline_or_idle = bound.map(|b| started + b);
    let per_try = retry.and_then(|r| r.per_try_timeout);
    let mut used_fallback = false;
    let mut last: Option<Outcome<E::Answer>> = None;
    let mut _retrying: Option<Held> = None;
    let mut _fallback_request: Option<Held> = None;
    for attempt in 0..=attempts {
        // The first try starts as the request arrived (one clock read less per request).
        let now = if attempt == 0 {
            started
        } else {
            Instant::now()
        };
        let picked = match pick_admitted(&cluster, ctx, now) {
            Some(p) => Some(p),
            None => match cfg.fallback_of(&cluster).filter(|_| !used_fallback) {
                Some(fb) => {
                    used_fallback = true;
                    // The fallback's own `maxRequests` applies to what it takes over.
                    let Some(unit) = fb.load.try_take(Limit::Requests, &fb.maxima) else {
                        return overflow(fb.clone());
                    };
                    _fallback_request = Some(unit);
                    cluster = fb.clone();
                    pick_admitted(&cluster, ctx, now)
                }
                None => None,
            },
        };
        let Some((idx, ep, probe)) = picked else {
            break;
        };
        if !ex.next() {
            break;
        }
        // This try's deadline: the route's (or the stream idle timeout's), or sooner by the
        // per-try timeout. A try whose body is still streaming has its per-try timeout start
        // when the body ends (`from_end`), as Envoy's.
        let bounded = ex.per_try_bounded();
        let from_end = per_try
            .filter(|_| !bounded)
            .and_then(|t| Some((ex.body_end()?, t)));
        let per_try = per_try.filter(|_| bounded);
        let limit = match (per_try, deadline_or_idle) {
            (Some(t), d) => {
                let at = now + t;
                Some(d.map_or(at, |d| d.min(at)))
            }
            (None, d) => d,
        };
        let guard = ep.start_at(now, probe);
        // The try's future is made where it is awaited (a local holding it first would keep a
        // second slot for it in this future's state, and copy it in between).
        let result = match (limit, from_end) {
            (_, Some((end, t))) => {
                let send = within_after_end(ex.send(&cluster, &ep), end, t);
                match limit {
                    Some(at) => timer.within(at, pin!(send)).await.unwrap_or(Try::TimedOut),
                    None => send.await,
                }
            }
            (Some(at), None) => timer
                .within(at, pin!(ex.send(&cluster, &ep)))
                .await
                .unwrap_or(Try::TimedOut),
            (None, None) => ex.send(&cluster, &ep).await,
        };
        let more = attempt < attempts;
        // A retry is made only while the cluster's `max_retries` allows, and before the route's
        // deadline or the stream idle timeout has passed.
        let mut may_retry = |wanted: bool, ex: &E| {
            if !(more && wanted)
                || deadline_or_idle.is_some_and(|d| d <= Instant::now())
                || !ex.again()
            {
                return false;
            }
            match cluster.load.try_take(Limit::Retries, &cluster.maxima) {
                Some(unit) => {
                    _retrying = Some(unit);
                    true
                }
                None => false,
            }
        };
        let fail_on = cluster.fail_on;
        match result {
            Try::Answer(answer) => {
                let status = E::status(&answer);
                guard.finish(!fail_on.status(status));
                let wanted =
                    retry.is_some_and(|r| retry_on_answer(r, status, || E::grpc_status(&answer)));
                if may_retry(wanted, ex) {
                    // The body is unread: the connection is not reused.
                    continue;
                }
                return Outcome {
                    reply: Reply::Upstream(answer),
                    cluster: Some(cluster),
                    endpoint: Some(idx),
                    upstream_error: "",
                };
            }
            Try::Overflow => {
                guard.abandon();
                return overflow(cluster);
            }
            Try::ConnectFailed | Try::Reset => {
                let connect = matches!(result, Try::ConnectFailed);
                guard.fail(if connect {
                    fail_on.connect_failure
                } else {
                    fail_on.reset
                });
                let (status, msg, err) = if connect {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "upstream connect error\n",
                        "connect_failure",
                    )
                } else {
                    (StatusCode::BAD_GATEWAY, "upstream reset\n", "reset")
                };
                let allowed = retry.is_some_and(|r| {
                    if connect {
                        r.on_connect_failure || r.on_5xx || r.on_gateway_error
                    } else {
                        r.on_reset || r.on_5xx || r.on_gateway_error
                    }
                });
                last = Some(Outcome::local(
                    status,
                    msg,
                    Some(cluster.clone()),
                    Some(idx),
                    err,
                ));
                if may_retry(allowed, ex) {
                    continue;
                }
                break;
            }
            Try::TimedOut if idle_first && limit == deadline_or_idle => {
                // The stream went idle for too long: 504 "stream timeout", as Envoy's for a
                // request it has whole; the endpoint gets no verdict (it was the stream's bound,
                // not the route's), and no retry follows.
                guard.abandon();
                return Outcome::local(
                    StatusCode::GATEWAY_TIMEOUT,
                    "stream timeout\n",
                    Some(cluster),
                    Some(idx),
                    "stream_idle_timeout",
                );
            }
            Try::TimedOut => {
                guard.fail(fail_on.timeout);
                last = Some(Outcome::local(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream request timeout\n",
                    Some(cluster.clone()),
                    Some(idx),
                    "timeout",
                ));
                if may_retry(retry.is_some_and(|r| r.on_5xx || r.on_gateway_error), ex) {
                    continue;
                }
                break;
            }
        }
    }
    last.unwrap_or_else(|| {
        Outcome::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "no healthy upstream\n",
            Some(cluster),
            None,
            "no_healthy_upstream",
        )
    })
}

/// `send`'s outcome, or a timeout `t` after the request's body ended (`end`).
async fn within_after_end<A>(
    send: impl Future<Output = Try<A>>,
    end: Recording,
    t: std::time::Duration,
) -> Try<A> {
    tokio::select! {
        r = send => r,
        _ = async {
            end.ended().await;
            tokio::time::sleep(t).await;
        } => Try::TimedOut,
    }
}

/// A request refused by a cluster limit: 503 at once (Envoy's `x-envoy-overloaded`).
fn overflow<A>(cluster: Arc<ClusterRt>) -> Outcome<A> {
    Outcome {
        reply: Reply::Local(StatusCode::SERVICE_UNAVAILABLE, "upstream overflow\n", true),
        cluster: Some(cluster),
        endpoint: None,
        upstream_error: "overflow",
    }
}

/// Picks an endpoint whose breaker admits the request: `(index, endpoint, is a half-open probe)`.
/// A half-open endpoint with all its probes out is passed over for another pick.
fn pick_admitted(
    cluster: &crate::config::ClusterRt,
    ctx: crate::lb::PickContext,
    now: Instant,
) -> Option<(usize, std::sync::Arc<crate::endpoint::Endpoint>, bool)> {
    for _ in 0..cluster.endpoints.len().max(1) {
        let i = cluster.pick(ctx)?;
        let ep = cluster.endpoints.get(i)?.clone();
        let (admit, transition) = ep.breaker.load().admit(crate::endpoint::clock_ms_at(now));
        ep.note(transition);
        match admit {
            crate::breaker::Admit::Yes => return Some((i, ep, false)),
            crate::breaker::Admit::Probe => return Some((i, ep, true)),
            crate::breaker::Admit::No => {}
        }
    }
    None
}
