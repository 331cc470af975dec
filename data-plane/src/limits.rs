//! Envoy-style cluster limits (`circuit_breakers.thresholds`): connections, pending requests,
//! requests and retries, counted per cluster across config versions.
//!
//! - **max_connections**: upstream connections the proxy holds to the cluster (idle or busy).
//!   A request that needs a new connection at the limit is *queued* (pending) until a connection
//!   of its endpoint comes back idle or one anywhere in the cluster closes; an idle connection of
//!   another endpoint is closed to make room. Counted as `max_connections` overflow, as Envoy's
//!   `upstream_cx_overflow`.
//! - **max_pending_requests**: requests queued that way. Past it: 503 at once.
//! - **max_requests**: requests in flight. Past it: 503 at once.
//! - **max_retries**: retries in flight. Past it the retry is not made; the try's answer stands.
//!
//! The request path reads atomics only; the pending queue is a [`Notify`] touched only when the
//! connection limit is reached.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::Notify;

/// One of the four limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `max_connections`.
    Connections = 0,
    /// `max_pending_requests`.
    Pending = 1,
    /// `max_requests`.
    Requests = 2,
    /// `max_retries`.
    Retries = 3,
}

impl Limit {
    /// All four, in index order.
    pub const ALL: [Limit; 4] = [
        Limit::Connections,
        Limit::Pending,
        Limit::Requests,
        Limit::Retries,
    ];

    /// The Envoy threshold's name (the metric's `limit` label).
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::Connections => "max_connections",
            Limit::Pending => "max_pending_requests",
            Limit::Requests => "max_requests",
            Limit::Retries => "max_retries",
        }
    }
}

/// The maxima, as the cluster's config says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maxima(pub [u32; 4]);

impl From<&gw_proto::model::Limits> for Maxima {
    fn from(l: &gw_proto::model::Limits) -> Self {
        Maxima([
            l.max_connections,
            l.max_pending_requests,
            l.max_requests,
            l.max_retries,
        ])
    }
}

impl Default for Maxima {
    /// The model's (and Envoy's) defaults: 1024 connections, pending and requests, 3 retries.
    fn default() -> Self {
        Maxima::from(&gw_proto::model::Limits::default())
    }
}

/// A cluster's live counts and maxima, shared by every config version that has the cluster.
#[derive(Debug)]
pub struct ClusterLoad {
    now: [AtomicU32; 4],
    overflow: [AtomicU64; 4],
    freed: Notify,
}

impl Default for ClusterLoad {
    fn default() -> Self {
        ClusterLoad {
            now: Default::default(),
            overflow: Default::default(),
            freed: Notify::new(),
        }
    }
}

/// Gives a counted unit back when dropped (and wakes pending requests when it was a connection).
#[derive(Debug)]
pub struct Held {
    load: Arc<ClusterLoad>,
    limit: Limit,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.load.now[self.limit as usize].fetch_sub(1, Ordering::SeqCst);
        if self.limit == Limit::Connections {
            self.load.wake_pending();
        }
    }
}

impl ClusterLoad {
    /// How many of `limit` are held now.
    pub fn current(&self, limit: Limit) -> u32 {
        self.now[limit as usize].load(Ordering::Relaxed)
    }

    /// Times `limit` was reached.
    pub fn overflows(&self, limit: Limit) -> u64 {
        self.overflow[limit as usize].load(Ordering::Relaxed)
    }

    /// One unit of `limit` if fewer than `max` are held; `None` (counted as an overflow) at the
    /// limit. The maxima come with each config version, so a NACKed one never applies.
    pub fn try_take(self: &Arc<Self>, limit: Limit, max: &Maxima) -> Option<Held> {
        let held = self.try_take_uncounted(limit, max);
        if held.is_none() {
            self.overflow[limit as usize].fetch_add(1, Ordering::Relaxed);
        }
        held
    }

    /// [`try_take`](Self::try_take) without counting an overflow (a pending request looking
    /// again, already counted once).
    pub fn try_take_uncounted(self: &Arc<Self>, limit: Limit, max: &Maxima) -> Option<Held> {
        let i = limit as usize;
        let max = max.0[i];
        self.now[i]
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Held {
                load: self.clone(),
                limit,
            })
    }

    /// Whether requests wait for a connection now.
    pub fn has_pending(&self) -> bool {
        self.now[Limit::Pending as usize].load(Ordering::SeqCst) > 0
    }

    /// Wakes every pending request to look again (only when there are any). Called after a
    /// connection went back to its idle queue: the fence pairs with the one in
    /// [`freed`](Self::freed)'s caller, so either the waiter sees that connection or we see the
    /// waiter (no lost wake-up).
    pub fn wake_pending(&self) {
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.has_pending() {
            self.freed.notify_waiters();
        }
    }

    /// A future that completes at the next [`wake_pending`](Self::wake_pending); enable it, then
    /// [`fence`](std::sync::atomic::fence) `SeqCst`, before looking for a connection so no
    /// wake-up is lost in between.
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_taken_up_to_the_maximum_and_given_back_on_drop() {
        let load = Arc::new(ClusterLoad::default());
        let max = Maxima([2, 1, 1, 0]);
        let a = load.try_take(Limit::Connections, &max);
        let b = load.try_take(Limit::Connections, &max);
        assert!(a.is_some() && b.is_some());
        assert!(load.try_take(Limit::Connections, &max).is_none());
        assert_eq!(load.overflows(Limit::Connections), 1);
        drop(a);
        assert_eq!(load.current(Limit::Connections), 1);
        assert!(load.try_take(Limit::Connections, &max).is_some());
        assert!(
            load.try_take(Limit::Retries, &max).is_none(),
            "max_retries 0"
        );
        assert_eq!(load.overflows(Limit::Retries), 1);
    }

    #[tokio::test]
    async fn a_freed_connection_wakes_a_pending_request() {
        let load = Arc::new(ClusterLoad::default());
        let max = Maxima([1, 1, 8, 3]);
        let conn = load.try_take(Limit::Connections, &max);
        let waiter = {
            let load = load.clone();
            tokio::spawn(async move {
                let _pending = load.try_take(Limit::Pending, &max);
                loop {
                    let freed = load.freed();
                    tokio::pin!(freed);
                    freed.as_mut().enable();
                    if let Some(c) = load.try_take(Limit::Connections, &max) {
                        return c;
                    }
                    freed.await;
                }
            })
        };
        // The waiter is queued once it holds the pending unit.
        while !load.has_pending() {
            tokio::task::yield_now().await;
        }
        drop(conn);
        let got = waiter.await.unwrap();
        assert_eq!(load.current(Limit::Connections), 1);
        assert_eq!(load.current(Limit::Pending), 0);
        drop(got);
        assert_eq!(load.current(Limit::Connections), 0);
    }
}
