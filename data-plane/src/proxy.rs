//! The forwarding path: route, pick, forward with timeouts and retries, stream both bodies.
//!
//! Per request: one atomic load of the config, a route lookup, a balancer pick, a pooled
//! connection from a lock-free queue, and atomic counter updates — no locks, and only a few
//! small allocations (hyper's own). Headers follow Envoy: hop-by-hop headers removed,
//! `x-forwarded-for` appended, `x-request-id` kept or generated, `Host` preserved.
//!
//! - [`headers`]: header rules; [`upstream`]: per-endpoint connection pools;
//!   [`forward`]: the attempt loop (timeouts, retries, fallback cluster).

pub mod forward;
pub mod headers;
pub mod upstream;

use crate::report::AccessRecord;
use crate::server::Shared;
use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::{Request, Response, StatusCode, Uri, Version};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Body sent upstream: the downstream body, or nothing (retries of empty requests).
pub type ReqBody = Either<Incoming, Empty<Bytes>>;
/// Body sent downstream: the upstream body streamed, or a local reply.
pub type RespBody = Either<upstream::PooledBody, Full<Bytes>>;

/// One downstream connection: what every request on it shares.
#[derive(Debug)]
pub struct Downstream {
    /// Peer address.
    pub peer: SocketAddr,
    /// Peer IP as a header value (for `x-forwarded-for`).
    pub peer_ip: HeaderValue,
}

impl Downstream {
    /// Connection state for `peer`.
    pub fn new(peer: SocketAddr) -> Downstream {
        Downstream {
            peer,
            peer_ip: headers::peer_ip(peer),
        }
    }
}

/// A locally generated reply.
pub fn local(status: StatusCode, msg: &'static str) -> Response<RespBody> {
    let mut r = Response::new(Either::Right(Full::new(Bytes::from_static(msg.as_bytes()))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    r
}

/// The request's host: `Host`, else the URI authority (HTTP/2 `:authority`).
fn host_of<'a>(headers: &'a hyper::HeaderMap, uri: &'a Uri) -> &'a str {
    headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Handles one downstream request.
pub async fn handle(
    shared: Arc<Shared>,
    down: Arc<Downstream>,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let started = Instant::now();
    let cfg = shared.config.load_full();
    let (mut parts, body) = req.into_parts();
    let route = cfg
        .routes
        .find(
            host_of(&parts.headers, &parts.uri),
            parts.method.as_str(),
            parts.uri.path(),
            &parts.headers,
        )
        .cloned();
    let Some(route) = route else {
        shared.no_route.fetch_add(1, Ordering::Relaxed);
        return local(StatusCode::NOT_FOUND, "no route matched\n");
    };
    headers::strip_hop_by_hop(&mut parts.headers);
    headers::append_forwarded_for(&mut parts.headers, &down.peer_ip);
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
    if !parts.headers.contains_key(HOST) {
        if let Some(a) = parts.uri.authority() {
            if let Ok(v) = HeaderValue::from_str(a.as_str()) {
                parts.headers.insert(HOST, v);
            }
        }
    }
    // Upstream is HTTP/1.1 in origin form, whatever came downstream.
    let original_uri = parts.uri.clone();
    if parts.uri.scheme().is_some() || parts.uri.authority().is_some() {
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |p| Uri::from(p.clone()));
    }
    parts.version = Version::HTTP_11;
    let method = parts.method.clone();
    let host = parts.headers.get(HOST).cloned();
    let out = forward::forward(&cfg, &route, parts, body, down.peer).await;
    let status = out.response.status().as_u16();
    let latency = started.elapsed();
    let recorded = if out.upstream_error.is_empty() {
        status
    } else {
        0
    };
    route.stats.record(recorded, latency);
    if let Some(c) = &out.cluster {
        c.stats.record(recorded, latency);
        if let Some(s) = out.endpoint.and_then(|i| c.endpoint_stats.get(i)) {
            s.record(recorded, latency);
        }
    }
    if shared.logs.wants(status, out.upstream_error) {
        shared.log(AccessRecord {
            started,
            request_id: request_id.to_str().unwrap_or("").to_owned(),
            client_ip: down.peer.ip().to_string(),
            route: route.name.clone(),
            cluster: out
                .cluster
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            endpoint: match (&out.cluster, out.endpoint) {
                (Some(c), Some(i)) => c
                    .endpoints
                    .get(i)
                    .map(|e| e.address.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            },
            method: method.as_str().to_owned(),
            authority: host
                .as_ref()
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            path: original_uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            status,
            duration: latency,
            upstream_error: out.upstream_error,
        });
    }
    out.response
}
