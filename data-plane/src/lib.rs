//! gw-proxy: a stateless proxy that takes all its config from xDS.
//!
//! # Layout
//! - [`xds`]: the ADS client (Delta by default, SotW by flag): ACK/NACK, reconnect with jittered
//!   backoff, last-known-good config, optional on-disk config cache.
//! - [`config`]: xDS resources compiled into an immutable [`config::RuntimeConfig`], swapped atomically.
//! - [`router`]: virtual hosts and routes (host, path, headers, method).
//! - [`lb`]: the six balancing strategies; [`endpoint`]: live per-endpoint state.
//! - [`proxy`]: the HTTP/1.1 + HTTP/2 server and the forwarding path (timeouts, retries, headers).
//! - [`stats`]: lock-free counters and histograms; [`admin`]: `/metrics`, `/ready`, `/config_dump`,
//!   `/clusters`; [`report`]: stats and access logs streamed to the control plane.
//! - [`server`]: wiring, [`server::Proxy::start`] is what `main` and tests run.

pub mod admin;
pub mod breaker;
pub mod config;
pub mod drain;
pub mod endpoint;
pub mod health;
pub mod lb;
pub mod limits;
pub mod proxy;
pub mod report;
pub mod router;
pub mod server;
pub mod stats;
pub mod tls;
pub mod xds;
