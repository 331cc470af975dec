//! PostgreSQL `LISTEN/NOTIFY`: how a replica learns of another replica's writes.
//!
//! Every write transaction sends `NOTIFY gw_changes, '<revision>'`, delivered at commit. A
//! notification can be lost while the listening connection is down, so after every reconnect the
//! task reads the revision from the table: subscribers never miss the latest state.

use super::sql::observe;
use super::StoreError;
use sqlx::postgres::PgListener;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The NOTIFY channel.
pub const CHANNEL: &str = "gw_changes";

/// The background listener; stops when dropped.
pub struct ListenerTask {
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for ListenerTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl ListenerTask {
    /// Connects the listener (so the first write after `connect` is never missed) and spawns it.
    pub async fn spawn(
        url: &str,
        pool: AnyPool,
        tx: Arc<watch::Sender<u64>>,
    ) -> Result<ListenerTask, StoreError> {
        let mut listener = PgListener::connect(url).await?;
        listener.listen(CHANNEL).await?;
        let handle = tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match listener.try_recv().await {
                    Ok(Some(n)) => {
                        backoff = Duration::from_millis(100);
                        if let Ok(rev) = n.payload().parse::<u64>() {
                            observe(&tx, rev);
                        }
                    }
                    // The connection dropped; try_recv reconnects on the next call. Catch up first.
                    Ok(None) => catch_up(&pool, &tx).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        catch_up(&pool, &tx).await;
                    }
                }
            }
        });
        Ok(ListenerTask { handle })
    }
}

async fn catch_up(pool: &AnyPool, tx: &watch::Sender<u64>) {
    match sqlx::query_scalar::<_, i64>("SELECT revision FROM gw_revision WHERE id = 1")
        .fetch_one(pool)
        .await
    {
        Ok(rev) => observe(tx, rev as u64),
        Err(e) => tracing::warn!(error = %e, "reading revision after LISTEN reconnect"),
    }
}
