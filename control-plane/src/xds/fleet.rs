//! Per-node xDS state: which proxies are connected, what each has ACKed or NACKed, and whether it
//! is in sync with the snapshot this control plane serves. [`api`] exposes it as `gateway.v1.Fleet`.
//!
//! Each stream task owns its [`ProxyHandle`] and copies its session's progress in after every
//! step; the registry lock is held only for those copies, never across an await.

pub mod api;

use super::events::{now_ms, EventLog, XdsEvent};
use super::session::{Nack, Session};
use super::snapshot::{ResourceType, Snapshot};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// Disconnected proxies kept for display.
const KEEP_DISCONNECTED: usize = 256;

/// Sync status, as `gwctl proxies` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// Everything for the current revision ACKed.
    Synced,
    /// Behind or waiting for an ACK.
    Stale,
    /// Refused the last response of some type.
    Nacked,
    /// Stream ended.
    Disconnected,
}

/// Progress of one resource type.
#[derive(Debug, Clone, Default)]
pub struct TypeProgress {
    /// The proxy asked for this type.
    pub requested: bool,
    /// Version of the last response sent.
    pub sent_version: String,
    /// Version of the last response ACKed.
    pub acked_version: String,
    /// Resources the proxy has.
    pub resources: usize,
    /// Last NACK not superseded by an ACK.
    pub nack: Option<Nack>,
}

/// What is known about one stream.
#[derive(Debug, Clone, Default)]
pub struct ProxyRecord {
    /// Stream id (unique per control plane process).
    pub stream_id: u64,
    /// `node.id`.
    pub node_id: String,
    /// `node.cluster`.
    pub node_cluster: String,
    /// Peer address.
    pub address: String,
    /// `sotw` or `delta`.
    pub protocol: &'static str,
    /// `node.user_agent_name` and version.
    pub user_agent: String,
    /// Stream start, ms since the epoch.
    pub connected_at_ms: i64,
    /// Stream end, ms since the epoch.
    pub disconnected_at_ms: Option<i64>,
    /// Per type, indexed by [`ResourceType::index`].
    pub types: [TypeProgress; 4],
    /// Revision the proxy has fully ACKed.
    pub synced_revision: u64,
    /// No response outstanding, nothing held back.
    pub settled: bool,
}

impl ProxyRecord {
    /// Status against the revision currently served.
    pub fn status(&self, current_revision: u64) -> SyncStatus {
        if self.disconnected_at_ms.is_some() {
            SyncStatus::Disconnected
        } else if self.types.iter().any(|t| t.nack.is_some()) {
            SyncStatus::Nacked
        } else if self.settled && self.synced_revision >= current_revision {
            SyncStatus::Synced
        } else {
            SyncStatus::Stale
        }
    }

    /// The most recent NACK of any type.
    pub fn last_nack(&self) -> Option<(ResourceType, &Nack)> {
        ResourceType::ORDER
            .into_iter()
            .filter_map(|t| self.types[t.index()].nack.as_ref().map(|n| (t, n)))
            .max_by_key(|(_, n)| n.at_ms)
    }
}

/// Identity of a connecting proxy.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `node.id`.
    pub id: String,
    /// `node.cluster`.
    pub cluster: String,
    /// Peer address.
    pub address: String,
    /// User agent.
    pub user_agent: String,
}

#[derive(Debug)]
struct Inner {
    proxies: RwLock<BTreeMap<u64, ProxyRecord>>,
    next_id: AtomicU64,
    events: EventLog,
    snapshots: watch::Receiver<Option<Arc<Snapshot>>>,
}

/// The registry of xDS streams.
#[derive(Debug, Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

impl Fleet {
    /// A registry reporting status against `snapshots` and recording to `events`.
    pub fn new(snapshots: watch::Receiver<Option<Arc<Snapshot>>>, events: EventLog) -> Fleet {
        Fleet {
            inner: Arc::new(Inner {
                proxies: RwLock::default(),
                next_id: AtomicU64::new(1),
                events,
                snapshots,
            }),
        }
    }

    /// The event log.
    pub fn events(&self) -> &EventLog {
        &self.inner.events
    }

    /// Revision of the snapshot currently served (0 before the first).
    pub fn current_revision(&self) -> u64 {
        self.inner
            .snapshots
            .borrow()
            .as_ref()
            .map_or(0, |s| s.revision)
    }

    /// Registers a new stream.
    pub fn connect(&self, node: NodeInfo, protocol: &'static str) -> ProxyHandle {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let record = ProxyRecord {
            stream_id: id,
            node_id: node.id.clone(),
            node_cluster: node.cluster.clone(),
            address: node.address.clone(),
            protocol,
            user_agent: node.user_agent,
            connected_at_ms: now_ms(),
            ..Default::default()
        };
        if let Ok(mut p) = self.inner.proxies.write() {
            p.insert(id, record);
        }
        self.inner.events.record(
            XdsEvent::new(
                "proxy_connected",
                "info",
                format!("proxy/{}", node.id),
                format!(
                    "{} connected over {protocol} ADS from {} (node cluster {:?})",
                    node.id, node.address, node.cluster
                ),
            )
            .node(&node.id),
        );
        ProxyHandle {
            fleet: self.clone(),
            id,
            node_id: node.id,
        }
    }

    /// All records, newest stream last.
    pub fn list(&self) -> Vec<ProxyRecord> {
        self.inner
            .proxies
            .read()
            .map(|p| p.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The newest stream of `node_id`.
    pub fn get(&self, node_id: &str) -> Option<ProxyRecord> {
        self.inner
            .proxies
            .read()
            .ok()
            .and_then(|p| p.values().rev().find(|r| r.node_id == node_id).cloned())
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut ProxyRecord)) {
        if let Ok(mut p) = self.inner.proxies.write() {
            if let Some(r) = p.get_mut(&id) {
                f(r);
            }
        }
    }

    fn disconnect(&self, id: u64, node_id: &str) {
        if let Ok(mut p) = self.inner.proxies.write() {
            if let Some(r) = p.get_mut(&id) {
                r.disconnected_at_ms = Some(now_ms());
            }
            let gone: Vec<u64> = p
                .iter()
                .filter(|(_, r)| r.disconnected_at_ms.is_some())
                .map(|(id, _)| *id)
                .collect();
            for id in gone
                .iter()
                .take(gone.len().saturating_sub(KEEP_DISCONNECTED))
            {
                p.remove(id);
            }
        }
        self.inner.events.record(
            XdsEvent::new(
                "proxy_disconnected",
                "warning",
                format!("proxy/{node_id}"),
                format!("{node_id} disconnected"),
            )
            .node(node_id),
        );
    }
}

/// A stream's entry in the registry; marks it disconnected when dropped.
#[derive(Debug)]
pub struct ProxyHandle {
    fleet: Fleet,
    id: u64,
    node_id: String,
}

impl ProxyHandle {
    /// Copies a session's progress into the registry.
    pub fn update(&self, s: &Session) {
        self.fleet.update(self.id, |r| {
            for t in ResourceType::ORDER {
                let st = s.ty(t);
                r.types[t.index()] = TypeProgress {
                    requested: st.requested,
                    sent_version: st.sent_version.clone(),
                    acked_version: st.acked_version.clone(),
                    resources: st.known.len(),
                    nack: st.nack.clone(),
                };
            }
            r.settled = s.settled();
            if r.settled {
                r.synced_revision = s.pushed_revision;
            }
        });
    }

    /// Records a NACK event.
    pub fn nacked(&self, t: ResourceType, nack: &Nack) {
        let object = nack.objects.first().cloned().unwrap_or_default();
        self.fleet.events().record(
            XdsEvent::new(
                "config_nacked",
                "error",
                object,
                format!(
                    "{} refused {} version {} ({}): {}",
                    self.node_id,
                    t.short(),
                    nack.version,
                    nack.objects.join(", "),
                    nack.error
                ),
            )
            .node(&self.node_id),
        );
    }
}

impl Drop for ProxyHandle {
    fn drop(&mut self) {
        self.fleet.disconnect(self.id, &self.node_id);
    }
}
