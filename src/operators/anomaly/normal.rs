//! What is normal for one key in one regime, and how far a reading is from
//! it.
//!
//! The normal is exponentially weighted by count and age (O(1) per
//! reading) and learns only from readings that look normal, so a fault
//! does not become the new normal. Three things keep it honest on data it
//! has never seen:
//!
//! - **A lasting change is adopted.** Beside the normal, a short memory
//!   (see [`Change`]) follows every reading. When the recent readings
//!   have scored past the rule's threshold for `adapt_after`, the normal
//!   moves to them (their level, and their spread if it widened): a
//!   recalibrated sensor or a new setpoint alerts once, then is the
//!   normal. The price: a fault that lasts longer than `adapt_after`
//!   becomes normal too;
//!   `cusum` sees a slow drift long before it is that far off, and a
//!   `forecast` on the same field still warns of a limit.
//! - **A spread floor.** The spread is never taken below the smallest
//!   step between successive distinct readings (a sensor's resolution),
//!   nor below `min_spread`; before two readings differ, below a
//!   thousandth of the level. A flat or quantised warm-up no longer makes
//!   every later wiggle a huge score.
//! - **The expected value may follow a load (`explain`, see [`Line`]) or a
//!   cycle (`cycle`, see [`Cycle`])**, so that what moves with them is
//!   not scored.

use super::cycle::Cycle;
use super::likelihood::Likelihood;
use super::line::Line;
use super::{Method, Params};
use serde::{Deserialize, Serialize};

/// CUSUM's allowance, in standard deviations.
const CUSUM_K: f64 = 0.5;
/// Most standard deviations one reading adds to an EWMA or a CUSUM.
const CLAMP: f64 = 4.0;
/// Readings a normal needs besides `warmup`.
const MIN_READINGS: u32 = 30;

/// Most deviations one reading adds to the change's recent average, so a
/// lone wild reading is not a change.
const CHANGE_CLAMP: f64 = 10.0;
/// Readings the mean step between readings remembers.
const STEP_MEMORY: u32 = 100;

/// The normal of one key in one regime.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Normal {
    readings: u32,
    /// How many readings the normal remembers: each learned one adds 1,
    /// and the sum decays with time.
    mass: f64,
    first: i64,
    last: i64,
    /// Weighted mean and variance of the residual: the reading less the
    /// expected value (in the cycle's deviations, with a cycle).
    mean: f64,
    var: f64,
    ewma: f64,
    /// Learned variance of `ewma` in normal operation.
    ewma_var: f64,
    median: f64,
    mad: f64,
    cusum_up: f64,
    cusum_down: f64,
    /// Weighted mean of the value.
    ey: f64,
    /// The smallest step seen between successive distinct readings; `None`
    /// until two differ.
    resolution: Option<f64>,
    /// Mean size of the step between successive readings, over all of them.
    step: f64,
    steps: u32,
    last_x: Option<f64>,
    /// With `explain`: the line the value follows. Boxed, so a normal
    /// without one stays small (the state of every key is in memory).
    line: Option<Box<Line>>,
    /// With `cycle`: the profile the value follows.
    cycle: Option<Box<Cycle>>,
    change: Change,
    /// With `likelihood`: the distribution of this normal's scores.
    likelihood: Likelihood,
}

/// What one reading did to a normal.
pub struct Reading {
    /// The method's score (0 when not scored).
    pub score: f64,
    pub expected: f64,
    pub judged: Judged,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Judged {
    Scored,
    WarmingUp,
    /// The explaining field is at a level the line was not learned at.
    UnknownLoad,
    /// The reading completed a lasting change: the normal moved to it.
    Adopted,
}

/// Where the expected value puts a reading.
struct Baseline {
    expected: f64,
    /// The residual that is scored.
    r: f64,
    /// Whether the expected value can be trusted here (a learned load, a
    /// learned phase of the cycle).
    known: bool,
}

/// Whether the recent readings have moved away from the normal for good:
/// whether the rule would keep alerting on them.
///
/// The recent averages have a time constant of a sixth of `adapt_after`:
/// they reach a new level well within it, and after a fault that ended
/// they are back within a fifth of it, so a fault is adopted only if it
/// lasts about as long as `adapt_after`. Only what the rule alerts on (in
/// its direction, past its threshold) is a change: a lasting deviation it
/// would not alert on is no reason to move the normal (with `explain`, a
/// line that fits one load a little off must not be shifted at all loads).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct Change {
    /// Recent averages of the readings' deviation from the normal (in its
    /// deviations), of its size, of their distance from the expected
    /// value (in the value's units), and of the method's score in the
    /// rule's direction.
    u: f64,
    size: f64,
    dx: f64,
    score: f64,
    started: bool,
    /// Since when the recent readings have been off the normal.
    since: Option<i64>,
}

impl Change {
    /// Follows a reading `dt` after the last, which scored `score` (its
    /// size in the rule's direction); true once the recent scores have
    /// been past `alert_at` for `after`.
    fn track(&mut self, u: f64, dx: f64, score: f64, dt: f64, t: i64, p: &Params) -> bool {
        let tau = (p.adapt_ms as f64 / 6.0).max(1.0);
        let a = match self.started {
            true => 1.0 - (-dt.max(0.0) / tau).exp(),
            false => 1.0,
        };
        self.started = true;
        let u = u.clamp(-CHANGE_CLAMP, CHANGE_CLAMP);
        self.u += a * (u - self.u);
        self.size += a * (u.abs() - self.size);
        self.dx += a * (dx - self.dx);
        // Capped, so one wild reading is not a lasting change.
        let score = score.min(CHANGE_CLAMP / 3.0 * p.alert_at);
        self.score += a * (score - self.score);
        self.since = (self.score > p.alert_at).then(|| self.since.unwrap_or(t));
        self.since.is_some_and(|since| t - since >= p.adapt_ms)
    }

    /// How many times the variance the recent readings have about their
    /// own average: 1 for a shift of level alone. (For normal noise the
    /// mean absolute deviation is 0.8 standard deviations.)
    fn widening(&self) -> f64 {
        ((self.size * self.size - self.u * self.u) / 0.64).max(1.0)
    }
}

impl Normal {
    /// Scores value `x` (explained by `z`) at time `t`, and lets the normal
    /// learn from it if it looks normal.
    pub fn read(&mut self, x: f64, z: Option<f64>, t: i64, p: &Params) -> Reading {
        if self.readings == 0 {
            // Expected to be where it starts: a first residual of the whole
            // level would be in the variance for hours.
            (self.first, self.last, self.ey) = (t, t, x);
        }
        // A reading older than the last one (out of order) is scored as
        // if it came with it: time does not run back for the decays.
        let dt = (t - self.last).max(0) as f64;
        self.mass *= (-dt / p.memory_ms).exp();
        self.last = self.last.max(t);
        let floor = self.floor(p.min_spread);
        let base = self.baseline(x, z, t, p, floor);
        let ready = self.readings >= MIN_READINGS && t - self.first >= p.warmup_ms;
        let (mut score, mut judged) = match (ready, base.known) {
            (true, true) => (0.0, Judged::Scored),
            (true, false) if z.is_some() => (0.0, Judged::UnknownLoad),
            _ => (0.0, Judged::WarmingUp),
        };
        // Residuals in a cycle's deviations are floored there already.
        let residual_floor = if self.cycle.is_some() { 1e-9 } else { floor };
        if judged == Judged::Scored {
            // A reading at the time of the last (a duplicate, or one out
            // of order) moves the chart as a reading at the usual gap
            // would: at a gap of 0 its spread would be taken as none.
            let gap = match dt > 0.0 {
                true => dt,
                false => (self.last - self.first) as f64 / f64::from(self.readings.max(1)),
            };
            let smoothing = gap.max(1.0) / p.smoothing_ms;
            score = self.score(p.method, base.r, smoothing, residual_floor);
            let u = (base.r - self.mean) / self.var.sqrt().max(residual_floor);
            let size = p.direction.magnitude(score);
            if self.change.track(u, x - base.expected, size, dt, t, p) {
                self.adopt(residual_floor);
                (score, judged) = (0.0, Judged::Adopted);
            }
        }
        // The normal learns only from what looks normal, so a fault does
        // not become the new normal; CUSUM's own sums say so sooner.
        let looks_normal = match judged {
            Judged::WarmingUp | Judged::Adopted => true,
            // A load never seen is learned once it has lasted a while: a
            // fault that moves the explaining field (a surge) is not a load.
            Judged::UnknownLoad => {
                let at_level = self.line.as_ref().map_or(0, |l| l.new_level_for(t));
                at_level >= p.new_level_ms
            }
            Judged::Scored => {
                let z = (base.r - self.mean) / self.var.sqrt().max(residual_floor);
                score.abs() <= p.learn_below && z.abs() <= 3.0
            }
        };
        if looks_normal {
            // Until a cycle's phase is known there is no residual to learn,
            // only the profile: the residuals' statistics start after it.
            let residual = base.known || self.cycle.is_none();
            self.learn(x, z, t, residual.then_some(base.r), p);
            if residual {
                self.readings = self.readings.saturating_add(1);
            }
        }
        self.note_step(x);
        Reading {
            score,
            expected: base.expected,
            judged,
        }
    }

    /// The likelihood of this normal's recent scores; takes `magnitude`,
    /// the latest score's size in the direction that counts.
    pub fn likelihood(&mut self, magnitude: f64) -> f64 {
        self.likelihood.update(magnitude)
    }

    /// The least spread the normal may have, in the value's units: the
    /// sensor's resolution, half the usual step between readings (under
    /// white noise the step is 1.13 deviations, so this binds only when
    /// the normal learned a flat spell the readings have since left), and
    /// before two readings have differed, a thousandth of the level.
    fn floor(&self, min_spread: f64) -> f64 {
        let data = match self.resolution {
            Some(resolution) => resolution.max(0.5 * self.step),
            None => 1e-3 * self.ey.abs(),
        };
        min_spread.max(data).max(1e-9)
    }

    /// Follows the step from the last reading, learned from every reading
    /// (a flat spell in the normal must not outlive the flat readings).
    fn note_step(&mut self, x: f64) {
        if let Some(last) = self.last_x {
            let step = (x - last).abs();
            if step > 0.0 {
                self.resolution = Some(self.resolution.map_or(step, |r| r.min(step)));
            }
            self.steps = self.steps.saturating_add(1);
            self.step += (step - self.step) / f64::from(self.steps.min(STEP_MEMORY));
        }
        self.last_x = Some(x);
    }

    fn baseline(&mut self, x: f64, z: Option<f64>, t: i64, p: &Params, floor: f64) -> Baseline {
        if let Some((period, bins)) = p.cycle {
            let cycle = self.cycle.get_or_insert_with(|| Box::new(Cycle::new(bins)));
            return match cycle.expected(t, period) {
                Some((level, sd)) => Baseline {
                    expected: level,
                    r: (x - level) / sd.max(floor),
                    known: true,
                },
                None => Baseline {
                    expected: x,
                    r: 0.0,
                    known: false,
                },
            };
        }
        let expected = self.expected(z);
        let known = z.is_none_or(|z| self.line(z).follow_load(z, t));
        Baseline {
            expected,
            r: x - expected,
            known,
        }
    }

    /// The value's expected level given the explaining field.
    fn expected(&self, z: Option<f64>) -> f64 {
        match (z, &self.line) {
            (Some(z), Some(line)) => self.ey + line.slope(self.ey) * (z - line.ex),
            _ => self.ey,
        }
    }

    /// The line, started at explaining value `z` if there is none yet.
    fn line(&mut self, z: f64) -> &mut Line {
        self.line.get_or_insert_with(|| {
            Box::new(Line {
                z_now: z,
                ..Line::default()
            })
        })
    }

    /// Scores residual `r`, then advances the running statistics that the
    /// method keeps between readings (EWMA, CUSUM). `smoothing` is the
    /// share of the time constant since the last reading (for the EWMA).
    fn score(&mut self, method: Method, r: f64, smoothing: f64, floor: f64) -> f64 {
        let sd = self.var.sqrt().max(floor);
        let z = (r - self.mean) / sd;
        // The accumulating methods take at most CLAMP deviations from one
        // reading: a lone wild reading must not carry them past the
        // threshold, a shift keeps adding.
        let z_in = z.clamp(-CLAMP, CLAMP);
        match method {
            Method::Zscore => z,
            Method::Ewma => {
                let lambda = 1.0 - (-smoothing).exp();
                self.ewma = lambda * z_in + (1.0 - lambda) * self.ewma;
                // In the chart's own learned spread: readings that are not
                // independent, or a line that fits loads unevenly, make it
                // wander more than independent noise would; never less.
                let independent = lambda / (2.0 - lambda);
                self.ewma / self.ewma_var.max(independent).sqrt()
            }
            Method::Mad => (r - self.median) / (1.4826 * self.mad).max(floor),
            Method::Cusum => {
                self.cusum_up = (self.cusum_up + z_in - CUSUM_K).max(0.0);
                self.cusum_down = (self.cusum_down - z_in - CUSUM_K).max(0.0);
                match self.cusum_up >= self.cusum_down {
                    true => self.cusum_up,
                    false => -self.cusum_down,
                }
            }
        }
    }

    /// Learns a reading as one more of those remembered, so a reading after
    /// a gap (an idle machine, filtered out) does not outweigh the hours
    /// before it, and the first readings make a plain average.
    fn learn(&mut self, x: f64, z: Option<f64>, t: i64, r: Option<f64>, p: &Params) {
        if let (Some((period, _)), Some(cycle)) = (p.cycle, self.cycle.as_mut()) {
            cycle.learn(t, period, x);
        }
        let Some(r) = r else {
            return;
        };
        self.mass += 1.0;
        let w = 1.0 / self.mass;
        let d = r - self.mean;
        self.mean += w * d;
        self.var = (1.0 - w) * (self.var + w * d * d);
        self.ewma_var += w * (self.ewma * self.ewma - self.ewma_var);
        let step = w * self.mad.max(1e-3);
        self.median += step * (r - self.median).signum();
        self.mad += w * ((r - self.median).abs() - self.mad);
        self.ey += w * (x - self.ey);
        if let (Some(z), Some(line)) = (z, self.line.as_mut()) {
            line.learn(x, z, w, self.readings);
        }
    }

    /// The recent readings have been off the normal for `adapt_after`:
    /// the expected value moves to them, the spread widens with them, and
    /// the accumulating methods start again.
    fn adopt(&mut self, floor: f64) {
        let change = std::mem::take(&mut self.change);
        let dx = change.dx;
        self.ey += dx;
        if let Some(line) = &mut self.line {
            // The same line, moved: E[z·(x + dx)] = E[z·x] + dx·E[z].
            line.exy += line.ex * dx;
        }
        if let Some(cycle) = &mut self.cycle {
            cycle.shift(dx);
        }
        // The deviations were measured against the floored spread, which
        // is what widens (a flat spell's zero spread would stay zero).
        let widened = change.widening();
        self.var = self.var.max(floor * floor) * widened;
        self.mad = self.mad.max(floor / 1.4826) * widened.sqrt();
        (self.ewma, self.cusum_up, self.cusum_down) = (0.0, 0.0, 0.0);
        self.likelihood.settle();
    }
}
