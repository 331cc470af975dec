//! Consistent hash ring (`ip_hash`): each endpoint owns virtual nodes keyed by its address, so
//! adding one endpoint to N moves about 1/(N+1) of the keys, all of them to the new endpoint.

use super::{hash_key, in_panic, usable, Balancer, PickContext};
use crate::endpoint::Endpoint;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Virtual nodes per unit of weight.
pub const VNODES_PER_WEIGHT: u64 = 160;

/// Largest ring; larger weight sums are scaled down proportionally.
pub const MAX_RING: u64 = 100_000;

/// Fewest virtual nodes an endpoint gets when weights are scaled down.
const MIN_VNODES: u64 = 16;

/// Consistent hash ring over the endpoints.
#[derive(Debug)]
pub struct RingHash {
    /// (point, endpoint index), sorted by point.
    ring: Vec<(u64, u32)>,
    /// Round-robin cursor for picks without a hash.
    cursor: AtomicUsize,
}

impl RingHash {
    /// Builds the ring from the endpoints' addresses and current weights.
    pub fn new(endpoints: &[Arc<Endpoint>]) -> Self {
        let total: u64 = endpoints.iter().map(|e| u64::from(e.weight().max(1))).sum();
        let scale_down = total * VNODES_PER_WEIGHT > MAX_RING;
        let mut ring = Vec::new();
        for (idx, ep) in endpoints.iter().enumerate() {
            let w = u64::from(ep.weight().max(1));
            let vnodes = if scale_down {
                (w * MAX_RING / total).max(MIN_VNODES)
            } else {
                w * VNODES_PER_WEIGHT
            };
            for i in 0..vnodes {
                let point = hash_key(format!("{}-{i}", ep.address).as_bytes());
                ring.push((point, idx as u32));
            }
        }
        ring.sort_unstable();
        RingHash {
            ring,
            cursor: AtomicUsize::new(0),
        }
    }

    /// Number of virtual nodes on the ring.
    pub fn len(&self) -> usize {
        self.ring.len()
    }

    /// Whether the ring has no nodes (no endpoints).
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Round robin over usable endpoints, for requests without a hash key.
    fn pick_round_robin(&self, endpoints: &[Arc<Endpoint>]) -> Option<usize> {
        let n = endpoints.len();
        let mut panic: Option<bool> = None;
        for _ in 0..n {
            let idx = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let ep = &endpoints[idx];
            if ep.is_healthy() || usable(ep, *panic.get_or_insert_with(|| in_panic(endpoints))) {
                return Some(idx);
            }
        }
        None
    }
}

impl Balancer for RingHash {
    fn pick(&self, endpoints: &[Arc<Endpoint>], ctx: PickContext) -> Option<usize> {
        if endpoints.is_empty() || self.ring.is_empty() {
            return None;
        }
        let Some(hash) = ctx.hash else {
            return self.pick_round_robin(endpoints);
        };
        let len = self.ring.len();
        let start = self.ring.partition_point(|&(point, _)| point < hash);
        let mut panic: Option<bool> = None;
        // Walk clockwise to the first usable endpoint; outside panic mode at least half are
        // healthy, so the walk is short.
        for step in 0..len {
            let idx = self.ring[(start + step) % len].1 as usize;
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

    fn eps(n: usize) -> Vec<Arc<Endpoint>> {
        (0..n)
            .map(|i| Arc::new(Endpoint::new(format!("10.0.0.{i}:8080"), 1)))
            .collect()
    }

    fn key(i: usize) -> PickContext {
        PickContext {
            hash: Some(hash_key(
                format!("192.168.{}.{}", i / 256, i % 256).as_bytes(),
            )),
        }
    }

    fn map_keys(r: &RingHash, e: &[Arc<Endpoint>], n: usize) -> Vec<usize> {
        (0..n).map(|i| r.pick(e, key(i)).unwrap()).collect()
    }

    #[test]
    fn empty_picks_none() {
        let r = RingHash::new(&[]);
        assert!(r.is_empty());
        assert_eq!(r.pick(&[], key(1)), None);
        assert_eq!(r.pick(&[], PickContext::default()), None);
    }

    #[test]
    fn same_key_same_endpoint() {
        let e = eps(5);
        let r = RingHash::new(&e);
        assert_eq!(r.len(), 5 * 160);
        let first = map_keys(&r, &e, 1000);
        for _ in 0..3 {
            assert_eq!(map_keys(&r, &e, 1000), first);
        }
        // A rebuilt ring (another proxy, or a config update) agrees.
        assert_eq!(map_keys(&RingHash::new(&e), &e, 1000), first);
    }

    #[test]
    fn keys_spread_evenly() {
        let e = eps(4);
        let r = RingHash::new(&e);
        let mut c = [0usize; 4];
        for i in map_keys(&r, &e, 10_000) {
            c[i] += 1;
        }
        for &x in &c {
            let share = x as f64 / 10_000.0;
            assert!((share - 0.25).abs() <= 0.08, "{c:?}");
        }
    }

    #[test]
    fn weights_scale_the_share() {
        let e = eps(2);
        e[0].weight.store(3, Ordering::Relaxed);
        let r = RingHash::new(&e);
        let heavy = map_keys(&r, &e, 10_000).iter().filter(|&&i| i == 0).count();
        assert!((6500..=8500).contains(&heavy), "{heavy}");
    }

    #[test]
    fn adding_an_endpoint_moves_few_keys_and_only_to_it() {
        let four = eps(4);
        let five = eps(5);
        let before = map_keys(&RingHash::new(&four), &four, 10_000);
        let after = map_keys(&RingHash::new(&five), &five, 10_000);
        let mut moved = 0;
        for (b, a) in before.iter().zip(&after) {
            if b != a {
                moved += 1;
                assert_eq!(*a, 4, "a moved key must move to the new endpoint");
            }
        }
        let frac = moved as f64 / 10_000.0;
        assert!(frac <= 0.2 + 0.05, "{frac}");
        assert!(frac > 0.1, "the new endpoint takes its share: {frac}");
    }

    #[test]
    fn unhealthy_endpoint_keys_go_elsewhere_others_stay() {
        let e = eps(4);
        let r = RingHash::new(&e);
        let before = map_keys(&r, &e, 10_000);
        e[2].healthy.store(false, Ordering::Relaxed);
        let after = map_keys(&r, &e, 10_000);
        let mut c = [0usize; 4];
        for (b, a) in before.iter().zip(&after) {
            assert_ne!(*a, 2);
            if *b != 2 {
                assert_eq!(a, b, "keys of healthy endpoints stay");
            } else {
                c[*a] += 1;
            }
        }
        // The orphaned keys are spread over the others, not dumped on one.
        assert!(c.iter().filter(|&&x| x > 0).count() >= 2, "{c:?}");
        // Back to healthy: back to the same mapping.
        e[2].healthy.store(true, Ordering::Relaxed);
        assert_eq!(map_keys(&r, &e, 10_000), before);
    }

    #[test]
    fn panic_mode_keeps_hashing_over_all() {
        let e = eps(4);
        let r = RingHash::new(&e);
        let before = map_keys(&r, &e, 2000);
        for ep in &e[..3] {
            ep.healthy.store(false, Ordering::Relaxed);
        }
        assert_eq!(map_keys(&r, &e, 2000), before);
    }

    #[test]
    fn no_hash_is_round_robin() {
        let e = eps(3);
        e[1].healthy.store(false, Ordering::Relaxed);
        let r = RingHash::new(&e);
        let mut c = [0usize; 3];
        for _ in 0..1000 {
            c[r.pick(&e, PickContext::default()).unwrap()] += 1;
        }
        assert_eq!(c[1], 0);
        assert!((c[0] as i64 - c[2] as i64).abs() <= 334, "{c:?}");
        assert!(c[0] >= 333 && c[2] >= 333, "{c:?}");
    }

    #[test]
    fn large_weights_are_capped() {
        let e = eps(3);
        e[0].weight.store(10_000, Ordering::Relaxed);
        let r = RingHash::new(&e);
        assert!(r.len() as u64 <= MAX_RING + 2 * MIN_VNODES, "{}", r.len());
        let light = map_keys(&r, &e, 5000).iter().filter(|&&i| i != 0).count();
        assert!(light < 200, "{light}");
    }
}
