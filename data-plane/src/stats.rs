//! Lock-free request statistics per route, cluster and endpoint: counters by status class and a
//! fixed-bucket latency histogram (the buckets the control plane rolls up,
//! [`gw_proto::telemetry::LATENCY_BOUNDS_MS`]). The request path only does atomic adds on
//! counters resolved when the config was compiled.

use gw_proto::telemetry::LATENCY_BOUNDS_MS;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Number of latency buckets (the last one is +inf).
pub const BUCKETS: usize = LATENCY_BOUNDS_MS.len() + 1;

/// Status classes counted: 1xx..5xx, then requests that failed without an upstream status.
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "upstream_error"];

/// Counters of one object.
#[derive(Debug, Default)]
pub struct ObjStats {
    classes: [AtomicU64; 6],
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

/// A copy of one object's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Per class, as [`CLASSES`].
    pub classes: [u64; 6],
    /// Per latency bucket.
    pub buckets: [u64; BUCKETS],
    /// Sum of latencies, µs.
    pub sum_us: u64,
}

fn bucket(latency: Duration) -> usize {
    let ms = latency.as_secs_f64() * 1000.0;
    LATENCY_BOUNDS_MS
        .iter()
        .position(|b| ms <= *b)
        .unwrap_or(BUCKETS - 1)
}

impl ObjStats {
    /// Counts one finished request: `status` 0 means it failed before a response.
    pub fn record(&self, status: u16, latency: Duration) {
        let class = match status {
            100..=599 => usize::from(status / 100 - 1),
            _ => 5,
        };
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.buckets[bucket(latency)].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(latency.as_micros() as u64, Ordering::Relaxed);
    }

    /// Current values.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            sum_us: self.sum_us.load(Ordering::Relaxed),
            ..Default::default()
        };
        for (d, c) in s.classes.iter_mut().zip(&self.classes) {
            *d = c.load(Ordering::Relaxed);
        }
        for (d, b) in s.buckets.iter_mut().zip(&self.buckets) {
            *d = b.load(Ordering::Relaxed);
        }
        s
    }
}

/// (kind, tenant, name) of a stats object; kind is `route`, `cluster` or `endpoint`.
pub type StatsKey = (&'static str, String, String);

/// Every stats object, so counters survive config updates and can be rendered and reported.
#[derive(Debug, Default)]
pub struct StatsRegistry {
    map: Mutex<BTreeMap<StatsKey, Arc<ObjStats>>>,
}

impl StatsRegistry {
    /// The counters of an object (created on first use). Called at config compile time.
    pub fn get(&self, kind: &'static str, tenant: &str, name: &str) -> Arc<ObjStats> {
        let mut m = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.entry((kind, tenant.to_owned(), name.to_owned()))
            .or_default()
            .clone()
    }

    /// Every object's counters, in key order.
    pub fn snapshot(&self) -> Vec<(StatsKey, Snapshot)> {
        let m = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        m.iter().map(|(k, v)| (k.clone(), v.snapshot())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_class_and_bucket() {
        let s = ObjStats::default();
        s.record(200, Duration::from_micros(800));
        s.record(503, Duration::from_millis(30));
        s.record(0, Duration::from_secs(100));
        let snap = s.snapshot();
        assert_eq!(snap.classes, [0, 1, 0, 0, 1, 1]);
        assert_eq!(snap.buckets[0], 1, "≤ 1 ms");
        assert_eq!(snap.buckets[5], 1, "25–50 ms");
        assert_eq!(snap.buckets[BUCKETS - 1], 1, "+inf");
    }
}
