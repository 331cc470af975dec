//! The `gateway.v1` gRPC services: validation at the edge, store errors mapped to gRPC codes.
//!
//! Each service is a thin shell over [`Store`](crate::store::Store); the four object kinds share
//! one implementation ([`objects`]) and differ only in their message types.

mod config;
mod endpoints;
mod monitoring;
mod objects;
mod status;
mod tokens;

pub use config::ConfigApi;
pub use endpoints::EndpointsApi;
pub use monitoring::{AlertsApi, EventsApi, StatsApi};
pub use objects::{AlertRulesApi, ClustersApi, ListenersApi, RoutesApi, TenantsApi};
pub use status::store_status;
pub use tokens::TokensApi;
