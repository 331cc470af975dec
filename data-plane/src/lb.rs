//! Load balancing, kept apart from discovery and health (pingora style): a [`Balancer`] is built
//! from a cluster's endpoints whenever they change, and picks one per request. Pure and
//! benchmarkable; the request path takes no lock.
//!
//! | gw strategy | here |
//! |---|---|
//! | `round_robin`, `weighted` | [`round_robin`]: smooth weighted round robin (precomputed schedule, atomic cursor) |
//! | `least_conn` | [`p2c`]: power of two choices on in-flight requests |
//! | `ip_hash` | [`ring_hash`]: consistent hash ring; ≤ 1/N of keys move when an endpoint is added |
//! | `response_time` | [`p2c`] with peak-EWMA latency × (in-flight + 1) |
//! | `availability` | [`availability`]: lowest decayed failure rate, ties by in-flight |
//!
//! Unhealthy endpoints and endpoints whose breaker is open are skipped; when fewer than half are healthy (Envoy's panic threshold)
//! every endpoint is used, so a health-check outage never blackholes a cluster.

pub mod availability;
pub mod p2c;
pub mod ring_hash;
pub mod round_robin;

pub use p2c::fast_rand;

use crate::endpoint::Endpoint;
use gw_proto::model::LbPolicy;
use std::sync::Arc;

/// What a pick may use besides the endpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// Hash of the request's key (`ip_hash`); `None` picks as round robin.
    pub hash: Option<u64>,
}

/// Picks an endpoint for a request.
pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Index into the endpoints the balancer was built with; `None` when there are none.
    fn pick(&self, endpoints: &[Arc<Endpoint>], ctx: PickContext) -> Option<usize>;
}

/// Envoy's default panic threshold: below this healthy fraction, balance over all endpoints.
pub const PANIC_THRESHOLD: f64 = 0.5;

/// Whether `ep` may be picked, given whether the cluster is in panic mode.
pub fn usable(ep: &Endpoint, panic: bool) -> bool {
    (panic || ep.is_healthy()) && ep.breaker_state() != crate::breaker::State::Open
}

/// Whether fewer than [`PANIC_THRESHOLD`] of the endpoints are healthy.
pub fn in_panic(endpoints: &[Arc<Endpoint>]) -> bool {
    if endpoints.is_empty() {
        return false;
    }
    let healthy = endpoints.iter().filter(|e| e.is_healthy()).count();
    (healthy as f64) < PANIC_THRESHOLD * endpoints.len() as f64
}

/// Builds the balancer for `policy` over `endpoints`.
pub fn build(policy: LbPolicy, endpoints: &[Arc<Endpoint>]) -> Box<dyn Balancer> {
    match policy {
        LbPolicy::RoundRobin | LbPolicy::Weighted => {
            Box::new(round_robin::RoundRobin::new(endpoints))
        }
        LbPolicy::LeastConn => Box::new(p2c::P2c::least_requests()),
        LbPolicy::ResponseTime => Box::new(p2c::P2c::peak_ewma()),
        LbPolicy::IpHash => Box::new(ring_hash::RingHash::new(endpoints)),
        LbPolicy::Availability => Box::new(availability::Availability::new()),
    }
}

/// A fast 64-bit hash (FNV-1a) for hash keys; stable across processes, so every proxy maps a
/// key to the same endpoint.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Finalize (splitmix64) so nearby keys spread over the ring.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}
