//! The service registry: register / deregister / heartbeat (TTL leases) / discover, and expiry.
//!
//! A registration with a TTL is a lease: heartbeats move `expires_at` forward without bumping the
//! revision (a renewal changes no config), reads never return an expired endpoint, and the reaper
//! ([`Store::reap_expired`]) deletes expired rows in a write that does bump the revision, so proxies
//! drop them.

use super::{Page, Store, StoreError};
use gw_proto::model::{
    metadata_json, Endpoint, EndpointKey, EndpointSource, Kind, KubernetesDiscovery, ObjectKey,
    Spec,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::BTreeMap;
use std::time::Duration;

const EP_COLUMNS: &str =
    "tenant, cluster, address, port, weight, metadata, source, ttl_ms, expires_at, registered_at, resource_version, healthy";

fn decode(row: &AnyRow) -> Result<Endpoint, StoreError> {
    let key = EndpointKey {
        tenant: row.try_get("tenant")?,
        cluster: row.try_get("cluster")?,
        address: row.try_get("address")?,
        port: row.try_get::<i64, _>("port")? as u32,
    };
    let corrupt = |reason: String| StoreError::Corrupt {
        what: format!("endpoint {key}"),
        reason,
    };
    let metadata: String = row.try_get("metadata")?;
    let metadata: BTreeMap<String, String> =
        serde_json::from_str(&metadata).map_err(|e| corrupt(e.to_string()))?;
    let source: String = row.try_get("source")?;
    let source = EndpointSource::parse(&source)
        .ok_or_else(|| corrupt(format!("unknown source {source:?}")))?;
    let ttl_ms: Option<i64> = row.try_get("ttl_ms")?;
    Ok(Endpoint {
        weight: row.try_get::<i64, _>("weight")? as u32,
        metadata,
        source,
        ttl: ttl_ms.map(|ms| Duration::from_millis(ms as u64)),
        expires_at_ms: row.try_get("expires_at")?,
        registered_at_ms: row.try_get("registered_at")?,
        resource_version: row.try_get::<i64, _>("resource_version")? as u64,
        healthy: row.try_get::<i64, _>("healthy")? != 0,
        key,
    })
}

impl Store {
    /// Registers (or re-registers) an endpoint of an existing cluster. Returns the endpoint as
    /// stored, whether it was new, and the revision.
    pub async fn register_endpoint(
        &self,
        mut ep: Endpoint,
    ) -> Result<(Endpoint, bool, u64), StoreError> {
        ep.validate()?;
        let (mut tx, rev) = self.begin_write().await?;
        let cluster = ObjectKey {
            kind: Kind::Cluster,
            tenant: ep.key.tenant.clone(),
            name: ep.key.cluster.clone(),
        };
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT resource_version FROM gw_objects WHERE kind = $1 AND tenant = $2 AND name = $3",
        )
        .bind(cluster.kind.as_str())
        .bind(&cluster.tenant)
        .bind(&cluster.name)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "cluster {}/{}",
                cluster.tenant, cluster.name
            )));
        }
        let k = &ep.key;
        let prior: Option<i64> = sqlx::query_scalar(
            "SELECT registered_at FROM gw_endpoints WHERE tenant = $1 AND cluster = $2 AND address = $3 AND port = $4",
        )
        .bind(&k.tenant)
        .bind(&k.cluster)
        .bind(&k.address)
        .bind(i64::from(k.port))
        .fetch_optional(&mut *tx)
        .await?;
        let now = self.now_ms();
        ep.registered_at_ms = prior.unwrap_or(now);
        ep.expires_at_ms = ep.ttl.map(|t| now + t.as_millis() as i64);
        ep.resource_version = rev;
        upsert(&mut tx, &ep).await?;
        let op = if prior.is_some() { "update" } else { "create" };
        self.record_change(
            &mut tx,
            rev,
            "endpoint",
            &k.tenant,
            &format!("{}/{}:{}", k.cluster, k.address, k.port),
            op,
        )
        .await?;
        self.commit_write(tx, rev).await?;
        Ok((ep, prior.is_none(), rev))
    }

    /// Removes a registered endpoint; `NotFound` if it is not registered (or already expired).
    pub async fn deregister_endpoint(&self, key: &EndpointKey) -> Result<u64, StoreError> {
        key.validate()?;
        let (mut tx, rev) = self.begin_write().await?;
        let n = sqlx::query(
            "DELETE FROM gw_endpoints WHERE tenant = $1 AND cluster = $2 AND address = $3 AND port = $4 \
             AND (expires_at IS NULL OR expires_at > $5)",
        )
        .bind(&key.tenant)
        .bind(&key.cluster)
        .bind(&key.address)
        .bind(i64::from(key.port))
        .bind(self.now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("endpoint {key}")));
        }
        let name = format!("{}/{}:{}", key.cluster, key.address, key.port);
        self.record_change(&mut tx, rev, "endpoint", &key.tenant, &name, "delete")
            .await?;
        self.commit_write(tx, rev).await?;
        Ok(rev)
    }

    /// Renews an endpoint's lease. Returns the new expiry (ms), `None` for endpoints without TTL;
    /// `NotFound` once the lease ran out — the owner must register again.
    pub async fn heartbeat(&self, key: &EndpointKey) -> Result<Option<i64>, StoreError> {
        key.validate()?;
        let now = self.now_ms();
        let row: Option<(Option<i64>,)> = sqlx::query_as(
            "UPDATE gw_endpoints SET expires_at = CASE WHEN ttl_ms IS NULL THEN NULL ELSE $1 + ttl_ms END \
             WHERE tenant = $2 AND cluster = $3 AND address = $4 AND port = $5 AND (expires_at IS NULL OR expires_at > $6) \
             RETURNING expires_at",
        )
        .bind(now)
        .bind(&key.tenant)
        .bind(&key.cluster)
        .bind(&key.address)
        .bind(i64::from(key.port))
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(e,)| e).ok_or_else(|| {
            StoreError::NotFound(format!("endpoint {key} (expired or never registered)"))
        })
    }

    /// Deletes every endpoint whose lease ran out; bumps the revision only when there were any.
    pub async fn reap_expired(&self) -> Result<usize, StoreError> {
        let now = self.now_ms();
        let any: Option<i64> =
            sqlx::query_scalar("SELECT port FROM gw_endpoints WHERE expires_at <= $1 LIMIT 1")
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
        if any.is_none() {
            return Ok(0);
        }
        let (mut tx, rev) = self.begin_write().await?;
        let sql = format!("DELETE FROM gw_endpoints WHERE expires_at <= $1 RETURNING {EP_COLUMNS}");
        let rows = sqlx::query(&sql).bind(now).fetch_all(&mut *tx).await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        for r in &rows {
            let ep = decode(r)?;
            let k = &ep.key;
            let name = format!("{}/{}:{}", k.cluster, k.address, k.port);
            self.record_change(&mut tx, rev, "endpoint", &k.tenant, &name, "expire")
                .await?;
        }
        self.commit_write(tx, rev).await?;
        Ok(rows.len())
    }

    /// Static, registered and discovered endpoints of one cluster, or of every cluster of the tenant.
    pub async fn discover(
        &self,
        tenant: &str,
        cluster: Option<&str>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Endpoint>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let rev: i64 = sqlx::query_scalar("SELECT revision FROM gw_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let clusters = match cluster {
            Some(c) => {
                let key = ObjectKey { kind: Kind::Cluster, tenant: tenant.into(), name: c.into() };
                let row: Option<String> =
                    sqlx::query_scalar("SELECT spec FROM gw_objects WHERE kind = 'cluster' AND tenant = $1 AND name = $2")
                        .bind(tenant)
                        .bind(c)
                        .fetch_optional(&mut *tx)
                        .await?;
                let spec = row.ok_or_else(|| StoreError::NotFound(format!("cluster {tenant}/{c}")))?;
                vec![(key.name, spec)]
            }
            None => sqlx::query_as::<_, (String, String)>(
                "SELECT name, spec FROM gw_objects WHERE kind = 'cluster' AND tenant = $1 ORDER BY name",
            )
            .bind(tenant)
            .fetch_all(&mut *tx)
            .await?,
        };
        let mut all = Vec::new();
        for (name, spec) in &clusters {
            let Ok(Spec::Cluster(spec)) = Spec::from_json(Kind::Cluster, spec) else {
                return Err(StoreError::Corrupt {
                    what: format!("cluster {tenant}/{name}"),
                    reason: "bad spec".into(),
                });
            };
            for e in &spec.endpoints {
                all.push(Endpoint {
                    key: EndpointKey {
                        tenant: tenant.into(),
                        cluster: name.clone(),
                        address: e.address.clone(),
                        port: e.port,
                    },
                    weight: e.weight,
                    metadata: e.metadata.clone(),
                    source: EndpointSource::Static,
                    ttl: None,
                    expires_at_ms: None,
                    registered_at_ms: 0,
                    resource_version: 0,
                    healthy: true,
                });
            }
        }
        all.extend(self.live_endpoints(&mut tx, Some(tenant), cluster).await?);
        tx.commit().await?;
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let offset: usize = match page_token {
            "" => 0,
            t => t.parse().map_err(|_| {
                StoreError::Invalid(format!("page_token: {t:?} is not a token from this server"))
            })?,
        };
        let size = if page_size == 0 {
            500
        } else {
            page_size.min(5000) as usize
        };
        let items: Vec<Endpoint> = all.iter().skip(offset).take(size).cloned().collect();
        let next = (offset + size < all.len()).then(|| (offset + size).to_string());
        Ok(Page {
            items,
            next_page_token: next,
            revision: rev as u64,
        })
    }

    /// Registered and discovered endpoints whose lease has not run out.
    pub(super) async fn live_endpoints(
        &self,
        tx: &mut Transaction<'static, Any>,
        tenant: Option<&str>,
        cluster: Option<&str>,
    ) -> Result<Vec<Endpoint>, StoreError> {
        let sql = format!(
            "SELECT {EP_COLUMNS} FROM gw_endpoints WHERE (expires_at IS NULL OR expires_at > $1) \
             AND ($2 = '' OR tenant = $2) AND ($3 = '' OR cluster = $3) ORDER BY tenant, cluster, address, port"
        );
        let rows = sqlx::query(&sql)
            .bind(self.now_ms())
            .bind(tenant.unwrap_or(""))
            .bind(cluster.unwrap_or(""))
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().map(decode).collect()
    }
}

/// Writes `ep` (insert or replace by key) inside a write transaction.
async fn upsert(tx: &mut Transaction<'static, Any>, ep: &Endpoint) -> Result<(), StoreError> {
    let k = &ep.key;
    sqlx::query(
        "INSERT INTO gw_endpoints (tenant, cluster, address, port, weight, metadata, source, ttl_ms, expires_at, registered_at, resource_version, healthy) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (tenant, cluster, address, port) DO UPDATE SET weight = excluded.weight, metadata = excluded.metadata, \
         source = excluded.source, ttl_ms = excluded.ttl_ms, expires_at = excluded.expires_at, \
         resource_version = excluded.resource_version, healthy = excluded.healthy",
    )
    .bind(&k.tenant)
    .bind(&k.cluster)
    .bind(&k.address)
    .bind(i64::from(k.port))
    .bind(i64::from(ep.weight))
    .bind(metadata_json(&ep.metadata))
    .bind(ep.source.as_str())
    .bind(ep.ttl.map(|t| t.as_millis() as i64))
    .bind(ep.expires_at_ms)
    .bind(ep.registered_at_ms)
    .bind(ep.resource_version as i64)
    .bind(i64::from(ep.healthy))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// What a discovered endpoint's row must say for it to be left as it is.
fn same_discovered(stored: &Endpoint, want: &Endpoint) -> bool {
    stored.weight == want.weight
        && stored.metadata == want.metadata
        && stored.healthy == want.healthy
        && stored.ttl.is_none()
}

impl Store {
    /// Deletes a cluster's Kubernetes-discovered endpoints inside a config write (the cluster
    /// stopped asking, or asks another Service), so the same revision that changes the spec
    /// drops them: no proxy ever sees the new spec with the old Service's pods.
    pub(super) async fn drop_discovered_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        rev: u64,
        tenant: &str,
        cluster: &str,
    ) -> Result<(), StoreError> {
        let gone: Vec<(String, i64)> = sqlx::query_as(
            "SELECT address, port FROM gw_endpoints WHERE tenant = $1 AND cluster = $2 AND source = 'kubernetes' ORDER BY address, port",
        )
        .bind(tenant)
        .bind(cluster)
        .fetch_all(&mut **tx)
        .await?;
        if gone.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "DELETE FROM gw_endpoints WHERE tenant = $1 AND cluster = $2 AND source = 'kubernetes'",
        )
        .bind(tenant)
        .bind(cluster)
        .execute(&mut **tx)
        .await?;
        for (address, port) in gone {
            let name = format!("{cluster}/{address}:{port}");
            self.record_change(tx, rev, "endpoint", tenant, &name, "delete")
                .await?;
        }
        Ok(())
    }

    /// Makes the cluster's Kubernetes-discovered endpoints exactly `want`, in one write: rows of
    /// source `kubernetes` are added, updated (weight, metadata, health) and removed; registered
    /// endpoints are left alone (a registered address:port wins over a discovered one). Returns
    /// the revision of the write, or `None` when the stored set already matched (no write, no
    /// revision, so proxies see nothing). `NotFound` when the cluster is gone.
    ///
    /// `from` is the Service the set came from: the write happens only while the cluster still
    /// takes its endpoints from exactly there (a late write from a stopped watch or an old
    /// leader is refused with `NotFound`). When a cluster stops asking, or asks another Service,
    /// the config write that changes its spec drops the old set ([`Store::drop_discovered_in`]),
    /// so no stale set outlives its Service.
    pub async fn sync_discovered_endpoints(
        &self,
        tenant: &str,
        cluster: &str,
        from: &KubernetesDiscovery,
        want: &[Endpoint],
    ) -> Result<Option<u64>, StoreError> {
        for (i, ep) in want.iter().enumerate() {
            ep.validate()
                .map_err(|e| StoreError::from(e.prefixed(&format!("endpoints[{i}]"))))?;
            if ep.key.tenant != tenant || ep.key.cluster != cluster {
                return Err(StoreError::Invalid(format!(
                    "endpoints[{i}]: {} is not of cluster {tenant}/{cluster}",
                    ep.key
                )));
            }
        }
        let plan = |stored: &[Endpoint]| {
            let by_key: BTreeMap<&EndpointKey, &Endpoint> =
                stored.iter().map(|e| (&e.key, e)).collect();
            let wanted: BTreeMap<&EndpointKey, &Endpoint> =
                want.iter().map(|e| (&e.key, e)).collect();
            let upserts: Vec<Endpoint> = want
                .iter()
                .filter(|w| match by_key.get(&w.key) {
                    None => true,
                    Some(s) => s.source == EndpointSource::Kubernetes && !same_discovered(s, w),
                })
                .cloned()
                .collect();
            let removals: Vec<EndpointKey> = stored
                .iter()
                .filter(|s| s.source == EndpointSource::Kubernetes && !wanted.contains_key(&s.key))
                .map(|s| s.key.clone())
                .collect();
            (upserts, removals)
        };
        // A read first: an unchanged set (every relist, every replica) costs no write.
        let mut tx = self.pool.begin().await?;
        let stored = self
            .live_endpoints(&mut tx, Some(tenant), Some(cluster))
            .await?;
        tx.commit().await?;
        let (upserts, removals) = plan(&stored);
        if upserts.is_empty() && removals.is_empty() {
            return Ok(None);
        }
        let (mut tx, rev) = self.begin_write().await?;
        let spec: Option<String> = sqlx::query_scalar(
            "SELECT spec FROM gw_objects WHERE kind = 'cluster' AND tenant = $1 AND name = $2",
        )
        .bind(tenant)
        .bind(cluster)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(spec) = spec else {
            return Err(StoreError::NotFound(format!("cluster {tenant}/{cluster}")));
        };
        let asks = match Spec::from_json(Kind::Cluster, &spec) {
            Ok(Spec::Cluster(c)) => c.kubernetes,
            _ => {
                return Err(StoreError::Corrupt {
                    what: format!("cluster {tenant}/{cluster}"),
                    reason: "bad spec".into(),
                })
            }
        };
        if asks.as_ref() != Some(from) {
            return Err(StoreError::NotFound(format!(
                "cluster {tenant}/{cluster} taking endpoints from Service {}/{}",
                from.namespace, from.service
            )));
        }
        let stored = self
            .live_endpoints(&mut tx, Some(tenant), Some(cluster))
            .await?;
        let registered: BTreeMap<&EndpointKey, i64> = stored
            .iter()
            .map(|e| (&e.key, e.registered_at_ms))
            .collect();
        let (upserts, removals) = plan(&stored);
        let now = self.now_ms();
        for mut ep in upserts {
            let op = match registered.get(&ep.key) {
                Some(&at) => {
                    ep.registered_at_ms = at;
                    "update"
                }
                None => {
                    ep.registered_at_ms = now;
                    "create"
                }
            };
            ep.source = EndpointSource::Kubernetes;
            ep.ttl = None;
            ep.expires_at_ms = None;
            ep.resource_version = rev;
            upsert(&mut tx, &ep).await?;
            let k = &ep.key;
            let name = format!("{}/{}:{}", k.cluster, k.address, k.port);
            self.record_change(&mut tx, rev, "endpoint", tenant, &name, op)
                .await?;
        }
        for k in removals {
            sqlx::query(
                "DELETE FROM gw_endpoints WHERE tenant = $1 AND cluster = $2 AND address = $3 AND port = $4 AND source = 'kubernetes'",
            )
            .bind(&k.tenant)
            .bind(&k.cluster)
            .bind(&k.address)
            .bind(i64::from(k.port))
            .execute(&mut *tx)
            .await?;
            let name = format!("{}/{}:{}", k.cluster, k.address, k.port);
            self.record_change(&mut tx, rev, "endpoint", tenant, &name, "delete")
                .await?;
        }
        self.commit_write(tx, rev).await?;
        Ok(Some(rev))
    }
}
