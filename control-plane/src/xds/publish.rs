//! The publisher: follows store revisions, coalesces bursts of writes, translates, checks and
//! publishes snapshots on a `watch` channel. A snapshot that fails the consistency check is not
//! published: proxies keep the previous one, and a `snapshot_rejected` event says why.

use super::events::{EventLog, XdsEvent};
use super::snapshot::{Snapshot, SnapshotError};
use super::translate::Translator;
use crate::store::{Store, StoreError, StoreSnapshot};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where snapshots come from: the store, or a fake in tests.
pub trait SnapshotSource: Send + Sync + 'static {
    /// Latest revision, updated on every write (local or another replica's).
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// Everything translation needs, read consistently.
    fn snapshot(&self) -> impl Future<Output = Result<StoreSnapshot, StoreError>> + Send;
}

impl SnapshotSource for Store {
    fn subscribe(&self) -> watch::Receiver<u64> {
        Store::subscribe(self)
    }

    fn snapshot(&self) -> impl Future<Output = Result<StoreSnapshot, StoreError>> + Send {
        Store::snapshot(self)
    }
}

/// Publishing settings.
#[derive(Debug, Clone, Copy)]
pub struct PublishOptions {
    /// After a change, wait this long for more before translating.
    pub debounce: Duration,
}

impl Default for PublishOptions {
    fn default() -> Self {
        PublishOptions {
            debounce: Duration::from_millis(10),
        }
    }
}

/// Runs until `shutdown` turns true.
pub async fn run<S: SnapshotSource>(
    source: S,
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    events: EventLog,
    opts: PublishOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut revisions = source.subscribe();
    let mut translator = Translator::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        revisions.mark_unchanged();
        let started = std::time::Instant::now();
        match source.snapshot().await {
            Ok(store) => {
                backoff = Duration::from_millis(100);
                let read = started.elapsed();
                publish(&mut translator, &store, &tx, &events);
                tracing::debug!(
                    revision = store.revision,
                    read_ms = read.as_millis() as u64,
                    total_ms = started.elapsed().as_millis() as u64,
                    "xds: snapshot read and translated"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "xds: reading userdb snapshot; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = crate::server::stopped(&mut shutdown) => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
        tokio::select! {
            r = revisions.changed() => if r.is_err() { return },
            _ = crate::server::stopped(&mut shutdown) => return,
        }
        // Coalesce a burst of writes into one push.
        tokio::time::sleep(opts.debounce).await;
    }
}

/// Translates and publishes one store snapshot (unless it is older than what is published).
pub fn publish(
    translator: &mut Translator,
    store: &StoreSnapshot,
    tx: &watch::Sender<Option<Arc<Snapshot>>>,
    events: &EventLog,
) -> Option<SnapshotError> {
    let current = tx.borrow().as_ref().map(|s| s.revision);
    if current.is_some_and(|c| c > store.revision) {
        return None;
    }
    match translator.translate(store) {
        Ok(mut snap) => {
            if let Some(prev) = tx.borrow().as_ref() {
                snap.share_unchanged(prev);
            }
            tracing::debug!(revision = snap.revision, version = %snap.version(), "xds: publishing snapshot");
            tx.send_replace(Some(Arc::new(snap)));
            None
        }
        Err(e) => {
            let object = match &e {
                SnapshotError::MissingCluster { origin, .. } => {
                    origin.split(", ").next().unwrap_or_default().to_owned()
                }
                SnapshotError::MissingRouteConfig { listener, .. } => {
                    format!("listener/{listener}")
                }
                SnapshotError::MissingEndpoints { cluster } => format!("cluster/{cluster}"),
                SnapshotError::Duplicate { name, .. } => name.clone(),
            };
            tracing::error!(revision = store.revision, error = %e, "xds: snapshot refused; proxies keep the previous one");
            events.record(XdsEvent::new(
                "snapshot_rejected",
                "error",
                object,
                format!("revision {} not published: {e}", store.revision),
            ));
            Some(e)
        }
    }
}
