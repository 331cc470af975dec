//! Live state of one upstream endpoint, shared by the balancer, the proxy and (later) the breaker
//! and health checker. Everything is atomics: the request path takes no lock.
//!
//! An `Endpoint` is keyed by (cluster, address) in the [`EndpointRegistry`], so a config update
//! that keeps an endpoint keeps its in-flight count, latency average and failure history.

use crate::breaker::{Breaker, BreakerConfig, State, Transition};
use crate::limits::ClusterLoad;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Milliseconds on the process's monotonic clock (the breakers' time).
pub fn clock_ms() -> u64 {
    clock_ms_at(Instant::now())
}

/// [`clock_ms`] at `now`, for a caller that has just read the clock.
pub fn clock_ms_at(now: Instant) -> u64 {
    ms(since_start(now))
}

/// `now` as time since the process's first look at this clock.
fn since_start(now: Instant) -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    now.saturating_duration_since(*START.get_or_init(Instant::now))
}

/// Whole milliseconds of `d`. Not `as_millis`: its 128-bit division showed per request.
fn ms(d: Duration) -> u64 {
    d.as_secs() * 1000 + u64::from(d.subsec_millis())
}

/// Breaker transitions counted per endpoint, in this order.
pub const TRANSITIONS: [(State, State); 4] = [
    (State::Closed, State::Open),
    (State::Open, State::HalfOpen),
    (State::HalfOpen, State::Closed),
    (State::HalfOpen, State::Open),
];

/// Decay time of the latency and failure averages.
pub const DECAY: Duration = Duration::from_secs(10);

/// A breaker or health transition of an endpoint, reported to the control plane as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointEvent {
    /// `breaker_transition` or `health_transition`.
    pub kind: &'static str,
    /// Cluster (Envoy name `tenant/name`).
    pub cluster: String,
    /// `ADDR:PORT`.
    pub endpoint: String,
    /// Previous state.
    pub from: &'static str,
    /// New state.
    pub to: &'static str,
}

/// Where endpoint events go (set once by the proxy; tests may leave it unset).
pub type EventSink = tokio::sync::mpsc::UnboundedSender<EndpointEvent>;

/// One upstream endpoint.
#[derive(Debug)]
pub struct Endpoint {
    /// Cluster it belongs to (Envoy name), for events.
    pub cluster: String,
    /// Where transitions are reported.
    pub events: OnceLock<EventSink>,
    /// `host:port`.
    pub address: String,
    /// Relative weight (≥ 1).
    pub weight: AtomicU32,
    /// Requests sent and not yet finished.
    pub in_flight: AtomicU32,
    /// Health as the control plane or the health checker says.
    pub healthy: AtomicBool,
    /// Idle keep-alive connections to it.
    pub pool: crate::proxy::upstream::ConnPool,
    /// Circuit breaker (replaced when the cluster's breaker settings change).
    pub breaker: arc_swap::ArcSwap<Breaker>,
    /// Breaker transitions so far, as [`TRANSITIONS`].
    pub transitions: [AtomicU64; 4],
    /// Peak-EWMA latency, nanoseconds (f64 bits).
    ewma_ns: AtomicU64,
    /// Exponentially decayed failure rate (f64 bits, 0..=1).
    failure_rate: AtomicU64,
    /// When the averages were last updated (ns since the process's clock start, `since_start`).
    updated_ns: AtomicU64,
}

impl Endpoint {
    /// A fresh endpoint: healthy, no history.
    pub fn new(address: impl Into<String>, weight: u32) -> Endpoint {
        let address = address.into();
        Endpoint {
            pool: crate::proxy::upstream::ConnPool::new(&address),
            cluster: String::new(),
            events: OnceLock::new(),
            breaker: arc_swap::ArcSwap::from_pointee(Breaker::new(BreakerConfig::default())),
            transitions: Default::default(),
            address,
            weight: AtomicU32::new(weight.max(1)),
            in_flight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            ewma_ns: AtomicU64::new(0f64.to_bits()),
            failure_rate: AtomicU64::new(0f64.to_bits()),
            updated_ns: AtomicU64::new(0),
        }
    }

    /// Current weight.
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Whether it may receive traffic.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Peak-EWMA latency in nanoseconds (0 before the first response).
    pub fn ewma_ns(&self) -> f64 {
        f64::from_bits(self.ewma_ns.load(Ordering::Relaxed))
    }

    /// Decayed failure rate, 0..=1.
    pub fn failure_rate(&self) -> f64 {
        f64::from_bits(self.failure_rate.load(Ordering::Relaxed))
    }

    /// Marks a request as started; the guard ends it (and must be given the outcome).
    pub fn start(self: &Arc<Self>) -> InFlight {
        self.start_at(Instant::now(), false)
    }

    /// Like [`start`](Self::start), started at `now` (a clock the caller has just read);
    /// `probe` when the breaker admitted it as a half-open probe.
    pub fn start_at(self: &Arc<Self>, now: Instant, probe: bool) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            ep: self.clone(),
            started: now,
            done: false,
            probe,
        }
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> State {
        self.breaker.load().state(clock_ms())
    }

    /// Counts (and logs) a breaker transition.
    pub fn note(&self, t: Option<Transition>) {
        let Some(t) = t else { return };
        if let Some(i) = TRANSITIONS.iter().position(|p| *p == (t.from, t.to)) {
            self.transitions[i].fetch_add(1, Ordering::Relaxed);
        }
        tracing::info!(endpoint = %self.address, from = t.from.as_str(), to = t.to.as_str(), "circuit breaker");
        self.report("breaker_transition", t.from.as_str(), t.to.as_str());
    }

    /// Sends an event about this endpoint to the control plane (if the proxy reports).
    pub fn report(&self, kind: &'static str, from: &'static str, to: &'static str) {
        if let Some(tx) = self.events.get() {
            let _ = tx.send(EndpointEvent {
                kind,
                cluster: self.cluster.clone(),
                endpoint: self.address.clone(),
                from,
                to,
            });
        }
    }

    /// Ends a request that took `latency`, at `now` (one clock read serves all three clocks).
    fn settle(&self, now: Instant, latency: Duration, success: bool, probe: bool) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        // One clock difference for both.
        let since = since_start(now);
        self.observe_at(since, latency, success);
        self.note(self.breaker.load().record(ms(since), success, probe));
    }

    /// Records a finished request at `now` (since the clock's start): latency feeds the
    /// peak-EWMA (a slower sample replaces the average at once, a faster one decays it), success
    /// feeds the failure rate.
    pub fn observe_at(&self, now: Duration, latency: Duration, success: bool) {
        let now_ns = now.as_nanos() as u64;
        let prev = self.updated_ns.swap(now_ns, Ordering::Relaxed);
        let elapsed = now_ns.saturating_sub(prev) as f64;
        let w = (-elapsed / DECAY.as_nanos() as f64).exp();
        let sample = latency.as_nanos() as f64;
        let old = self.ewma_ns();
        let ewma = if old == 0.0 || sample > old {
            sample
        } else {
            old * w + sample * (1.0 - w)
        };
        self.ewma_ns.store(ewma.to_bits(), Ordering::Relaxed);
        // Failures decay by time, at least 5 % per sample so a burst is remembered but fades.
        let w = w.min(0.95);
        let f = self.failure_rate() * w + if success { 0.0 } else { 1.0 - w };
        self.failure_rate.store(f.to_bits(), Ordering::Relaxed);
    }
}

/// A request in flight to an endpoint. Dropping it without [`finish`](Self::finish) (the client
/// went away mid-request, so the future was dropped) gives no verdict, as
/// [`abandon`](Self::abandon): a downstream disconnect is not the endpoint's failure (Envoy's
/// outlier detection does not count it either).
#[derive(Debug)]
pub struct InFlight {
    ep: Arc<Endpoint>,
    started: Instant,
    done: bool,
    probe: bool,
}

impl InFlight {
    /// Ends the request without a verdict: it was refused by a cluster limit or failed in a way
    /// the cluster does not count (`circuitBreaker.failOn`).
    pub fn abandon(self) {
        // Dropping without a verdict is what abandoning means.
        drop(self);
    }

    /// Ends a try that got no answer (connect failure, reset, timeout): a failure when the
    /// cluster counts that kind (`counted`), no verdict otherwise.
    pub fn fail(self, counted: bool) {
        if counted {
            self.finish(false);
        } else {
            self.abandon();
        }
    }

    /// Ends the request with its outcome.
    pub fn finish(mut self, success: bool) -> Duration {
        self.done = true;
        let now = Instant::now();
        let latency = now.saturating_duration_since(self.started);
        self.ep.settle(now, latency, success, self.probe);
        latency
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.ep.in_flight.fetch_sub(1, Ordering::Relaxed);
            if self.probe {
                self.ep.breaker.load().release();
            }
        }
    }
}

/// Endpoints by (cluster, address), so state survives config updates.
#[derive(Debug, Default)]
pub struct EndpointRegistry {
    map: Mutex<HashMap<(String, String), Arc<Endpoint>>>,
    /// Given to every endpoint created from now on.
    pub events: OnceLock<EventSink>,
    /// How many workers share the endpoints' connection pools (1 until set).
    pub workers: OnceLock<usize>,
}

impl EndpointRegistry {
    /// The endpoint for (cluster, address), created if new; its weight is updated, a changed
    /// breaker setting gives it a fresh (closed) breaker, and a new endpoint's connections count
    /// against the cluster's live counts `load`. Changed TLS settings (`tls`) make it a new
    /// endpoint: no connection made under the old ones is reused. Called when config is
    /// compiled, never on the request path.
    pub fn get_with(
        &self,
        cluster: &str,
        address: &str,
        weight: u32,
        breaker: &BreakerConfig,
        load: &Arc<ClusterLoad>,
        tls: Option<&Arc<crate::tls::UpstreamTls>>,
    ) -> Arc<Endpoint> {
        let ep = self.get_plain(cluster, address, weight, load, tls);
        if ep.breaker.load().config() != breaker {
            ep.breaker.store(Arc::new(Breaker::new(breaker.clone())));
        }
        ep
    }

    fn get_plain(
        &self,
        cluster: &str,
        address: &str,
        weight: u32,
        load: &Arc<ClusterLoad>,
        tls: Option<&Arc<crate::tls::UpstreamTls>>,
    ) -> Arc<Endpoint> {
        let mut map = match self.map.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let tls_id = tls.map_or(0, |t| t.id);
        let key = (cluster.to_owned(), address.to_owned());
        let ep = match map.get(&key) {
            Some(ep) if ep.pool.tls_id() == tls_id => ep.clone(),
            old => {
                // What the old one made under other settings is not reused (its requests in
                // flight finish on theirs).
                if let Some(old) = old {
                    old.pool.close_idle();
                }
                let mut ep = Endpoint::new(address, weight);
                ep.cluster = cluster.to_owned();
                let workers = self.workers.get().copied().unwrap_or(1);
                ep.pool =
                    crate::proxy::upstream::ConnPool::in_cluster(address, load.clone(), workers)
                        .with_tls(tls.cloned());
                if let Some(tx) = self.events.get() {
                    let _ = ep.events.set(tx.clone());
                }
                let ep = Arc::new(ep);
                map.insert(key, ep.clone());
                ep
            }
        };
        ep.weight.store(weight.max(1), Ordering::Relaxed);
        ep
    }

    /// Forgets endpoints no cluster uses any more.
    pub fn retain(&self, live: &std::collections::HashSet<(String, String)>) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|k, _| live.contains(k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_ewma_jumps_up_and_decays_down() {
        let ep = Endpoint::new("a:1", 1);
        ep.observe_at(Duration::from_secs(1), Duration::from_millis(10), true);
        assert_eq!(ep.ewma_ns(), 10e6);
        ep.observe_at(Duration::from_secs(1), Duration::from_millis(100), true);
        assert_eq!(ep.ewma_ns(), 100e6, "a slower sample is taken at once");
        ep.observe_at(Duration::from_secs(31), Duration::from_millis(10), true);
        assert!(
            ep.ewma_ns() < 20e6,
            "decays towards fast samples: {}",
            ep.ewma_ns()
        );
    }

    #[test]
    fn failure_rate_rises_and_fades() {
        let ep = Endpoint::new("a:1", 1);
        for i in 0..20 {
            ep.observe_at(
                Duration::from_millis(i * 10),
                Duration::from_millis(1),
                false,
            );
        }
        assert!(ep.failure_rate() > 0.6, "{}", ep.failure_rate());
        ep.observe_at(Duration::from_secs(60), Duration::from_millis(1), true);
        assert!(ep.failure_rate() < 0.05, "{}", ep.failure_rate());
    }

    #[test]
    fn in_flight_guard_counts() {
        let ep = Arc::new(Endpoint::new("a:1", 1));
        let g = ep.start();
        assert_eq!(ep.in_flight(), 1);
        g.finish(true);
        assert_eq!(ep.in_flight(), 0);
        for _ in 0..10 {
            drop(ep.start());
        }
        assert_eq!(ep.in_flight(), 0);
        assert_eq!(
            ep.failure_rate(),
            0.0,
            "a request dropped mid-flight (client gone) is no failure"
        );
        assert_eq!(ep.breaker_state(), State::Closed);
    }

    #[test]
    fn registry_keeps_state_across_updates() {
        let r = EndpointRegistry::default();
        let (cfg, load) = (BreakerConfig::default(), Arc::default());
        let a = r.get_with("c", "a:1", 1, &cfg, &load, None);
        let _g = a.start();
        let again = r.get_with("c", "a:1", 5, &cfg, &load, None);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(again.in_flight(), 1);
        assert_eq!(again.weight(), 5);
    }
}
