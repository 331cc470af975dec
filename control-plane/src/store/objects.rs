//! Tenants, listeners, clusters and routes: batch apply, create, update, get, list, delete.

use super::sql::Backend;
use super::{ApplyOutcome, ApplyReport, Page, Store, StoreError, StoreSnapshot};
use gw_proto::manifest::describe;
use gw_proto::model::{FieldError, Kind, Meta, Object, ObjectKey, Spec};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How a write treats existing objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Create or update.
    Apply,
    /// Must not exist.
    Create,
    /// Must exist.
    Update,
}

const OBJECT_COLUMNS: &str =
    "kind, tenant, name, spec, labels, resource_version, created_revision, created_at, updated_at";

fn decode(row: &AnyRow) -> Result<Object, StoreError> {
    let kind_s: String = row.try_get("kind")?;
    let tenant: String = row.try_get("tenant")?;
    let name: String = row.try_get("name")?;
    let what = || format!("{kind_s}/{tenant}/{name}");
    let corrupt = |reason: String| StoreError::Corrupt {
        what: what(),
        reason,
    };
    let kind = Kind::parse(&kind_s).ok_or_else(|| corrupt("unknown kind".into()))?;
    let spec: String = row.try_get("spec")?;
    let labels: String = row.try_get("labels")?;
    let spec = Spec::from_json(kind, &spec).map_err(|e| corrupt(e.to_string()))?;
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&labels).map_err(|e| corrupt(e.to_string()))?;
    Ok(Object {
        meta: Meta {
            name,
            tenant,
            labels,
            resource_version: row.try_get::<i64, _>("resource_version")? as u64,
            created_revision: row.try_get::<i64, _>("created_revision")? as u64,
            created_at_ms: row.try_get("created_at")?,
            updated_at_ms: row.try_get("updated_at")?,
        },
        spec,
    })
}

fn label(o: &Object) -> String {
    describe(o.spec.kind(), &o.meta)
}

/// Existing objects of one kind in one tenant, by name.
type Existing = HashMap<String, Object>;

async fn load_group(
    tx: &mut Transaction<'static, Any>,
    kind: Kind,
    tenant: &str,
) -> Result<Existing, StoreError> {
    let sql = format!("SELECT {OBJECT_COLUMNS} FROM gw_objects WHERE kind = $1 AND tenant = $2");
    let rows = sqlx::query(&sql)
        .bind(kind.as_str())
        .bind(tenant)
        .fetch_all(&mut **tx)
        .await?;
    rows.iter()
        .map(|r| decode(r).map(|o| (o.meta.name.clone(), o)))
        .collect()
}

impl Store {
    /// Creates or updates many objects in one transaction. References (tenant, clusters) may point
    /// at objects of the same batch. Errors name the object and the field; nothing is written then.
    pub async fn apply(
        &self,
        objects: Vec<Object>,
        dry_run: bool,
    ) -> Result<ApplyReport, StoreError> {
        let (stored, revision) = self
            .write_objects(objects, Mode::Apply, dry_run, true)
            .await?;
        let results = stored
            .into_iter()
            .map(|(o, outcome)| (o.key(), outcome, o.meta.resource_version))
            .collect();
        Ok(ApplyReport { results, revision })
    }

    /// Creates one object; `AlreadyExists` if it exists. Returns it as stored, and the revision.
    pub async fn create(&self, object: Object) -> Result<(Object, u64), StoreError> {
        let (mut v, rev) = self
            .write_objects(vec![object], Mode::Create, false, false)
            .await?;
        Ok((v.remove(0).0, rev))
    }

    /// Replaces one object's spec and labels; `NotFound` if missing, `Conflict` if
    /// `meta.resource_version` is set and stale.
    pub async fn update(&self, object: Object) -> Result<(Object, u64), StoreError> {
        let (mut v, rev) = self
            .write_objects(vec![object], Mode::Update, false, false)
            .await?;
        Ok((v.remove(0).0, rev))
    }

    async fn write_objects(
        &self,
        mut objects: Vec<Object>,
        mode: Mode,
        dry_run: bool,
        label_errors: bool,
    ) -> Result<(Vec<(Object, ApplyOutcome)>, u64), StoreError> {
        let err_for = |o: &Object, e: FieldError| {
            if label_errors {
                StoreError::Invalid(format!("{}: {e}", label(o)))
            } else {
                StoreError::Invalid(e.to_string())
            }
        };
        let mut keys = HashSet::new();
        for o in &mut objects {
            o.validate().map_err(|e| err_for(o, e))?;
            if !keys.insert(o.key()) {
                return Err(StoreError::Invalid(format!(
                    "{}: appears twice in the request",
                    label(o)
                )));
            }
        }

        let (mut tx, rev) = self.begin_write().await?;
        let mut groups: HashMap<(Kind, String), Existing> = HashMap::new();
        let needed: HashSet<(Kind, String)> = objects
            .iter()
            .flat_map(|o| {
                let own = (o.spec.kind(), o.meta.tenant.clone());
                let clusters = o
                    .spec
                    .kind()
                    .is_tenant_scoped()
                    .then(|| (Kind::Cluster, o.meta.tenant.clone()));
                let routes = (o.spec.kind() == Kind::AlertRule)
                    .then(|| (Kind::Route, o.meta.tenant.clone()));
                std::iter::once(own).chain(clusters).chain(routes)
            })
            .chain(std::iter::once((Kind::Tenant, String::new())))
            .collect();
        for (kind, tenant) in needed {
            let g = load_group(&mut tx, kind, &tenant).await?;
            groups.insert((kind, tenant), g);
        }
        let in_batch: HashSet<ObjectKey> = keys;
        let exists =
            |groups: &HashMap<(Kind, String), Existing>, kind: Kind, tenant: &str, name: &str| {
                groups
                    .get(&(kind, tenant.to_owned()))
                    .is_some_and(|g| g.contains_key(name))
                    || in_batch.contains(&ObjectKey {
                        kind,
                        tenant: tenant.to_owned(),
                        name: name.to_owned(),
                    })
            };

        let now = self.now_ms();
        let mut out = Vec::with_capacity(objects.len());
        let mut changed = 0usize;
        for mut o in objects {
            let kind = o.spec.kind();
            let tenant = o.meta.tenant.clone();
            if kind.is_tenant_scoped() && !exists(&groups, Kind::Tenant, "", &tenant) {
                let e = FieldError::new(
                    "metadata.tenant",
                    format!("tenant {tenant:?} does not exist"),
                );
                return Err(err_for(&o, e));
            }
            match &o.spec {
                Spec::Route(r) => {
                    if let Some(c) = &r.cluster {
                        if !exists(&groups, Kind::Cluster, &tenant, c) {
                            let e = FieldError::new(
                                "spec.cluster",
                                format!("cluster {c:?} does not exist in tenant {tenant:?}"),
                            );
                            return Err(err_for(&o, e));
                        }
                    }
                    for (i, w) in r.weighted_clusters.iter().enumerate() {
                        if !exists(&groups, Kind::Cluster, &tenant, &w.cluster) {
                            let e = FieldError::new(
                                format!("spec.weightedClusters[{i}].cluster"),
                                format!(
                                    "cluster {:?} does not exist in tenant {tenant:?}",
                                    w.cluster
                                ),
                            );
                            return Err(err_for(&o, e));
                        }
                    }
                }
                Spec::Cluster(c) => {
                    if let Some(fb) = &c.fallback_cluster {
                        if *fb == o.meta.name {
                            return Err(err_for(
                                &o,
                                FieldError::new(
                                    "spec.fallbackCluster",
                                    "must name another cluster",
                                ),
                            ));
                        }
                        if !exists(&groups, Kind::Cluster, &tenant, fb) {
                            let e = FieldError::new(
                                "spec.fallbackCluster",
                                format!("cluster {fb:?} does not exist in tenant {tenant:?}"),
                            );
                            return Err(err_for(&o, e));
                        }
                    }
                }
                Spec::AlertRule(a) => {
                    let refs = [
                        ("spec.scope.route", Kind::Route, &a.scope.route),
                        ("spec.scope.cluster", Kind::Cluster, &a.scope.cluster),
                    ];
                    for (field, k, name) in refs {
                        if let Some(n) = name {
                            if !exists(&groups, k, &tenant, n) {
                                let e = FieldError::new(
                                    field,
                                    format!("{k} {n:?} does not exist in tenant {tenant:?}"),
                                );
                                return Err(err_for(&o, e));
                            }
                        }
                    }
                }
                Spec::Tenant(_) | Spec::Listener(_) => {}
            }

            let stored = groups
                .get(&(kind, tenant.clone()))
                .and_then(|g| g.get(&o.meta.name));
            let outcome = match (stored, mode) {
                (Some(_), Mode::Create) => return Err(StoreError::AlreadyExists(label(&o))),
                (None, Mode::Update) => return Err(StoreError::NotFound(label(&o))),
                (None, _) => ApplyOutcome::Created,
                (Some(s), _) => {
                    let given = o.meta.resource_version;
                    if given != 0 && given != s.meta.resource_version {
                        return Err(StoreError::Conflict {
                            what: label(&o),
                            given,
                            stored: s.meta.resource_version,
                        });
                    }
                    if s.spec == o.spec && s.meta.labels == o.meta.labels {
                        ApplyOutcome::Unchanged
                    } else {
                        ApplyOutcome::Configured
                    }
                }
            };
            match (outcome, stored) {
                (ApplyOutcome::Unchanged, Some(s)) => o.meta = s.meta.clone(),
                (_, s) => {
                    changed += 1;
                    o.meta.resource_version = rev;
                    o.meta.updated_at_ms = now;
                    o.meta.created_revision = s.map_or(rev, |s| s.meta.created_revision);
                    o.meta.created_at_ms = s.map_or(now, |s| s.meta.created_at_ms);
                    if !dry_run {
                        self.upsert(&mut tx, &o).await?;
                        let op = if outcome == ApplyOutcome::Created {
                            "create"
                        } else {
                            "update"
                        };
                        self.record_change(&mut tx, rev, kind.as_str(), &tenant, &o.meta.name, op)
                            .await?;
                        if let (Spec::Cluster(new), Some(Spec::Cluster(old))) =
                            (&o.spec, s.map(|s| &s.spec))
                        {
                            if old.kubernetes.is_some() && old.kubernetes != new.kubernetes {
                                self.drop_discovered_in(&mut tx, rev, &tenant, &o.meta.name)
                                    .await?;
                            }
                        }
                    }
                }
            }
            out.push((o, outcome));
        }
        if changed == 0 || dry_run {
            tx.rollback().await?;
            return Ok((out, rev - 1));
        }
        self.commit_write(tx, rev).await?;
        Ok((out, rev))
    }

    async fn upsert(
        &self,
        tx: &mut Transaction<'static, Any>,
        o: &Object,
    ) -> Result<(), StoreError> {
        let spec = o
            .spec
            .to_json()
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        let labels = serde_json::to_string(&o.meta.labels)
            .map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO gw_objects (kind, tenant, name, spec, labels, resource_version, created_revision, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (kind, tenant, name) DO UPDATE SET spec = excluded.spec, labels = excluded.labels, \
             resource_version = excluded.resource_version, updated_at = excluded.updated_at",
        )
        .bind(o.spec.kind().as_str())
        .bind(&o.meta.tenant)
        .bind(&o.meta.name)
        .bind(spec)
        .bind(labels)
        .bind(o.meta.resource_version as i64)
        .bind(o.meta.created_revision as i64)
        .bind(o.meta.created_at_ms)
        .bind(o.meta.updated_at_ms)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// One object, if it exists.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Object>, StoreError> {
        let sql = format!(
            "SELECT {OBJECT_COLUMNS} FROM gw_objects WHERE kind = $1 AND tenant = $2 AND name = $3"
        );
        let row = sqlx::query(&sql)
            .bind(key.kind.as_str())
            .bind(&key.tenant)
            .bind(&key.name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// A page of objects of `kind`, ordered by tenant then name; `tenant` restricts to one tenant.
    pub async fn list(
        &self,
        kind: Kind,
        tenant: Option<&str>,
        page_size: u32,
        page_token: &str,
    ) -> Result<Page<Object>, StoreError> {
        let size = match page_size {
            0 => 500,
            n => n.min(5000),
        };
        let (after_tenant, after_name) = match page_token {
            "" => ("", ""),
            t => t.split_once('/').ok_or_else(|| {
                StoreError::Invalid(format!("page_token: {t:?} is not a token from this server"))
            })?,
        };
        let mut tx = self.pool.begin().await?;
        let rev: i64 = sqlx::query_scalar("SELECT revision FROM gw_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let sql = format!(
            "SELECT {OBJECT_COLUMNS} FROM gw_objects WHERE kind = $1 AND ($2 = '' OR tenant = $2) \
             AND (tenant > $3 OR (tenant = $3 AND name > $4)) ORDER BY tenant, name LIMIT $5"
        );
        let rows = sqlx::query(&sql)
            .bind(kind.as_str())
            .bind(tenant.unwrap_or(""))
            .bind(after_tenant)
            .bind(after_name)
            .bind(i64::from(size) + 1)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut items = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let next_page_token = if items.len() > size as usize {
            items.truncate(size as usize);
            items
                .last()
                .map(|o| format!("{}/{}", o.meta.tenant, o.meta.name))
        } else {
            None
        };
        Ok(Page {
            items,
            next_page_token,
            revision: rev as u64,
        })
    }

    /// Deletes one object. Refused while other objects still depend on it.
    pub async fn delete(&self, key: &ObjectKey, expected_rv: u64) -> Result<u64, StoreError> {
        let (mut tx, rev) = self.begin_write().await?;
        if !self.delete_in(&mut tx, rev, key, expected_rv).await? {
            return Err(StoreError::NotFound(key.to_string()));
        }
        self.commit_write(tx, rev).await?;
        Ok(rev)
    }

    /// Deletes many objects in one transaction, dependants first (routes, clusters, listeners,
    /// tenants). Returns per input key whether it existed.
    pub async fn delete_many(
        &self,
        keys: &[ObjectKey],
        ignore_missing: bool,
    ) -> Result<(Vec<bool>, u64), StoreError> {
        let mut pending: Vec<usize> = (0..keys.len()).collect();
        pending.sort_by_key(|&i| std::cmp::Reverse(keys[i].kind));
        let (mut tx, rev) = self.begin_write().await?;
        let mut deleted = vec![false; keys.len()];
        // Objects of one kind may depend on each other (fallback clusters): a delete refused for a
        // dependant that is itself in the batch is retried once the others are gone.
        while !pending.is_empty() {
            let mut blocked = Vec::new();
            let mut first_err = None;
            for &i in &pending {
                match self.delete_in(&mut tx, rev, &keys[i], 0).await {
                    Ok(d) => {
                        deleted[i] = d;
                        if !d && !ignore_missing {
                            return Err(StoreError::NotFound(keys[i].to_string()));
                        }
                    }
                    Err(e @ StoreError::FailedPrecondition(_)) => {
                        blocked.push(i);
                        first_err.get_or_insert(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            if blocked.len() == pending.len() {
                return Err(first_err
                    .unwrap_or_else(|| StoreError::FailedPrecondition("delete blocked".into())));
            }
            pending = blocked;
        }
        if !deleted.iter().any(|d| *d) {
            tx.rollback().await?;
            return Ok((deleted, rev - 1));
        }
        self.commit_write(tx, rev).await?;
        Ok((deleted, rev))
    }

    async fn delete_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        rev: u64,
        key: &ObjectKey,
        expected_rv: u64,
    ) -> Result<bool, StoreError> {
        let stored: Option<i64> = sqlx::query_scalar(
            "SELECT resource_version FROM gw_objects WHERE kind = $1 AND tenant = $2 AND name = $3",
        )
        .bind(key.kind.as_str())
        .bind(&key.tenant)
        .bind(&key.name)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(stored) = stored else {
            return Ok(false);
        };
        if expected_rv != 0 && expected_rv != stored as u64 {
            return Err(StoreError::Conflict {
                what: key.to_string(),
                given: expected_rv,
                stored: stored as u64,
            });
        }
        match key.kind {
            Kind::Cluster => {
                let users = self.cluster_users(tx, &key.tenant, &key.name).await?;
                if !users.is_empty() {
                    return Err(StoreError::FailedPrecondition(format!(
                        "cluster {}/{} is still used by {}",
                        key.tenant,
                        key.name,
                        users.join(", ")
                    )));
                }
                sqlx::query("DELETE FROM gw_endpoints WHERE tenant = $1 AND cluster = $2")
                    .bind(&key.tenant)
                    .bind(&key.name)
                    .execute(&mut **tx)
                    .await?;
            }
            Kind::Tenant => {
                let rows = sqlx::query("SELECT kind, COUNT(*) AS n FROM gw_objects WHERE tenant = $1 GROUP BY kind ORDER BY kind")
                    .bind(&key.name)
                    .fetch_all(&mut **tx)
                    .await?;
                if !rows.is_empty() {
                    let mut owned = Vec::new();
                    for r in &rows {
                        let kind: String = r.try_get("kind")?;
                        let n: i64 = r.try_get("n")?;
                        owned.push(format!("{n} {kind}{}", if n == 1 { "" } else { "s" }));
                    }
                    return Err(StoreError::FailedPrecondition(format!(
                        "tenant {} still owns {}; delete those first",
                        key.name,
                        owned.join(", ")
                    )));
                }
                // Its tokens and its history go with it: a later tenant of the same name is
                // somebody else's.
                for table in [
                    "gw_tokens",
                    "gw_events",
                    "gw_rollups",
                    "gw_access_logs",
                    "gw_endpoint_state",
                ] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE tenant = $1"))
                        .bind(&key.name)
                        .execute(&mut **tx)
                        .await?;
                }
                sqlx::query(
                    "DELETE FROM gw_webhook_deliveries WHERE alert_id IN (SELECT id FROM gw_alerts WHERE tenant = $1)",
                )
                .bind(&key.name)
                .execute(&mut **tx)
                .await?;
                sqlx::query("DELETE FROM gw_alerts WHERE tenant = $1")
                    .bind(&key.name)
                    .execute(&mut **tx)
                    .await?;
            }
            Kind::Route | Kind::Listener | Kind::AlertRule => {}
        }
        sqlx::query("DELETE FROM gw_objects WHERE kind = $1 AND tenant = $2 AND name = $3")
            .bind(key.kind.as_str())
            .bind(&key.tenant)
            .bind(&key.name)
            .execute(&mut **tx)
            .await?;
        self.record_change(tx, rev, key.kind.as_str(), &key.tenant, &key.name, "delete")
            .await?;
        Ok(true)
    }

    /// Routes and clusters (as fallback) of `tenant` that reference cluster `name`.
    async fn cluster_users(
        &self,
        tx: &mut Transaction<'static, Any>,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut users = Vec::new();
        for kind in [Kind::Route, Kind::Cluster] {
            let mut group: Vec<Object> =
                load_group(tx, kind, tenant).await?.into_values().collect();
            group.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
            for o in group {
                if o.spec.cluster_refs().contains(&name) {
                    users.push(format!("{} {}", kind, o.meta.name));
                }
            }
        }
        Ok(users)
    }

    /// Everything the xDS translation needs, read consistently at one revision.
    pub async fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let rev: i64 = sqlx::query_scalar("SELECT revision FROM gw_revision WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        let sql = format!("SELECT {OBJECT_COLUMNS} FROM gw_objects ORDER BY kind, tenant, name");
        let rows = sqlx::query(&sql).fetch_all(&mut *tx).await?;
        let objects = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let endpoints = self.live_endpoints(&mut tx, None, None).await?;
        tx.commit().await?;
        Ok(StoreSnapshot {
            revision: rev as u64,
            objects,
            endpoints,
        })
    }
}
