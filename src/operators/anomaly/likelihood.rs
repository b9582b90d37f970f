//! Anomaly likelihood: a raw score turned into how unusual it is for this
//! key's own recent scores, in [0, 1].
//!
//! Numenta's anomaly likelihood (Ahmad, Lavin, Purdy, Agha 2017,
//! "Unsupervised real-time anomaly detection for streaming data") is the
//! model: average the last few raw scores, keep the distribution of that
//! average over a long window, and report the probability that an average
//! so high is *not* in the tail: likelihood = Φ((recent − mean) / sd). A
//! signal whose scores are always a little noisy and one whose scores are
//! always near zero then share one threshold (0.99999, "one in a hundred
//! thousand"), which a raw score cannot offer; and the distribution of the
//! average, not of single scores, is right for methods whose scores
//! follow each other (an EWMA, a CUSUM). Here the distribution is
//! exponentially weighted by count, so it costs four numbers per key.

use serde::{Deserialize, Serialize};

/// Readings the long-run distribution remembers (Numenta keeps a window
/// of a few thousand).
const LONG: u32 = 2_000;
/// Weight of a reading in the recent average (Numenta averages about 10).
const RECENT: f64 = 0.1;
/// Scores seen before the likelihood says anything but 0.5.
pub const PROBATION: u32 = 100;
/// The least spread of scores the distribution is allowed: a signal the
/// normal predicts perfectly scores 0 every time, and its first wiggle
/// must not be one in a billion.
const MIN_SD: f64 = 0.05;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Likelihood {
    n: u32,
    mean: f64,
    var: f64,
    recent: f64,
}

impl Likelihood {
    /// Takes the next raw score's magnitude; returns the likelihood that
    /// the recent scores are unusually high.
    pub fn update(&mut self, magnitude: f64) -> f64 {
        self.n = self.n.saturating_add(1);
        self.recent = match self.n {
            1 => magnitude,
            _ => self.recent + RECENT * (magnitude - self.recent),
        };
        // Judged against the averages before it, then added to them.
        let z = (self.recent - self.mean) / self.var.sqrt().max(MIN_SD);
        let w = 1.0 / f64::from(self.n.min(LONG));
        let d = self.recent - self.mean;
        self.mean += w * d;
        self.var = (1.0 - w) * (self.var + w * d * d);
        match self.n < PROBATION {
            true => 0.5,
            false => normal_cdf(z),
        }
    }
}

impl Likelihood {
    /// The scores are back to what they usually are (the normal adopted a
    /// change that made them high): the recent average starts again from
    /// its long-run mean.
    pub fn settle(&mut self) {
        self.recent = self.mean;
    }
}

/// Φ(z), the standard normal distribution function.
fn normal_cdf(z: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_function_has_its_textbook_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-12);
        assert!((normal_cdf(1.96) - 0.975).abs() < 1e-4);
        assert!((1.0 - normal_cdf(3.719) - 1e-4).abs() < 1e-6);
        assert!(normal_cdf(-40.0) >= 0.0 && normal_cdf(40.0) <= 1.0);
    }
}
