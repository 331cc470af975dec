//! Incremental (Delta) ADS: responses carry only changed resources and the names of removed ones.

use super::session::{set_version, AckOutcome, Known, Session};
use super::snapshot::Resource;
use super::snapshot::{ResourceType, Snapshot};
use gw_proto::envoy::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource as DeltaResource,
};
use std::sync::Arc;
use std::time::Instant;

/// Target size of one Delta response's resources.
const CHUNK_BYTES: usize = 256 * 1024;

/// Takes one request: ACK/NACK bookkeeping and subscription changes (which count even with a
/// stale nonce, unlike SotW).
pub fn handle(
    session: &mut Session,
    req: &DeltaDiscoveryRequest,
    now_ms: i64,
) -> Result<(ResourceType, AckOutcome), String> {
    let t = ResourceType::from_type_url(&req.type_url)
        .ok_or_else(|| format!("unsupported type_url {:?}", req.type_url))?;
    let error = req.error_detail.as_ref().map(|s| s.message.as_str());
    let outcome = session.acknowledge(t, &req.response_nonce, error, now_ms, false);
    let state = session.ty_mut(t);
    if !state.requested {
        state.requested = true;
        state.wildcard = req.resource_names_subscribe.is_empty() && t.legacy_wildcard();
        for (name, version) in &req.initial_resource_versions {
            state.known.insert(
                name.clone(),
                Known {
                    version: version.clone(),
                    resource: None,
                },
            );
        }
    }
    for name in &req.resource_names_subscribe {
        if name == "*" {
            state.wildcard = true;
        } else {
            state.names.insert(name.clone());
        }
    }
    for name in &req.resource_names_unsubscribe {
        if name == "*" {
            state.wildcard = false;
        } else {
            state.names.remove(name);
        }
        // The client forgets what it unsubscribed from; nothing to remove on its behalf.
        if !state.subscribed(name) {
            state.known.remove(name);
        }
    }
    if !state.wildcard {
        let names = state.names.clone();
        state.known.retain(|n, _| names.contains(n));
    }
    session.touch(t);
    Ok((t, outcome))
}

/// Responses bringing the client up to `snap`, in make-before-break order.
pub fn responses(
    session: &mut Session,
    snap: &Snapshot,
    now: Instant,
) -> Vec<DeltaDiscoveryResponse> {
    let mut out = Vec::new();
    for t in ResourceType::ORDER {
        if !session.ty(t).requested || !session.needs_push(t, snap) {
            continue;
        }
        let target = session.target(t, snap, now);
        session.pushed(t, snap);
        let state = session.ty(t);
        let changed: Vec<_> = target
            .iter()
            .filter(|(n, r)| state.known.get(*n).map(|k| &k.version) != Some(&r.version))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let removed: Vec<String> = state
            .known
            .keys()
            .filter(|n| !target.contains_key(*n))
            .cloned()
            .collect();
        let first_wildcard = !state.responded && state.wildcard;
        if changed.is_empty() && removed.is_empty() && !first_wildcard {
            continue;
        }
        let version = set_version(&target);
        // Large pushes (a first sync) go out in chunks: smaller messages keep per-stream
        // encode buffers small, and the client starts applying sooner.
        let mut chunks: Vec<Vec<(String, Arc<Resource>)>> = vec![Vec::new()];
        let mut bytes = 0;
        for (n, r) in changed {
            if bytes > 0 && bytes + r.body.value.len() > CHUNK_BYTES {
                chunks.push(Vec::new());
                bytes = 0;
            }
            bytes += r.body.value.len();
            if let Some(last) = chunks.last_mut() {
                last.push((n, r));
            }
        }
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let removed = if i == last {
                removed.clone()
            } else {
                Vec::new()
            };
            let resources = chunk
                .iter()
                .map(|(n, r)| DeltaResource {
                    name: n.clone(),
                    version: r.version.clone(),
                    resource: Some(r.body.clone()),
                    ..Default::default()
                })
                .collect();
            let content = chunk
                .into_iter()
                .map(|(n, r)| (n, Some(r)))
                .chain(removed.iter().map(|n| (n.clone(), None)))
                .collect();
            let nonce = session.record_sent(t, version.clone(), content, false);
            out.push(DeltaDiscoveryResponse {
                system_version_info: version.clone(),
                resources,
                type_url: t.type_url().to_owned(),
                removed_resources: removed,
                nonce,
                ..Default::default()
            });
        }
    }
    session.finish_push(snap.revision);
    out
}

#[cfg(test)]
mod tests;
