//! The admin listener: `/ready`, `/metrics` (Prometheus text), `/config_dump` (JSON) and
//! `/clusters` (JSON: endpoints with weight, health, in-flight, latency EWMA, failure rate).
//!
//! - [`metrics`]: counters → Prometheus families; [`dump`]: the JSON views.

pub mod dump;
pub mod metrics;

use crate::server::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
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
        "/metrics" => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics::render(shared),
        ),
        "/config_dump" => reply(
            StatusCode::OK,
            "application/json",
            dump::config_dump(shared),
        ),
        "/clusters" => reply(StatusCode::OK, "application/json", dump::clusters(shared)),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "try /ready, /metrics, /config_dump, /clusters\n".into(),
        ),
    }
}
