//! Smooth weighted round robin (nginx's algorithm), computed once when the balancer is built into
//! a schedule of endpoint indexes; a pick is one atomic increment plus a health check.

use super::{in_panic, usable, Balancer, PickContext};
use crate::endpoint::Endpoint;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Longest schedule; larger weight sums are scaled down proportionally (each weight stays ≥ 1).
pub const MAX_SCHEDULE: usize = 4096;

/// Smooth weighted round robin over a precomputed schedule.
#[derive(Debug)]
pub struct RoundRobin {
    /// Endpoint indexes, one full cycle (length = sum of the scaled weights).
    schedule: Vec<u32>,
    /// Position in `schedule`; wraps.
    cursor: AtomicUsize,
}

impl RoundRobin {
    /// Builds the schedule from the endpoints' current weights.
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        let weights = scaled_weights(
            endpoints
                .iter()
                .map(|e| u64::from(e.weight().max(1)))
                .collect(),
        );
        RoundRobin {
            schedule: smooth_schedule(&weights),
            cursor: AtomicUsize::new(0),
        }
    }

    /// The precomputed cycle of endpoint indexes.
    pub fn schedule(&self) -> &[u32] {
        &self.schedule
    }
}

/// Scales `weights` so their sum stays near [`MAX_SCHEDULE`], keeping every weight ≥ 1.
fn scaled_weights(weights: Vec<u64>) -> Vec<u64> {
    let total: u64 = weights.iter().sum();
    if total <= MAX_SCHEDULE as u64 {
        return weights;
    }
    weights
        .into_iter()
        .map(|w| (w * MAX_SCHEDULE as u64 / total).max(1))
        .collect()
}

/// nginx's smooth weighted round robin: each step every current weight grows by its weight, the
/// largest is picked and lowered by the total, which interleaves heavy endpoints with light ones.
fn smooth_schedule(weights: &[u64]) -> Vec<u32> {
    let total: u64 = weights.iter().sum();
    let total_i = total as i64;
    let mut current = vec![0i64; weights.len()];
    let mut schedule = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total_i;
        schedule.push(best as u32);
    }
    schedule
}

impl Balancer for RoundRobin {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _ctx: PickContext) -> Option<usize> {
        let len = self.schedule.len();
        if endpoints.is_empty() || len == 0 {
            return None;
        }
        // Panic mode is only computed once an unhealthy endpoint is met (rare).
        let mut panic: Option<bool> = None;
        for _ in 0..len {
            let slot = self.cursor.fetch_add(1, Ordering::Relaxed) % len;
            let idx = self.schedule[slot] as usize;
            let Some(ep) = endpoints.get(idx) else {
                continue;
            };
            if ep.is_healthy() || usable(ep, *panic.get_or_insert_with(|| in_panic(endpoints))) {
                return Some(idx);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    fn eps(weights: &[u32]) -> Vec<Arc<Endpoint>> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Arc::new(Endpoint::new(format!("10.0.0.{i}:80"), *w)))
            .collect()
    }

    fn picks(rr: &RoundRobin, e: &[Arc<Endpoint>], n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| rr.pick(e, PickContext::default()).unwrap())
            .collect()
    }

    #[test]
    fn empty_picks_none() {
        let rr = RoundRobin::new(&[]);
        assert_eq!(rr.pick(&[], PickContext::default()), None);
        assert!(rr.schedule().is_empty());
    }

    #[test]
    fn equal_weights_spread_exactly_evenly() {
        let e = eps(&[1, 1, 1, 1]);
        let rr = RoundRobin::new(&e);
        assert_eq!(rr.schedule().len(), 4);
        let mut counts = [0usize; 4];
        for i in picks(&rr, &e, 4 * 250) {
            counts[i] += 1;
        }
        assert_eq!(counts, [250; 4]);
        // Every full cycle of 4 visits each endpoint once.
        let seq = picks(&rr, &e, 8);
        for cycle in seq.chunks(4) {
            let mut c = cycle.to_vec();
            c.sort_unstable();
            assert_eq!(c, vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn weights_5_1_1_are_exact_and_smooth() {
        let e = eps(&[5, 1, 1]);
        let rr = RoundRobin::new(&e);
        // nginx's documented sequence for {a=5, b=1, c=1}.
        assert_eq!(rr.schedule(), &[0, 0, 1, 0, 2, 0, 0]);
        for cycle in picks(&rr, &e, 7 * 100).chunks(7) {
            let mut counts = [0usize; 3];
            for &i in cycle {
                counts[i] += 1;
            }
            assert_eq!(counts, [5, 1, 1]);
        }
        // Never five of the same in a row, even across cycle boundaries.
        let seq = picks(&rr, &e, 7 * 10);
        let longest = seq
            .chunk_by(|a, b| a == b)
            .map(<[usize]>::len)
            .max()
            .unwrap();
        assert!(longest <= 4, "longest run {longest}: {seq:?}");
    }

    #[test]
    fn large_weights_are_scaled_into_the_cap() {
        let e = eps(&[100_000, 50_000, 1]);
        let rr = RoundRobin::new(&e);
        let s = rr.schedule();
        assert!(s.len() <= MAX_SCHEDULE + 1, "{}", s.len());
        let count = |i: u32| s.iter().filter(|&&x| x == i).count();
        assert!(count(2) >= 1, "light endpoint keeps a slot");
        let ratio = count(0) as f64 / count(1) as f64;
        assert!((ratio - 2.0).abs() < 0.01, "{ratio}");
    }

    #[test]
    fn unhealthy_endpoints_are_skipped() {
        let e = eps(&[1, 1, 1, 1]);
        e[1].healthy.store(false, Ordering::Relaxed);
        let rr = RoundRobin::new(&e);
        let mut counts = [0usize; 4];
        for i in picks(&rr, &e, 3000) {
            counts[i] += 1;
        }
        assert_eq!(counts[1], 0);
        for c in [counts[0], counts[2], counts[3]] {
            assert!((900..=1100).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn panic_mode_still_picks() {
        let e = eps(&[2, 1, 1]);
        for ep in &e {
            ep.healthy.store(false, Ordering::Relaxed);
        }
        let rr = RoundRobin::new(&e);
        let mut counts = [0usize; 3];
        for i in picks(&rr, &e, 400) {
            counts[i] += 1;
        }
        assert_eq!(counts, [200, 100, 100]);

        // Below the threshold (1 of 3 healthy) every endpoint is used, too.
        e[0].healthy.store(true, Ordering::Relaxed);
        let seen: std::collections::HashSet<usize> = picks(&rr, &e, 8).into_iter().collect();
        assert_eq!(seen.len(), 3);
    }
}
