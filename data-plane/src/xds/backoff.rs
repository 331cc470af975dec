//! Reconnect backoff: exponential with jitter, reset by a stream that got somewhere.

use std::time::Duration;

/// First wait.
pub const BASE: Duration = Duration::from_millis(100);
/// Longest wait.
pub const CAP: Duration = Duration::from_secs(10);

/// Exponential backoff with jitter: the n-th wait is uniform in `[½, 1] × min(CAP, BASE·2ⁿ)`,
/// so a fleet that lost its control plane does not reconnect in lockstep.
#[derive(Debug, Default, Clone)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait before the next attempt; `unit` is a random number in `[0, 1)`.
    pub fn next(&mut self, unit: f64) -> Duration {
        let ceiling = BASE.saturating_mul(1 << self.failures.min(10)).min(CAP);
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(0.5 + unit.clamp(0.0, 1.0) * 0.5)
    }

    /// Back to the shortest wait (after a stream that delivered config).
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_jitter_and_resets() {
        let mut b = Backoff::default();
        assert_eq!(b.next(1.0), BASE);
        assert_eq!(b.next(0.0), BASE); // ½ × 200 ms
        assert_eq!(b.next(1.0), BASE * 4);
        for _ in 0..20 {
            assert!(b.next(1.0) <= CAP);
        }
        assert_eq!(b.next(0.0), CAP / 2);
        b.reset();
        assert_eq!(b.next(1.0), BASE);
    }
}
