//! Access-log records sent by proxies (all errors plus a sample of successes).

use super::{new_id, Store, StoreError};
use sqlx::any::AnyRow;
use sqlx::Row;

/// One request as a proxy saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessLog {
    /// When the request started, ms.
    pub at_ms: i64,
    /// Proxy node.
    pub node: String,
    /// `x-request-id`.
    pub request_id: String,
    /// Downstream address.
    pub client_ip: String,
    /// Tenant of the route.
    pub tenant: String,
    /// Route name.
    pub route: String,
    /// Cluster name.
    pub cluster: String,
    /// Upstream `ADDR:PORT`.
    pub endpoint: String,
    /// HTTP method.
    pub method: String,
    /// Host / :authority.
    pub authority: String,
    /// Path.
    pub path: String,
    /// Response status; 0 when none was sent.
    pub status: u32,
    /// Total duration, µs.
    pub duration_us: i64,
    /// Why the upstream failed (connect failure, reset, timeout…), empty when it did not.
    pub upstream_error: String,
}

/// Which records to list.
#[derive(Debug, Clone, Default)]
pub struct LogFilter {
    /// Only this tenant.
    pub tenant: String,
    /// Only this route.
    pub route: String,
    /// Only this cluster.
    pub cluster: String,
    /// Status range, inclusive (e.g. 500..=599).
    pub status: Option<(u32, u32)>,
    /// Only records at or after this time.
    pub since_ms: i64,
    /// At most this many, newest first.
    pub limit: u32,
}

/// Parses `5xx`, `4xx`, `503`; `None` for anything else.
pub fn parse_status_filter(s: &str) -> Option<(u32, u32)> {
    if let Some(c) = s.strip_suffix("xx") {
        let c: u32 = c.parse().ok()?;
        return (1..=5).contains(&c).then_some((c * 100, c * 100 + 99));
    }
    let n: u32 = s.parse().ok()?;
    (100..600).contains(&n).then_some((n, n))
}

fn decode(r: &AnyRow) -> Result<AccessLog, StoreError> {
    Ok(AccessLog {
        at_ms: r.try_get("at")?,
        node: r.try_get("node")?,
        request_id: r.try_get("request_id")?,
        client_ip: r.try_get("client_ip")?,
        tenant: r.try_get("tenant")?,
        route: r.try_get("route")?,
        cluster: r.try_get("cluster")?,
        endpoint: r.try_get("endpoint")?,
        method: r.try_get("method")?,
        authority: r.try_get("authority")?,
        path: r.try_get("path")?,
        status: r.try_get::<i64, _>("status")? as u32,
        duration_us: r.try_get("duration_us")?,
        upstream_error: r.try_get("upstream_error")?,
    })
}

impl Store {
    /// Stores a batch of records in one transaction.
    pub async fn insert_access_logs(&self, logs: &[AccessLog]) -> Result<(), StoreError> {
        if logs.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for l in logs {
            sqlx::query(
                "INSERT INTO gw_access_logs (id, at, node, request_id, client_ip, tenant, route, cluster, endpoint, method, \
                 authority, path, status, duration_us, upstream_error) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(new_id(l.at_ms))
            .bind(l.at_ms)
            .bind(&l.node)
            .bind(&l.request_id)
            .bind(&l.client_ip)
            .bind(&l.tenant)
            .bind(&l.route)
            .bind(&l.cluster)
            .bind(&l.endpoint)
            .bind(&l.method)
            .bind(&l.authority)
            .bind(&l.path)
            .bind(i64::from(l.status))
            .bind(l.duration_us)
            .bind(&l.upstream_error)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records matching `f`, newest first.
    pub async fn query_logs(&self, f: &LogFilter) -> Result<Vec<AccessLog>, StoreError> {
        let (lo, hi) = f.status.unwrap_or((0, 999));
        let limit = if f.limit == 0 {
            100
        } else {
            f.limit.min(10_000)
        };
        let rows = sqlx::query(
            "SELECT at, node, request_id, client_ip, tenant, route, cluster, endpoint, method, authority, path, status, \
             duration_us, upstream_error FROM gw_access_logs WHERE at >= $1 AND ($2 = '' OR tenant = $2) \
             AND ($3 = '' OR route = $3) AND ($4 = '' OR cluster = $4) AND status >= $5 AND status <= $6 \
             ORDER BY at DESC, id DESC LIMIT $7",
        )
        .bind(f.since_ms)
        .bind(&f.tenant)
        .bind(&f.route)
        .bind(&f.cluster)
        .bind(i64::from(lo))
        .bind(i64::from(hi))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(decode).collect()
    }
}
