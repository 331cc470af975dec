//! Events: what happened in the fleet (proxy connect/disconnect, NACKs, breaker and health
//! transitions, endpoint churn, alerts). Stored in userdb, pruned by retention, and broadcast in
//! process so `gwctl events --follow` sees them at once.

use super::{Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::BTreeMap;

/// One event.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventRecord {
    /// Time-ordered unique id; assigned by the store when empty.
    pub id: String,
    /// When it happened, ms since the epoch; the store's clock when 0.
    pub at_ms: i64,
    /// `proxy_connected`, `config_nacked`, `breaker_transition`, …
    pub kind: String,
    /// `info`, `warning` or `error`.
    pub severity: String,
    /// Tenant it concerns, if any.
    pub tenant: String,
    /// `route/NAME`, `cluster/NAME`, `endpoint/ADDR:PORT`, `proxy/NODE`.
    pub object: String,
    /// Proxy node it came from, if any.
    pub node: String,
    /// Human-readable summary.
    pub message: String,
    /// Structured details.
    pub attributes: BTreeMap<String, String>,
}

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this tenant ("" = all).
    pub tenant: String,
    /// Only this kind ("" = all).
    pub kind: String,
    /// Only events at or after this time (ms).
    pub since_ms: i64,
    /// Only events strictly after this id (for following).
    pub after_id: String,
    /// At most this many (newest kept).
    pub limit: u32,
}

/// A unique id that sorts by time: 13 hex digits of ms, then 16 random ones.
pub fn new_id(at_ms: i64) -> String {
    format!("{:013x}{:016x}", at_ms.max(0), rand::random::<u64>())
}

fn decode(r: &AnyRow) -> Result<EventRecord, StoreError> {
    let attributes: String = r.try_get("attributes")?;
    Ok(EventRecord {
        id: r.try_get("id")?,
        at_ms: r.try_get("at")?,
        kind: r.try_get("kind")?,
        severity: r.try_get("severity")?,
        tenant: r.try_get("tenant")?,
        object: r.try_get("object")?,
        node: r.try_get("node")?,
        message: r.try_get("message")?,
        attributes: serde_json::from_str(&attributes).unwrap_or_default(),
    })
}

impl Store {
    /// Stores an event and tells in-process followers.
    pub async fn record_event(&self, mut e: EventRecord) -> Result<EventRecord, StoreError> {
        if e.at_ms == 0 {
            e.at_ms = self.now_ms();
        }
        if e.id.is_empty() {
            e.id = new_id(e.at_ms);
        }
        if e.severity.is_empty() {
            e.severity = "info".into();
        }
        sqlx::query(
            "INSERT INTO gw_events (id, at, kind, severity, tenant, object, node, message, attributes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&e.id)
        .bind(e.at_ms)
        .bind(&e.kind)
        .bind(&e.severity)
        .bind(&e.tenant)
        .bind(&e.object)
        .bind(&e.node)
        .bind(&e.message)
        .bind(serde_json::to_string(&e.attributes).unwrap_or_else(|_| "{}".into()))
        .execute(&self.pool)
        .await?;
        let _ = self.events_tx.send(e.clone());
        Ok(e)
    }

    /// Events matching `f`, oldest first (the newest `limit` of them).
    pub async fn list_events(&self, f: &EventFilter) -> Result<Vec<EventRecord>, StoreError> {
        let limit = if f.limit == 0 {
            100
        } else {
            f.limit.min(10_000)
        };
        let rows = sqlx::query(
            "SELECT id, at, kind, severity, tenant, object, node, message, attributes FROM gw_events \
             WHERE at >= $1 AND ($2 = '' OR tenant = $2) AND ($3 = '' OR kind = $3) AND id > $4 \
             ORDER BY id DESC LIMIT $5",
        )
        .bind(f.since_ms)
        .bind(&f.tenant)
        .bind(&f.kind)
        .bind(&f.after_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        out.reverse();
        Ok(out)
    }

    /// Events recorded in this process from now on.
    pub fn subscribe_events(&self) -> tokio::sync::broadcast::Receiver<EventRecord> {
        self.events_tx.subscribe()
    }

    /// Deletes events, access logs and rollups older than `cutoff_ms`, and resolved alerts with
    /// their deliveries. Returns the number of rows deleted.
    pub async fn prune(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut n = 0;
        for sql in [
            "DELETE FROM gw_events WHERE at < $1",
            "DELETE FROM gw_access_logs WHERE at < $1",
            "DELETE FROM gw_rollups WHERE bucket < $1",
            "DELETE FROM gw_webhook_deliveries WHERE updated_at < $1 AND state <> 'pending'",
            "DELETE FROM gw_alerts WHERE state = 'resolved' AND updated_at < $1",
        ] {
            n += sqlx::query(sql)
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }
}
