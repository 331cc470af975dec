//! Active health checking: HTTP (path, expected statuses, host header) or TCP connect probes at
//! an interval with jitter; an endpoint turns unhealthy after `unhealthyThreshold` failed probes
//! in a row and healthy again after `healthyThreshold` good ones. Endpoints start as the control
//! plane says (EDS health status); verdicts reach the balancer at once through the endpoint's
//! atomic health flag.

use crate::endpoint::Endpoint;
use bytes::Bytes;
use gw_proto::model::HealthCheck;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Consecutive-result counting for one endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Verdicts {
    ok_in_a_row: u32,
    bad_in_a_row: u32,
}

impl Verdicts {
    /// Adds a probe result; returns the new health when it flips.
    pub fn step(&mut self, healthy_now: bool, probe_ok: bool, hc: &HealthCheck) -> Option<bool> {
        if probe_ok {
            self.ok_in_a_row += 1;
            self.bad_in_a_row = 0;
            (!healthy_now && self.ok_in_a_row >= hc.healthy_threshold.max(1)).then_some(true)
        } else {
            self.bad_in_a_row += 1;
            self.ok_in_a_row = 0;
            (healthy_now && self.bad_in_a_row >= hc.unhealthy_threshold.max(1)).then_some(false)
        }
    }
}

/// A health transition, reported as a metric and an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthChange {
    /// Cluster (Envoy name).
    pub cluster: String,
    /// `ADDR:PORT`.
    pub endpoint: String,
    /// New health.
    pub healthy: bool,
}

type ProbeClient = Client<ProbeConnector, Empty<Bytes>>;

/// How probes reach an endpoint: TCP, with TLS when the cluster's connections have it (as
/// Envoy's health checks use the cluster's transport socket).
#[derive(Debug, Clone)]
pub struct ProbeConnector {
    tls: Option<Arc<crate::tls::UpstreamTls>>,
    timeout: Duration,
}

impl tower_service::Service<hyper::Uri> for ProbeConnector {
    type Response = hyper_util::rt::TokioIo<crate::proxy::upstream::UpIo>;
    type Error = crate::proxy::upstream::ConnectError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: hyper::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let address = uri.authority().map_or("", |a| a.as_str());
            crate::proxy::upstream::dial(
                address,
                address.parse().ok(),
                me.tls.as_deref(),
                me.timeout,
            )
            .await
            .map(hyper_util::rt::TokioIo::new)
        })
    }
}

/// One probe of `ep`: `true` when it passed.
pub async fn probe(client: &ProbeClient, ep: &Endpoint, hc: &HealthCheck, host: &str) -> bool {
    let Some(path) = &hc.path else {
        // Connected, and for a TLS cluster handshaken (as Envoy's TCP check over its transport
        // socket): a certificate refused fails the probe.
        return ep.pool.dial(hc.timeout).await.is_ok();
    };
    let host = hc.host.as_deref().unwrap_or(host);
    let Ok(req) = hyper::Request::get(format!("http://{}{path}", ep.address))
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "gw-proxy-health-check")
        .body(Empty::new())
    else {
        return false;
    };
    match tokio::time::timeout(hc.timeout, client.request(req)).await {
        Ok(Ok(resp)) => {
            let s = u32::from(resp.status().as_u16());
            if hc.expected_statuses.is_empty() {
                (200..300).contains(&s)
            } else {
                hc.expected_statuses.contains(&s)
            }
        }
        _ => false,
    }
}

/// Probes every endpoint of a cluster until `stop` turns true or the task is dropped; reports
/// each flip on `changes`. The transport: whether the cluster speaks HTTP/2, and its TLS.
pub async fn run(
    cluster: String,
    host: String,
    endpoints: Vec<Arc<Endpoint>>,
    hc: HealthCheck,
    (http2, tls): (bool, Option<Arc<crate::tls::UpstreamTls>>),
    changes: tokio::sync::mpsc::UnboundedSender<HealthChange>,
    mut stop: watch::Receiver<bool>,
) {
    // An HTTP/2 cluster's endpoints are probed over HTTP/2 (Envoy's `codec_client_type`), a
    // TLS cluster's over TLS.
    let connector = ProbeConnector {
        tls,
        timeout: hc.timeout,
    };
    let client: ProbeClient = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .http2_only(http2)
        .build(connector);
    let mut verdicts = vec![Verdicts::default(); endpoints.len()];
    loop {
        // ±10 % jitter so a fleet of proxies does not probe in lockstep.
        let jitter = hc.interval.mul_f64(0.9 + rand::random::<f64>() * 0.2);
        let results =
            futures::future::join_all(endpoints.iter().map(|ep| probe(&client, ep, &hc, &host)))
                .await;
        for ((ep, v), ok) in endpoints.iter().zip(verdicts.iter_mut()).zip(results) {
            if let Some(now) = v.step(ep.is_healthy(), ok, &hc) {
                ep.healthy.store(now, Ordering::Relaxed);
                let (from, to) = if now {
                    ("unhealthy", "healthy")
                } else {
                    ("healthy", "unhealthy")
                };
                ep.report("health_transition", from, to);
                let _ = changes.send(HealthChange {
                    cluster: cluster.clone(),
                    endpoint: ep.address.clone(),
                    healthy: now,
                });
            }
        }
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            _ = tokio::time::sleep(jitter) => {}
        }
    }
}

/// Keeps one health-check task per cluster that has a `healthCheck`, following config changes:
/// whenever the served config is swapped, clusters whose check or endpoints changed get a fresh
/// task and removed ones lose theirs. Runs until `stop`.
pub async fn supervise(shared: Arc<crate::server::Shared>, mut stop: watch::Receiver<bool>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<HealthChange>();
    let mut running: std::collections::HashMap<String, (String, tokio::task::JoinHandle<()>)> =
        Default::default();
    let mut seen: Option<Arc<crate::config::RuntimeConfig>> = None;
    // The config is an ArcSwap without change notification: look at the pointer twice a second.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => break,
            Some(ch) = rx.recv() => {
                tracing::info!(cluster = %ch.cluster, endpoint = %ch.endpoint, healthy = ch.healthy, "health check verdict changed");
                continue;
            }
            _ = tick.tick() => {}
        }
        let cfg = shared.config.load_full();
        if seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &cfg)) {
            continue;
        }
        seen = Some(cfg.clone());
        let mut want = std::collections::HashMap::new();
        for c in cfg.clusters.values() {
            let Some(hc) = c.spec.as_ref().and_then(|s| s.health_check.clone()) else {
                continue;
            };
            let addrs: Vec<&str> = c.endpoints.iter().map(|e| e.address.as_str()).collect();
            want.insert(
                c.name.clone(),
                (
                    format!(
                        "{hc:?}{addrs:?}{}{}",
                        c.http2,
                        c.tls.as_ref().map_or(0, |t| t.id)
                    ),
                    hc,
                    c.endpoints.clone(),
                    c.short.clone(),
                    (c.http2, c.tls.clone()),
                ),
            );
        }
        running.retain(|name, (key, task)| {
            let keep = want.get(name).is_some_and(|w| &w.0 == key);
            if !keep {
                task.abort();
            }
            keep
        });
        for (name, (key, hc, endpoints, host, transport)) in want {
            if running.contains_key(&name) {
                continue;
            }
            let task = tokio::spawn(run(
                name.clone(),
                host,
                endpoints,
                hc,
                transport,
                tx.clone(),
                stop.clone(),
            ));
            running.insert(name, (key, task));
        }
    }
    for (_, (_, task)) in running {
        task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc() -> HealthCheck {
        HealthCheck {
            healthy_threshold: 2,
            unhealthy_threshold: 3,
            ..HealthCheck::default()
        }
    }

    #[test]
    fn thresholds_flip_health() {
        let mut v = Verdicts::default();
        let hc = hc();
        assert_eq!(v.step(true, false, &hc), None);
        assert_eq!(v.step(true, false, &hc), None);
        assert_eq!(
            v.step(true, false, &hc),
            Some(false),
            "third failure in a row"
        );
        assert_eq!(v.step(false, true, &hc), None);
        assert_eq!(
            v.step(false, false, &hc),
            None,
            "a failure resets the good streak"
        );
        assert_eq!(v.step(false, true, &hc), None);
        assert_eq!(v.step(false, true, &hc), Some(true), "two good in a row");
    }

    #[tokio::test]
    async fn tcp_and_http_probes_against_real_sockets() {
        let up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = up.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = up.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let status = if req.uri().path() == "/health" {
                                200
                            } else {
                                503
                            };
                            let mut r =
                                hyper::Response::new(http_body_util::Full::new(Bytes::new()));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        let client: ProbeClient = Client::builder(TokioExecutor::new()).build(ProbeConnector {
            tls: None,
            timeout: Duration::from_secs(1),
        });
        let ep = Endpoint::new(addr.to_string(), 1);
        let tcp = HealthCheck { path: None, ..hc() };
        assert!(probe(&client, &ep, &tcp, "x").await);
        let http = HealthCheck {
            path: Some("/health".into()),
            ..hc()
        };
        assert!(probe(&client, &ep, &http, "x").await);
        let bad = HealthCheck {
            path: Some("/other".into()),
            ..hc()
        };
        assert!(!probe(&client, &ep, &bad, "x").await);
        let expected = HealthCheck {
            path: Some("/other".into()),
            expected_statuses: vec![503],
            ..hc()
        };
        assert!(probe(&client, &ep, &expected, "x").await);
        // Bound but never listening: nothing answers here.
        let unanswered = tokio::net::TcpSocket::new_v4().unwrap();
        unanswered.bind(([127, 0, 0, 1], 0).into()).unwrap();
        let closed = unanswered.local_addr().unwrap();
        let gone = Endpoint::new(closed.to_string(), 1);
        assert!(!probe(&client, &gone, &tcp, "x").await);
        assert!(!probe(&client, &gone, &http, "x").await);
    }
}
