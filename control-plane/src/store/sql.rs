//! The sqlx-backed [`Store`]: connection, migrations, the revision counter and change records.

use super::notify;
use super::StoreError;
use crate::clock::{Clock, SystemClock};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use tokio::sync::watch;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// Connection settings.
#[derive(Clone)]
pub struct StoreOptions {
    /// Database URL: `sqlite://PATH`, `sqlite::memory:` or `postgres://…`.
    pub url: String,
    /// Pool size (SQLite in-memory databases always use one connection).
    pub max_connections: u32,
    /// Time source (TTL expiry, timestamps).
    pub clock: Arc<dyn Clock>,
}

impl StoreOptions {
    /// Defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        StoreOptions {
            url: url.into(),
            max_connections: 8,
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// userdb. Cheap to clone; all clones share the pool and the change feed.
#[derive(Clone)]
pub struct Store {
    pub(super) pool: AnyPool,
    pub(super) backend: Backend,
    pub(super) clock: Arc<dyn Clock>,
    revision_tx: Arc<watch::Sender<u64>>,
    pub(super) events_tx: tokio::sync::broadcast::Sender<super::EventRecord>,
    _listener: Option<Arc<notify::ListenerTask>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

fn normalize_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    if url == "sqlite::memory:" || url.starts_with("sqlite::memory:?") {
        return Ok((Backend::Sqlite, url.to_owned()));
    }
    if let Some(rest) = url.strip_prefix("sqlite:") {
        // Create the file on first start, as the README promises.
        let url = if rest.contains("mode=") {
            url.to_owned()
        } else if rest.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        return Ok((Backend::Sqlite, url));
    }
    Err(StoreError::UnsupportedUrl(url.to_owned()))
}

impl Store {
    /// Connects, applies migrations and starts the change listener (PostgreSQL).
    pub async fn connect(opts: StoreOptions) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalize_url(&opts.url)?;
        let memory = url.starts_with("sqlite::memory:");
        let connect = AnyConnectOptions::from_str(&url)?;
        let mut pool = AnyPoolOptions::new();
        pool = match (backend, memory) {
            // Every connection to :memory: is its own database: keep exactly one, forever.
            (Backend::Sqlite, true) => pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None),
            (Backend::Sqlite, false) => pool.max_connections(opts.max_connections.min(4)),
            (Backend::Postgres, _) => pool.max_connections(opts.max_connections),
        };
        if backend == Backend::Sqlite {
            pool = pool.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    Ok(())
                })
            });
        }
        let pool = pool.connect_with(connect).await?;
        MIGRATOR.run(&pool).await?;
        let current: i64 = sqlx::query_scalar("SELECT revision FROM gw_revision WHERE id = 1")
            .fetch_one(&pool)
            .await?;
        let (revision_tx, _) = watch::channel(current as u64);
        let revision_tx = Arc::new(revision_tx);
        let listener = match backend {
            Backend::Postgres => Some(Arc::new(
                notify::ListenerTask::spawn(&url, pool.clone(), revision_tx.clone()).await?,
            )),
            Backend::Sqlite => None,
        };
        let (events_tx, _) = tokio::sync::broadcast::channel(1024);
        Ok(Store {
            pool,
            backend,
            clock: opts.clock,
            revision_tx,
            events_tx,
            _listener: listener,
        })
    }

    /// The database behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The latest revision this process knows of; changes on every local write and, on
    /// PostgreSQL, on every other replica's write.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.revision_tx.subscribe()
    }

    /// The current revision, read from the database.
    pub async fn revision(&self) -> Result<u64, StoreError> {
        let r: i64 = sqlx::query_scalar("SELECT revision FROM gw_revision WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(r as u64)
    }

    /// Starts a write: one transaction whose first statement bumps the revision, which also
    /// serializes writers (row lock on PostgreSQL, the write lock on SQLite).
    pub(super) async fn begin_write(&self) -> Result<(Transaction<'static, Any>, u64), StoreError> {
        let mut tx = self.pool.begin().await?;
        let rev: i64 = sqlx::query_scalar(
            "UPDATE gw_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok((tx, rev as u64))
    }

    /// Records a change at `rev` (inside the write transaction).
    pub(super) async fn record_change(
        &self,
        tx: &mut Transaction<'static, Any>,
        rev: u64,
        kind: &str,
        tenant: &str,
        name: &str,
        op: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO gw_changes (revision, kind, tenant, name, op, at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(rev as i64)
            .bind(kind)
            .bind(tenant)
            .bind(name)
            .bind(op)
            .bind(self.clock.now_ms())
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Commits a write and tells subscribers (NOTIFY on PostgreSQL, delivered at commit).
    pub(super) async fn commit_write(
        &self,
        mut tx: Transaction<'static, Any>,
        rev: u64,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(notify::CHANNEL)
                .bind(rev.to_string())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.observe_revision(rev);
        Ok(())
    }

    /// Moves the change feed forward (never backward).
    pub(super) fn observe_revision(&self, rev: u64) {
        observe(&self.revision_tx, rev);
    }

    /// Milliseconds since the epoch, per the store's clock.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }
}

pub(super) fn observe(tx: &watch::Sender<u64>, rev: u64) {
    tx.send_if_modified(|cur| {
        if rev > *cur {
            *cur = rev;
            true
        } else {
            false
        }
    });
}
