//! The forwarding path: route, pick, forward with timeouts and retries, stream both bodies.
//!
//! Two downstream paths share one attempt loop ([`forward`]):
//!
//! - [`native`]: HTTP/1.1 as most traffic speaks it. The request head is parsed in place
//!   ([`h1`]), routed on borrowed bytes and forwarded as one write over a pooled raw connection;
//!   the response head and first body bytes go downstream in one write. No header maps, no task
//!   or channel per upstream connection.
//! - [`handle`] (hyper): HTTP/2, and whatever the native path hands over with the connection
//!   (HTTP/1.0, `Upgrade`, `Expect`, chunked or large request bodies, malformed requests).
//!   Upstream, a request without a body goes the native way too ([`raw`]: one serialized head
//!   over a pooled raw connection, the response body decoded as it arrives); one with a body
//!   goes through hyper's client, which streams it.
//!
//! Per request: one atomic load of the config, a route lookup, a balancer pick, a pooled
//! connection from its endpoint's idle stack (an uncontended lock held for a pop and a push),
//! and atomic counter updates. Headers follow
//! Envoy: hop-by-hop headers removed, `x-forwarded-for` appended, `x-request-id` kept or
//! generated, `Host` preserved.
//!
//! - [`headers`]: header rules; [`upstream`]: per-endpoint connection pools;
//!   [`forward`]: the attempt loop (timeouts, retries, fallback cluster).

pub mod forward;
pub mod h1;
pub mod headers;
pub mod native;
pub mod raw;
pub mod replay;
pub mod tunnel;
pub mod upstream;

use crate::config::ClusterRt;
use crate::report::AccessRecord;
use crate::router::Route;
use crate::server::Shared;
use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

/// Body sent upstream through hyper's client: the downstream body as it streams (copied as it
/// goes when the route may retry), or a copy sent again.
pub type ReqBody = Either<replay::Teed, replay::Again>;
/// Body sent downstream: the upstream body streamed (read by hyper's client, or from a raw
/// connection), or a local reply.
pub type RespBody = Either<Timed<Either<upstream::PooledBody, raw::RawBody>>, Full<Bytes>>;

/// One downstream connection: what every request on it shares.
#[derive(Debug)]
pub struct Downstream {
    /// Peer address.
    pub peer: SocketAddr,
    /// Peer IP as a header value (for `x-forwarded-for`).
    pub peer_ip: HeaderValue,
    /// The client spoke TLS (`x-forwarded-proto: https`).
    pub tls: bool,
}

impl Downstream {
    /// Connection state for `peer`, in plaintext.
    pub fn new(peer: SocketAddr) -> Downstream {
        Downstream {
            peer,
            peer_ip: headers::peer_ip(peer),
            tls: false,
        }
    }

    /// Connection state for `peer`, over TLS.
    pub fn new_tls(peer: SocketAddr) -> Downstream {
        Downstream {
            tls: true,
            ..Downstream::new(peer)
        }
    }
}

/// A locally generated reply (an empty one without a content type, as Envoy's).
pub fn local(status: StatusCode, msg: &'static str) -> Response<RespBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(msg.as_bytes()))));
    *r.status_mut() = status;
    if !msg.is_empty() {
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain"),
        );
    }
    r.extensions_mut().insert(LocalMsg(msg));
    r
}

/// The message of a reply of our own, for a gRPC client's `grpc-message`.
#[derive(Clone, Copy)]
struct LocalMsg(&'static str);

/// Whether a request is gRPC's (Envoy's test: `application/grpc`, or `application/grpc+…`).
fn is_grpc(headers: &hyper::HeaderMap) -> bool {
    headers.get(hyper::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v == b"application/grpc" || v.starts_with(b"application/grpc+")
    })
}

/// A reply of our own to a gRPC request, as gRPC clients read one (Envoy's): `200` and nothing
/// but headers, the status as a gRPC code (Envoy's mapping) in `grpc-status` and the message in
/// `grpc-message`. Stats and the access log keep the HTTP status.
fn as_grpc(r: &mut Response<RespBody>) {
    if let Some(AnsweredHere(msg)) = r.extensions_mut().remove::<AnsweredHere>() {
        to_grpc(r, std::str::from_utf8(&msg).unwrap_or_default());
        return;
    }
    let Some(LocalMsg(msg)) = r.extensions().get::<LocalMsg>().copied() else {
        return;
    };
    if r.status().as_u16() < 400 {
        return;
    }
    to_grpc(r, msg.trim_end());
}

/// A route's direct response or redirect, with its body: to a gRPC request it goes as a gRPC
/// answer whatever its status (Envoy sends every local reply so), the body as the message.
#[derive(Clone)]
struct AnsweredHere(Bytes);

/// `r` made a gRPC answer (see [`as_grpc`]) with `msg` as its message (none when empty); what
/// else it carries (a `location`, the route's headers) stays.
fn to_grpc(r: &mut Response<RespBody>, msg: &str) {
    let code: u16 = match r.status().as_u16() {
        400 => 13,
        401 => 16,
        403 => 7,
        404 => 12,
        429 | 502..=504 => 14,
        _ => 2,
    };
    *r.status_mut() = StatusCode::OK;
    *r.body_mut() = Either::Right(Full::new(Bytes::new()));
    let h = r.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if !msg.is_empty() {
        // Percent-encoded, as gRPC reads it and Envoy writes it (`~` too): `gone\n` is
        // `gone%0A`.
        use std::fmt::Write;
        let mut encoded = String::with_capacity(msg.len());
        for b in msg.bytes() {
            if (0x20..0x7e).contains(&b) && b != b'%' {
                encoded.push(char::from(b));
            } else {
                let _ = write!(encoded, "%{b:02X}");
            }
        }
        if let Ok(v) = HeaderValue::from_str(&encoded) {
            h.insert("grpc-message", v);
        }
    }
}

/// How a request behind hyper goes upstream.
enum Whole {
    /// Serialized whole (head and body) for a raw connection.
    Raw(Vec<u8>),
    /// Through hyper's client, its body streamed.
    Stream(Incoming),
    /// Not at all: its body could not be read (the reply to send).
    Refused(StatusCode, &'static str),
    /// An HTTP/1.1 upgrade its route allows (over a connection of its own), with what gives
    /// the downstream socket once the `101` has gone.
    Upgrade(Incoming, hyper::upgrade::OnUpgrade),
    /// Answered here: the route's direct response.
    Direct(StatusCode, Bytes),
    /// Answered here: the route's redirect, to this `location`.
    Redirect(StatusCode, HeaderValue),
}

/// A local reply, marked when a cluster limit refused the request.
fn local_reply(status: StatusCode, msg: &'static str, overloaded: bool) -> Response<RespBody> {
    let mut r = local(status, msg);
    if overloaded {
        r.headers_mut().insert(
            headers::X_GW_OVERLOADED.clone(),
            HeaderValue::from_static("true"),
        );
    }
    r
}

/// The request's host: `Host`, else the URI authority (HTTP/2 `:authority`).
fn host_of<'a>(headers: &'a hyper::HeaderMap, uri: &'a Uri) -> &'a str {
    // An HTTP/2 `:authority`, or an absolute-form target's, wins over a `Host` (Envoy's).
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(HOST).and_then(|h| h.to_str().ok()))
        .unwrap_or("")
}

/// Handles one downstream request.
pub async fn handle(
    shared: Arc<Shared>,
    down: Arc<Downstream>,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let started = Instant::now();
    let cfg = shared.config.load_full();
    // An HTTP/1.1 upgrade: its downstream socket is had once hyper has sent the `101`.
    let upgrade = match req.version() {
        Version::HTTP_11 => headers::upgrade_of(req.headers()).cloned(),
        _ => None,
    };
    let on_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
    let grpc = is_grpc(req.headers());
    let (mut parts, body) = req.into_parts();
    // What Envoy's HTTP/1 codec refuses before routing: an absolute-form target naming another
    // scheme than http(s) (400), or `https` on a plaintext connection (403), and a request with
    // no host at all (400; HTTP/1.0: 426, Envoy's answer when it would need a default host).
    if matches!(parts.version, Version::HTTP_10 | Version::HTTP_11) {
        let refused = match parts.uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") && !down.tls => Some((
                StatusCode::FORBIDDEN,
                "https url on a plaintext connection\n",
            )),
            Some(s) if !s.eq_ignore_ascii_case("http") && !s.eq_ignore_ascii_case("https") => {
                Some((StatusCode::BAD_REQUEST, "unsupported url scheme\n"))
            }
            _ if parts.uri.authority().is_none() && !parts.headers.contains_key(HOST) => {
                Some(match parts.version {
                    Version::HTTP_10 => (StatusCode::UPGRADE_REQUIRED, ""),
                    _ => (StatusCode::BAD_REQUEST, "missing host header\n"),
                })
            }
            _ => None,
        };
        if let Some((status, msg)) = refused {
            let mut r = local(status, msg);
            close_after(&mut r);
            return r;
        }
    }
    // An HTTP/2 `:authority`, or an absolute-form target's, is the request's host: it replaces a
    // `Host` the client sent too (as Envoy replaces it), before routing, so header matchers see
    // the host the virtual host was picked by, and upstream.
    if let Some(a) = parts.uri.authority() {
        if let Ok(v) = HeaderValue::from_str(a.as_str()) {
            parts.headers.insert(HOST, v);
        }
    }
    let route = cfg.routes.find(
        host_of(&parts.headers, &parts.uri),
        parts.method.as_str(),
        parts.uri.path(),
        &parts.headers,
    );
    let Some(route) = route else {
        shared.no_route.fetch_add(1, Ordering::Relaxed);
        let mut r = local(StatusCode::NOT_FOUND, "no route matched\n");
        if upgrade.is_some() {
            close_after(&mut r);
        }
        if grpc {
            as_grpc(&mut r);
        }
        return r;
    };
    // What the client asked for, as the access log records it.
    let original_uri = parts.uri.clone();
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded_for(&mut parts.headers, &down.peer_ip);
    headers::set_forwarded_proto(&mut parts.headers, down.tls);
    let request_id = match parts.headers.get(&headers::X_REQUEST_ID) {
        Some(v) => v.clone(),
        None => {
            let v = headers::request_id();
            parts
                .headers
                .insert(headers::X_REQUEST_ID.clone(), v.clone());
            v
        }
    };
    // A route's prefix rewrite: the path sent upstream, the original in
    // `x-envoy-original-path`, as Envoy's (which drops one the client sent, rewritten or not).
    headers::sanitize_client_headers(&mut parts.headers, &down.peer_ip);
    let original = original_uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(to) = route.rewritten(original) {
        let Ok(uri) = Uri::try_from(to) else {
            return local(StatusCode::BAD_REQUEST, "the rewritten path is not valid\n");
        };
        if let Ok(v) = HeaderValue::from_str(original) {
            parts
                .headers
                .insert(headers::X_ENVOY_ORIGINAL_PATH.clone(), v);
        }
        parts.uri = uri;
    }
    // The endpoint is picked on the headers as the client sent them (Envoy picks it before it
    // makes the route's changes), then the changes are made.
    let ctx = forward::pick_context(route, down.peer, &parts.headers);
    // The host the client asked for (the access log's), and upstream when a route rewrites it.
    let host = parts.headers.get(HOST).cloned();
    if route.original_host {
        if let Some(h) = &host {
            parts
                .headers
                .insert(headers::X_ENVOY_ORIGINAL_HOST.clone(), h.clone());
        }
    }
    if let Some(o) = &route.request_headers {
        o.apply(&mut parts.headers);
    }
    // Upstream is HTTP/1.1 in origin form, whatever came downstream.
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    }
    parts.version = Version::HTTP_11;
    let method = parts.method.clone();
    // A request whose whole body is at hand (none, or a small one of declared length, read
    // first) goes over a raw connection, and may be sent as often as the route retries; a
    // larger one, or one of unknown length, goes through hyper's client, which streams it (and
    // copies it, for a retry, when the route may retry).
    let declared = || {
        let v = parts.headers.get(hyper::header::CONTENT_LENGTH)?;
        let n: usize = v.to_str().ok()?.parse().ok()?;
        (n <= native::MAX_BUFFERED_BODY).then_some(n)
    };
    let bodyless = body.is_end_stream() && upgrade.is_none();
    use crate::router::Target;
    let answered_here = matches!(route.target, Target::Direct(..) | Target::Redirect(..));
    let whole = if answered_here
        && upgrade
            .as_ref()
            .is_some_and(|kind| !cfg.routes.allows_upgrade(route, kind.as_bytes()))
    {
        // A route the proxy answers has no upgrades of its own: the listener's decide, and
        // one they do not allow is refused (Envoy's 403), not answered.
        Whole::Refused(StatusCode::FORBIDDEN, "")
    } else if let Target::Direct(status, body) = &route.target {
        Whole::Direct(*status, body.clone())
    } else if let Target::Redirect(to) = &route.target {
        // No host, or one that cannot be a URL's: the client's error (Envoy refuses such
        // requests before routing).
        let host = parts.headers.get(HOST).and_then(|h| h.to_str().ok());
        let location = host
            .filter(|h| crate::router::is_authority(h))
            .map(|h| to.location(down.tls, original_uri.scheme_str(), h, original))
            .and_then(|l| HeaderValue::try_from(l).ok());
        match location {
            Some(v) => Whole::Redirect(to.status, v),
            None => Whole::Refused(StatusCode::BAD_REQUEST, "bad host\n"),
        }
    } else if let (Some(kind), Some(on)) = (&upgrade, on_upgrade) {
        // Refused unless the route (or the listener) allows this upgrade: Envoy's 403. Not
        // made to an HTTP/2 cluster either (that would take extended CONNECT upstream).
        if cfg.routes.allows_upgrade(route, kind.as_bytes()) && !cfg.reaches_http2(route) {
            headers::set_upgrade(&mut parts.headers, kind.clone());
            Whole::Upgrade(body, on)
        } else {
            Whole::Refused(StatusCode::FORBIDDEN, "")
        }
    } else if cfg.takes_hyper(route) {
        // An HTTP/2 or TLS cluster takes hyper's client, whatever the body. To an HTTP/2 one the
        // host goes as the `:authority`, so one that cannot be is the client's error, not the
        // upstream's.
        let authority = parts.headers.get(HOST).map(|h| h.as_bytes());
        match authority.map(hyper::http::uri::Authority::try_from) {
            Some(Err(_)) if cfg.reaches_http2(route) => {
                Whole::Refused(StatusCode::BAD_REQUEST, "bad host\n")
            }
            _ => Whole::Stream(body),
        }
    } else if bodyless {
        Whole::Raw(raw::request_head(&parts))
    } else if let Some(n) = declared() {
        match raw::read_whole(body, n).await {
            Ok((bytes, trailers)) => {
                Whole::Raw(raw::request_with_body(&mut parts, &bytes, trailers))
            }
            Err((status, msg)) => Whole::Refused(status, msg),
        }
    } else {
        Whole::Stream(body)
    };
    // The route's timeout runs from the end of the request (Envoy's), here after any body was
    // read, until the response has been sent whole.
    let requested = Instant::now();
    let deadline = route.timeout.map(|t| requested + t);
    let idle = route.stream_idle(cfg.timeouts.stream_idle);
    let mut tunnel = None;
    let (response, cluster, endpoint, upstream_error) = match whole {
        Whole::Refused(status, msg) => (local(status, msg), None, None, ""),
        Whole::Direct(status, body) => {
            let mut r = Response::new(Either::Right(Full::new(body.clone())));
            *r.status_mut() = status;
            if !body.is_empty() {
                r.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    HeaderValue::from_static("text/plain"),
                );
            }
            r.extensions_mut().insert(AnsweredHere(body));
            (r, None, None, "")
        }
        Whole::Redirect(status, location) => {
            let mut r = Response::new(Either::Right(Full::new(Bytes::new())));
            *r.status_mut() = status;
            r.headers_mut().insert(hyper::header::LOCATION, location);
            r.extensions_mut().insert(AnsweredHere(Bytes::new()));
            (r, None, None, "")
        }
        Whole::Raw(request) => {
            let mut ex = native::Native::new(&request, bodyless, method == Method::HEAD);
            let out =
                forward::forward(&cfg, route, ctx, &mut ex, requested, &mut forward::PerTry).await;
            let (response, err) = match out.reply {
                forward::Reply::Upstream((conn, ep)) => match raw::response(conn, ep) {
                    Some(r) => (
                        r.map(|b| Either::Left(Timed::new(Either::Right(b), deadline, idle))),
                        out.upstream_error,
                    ),
                    None => (
                        local(StatusCode::BAD_GATEWAY, "upstream sent a bad header\n"),
                        "bad response header",
                    ),
                },
                forward::Reply::Local(status, msg, overloaded) => {
                    (local_reply(status, msg, overloaded), out.upstream_error)
                }
            };
            (response, out.cluster, out.endpoint, err)
        }
        Whole::Stream(body) => {
            let mut ex = forward::HyperExchange::new(parts, body, route.retry.as_ref());
            let out =
                forward::forward(&cfg, route, ctx, &mut ex, requested, &mut forward::PerTry).await;
            let response = match out.reply {
                forward::Reply::Upstream((resp, conn, ep)) => {
                    let (mut head, body) = resp.into_parts();
                    headers::strip_hop_by_hop(&mut head.headers);
                    let body = upstream::PooledBody::new(body, conn, ep);
                    relayed(head, body, deadline, idle)
                }
                forward::Reply::Local(status, msg, overloaded) => {
                    local_reply(status, msg, overloaded)
                }
            };
            (response, out.cluster, out.endpoint, out.upstream_error)
        }
        Whole::Upgrade(body, down_upgrade) => {
            let mut ex = forward::UpgradeExchange::new(parts, body);
            let out =
                forward::forward(&cfg, route, ctx, &mut ex, requested, &mut forward::PerTry).await;
            let response = match out.reply {
                forward::Reply::Upstream((mut resp, conn, ep)) => {
                    let up_upgrade = hyper::upgrade::on(&mut resp);
                    let (mut head, body) = resp.into_parts();
                    let kind = head.headers.get(hyper::header::UPGRADE).cloned();
                    headers::strip_hop_by_hop(&mut head.headers);
                    let switched = head.status == StatusCode::SWITCHING_PROTOCOLS;
                    match kind.filter(|_| switched) {
                        // A switch to nothing said: not something to relay.
                        None if switched => {
                            local(StatusCode::BAD_GATEWAY, "upstream sent a bad header\n")
                        }
                        Some(kind) => {
                            headers::set_upgrade(&mut head.headers, kind);
                            tunnel = Some(tunnel::Tunnel {
                                down: down_upgrade,
                                up: up_upgrade,
                                conn,
                                idle,
                                active: tunnel::Active::new(ep, out.cluster.as_deref()),
                            });
                            Response::from_parts(head, Either::Right(Full::new(Bytes::new())))
                        }
                        // Refused: relayed as it is, and the connection closes after it.
                        None => {
                            let body = upstream::PooledBody::unpooled(body, conn.unit);
                            relayed(head, body, deadline, idle)
                        }
                    }
                }
                forward::Reply::Local(status, msg, overloaded) => {
                    local_reply(status, msg, overloaded)
                }
            };
            (response, out.cluster, out.endpoint, out.upstream_error)
        }
    };
    let mut response = response;
    // The route's response header changes: to whatever answers a request it matched (the
    // upstream's, a 101, or one of our own), as Envoy makes them.
    if let Some(o) = &route.response_headers {
        o.apply(response.headers_mut());
    }
    // An upgrade not made: what the client sent after its request is not HTTP, so the
    // connection ends after this answer (as Envoy's).
    if upgrade.is_some() && tunnel.is_none() {
        close_after(&mut response);
    }
    let pending = Pending {
        shared,
        route: route.clone(),
        cluster,
        endpoint,
        status: response.status().as_u16(),
        upstream_error,
        started,
        client: down.peer,
        request_id,
        method,
        host,
        uri: original_uri,
    };
    if grpc {
        as_grpc(&mut response);
    }
    // A response streamed from an upstream is recorded when its body is done with (its end, a
    // cut, or the client gone), as on the native path and in Envoy; a reply of our own now.
    // A tunnel is recorded when it ends.
    match (tunnel, response.body_mut()) {
        (Some(t), _) => {
            let slot = tunnel::Slot::new(t.run(pending));
            response.extensions_mut().insert(slot);
        }
        (None, Either::Left(timed)) => timed.record.pending = Some(pending),
        (None, Either::Right(_)) => pending.record(""),
    }
    response
}

/// An upstream's response read by hyper's client, relayed with its body bounded by the route's
/// deadline (`at`) and the stream idle timeout.
fn relayed(
    head: hyper::http::response::Parts,
    body: upstream::PooledBody,
    at: Option<Instant>,
    idle: Option<std::time::Duration>,
) -> Response<RespBody> {
    Response::from_parts(head, Either::Left(Timed::new(Either::Left(body), at, idle)))
}

/// Makes `r` the connection's last answer.
fn close_after(r: &mut Response<RespBody>) {
    r.headers_mut()
        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
}

/// A request whose record waits for its response body to be done with: what [`Done`] needs,
/// owned.
struct Pending {
    shared: Arc<Shared>,
    route: Arc<Route>,
    cluster: Option<Arc<ClusterRt>>,
    endpoint: Option<usize>,
    status: u16,
    upstream_error: &'static str,
    started: Instant,
    client: SocketAddr,
    request_id: HeaderValue,
    method: Method,
    host: Option<HeaderValue>,
    uri: Uri,
}

impl Pending {
    /// Records the request; `cut` says why its response body was cut short, if it was.
    fn record(self, cut: &'static str) {
        let done = Done {
            started: self.started,
            route: &self.route,
            cluster: self.cluster.as_ref(),
            endpoint: self.endpoint,
            status: self.status,
            upstream_error: if cut.is_empty() {
                self.upstream_error
            } else {
                cut
            },
        };
        done.record(&self.shared, self.client, || Asked {
            request_id: self.request_id.to_str().unwrap_or("").to_owned(),
            method: self.method.as_str().to_owned(),
            authority: self
                .host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            path: self
                .uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
        });
    }
}

/// What the client asked, for the access log (built only for records the sink wants).
pub struct Asked {
    /// `x-request-id` as sent upstream.
    pub request_id: String,
    /// Method.
    pub method: String,
    /// Host.
    pub authority: String,
    /// Path and query as received.
    pub path: String,
}

/// A finished request, for stats and the access log (both downstream paths).
pub struct Done<'a> {
    /// When it arrived.
    pub started: Instant,
    /// The route it matched.
    pub route: &'a Route,
    /// The cluster that answered or failed.
    pub cluster: Option<&'a Arc<ClusterRt>>,
    /// Index of the endpoint in that cluster.
    pub endpoint: Option<usize>,
    /// Status sent downstream.
    pub status: u16,
    /// Why the upstream failed; empty when it answered.
    pub upstream_error: &'static str,
}

impl Done<'_> {
    /// Records route, cluster and endpoint stats, and offers an access record when the sink
    /// wants this one; `asked` gives the request's own fields (built only then).
    /// Returns when it was recorded (the request's end).
    pub fn record(
        &self,
        shared: &Shared,
        client: SocketAddr,
        asked: impl FnOnce() -> Asked,
    ) -> Instant {
        let now = Instant::now();
        let latency = now.saturating_duration_since(self.started);
        let recorded = if self.upstream_error.is_empty() {
            self.status
        } else {
            0
        };
        self.route.stats.record(recorded, latency);
        if let Some(c) = self.cluster {
            c.stats.record(recorded, latency);
            if let Some(s) = self.endpoint.and_then(|i| c.endpoint_stats.get(i)) {
                s.record(recorded, latency);
            }
        }
        if shared.logs.wants(self.status, self.upstream_error) {
            let asked = asked();
            let endpoint = match (self.cluster, self.endpoint) {
                (Some(c), Some(i)) => c.endpoints.get(i).map(|e| e.address.clone()),
                _ => None,
            };
            shared.log(AccessRecord {
                started: self.started,
                request_id: asked.request_id,
                client_ip: client.ip().to_string(),
                route: self.route.name.clone(),
                cluster: self.cluster.map(|c| c.name.clone()).unwrap_or_default(),
                endpoint: endpoint.unwrap_or_default(),
                method: asked.method,
                authority: asked.authority,
                path: asked.path,
                status: self.status,
                duration: latency,
                upstream_error: self.upstream_error,
            });
        }
        now
    }
}

/// A response body the route's timeout bounds (`at`, for all of it) and the listener's stream
/// idle timeout (`idle`, between frames): when either passes first, the body fails and hyper
/// resets the stream (HTTP/2) or closes the connection (HTTP/1), as Envoy does. A timer is made
/// only once the body keeps hyper waiting; a body at hand costs a clock read per frame at most.
pub struct Timed<B> {
    inner: B,
    at: Option<Instant>,
    idle: Option<std::time::Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The request's record, made when the body is dropped (done with).
    record: Recorder,
}

/// A request's record, made when dropped: a streamed response's when hyper drops its body, a
/// tunnel's when it ends (or its task is dropped).
pub(crate) struct Recorder {
    pending: Option<Pending>,
    /// Why the response was cut short; empty when it was not.
    cut: &'static str,
}

impl Recorder {
    fn new(pending: Option<Pending>) -> Recorder {
        Recorder { pending, cut: "" }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.record(self.cut);
        }
    }
}

impl<B> Timed<B> {
    /// `inner`, due whole by `at` and with no gap longer than `idle` (`None`: no bound).
    pub fn new(inner: B, at: Option<Instant>, idle: Option<std::time::Duration>) -> Timed<B> {
        Timed {
            inner,
            at,
            idle,
            sleep: None,
            record: Recorder::new(None),
        }
    }
}

/// When a body due whole by `at`, with no gap longer than `idle`, fails if nothing more comes.
fn due(at: Option<Instant>, idle: Option<std::time::Duration>) -> Option<Instant> {
    let idle = idle.map(|d| Instant::now() + d);
    match (at, idle) {
        (Some(a), Some(i)) => Some(a.min(i)),
        (a, i) => a.or(i),
    }
}

impl<B> Timed<B> {
    /// Ends the body: cut by the route's timeout or the stream idle timeout.
    fn cut(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.record.cut = match self.at {
            Some(at) if Instant::now() >= at => "timeout",
            _ => "stream_idle_timeout",
        };
        Poll::Ready(Some(Err(
            "upstream response not relayed whole within the route's or the stream idle timeout"
                .into(),
        )))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<B> Body for Timed<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let (at, idle) = (this.at, this.idle);
        let fired = match this.sleep.as_mut() {
            Some(sleep) => sleep.as_mut().poll(cx).is_ready(),
            None => false,
        };
        // The route's deadline is for the whole response, whatever is at hand.
        if fired && at.is_some_and(|at| Instant::now() >= at) {
            return this.cut();
        }
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match (&r, this.sleep.as_mut()) {
            // Waiting for more: from now on the body runs against a timer.
            (Poll::Pending, None) => {
                if let Some(due) = due(at, idle) {
                    let sleep = this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(due.into())));
                    if sleep.as_mut().poll(cx).is_ready() {
                        return this.cut();
                    }
                }
            }
            // Nothing came from the upstream for the idle time. (A frame at hand when the timer
            // fired is not idleness there: hyper was not asking, the client was not reading.)
            (Poll::Pending, Some(_)) if fired => return this.cut(),
            // A frame: the idle bound moves on.
            (Poll::Ready(Some(Ok(_))), Some(sleep)) if idle.is_some() => {
                if let Some(due) = due(at, idle) {
                    sleep.as_mut().reset(due.into());
                }
            }
            // Frames that never keep it waiting are held to the route's deadline by the clock.
            (Poll::Ready(Some(Ok(_))), None) if at.is_some_and(|at| Instant::now() >= at) => {
                return this.cut();
            }
            _ => {}
        }
        r.map(|f| f.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
