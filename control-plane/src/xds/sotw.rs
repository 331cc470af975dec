//! State-of-the-world ADS: every response carries the full set of the type's resources the client
//! subscribed to (LDS/CDS: all of them) under one `version_info`.

use super::session::{set_version, AckOutcome, Session};
use super::snapshot::{ResourceType, Snapshot};
use gw_proto::envoy::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use std::time::Instant;

/// Takes one request: ACK/NACK bookkeeping, then the subscription it states.
///
/// A request answering a superseded nonce is ignored whole, as the xDS protocol asks: the client
/// is about to answer the newer response anyway.
pub fn handle(
    session: &mut Session,
    req: &DiscoveryRequest,
    now_ms: i64,
) -> Result<(ResourceType, AckOutcome), String> {
    let t = ResourceType::from_type_url(&req.type_url)
        .ok_or_else(|| format!("unsupported type_url {:?}", req.type_url))?;
    let error = req.error_detail.as_ref().map(|s| s.message.as_str());
    let outcome = session.acknowledge(t, &req.response_nonce, error, now_ms, true);
    if outcome == AckOutcome::Stale {
        return Ok((t, outcome));
    }
    let state = session.ty_mut(t);
    let first = !state.requested;
    state.requested = true;
    let names = &req.resource_names;
    let wildcard = names.iter().any(|n| n == "*")
        || (names.is_empty() && t.legacy_wildcard() && (first || state.wildcard));
    state.wildcard = wildcard;
    state.names = names.iter().filter(|n| *n != "*").cloned().collect();
    session.touch(t);
    Ok((t, outcome))
}

/// Responses bringing the client up to `snap`, in make-before-break order.
pub fn responses(session: &mut Session, snap: &Snapshot, now: Instant) -> Vec<DiscoveryResponse> {
    let mut out = Vec::new();
    for t in ResourceType::ORDER {
        if !session.ty(t).requested || !session.needs_push(t, snap) {
            continue;
        }
        let target = session.target(t, snap, now);
        session.pushed(t, snap);
        let version = set_version(&target);
        let state = session.ty(t);
        let first = !state.responded;
        let changed = state.sent_version != version
            || state.known.len() != target.len()
            || target
                .iter()
                .any(|(n, r)| state.known.get(n).map(|k| &k.version) != Some(&r.version));
        // Named subscriptions to resources that do not exist get no answer (the client times
        // out on them); wildcard ones always get a first answer, even an empty one.
        let answer = changed && (!first || state.wildcard || !target.is_empty());
        if !answer {
            continue;
        }
        let resources = target.values().map(|r| r.body.clone()).collect();
        let content = target.into_iter().map(|(n, r)| (n, Some(r))).collect();
        let nonce = session.record_sent(t, version.clone(), content, true);
        out.push(DiscoveryResponse {
            version_info: version,
            resources,
            type_url: t.type_url().to_owned(),
            nonce,
            ..Default::default()
        });
    }
    session.finish_push(snap.revision);
    out
}

#[cfg(test)]
mod tests;
