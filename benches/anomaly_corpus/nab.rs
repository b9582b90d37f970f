//! The Numenta Anomaly Benchmark's scorer (Lavin & Ahmad 2015, "Evaluating
//! Real-time Anomaly Detection Algorithms – the Numenta Anomaly Benchmark",
//! and NAB's `nab/sweeper.py`), on event times.
//!
//! Inside a labelled window only the first detection counts, weighted by
//! how early it came: `σ(y) = 2/(1+e^{5y}) − 1` of its position
//! `y = (t − end)/(end − start)` in [−1, 0], scaled so a detection at the
//! window's start earns `A_TP`. A detection outside every window adds
//! `A_FP` times the same sigmoid of its distance past the previous window,
//! in that window's lengths, which is negative there: nearly nothing just
//! after a window (the incident's aftermath), `−A_FP` from three lengths on
//! and before any window. A window without a detection costs `A_FN`. NAB
//! measures positions in rows; times are fairer to recordings with gaps
//! and duplicate timestamps.
//!
//! The scores of a corpus are summed, then normalised: 0 for a detector
//! that never fires, 100 for one that fires at the start of every window.
//! The unit tests are in `tests/anomaly_nab.rs`: a bench without the test
//! harness runs none.

/// The weights of one of NAB's application profiles: of a true positive,
/// a false positive and a false negative (`fn` is a keyword).
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    pub tp: f64,
    pub fp: f64,
    pub fn_: f64,
}

pub const STANDARD: Profile = Profile {
    tp: 1.0,
    fp: 0.11,
    fn_: 1.0,
};

pub const LOW_FP: Profile = Profile {
    tp: 1.0,
    fp: 0.22,
    fn_: 1.0,
};

/// NAB's scaled sigmoid of a relative position.
fn sigmoid(y: f64) -> f64 {
    match y >= 3.0 {
        true => -1.0,
        false => 2.0 / (1.0 + (5.0 * y).exp()) - 1.0,
    }
}

/// What a detector did on one or more recordings, before a profile weighs
/// it: the tallies of recordings add up to the corpus's.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Tally {
    pub windows: usize,
    /// Windows with a detection.
    pub detected: usize,
    pub firings: usize,
    /// Firings inside a window, the first or not.
    pub inside: usize,
    /// Sum of the detected windows' weights: 1 for a detection at the start.
    tp: f64,
    /// Sum of the weights of detections outside windows, each in [−1, 0].
    fp: f64,
}

impl Tally {
    /// Scores detection times against windows `(start, end)`, both in time
    /// order (windows disjoint).
    pub fn new(windows: &[(i64, i64)], detections: &[i64]) -> Tally {
        let mut tally = Tally {
            windows: windows.len(),
            firings: detections.len(),
            ..Tally::default()
        };
        let mut detected = vec![false; windows.len()];
        for &t in detections {
            // The window that holds `t`, or else the last one before it.
            let after = windows.partition_point(|&(start, _)| start <= t);
            let Some(at) = after.checked_sub(1) else {
                tally.fp += sigmoid(3.0);
                continue;
            };
            let (start, end) = windows[at];
            let y = (t - end) as f64 / (end - start).max(1) as f64;
            if t > end {
                tally.fp += sigmoid(y);
            } else {
                tally.inside += 1;
                if !std::mem::replace(&mut detected[at], true) {
                    tally.tp += sigmoid(y) / sigmoid(-1.0);
                    tally.detected += 1;
                }
            }
        }
        tally
    }

    /// NAB's raw score under `profile`.
    pub fn raw(&self, profile: &Profile) -> f64 {
        let missed = (self.windows - self.detected) as f64;
        profile.tp * self.tp + profile.fp * self.fp - profile.fn_ * missed
    }

    /// The normalised score; none without windows (it has no scale).
    pub fn score(&self, profile: &Profile) -> Option<f64> {
        let null = -profile.fn_ * self.windows as f64;
        let perfect = profile.tp * self.windows as f64;
        (self.windows > 0).then(|| 100.0 * (self.raw(profile) - null) / (perfect - null))
    }

    /// Firings inside windows, of all firings.
    pub fn precision(&self) -> Option<f64> {
        (self.firings > 0).then(|| self.inside as f64 / self.firings as f64)
    }

    /// Windows with a detection, of all windows.
    pub fn recall(&self) -> Option<f64> {
        (self.windows > 0).then(|| self.detected as f64 / self.windows as f64)
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, other: Tally) {
        self.windows += other.windows;
        self.detected += other.detected;
        self.firings += other.firings;
        self.inside += other.inside;
        self.tp += other.tp;
        self.fp += other.fp;
    }
}
