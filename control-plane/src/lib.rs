//! gw control plane: keeps config in userdb and streams it to the proxy fleet as Envoy xDS.
//!
//! # Layout
//! - [`store`]: userdb — SQLite or PostgreSQL through sqlx, revisions, optimistic concurrency,
//!   change notification for replicas.
//! - [`api`]: the `gateway.v1` tonic services (validation, error mapping, paging).
//! - [`xds`]: translation of the model to Envoy resources and the ADS server (SotW and Delta).
//! - [`server`]: wiring: starts the gRPC and HTTP listeners and background tasks; [`server::ControlPlane`]
//!   is also what tests start in-process.
//! - [`clock`]: wall clock and a manual clock for tests.

pub mod api;
pub mod auth;
pub mod clock;
pub mod discovery;
pub mod metrics;
pub mod monitoring;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod xds;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;
