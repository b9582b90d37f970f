//! Exponential backoff with jitter, for whatever retries a remote end (a
//! broker to reconnect to, a webhook receiver): waits double from a floor
//! to a ceiling, each drawn from the upper half of its range so that many
//! clients do not retry in step.

use crate::rng::Rng;
use std::time::Duration;

#[derive(Debug)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    /// Consecutive failures.
    failures: u32,
    /// Seeded from the clock and the process, so clients differ.
    rng: Rng,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let seed = crate::event::time::now_ms() as u64 ^ u64::from(std::process::id());
        Backoff {
            min_ms: (min.as_millis() as u64).max(1),
            max_ms: max.as_millis() as u64,
            failures: 0,
            rng: Rng::new(seed),
        }
    }

    /// Counts a failure; how long to wait before the next attempt.
    pub fn failed(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let shift = (self.failures - 1).min(32);
        let ceiling = self.min_ms.saturating_mul(2 << shift).min(self.max_ms) as f64;
        Duration::from_millis(self.rng.range(ceiling / 2.0, ceiling) as u64)
    }

    /// A success: the next failure waits the least again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_jitter_up_to_the_ceiling_and_start_again_after_a_success() {
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(100), ms(30_000));
        let first = backoff.failed();
        assert!(first >= ms(100) && first < ms(200), "{first:?}");
        let second = backoff.failed();
        assert!(second >= ms(200) && second < ms(400), "{second:?}");
        for _ in 0..40 {
            backoff.failed();
        }
        let late = backoff.failed();
        assert!(late >= ms(15_000) && late <= ms(30_000), "{late:?}");
        backoff.reset();
        assert!(backoff.failed() < ms(200));
    }
}
