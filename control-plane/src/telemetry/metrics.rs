//! `envoy.service.metrics.v3.MetricsService`: cumulative Prometheus families in, rollup deltas and
//! endpoint state out.
//!
//! Counters and histograms arrive cumulative; each stream remembers the last value per series and
//! adds the difference (a value that went down means the proxy restarted: it counts whole). The
//! first sample of a stream counts whole when the proxy is fresh, and only sets the baseline when
//! it has been up a while (a reconnect to this replica), so nothing is counted twice.

use super::buffer::Buffer;
use crate::store::{bucket_of, EndpointState, Rollup, RollupKey, BUCKETS};
use gw_proto::envoy::pb::envoy::service::metrics::v3::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use gw_proto::envoy::pb::envoy::service::metrics::v3::{
    StreamMetricsMessage, StreamMetricsResponse,
};
use gw_proto::envoy::pb::io::prometheus::client::{Metric, MetricFamily};
use gw_proto::telemetry as t;
use std::collections::HashMap;
use tonic::{Request, Response, Status, Streaming};

/// A proxy up longer than this when its stream starts is reconnecting, not fresh.
const FRESH_UPTIME_S: f64 = 30.0;

/// The MetricsService server.
#[derive(Clone)]
pub struct MetricsIngest {
    buffer: Buffer,
}

impl MetricsIngest {
    /// Ingests into `buffer`.
    pub fn new(buffer: Buffer) -> Self {
        MetricsIngest { buffer }
    }

    /// The tonic service.
    pub fn into_service(self) -> MetricsServiceServer<Self> {
        MetricsServiceServer::new(self).max_decoding_message_size(32 << 20)
    }
}

#[tonic::async_trait]
impl MetricsService for MetricsIngest {
    async fn stream_metrics(
        &self,
        req: Request<Streaming<StreamMetricsMessage>>,
    ) -> Result<Response<StreamMetricsResponse>, Status> {
        let mut stream = req.into_inner();
        let mut state = StreamState::default();
        while let Some(msg) = stream.message().await? {
            state.ingest(&self.buffer, &msg);
        }
        Ok(Response::new(StreamMetricsResponse {}))
    }
}

/// What one stream remembers between messages.
#[derive(Debug, Default)]
pub struct StreamState {
    node: String,
    seen_first: bool,
    counters: HashMap<String, f64>,
    histograms: HashMap<String, Hist>,
    states: HashMap<(String, String, String), (String, Option<bool>)>,
}

fn label<'a>(m: &'a Metric, name: &str) -> &'a str {
    m.label
        .iter()
        .find(|l| l.name.as_deref() == Some(name))
        .and_then(|l| l.value.as_deref())
        .unwrap_or("")
}

fn series_key(family: &str, m: &Metric) -> String {
    let mut labels: Vec<String> = m
        .label
        .iter()
        .map(|l| {
            format!(
                "{}={}",
                l.name.as_deref().unwrap_or(""),
                l.value.as_deref().unwrap_or("")
            )
        })
        .collect();
    labels.sort();
    format!("{family}{{{}}}", labels.join(","))
}

/// Where an Envoy stat name points: `cluster.<name>.<stat>`.
fn envoy_cluster_stat(name: &str) -> Option<(&str, &str)> {
    let rest = name.strip_prefix("cluster.")?;
    let (cluster, stat) = rest.rsplit_once('.')?;
    Some((cluster, stat))
}

impl StreamState {
    /// Applies one message.
    pub fn ingest(&mut self, buf: &Buffer, msg: &StreamMetricsMessage) {
        if let Some(node) = msg.identifier.as_ref().and_then(|i| i.node.as_ref()) {
            self.node = node.id.clone();
        }
        let baseline = if self.seen_first {
            false
        } else {
            self.seen_first = true;
            uptime(&msg.envoy_metrics).is_some_and(|u| u > FRESH_UPTIME_S)
        };
        let bucket = buf.bucket(buf.now_ms());
        let mut deltas: HashMap<RollupKey, Rollup> = HashMap::new();
        for f in &msg.envoy_metrics {
            let name = f.name.as_deref().unwrap_or("");
            for m in &f.metric {
                self.metric(buf, name, m, bucket, baseline, &mut deltas);
            }
        }
        for (k, r) in deltas {
            buf.add_rollup(k, &r);
        }
    }

    fn counter_delta(&mut self, key: String, cur: f64, baseline: bool) -> u64 {
        let prev = self.counters.insert(key, cur);
        let d = match prev {
            Some(p) if cur >= p => cur - p,
            Some(_) => cur,
            None if baseline => 0.0,
            None => cur,
        };
        d.max(0.0).round() as u64
    }

    /// Non-cumulative per-gw-bucket counts and the latency-sum delta (ms) since the last sample.
    fn histogram_delta(
        &mut self,
        key: String,
        m: &Metric,
        baseline: bool,
    ) -> Option<([u64; BUCKETS], f64)> {
        let h = m.histogram.as_ref()?;
        let cur = Hist {
            buckets: h
                .bucket
                .iter()
                .map(|b| {
                    (
                        b.upper_bound.unwrap_or(f64::INFINITY),
                        b.cumulative_count.unwrap_or(0),
                    )
                })
                .collect(),
            count: h.sample_count.unwrap_or(0),
            sum: h.sample_sum.unwrap_or(0.0),
        };
        let prev = self.histograms.insert(key, cur.clone());
        let prev = match prev {
            // Same layout and nothing went down: a continuation.
            Some(p) if p.buckets.len() == cur.buckets.len() && p.count <= cur.count => p,
            // The proxy restarted: everything counts.
            Some(_) => Hist::default(),
            None if baseline => return None,
            None => Hist::default(),
        };
        let (cur_nc, prev_nc) = (cur.per_bucket(), prev.per_bucket());
        let mut out = [0u64; BUCKETS];
        for (i, (bound, n)) in cur_nc.iter().enumerate() {
            let p = prev_nc.get(i).map_or(0, |x| x.1);
            out[bucket_of(*bound)] += n.saturating_sub(p);
        }
        Some((out, (cur.sum - prev.sum).max(0.0)))
    }

    fn metric(
        &mut self,
        buf: &Buffer,
        family: &str,
        m: &Metric,
        bucket: i64,
        baseline: bool,
        deltas: &mut HashMap<RollupKey, Rollup>,
    ) {
        let key = series_key(family, m);
        match family {
            t::REQUESTS => {
                let cur = m.counter.as_ref().and_then(|c| c.value).unwrap_or(0.0);
                let d = self.counter_delta(key, cur, baseline);
                if d == 0 {
                    return;
                }
                let r = deltas.entry(object_key(bucket, m)).or_default();
                r.requests += d;
                match label(m, "class") {
                    "upstream_error" => r.upstream_errors += d,
                    c => {
                        if let Some(i) = c
                            .strip_suffix("xx")
                            .and_then(|n| n.parse::<usize>().ok())
                            .filter(|i| (1..=5).contains(i))
                        {
                            r.status[i - 1] += d;
                        }
                    }
                }
            }
            t::DURATION => {
                if let Some((counts, sum_ms)) = self.histogram_delta(key, m, baseline) {
                    deltas
                        .entry(object_key(bucket, m))
                        .or_default()
                        .add_latencies(&counts, sum_ms);
                }
            }
            t::CIRCUIT_STATE | t::ENDPOINT_HEALTHY => {
                let v = m.gauge.as_ref().and_then(|g| g.value).unwrap_or(0.0);
                let k = (
                    label(m, "tenant").to_owned(),
                    label(m, "cluster").to_owned(),
                    label(m, "endpoint").to_owned(),
                );
                let entry = self
                    .states
                    .entry(k.clone())
                    .or_insert_with(|| ("closed".into(), None));
                if family == t::CIRCUIT_STATE {
                    entry.0 = match v as i64 {
                        1 => "open",
                        2 => "half_open",
                        _ => "closed",
                    }
                    .into();
                } else {
                    entry.1 = Some(v >= 1.0);
                }
                buf.set_endpoint_state(EndpointState {
                    node: self.node.clone(),
                    tenant: k.0,
                    cluster: k.1,
                    endpoint: k.2,
                    breaker: entry.0.clone(),
                    healthy: entry.1.unwrap_or(true),
                    updated_at_ms: buf.now_ms(),
                });
            }
            _ => self.envoy_stat(buf, family, m, key, bucket, baseline, deltas),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn envoy_stat(
        &mut self,
        buf: &Buffer,
        family: &str,
        m: &Metric,
        key: String,
        bucket: i64,
        baseline: bool,
        deltas: &mut HashMap<RollupKey, Rollup>,
    ) {
        let Some((cluster, stat)) = envoy_cluster_stat(family) else {
            return;
        };
        let Some((tenant, name)) = buf.names.resolve(cluster) else {
            return;
        };
        let class = stat
            .strip_prefix("upstream_rq_")
            .and_then(|s| s.strip_suffix("xx"))
            .and_then(|n| n.parse::<usize>().ok());
        if let Some(i) = class.filter(|i| (1..=5).contains(i)) {
            let cur = m.counter.as_ref().and_then(|c| c.value).unwrap_or(0.0);
            let d = self.counter_delta(key, cur, baseline);
            if d > 0 {
                let r = deltas
                    .entry(rk(bucket, "cluster", &tenant, &name))
                    .or_default();
                r.requests += d;
                r.status[i - 1] += d;
            }
        } else if stat == "upstream_rq_time" {
            if let Some((counts, sum_ms)) = self.histogram_delta(key, m, baseline) {
                let r = deltas
                    .entry(rk(bucket, "cluster", &tenant, &name))
                    .or_default();
                r.add_latencies(&counts, sum_ms);
            }
        }
    }
}

/// A cumulative histogram sample.
#[derive(Debug, Clone, Default)]
struct Hist {
    buckets: Vec<(f64, u64)>,
    count: u64,
    sum: f64,
}

impl Hist {
    /// Counts per bucket (not cumulative), with samples above the last bound under +inf.
    fn per_bucket(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::with_capacity(self.buckets.len() + 1);
        let mut below = 0u64;
        for (bound, cum) in &self.buckets {
            out.push((*bound, cum.saturating_sub(below)));
            below = below.max(*cum);
        }
        out.push((f64::INFINITY, self.count.saturating_sub(below)));
        out
    }
}

/// The rollup key a gw family's `kind` / `tenant` / `name` labels name.
fn object_key(bucket: i64, m: &Metric) -> RollupKey {
    rk(
        bucket,
        label(m, "kind"),
        label(m, "tenant"),
        label(m, "name"),
    )
}

fn rk(bucket: i64, kind: &str, tenant: &str, name: &str) -> RollupKey {
    RollupKey {
        bucket_ms: bucket,
        kind: kind.into(),
        tenant: tenant.into(),
        name: name.into(),
    }
}

fn uptime(families: &[MetricFamily]) -> Option<f64> {
    families
        .iter()
        .find(|f| matches!(f.name.as_deref(), Some(t::UPTIME) | Some("server.uptime")))
        .and_then(|f| f.metric.first())
        .and_then(|m| {
            m.gauge
                .as_ref()
                .and_then(|g| g.value)
                .or_else(|| m.counter.as_ref().and_then(|c| c.value))
        })
}
