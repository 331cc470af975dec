//! Store errors: one variant per way a store call can fail.

use gw_proto::model::FieldError;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Input failed validation; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The object does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The object already exists (create).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Optimistic concurrency: the stored version differs from the one given.
    #[error("{what}: resource_version {given} is stale (stored: {stored})")]
    Conflict {
        /// The object.
        what: String,
        /// Version the caller sent.
        given: u64,
        /// Version in the store.
        stored: u64,
    },
    /// The write would break a reference (e.g. deleting a cluster routes use).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The database URL is not one we support.
    #[error("unsupported database URL {0:?}: use sqlite://PATH, sqlite::memory: or postgres://…")]
    UnsupportedUrl(String),
    /// A stored row could not be decoded.
    #[error("corrupt row {what}: {reason}")]
    Corrupt {
        /// The row.
        what: String,
        /// Why.
        reason: String,
    },
    /// Applying migrations failed.
    #[error("migrating userdb: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

impl From<FieldError> for StoreError {
    fn from(e: FieldError) -> Self {
        StoreError::Invalid(e.to_string())
    }
}
