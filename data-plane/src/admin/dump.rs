//! The JSON views: `/config_dump` and `/clusters`.

use crate::server::Shared;

/// `/config_dump`: node, readiness, served listener, accepted versions, every resource held
/// (name, version, size) and the compiled clusters.
pub fn config_dump(shared: &Shared) -> String {
    let cfg = shared.config.load();
    let mut types = serde_json::Map::new();
    for (t, m) in &cfg.resources.by_type {
        let v: serde_json::Map<String, serde_json::Value> = m
            .iter()
            .map(|(n, r)| {
                (
                    n.clone(),
                    serde_json::json!({"version": r.version, "bytes": r.body.len()}),
                )
            })
            .collect();
        types.insert(t.clone(), serde_json::Value::Object(v));
    }
    let mut clusters: Vec<serde_json::Value> = cfg
        .clusters
        .values()
        .map(|c| {
            serde_json::json!({"name": c.name, "lb": c.lb.as_str(), "connectTimeoutMs": c.connect_timeout.as_millis() as u64,
            "limits": limits_of(c), "fallback": c.fallback, "endpoints": c.endpoints.iter().map(|e| &e.address).collect::<Vec<_>>()})
        })
        .collect();
    clusters.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::to_string_pretty(&serde_json::json!({
        "node": shared.node_id,
        "ready": cfg.is_ready(),
        "listener": cfg.listener,
        "routes": cfg.routes.len(),
        "versions": shared.xds.versions(),
        "resources": types,
        "clusters": clusters,
    }))
    .unwrap_or_default()
}

/// Each limit's maximum, current count and overflows.
fn limits_of(c: &crate::config::ClusterRt) -> serde_json::Value {
    crate::limits::Limit::ALL
        .iter()
        .map(|l| {
            (
                l.as_str().to_owned(),
                serde_json::json!({"max": c.maxima.0[*l as usize], "current": c.load.current(*l), "overflows": c.load.overflows(*l)}),
            )
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// `/clusters`: every endpoint's live state.
pub fn clusters(shared: &Shared) -> String {
    let cfg = shared.config.load();
    let mut out: Vec<serde_json::Value> = cfg
        .clusters
        .values()
        .map(|c| {
            serde_json::json!({
                "name": c.name, "lb": c.lb.as_str(), "limits": limits_of(c),
                "endpoints": c.endpoints.iter().map(|e| serde_json::json!({
                    "address": e.address, "weight": e.weight(), "healthy": e.is_healthy(), "breaker": e.breaker_state().as_str(),
                    "inFlight": e.in_flight(), "idleConnections": e.pool.idle(), "ewmaMs": e.ewma_ns() / 1e6, "failureRate": e.failure_rate(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    serde_json::to_string_pretty(&out).unwrap_or_default()
}
