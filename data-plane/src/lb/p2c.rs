//! Power of two choices: pick two distinct random usable endpoints and keep the less loaded one.
//! Load is either the in-flight count (`least_conn`) or peak-EWMA latency × (in-flight + 1)
//! (`response_time`, as in Finagle and Linkerd).

use super::{in_panic, usable, Balancer, PickContext};
use crate::endpoint::Endpoint;
use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// Latency assumed for an endpoint with no response yet (1 ms), so it is neither shunned nor
/// flooded.
pub const DEFAULT_EWMA_NS: f64 = 1_000_000.0;

/// What a P2C pick compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// Requests in flight.
    LeastRequests,
    /// Peak-EWMA latency × (in-flight + 1).
    PeakEwma,
}

/// Power-of-two-choices balancer.
#[derive(Debug)]
pub struct P2c {
    score: Score,
}

impl P2c {
    /// P2C on in-flight requests (`least_conn`).
    pub fn least_requests() -> Self {
        P2c {
            score: Score::LeastRequests,
        }
    }

    /// P2C on peak-EWMA latency × (in-flight + 1) (`response_time`).
    pub fn peak_ewma() -> Self {
        P2c {
            score: Score::PeakEwma,
        }
    }

    /// The load of `ep` under this balancer's score; lower is better.
    pub fn score(&self, ep: &Endpoint) -> f64 {
        let in_flight = f64::from(ep.in_flight());
        match self.score {
            Score::LeastRequests => in_flight,
            Score::PeakEwma => {
                let ewma = ep.ewma_ns();
                let ewma = if ewma > 0.0 { ewma } else { DEFAULT_EWMA_NS };
                ewma * (in_flight + 1.0)
            }
        }
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A per-thread random seed (never 0, which xorshift cannot leave).
fn seed() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish() | 1
}

/// A cheap thread-local xorshift64* random number; no lock, no syscall.
pub fn fast_rand() -> u64 {
    RNG.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A random number in `0..n` (`n > 0`).
fn rand_below(n: usize) -> usize {
    // Multiply-shift: unbiased enough for balancing and avoids a division.
    ((u128::from(fast_rand() >> 32) * n as u128) >> 32) as usize
}

/// Index of the `k`-th usable endpoint.
fn nth_usable(endpoints: &[Arc<Endpoint>], panic: bool, k: usize) -> Option<usize> {
    endpoints
        .iter()
        .enumerate()
        .filter(|(_, e)| usable(e, panic))
        .nth(k)
        .map(|(i, _)| i)
}

impl Balancer for P2c {
    fn pick(&self, endpoints: &[Arc<Endpoint>], _ctx: PickContext) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 {
            return None;
        }
        if n >= 2 {
            // Fast path, O(1): two distinct random endpoints, both healthy. Conditioned on that,
            // the pair is uniform over healthy pairs, as the slow path's draw is, so mixing the
            // two paths keeps picks uniform.
            let a = rand_below(n);
            let mut b = rand_below(n - 1);
            if b >= a {
                b += 1;
            }
            if endpoints[a].is_healthy() && endpoints[b].is_healthy() {
                return Some(if self.score(&endpoints[b]) < self.score(&endpoints[a]) {
                    b
                } else {
                    a
                });
            }
        }
        let panic = in_panic(endpoints);
        let usable_count = endpoints.iter().filter(|e| usable(e, panic)).count();
        let (a, b) = match usable_count {
            0 => return None,
            1 => return nth_usable(endpoints, panic, 0),
            u => {
                let a = rand_below(u);
                let mut b = rand_below(u - 1);
                if b >= a {
                    b += 1;
                }
                if u == n {
                    (a, b)
                } else {
                    (
                        nth_usable(endpoints, panic, a)?,
                        nth_usable(endpoints, panic, b)?,
                    )
                }
            }
        };
        // `a` is random, so ties are broken at random.
        if self.score(&endpoints[b]) < self.score(&endpoints[a]) {
            Some(b)
        } else {
            Some(a)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn eps(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:80"), 1)))
            .collect()
    }

    fn counts(b: &P2c, e: &[Arc<Endpoint>], picks: usize) -> Vec<usize> {
        let mut c = vec![0; e.len()];
        for _ in 0..picks {
            c[b.pick(e, PickContext::default()).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn empty_and_single() {
        let b = P2c::least_requests();
        assert_eq!(b.pick(&[], PickContext::default()), None);
        let e = eps(1);
        assert_eq!(counts(&b, &e, 100), vec![100]);
        // One healthy of two is not panic (1/2 healthy is the threshold): always the healthy one.
        let e = eps(2);
        e[0].healthy.store(false, Ordering::Relaxed);
        assert_eq!(counts(&b, &e, 100), vec![0, 100]);
    }

    #[test]
    fn picks_are_distinct_pairs() {
        // With two endpoints both are always compared, so the less loaded one always wins.
        let e = eps(2);
        let _g = e[0].start();
        assert_eq!(counts(&P2c::least_requests(), &e, 1000), vec![0, 1000]);
    }

    #[test]
    fn least_requests_avoids_the_busy_endpoint() {
        let e = eps(3);
        let _guards: Vec<_> = (0..50).map(|_| e[1].start()).collect();
        let c = counts(&P2c::least_requests(), &e, 10_000);
        assert!(c[1] <= 10, "busy endpoint picked {} times: {c:?}", c[1]);
        assert!(c[0] > 4000 && c[2] > 4000, "{c:?}");
    }

    #[test]
    fn least_requests_spreads_idle_endpoints_evenly() {
        for n in [2usize, 3, 5] {
            let e = eps(n);
            let picks = 10_000;
            let c = counts(&P2c::least_requests(), &e, picks);
            let fair = picks as f64 / n as f64;
            for &x in &c {
                assert!((x as f64 - fair).abs() <= 0.1 * fair, "n={n}: {c:?}");
            }
        }
    }

    #[test]
    fn unhealthy_endpoints_are_skipped_and_panic_uses_all() {
        let e = eps(4);
        e[2].healthy.store(false, Ordering::Relaxed);
        let c = counts(&P2c::least_requests(), &e, 3000);
        assert_eq!(c[2], 0, "{c:?}");
        for ep in &e {
            ep.healthy.store(false, Ordering::Relaxed);
        }
        let c = counts(&P2c::least_requests(), &e, 4000);
        assert!(
            c.iter().all(|&x| x > 700),
            "panic mode balances over all: {c:?}"
        );
    }

    #[test]
    fn peak_ewma_avoids_the_slow_endpoint() {
        let e = eps(2);
        e[0].observe_at(Duration::from_secs(1), Duration::from_millis(5), true);
        e[1].observe_at(Duration::from_secs(1), Duration::from_millis(50), true);
        let c = counts(&P2c::peak_ewma(), &e, 10_000);
        assert!(c[1] < 1500, "slow endpoint got {c:?}");

        // Load counts too: 20 in flight on the fast one makes it (5 ms × 21) worse than the slow.
        let _g: Vec<_> = (0..20).map(|_| e[0].start()).collect();
        let c = counts(&P2c::peak_ewma(), &e, 1000);
        assert_eq!(c[0], 0, "{c:?}");
    }

    #[test]
    fn peak_ewma_fastest_of_three_gets_most() {
        let e = eps(3);
        for (ep, ms) in e.iter().zip([2u64, 20, 8]) {
            ep.observe_at(Duration::from_secs(1), Duration::from_millis(ms), true);
        }
        let c = counts(&P2c::peak_ewma(), &e, 10_000);
        assert!(c[0] > c[2] && c[2] > c[1], "{c:?}");
        // The fastest wins every pair it is in: 2/3 of picks.
        assert!((6000..7300).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn peak_ewma_defaults_unmeasured_to_one_ms() {
        let b = P2c::peak_ewma();
        let fresh = Endpoint::new("a:1", 1);
        assert_eq!(b.score(&fresh), DEFAULT_EWMA_NS);
        let slow = Endpoint::new("b:1", 1);
        slow.observe_at(Duration::from_secs(1), Duration::from_millis(3), true);
        assert!(b.score(&slow) > b.score(&fresh));
    }

    #[test]
    fn rng_is_roughly_uniform() {
        let mut c = [0usize; 8];
        for _ in 0..80_000 {
            c[rand_below(8)] += 1;
        }
        assert!(c.iter().all(|&x| (9000..11_000).contains(&x)), "{c:?}");
    }
}
