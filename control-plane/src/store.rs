//! userdb: the SQL store behind the API and the xDS server.
//!
//! One implementation serves both SQLite (embedded default) and PostgreSQL (production, shared by
//! replicas) through sqlx's `Any` driver; the SQL is written to the common dialect and the two
//! migration sets under `migrations/` differ only in types. Every write is one transaction that first
//! bumps the single-row `gw_revision` counter — that row lock serializes writers, so revisions are
//! strictly increasing in commit order — and records the change in `gw_changes`. Each object row
//! carries `resource_version` (the revision of its last write) for optimistic concurrency.
//!
//! Replicas learn of writes through [`Store::subscribe`]: PostgreSQL `LISTEN/NOTIFY` on channel
//! `gw_changes` (see [`notify`]), or the in-process broadcast for SQLite.

mod access_logs;
mod alerts;
mod endpoint_state;
mod endpoints;
mod error;
mod events;
mod notify;
mod objects;
mod rollups;
mod sql;
mod tokens;

pub use access_logs::{parse_status_filter, AccessLog, LogFilter};
pub use alerts::{AlertRecord, Delivery};
pub use endpoint_state::EndpointState;
pub use error::StoreError;
pub use events::{new_id, EventFilter, EventRecord};
pub use rollups::{bucket_of, Rollup, RollupKey, BUCKETS, LATENCY_BOUNDS_MS};
pub use sql::{Backend, Store, StoreOptions};
pub use tokens::TokenRecord;

use gw_proto::model::{Endpoint, Object, ObjectKey};

/// Result of applying one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// It did not exist.
    Created,
    /// It existed with a different spec or labels.
    Configured,
    /// It existed exactly as given.
    Unchanged,
}

impl ApplyOutcome {
    /// `created` / `configured` / `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyOutcome::Created => "created",
            ApplyOutcome::Configured => "configured",
            ApplyOutcome::Unchanged => "unchanged",
        }
    }
}

/// Outcome of a batch apply.
#[derive(Debug, Clone)]
pub struct ApplyReport {
    /// Per object, in input order: key, outcome, resource version after the apply.
    pub results: Vec<(ObjectKey, ApplyOutcome, u64)>,
    /// Store revision after the apply (unchanged when nothing changed or on dry run).
    pub revision: u64,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Token for the next page; `None` on the last page.
    pub next_page_token: Option<String>,
    /// Store revision the page was read at.
    pub revision: u64,
}

/// Everything the xDS translation needs, read in one transaction.
#[derive(Debug, Clone, Default)]
pub struct StoreSnapshot {
    /// Store revision of this snapshot.
    pub revision: u64,
    /// Every tenant, listener, cluster and route.
    pub objects: Vec<Object>,
    /// Registered and discovered endpoints that have not expired (static ones live in cluster specs).
    pub endpoints: Vec<Endpoint>,
}

/// Registration of an endpoint through the API or by discovery.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The endpoint (its `resource_version`, `registered_at_ms` and `expires_at_ms` are set by the store).
    pub endpoint: Endpoint,
}
