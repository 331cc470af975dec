//! The gw API contract.
//!
//! # Layout
//! - [`gateway::v1`]: the generated `gateway.v1` management API (messages, clients, servers).
//! - [`model`]: the domain model every component agrees on — the manifest kinds of DESIGN.md with
//!   their defaults and validation (errors name the field), independent of gRPC and SQL.
//! - [`convert`]: lossless conversion between [`model`] and the protobuf messages.
//! - [`manifest`]: Kubernetes-style multi-document YAML (`apiVersion: gw/v1`) to and from the model.
//! - [`telemetry`]: metric names and latency buckets proxies report to the control plane.
//! - [`http_protocol`]: Envoy's upstream HTTP protocol options (HTTP/2 clusters), both sides.
//! - [`envoy`]: the Envoy v3 API (re-exported `envoy-types`), used by the xDS server and the proxy.

pub mod convert;
pub mod http_protocol;
pub mod manifest;
pub mod model;
pub mod process;
pub mod telemetry;

/// Generated protobuf code.
pub mod gateway {
    /// `gateway.v1`: the management API.
    #[allow(missing_docs, clippy::all)]
    pub mod v1 {
        tonic::include_proto!("gateway.v1");
    }
}

/// Encoded file descriptor set of `gateway.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("gateway_v1_descriptor");

/// The Envoy v3 API types and services.
pub use envoy_types as envoy;
