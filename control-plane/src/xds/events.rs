//! xDS events (proxy connected / disconnected, config NACKed, snapshot rejected), kept in memory.
//!
//! Field names follow `gateway.v1.Event`, so the events service can persist them unchanged.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// How many events are kept.
const CAPACITY: usize = 1024;

/// One event.
#[derive(Debug, Clone, PartialEq)]
pub struct XdsEvent {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// `proxy_connected`, `proxy_disconnected`, `config_nacked`, `snapshot_rejected`.
    pub kind: &'static str,
    /// `info`, `warning` or `error`.
    pub severity: &'static str,
    /// Tenant of the object, if any.
    pub tenant: String,
    /// What it is about: `proxy/NODE`, `route/TENANT/NAME`, `cluster/TENANT/NAME`.
    pub object: String,
    /// The proxy's node id, if any.
    pub node: String,
    /// Human-readable detail.
    pub message: String,
}

impl XdsEvent {
    /// An event about `object` stamped now.
    pub fn new(
        kind: &'static str,
        severity: &'static str,
        object: String,
        message: String,
    ) -> Self {
        let tenant = object
            .split('/')
            .nth(1)
            .filter(|_| object.starts_with("route/") || object.starts_with("cluster/"))
            .unwrap_or_default()
            .to_owned();
        XdsEvent {
            at_ms: now_ms(),
            kind,
            severity,
            tenant,
            object,
            node: String::new(),
            message,
        }
    }

    /// Sets the node id.
    pub fn node(mut self, node: &str) -> Self {
        node.clone_into(&mut self.node);
        self
    }
}

/// A bounded in-memory event list with live followers.
#[derive(Debug, Clone)]
pub struct EventLog {
    list: Arc<Mutex<VecDeque<XdsEvent>>>,
    tx: broadcast::Sender<XdsEvent>,
}

impl Default for EventLog {
    fn default() -> Self {
        EventLog {
            list: Arc::default(),
            tx: broadcast::channel(CAPACITY).0,
        }
    }
}

impl EventLog {
    /// Records an event (and logs it).
    pub fn record(&self, e: XdsEvent) {
        tracing::info!(kind = e.kind, object = %e.object, node = %e.node, message = %e.message, "xds event");
        if let Ok(mut list) = self.list.lock() {
            if list.len() == CAPACITY {
                list.pop_front();
            }
            list.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// The kept events, oldest first.
    pub fn list(&self) -> Vec<XdsEvent> {
        self.list
            .lock()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Events recorded from now on.
    pub fn follow(&self) -> broadcast::Receiver<XdsEvent> {
        self.tx.subscribe()
    }
}

/// Wall clock, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
