//! Connects the xDS server's fleet registry to the monitoring chain: proxy sync state for the
//! `proxy_stale` / `proxy_nacked` rules, and xDS events persisted in userdb.

use super::evaluator::{FleetView, ProxySync};
use crate::store::{EventRecord, Store};
use crate::xds::{Fleet, SyncStatus, XdsEvent};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// The fleet as the evaluator sees it; remembers since when each proxy has been stale.
pub struct FleetBridge {
    fleet: Fleet,
    stale_since: Mutex<HashMap<String, i64>>,
    clock: Store,
}

impl FleetBridge {
    /// Views `fleet`, timing staleness with the store's clock.
    pub fn new(fleet: Fleet, store: Store) -> Self {
        FleetBridge {
            fleet,
            stale_since: Mutex::default(),
            clock: store,
        }
    }
}

impl FleetView for FleetBridge {
    fn proxies(&self) -> Vec<ProxySync> {
        let now = self.clock.now_ms();
        let current = self.fleet.current_revision();
        let Ok(mut since) = self.stale_since.lock() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let mut still_stale = HashMap::new();
        for p in self.fleet.list() {
            let status = p.status(current);
            if status == SyncStatus::Disconnected {
                continue;
            }
            let stale_for = (status == SyncStatus::Stale).then(|| {
                let t = *since.get(&p.node_id).unwrap_or(&now);
                still_stale.insert(p.node_id.clone(), t);
                Duration::from_millis((now - t).max(0) as u64)
            });
            out.push(ProxySync {
                node: p.node_id.clone(),
                nacked: status == SyncStatus::Nacked,
                stale_for,
            });
        }
        *since = still_stale;
        out
    }
}

fn record(e: XdsEvent) -> EventRecord {
    EventRecord {
        at_ms: e.at_ms,
        kind: e.kind.into(),
        severity: e.severity.into(),
        tenant: e.tenant,
        object: e.object,
        node: e.node,
        message: e.message,
        ..Default::default()
    }
}

/// Writes every xDS event to userdb until `stop`.
pub async fn persist_events(
    store: Store,
    mut events: broadcast::Receiver<XdsEvent>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let e = tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            e = events.recv() => e,
        };
        match e {
            Ok(e) => {
                if let Err(err) = store.record_event(record(e)).await {
                    tracing::warn!(error = %err, "persisting xDS event");
                }
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "xDS events came too fast to persist")
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
