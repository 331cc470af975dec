//! Store errors → gRPC status. Clients get a clear message; internals stay in the log.

use crate::store::StoreError;
use tonic::Status;

/// Maps a store error to the gRPC status a client should see.
pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Invalid(m) => Status::invalid_argument(m),
        StoreError::NotFound(_) => Status::not_found(e.to_string()),
        StoreError::AlreadyExists(_) => Status::already_exists(e.to_string()),
        StoreError::Conflict { .. } => Status::aborted(e.to_string()),
        StoreError::FailedPrecondition(m) => Status::failed_precondition(m),
        StoreError::UnsupportedUrl(_) => Status::invalid_argument(e.to_string()),
        StoreError::Db(
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_),
        ) => {
            tracing::warn!(error = %e, "userdb unavailable");
            Status::unavailable("userdb is unavailable; retry")
        }
        StoreError::Corrupt { .. } | StoreError::Migrate(_) | StoreError::Db(_) => {
            tracing::error!(error = %e, "userdb error");
            Status::internal("userdb error (see control-plane log)")
        }
    }
}
