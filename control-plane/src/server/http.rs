//! The control plane's HTTP listener: `/healthz` and Prometheus `/metrics`.

use super::stopped;
use crate::metrics::ControlPlaneMetrics;
use crate::store::Store;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serves until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    store: Store,
    metrics: ControlPlaneMetrics,
    fleet: crate::xds::Fleet,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stopped(&mut stop) => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting HTTP connection");
                    continue;
                }
            },
        };
        let store = store.clone();
        let metrics = metrics.clone();
        let fleet = fleet.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let store = store.clone();
                let metrics = metrics.clone();
                let fleet = fleet.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(handle(req, &store, &metrics, &fleet).await)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    store: &Store,
    metrics: &ControlPlaneMetrics,
    fleet: &crate::xds::Fleet,
) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => match store.revision().await {
            Ok(rev) => text(StatusCode::OK, format!("ok revision={rev}\n")),
            Err(e) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("userdb unavailable: {e}\n"),
            ),
        },
        "/metrics" => {
            metrics.revision.set(*store.subscribe().borrow() as i64);
            // Connected proxies per node cluster, read from the fleet registry at scrape time.
            metrics.xds_connected.reset();
            for p in fleet.list() {
                if p.disconnected_at_ms.is_none() {
                    metrics
                        .xds_connected
                        .with_label_values(&[p.node_cluster.as_str()])
                        .inc();
                }
            }
            let mut r = text(StatusCode::OK, metrics.render());
            r.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz or /metrics\n",
        ),
    }
}
