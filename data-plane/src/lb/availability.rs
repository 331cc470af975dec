//! Availability balancing: the usable endpoint with the lowest decayed failure rate; near-equal
//! rates are broken by fewer in-flight requests, then by turns so equals share load.

use super::{in_panic, usable, Balancer, PickContext};
use crate::endpoint::Endpoint;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Failure rates closer than this count as equal.
pub const FAILURE_RATE_TOLERANCE: f64 = 0.01;

/// Picks the endpoint least likely to fail.
#[derive(Debug, Default)]
pub struct Availability {
    /// Turn counter, so endpoints that tie take turns.
    cursor: AtomicUsize,
}

impl Availability {
    /// A balancer with its turn counter at zero.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for Availability {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _ctx: PickContext) -> Option<usize> {
        if endpoints.is_empty() {
            return None;
        }
        let panic = in_panic(endpoints);
        let candidates = || {
            endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| usable(e, panic))
        };
        // 1. The lowest failure rate; anything within the tolerance of it ties.
        let min_rate = candidates()
            .map(|(_, e)| e.failure_rate())
            .fold(f64::INFINITY, f64::min);
        let limit = min_rate + FAILURE_RATE_TOLERANCE;
        let low_rate = || candidates().filter(move |(_, e)| e.failure_rate() <= limit);
        // 2. Among those, the fewest in flight.
        let min_in_flight = low_rate().map(|(_, e)| e.in_flight()).min()?;
        let best = || low_rate().filter(move |(_, e)| e.in_flight() == min_in_flight);
        // 3. Equal endpoints take turns.
        let ties = best().count();
        let first = best().next().map(|(i, _)| i);
        if ties <= 1 {
            return first.or_else(|| low_rate().next().map(|(i, _)| i));
        }
        let turn = self.cursor.fetch_add(1, Ordering::Relaxed) % ties;
        // Counters move under us; fall back to any good candidate rather than none.
        best()
            .nth(turn)
            .map(|(i, _)| i)
            .or(first)
            .or_else(|| low_rate().next().map(|(i, _)| i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn eps(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80"), 1)))
            .collect()
    }

    fn counts(b: &Availability, e: &[Arc<Endpoint>], picks: usize) -> Vec<usize> {
        let mut c = vec![0; e.len()];
        for _ in 0..picks {
            c[b.pick(e, PickContext::default()).unwrap()] += 1;
        }
        c
    }

    fn fail(ep: &Endpoint, times: u64) {
        for i in 0..times {
            ep.observe_at(
                Duration::from_millis(i * 10),
                Duration::from_millis(1),
                false,
            );
        }
    }

    #[test]
    fn empty_picks_none() {
        assert_eq!(Availability::new().pick(&[], PickContext::default()), None);
    }

    #[test]
    fn failing_endpoint_is_avoided() {
        let e = eps(3);
        fail(&e[1], 20);
        assert!(e[1].failure_rate() > 0.5);
        let c = counts(&Availability::new(), &e, 3000);
        assert_eq!(c[1], 0, "{c:?}");
        assert_eq!(c[0], 1500, "{c:?}");
        assert_eq!(c[2], 1500, "{c:?}");
    }

    #[test]
    fn lowest_failure_rate_wins() {
        let e = eps(3);
        fail(&e[0], 20);
        fail(&e[1], 3);
        fail(&e[2], 8);
        let c = counts(&Availability::new(), &e, 300);
        assert_eq!(c, vec![0, 300, 0]);
    }

    #[test]
    fn equal_endpoints_share_load_exactly() {
        let e = eps(4);
        assert_eq!(counts(&Availability::new(), &e, 4000), vec![1000; 4]);
    }

    #[test]
    fn near_equal_rates_tie_break_on_in_flight() {
        let e = eps(3);
        // One failure then many successes: a small residual rate, within the tolerance of 0.
        fail(&e[0], 1);
        for i in 1..200 {
            e[0].observe_at(
                Duration::from_millis(i * 10),
                Duration::from_millis(1),
                true,
            );
        }
        assert!(
            e[0].failure_rate() < FAILURE_RATE_TOLERANCE,
            "{}",
            e[0].failure_rate()
        );
        let _g = [e[1].start(), e[2].start()];
        let c = counts(&Availability::new(), &e, 300);
        assert_eq!(c, vec![300, 0, 0]);
    }

    #[test]
    fn unhealthy_skipped_and_panic_uses_all() {
        let e = eps(4);
        e[0].healthy
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let c = counts(&Availability::new(), &e, 3000);
        assert_eq!(c[0], 0, "{c:?}");
        for ep in &e {
            ep.healthy
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        let c = counts(&Availability::new(), &e, 4000);
        assert_eq!(c, vec![1000; 4]);
    }
}
