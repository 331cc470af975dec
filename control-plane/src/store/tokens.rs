//! API tokens: name, role, tenant and the SHA-256 of the secret. Not config: writes here do not
//! bump the revision, and proxies never see them.

use super::{Store, StoreError};
use crate::auth::{self, Principal, Role};
use gw_proto::model::{validate_name, FieldError};
use sqlx::Row;
use std::time::Duration;

/// A token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// Unique name.
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Its one tenant, or empty for every tenant.
    pub tenant: String,
    /// When it was made (ms since the epoch).
    pub created_at_ms: i64,
    /// When it stops working, if ever.
    pub expires_at_ms: Option<i64>,
    /// The client-certificate subject (common name) that also stands for this token.
    pub subject: Option<String>,
}

fn record(row: &sqlx::any::AnyRow) -> Result<TokenRecord, StoreError> {
    let role: String = row.try_get("role")?;
    let name: String = row.try_get("name")?;
    let role = Role::parse(&role).ok_or_else(|| StoreError::Corrupt {
        what: format!("token {name}"),
        reason: format!("unknown role {role:?}"),
    })?;
    Ok(TokenRecord {
        name,
        role,
        tenant: row.try_get("tenant")?,
        created_at_ms: row.try_get("created_at")?,
        expires_at_ms: row.try_get("expires_at")?,
        subject: row.try_get("subject")?,
    })
}

impl Store {
    /// Makes (or resets) the admin token `name` with a secret chosen by the operator
    /// (`GW_ADMIN_TOKEN` at start-up): role admin, every tenant, no expiry, this secret. One
    /// statement, so replicas starting together on a fresh userdb do not trip over each other.
    pub async fn ensure_admin_token(
        &self,
        name: &str,
        secret: &str,
    ) -> Result<TokenRecord, StoreError> {
        validate_name("name", name)?;
        if secret.len() < 16 {
            return Err(FieldError::new("secret", "must be at least 16 characters").into());
        }
        let hash = auth::hash(secret);
        let replaced: Option<String> =
            sqlx::query_scalar("SELECT hash FROM gw_tokens WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?;
        if replaced.as_ref().is_some_and(|h| *h != hash) {
            tracing::warn!(
                token = name,
                "GW_ADMIN_TOKEN: the token's secret was replaced"
            );
        }
        sqlx::query(
            "INSERT INTO gw_tokens (name, hash, role, tenant, created_at, expires_at) VALUES ($1, $2, 'admin', '', $3, NULL) \
             ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, role = 'admin', tenant = '', expires_at = NULL",
        )
        .bind(name)
        .bind(&hash)
        .bind(self.now_ms())
        .execute(&self.pool)
        .await?;
        self.token(name).await
    }

    /// Makes a token; returns it and its secret (shown once, stored only hashed). `tenant-admin`
    /// needs a tenant; a tenant must exist; names are unique (`AlreadyExists`-style conflict).
    pub async fn create_token(
        &self,
        name: &str,
        role: &str,
        tenant: &str,
        ttl: Option<Duration>,
        subject: Option<&str>,
    ) -> Result<(TokenRecord, String), StoreError> {
        validate_name("name", name)?;
        if let Some(s) = subject {
            if s.is_empty() || s.chars().count() > 64 || s.chars().any(char::is_control) {
                return Err(FieldError::new(
                    "subject",
                    "must be a certificate common name: 1 to 64 characters, no control characters",
                )
                .into());
            }
        }
        let role = Role::parse(role).ok_or_else(|| {
            FieldError::new(
                "role",
                format!("{role:?} is not admin, tenant-admin or viewer"),
            )
        })?;
        match (role, tenant) {
            (Role::TenantAdmin, "") => {
                return Err(
                    FieldError::new("tenant", "is required for a tenant-admin token").into(),
                )
            }
            (Role::Admin, t) if !t.is_empty() => {
                return Err(FieldError::new(
                    "tenant",
                    "an admin token covers every tenant; use tenant-admin for one",
                )
                .into())
            }
            _ => {}
        }
        const TEN_YEARS: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
        if ttl.is_some_and(|t| t < Duration::from_secs(1) || t > TEN_YEARS) {
            return Err(FieldError::new("ttl", "must be between 1s and 10 years").into());
        }
        if !tenant.is_empty() {
            validate_name("tenant", tenant)?;
        }
        // The tenant check and the insert hold the writers' lock (the revision row, left as it
        // is), so a tenant deleted meanwhile cannot leave an orphan token behind for a later
        // tenant of the same name.
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE gw_revision SET revision = revision WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        if !tenant.is_empty() {
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT name FROM gw_objects WHERE kind = 'tenant' AND tenant = '' AND name = $1",
            )
            .bind(tenant)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(
                    FieldError::new("tenant", format!("tenant {tenant} does not exist")).into(),
                );
            }
        }
        let now = self.now_ms();
        let secret = auth::new_secret();
        let expires = ttl.map(|t| now + t.as_millis() as i64);
        let r = sqlx::query(
            "INSERT INTO gw_tokens (name, hash, role, tenant, created_at, expires_at, subject) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(name)
        .bind(auth::hash(&secret))
        .bind(role.as_str())
        .bind(tenant)
        .bind(now)
        .bind(expires)
        .bind(subject)
        .execute(&mut *tx)
        .await;
        match r {
            Ok(_) => tx.commit().await?,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                let taken = match subject {
                    Some(s) => format!("token {name} (or a token for certificate subject {s:?})"),
                    None => format!("token {name}"),
                };
                return Err(StoreError::AlreadyExists(taken));
            }
            Err(e) => return Err(e.into()),
        }
        let record = TokenRecord {
            name: name.to_owned(),
            role,
            tenant: tenant.to_owned(),
            created_at_ms: now,
            expires_at_ms: expires,
            subject: subject.map(str::to_owned),
        };
        Ok((record, secret))
    }

    /// One token by name.
    async fn token(&self, name: &str) -> Result<TokenRecord, StoreError> {
        let row = sqlx::query(
            "SELECT name, role, tenant, created_at, expires_at, subject FROM gw_tokens WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(record)
            .unwrap_or_else(|| Err(StoreError::NotFound(format!("token {name}"))))
    }

    /// Every token, by name.
    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, role, tenant, created_at, expires_at, subject FROM gw_tokens ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Deletes a token; `NotFound` if there is none of that name.
    pub async fn revoke_token(&self, name: &str) -> Result<(), StoreError> {
        let n = sqlx::query("DELETE FROM gw_tokens WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound(format!("token {name}")));
        }
        Ok(())
    }

    /// (hash, principal, certificate subject) of every token, for the in-memory table.
    pub(crate) async fn token_hashes(
        &self,
    ) -> Result<Vec<(String, Principal, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, hash, role, tenant, created_at, expires_at, subject FROM gw_tokens",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let r = record(row)?;
                let hash: String = row.try_get("hash")?;
                Ok((
                    hash.clone(),
                    Principal {
                        name: r.name,
                        role: r.role,
                        tenant: r.tenant,
                        expires_at_ms: r.expires_at_ms,
                        hash,
                    },
                    r.subject,
                ))
            })
            .collect()
    }
}
