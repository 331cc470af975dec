//! The control plane's own Prometheus metrics and the fleet's, served at `/metrics`.
//!
//! Fleet series (`gw_fleet_*`) are the proxies' reports as this replica ingested them, cumulative
//! since it started — scrape every replica and sum, as with any horizontally scaled exporter.

use crate::store::{Rollup, BUCKETS, LATENCY_BOUNDS_MS};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily};
use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Every metric the control plane exports.
#[derive(Clone)]
pub struct ControlPlaneMetrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Latest userdb revision known.
    pub revision: IntGauge,
    /// Access-log records dropped by ingest because its buffer was full.
    pub ingest_dropped_logs: IntCounter,
    /// Alerts currently firing.
    pub alerts_firing: IntGauge,
    /// Webhook delivery attempts by result (`delivered`, `retry`, `failed`).
    pub webhook_attempts: IntCounterVec,
    /// xDS pushes sent, by type URL and mode (`sotw`, `delta`).
    pub xds_pushes: IntCounterVec,
    /// ACKs received, by type URL.
    pub xds_acks: IntCounterVec,
    /// NACKs received, by type URL.
    pub xds_nacks: IntCounterVec,
    /// Time from a push to its ACK, by type URL.
    pub xds_push_to_ack: HistogramVec,
    /// Connected proxies by node cluster.
    pub xds_connected: IntGaugeVec,
    /// API calls refused for want of a valid token (with `--auth`).
    pub api_unauthenticated: IntCounter,
    /// EndpointSlice watches this replica runs.
    pub discovery_watches: IntGauge,
    /// Writes of discovered endpoint sets (each a real change).
    pub discovery_writes: IntCounter,
    fleet: Arc<FleetCollector>,
}

impl std::fmt::Debug for ControlPlaneMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlaneMetrics")
            .finish_non_exhaustive()
    }
}

impl ControlPlaneMetrics {
    /// Registers everything in a fresh registry.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let revision = IntGauge::new(
            "gw_store_revision",
            "Latest userdb revision this control plane knows of",
        )?;
        let ingest_dropped_logs = IntCounter::new(
            "gw_ingest_dropped_access_logs_total",
            "Access-log records dropped because ingest was full",
        )?;
        let alerts_firing = IntGauge::new("gw_alerts_firing", "Alerts currently firing")?;
        let webhook_attempts = IntCounterVec::new(
            Opts::new(
                "gw_webhook_attempts_total",
                "Webhook delivery attempts by result",
            ),
            &["result"],
        )?;
        let xds_pushes = IntCounterVec::new(
            Opts::new("gw_xds_pushes_total", "xDS responses sent"),
            &["type_url", "mode"],
        )?;
        let xds_acks = IntCounterVec::new(
            Opts::new("gw_xds_acks_total", "xDS ACKs received"),
            &["type_url"],
        )?;
        let xds_nacks = IntCounterVec::new(
            Opts::new("gw_xds_nacks_total", "xDS NACKs received"),
            &["type_url"],
        )?;
        let xds_push_to_ack = HistogramVec::new(
            HistogramOpts::new(
                "gw_xds_push_to_ack_seconds",
                "Time from an xDS push to its ACK",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["type_url"],
        )?;
        let xds_connected = IntGaugeVec::new(
            Opts::new(
                "gw_xds_connected_proxies",
                "Proxies connected to this replica",
            ),
            &["node_cluster"],
        )?;
        let api_unauthenticated = IntCounter::new(
            "gw_api_unauthenticated_total",
            "API calls refused for want of a valid bearer token",
        )?;
        let discovery_watches = IntGauge::new(
            "gw_discovery_watches",
            "Kubernetes EndpointSlice watches this replica runs",
        )?;
        let discovery_writes = IntCounter::new(
            "gw_discovery_endpoint_writes_total",
            "Discovered endpoint sets written to userdb (each a real change)",
        )?;
        let fleet = Arc::new(FleetCollector::new()?);
        registry.register(Box::new(revision.clone()))?;
        registry.register(Box::new(ingest_dropped_logs.clone()))?;
        registry.register(Box::new(alerts_firing.clone()))?;
        registry.register(Box::new(webhook_attempts.clone()))?;
        registry.register(Box::new(xds_pushes.clone()))?;
        registry.register(Box::new(xds_acks.clone()))?;
        registry.register(Box::new(xds_nacks.clone()))?;
        registry.register(Box::new(xds_push_to_ack.clone()))?;
        registry.register(Box::new(xds_connected.clone()))?;
        registry.register(Box::new(api_unauthenticated.clone()))?;
        registry.register(Box::new(discovery_watches.clone()))?;
        registry.register(Box::new(discovery_writes.clone()))?;
        registry.register(Box::new(SharedCollector(fleet.clone())))?;
        Ok(ControlPlaneMetrics {
            registry,
            revision,
            ingest_dropped_logs,
            alerts_firing,
            webhook_attempts,
            xds_pushes,
            xds_acks,
            xds_nacks,
            xds_push_to_ack,
            xds_connected,
            api_unauthenticated,
            discovery_watches,
            discovery_writes,
            fleet,
        })
    }

    /// Adds ingested traffic of one object to the fleet series.
    pub fn add_fleet(&self, kind: &str, tenant: &str, name: &str, delta: &Rollup) {
        if let Ok(mut m) = self.fleet.totals.lock() {
            m.entry((kind.to_owned(), tenant.to_owned(), name.to_owned()))
                .or_default()
                .add(delta);
        }
    }

    /// Renders the text exposition format.
    pub fn render(&self) -> Vec<u8> {
        use prometheus::Encoder;
        let mut buf = Vec::new();
        let _ = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}

/// Fleet totals rendered as `gw_fleet_requests_total` and `gw_fleet_request_duration_ms`.
struct FleetCollector {
    totals: Mutex<HashMap<(String, String, String), Rollup>>,
    descs: Vec<Desc>,
}

struct SharedCollector(Arc<FleetCollector>);

impl FleetCollector {
    fn new() -> Result<Self, prometheus::Error> {
        let labels = || vec!["kind".to_owned(), "tenant".to_owned(), "name".to_owned()];
        let mut with_class = labels();
        with_class.push("class".into());
        let descs = vec![
            Desc::new(
                "gw_fleet_requests_total".into(),
                "Requests the fleet reported".into(),
                with_class,
                HashMap::new(),
            )?,
            Desc::new(
                "gw_fleet_request_duration_ms".into(),
                "Request latency the fleet reported".into(),
                labels(),
                HashMap::new(),
            )?,
        ];
        Ok(FleetCollector {
            totals: Mutex::default(),
            descs,
        })
    }
}

fn label(name: &str, value: &str) -> proto::LabelPair {
    let mut l = proto::LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

impl Collector for SharedCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.0.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Ok(totals) = self.0.totals.lock() else {
            return Vec::new();
        };
        let mut counters = MetricFamily::default();
        counters.set_name("gw_fleet_requests_total".into());
        counters.set_help("Requests the fleet reported".into());
        counters.set_field_type(proto::MetricType::COUNTER);
        let mut hist = MetricFamily::default();
        hist.set_name("gw_fleet_request_duration_ms".into());
        hist.set_help("Request latency the fleet reported".into());
        hist.set_field_type(proto::MetricType::HISTOGRAM);
        let mut keys: Vec<_> = totals.keys().collect();
        keys.sort();
        for key in keys {
            let r = &totals[key];
            let (kind, tenant, name) = key;
            let base = vec![
                label("kind", kind),
                label("tenant", tenant),
                label("name", name),
            ];
            let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .into_iter()
                .zip(r.status)
                .chain([("upstream_error", r.upstream_errors)]);
            for (class, n) in classes {
                if n == 0 {
                    continue;
                }
                let mut m = proto::Metric::default();
                let mut l = base.clone();
                l.push(label("class", class));
                m.set_label(l);
                let mut c = proto::Counter::default();
                c.set_value(n as f64);
                m.set_counter(c);
                counters.mut_metric().push(m);
            }
            let count: u64 = r.buckets.iter().sum();
            if count > 0 {
                let mut h = proto::Histogram::default();
                h.set_sample_count(count);
                h.set_sample_sum(r.latency_sum_us as f64 / 1000.0);
                let mut cum = 0;
                let mut buckets = Vec::with_capacity(BUCKETS - 1);
                for (n, bound) in r.buckets.iter().zip(LATENCY_BOUNDS_MS) {
                    cum += n;
                    let mut b = proto::Bucket::default();
                    b.set_upper_bound(bound);
                    b.set_cumulative_count(cum);
                    buckets.push(b);
                }
                h.set_bucket(buckets);
                let mut m = proto::Metric::default();
                m.set_label(base);
                m.set_histogram(h);
                hist.mut_metric().push(m);
            }
        }
        [counters, hist]
            .into_iter()
            .filter(|f| !f.get_metric().is_empty())
            .collect()
    }
}
