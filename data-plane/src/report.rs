//! Stats and access logs to the control plane, over Envoy's `MetricsService` and
//! `AccessLogService` (so the control plane ingests gw-proxy and stock Envoy the same way).
//!
//! The request path never waits: access records go into a bounded channel (`try_send`; when it
//! is full the record is dropped and counted) and are batched by a background task. Every error
//! is logged; successes are sampled.

use crate::server::Shared;
use crate::stats::{Snapshot, BUCKETS, CLASSES};
use gw_proto::envoy::pb::envoy::config::core::v3::{
    address, socket_address, Address, Node, RequestMethod, SocketAddress,
};
use gw_proto::envoy::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, HttpAccessLogEntry, HttpRequestProperties, HttpResponseProperties,
};
use gw_proto::envoy::pb::envoy::service::accesslog::v3::access_log_service_client::AccessLogServiceClient;
use gw_proto::envoy::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    HttpAccessLogEntries, Identifier as LogId, LogEntries,
};
use gw_proto::envoy::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use gw_proto::envoy::pb::envoy::service::metrics::v3::metrics_service_client::MetricsServiceClient;
use gw_proto::envoy::pb::envoy::service::metrics::v3::stream_metrics_message::Identifier;
use gw_proto::envoy::pb::envoy::service::metrics::v3::StreamMetricsMessage;
use gw_proto::envoy::pb::google::protobuf::{Duration as PbDuration, Timestamp, UInt32Value};
use gw_proto::envoy::pb::io::prometheus::client::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use gw_proto::telemetry as t;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;

/// One request, for the access log.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// When it started.
    pub started: Instant,
    /// `x-request-id`.
    pub request_id: String,
    /// Downstream IP.
    pub client_ip: String,
    /// Envoy route name.
    pub route: String,
    /// Envoy cluster name.
    pub cluster: String,
    /// Upstream `ADDR:PORT`.
    pub endpoint: String,
    /// Method.
    pub method: String,
    /// Host.
    pub authority: String,
    /// Path and query.
    pub path: String,
    /// Status sent downstream.
    pub status: u16,
    /// Time to response headers.
    pub duration: Duration,
    /// Why the upstream failed, empty when it did not.
    pub upstream_error: &'static str,
}

/// Where the request path drops access records.
#[derive(Debug)]
pub struct LogSink {
    tx: mpsc::Sender<AccessRecord>,
    /// Fraction of successful requests logged.
    pub sample: f64,
    /// Records dropped because the channel was full.
    pub dropped: AtomicU64,
    epoch: (Instant, SystemTime),
}

impl LogSink {
    /// A sink with room for `capacity` records; returns the receiving end for [`run`].
    pub fn new(capacity: usize, sample: f64) -> (LogSink, mpsc::Receiver<AccessRecord>) {
        let (tx, rx) = mpsc::channel(capacity);
        let sink = LogSink {
            tx,
            sample,
            dropped: AtomicU64::new(0),
            epoch: (Instant::now(), SystemTime::now()),
        };
        (sink, rx)
    }

    /// Whether a request that ended so is logged: errors always, successes sampled.
    pub fn wants(&self, status: u16, upstream_error: &str) -> bool {
        if status >= 500 || !upstream_error.is_empty() {
            return true;
        }
        self.sample >= 1.0
            || (self.sample > 0.0
                && (crate::lb::fast_rand() >> 11) as f64 / (1u64 << 53) as f64 <= self.sample)
    }

    /// Queues a record (see [`wants`](Self::wants)); never blocks.
    pub fn offer(&self, r: AccessRecord) {
        if self.tx.try_send(r).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn wall(&self, at: Instant) -> SystemTime {
        self.epoch.1 + at.saturating_duration_since(self.epoch.0)
    }
}

fn lp(k: &str, v: &str) -> LabelPair {
    LabelPair {
        name: Some(k.into()),
        value: Some(v.into()),
    }
}

/// The proxy's stats as Prometheus families (the telemetry contract of `gw_proto::telemetry`).
pub fn families(shared: &Shared) -> Vec<MetricFamily> {
    let snap = shared.registries.stats.snapshot();
    let mut req = Vec::new();
    let mut dur = Vec::new();
    for ((kind, tenant, name), s) in &snap {
        let base = || vec![lp("kind", kind), lp("tenant", tenant), lp("name", name)];
        for (class, n) in CLASSES.iter().zip(s.classes) {
            if n > 0 {
                let mut l = base();
                l.push(lp("class", class));
                req.push(Metric {
                    label: l,
                    counter: Some(Counter {
                        value: Some(n as f64),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        if let Some(h) = histogram(s) {
            dur.push(Metric {
                label: base(),
                histogram: Some(h),
                ..Default::default()
            });
        }
    }
    let mut states = Vec::new();
    let mut health = Vec::new();
    for c in shared.config.load().clusters.values() {
        for e in &c.endpoints {
            let l = vec![
                lp("tenant", &c.tenant),
                lp("cluster", &c.short),
                lp("endpoint", &e.address),
            ];
            states.push(Metric {
                label: l.clone(),
                gauge: Some(Gauge {
                    value: Some(f64::from(e.breaker_state().code())),
                }),
                ..Default::default()
            });
            let h = if e.is_healthy() { 1.0 } else { 0.0 };
            health.push(Metric {
                label: l,
                gauge: Some(Gauge { value: Some(h) }),
                ..Default::default()
            });
        }
    }
    let fam = |name: &str, ty: MetricType, metric: Vec<Metric>| MetricFamily {
        name: Some(name.into()),
        r#type: Some(ty as i32),
        metric,
        ..Default::default()
    };
    let uptime = vec![Metric {
        gauge: Some(Gauge {
            value: Some(shared.started.elapsed().as_secs_f64()),
        }),
        ..Default::default()
    }];
    vec![
        fam(t::UPTIME, MetricType::Gauge, uptime),
        fam(t::REQUESTS, MetricType::Counter, req),
        fam(t::DURATION, MetricType::Histogram, dur),
        fam(t::CIRCUIT_STATE, MetricType::Gauge, states),
        fam(t::ENDPOINT_HEALTHY, MetricType::Gauge, health),
    ]
}

fn histogram(s: &Snapshot) -> Option<Histogram> {
    let count: u64 = s.buckets.iter().sum();
    if count == 0 {
        return None;
    }
    let mut cum = 0;
    let mut bucket = Vec::with_capacity(BUCKETS);
    for (n, bound) in s.buckets.iter().zip(t::LATENCY_BOUNDS_MS) {
        cum += n;
        bucket.push(Bucket {
            cumulative_count: Some(cum),
            upper_bound: Some(bound),
            ..Default::default()
        });
    }
    Some(Histogram {
        sample_count: Some(count),
        sample_sum: Some(s.sum_us as f64 / 1000.0),
        bucket,
        ..Default::default()
    })
}

fn socket(addr: &str) -> Option<Address> {
    let (host, port) = addr.rsplit_once(':')?;
    Some(Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: host.trim_matches(['[', ']']).to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.parse().ok()?)),
            ..Default::default()
        })),
    })
}

fn entry(sink: &LogSink, r: AccessRecord) -> HttpAccessLogEntry {
    let at = sink
        .wall(r.started)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let method = RequestMethod::from_str_name(&r.method).map_or(0, |m| m as i32);
    HttpAccessLogEntry {
        common_properties: Some(AccessLogCommon {
            downstream_remote_address: socket(&format!("{}:0", r.client_ip)),
            upstream_remote_address: socket(&r.endpoint),
            upstream_cluster: r.cluster,
            route_name: r.route,
            start_time: Some(Timestamp {
                seconds: at.as_secs() as i64,
                nanos: at.subsec_nanos() as i32,
            }),
            duration: Some(PbDuration {
                seconds: r.duration.as_secs() as i64,
                nanos: r.duration.subsec_nanos() as i32,
            }),
            upstream_transport_failure_reason: r.upstream_error.to_owned(),
            ..Default::default()
        }),
        request: Some(HttpRequestProperties {
            request_method: method,
            authority: r.authority,
            path: r.path,
            request_id: r.request_id,
            ..Default::default()
        }),
        response: Some(HttpResponseProperties {
            response_code: (r.status > 0).then_some(UInt32Value {
                value: u32::from(r.status),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How long the last reports may take to reach the control plane at shutdown.
const FLUSH: Duration = Duration::from_secs(3);

/// Streams stats every `interval` and access logs as they come, reconnecting with backoff, until
/// `stop`. Records that arrive while the control plane is away are dropped and counted.
pub async fn run(
    shared: Arc<Shared>,
    channel: Channel,
    node: Node,
    interval: Duration,
    mut logs: mpsc::Receiver<AccessRecord>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let (mtx, mrx) = mpsc::channel::<StreamMetricsMessage>(4);
        let (ltx, lrx) = mpsc::channel::<StreamAccessLogsMessage>(64);
        let mut metrics = MetricsServiceClient::new(channel.clone());
        let mut als = AccessLogServiceClient::new(channel.clone());
        let m = tokio::spawn(async move {
            metrics
                .stream_metrics(tokio_stream::wrappers::ReceiverStream::new(mrx))
                .await
        });
        let l = tokio::spawn(async move {
            als.stream_access_logs(tokio_stream::wrappers::ReceiverStream::new(lrx))
                .await
        });
        let mut first_m = true;
        let mut first_l = true;
        let mut tick = tokio::time::interval(interval);
        let ok = loop {
            tokio::select! {
                _ = crate::server::stopped(&mut stop) => {
                    // The proxy has drained: the access logs still queued, then the last stats,
                    // and the streams are closed (and given a moment to deliver).
                    let mut queued = Vec::new();
                    while let Ok(r) = logs.try_recv() {
                        queued.push(entry(&shared.logs, r));
                    }
                    for batch in queued.chunks(500) {
                        let identifier = first_l.then(|| LogId { node: Some(node.clone()), log_name: "gw-proxy".into() });
                        first_l = false;
                        let msg = StreamAccessLogsMessage {
                            identifier,
                            log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry: batch.to_vec() })),
                        };
                        if ltx.send(msg).await.is_err() {
                            break;
                        }
                    }
                    let identifier = first_m.then(|| Identifier { node: Some(node.clone()) });
                    let _ = mtx.send(StreamMetricsMessage { identifier, envoy_metrics: families(&shared) }).await;
                    drop((mtx, ltx));
                    let _ = tokio::time::timeout(FLUSH, async { let _ = (m.await, l.await); }).await;
                    return;
                }
                _ = tick.tick() => {
                    let identifier = first_m.then(|| Identifier { node: Some(node.clone()) });
                    first_m = false;
                    if mtx.send(StreamMetricsMessage { identifier, envoy_metrics: families(&shared) }).await.is_err() {
                        break false;
                    }
                }
                r = logs.recv() => {
                    let Some(r) = r else { return };
                    let mut batch = vec![entry(&shared.logs, r)];
                    while batch.len() < 500 {
                        match logs.try_recv() {
                            Ok(r) => batch.push(entry(&shared.logs, r)),
                            Err(_) => break,
                        }
                    }
                    let identifier = first_l.then(|| LogId { node: Some(node.clone()), log_name: "gw-proxy".into() });
                    first_l = false;
                    let msg = StreamAccessLogsMessage {
                        identifier,
                        log_entries: Some(LogEntries::HttpLogs(HttpAccessLogEntries { log_entry: batch })),
                    };
                    if ltx.send(msg).await.is_err() {
                        break false;
                    }
                    backoff = Duration::from_millis(200);
                }
            }
        };
        drop((mtx, ltx));
        let _ = (m.await, l.await, ok);
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Sends endpoint breaker and health transitions to the control plane's Events service (best
/// effort: an event that cannot be delivered is logged and dropped), until `stop`.
pub async fn events(
    channel: Channel,
    node: String,
    mut rx: mpsc::UnboundedReceiver<crate::endpoint::EndpointEvent>,
    mut stop: watch::Receiver<bool>,
) {
    use gw_proto::gateway::v1 as pb;
    let mut client = pb::events_client::EventsClient::new(channel);
    loop {
        let e = tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            e = rx.recv() => match e {
                Some(e) => e,
                None => return,
            },
        };
        let (tenant, cluster) = e
            .cluster
            .split_once('/')
            .unwrap_or(("", e.cluster.as_str()));
        let severity = if matches!(e.to, "open" | "unhealthy") {
            "warning"
        } else {
            "info"
        };
        let what = if e.kind == "breaker_transition" {
            "circuit breaker"
        } else {
            "health"
        };
        let event = pb::Event {
            kind: e.kind.into(),
            severity: severity.into(),
            tenant: tenant.into(),
            object: format!("cluster/{tenant}/{cluster}"),
            node: node.clone(),
            message: format!("endpoint {} {what} {} -> {}", e.endpoint, e.from, e.to),
            attributes: [
                ("endpoint".to_string(), e.endpoint.clone()),
                ("from".to_string(), e.from.to_string()),
                ("to".to_string(), e.to.to_string()),
            ]
            .into(),
            ..Default::default()
        };
        if let Err(err) = client
            .record_event(pb::RecordEventRequest { event: Some(event) })
            .await
        {
            tracing::warn!(error = %err, "reporting an endpoint event to the control plane");
        }
    }
}
