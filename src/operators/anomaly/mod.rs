//! `anomaly`: score each reading against the entity's own recent normal,
//! and alert when the score stays past a threshold.
//!
//! ```yaml
//! bearing_wear:
//!   type: anomaly
//!   inputs: [steady]
//!   field: vibration_rms
//!   method: ewma         # zscore | ewma | mad | cusum
//!   likelihood: true     # score in [0, 1] against the key's own scores
//!   smoothing: 2m        # the ewma chart's time constant
//!   explain: power_kw    # the normal level follows this field (load)
//!   cycle: 1d            # or: the normal level follows a daily cycle
//!   new_level_after: 5m  # a load never seen is learned once it lasts this
//!   adapt_after: 5m      # a value off its normal this long is the new normal
//!   min_spread: 0.1      # the spread is never taken below this
//!   by: mode             # a separate normal per value of this field
//!   memory: 2h           # how long the normal remembers
//!   warmup: 1h           # no score until the normal has seen this much
//!   threshold: 0.99999
//!   for: 5m
//!   score_field: wear_score
//! ```
//!
//! Every reading goes on, with the score in `score_field`, so sinks and
//! other operators can use it; alert episodes fire when the score passes
//! `threshold` for `for` and resolve below `clear_below`. What is normal,
//! and how it adapts, is in [`normal`]; `likelihood` in [`likelihood`];
//! `explain` in [`line`]; `cycle` in [`cycle`]. The README tells what each
//! method catches and misses.

mod cycle;
mod likelihood;
mod line;
mod normal;

use super::alerting::{AlertingSpec, Episode, Rule};
use super::{BuildContext, Emits, Emitter, FieldRef, Keyed, KeyedOperator, Operator};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::{Event, FieldId, Value};
use compact_str::CompactString;
use normal::{Judged, Normal};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    field: Spanned<String>,
    #[serde(default)]
    method: Method,
    /// Score in [0, 1]: how unusual the recent scores are for this key's
    /// own scores (Numenta's anomaly likelihood). One threshold (0.99999)
    /// then fits signals of any scale or noise.
    #[serde(default)]
    likelihood: bool,
    /// A numeric field the normal level follows (a load): the reading is
    /// scored by how far it is from what that field predicts.
    explain: Option<Spanned<String>>,
    /// A cycle the normal level follows (`1d` for a daily one): each phase
    /// of it has its own expected value and spread.
    cycle: Option<Spanned<Duration>>,
    /// Phases the cycle is cut into; default one per 15 minutes.
    cycle_bins: Option<Spanned<usize>>,
    /// A field naming the operating regime: one normal per value.
    by: Option<Spanned<String>>,
    /// How long the normal remembers; default 1h, or seven cycles with
    /// `cycle` (its deviations from the profile must not follow a slow
    /// departure from the cycle).
    memory: Option<Spanned<Duration>>,
    #[serde(default = "default_warmup")]
    warmup: Duration,
    /// How long the explaining field must stay at a level never seen
    /// before the line learns it (a new load).
    #[serde(default = "default_new_level_after")]
    new_level_after: Duration,
    /// How long the value must stay off its normal before that is the new
    /// normal (a recalibrated sensor, a new setpoint): the episode then
    /// resolves.
    #[serde(default = "default_new_level_after")]
    adapt_after: Duration,
    /// The least spread the normal may have, in the field's units.
    #[serde(default)]
    min_spread: f64,
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

impl Direction {
    /// A raw score's size in the direction that counts.
    fn magnitude(self, score: f64) -> f64 {
        match self {
            Direction::Up => score.max(0.0),
            Direction::Down => (-score).max(0.0),
            Direction::Both => score.abs(),
        }
    }
}

/// Cycles a normal that follows one remembers by default.
const MEMORY_CYCLES: i64 = 7;

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

/// Regimes kept per key; readings of further regimes are not scored.
const MAX_REGIMES: usize = 16;
/// Weight of a reading in the explaining field's level now.
const Z_NOW: f64 = 0.2;
/// The default likelihood threshold: one in a hundred thousand (NAB's
/// Numenta detector alerts at the same).
const LIKELY: f64 = 0.99999;
/// Cycle phases by default: one per quarter of an hour, within these.
const QUARTER_HOUR: i64 = 900_000;
const MAX_BINS: usize = 1440;

impl Config {
    fn threshold(&self) -> f64 {
        let default = match self.likelihood {
            true => LIKELY,
            false => self.method.default_threshold(),
        };
        self.threshold.unwrap_or(default)
    }

    fn clear(&self) -> f64 {
        let default = match self.likelihood {
            true => 0.99_f64.min(self.threshold()),
            false => self.threshold() / 2.0,
        };
        self.clear_below.unwrap_or(default)
    }

    fn memory(&self) -> Spanned<Duration> {
        let cycles = self
            .cycle
            .as_ref()
            .map(|c| Duration(c.value.ms() * MEMORY_CYCLES));
        (self.memory.clone())
            .unwrap_or_else(|| Spanned::unplaced(cycles.unwrap_or(Duration(3_600_000))))
    }

    fn cycle(&self) -> Option<(i64, usize)> {
        let period = self.cycle.as_ref()?.value.ms();
        let bins = self.cycle_bins.as_ref().map_or_else(
            || (period / QUARTER_HOUR).clamp(4, MAX_BINS as i64) as usize,
            |b| b.value,
        );
        Some((period, bins))
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
        for d in [&self.memory(), &self.smoothing] {
            if d.value.ms() <= 0 {
                problems.push(ConfigError::at(d.loc, "must be longer than 0"));
            }
        }
        let (threshold, clear) = (self.threshold(), self.clear());
        let top = if self.likelihood { 1.0 } else { f64::INFINITY };
        if threshold <= 0.0 || threshold >= top || clear < 0.0 || clear > threshold {
            let message = match self.likelihood {
                true => {
                    "with `likelihood`, `threshold` must be between 0 and 1 (0.99999: one in a hundred thousand), and `clear_below` between 0 and it"
                }
                false => "`threshold` must be above 0, and `clear_below` between 0 and it",
            };
            problems.push(ConfigError::at(self.field.loc, message));
        }
        if !(self.min_spread >= 0.0 && self.min_spread.is_finite()) {
            problems.push(ConfigError::at(
                self.field.loc,
                "`min_spread` must be 0 or more",
            ));
        }
        if let Some(cycle) = &self.cycle {
            if cycle.value.ms() <= 0 {
                problems.push(ConfigError::at(cycle.loc, "must be longer than 0"));
            }
            if let Some(explain) = &self.explain {
                let message = "`cycle` and `explain` cannot be used together: the expected value follows one or the other";
                problems.push(ConfigError::at(explain.loc, message));
            }
        }
        match &self.cycle_bins {
            Some(b) if self.cycle.is_none() => {
                problems.push(ConfigError::at(b.loc, "`cycle_bins` needs `cycle`"));
            }
            Some(b) if !(2..=MAX_BINS).contains(&b.value) => {
                let message = format!("must be between 2 and {MAX_BINS}");
                problems.push(ConfigError::at(b.loc, message));
            }
            _ => {}
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator> {
        let threshold = self.threshold();
        // The normal learns, and adopts changes, by the method's own
        // scale, whatever the alert is judged on.
        let (alert_at, learn_below) = match self.likelihood {
            true => {
                let raw = self.method.default_threshold();
                (raw, raw / 2.0)
            }
            false => (threshold, self.clear()),
        };
        Keyed::boxed(Anomaly {
            rule,
            field: ctx.numeric_field(&self.field),
            explain: self.explain.as_ref().map(|f| ctx.numeric_field(f)),
            by: self.by.as_ref().map(|f| ctx.field(f)),
            score_field: ctx.field(&self.score_field),
            params: Params {
                method: self.method,
                memory_ms: self.memory().value.ms() as f64,
                smoothing_ms: self.smoothing.value.ms() as f64,
                new_level_ms: self.new_level_after.ms(),
                adapt_ms: self.adapt_after.ms(),
                warmup_ms: self.warmup.ms(),
                learn_below,
                alert_at,
                direction: self.direction,
                min_spread: self.min_spread,
                cycle: self.cycle(),
            },
            likelihood: self.likelihood,
            threshold,
            clear: self.clear(),
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
    params: Params,
    likelihood: bool,
    threshold: f64,
    clear: f64,
    hold_ms: i64,
    direction: Direction,
}

/// How a normal scores and learns.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    method: Method,
    memory_ms: f64,
    smoothing_ms: f64,
    new_level_ms: i64,
    adapt_ms: i64,
    warmup_ms: i64,
    /// Readings scoring at most this (in the method's units) are learned.
    learn_below: f64,
    /// The score that alerts (in the method's units): a change is one
    /// the rule would alert on, in its direction.
    alert_at: f64,
    direction: Direction,
    min_spread: f64,
    /// The cycle's period and phases.
    cycle: Option<(i64, usize)>,
}

/// One key's normals (one per regime) and where it is in an episode.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    regimes: Vec<(CompactString, Normal)>,
    episode: Episode,
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
        match self.likelihood {
            // A likelihood already counts only the direction that matters.
            true => score > level,
            false => self.direction.magnitude(score) > level,
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
        let reading = normal.read(x, z, t, &self.params);
        let score = match (self.likelihood, reading.judged) {
            (false, _) => reading.score,
            (true, Judged::Scored) => normal.likelihood(self.direction.magnitude(reading.score)),
            // Nothing known yet, or just adopted: no evidence either way.
            (true, _) => 0.5,
        };
        let mut scored = event.clone();
        scored.set(self.score_field, Value::Num(score));
        out.event(scored);
        state.episode = match reading.judged {
            Judged::Scored | Judged::Adopted => {
                self.judge(episode, event, score, reading.expected, out)
            }
            // A reading the line cannot judge breaks a `for` in progress.
            Judged::UnknownLoad => episode.step(t, false, false, self.hold_ms, |_, _| {}),
            Judged::WarmingUp => episode,
        };
    }
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

    /// As [`firings`], every alert: (state, hours).
    fn episodes(
        config: &str,
        hours: f64,
        f: impl Fn(i64, f64) -> Vec<(&'static str, Value)>,
    ) -> Vec<(AlertState, f64)> {
        let mut h = Harness::new("anomaly", config);
        let mut seen = Vec::new();
        for i in 0..(hours * HOUR / STEP as f64) as i64 {
            let t = i * STEP;
            for a in alerts(h.push("m1", t, &f(i, t as f64))) {
                seen.push((a.state, a.event_time as f64 / HOUR));
            }
        }
        seen
    }

    /// Every score of a series, from `score_field`.
    fn scores(config: &str, values: impl Iterator<Item = (i64, f64)>) -> Vec<f64> {
        let mut h = Harness::new("anomaly", &format!("field: v\n{config}score_field: s\n"));
        let score = h.field("s");
        let mut seen = Vec::new();
        for (t, v) in values {
            let events = super::super::test_support::events(h.push("m1", t, &[("v", num(v))]));
            seen.extend(events.iter().map(|e| e.num(score).unwrap_or(f64::NAN)));
        }
        seen
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

    #[test]
    fn a_permanent_level_shift_alerts_once_then_resolves_after_adapt_after() {
        for method in METHODS {
            // A recalibrated sensor: +8 from hour 2, for good.
            let shift = signal(|h| if h > 2.0 { 8.0 } else { 0.0 });
            let seen = episodes(&config(method, "adapt_after: 10m\n"), 6.0, shift);
            let [
                (AlertState::Firing, fired),
                (AlertState::Resolved, resolved),
            ] = seen[..]
            else {
                panic!("{method}: one episode expected, got {seen:?}");
            };
            assert!((2.0..2.1).contains(&fired), "{method}: fired at {fired}");
            // Resolved once the shift has lasted 10 minutes, not before.
            let after = (resolved - 2.0) * 60.0;
            assert!(
                (10.0..14.0).contains(&after),
                "{method}: resolved {after} min after"
            );
        }
    }

    #[test]
    fn a_fault_shorter_than_adapt_after_is_not_adopted() {
        // 8 up for 5 minutes, twice: both alert, neither becomes normal.
        let spells = |h: f64| {
            let hot = (2.0..2.0 + 5.0 / 60.0).contains(&h) || (3.0..3.0 + 5.0 / 60.0).contains(&h);
            if hot { 8.0 } else { 0.0 }
        };
        let fired = firings(&config("zscore", "adapt_after: 10m\n"), 4.0, signal(spells));
        assert_eq!(fired.len(), 2, "{fired:?}");
        assert!((3.0..3.05).contains(&fired[1]), "{fired:?}");
    }

    #[test]
    fn a_quantised_or_flat_warm_up_does_not_inflate_later_scores() {
        let quiet = "warmup: 1h\n";
        // Steps of 0.1, and for the first hour never more than one step
        // from 20.0; then the usual wiggle of a step or two.
        let quantised = (0..3 * 360).map(|i: i64| {
            let steps = if i < 360 { i % 2 } else { (i * 7) % 5 - 2 };
            (i * STEP, 20.0 + 0.1 * steps as f64)
        });
        let worst = scores(quiet, quantised)
            .iter()
            .fold(0.0, |m: f64, s| m.max(s.abs()));
        assert!(worst < 4.0, "a quantised wiggle scored {worst}");
        // Flat for the first hour (a stuck warm-up), then noisy.
        let flat = (0..3 * 360).map(|i: i64| {
            let v = if i < 360 {
                20.0
            } else {
                20.0 + 0.01 * noise(i)
            };
            (i * STEP, v)
        });
        let worst = scores(quiet, flat)[400..]
            .iter()
            .fold(0.0, |m: f64, s| m.max(s.abs()));
        assert!(worst < 4.0, "noise after a flat warm-up scored {worst}");
        // And the floor is no blindfold: 30 steps up still alerts.
        let jump = (0..3 * 360).map(|i: i64| {
            let v = if i == 700 {
                23.0
            } else {
                20.0 + 0.1 * (i % 2) as f64
            };
            (i * STEP, v)
        });
        let seen = scores(quiet, jump);
        assert!(seen[700] > 4.0, "{}", seen[700]);
    }

    #[test]
    fn a_minimum_spread_is_honoured() {
        let series = (0..2 * 360).map(|i: i64| {
            (
                i * STEP,
                20.0 + 0.001 * noise(i) + if i == 600 { 0.5 } else { 0.0 },
            )
        });
        let plain = scores("warmup: 1h\n", series.clone());
        assert!(plain[600] > 100.0, "{}", plain[600]);
        let floored = scores("warmup: 1h\nmin_spread: 0.5\n", series);
        assert!(floored[600] < 2.0, "{}", floored[600]);
    }

    /// A daily cycle of amplitude 10 with noise 1, readings every 10 s.
    fn daily(i: i64, t: f64) -> f64 {
        10.0 + 10.0 * (std::f64::consts::TAU * t / (24.0 * HOUR)).sin() + noise(i)
    }

    #[test]
    fn a_daily_cycle_does_not_alert_and_breaking_it_does() {
        // A departure of hours is adopted if `adapt_after` is shorter.
        let cfg = "field: v\nmethod: zscore\ncycle: 1d\nwarmup: 1h\nfor: 2m\nadapt_after: 12h\n";
        let cycle = |i: i64, t: f64| vec![("v", num(daily(i, t)))];
        let fired = firings(cfg, 96.0, cycle);
        assert!(fired.is_empty(), "{fired:?}");
        // On the third night (its trough at hour 66) it does not cool
        // down: up to 6 deviations warmer, smoothly, from hour 62 to 70.
        let broken = |i: i64, t: f64| {
            let h = t / HOUR;
            let warm = match (62.0..70.0).contains(&h) {
                true => 6.0 * (std::f64::consts::PI * (h - 62.0) / 8.0).sin().powi(2),
                false => 0.0,
            };
            vec![("v", num(daily(i, t) + warm))]
        };
        let fired = firings(cfg, 96.0, broken);
        assert!(
            fired.first().is_some_and(|&h| (62.0..67.0).contains(&h)),
            "{fired:?}"
        );
        // A plain normal follows the warm night as it follows the cycle.
        let plain = "field: v\nmethod: zscore\nwarmup: 1h\nfor: 2m\nadapt_after: 12h\n";
        let fired = firings(plain, 96.0, broken);
        assert!(fired.is_empty(), "{fired:?}");
    }

    #[test]
    fn likelihood_is_a_probability_and_the_same_for_signals_1000_times_apart() {
        let cfg = "likelihood: true\nwarmup: 30m\n";
        let series = |scale: f64| {
            (0..4 * 360).map(move |i: i64| {
                let spike = if i == 1000 { 12.0 } else { 0.0 };
                (i * STEP, 500.0 + scale * (noise(i) + spike))
            })
        };
        let small = scores(cfg, series(0.01));
        let large = scores(cfg, series(10.0));
        assert!(small.iter().all(|p| (0.0..=1.0).contains(p)), "{small:?}");
        for (a, b) in small.iter().zip(&large) {
            assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        }
        assert!(small[1000] > 0.9999, "the spike: {}", small[1000]);
        let usual = small[600..990].iter().fold(0.0, |m: f64, p| m.max(*p));
        assert!(usual < 0.9999, "noise reached {usual}");
    }

    #[test]
    fn likelihood_alerts_on_the_default_threshold() {
        let spike = signal(|h| if (2.0..2.02).contains(&h) { 15.0 } else { 0.0 });
        let fired = firings("field: v\nlikelihood: true\n", 4.0, spike);
        assert!(
            fired.first().is_some_and(|&h| (2.0..2.05).contains(&h)),
            "{fired:?}"
        );
        let quiet = firings("field: v\nlikelihood: true\n", 4.0, signal(|_| 0.0));
        assert!(quiet.is_empty(), "{quiet:?}");
    }

    /// Every method scores each of the 720 readings of `series` of plain
    /// noise, and none as an anomaly.
    fn each_scored_as_usual(series: impl Iterator<Item = (i64, f64)> + Clone) {
        for method in METHODS {
            let seen = scores(&format!("method: {method}\nwarmup: 30m\n"), series.clone());
            assert_eq!(seen.len(), 720, "{method}");
            assert!(
                seen.iter().all(|s| s.is_finite() && s.abs() < 10.0),
                "{method}: {seen:?}"
            );
        }
    }

    #[test]
    fn out_of_order_readings_that_reach_it_are_each_scored() {
        // A source with `max_out_of_orderness: 0s` passes readings in
        // arrival order: here every pair arrives swapped.
        each_scored_as_usual((0..720).map(|i: i64| ((i ^ 1) * STEP, 10.0 + noise(i ^ 1))));
    }

    #[test]
    fn duplicate_timestamps_are_each_scored() {
        // Every reading twice, at the same time.
        each_scored_as_usual((0..720).map(|i: i64| ((i / 2) * STEP, 10.0 + noise(i / 2))));
    }
}
