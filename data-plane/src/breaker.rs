//! Per-endpoint circuit breaker: CLOSED → OPEN → HALF_OPEN → CLOSED, with the origin's semantics
//! and defaults (5 consecutive failures, or a failure rate ≥ 50 % over a sliding window once it
//! has 20 requests; open for 30 s; then up to 3 probes at a time, closing after 3 successes and
//! reopening on any failure).
//!
//! Lock-free: the state, the consecutive-failure count and the half-open probe counters live in
//! one atomic word changed by compare-and-swap; the failure-rate window is a ring of per-second
//! atomic buckets. Time is passed in (ms since an epoch), so the state machine is tested step by
//! step with a hand-moved clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Breaker settings (a cluster's `circuitBreaker`).
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerConfig {
    /// Failure fraction over the window that opens the breaker.
    pub failure_rate_threshold: f64,
    /// Consecutive failures that open the breaker.
    pub consecutive_failures: u32,
    /// Probe successes that close it; also the most probes in flight at once.
    pub half_open_successes: u32,
    /// How long it stays open.
    pub open_timeout: Duration,
    /// Requests in the window before the failure rate counts.
    pub minimum_requests: u32,
    /// Width of the failure-rate window.
    pub window: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_rate_threshold: 0.5,
            consecutive_failures: 5,
            half_open_successes: 3,
            open_timeout: Duration::from_secs(30),
            minimum_requests: 20,
            window: Duration::from_secs(10),
        }
    }
}

impl From<&gw_proto::model::CircuitBreaker> for BreakerConfig {
    fn from(c: &gw_proto::model::CircuitBreaker) -> Self {
        BreakerConfig {
            failure_rate_threshold: c.failure_rate_threshold,
            consecutive_failures: c.consecutive_failures.max(1),
            half_open_successes: c.half_open_successes.max(1),
            open_timeout: c.open_timeout,
            minimum_requests: c.minimum_requests,
            ..BreakerConfig::default()
        }
    }
}

/// The three states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Traffic flows.
    Closed,
    /// No traffic until the open timeout passes.
    Open,
    /// A few probes test the endpoint.
    HalfOpen,
}

impl State {
    /// Metric value: 0 closed, 1 open, 2 half-open.
    pub fn code(self) -> u8 {
        match self {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        }
    }

    /// `closed`, `open`, `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::Open => "open",
            State::HalfOpen => "half_open",
        }
    }
}

/// A state change, for metrics and events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
}

/// What a request may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go ahead.
    Yes,
    /// Go ahead as a half-open probe (report its result with `probe = true`).
    Probe,
    /// Refused: the breaker is open or its probes are all out.
    No,
}

// State word layout: [0..2) state, [2..18) consecutive failures, [18..34) probes in flight,
// [34..50) probe successes.
const S_BITS: u64 = 0b11;
const F_SHIFT: u32 = 2;
const P_SHIFT: u32 = 18;
const OK_SHIFT: u32 = 34;
const FIELD: u64 = 0xffff;

fn state_of(w: u64) -> State {
    match w & S_BITS {
        1 => State::Open,
        2 => State::HalfOpen,
        _ => State::Closed,
    }
}

fn field(w: u64, shift: u32) -> u32 {
    ((w >> shift) & FIELD) as u32
}

fn pack(s: State, failures: u32, probes: u32, oks: u32) -> u64 {
    u64::from(s.code())
        | (u64::from(failures.min(0xffff)) << F_SHIFT)
        | (u64::from(probes.min(0xffff)) << P_SHIFT)
        | (u64::from(oks.min(0xffff)) << OK_SHIFT)
}

const SLOTS: usize = 16;

/// One endpoint's breaker.
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    word: AtomicU64,
    opened_at_ms: AtomicU64,
    // Per-second buckets: (second index, successes << 32 | failures).
    slots: [(AtomicU64, AtomicU64); SLOTS],
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Breaker {
        Breaker {
            cfg,
            word: AtomicU64::new(pack(State::Closed, 0, 0, 0)),
            opened_at_ms: AtomicU64::new(0),
            slots: std::array::from_fn(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0))),
        }
    }

    /// Its settings.
    pub fn config(&self) -> &BreakerConfig {
        &self.cfg
    }

    /// Current state as of `now_ms` (an open breaker past its timeout reads as half-open).
    pub fn state(&self, now_ms: u64) -> State {
        let s = state_of(self.word.load(Ordering::Acquire));
        if s == State::Open && self.open_elapsed(now_ms) {
            State::HalfOpen
        } else {
            s
        }
    }

    fn open_elapsed(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.opened_at_ms.load(Ordering::Acquire))
            >= self.cfg.open_timeout.as_millis() as u64
    }

    /// May a request go now? Moves OPEN → HALF_OPEN once the timeout passed; in HALF_OPEN admits
    /// at most `half_open_successes` probes at a time (no stampede).
    pub fn admit(&self, now_ms: u64) -> (Admit, Option<Transition>) {
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let (next, admit, tr) = match state_of(cur) {
                State::Closed => return (Admit::Yes, None),
                State::Open if !self.open_elapsed(now_ms) => return (Admit::No, None),
                State::Open => (
                    pack(State::HalfOpen, 0, 1, 0),
                    Admit::Probe,
                    Some(Transition {
                        from: State::Open,
                        to: State::HalfOpen,
                    }),
                ),
                State::HalfOpen => {
                    let probes = field(cur, P_SHIFT);
                    if probes + field(cur, OK_SHIFT) >= self.cfg.half_open_successes {
                        return (Admit::No, None);
                    }
                    (
                        pack(State::HalfOpen, 0, probes + 1, field(cur, OK_SHIFT)),
                        Admit::Probe,
                        None,
                    )
                }
            };
            match self
                .word
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return (admit, tr),
                Err(actual) => cur = actual,
            }
        }
    }

    fn window_counts(&self, now_ms: u64) -> (u64, u64) {
        let sec = now_ms / 1000;
        let span = self.cfg.window.as_secs().clamp(1, SLOTS as u64);
        let (mut ok, mut bad) = (0, 0);
        for (epoch, counts) in &self.slots {
            let e = epoch.load(Ordering::Acquire);
            if e != u64::MAX && e + span > sec && e <= sec {
                let c = counts.load(Ordering::Relaxed);
                ok += c >> 32;
                bad += c & 0xffff_ffff;
            }
        }
        (ok, bad)
    }

    fn count(&self, now_ms: u64, success: bool) {
        let sec = now_ms / 1000;
        let (epoch, counts) = &self.slots[(sec % SLOTS as u64) as usize];
        let e = epoch.load(Ordering::Acquire);
        if e != sec
            && epoch
                .compare_exchange(e, sec, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            counts.store(0, Ordering::Release);
        }
        counts.fetch_add(if success { 1 << 32 } else { 1 }, Ordering::AcqRel);
    }

    /// Reports a request's outcome; `probe` when [`admit`](Self::admit) said [`Admit::Probe`].
    pub fn record(&self, now_ms: u64, success: bool, probe: bool) -> Option<Transition> {
        if !probe {
            self.count(now_ms, success);
        }
        let mut cur = self.word.load(Ordering::Acquire);
        loop {
            let (next, tr) = match (state_of(cur), probe) {
                (State::Closed, _) if success => (pack(State::Closed, 0, 0, 0), None),
                (State::Closed, _) => {
                    let failures = field(cur, F_SHIFT) + 1;
                    let (ok, bad) = self.window_counts(now_ms);
                    let total = ok + bad;
                    let rate_trips = total >= u64::from(self.cfg.minimum_requests.max(1))
                        && bad as f64 / total as f64 >= self.cfg.failure_rate_threshold;
                    if failures >= self.cfg.consecutive_failures || rate_trips {
                        (
                            pack(State::Open, 0, 0, 0),
                            Some(Transition {
                                from: State::Closed,
                                to: State::Open,
                            }),
                        )
                    } else {
                        (pack(State::Closed, failures, 0, 0), None)
                    }
                }
                (State::HalfOpen, true) if success => {
                    let oks = field(cur, OK_SHIFT) + 1;
                    let probes = field(cur, P_SHIFT).saturating_sub(1);
                    if oks >= self.cfg.half_open_successes {
                        (
                            pack(State::Closed, 0, 0, 0),
                            Some(Transition {
                                from: State::HalfOpen,
                                to: State::Closed,
                            }),
                        )
                    } else {
                        (pack(State::HalfOpen, 0, probes, oks), None)
                    }
                }
                (State::HalfOpen, true) => (
                    pack(State::Open, 0, 0, 0),
                    Some(Transition {
                        from: State::HalfOpen,
                        to: State::Open,
                    }),
                ),
                // A late result of a request admitted before the state changed: ignored.
                _ => return None,
            };
            match self
                .word
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    if tr.is_some_and(|t| t.to == State::Open) {
                        self.opened_at_ms.store(now_ms, Ordering::Release);
                        for (epoch, _) in &self.slots {
                            epoch.store(u64::MAX, Ordering::Release);
                        }
                    }
                    return tr;
                }
                Err(actual) => cur = actual,
            }
        }
    }

    /// Gives back a half-open probe slot whose request ended without a verdict (refused by a
    /// cluster limit, or failed in a way the cluster does not count).
    pub fn release(&self) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cur| {
                let probes = field(cur, P_SHIFT);
                (state_of(cur) == State::HalfOpen && probes > 0).then(|| {
                    pack(
                        State::HalfOpen,
                        field(cur, F_SHIFT),
                        probes - 1,
                        field(cur, OK_SHIFT),
                    )
                })
            });
    }
}

/// What a cluster counts as an endpoint failure (`circuitBreaker.failOn`). An answer whose
/// status is not counted is a success; a connect failure, reset or timeout that is not counted
/// is no verdict at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailOn {
    /// Any 5xx answer.
    pub any_5xx: bool,
    /// A 502, 503 or 504 answer.
    pub gateway_error: bool,
    /// A failed connect.
    pub connect_failure: bool,
    /// A connection reset before the answer.
    pub reset: bool,
    /// A (per-try) timeout.
    pub timeout: bool,
}

impl Default for FailOn {
    fn default() -> Self {
        FailOn::from(&gw_proto::model::CircuitBreaker::default())
    }
}

impl From<&gw_proto::model::CircuitBreaker> for FailOn {
    fn from(c: &gw_proto::model::CircuitBreaker) -> Self {
        FailOn {
            any_5xx: c.fails_on("5xx"),
            gateway_error: c.fails_on("gateway-error"),
            connect_failure: c.fails_on("connect-failure"),
            reset: c.fails_on("reset"),
            timeout: c.fails_on("timeout"),
        }
    }
}

impl FailOn {
    /// Whether an answer with `status` counts as a failure.
    pub fn status(&self, status: u16) -> bool {
        (self.any_5xx && (500..600).contains(&status))
            || (self.gateway_error && (502..=504).contains(&status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Breaker {
        Breaker::new(BreakerConfig::default())
    }

    #[test]
    fn failure_kinds_follow_fail_on() {
        let d = FailOn::default();
        assert!(d.status(500) && d.status(503) && !d.status(404) && !d.status(200));
        assert!(d.connect_failure && d.reset && d.timeout);
        let g = FailOn::from(&gw_proto::model::CircuitBreaker {
            fail_on: vec!["gateway-error".to_owned()],
            ..Default::default()
        });
        assert!(g.status(502) && g.status(504) && !g.status(500) && !g.status(429));
        assert!(!g.connect_failure && !g.reset && !g.timeout);
    }

    #[test]
    fn a_released_probe_frees_its_slot_without_a_verdict() {
        let cfg = BreakerConfig {
            half_open_successes: 1,
            ..BreakerConfig::default()
        };
        let br = Breaker::new(cfg);
        for i in 0..5 {
            br.record(i, false, false);
        }
        let after = 31_000;
        assert_eq!(br.admit(after).0, Admit::Probe);
        assert_eq!(br.admit(after).0, Admit::No, "its one probe is out");
        br.release();
        assert_eq!(br.state(after), State::HalfOpen, "no verdict");
        assert_eq!(br.admit(after).0, Admit::Probe, "the slot is free again");
    }

    #[test]
    fn opens_after_consecutive_failures() {
        let br = b();
        for i in 0..4 {
            assert_eq!(br.record(1000 + i, false, false), None);
        }
        assert_eq!(br.state(1004), State::Closed);
        assert_eq!(
            br.record(1005, false, false),
            Some(Transition {
                from: State::Closed,
                to: State::Open
            })
        );
        assert_eq!(br.admit(2000).0, Admit::No);
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let br = b();
        for i in 0..4 {
            br.record(i, false, false);
        }
        br.record(10, true, false);
        for i in 0..4 {
            assert_eq!(br.record(20 + i, false, false), None);
        }
        assert_eq!(br.state(30), State::Closed);
    }

    #[test]
    fn opens_on_failure_rate_with_minimum_volume() {
        let br = Breaker::new(BreakerConfig {
            consecutive_failures: 100,
            ..BreakerConfig::default()
        });
        // Alternate: never 5 in a row, but 50 % failures.
        let mut opened = None;
        for i in 0..40u64 {
            if let Some(t) = br.record(1000 + i * 10, i % 2 == 0, false) {
                opened = Some((i, t));
                break;
            }
        }
        let (i, t) = opened.expect("opened by rate");
        assert_eq!(t.to, State::Open);
        assert!(
            i >= 19,
            "not before the minimum of 20 requests (opened at {i})"
        );
    }

    #[test]
    fn a_low_failure_rate_does_not_open() {
        let br = Breaker::new(BreakerConfig {
            consecutive_failures: 100,
            ..BreakerConfig::default()
        });
        for i in 0..200u64 {
            assert_eq!(
                br.record(1000 + i * 10, i % 4 != 0, false),
                None,
                "25 % failures at {i}"
            );
        }
    }

    #[test]
    fn half_open_admits_a_few_probes_then_closes() {
        let br = b();
        for i in 0..5 {
            br.record(i, false, false);
        }
        let t0 = 4; // the fifth failure, at 4 ms, opened it
        assert_eq!(br.admit(t0 + 29_999).0, Admit::No, "still open before 30 s");
        let (a, tr) = br.admit(t0 + 30_000);
        assert_eq!(a, Admit::Probe);
        assert_eq!(
            tr,
            Some(Transition {
                from: State::Open,
                to: State::HalfOpen
            })
        );
        assert_eq!(br.admit(t0 + 30_001).0, Admit::Probe);
        assert_eq!(br.admit(t0 + 30_002).0, Admit::Probe);
        assert_eq!(
            br.admit(t0 + 30_003).0,
            Admit::No,
            "at most 3 probes at a time"
        );
        assert_eq!(br.record(t0 + 30_010, true, true), None);
        assert_eq!(br.record(t0 + 30_011, true, true), None);
        assert_eq!(
            br.record(t0 + 30_012, true, true),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Closed
            })
        );
        assert_eq!(br.admit(t0 + 30_013).0, Admit::Yes);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let br = b();
        for i in 0..5 {
            br.record(i, false, false);
        }
        assert_eq!(br.admit(40_000).0, Admit::Probe);
        assert_eq!(br.record(40_001, true, true), None);
        assert_eq!(br.admit(40_002).0, Admit::Probe);
        assert_eq!(
            br.record(40_003, false, true),
            Some(Transition {
                from: State::HalfOpen,
                to: State::Open
            })
        );
        assert_eq!(br.admit(40_004).0, Admit::No);
        assert_eq!(
            br.state(70_002),
            State::Open,
            "open again for a full timeout from the reopen"
        );
        assert_eq!(br.state(70_003), State::HalfOpen);
    }

    #[test]
    fn late_results_from_before_the_trip_are_ignored() {
        let br = b();
        for i in 0..5 {
            br.record(i, false, false);
        }
        assert_eq!(br.record(10, true, false), None);
        assert_eq!(br.state(10), State::Open);
    }

    #[test]
    fn concurrent_probes_never_exceed_the_limit() {
        let br = std::sync::Arc::new(b());
        for i in 0..5 {
            br.record(i, false, false);
        }
        let admitted: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| {
                    let br = br.clone();
                    s.spawn(move || {
                        (0..100)
                            .filter(|_| br.admit(31_000).0 == Admit::Probe)
                            .count()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        assert_eq!(admitted, 3);
    }
}
