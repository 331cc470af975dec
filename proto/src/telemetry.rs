//! The telemetry contract between proxies and the control plane.
//!
//! Proxies stream stats with Envoy's `MetricsService` (`envoy.service.metrics.v3`) as Prometheus
//! `MetricFamily` messages, cumulative since the proxy started, and access logs with Envoy's
//! `AccessLogService` as `HTTPAccessLogEntry`. A stock Envoy's own stats (`cluster.<name>.…`) and
//! access logs are understood too. gw-proxy reports these families:
//!
//! | family | type | labels |
//! |---|---|---|
//! | [`REQUESTS`] | counter | `kind` (route/cluster/endpoint), `tenant`, `name`, `class` (1xx…5xx or `upstream_error`) |
//! | [`DURATION`] | histogram (ms, bounds [`LATENCY_BOUNDS_MS`]) | `kind`, `tenant`, `name` |
//! | [`CIRCUIT_STATE`] | gauge (0 closed, 1 open, 2 half-open) | `tenant`, `cluster`, `endpoint` |
//! | [`ENDPOINT_HEALTHY`] | gauge (1 healthy, 0 not) | `tenant`, `cluster`, `endpoint` |
//! | [`UPTIME`] | gauge (seconds since the proxy started) | — |
//!
//! Endpoint objects are named `CLUSTER/ADDR:PORT`.

/// Requests finished, by status class.
pub const REQUESTS: &str = "gw_rq_total";
/// Request latency histogram, milliseconds.
pub const DURATION: &str = "gw_rq_duration_ms";
/// Breaker state per endpoint.
pub const CIRCUIT_STATE: &str = "gw_circuit_state";
/// Health-check verdict per endpoint.
pub const ENDPOINT_HEALTHY: &str = "gw_endpoint_healthy";
/// Seconds since the proxy started (lets the control plane tell a fresh proxy from a reconnect).
pub const UPTIME: &str = "gw_uptime_seconds";

/// Upper bounds (ms) of the latency buckets; a last bucket takes everything above.
pub const LATENCY_BOUNDS_MS: [f64; 15] = [
    1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0,
];
