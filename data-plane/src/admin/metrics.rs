//! `/metrics`: the proxy's lock-free counters turned into Prometheus families at scrape time and
//! written by the `prometheus` crate's text encoder. The request path never touches this code.

use crate::server::Shared;
use crate::stats::{BUCKETS, CLASSES};
use gw_proto::telemetry as t;
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};
use std::sync::atomic::Ordering;

fn labels(pairs: &[(&str, &str)]) -> Vec<LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = LabelPair::default();
            l.set_name((*k).to_owned());
            l.set_value((*v).to_owned());
            l
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn counter(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut c = Counter::default();
    c.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_counter(c);
    m
}

fn gauge(pairs: &[(&str, &str)], v: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(v);
    let mut m = Metric::default();
    m.set_label(labels(pairs));
    m.set_gauge(g);
    m
}

/// Every family, in a stable order.
pub fn families(shared: &Shared) -> Vec<MetricFamily> {
    let snap = shared.registries.stats.snapshot();
    let mut requests = Vec::new();
    let mut durations = Vec::new();
    for ((kind, tenant, name), s) in &snap {
        let base = [
            ("kind", *kind),
            ("tenant", tenant.as_str()),
            ("name", name.as_str()),
        ];
        for (class, n) in CLASSES.iter().zip(s.classes) {
            if n > 0 {
                let mut l = base.to_vec();
                l.push(("class", class));
                requests.push(counter(&l, n as f64));
            }
        }
        let count: u64 = s.buckets.iter().sum();
        if count == 0 {
            continue;
        }
        let mut cum = 0;
        let buckets = s.buckets[..BUCKETS - 1]
            .iter()
            .zip(t::LATENCY_BOUNDS_MS)
            .map(|(n, le)| {
                cum += n;
                let mut b = Bucket::default();
                b.set_cumulative_count(cum);
                b.set_upper_bound(le);
                b
            })
            .collect();
        let mut h = Histogram::default();
        h.set_sample_count(count);
        h.set_sample_sum(s.sum_us as f64 / 1000.0);
        h.set_bucket(buckets);
        let mut m = Metric::default();
        m.set_label(labels(&base));
        m.set_histogram(h);
        durations.push(m);
    }
    let cfg = shared.config.load();
    let mut names: Vec<&String> = cfg.clusters.keys().collect();
    names.sort();
    let (mut in_flight, mut healthy, mut ewma, mut weight) = (vec![], vec![], vec![], vec![]);
    let (mut circuit, mut changes) = (vec![], vec![]);
    let (mut overflows, mut limit_now, mut maxima) = (vec![], vec![], vec![]);
    for c in names.iter().map(|n| &cfg.clusters[*n]) {
        for limit in crate::limits::Limit::ALL {
            let l = [
                ("tenant", c.tenant.as_str()),
                ("cluster", c.short.as_str()),
                ("limit", limit.as_str()),
            ];
            overflows.push(counter(&l, c.load.overflows(limit) as f64));
            limit_now.push(gauge(&l, f64::from(c.load.current(limit))));
            maxima.push(gauge(&l, f64::from(c.maxima.0[limit as usize])));
        }
        for e in &c.endpoints {
            let l = [
                ("tenant", c.tenant.as_str()),
                ("cluster", c.short.as_str()),
                ("endpoint", e.address.as_str()),
            ];
            in_flight.push(gauge(&l, f64::from(e.in_flight())));
            healthy.push(gauge(&l, f64::from(u8::from(e.is_healthy()))));
            ewma.push(gauge(&l, e.ewma_ns() / 1e6));
            weight.push(gauge(&l, f64::from(e.weight())));
            circuit.push(gauge(&l, f64::from(e.breaker_state().code())));
            for ((from, to), n) in crate::endpoint::TRANSITIONS.iter().zip(&e.transitions) {
                let mut lt = l.to_vec();
                lt.push(("from", from.as_str()));
                lt.push(("to", to.as_str()));
                changes.push(counter(&lt, n.load(Ordering::Relaxed) as f64));
            }
        }
    }
    let x = &shared.xds;
    let held: Vec<Metric> = cfg
        .resources
        .by_type
        .iter()
        .map(|(ty, m)| {
            let short = ty.rsplit('.').next().unwrap_or(ty);
            gauge(&[("type", short)], m.len() as f64)
        })
        .collect();
    let one = |name: &str, help: &str, kind, v: f64| family(name, help, kind, vec![gauge(&[], v)]);
    let one_counter = |name: &str, help: &str, v: u64| {
        family(
            name,
            help,
            MetricType::COUNTER,
            vec![counter(&[], v as f64)],
        )
    };
    vec![
        family(
            t::REQUESTS,
            "Requests finished, by status class",
            MetricType::COUNTER,
            requests,
        ),
        family(
            t::DURATION,
            "Time to response headers, ms",
            MetricType::HISTOGRAM,
            durations,
        ),
        family(
            "gw_endpoint_in_flight",
            "Requests in flight per endpoint",
            MetricType::GAUGE,
            in_flight,
        ),
        family(
            t::ENDPOINT_HEALTHY,
            "1 when the endpoint is healthy",
            MetricType::GAUGE,
            healthy,
        ),
        family(
            t::CIRCUIT_STATE,
            "Circuit breaker state per endpoint: 0 closed, 1 open, 2 half-open",
            MetricType::GAUGE,
            circuit,
        ),
        family(
            "gw_circuit_state_changes_total",
            "Circuit breaker transitions per endpoint",
            MetricType::COUNTER,
            changes,
        ),
        family(
            "gw_endpoint_latency_ewma_ms",
            "Peak-EWMA latency per endpoint, ms",
            MetricType::GAUGE,
            ewma,
        ),
        family(
            "gw_endpoint_weight",
            "Load-balancing weight per endpoint",
            MetricType::GAUGE,
            weight,
        ),
        one(
            "gw_xds_connected",
            "1 while the xDS stream is up",
            MetricType::GAUGE,
            f64::from(u8::from(x.connected.load(Ordering::Relaxed))),
        ),
        family(
            "gw_xds_updates_total",
            "xDS responses by result",
            MetricType::COUNTER,
            vec![
                counter(&[("result", "ack")], x.acks.load(Ordering::Relaxed) as f64),
                counter(
                    &[("result", "nack")],
                    x.nacks.load(Ordering::Relaxed) as f64,
                ),
            ],
        ),
        one_counter(
            "gw_xds_reconnects_total",
            "xDS reconnect attempts",
            x.reconnects.load(Ordering::Relaxed),
        ),
        family(
            "gw_xds_resources",
            "Resources held, by type",
            MetricType::GAUGE,
            held,
        ),
        one(
            "gw_config_ready",
            "1 when a listener, its routes and all endpoints are in place",
            MetricType::GAUGE,
            f64::from(u8::from(cfg.is_ready())),
        ),
        family(
            "gw_worker_connections_total",
            "Downstream connections accepted, per worker",
            MetricType::COUNTER,
            shared
                .accepted
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    let worker = i.to_string();
                    counter(&[("worker", &worker)], n.load(Ordering::Relaxed) as f64)
                })
                .collect(),
        ),
        one_counter(
            "gw_no_route_total",
            "Requests that matched no route",
            shared.no_route.load(Ordering::Relaxed),
        ),
        one_counter(
            "gw_downstream_tls_handshake_failed_total",
            "Client connections to a TLS listener whose handshake failed or timed out",
            shared.tls_failed.load(Ordering::Relaxed),
        ),
        family(
            "gw_upstream_overflow_total",
            "Times a cluster limit was reached: max_pending_requests and max_requests answer 503, \
             max_retries skips the retry, max_connections queues the request as pending",
            MetricType::COUNTER,
            overflows,
        ),
        family(
            "gw_upstream_limit_current",
            "Connections, pending requests, requests and retries held now, per cluster limit",
            MetricType::GAUGE,
            limit_now,
        ),
        family(
            "gw_upstream_limit_max",
            "Each cluster limit's maximum",
            MetricType::GAUGE,
            maxima,
        ),
        one_counter(
            "gw_access_logs_dropped_total",
            "Access records dropped (reporting queue full)",
            shared.logs.dropped.load(Ordering::Relaxed),
        ),
        one(
            t::UPTIME,
            "Seconds since start",
            MetricType::GAUGE,
            shared.started.elapsed().as_secs() as f64,
        ),
    ]
}

/// The text exposition of [`families`].
pub fn render(shared: &Shared) -> String {
    let mut out = Vec::with_capacity(16 * 1024);
    let fams: Vec<MetricFamily> = families(shared)
        .into_iter()
        .filter(|f| !f.get_metric().is_empty())
        .collect();
    if let Err(e) = TextEncoder::new().encode(&fams, &mut out) {
        return format!("# encoding failed: {e}\n");
    }
    String::from_utf8(out).unwrap_or_default()
}
