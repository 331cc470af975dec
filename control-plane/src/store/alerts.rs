//! Alerts (pending → firing → resolved, acknowledgeable) and their webhook deliveries.
//!
//! A state change and the delivery it causes are written in one transaction, so a delivery is
//! never lost nor sent for a change that did not happen. At most one open (pending or firing)
//! alert exists per rule and scope — enforced by a partial unique index, not only by code.

use super::{new_id, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One alert.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertRecord {
    /// Unique id.
    pub id: String,
    /// Tenant of the rule.
    pub tenant: String,
    /// Rule name.
    pub rule: String,
    /// Metric of the rule.
    pub metric: String,
    /// `route/NAME`, `cluster/NAME` or `tenant/NAME`.
    pub scope: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    /// Last evaluated value.
    pub value: f64,
    /// Threshold it was compared with.
    pub threshold: f64,
    /// When the condition started to hold, ms.
    pub started_at_ms: i64,
    /// When it fired, ms.
    pub fired_at_ms: Option<i64>,
    /// When it resolved, ms.
    pub resolved_at_ms: Option<i64>,
    /// When it was acknowledged, ms.
    pub acked_at_ms: Option<i64>,
    /// Who acknowledged it.
    pub acked_by: String,
    /// Last change, ms.
    pub updated_at_ms: i64,
    /// State of the latest webhook delivery (`delivered`, `pending`, `failed`, `none`).
    pub delivery: String,
}

/// A webhook delivery to make (or made).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Unique id.
    pub id: String,
    /// The alert it is about.
    pub alert_id: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// Where to POST.
    pub url: String,
    /// JSON body.
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
}

const ALERT_COLUMNS: &str =
    "a.id, a.tenant, a.rule, a.metric, a.scope, a.state, a.value, a.threshold, a.started_at, \
    a.fired_at, a.resolved_at, a.acked_at, a.acked_by, a.updated_at";

fn decode(r: &AnyRow) -> Result<AlertRecord, StoreError> {
    Ok(AlertRecord {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        rule: r.try_get("rule")?,
        metric: r.try_get("metric")?,
        scope: r.try_get("scope")?,
        state: r.try_get("state")?,
        value: r.try_get("value")?,
        threshold: r.try_get("threshold")?,
        started_at_ms: r.try_get("started_at")?,
        fired_at_ms: r.try_get("fired_at")?,
        resolved_at_ms: r.try_get("resolved_at")?,
        acked_at_ms: r.try_get("acked_at")?,
        acked_by: r.try_get("acked_by")?,
        updated_at_ms: r.try_get("updated_at")?,
        delivery: r
            .try_get::<Option<String>, _>("delivery")
            .ok()
            .flatten()
            .unwrap_or_else(|| "none".into()),
    })
}

fn select(where_: &str) -> String {
    format!(
        "SELECT {ALERT_COLUMNS}, (SELECT d.state FROM gw_webhook_deliveries d WHERE d.alert_id = a.id \
         ORDER BY d.created_at DESC, d.id DESC LIMIT 1) AS delivery FROM gw_alerts a {where_}"
    )
}

impl Store {
    /// Every pending or firing alert.
    pub async fn open_alerts(&self) -> Result<Vec<AlertRecord>, StoreError> {
        let rows = sqlx::query(&select(
            "WHERE a.state IN ('pending', 'firing') ORDER BY a.started_at",
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }

    /// Alerts of `tenant` ("" = all) in `state` ("" = open ones first, then recently resolved).
    pub async fn list_alerts(
        &self,
        tenant: &str,
        state: &str,
        limit: u32,
    ) -> Result<Vec<AlertRecord>, StoreError> {
        let limit = if limit == 0 { 100 } else { limit.min(10_000) };
        let sql = select(
            "WHERE ($1 = '' OR a.tenant = $1) AND ($2 = '' OR a.state = $2) \
             ORDER BY CASE WHEN a.state = 'resolved' THEN 1 ELSE 0 END, a.updated_at DESC LIMIT $3",
        );
        let rows = sqlx::query(&sql)
            .bind(tenant)
            .bind(state)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// One alert.
    pub async fn get_alert(&self, id: &str) -> Result<AlertRecord, StoreError> {
        let row = sqlx::query(&select("WHERE a.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref()
            .map(decode)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound(format!("alert {id}")))
    }

    /// Acknowledges an alert (it keeps firing/resolving; acknowledgement silences nothing else).
    pub async fn ack_alert(&self, id: &str, by: &str) -> Result<AlertRecord, StoreError> {
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE gw_alerts SET acked_at = $1, acked_by = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(now)
        .bind(by)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("alert {id}")));
        }
        self.get_alert(id).await
    }

    /// Inserts a new alert or updates an existing one, and enqueues `delivery` in the same
    /// transaction.
    pub async fn save_alert(
        &self,
        a: &AlertRecord,
        delivery: Option<Delivery>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO gw_alerts (id, tenant, rule, metric, scope, state, value, threshold, started_at, fired_at, \
             resolved_at, acked_at, acked_by, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (id) DO UPDATE SET state = excluded.state, value = excluded.value, fired_at = excluded.fired_at, \
             resolved_at = excluded.resolved_at, updated_at = excluded.updated_at",
        )
        .bind(&a.id)
        .bind(&a.tenant)
        .bind(&a.rule)
        .bind(&a.metric)
        .bind(&a.scope)
        .bind(&a.state)
        .bind(a.value)
        .bind(a.threshold)
        .bind(a.started_at_ms)
        .bind(a.fired_at_ms)
        .bind(a.resolved_at_ms)
        .bind(a.acked_at_ms)
        .bind(&a.acked_by)
        .bind(a.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        if let Some(d) = delivery {
            let now = self.now_ms();
            sqlx::query(
                "INSERT INTO gw_webhook_deliveries (id, alert_id, status, url, body, attempts, state, next_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 0, 'pending', $6, $7, $8)",
            )
            .bind(if d.id.is_empty() { new_id(now) } else { d.id })
            .bind(&a.id)
            .bind(&d.status)
            .bind(&d.url)
            .bind(&d.body)
            .bind(now)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes a pending alert whose condition cleared before it fired.
    pub async fn drop_pending_alert(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM gw_alerts WHERE id = $1 AND state = 'pending'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deliveries due now, oldest first.
    pub async fn due_deliveries(&self, limit: u32) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, alert_id, status, url, body, attempts FROM gw_webhook_deliveries \
             WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at, id LIMIT $2",
        )
        .bind(self.now_ms())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Delivery {
                    id: r.try_get("id")?,
                    alert_id: r.try_get("alert_id")?,
                    status: r.try_get("status")?,
                    url: r.try_get("url")?,
                    body: r.try_get("body")?,
                    attempts: r.try_get::<i64, _>("attempts")? as u32,
                })
            })
            .collect()
    }

    /// Records an attempt: `retry_at` = `None` ends the delivery (`delivered` when `ok`, else
    /// `failed`), `Some(t)` schedules another attempt.
    pub async fn record_delivery_attempt(
        &self,
        id: &str,
        ok: bool,
        http_status: Option<u16>,
        error: &str,
        retry_at_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let state = match (ok, retry_at_ms) {
            (true, _) => "delivered",
            (false, Some(_)) => "pending",
            (false, None) => "failed",
        };
        let now = self.now_ms();
        sqlx::query(
            "UPDATE gw_webhook_deliveries SET attempts = attempts + 1, state = $1, next_at = $2, last_status = $3, \
             last_error = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(state)
        .bind(retry_at_ms.unwrap_or(now))
        .bind(http_status.map(i64::from))
        .bind(error)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// All deliveries of an alert, oldest first: (status, state, attempts, last HTTP status).
    pub async fn deliveries_of(
        &self,
        alert_id: &str,
    ) -> Result<Vec<(String, String, u32, Option<i64>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT status, state, attempts, last_status FROM gw_webhook_deliveries WHERE alert_id = $1 ORDER BY created_at, id",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("status")?,
                    r.try_get("state")?,
                    r.try_get::<i64, _>("attempts")? as u32,
                    r.try_get("last_status")?,
                ))
            })
            .collect()
    }
}
