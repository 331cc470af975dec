//! The admin listener: `/ready`, `/metrics` (Prometheus text), `/config_dump` (JSON) and
//! `/clusters` (JSON: endpoints with weight, health, in-flight, latency EWMA, failure rate).

use crate::server::Shared;
use crate::stats::{BUCKETS, CLASSES};
use bytes::Bytes;
use gw_proto::telemetry as t;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves until `stop`.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(&shared, req.uri().path())) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn reply(status: StatusCode, ctype: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(ctype),
    );
    r
}

fn handle(shared: &Shared, path: &str) -> Response<Full<Bytes>> {
    match path {
        "/ready" => {
            if shared.config.load().is_ready() {
                reply(StatusCode::OK, "text/plain", "LIVE\n".into())
            } else {
                reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    "no config yet\n".into(),
                )
            }
        }
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", metrics(shared)),
        "/config_dump" => reply(StatusCode::OK, "application/json", config_dump(shared)),
        "/clusters" => reply(StatusCode::OK, "application/json", clusters(shared)),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /ready, /metrics, /config_dump, /clusters\n".into(),
        ),
    }
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Prometheus text exposition.
pub fn metrics(shared: &Shared) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let snap = shared.registries.stats.snapshot();
    let _ = writeln!(
        o,
        "# HELP {} Requests finished, by status class\n# TYPE {} counter",
        t::REQUESTS,
        t::REQUESTS
    );
    for ((kind, tenant, name), s) in &snap {
        for (class, n) in CLASSES.iter().zip(s.classes) {
            if n > 0 {
                let _ = writeln!(
                    o,
                    "{}{{kind=\"{kind}\",tenant=\"{}\",name=\"{}\",class=\"{class}\"}} {n}",
                    t::REQUESTS,
                    esc(tenant),
                    esc(name)
                );
            }
        }
    }
    let _ = writeln!(
        o,
        "# HELP {} Time to response headers, ms\n# TYPE {} histogram",
        t::DURATION,
        t::DURATION
    );
    for ((kind, tenant, name), s) in &snap {
        let count: u64 = s.buckets.iter().sum();
        if count == 0 {
            continue;
        }
        let labels = format!(
            "kind=\"{kind}\",tenant=\"{}\",name=\"{}\"",
            esc(tenant),
            esc(name)
        );
        let mut cum = 0;
        for (i, n) in s.buckets.iter().enumerate() {
            cum += n;
            let le = t::LATENCY_BOUNDS_MS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(o, "{}_bucket{{{labels},le=\"{le}\"}} {cum}", t::DURATION);
        }
        debug_assert_eq!(s.buckets.len(), BUCKETS);
        let _ = writeln!(
            o,
            "{}_sum{{{labels}}} {}",
            t::DURATION,
            s.sum_us as f64 / 1000.0
        );
        let _ = writeln!(o, "{}_count{{{labels}}} {count}", t::DURATION);
    }
    let cfg = shared.config.load();
    let _ = writeln!(o, "# HELP gw_endpoint_in_flight Requests in flight per endpoint\n# TYPE gw_endpoint_in_flight gauge");
    let mut names: Vec<&String> = cfg.clusters.keys().collect();
    names.sort();
    for n in &names {
        let c = &cfg.clusters[*n];
        for e in &c.endpoints {
            let _ = writeln!(
                o,
                "gw_endpoint_in_flight{{tenant=\"{}\",cluster=\"{}\",endpoint=\"{}\"}} {}",
                esc(&c.tenant),
                esc(&c.short),
                e.address,
                e.in_flight()
            );
        }
    }
    let _ = writeln!(
        o,
        "# HELP {} 1 when the endpoint is healthy\n# TYPE {} gauge",
        t::ENDPOINT_HEALTHY,
        t::ENDPOINT_HEALTHY
    );
    for n in &names {
        let c = &cfg.clusters[*n];
        for e in &c.endpoints {
            let _ = writeln!(
                o,
                "{}{{tenant=\"{}\",cluster=\"{}\",endpoint=\"{}\"}} {}",
                t::ENDPOINT_HEALTHY,
                esc(&c.tenant),
                esc(&c.short),
                e.address,
                u8::from(e.is_healthy())
            );
        }
    }
    let x = &shared.xds;
    let _ = writeln!(o, "# HELP gw_xds_connected 1 while the xDS stream is up\n# TYPE gw_xds_connected gauge\ngw_xds_connected {}", u8::from(x.connected.load(Ordering::Relaxed)));
    let _ = writeln!(
        o,
        "# HELP gw_xds_updates_total xDS responses by result\n# TYPE gw_xds_updates_total counter"
    );
    let _ = writeln!(
        o,
        "gw_xds_updates_total{{result=\"ack\"}} {}\ngw_xds_updates_total{{result=\"nack\"}} {}",
        x.acks.load(Ordering::Relaxed),
        x.nacks.load(Ordering::Relaxed)
    );
    let _ = writeln!(o, "# HELP gw_xds_reconnects_total xDS reconnect attempts\n# TYPE gw_xds_reconnects_total counter\ngw_xds_reconnects_total {}", x.reconnects.load(Ordering::Relaxed));
    let _ = writeln!(o, "# HELP gw_no_route_total Requests that matched no route\n# TYPE gw_no_route_total counter\ngw_no_route_total {}", shared.no_route.load(Ordering::Relaxed));
    let _ = writeln!(o, "# HELP gw_upstream_overflow_total Requests refused by cluster limits\n# TYPE gw_upstream_overflow_total counter\ngw_upstream_overflow_total {}", shared.overflow.load(Ordering::Relaxed));
    let _ = writeln!(o, "# HELP gw_access_logs_dropped_total Access records dropped (reporting queue full)\n# TYPE gw_access_logs_dropped_total counter\ngw_access_logs_dropped_total {}", shared.logs.dropped.load(Ordering::Relaxed));
    let _ = writeln!(
        o,
        "# HELP {} Seconds since start\n# TYPE {} gauge\n{} {}",
        t::UPTIME,
        t::UPTIME,
        t::UPTIME,
        shared.started.elapsed().as_secs()
    );
    o
}

fn config_dump(shared: &Shared) -> String {
    let cfg = shared.config.load();
    let mut types = serde_json::Map::new();
    for (t, m) in &cfg.resources.by_type {
        let v: serde_json::Map<String, serde_json::Value> = m
            .iter()
            .map(|(n, r)| {
                (
                    n.clone(),
                    serde_json::json!({"version": r.version, "bytes": r.body.len()}),
                )
            })
            .collect();
        types.insert(t.clone(), serde_json::Value::Object(v));
    }
    let mut clusters: Vec<serde_json::Value> = cfg
        .clusters
        .values()
        .map(|c| {
            serde_json::json!({"name": c.name, "lb": c.lb.as_str(), "connectTimeoutMs": c.connect_timeout.as_millis() as u64,
            "maxRequests": c.max_requests, "fallback": c.fallback, "endpoints": c.endpoints.iter().map(|e| &e.address).collect::<Vec<_>>()})
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::to_string_pretty(&serde_json::json!({
        "node": shared.node_id,
        "ready": cfg.is_ready(),
        "listener": cfg.listener,
        "routes": cfg.routes.len(),
        "versions": shared.xds.versions(),
        "resources": types,
        "clusters": clusters,
    }))
    .unwrap_or_default()
}

fn clusters(shared: &Shared) -> String {
    let cfg = shared.config.load();
    let mut out: Vec<serde_json::Value> = cfg
        .clusters
        .values()
        .map(|c| {
            serde_json::json!({
                "name": c.name, "lb": c.lb.as_str(), "active": c.active.load(Ordering::Relaxed),
                "endpoints": c.endpoints.iter().map(|e| serde_json::json!({
                    "address": e.address, "weight": e.weight(), "healthy": e.is_healthy(), "breaker": "closed",
                    "inFlight": e.in_flight(), "ewmaMs": e.ewma_ns() / 1e6, "failureRate": e.failure_rate(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::to_string_pretty(&out).unwrap_or_default()
}
