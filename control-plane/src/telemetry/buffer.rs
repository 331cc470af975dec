//! The ingest buffer: bounded, merged in memory, flushed to userdb in batches.

use super::names::Names;
use crate::metrics::ControlPlaneMetrics;
use crate::store::{AccessLog, EndpointState, Rollup, RollupKey, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// Ingest settings.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Width of a rollup bucket (default one minute; tests use one second).
    pub resolution: Duration,
    /// How often buffered data is written.
    pub flush_interval: Duration,
    /// Access-log records held between flushes before new ones are dropped.
    pub max_buffered_logs: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            resolution: Duration::from_secs(60),
            flush_interval: Duration::from_secs(1),
            max_buffered_logs: 50_000,
        }
    }
}

#[derive(Default)]
struct Pending {
    rollups: HashMap<RollupKey, Rollup>,
    logs: Vec<AccessLog>,
    states: HashMap<(String, String, String, String), EndpointState>,
}

/// Shared by every ingest stream. The lock is held only to merge a sample, never across I/O.
#[derive(Clone)]
pub struct Buffer {
    pending: Arc<Mutex<Pending>>,
    /// Held across a flush, so flushes run one at a time and a flush returns only once what was
    /// buffered before it (even if a concurrent flush took it) is written.
    flushing: Arc<tokio::sync::Mutex<()>>,
    /// Resource-name resolution.
    pub names: Names,
    cfg: IngestConfig,
    store: Store,
    dropped_logs: Arc<AtomicU64>,
    flushed_logs: Arc<AtomicU64>,
    metrics: ControlPlaneMetrics,
}

impl Buffer {
    /// A buffer writing to `store`.
    pub fn new(store: Store, cfg: IngestConfig, metrics: ControlPlaneMetrics) -> Self {
        Buffer {
            pending: Arc::default(),
            flushing: Arc::default(),
            names: Names::default(),
            cfg,
            store,
            dropped_logs: Arc::default(),
            flushed_logs: Arc::default(),
            metrics,
        }
    }

    /// Start of the rollup bucket containing `ms`.
    pub fn bucket(&self, ms: i64) -> i64 {
        let res = self.cfg.resolution.as_millis().max(1) as i64;
        ms - ms.rem_euclid(res)
    }

    /// Current time per the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.store.now_ms()
    }

    /// Adds a rollup delta.
    pub fn add_rollup(&self, key: RollupKey, delta: &Rollup) {
        if delta.is_empty() {
            return;
        }
        self.metrics
            .add_fleet(&key.kind, &key.tenant, &key.name, delta);
        if let Ok(mut p) = self.pending.lock() {
            p.rollups.entry(key).or_default().add(delta);
        }
    }

    /// Queues access-log records; drops (and counts) what does not fit.
    pub fn add_logs(&self, logs: impl IntoIterator<Item = AccessLog>) {
        if let Ok(mut p) = self.pending.lock() {
            for l in logs {
                if p.logs.len() >= self.cfg.max_buffered_logs {
                    self.dropped_logs.fetch_add(1, Ordering::Relaxed);
                    self.metrics.ingest_dropped_logs.inc();
                } else {
                    p.logs.push(l);
                }
            }
        }
    }

    /// Records an endpoint's reported state (latest wins).
    pub fn set_endpoint_state(&self, s: EndpointState) {
        if let Ok(mut p) = self.pending.lock() {
            let k = (
                s.node.clone(),
                s.tenant.clone(),
                s.cluster.clone(),
                s.endpoint.clone(),
            );
            p.states.insert(k, s);
        }
    }

    /// Access-log records dropped because the buffer was full.
    pub fn dropped_logs(&self) -> u64 {
        self.dropped_logs.load(Ordering::Relaxed)
    }

    /// Access-log records written so far.
    pub fn flushed_logs(&self) -> u64 {
        self.flushed_logs.load(Ordering::Relaxed)
    }

    /// Writes everything buffered: rollups, logs and states, each batch in one transaction.
    /// What fails to write is dropped and logged: ingest must not grow without bound. When it
    /// returns, everything buffered before the call has been written (or dropped).
    pub async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        let taken = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        let rollups: Vec<_> = taken.rollups.into_iter().collect();
        if let Err(e) = self.store.add_rollups(&rollups).await {
            tracing::warn!(error = %e, rows = rollups.len(), "writing rollups");
        }
        let n = taken.logs.len() as u64;
        match self.store.insert_access_logs(&taken.logs).await {
            Ok(()) => {
                self.flushed_logs.fetch_add(n, Ordering::Relaxed);
            }
            Err(e) => {
                self.dropped_logs.fetch_add(n, Ordering::Relaxed);
                self.metrics.ingest_dropped_logs.inc_by(n);
                tracing::warn!(error = %e, rows = n, "writing access logs");
            }
        }
        let states: Vec<_> = taken.states.into_values().collect();
        if let Err(e) = self.store.upsert_endpoint_states(&states).await {
            tracing::warn!(error = %e, rows = states.len(), "writing endpoint states");
        }
    }

    /// Flushes every `flush_interval` and refreshes names on config changes, until `stop`.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut revisions = self.store.subscribe();
        self.names.refresh(&self.store).await;
        let mut tick = tokio::time::interval(self.cfg.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = crate::server::stopped(&mut stop) => {
                    self.flush().await;
                    return;
                }
                _ = tick.tick() => self.flush().await,
                r = revisions.changed() => {
                    if r.is_err() {
                        return;
                    }
                    self.names.refresh(&self.store).await;
                }
            }
        }
    }
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("cfg", &self.cfg)
            .field("dropped_logs", &self.dropped_logs())
            .finish_non_exhaustive()
    }
}
