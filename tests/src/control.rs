//! An in-process control plane (SQLite in memory) and helpers to change its config.

use gw_control_plane::server::{Config, ControlPlane};
use gw_proto::model::{Endpoint, EndpointKey, EndpointSource};
use std::collections::BTreeMap;

/// Starts a control plane on ephemeral ports with an in-memory userdb.
pub async fn start() -> anyhow::Result<ControlPlane> {
    ControlPlane::start(Config::for_tests("sqlite::memory:")).await
}

/// Applies a multi-document manifest; returns the store revision after it.
pub async fn apply(cp: &ControlPlane, yaml: &str) -> anyhow::Result<u64> {
    let objects = gw_proto::manifest::parse(yaml)?
        .into_iter()
        .map(|d| d.object)
        .collect();
    Ok(cp.store().apply(objects, false).await?.revision)
}

/// Registers an endpoint (no TTL) of `tenant/cluster`.
pub async fn register(
    cp: &ControlPlane,
    tenant: &str,
    cluster: &str,
    port: u16,
    weight: u32,
) -> anyhow::Result<u64> {
    let ep = Endpoint {
        key: EndpointKey {
            tenant: tenant.into(),
            cluster: cluster.into(),
            address: "127.0.0.1".into(),
            port: u32::from(port),
        },
        weight,
        metadata: BTreeMap::new(),
        source: EndpointSource::Registry,
        ttl: None,
        expires_at_ms: None,
        registered_at_ms: 0,
        resource_version: 0,
        healthy: true,
    };
    Ok(cp.store().register_endpoint(ep).await?.2)
}
