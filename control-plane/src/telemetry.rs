//! Telemetry ingest: Envoy's `MetricsService` and `AccessLogService`, served on the control plane's
//! gRPC port so gw-proxy and stock Envoy report the same way.
//!
//! Ingest never blocks a reporting proxy: streams hand samples to a bounded in-memory buffer
//! ([`buffer`]) that a flusher writes to userdb in batches (one transaction per flush); when the
//! buffer is full, records are dropped and counted, never queued without bound.
//!
//! # Layout
//! - [`names`]: Envoy resource names → (tenant, object) using the current config.
//! - [`buffer`]: the batching buffer and its flusher.
//! - [`metrics`]: `MetricsService` — cumulative Prometheus families → rollup deltas and endpoint state.
//! - [`access_logs`]: `AccessLogService` — `HTTPAccessLogEntry` → access-log records.

pub mod access_logs;
pub mod buffer;
pub mod metrics;
pub mod names;

pub use buffer::{Buffer, IngestConfig};
