//! The forwarding path: route, pick, forward with timeouts and retries, stream both bodies.
//!
//! Per request: one atomic load of the config, a route lookup, a balancer pick, and atomic counter
//! updates — no locks. Headers follow Envoy: hop-by-hop headers removed, `x-forwarded-for`
//! appended, `x-request-id` kept or generated, `Host` preserved.

use crate::config::ClusterRt;
use crate::lb::{hash_key, PickContext};
use crate::report::AccessRecord;
use crate::router::{HashOn, Retry, Route};
use crate::server::Shared;
use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, HOST};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Body sent upstream: the downstream body, or nothing (retries of empty requests).
pub type ReqBody = Either<Incoming, Empty<Bytes>>;
/// Body sent downstream: the upstream body streamed, or a local reply.
pub type RespBody = Either<Incoming, Full<Bytes>>;
/// The pooled upstream client.
pub type UpstreamClient = Client<HttpConnector, ReqBody>;

static HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Upstream clients by connect timeout; each pools keep-alive connections per endpoint.
#[derive(Debug, Default)]
pub struct Upstreams {
    clients: arc_swap::ArcSwap<std::collections::HashMap<u64, UpstreamClient>>,
}

impl Upstreams {
    /// The client for `connect_timeout` (created once, then read without locks).
    pub fn client(&self, connect_timeout: Duration) -> UpstreamClient {
        let key = connect_timeout.as_millis() as u64;
        if let Some(c) = self.clients.load().get(&key) {
            return c.clone();
        }
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(4096)
            .build(http);
        self.clients.rcu(|m| {
            let mut m = (**m).clone();
            m.entry(key).or_insert_with(|| client.clone());
            m
        });
        client
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

fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
}

fn request_id() -> HeaderValue {
    let a: u64 = rand::random();
    let b: u64 = rand::random();
    let s = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0x3fff | 0x8000,
        b & 0xffff_ffff_ffff
    );
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

fn hash_of(h: &HashOn, client: SocketAddr, headers: &HeaderMap) -> Option<u64> {
    match h {
        HashOn::SourceIp => Some(hash_key(client.ip().to_string().as_bytes())),
        HashOn::Header(name) => headers.get(name).map(|v| hash_key(v.as_bytes())),
        HashOn::Cookie(name) => headers
            .get_all(hyper::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|kv| {
                kv.trim()
                    .strip_prefix(name.as_str())?
                    .strip_prefix('=')
                    .map(|v| hash_key(v.as_bytes()))
            }),
    }
}

fn retry_on_status(r: &Retry, s: StatusCode) -> bool {
    (r.on_5xx && s.is_server_error())
        || (r.on_gateway_error && matches!(s.as_u16(), 502..=504))
        || (r.on_retriable_4xx && s == StatusCode::CONFLICT)
}

/// How one request ended, for stats and the access log.
struct Outcome {
    response: Response<RespBody>,
    cluster: Option<Arc<ClusterRt>>,
    endpoint: Option<usize>,
    upstream_error: &'static str,
}

impl Outcome {
    fn local(
        status: StatusCode,
        msg: &'static str,
        cluster: Option<Arc<ClusterRt>>,
        err: &'static str,
    ) -> Outcome {
        Outcome {
            response: local(status, msg),
            cluster,
            endpoint: None,
            upstream_error: err,
        }
    }
}

/// Handles one downstream request.
pub async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    client: SocketAddr,
) -> Response<RespBody> {
    let started = Instant::now();
    let cfg = shared.config.load_full();
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_owned();
    let Some(route) = cfg
        .routes
        .find(
            &host,
            req.method().as_str(),
            req.uri().path(),
            req.headers(),
        )
        .cloned()
    else {
        shared.no_route.fetch_add(1, Ordering::Relaxed);
        return local(StatusCode::NOT_FOUND, "no route matched\n");
    };
    let method = req.method().clone();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let ip = client.ip().to_string();
    let xff = match parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
    {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip.clone(),
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        parts.headers.insert("x-forwarded-for", v);
    }
    if !parts.headers.contains_key("x-request-id") {
        parts.headers.insert("x-request-id", request_id());
    }
    if !parts.headers.contains_key(HOST) {
        if let Ok(v) = HeaderValue::from_str(&host) {
            parts.headers.insert(HOST, v);
        }
    }
    let request_id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let out = forward(&shared, &cfg, &route, parts, body, &path, client).await;
    let status = out.response.status().as_u16();
    let latency = started.elapsed();
    let recorded_status = if out.upstream_error.is_empty() {
        status
    } else {
        0
    };
    route.stats.record(recorded_status, latency);
    if let Some(c) = &out.cluster {
        c.stats.record(recorded_status, latency);
        if let Some(i) = out.endpoint {
            if let Some(s) = c.endpoint_stats.get(i) {
                s.record(recorded_status, latency);
            }
        }
    }
    shared.log(AccessRecord {
        started,
        request_id,
        client_ip: ip,
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
        authority: host,
        path,
        status,
        duration: latency,
        upstream_error: out.upstream_error,
    });
    out.response
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    shared: &Shared,
    cfg: &crate::config::RuntimeConfig,
    route: &Route,
    parts: hyper::http::request::Parts,
    body: Incoming,
    path: &str,
    client_addr: SocketAddr,
) -> Outcome {
    let name = route.target.pick(rand::random());
    let Some(mut cluster) = cfg.clusters.get(name).cloned() else {
        return Outcome::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "no such cluster\n",
            None,
            "no_cluster",
        );
    };
    if cluster.active.load(Ordering::Relaxed) >= cluster.max_requests {
        shared.overflow.fetch_add(1, Ordering::Relaxed);
        return Outcome::local(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream overflow\n",
            Some(cluster),
            "overflow",
        );
    }
    cluster.active.fetch_add(1, Ordering::Relaxed);
    let active = ActiveGuard(cluster.active.clone());
    let ctx = PickContext {
        hash: route
            .hash_on
            .as_ref()
            .and_then(|h| hash_of(h, client_addr, &parts.headers)),
    };
    // Only a request whose body is known empty can be sent twice.
    let replayable = body.is_end_stream();
    let retry = route.retry.as_ref().filter(|_| replayable);
    let attempts = retry.map_or(0, |r| r.attempts);
    let deadline = route.timeout.map(|t| Instant::now() + t);
    let mut body = Some(body);
    let mut used_fallback = false;
    let mut last: Option<Outcome> = None;
    let mut retrying = None;
    for attempt in 0..=attempts {
        if attempt > 0 {
            if cluster.active_retries.load(Ordering::Relaxed) >= cluster.max_retries {
                break;
            }
            cluster.active_retries.fetch_add(1, Ordering::Relaxed);
            retrying = Some(ActiveGuard(cluster.active_retries.clone()));
        }
        let idx = match cluster.pick(ctx) {
            Some(i) => i,
            None => match cluster
                .fallback
                .as_ref()
                .and_then(|f| cfg.clusters.get(f))
                .filter(|_| !used_fallback)
            {
                Some(fb) => {
                    used_fallback = true;
                    cluster = fb.clone();
                    match cluster.pick(ctx) {
                        Some(i) => i,
                        None => break,
                    }
                }
                None => break,
            },
        };
        let Some(ep) = cluster.endpoints.get(idx).cloned() else {
            break;
        };
        let uri: Uri = match format!("http://{}{path}", ep.address).parse() {
            Ok(u) => u,
            Err(_) => {
                return Outcome::local(
                    StatusCode::BAD_REQUEST,
                    "bad request path\n",
                    Some(cluster),
                    "",
                )
            }
        };
        let mut b = Request::builder().method(parts.method.clone()).uri(uri);
        if let Some(h) = b.headers_mut() {
            *h = parts.headers.clone();
        }
        let upstream_body = match body.take() {
            Some(b) => Either::Left(b),
            None => Either::Right(Empty::new()),
        };
        let Ok(req) = b.body(upstream_body) else {
            return Outcome::local(StatusCode::BAD_REQUEST, "bad request\n", Some(cluster), "");
        };
        let per_try = retry.and_then(|r| r.per_try_timeout);
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let limit = match (per_try, remaining) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let guard = ep.start();
        let client = shared.upstreams.client(cluster.connect_timeout);
        let sent = client.request(req);
        let result = match limit {
            Some(l) => tokio::time::timeout(l, sent).await.ok(),
            None => Some(sent.await),
        };
        let more = attempt < attempts;
        match result {
            Some(Ok(mut resp)) => {
                let status = resp.status();
                if more && retry.is_some_and(|r| retry_on_status(r, status)) {
                    guard.finish(false);
                    continue;
                }
                guard.finish(!status.is_server_error());
                strip_hop_by_hop(resp.headers_mut());
                drop(retrying);
                drop(active);
                return Outcome {
                    response: resp.map(Either::Left),
                    cluster: Some(cluster),
                    endpoint: Some(idx),
                    upstream_error: "",
                };
            }
            Some(Err(e)) => {
                guard.finish(false);
                let connect = e.is_connect();
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
                        r.on_connect_failure
                    } else {
                        r.on_reset || r.on_5xx
                    }
                });
                last = Some(Outcome {
                    endpoint: Some(idx),
                    ..Outcome::local(status, msg, Some(cluster.clone()), err)
                });
                if more && allowed {
                    continue;
                }
                break;
            }
            None => {
                drop(guard);
                last = Some(Outcome {
                    endpoint: Some(idx),
                    ..Outcome::local(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream request timeout\n",
                        Some(cluster.clone()),
                        "timeout",
                    )
                });
                let overall_left = deadline.is_none_or(|d| d > Instant::now());
                if more && overall_left && retry.is_some_and(|r| r.on_5xx || r.on_gateway_error) {
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
            "no_healthy_upstream",
        )
    })
}

/// Decrements a counter when dropped.
struct ActiveGuard(Arc<std::sync::atomic::AtomicU32>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
