//! A daily (or any) cycle the normal level follows: Holt-Winters'
//! seasonal profile with per-phase deviations, as Brutlag (2000,
//! "Aberrant behavior detection in time series for network monitoring")
//! uses it to flag traffic that breaks its daily pattern.
//!
//! The cycle is cut in `bins` phases. Each keeps the level readings have
//! at that phase and their typical deviation from it, both exponentially
//! weighted by count and age (forgotten over a week of cycles), so the
//! expected value at any time is the profile interpolated between the two
//! nearest phases, and a reading is scored in its phase's own deviations:
//! a busy hour's wide swings and a quiet hour's small ones are judged
//! each by their own. O(1) per reading; memory is the bins (48 bytes
//! each: level, deviation, mass and two times). A phase is scored from
//! the cycle after it was first seen: the first cycle is a warm-up.

use serde::{Deserialize, Serialize};

/// Readings a phase needs besides a cycle before its readings are scored.
const KNOWN: f64 = 3.0;
/// Cycles a phase remembers.
const MEMORY_CYCLES: f64 = super::MEMORY_CYCLES as f64;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cycle {
    bins: Vec<Phase>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Phase {
    level: f64,
    /// Mean absolute deviation from the profile.
    dev: f64,
    mass: f64,
    last: i64,
    /// When the phase was first seen: it is scored from its next cycle.
    since: Option<i64>,
}

impl Phase {
    fn known(&self, t: i64, period: i64) -> bool {
        self.mass >= KNOWN && self.since.is_some_and(|since| t - since >= period / 2)
    }
}

impl Cycle {
    pub fn new(bins: usize) -> Cycle {
        Cycle {
            bins: vec![Phase::default(); bins.max(1)],
        }
    }

    /// The two phases around `t` and the weight of the second.
    fn around(&self, t: i64, period: i64) -> (usize, usize, f64) {
        let n = self.bins.len();
        let at = t.rem_euclid(period) as f64 / period as f64 * n as f64 - 0.5;
        let below = at.floor();
        let i = below.rem_euclid(n as f64) as usize;
        (i, (i + 1) % n, at - below)
    }

    /// The expected value at `t` and the spread around it (a standard
    /// deviation, from the mean absolute deviation), if the phases around
    /// `t` have been learned.
    pub fn expected(&self, t: i64, period: i64) -> Option<(f64, f64)> {
        let (a, b, w) = self.around(t, period);
        let (pa, pb) = (&self.bins[a], &self.bins[b]);
        let (level, dev) = match (pa.known(t, period), pb.known(t, period)) {
            (true, true) => (
                pa.level + w * (pb.level - pa.level),
                pa.dev + w * (pb.dev - pa.dev),
            ),
            (true, false) => (pa.level, pa.dev),
            (false, true) => (pb.level, pb.dev),
            (false, false) => return None,
        };
        // For normal noise the standard deviation is 1.2533 mean absolute
        // deviations.
        Some((level, 1.2533 * dev))
    }

    /// Learns reading `x` at `t` in the phase it falls in. Its deviation
    /// is measured from the profile as interpolated, so the cycle's own
    /// rise across a phase is not taken for noise.
    pub fn learn(&mut self, t: i64, period: i64, x: f64) {
        let expected = self.expected(t, period).map(|(level, _)| level);
        let n = self.bins.len();
        let i = (t.rem_euclid(period) as f64 / period as f64 * n as f64) as usize % n;
        let phase = &mut self.bins[i];
        let memory = MEMORY_CYCLES * period as f64;
        phase.mass *= (-((t - phase.last).max(0) as f64) / memory).exp();
        phase.last = t;
        phase.since.get_or_insert(t);
        phase.mass += 1.0;
        let w = 1.0 / phase.mass;
        if phase.mass == 1.0 {
            phase.level = x;
        }
        let from = expected.unwrap_or(phase.level);
        phase.dev += w * ((x - from).abs() - phase.dev);
        phase.level += w * (x - phase.level);
    }

    /// Moves the whole profile by `dx`: the level shifted for good.
    pub fn shift(&mut self, dx: f64) {
        self.bins.iter_mut().for_each(|p| p.level += dx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    #[test]
    fn the_profile_follows_a_daily_sine_between_its_phases() {
        let mut cycle = Cycle::new(24);
        let level = |t: i64| 10.0 + 5.0 * (std::f64::consts::TAU * t as f64 / DAY as f64).sin();
        assert_eq!(cycle.expected(0, DAY), None);
        for t in (0..3 * DAY).step_by(300_000) {
            cycle.learn(t, DAY, level(t));
        }
        // The first cycle is a warm-up: not scored yet.
        assert_eq!(cycle.expected(DAY / 4, DAY), None);
        for t in (3 * DAY..4 * DAY).step_by(3_700_000) {
            let (expected, _) = cycle.expected(t, DAY).unwrap();
            assert!(
                (expected - level(t)).abs() < 0.3,
                "{t}: {expected} vs {}",
                level(t)
            );
        }
        cycle.shift(2.0);
        let t = 3 * DAY + DAY / 4;
        let (shifted, _) = cycle.expected(t, DAY).unwrap();
        assert!((shifted - level(t) - 2.0).abs() < 0.3);
    }
}
