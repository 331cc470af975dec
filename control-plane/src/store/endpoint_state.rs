//! Breaker and health state of endpoints as each proxy reports it; the evaluator reads it for
//! `breaker_open` and `no_healthy_endpoints` rules.

use super::{Store, StoreError};
use sqlx::Row;

/// One endpoint as one proxy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointState {
    /// Reporting proxy.
    pub node: String,
    /// Tenant of the cluster.
    pub tenant: String,
    /// Cluster name.
    pub cluster: String,
    /// `ADDR:PORT`.
    pub endpoint: String,
    /// `closed`, `open` or `half_open`.
    pub breaker: String,
    /// Health-check verdict.
    pub healthy: bool,
    /// When it was reported, ms.
    pub updated_at_ms: i64,
}

impl Store {
    /// Upserts reported states in one transaction.
    pub async fn upsert_endpoint_states(&self, states: &[EndpointState]) -> Result<(), StoreError> {
        if states.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for s in states {
            sqlx::query(
                "INSERT INTO gw_endpoint_state (node, tenant, cluster, endpoint, breaker, healthy, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (node, tenant, cluster, endpoint) DO UPDATE SET \
                 breaker = excluded.breaker, healthy = excluded.healthy, updated_at = excluded.updated_at",
            )
            .bind(&s.node)
            .bind(&s.tenant)
            .bind(&s.cluster)
            .bind(&s.endpoint)
            .bind(&s.breaker)
            .bind(i64::from(s.healthy))
            .bind(s.updated_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// States reported at or after `since_ms`.
    pub async fn endpoint_states(&self, since_ms: i64) -> Result<Vec<EndpointState>, StoreError> {
        let rows = sqlx::query(
            "SELECT node, tenant, cluster, endpoint, breaker, healthy, updated_at FROM gw_endpoint_state \
             WHERE updated_at >= $1 ORDER BY tenant, cluster, endpoint, node",
        )
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EndpointState {
                    node: r.try_get("node")?,
                    tenant: r.try_get("tenant")?,
                    cluster: r.try_get("cluster")?,
                    endpoint: r.try_get("endpoint")?,
                    breaker: r.try_get("breaker")?,
                    healthy: r.try_get::<i64, _>("healthy")? != 0,
                    updated_at_ms: r.try_get("updated_at")?,
                })
            })
            .collect()
    }
}
