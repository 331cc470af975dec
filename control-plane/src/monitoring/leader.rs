//! One replica at a time for a job (alert evaluation, Kubernetes discovery): a PostgreSQL
//! session-level advisory lock held on a dedicated connection. SQLite is single-process, so its one
//! control plane always leads.

use crate::store::Backend;
use sqlx::{Connection, PgConnection};

/// Advisory lock key of alert evaluation ("gw-alert" in ASCII).
const LOCK_KEY: i64 = 0x6777_2d61_6c65_7274;
/// Advisory lock key of Kubernetes discovery ("gw-disco" in ASCII).
pub const DISCOVERY_LOCK_KEY: i64 = 0x6777_2d64_6973_636f;

/// Whether this replica does a job (by default, evaluates alerts).
pub struct Leadership {
    backend: Backend,
    url: String,
    key: i64,
    job: &'static str,
    conn: Option<PgConnection>,
    held: bool,
}

impl Leadership {
    /// Not leading alert evaluation yet.
    pub fn new(backend: Backend, url: String) -> Self {
        Self::for_job(backend, url, LOCK_KEY, "evaluates alerts")
    }

    /// Not leading yet; `key` is the job's advisory lock, `job` says what it does (for logs).
    pub fn for_job(backend: Backend, url: String, key: i64, job: &'static str) -> Self {
        Leadership {
            backend,
            url,
            key,
            job,
            conn: None,
            held: false,
        }
    }

    /// Tries to become (or stay) the leader; `true` when this replica leads now.
    pub async fn ensure(&mut self) -> bool {
        if self.backend == Backend::Sqlite {
            return true;
        }
        if self.conn.is_none() {
            self.held = false;
            match PgConnection::connect(&self.url).await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: connecting");
                    return false;
                }
            }
        }
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let result = if self.held {
            sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut *conn)
                .await
                .map(|_| true)
        } else {
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1)")
                .bind(self.key)
                .fetch_one(&mut *conn)
                .await
        };
        match result {
            Ok(held) => {
                if held && !self.held {
                    tracing::info!("this replica now {}", self.job);
                }
                self.held = held;
                held
            }
            Err(e) => {
                tracing::warn!(error = %e, "leader election: lost the lock connection");
                self.conn = None;
                self.held = false;
                false
            }
        }
    }

    /// Whether the lock is held (as of the last `ensure`).
    pub fn is_leader(&self) -> bool {
        self.held || self.backend == Backend::Sqlite
    }
}
