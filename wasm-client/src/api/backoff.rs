//! Exponential backoff with full jitter ("AWS full jitter"): the wait before attempt `n` is a uniform
//! random value in `[0, min(cap, base * 2^n))`. Full jitter spreads many tabs/devices that lost the
//! bridge at the same moment, so they do not reconnect in lockstep.

/// Backoff state for one uploader.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: f64,
    cap_ms: f64,
    attempt: u32,
}

impl Backoff {
    /// `base_ms`: ceiling of the first wait; `cap_ms`: ceiling of every wait.
    pub fn new(base_ms: f64, cap_ms: f64) -> Self {
        Self {
            base_ms,
            cap_ms,
            attempt: 0,
        }
    }

    /// Next wait in ms, given a uniform random number in `[0, 1)`, and at least `floor_ms` (the
    /// bridge's `retry after`, which the client must honour).
    pub fn next_delay(&mut self, random: f64, floor_ms: f64) -> f64 {
        let ceiling = (self.base_ms * 2f64.powi(self.attempt.min(30) as i32)).min(self.cap_ms);
        self.attempt = self.attempt.saturating_add(1);
        (ceiling * random.clamp(0.0, 1.0)).max(floor_ms)
    }

    /// Forget past failures after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Failures since the last success.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_resets() {
        let mut b = Backoff::new(100.0, 1000.0);
        let upper: Vec<f64> = (0..6).map(|_| b.next_delay(0.999_999, 0.0)).collect();
        assert!(upper[0] < 100.0 && upper[0] > 99.0);
        assert!(upper[1] < 200.0 && upper[1] > 199.0);
        assert!(upper[3] < 800.0 && upper[3] > 799.0);
        assert!(upper[4] <= 1000.0 && upper[5] <= 1000.0 && upper[5] > 999.0);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert!(b.next_delay(0.999_999, 0.0) < 100.0);
    }

    #[test]
    fn jitter_and_floor() {
        let mut b = Backoff::new(100.0, 1000.0);
        assert_eq!(b.next_delay(0.0, 0.0), 0.0);
        assert_eq!(b.next_delay(0.0, 1000.0), 1000.0);
        // Many attempts never overflow or exceed the cap.
        for _ in 0..100 {
            assert!(b.next_delay(0.5, 0.0) <= 500.0);
        }
    }
}
