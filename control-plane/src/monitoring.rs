//! The monitoring chain: alert rules are evaluated over rollups and fleet state, alerts move
//! pending → firing → resolved by themselves, and each change is delivered to the rule's webhook
//! with retries and an HMAC signature — all recorded in userdb.
//!
//! With several replicas on PostgreSQL exactly one evaluates and delivers: the holder of a
//! session-level advisory lock ([`leader`]). If it dies, its session ends, the lock is released
//! and another replica takes over at its next tick; state lives in userdb, so nothing is lost.

pub mod evaluator;
pub mod fleet_bridge;
pub mod leader;
pub mod webhook;

pub use evaluator::{Evaluator, FleetView, ProxySync};

use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Monitoring settings.
#[derive(Debug, Clone)]
pub struct MonitoringConfig {
    /// How often rules are evaluated and due webhooks sent.
    pub interval: Duration,
    /// How long events, access logs, rollups and resolved alerts are kept.
    pub retention: Duration,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        MonitoringConfig {
            interval: Duration::from_secs(5),
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Runs evaluation, delivery and pruning until `stop` turns true.
pub async fn run(
    store: Store,
    db_url: String,
    fleet: Arc<dyn FleetView>,
    metrics: crate::metrics::ControlPlaneMetrics,
    cfg: MonitoringConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut leader = leader::Leadership::new(store.backend(), db_url);
    let evaluator = Evaluator::new(store.clone(), fleet);
    let sender = webhook::Sender::new(store.clone()).with_metrics(metrics.clone());
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune = 0i64;
    loop {
        tokio::select! {
            _ = crate::server::stopped(&mut stop) => return,
            _ = tick.tick() => {}
        }
        if !leader.ensure().await {
            continue;
        }
        if let Err(e) = evaluator.tick().await {
            tracing::warn!(error = %e, "evaluating alert rules");
        }
        if let Ok(open) = store.open_alerts().await {
            metrics
                .alerts_firing
                .set(open.iter().filter(|a| a.state == "firing").count() as i64);
        }
        if let Err(e) = sender.deliver_due().await {
            tracing::warn!(error = %e, "delivering webhooks");
        }
        let now = store.now_ms();
        if now - last_prune > 60_000 {
            last_prune = now;
            match store.prune(now - cfg.retention.as_millis() as i64).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "pruned telemetry past retention"),
                Err(e) => tracing::warn!(error = %e, "pruning telemetry"),
            }
        }
    }
}
