//! `anomaly`: score each reading against the entity's own recent normal,
//! and alert when the score stays past a threshold.
//!
//! ```yaml
//! bearing_wear:
//!   type: anomaly
//!   inputs: [steady]
//!   field: vibration_rms
//!   method: ewma         # zscore | ewma | mad | cusum
//!   smoothing: 2m        # the ewma chart's time constant
//!   explain: power_kw    # the normal level follows this field (load)
//!   new_level_after: 5m  # a load never seen is learned once it lasts this
//!   by: mode             # a separate normal per value of this field
//!   memory: 2h           # how long the normal remembers
//!   warmup: 1h           # no score until the normal has seen this much
//!   threshold: 12
//!   for: 5m
//!   score_field: wear_score
//! ```
//!
//! Every reading goes on, with the score in `score_field`, so sinks and
//! other operators can use it; alert episodes fire when the score passes
//! `threshold` for `for` and resolve below `clear_below`. The normal
//! (exponentially weighted by count and age, O(1) per reading) learns only
//! from readings that do not look anomalous, so a fault does not become
//! the new normal. With `explain`, the line is trusted only at loads it
//! has learned (see `Line`). The README tells what each method catches
//! and misses.

use super::alerting::{AlertingSpec, Episode, Rule};
use super::{BuildContext, Emits, Emitter, FieldRef, Keyed, KeyedOperator, Operator};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::{Event, FieldId, Value};
use compact_str::CompactString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    field: Spanned<String>,
    #[serde(default)]
    method: Method,
    /// A numeric field the normal level follows (a load): the reading is
    /// scored by how far it is from what that field predicts.
    explain: Option<Spanned<String>>,
    /// A field naming the operating regime: one normal per value.
    by: Option<Spanned<String>>,
    #[serde(default = "default_memory")]
    memory: Spanned<Duration>,
    #[serde(default = "default_warmup")]
    warmup: Duration,
    /// How long the explaining field must stay at a level never seen
    /// before the line learns it.
    #[serde(default = "default_new_level_after")]
    new_level_after: Duration,
    /// Time constant of the `ewma` chart.
    #[serde(default = "default_smoothing")]
    smoothing: Spanned<Duration>,
    threshold: Option<f64>,
    clear_below: Option<f64>,
    #[serde(default, rename = "for")]
    hold: Duration,
    #[serde(default)]
    direction: Direction,
    #[serde(default = "default_score_field")]
    score_field: String,
}

/// How a reading is scored against the normal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Distance from the weighted mean in weighted standard deviations.
    #[default]
    Zscore,
    /// An EWMA control chart: the smoothed reading's distance from the
    /// mean, in the smoothed series' own standard deviations.
    Ewma,
    /// Distance from a running median in running MADs: robust to the
    /// outliers that inflate a standard deviation.
    Mad,
    /// Cumulative sum of standardized deviations beyond half a standard
    /// deviation: small persistent shifts add up.
    Cusum,
}

impl Method {
    fn default_threshold(self) -> f64 {
        match self {
            Method::Zscore | Method::Ewma => 4.0,
            Method::Mad => 5.0,
            Method::Cusum => 10.0,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Both,
    Up,
    Down,
}

fn default_memory() -> Spanned<Duration> {
    Spanned::unplaced(Duration(3_600_000))
}

fn default_warmup() -> Duration {
    Duration(1_800_000)
}

fn default_new_level_after() -> Duration {
    Duration(300_000)
}

fn default_smoothing() -> Spanned<Duration> {
    Spanned::unplaced(Duration(30_000))
}

fn default_score_field() -> String {
    "score".into()
}

/// Readings a normal needs besides `warmup`.
const MIN_READINGS: u32 = 30;
/// Regimes kept per key; readings of further regimes are not scored.
const MAX_REGIMES: usize = 16;
/// Weight of a reading in the explaining field's level now.
const Z_NOW: f64 = 0.2;
/// CUSUM's allowance, in standard deviations.
const CUSUM_K: f64 = 0.5;
/// Most standard deviations one reading adds to an EWMA or a CUSUM.
const CLAMP: f64 = 4.0;

impl Config {
    fn threshold(&self) -> f64 {
        self.threshold.unwrap_or(self.method.default_threshold())
    }
}

impl AlertingSpec for Config {
    const OWN_VARS: &'static [&'static str] = &["score", "expected"];

    fn default_message(&self) -> String {
        format!(
            "{{key}} {} is anomalous (score {{score:.1}}, expected {{expected:.2}})",
            self.field.value
        )
    }

    fn reads(&self) -> Vec<FieldRef> {
        let named = [Some(&self.field), self.explain.as_ref(), self.by.as_ref()];
        let fields: Vec<_> = named.into_iter().flatten().collect();
        FieldRef::named(&fields)
    }

    fn emits(&self) -> Emits {
        Emits::Events {
            keeps_input: true,
            adds: vec![self.score_field.clone()],
        }
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        for d in [&self.memory, &self.smoothing] {
            if d.value.ms() <= 0 {
                problems.push(ConfigError::at(d.loc, "must be longer than 0"));
            }
        }
        let (threshold, clear) = (self.threshold(), self.clear_below);
        if threshold <= 0.0 || clear.is_some_and(|c| c < 0.0 || c > threshold) {
            let message = "`threshold` must be above 0, and `clear_below` between 0 and it";
            problems.push(ConfigError::at(self.field.loc, message));
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator> {
        let threshold = self.threshold();
        Keyed::boxed(Anomaly {
            rule,
            field: ctx.numeric_field(&self.field),
            explain: self.explain.as_ref().map(|f| ctx.numeric_field(f)),
            by: self.by.as_ref().map(|f| ctx.field(f)),
            score_field: ctx.field(&self.score_field),
            method: self.method,
            memory_ms: self.memory.value.ms() as f64,
            smoothing_ms: self.smoothing.value.ms() as f64,
            new_level_ms: self.new_level_after.ms(),
            warmup_ms: self.warmup.ms(),
            threshold,
            clear: self.clear_below.unwrap_or(threshold / 2.0),
            hold_ms: self.hold.ms(),
            direction: self.direction,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Anomaly {
    rule: Rule,
    field: FieldId,
    explain: Option<FieldId>,
    by: Option<FieldId>,
    score_field: FieldId,
    method: Method,
    memory_ms: f64,
    smoothing_ms: f64,
    new_level_ms: i64,
    warmup_ms: i64,
    threshold: f64,
    clear: f64,
    hold_ms: i64,
    direction: Direction,
}

/// One key's normals (one per regime) and where it is in an episode.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    regimes: Vec<(CompactString, Normal)>,
    episode: Episode,
}

/// What is normal for one key in one regime: exponentially weighted
/// statistics of the value (or of its residual from `explain`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Normal {
    readings: u32,
    /// How many readings the normal remembers: each learned one adds 1,
    /// and the sum decays with time.
    mass: f64,
    first: i64,
    last: i64,
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
    /// With `explain`: the line the value follows. Boxed, so a normal
    /// without one stays small (the state of every key is in memory).
    line: Option<Box<Line>>,
}

/// The least-squares line value = a + b * explaining, and where the
/// explaining field is now.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Line {
    /// Weighted means of the explaining field, its square, and its product
    /// with the value.
    ex: f64,
    exx: f64,
    exy: f64,
    /// The explaining field's own reading noise (half the weighted mean
    /// squared difference of successive readings), and its last reading.
    ez_noise: f64,
    last_z: f64,
    /// The explaining field now: a short average of its last readings, so
    /// a change of load shows within a few readings and noise does not.
    z_now: f64,
    /// Since when the explaining field has been at a level the line was
    /// not learned at, and that level.
    new_level: Option<(i64, f64)>,
}

impl Normal {
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

    /// Forgets with the time since the last reading.
    fn age(&mut self, dt: f64, memory_ms: f64) {
        self.mass *= (-dt.max(0.0) / memory_ms).exp();
    }

    /// Scores residual `r`, then advances the running statistics that the
    /// method keeps between readings (EWMA, CUSUM). `smoothing` is the
    /// share of the time constant since the last reading (for the EWMA).
    fn score(&mut self, method: Method, r: f64, smoothing: f64) -> f64 {
        let sd = self.var.sqrt().max(1e-9);
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
            Method::Mad => (r - self.median) / (1.4826 * self.mad).max(1e-9),
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
    fn learn(&mut self, x: f64, z: Option<f64>, r: f64) {
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
}

impl Line {
    /// The explaining field's learned variance, and the part of it that
    /// is reading noise rather than changes of load.
    fn spread(&self) -> (f64, f64) {
        let var = (self.exx - self.ex * self.ex).max(0.0);
        (var, self.ez_noise.min(var))
    }

    /// The slope, given the value's weighted mean `ey`.
    fn slope(&self, ey: f64) -> f64 {
        let (var, noise) = self.spread();
        // Noise in the explaining readings flattens a least-squares line
        // (regression dilution): divide by the variance of the load itself,
        // though by no less than half that of the readings while the load
        // has barely varied.
        let load_var = (var - noise).max(var / 2.0);
        match load_var > 1e-12 {
            true => (self.exy - self.ex * ey) / load_var,
            false => 0.0,
        }
    }

    /// Follows the explaining field with reading `z` at `t`, and says
    /// whether the line was learned near its level now: within 3 standard
    /// deviations of the loads seen, widened by what noise remains in the
    /// average. With a single load seen, the line is flat and holds only
    /// there.
    fn follow_load(&mut self, z: f64, t: i64) -> bool {
        self.z_now += Z_NOW * (z - self.z_now);
        let (var, noise) = self.spread();
        let noise_now = (noise * Z_NOW / (2.0 - Z_NOW)).sqrt();
        let known = (self.z_now - self.ex).abs() <= 3.0 * ((var - noise).sqrt() + noise_now);
        // Once at a level never seen, the clock runs while the field stays
        // there (within its reading noise), even if noise takes it back into
        // the known range a moment; a surge that moves it further restarts it.
        let z_now = self.z_now;
        let stays = |&(_, level): &(i64, f64)| (z_now - level).abs() <= 3.0 * noise.sqrt();
        self.new_level = match self.new_level.filter(stays) {
            None if !known => Some((t, self.z_now)),
            other => other,
        };
        known
    }

    /// How long the explaining field has been at a level never seen.
    fn new_level_for(&self, t: i64) -> i64 {
        self.new_level.map_or(0, |(since, _)| t - since)
    }

    /// Learns value `x` at explaining value `z` with weight `w`; `learned`
    /// readings came before.
    fn learn(&mut self, x: f64, z: f64, w: f64, learned: u32) {
        if learned > 0 {
            // A change of load is one big step among many small ones: cap
            // its share once the noise is known.
            let step = (z - self.last_z).powi(2) / 2.0;
            let cap = if learned > 10 {
                9.0 * self.ez_noise
            } else {
                step
            };
            self.ez_noise += w * (step.min(cap) - self.ez_noise);
        }
        self.last_z = z;
        self.ex += w * (z - self.ex);
        self.exx += w * (z * z - self.exx);
        self.exy += w * (z * x - self.exy);
    }
}

impl Anomaly {
    /// The regime's normal, added if new (up to [`MAX_REGIMES`]).
    fn normal<'s>(&self, state: &'s mut State, event: &Event) -> Option<&'s mut Normal> {
        let regime: CompactString = match self.by.and_then(|id| event.get(id)) {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Num(n)) => compact_str::format_compact!("{n}"),
            Some(Value::Bool(b)) => compact_str::format_compact!("{b}"),
            None => CompactString::default(),
        };
        let at = match state.regimes.iter().position(|(r, _)| *r == regime) {
            Some(at) => at,
            None if state.regimes.len() < MAX_REGIMES => {
                state.regimes.push((regime, Normal::default()));
                state.regimes.len() - 1
            }
            None => return None,
        };
        Some(&mut state.regimes[at].1)
    }

    fn beyond(&self, score: f64, level: f64) -> bool {
        match self.direction {
            Direction::Up => score > level,
            Direction::Down => score < -level,
            Direction::Both => score.abs() > level,
        }
    }

    /// Moves the episode on with this reading's score.
    fn judge(
        &self,
        episode: Episode,
        event: &Event,
        score: f64,
        expected: f64,
        out: &mut Emitter,
    ) -> Episode {
        let t = event.time;
        let emit = |state, since, out: &mut Emitter| {
            let vars = [
                ("score", Value::Num(score)),
                ("expected", Value::Num(expected)),
            ];
            let value = event.num(self.field).unwrap_or(f64::NAN);
            out.alert(self.rule.alert(state, event, since, value, &vars));
        };
        let (breached, cleared) = (
            self.beyond(score, self.threshold),
            !self.beyond(score, self.clear),
        );
        episode.step(t, breached, cleared, self.hold_ms, |state, since| {
            emit(state, since, out)
        })
    }
}

impl Operator for Anomaly {
    type State = State;

    fn on_event(&self, state: &mut State, event: &Event, out: &mut Emitter) {
        let Some(x) = event.num(self.field) else {
            return out.pass();
        };
        let z = match self.explain.map(|id| event.num(id)) {
            Some(None) => return out.pass(),
            Some(z) => z,
            None => None,
        };
        let episode = state.episode;
        let Some(normal) = self.normal(state, event) else {
            return out.pass();
        };
        let t = event.time;
        let reading = self.read(normal, x, z, t);
        let mut scored = event.clone();
        scored.set(self.score_field, Value::Num(reading.score));
        out.event(scored);
        state.episode = match reading.judged {
            Judged::Scored => self.judge(episode, event, reading.score, reading.expected, out),
            // A reading the line cannot judge breaks a `for` in progress.
            Judged::UnknownLoad => episode.step(t, false, false, self.hold_ms, |_, _| {}),
            Judged::WarmingUp => episode,
        };
    }
}

/// What one reading did to a normal.
struct Reading {
    score: f64,
    expected: f64,
    judged: Judged,
}

enum Judged {
    Scored,
    WarmingUp,
    /// The explaining field is at a level the line was not learned at.
    UnknownLoad,
}

impl Anomaly {
    /// Scores value `x` (explained by `z`) at time `t` against the normal,
    /// and lets the normal learn from it if it looks normal.
    fn read(&self, normal: &mut Normal, x: f64, z: Option<f64>, t: i64) -> Reading {
        if normal.readings == 0 {
            normal.first = t;
            normal.last = t;
        }
        let dt = (t - normal.last) as f64;
        normal.age(dt, self.memory_ms);
        normal.last = t;
        let expected = normal.expected(z);
        let r = x - expected;
        let known = z.is_none_or(|z| normal.line(z).follow_load(z, t));
        let ready = normal.readings >= MIN_READINGS && t - normal.first >= self.warmup_ms;
        let (score, judged) = match (ready, known) {
            (false, _) => (0.0, Judged::WarmingUp),
            (true, false) => (0.0, Judged::UnknownLoad),
            (true, true) => {
                let smoothing = dt.max(1.0) / self.smoothing_ms;
                (normal.score(self.method, r, smoothing), Judged::Scored)
            }
        };
        // The normal learns only from what looks normal, so a fault does
        // not become the new normal; CUSUM's own sums say so sooner.
        let looks_normal = match judged {
            Judged::WarmingUp => true,
            // A load never seen is learned once it has lasted a while: a
            // fault that moves the explaining field (a surge) is not a load.
            Judged::UnknownLoad => {
                let at_level = normal.line.as_ref().map_or(0, |l| l.new_level_for(t));
                at_level >= self.new_level_ms
            }
            Judged::Scored => score.abs() <= self.clear && r_z(normal, r).abs() <= 3.0,
        };
        if looks_normal {
            normal.learn(x, z, r);
            normal.readings = normal.readings.saturating_add(1);
        }
        Reading {
            score,
            expected,
            judged,
        }
    }
}

/// The residual's plain z-score, whatever the method.
fn r_z(normal: &Normal, r: f64) -> f64 {
    (r - normal.mean) / normal.var.sqrt().max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, alerts};
    use crate::event::{AlertState, Value};

    const STEP: i64 = 10_000;
    const HOUR: f64 = 3_600_000.0;

    /// A deterministic stand-in for Gaussian noise with standard
    /// deviation about 1 (sum of uniforms).
    fn noise(i: i64) -> f64 {
        let mut h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut sum = 0.0;
        for _ in 0..4 {
            h ^= h >> 29;
            h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
            sum += (h >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        }
        sum * 1.7
    }

    /// Feeds `hours` of readings every 10 s: `f(i, t)` gives the fields at
    /// reading `i`, time `t` ms. Returns the firing alerts' times (hours).
    fn firings(
        config: &str,
        hours: f64,
        f: impl Fn(i64, f64) -> Vec<(&'static str, Value)>,
    ) -> Vec<f64> {
        let mut h = Harness::new("anomaly", config);
        let mut fired = Vec::new();
        for i in 0..(hours * HOUR / STEP as f64) as i64 {
            let t = i * STEP;
            for a in alerts(h.push("m1", t, &f(i, t as f64))) {
                if a.state == AlertState::Firing {
                    fired.push(a.event_time as f64 / HOUR);
                }
            }
        }
        fired
    }

    fn num(v: f64) -> Value {
        Value::Num(v)
    }

    /// 10 + noise, plus `extra(hours)`.
    fn signal(extra: impl Fn(f64) -> f64) -> impl Fn(i64, f64) -> Vec<(&'static str, Value)> {
        move |i, t| vec![("v", num(10.0 + noise(i) + extra(t / HOUR)))]
    }

    const METHODS: [&str; 4] = ["zscore", "ewma", "mad", "cusum"];

    fn config(method: &str, extra: &str) -> String {
        format!("field: v\nmethod: {method}\nfor: 1m\n{extra}")
    }

    #[test]
    fn every_method_catches_a_step_soon_after_it() {
        for method in METHODS {
            let fired = firings(
                &config(method, ""),
                3.0,
                signal(|h| if h > 2.0 { 8.0 } else { 0.0 }),
            );
            let first = fired.first().copied().unwrap_or(f64::NAN);
            assert!((2.0..2.1).contains(&first), "{method}: {fired:?}");
        }
    }

    #[test]
    fn no_method_fires_on_noise_a_lone_spike_or_a_slow_daily_cycle() {
        let quiet = |h: f64| {
            let spike = if (1.5..1.5 + 1.0 / 360.0).contains(&h) {
                30.0
            } else {
                0.0
            };
            spike + 3.0 * (std::f64::consts::TAU * h / 24.0).sin()
        };
        for method in METHODS {
            let fired = firings(&config(method, ""), 6.0, signal(quiet));
            assert!(fired.is_empty(), "{method}: {fired:?}");
        }
    }

    #[test]
    fn cusum_catches_a_slow_drift_sooner_than_a_zscore() {
        // +1.5 standard deviations an hour from hour 1.
        let drift = |h: f64| if h > 1.0 { 1.5 * (h - 1.0) } else { 0.0 };
        let cusum = firings(&config("cusum", ""), 6.0, signal(drift));
        let zscore = firings(&config("zscore", ""), 6.0, signal(drift));
        let first = |f: &[f64]| f.first().copied().unwrap_or(f64::INFINITY);
        assert!(first(&cusum) < 2.5, "cusum {cusum:?}");
        assert!(
            first(&cusum) < first(&zscore),
            "cusum {cusum:?}, zscore {zscore:?}"
        );
    }

    #[test]
    fn a_variance_change_shows_in_the_zscore() {
        let wild = |i: i64, t: f64| {
            let scale = if t / HOUR > 2.0 { 6.0 } else { 1.0 };
            vec![("v", num(10.0 + scale * noise(i)))]
        };
        let fired = firings("field: v\nmethod: zscore\n", 3.0, wild);
        assert!(
            fired.first().is_some_and(|&h| h > 2.0 && h < 2.1),
            "{fired:?}"
        );
    }

    #[test]
    fn regimes_keep_their_own_normal() {
        // Idle at 2, running at 10, switching every 20 minutes.
        let modes = |i: i64, t: f64| {
            let running = (t / HOUR * 3.0) as i64 % 2 == 1;
            let (mode, level) = if running {
                ("running", 10.0)
            } else {
                ("idle", 2.0)
            };
            vec![
                ("v", num(level + 0.3 * noise(i))),
                ("mode", Value::Str(mode.into())),
            ]
        };
        let by_mode = firings(&config("zscore", "by: mode\nwarmup: 10m\n"), 4.0, modes);
        assert!(by_mode.is_empty(), "{by_mode:?}");
        let pooled = firings(&config("zscore", "warmup: 10m\n"), 4.0, modes);
        assert!(
            !pooled.is_empty(),
            "a shared normal should fire at mode changes"
        );
    }

    /// A press at `load` (0.4 to 1), its vibration times `wear` and its
    /// power times `surge`: vibration follows power, both with noise.
    fn press(i: i64, load: f64, wear: f64, surge: f64) -> Vec<(&'static str, Value)> {
        let vibration = (1.2 + 1.2 * load) * wear * (1.0 + 0.02 * noise(i));
        let power = (20.0 + 40.0 * load) * surge * (1.0 + 0.01 * noise(i + 7));
        vec![("vib", num(vibration)), ("power", num(power))]
    }

    #[test]
    fn an_explaining_field_separates_load_from_fault() {
        // Vibration follows load; from hour 3 the bearing adds 30%.
        let machine = |i: i64, t: f64| {
            let h = t / HOUR;
            let load = 0.4 + 0.6 * ((h * 2.0) as i64 % 3) as f64 / 2.0;
            let wear = if h > 3.0 { 1.3 } else { 1.0 };
            press(i, load, wear, 1.0)
        };
        // The normal must have seen the loads it is to explain.
        let cfg = "field: vib\nmethod: cusum\nexplain: power\nwarmup: 2h\nfor: 1m\n";
        let fired = firings(cfg, 5.0, machine);
        assert!(
            fired.first().is_some_and(|&h| h > 3.0 && h < 3.5),
            "{fired:?}"
        );
        let blind = firings("field: vib\nmethod: zscore\nfor: 1m\n", 3.0, machine);
        assert!(
            !blind.is_empty(),
            "without `explain` load changes look anomalous"
        );
    }

    #[test]
    fn a_load_never_seen_is_learned_not_scored() {
        // Two hours at one load, then another: the line learned from one
        // load cannot say what the second one means.
        let machine = |i: i64, t: f64| {
            let load = if t / HOUR < 2.0 { 0.5 } else { 0.9 };
            press(i, load, 1.0, 1.0)
        };
        let cfg = "field: vib\nmethod: zscore\nexplain: power\nwarmup: 1h\nfor: 1m\n";
        assert_eq!(firings(cfg, 4.0, machine), [] as [f64; 0]);
    }

    #[test]
    fn ewma_catches_a_shift_of_one_standard_deviation_that_zscore_misses() {
        let shift = |h: f64| if h > 2.0 { 1.0 } else { 0.0 };
        let ewma = firings(&config("ewma", "smoothing: 2m\n"), 3.0, signal(shift));
        assert!(
            ewma.first().is_some_and(|&h| h > 2.0 && h < 2.3),
            "{ewma:?}"
        );
        let zscore = firings(&config("zscore", ""), 3.0, signal(shift));
        assert!(zscore.is_empty(), "{zscore:?}");
    }

    #[test]
    fn a_short_excursion_of_the_explaining_field_is_not_learned() {
        // Loads alternate every 30 minutes; at hour 3.5, at the high load,
        // the power surges for 3 minutes to a level never seen while the
        // vibration stays (a power fault, not a load).
        let machine = |i: i64, t: f64| {
            let h = t / HOUR;
            let load = if (h * 2.0) as i64 % 2 == 0 { 0.5 } else { 0.9 };
            let surge = if (3.5..3.55).contains(&h) { 1.9 } else { 1.0 };
            press(i, load, 1.0, surge)
        };
        let cfg = "field: vib\nmethod: ewma\nsmoothing: 2m\nexplain: power\nwarmup: 2h\n\
                   direction: up\nfor: 2m\n";
        assert_eq!(firings(cfg, 6.0, machine), [] as [f64; 0]);
        // Learning the surge as a load bends the line: the check above can fail.
        let eager = format!("{cfg}new_level_after: 0s\n");
        assert!(!firings(&eager, 6.0, machine).is_empty());
    }

    #[test]
    fn every_reading_goes_on_with_its_score() {
        let mut h = Harness::new("anomaly", "field: v\nscore_field: v_score\nwarmup: 0s\n");
        let score = h.field("v_score");
        let mut scores = Vec::new();
        for i in 0..40 {
            let outputs = h.push("m1", i * STEP, &[("v", num(10.0 + noise(i)))]);
            let events = super::super::test_support::events(outputs);
            assert_eq!(events.len(), 1);
            scores.push(events[0].num(score).expect("a score"));
        }
        assert!(
            scores[..30].iter().all(|&s| s == 0.0),
            "no score while warming up"
        );
        assert!(scores[30..].iter().all(|&s| s.abs() < 4.0 && s != 0.0));
    }
}
