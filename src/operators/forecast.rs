//! `forecast`: warn when a field's trend will carry it past a limit soon.
//!
//! ```yaml
//! warming:
//!   type: forecast
//!   inputs: [chilled]
//!   field: temperature_c
//!   limit: 4.0
//!   horizon: 45m        # warn when the breach is predicted within 45 minutes
//!   direction: rising   # or falling
//!   smoothing: 1m       # how fast the level follows the readings
//!   trend_smoothing: 2m # how fast the trend does
//!   warmup: 3m          # no warning until the model has run this long
//!   gap: 1m             # a longer silence restarts the model
//!   for: 1m             # the prediction must hold this long
//! ```
//!
//! Each key's series is followed by Holt's double exponential smoothing
//! (a level and a trend), with smoothing factors derived from the time
//! between readings so irregular sampling is handled. The predicted breach
//! is where the level, moving at the trend, reaches the limit; it must be
//! predicted within `horizon` for `for`, and the reading at the end of that
//! time must be nearer the limit than the level was at its start. A reading
//! far from the prediction (more than 4 times the typical residual) moves
//! the model only as far as that bound: one wild reading cannot fake a
//! trend. The alert carries `predicted_breach` and `eta_s`; it resolves
//! when the value is back on the safe side and no breach is predicted
//! within twice the horizon.
//!
//! Catches: steady drifts (a failing compressor warming the cargo, a
//! slowly blocking filter). Misses: sudden steps (a threshold's job), and
//! drifts that only speed up late: Holt extrapolates a straight line.

use super::alerting::{AlertingSpec, Rule};
use super::{BuildContext, Emitter, FieldRef, Keyed, KeyedOperator, Operator};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::{AlertState, Event, FieldId, Value, time};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    field: Spanned<String>,
    limit: f64,
    horizon: Spanned<Duration>,
    #[serde(default)]
    direction: Direction,
    #[serde(default = "default_smoothing")]
    smoothing: Spanned<Duration>,
    #[serde(default = "default_trend_smoothing")]
    trend_smoothing: Spanned<Duration>,
    #[serde(default = "default_warmup")]
    warmup: Duration,
    /// A longer silence between readings restarts the model (and its
    /// warm-up).
    #[serde(default = "default_gap")]
    gap: Duration,
    #[serde(default, rename = "for")]
    hold: Duration,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    #[default]
    Rising,
    Falling,
}

fn default_smoothing() -> Spanned<Duration> {
    Spanned::unplaced(Duration(60_000))
}

fn default_trend_smoothing() -> Spanned<Duration> {
    Spanned::unplaced(Duration(120_000))
}

fn default_gap() -> Duration {
    Duration(60_000)
}

fn default_warmup() -> Duration {
    Duration(180_000)
}

/// How far a reading may pull the model, in typical residuals.
const CLAMP: f64 = 4.0;

impl AlertingSpec for Config {
    const OWN_VARS: &'static [&'static str] = &["limit", "predicted_breach", "eta_s"];

    fn default_message(&self) -> String {
        format!(
            "{{key}} {} heading for {{limit}}, predicted at {{predicted_breach}}",
            self.field.value
        )
    }

    fn reads(&self) -> Vec<FieldRef> {
        FieldRef::named(&[&self.field])
    }

    fn check(&self) -> Vec<ConfigError> {
        [&self.horizon, &self.smoothing, &self.trend_smoothing]
            .into_iter()
            .filter(|d| d.value.ms() <= 0)
            .map(|d| ConfigError::at(d.loc, "must be longer than 0"))
            .collect()
    }

    fn build(&self, ctx: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator> {
        Keyed::boxed(Forecast {
            rule,
            field: ctx.numeric_field(&self.field),
            limit: self.limit,
            sign: match self.direction {
                Direction::Rising => 1.0,
                Direction::Falling => -1.0,
            },
            horizon_ms: self.horizon.value.ms() as f64,
            level_ms: self.smoothing.value.ms() as f64,
            trend_ms: self.trend_smoothing.value.ms() as f64,
            warmup_ms: self.warmup.ms(),
            gap_ms: self.gap.ms(),
            hold_ms: self.hold.ms(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Forecast {
    rule: Rule,
    field: FieldId,
    limit: f64,
    /// +1 when rising towards the limit is the danger, -1 when falling.
    sign: f64,
    horizon_ms: f64,
    level_ms: f64,
    trend_ms: f64,
    warmup_ms: i64,
    gap_ms: i64,
    hold_ms: i64,
}

/// One key's model and where it is in an episode.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// `None` before the key's first reading.
    model: Option<Holt>,
    episode: Episode,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Holt {
    level: f64,
    /// Change per millisecond.
    trend: f64,
    /// Typical size of a residual (an exponential mean of |residual|).
    scale: f64,
    first: i64,
    last: i64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
enum Episode {
    #[default]
    Normal,
    /// A breach predicted since `since`, when the level was `level`.
    Pending {
        since: i64,
        level: f64,
    },
    Firing {
        since: i64,
    },
}

impl Holt {
    fn new(x: f64, t: i64) -> Holt {
        Holt {
            level: x,
            trend: 0.0,
            scale: 0.0,
            first: t,
            last: t,
        }
    }

    /// Takes reading `x` at `t`, with smoothing time constants in ms.
    fn update(&mut self, x: f64, t: i64, level_ms: f64, trend_ms: f64) {
        let dt = (t - self.last).max(1) as f64;
        let predicted = self.level + self.trend * dt;
        let residual = x - predicted;
        // Until the scale is known, a reading is taken as it is.
        let bound = if self.scale > 0.0 {
            CLAMP * self.scale
        } else {
            f64::INFINITY
        };
        let alpha = 1.0 - (-dt / level_ms).exp();
        let beta = 1.0 - (-dt / trend_ms).exp();
        let level = predicted + alpha * residual.clamp(-bound, bound);
        self.trend += beta * ((level - self.level) / dt - self.trend);
        self.scale += alpha * (residual.abs().min(bound) - self.scale);
        self.level = level;
        self.last = t;
    }
}

impl Forecast {
    /// Milliseconds until the level reaches the limit at the current trend:
    /// 0 when past it, `None` when it is not heading there.
    fn eta(&self, m: &Holt) -> Option<f64> {
        let gap = self.sign * (self.limit - m.level);
        let speed = self.sign * m.trend;
        match (gap <= 0.0, speed > 0.0) {
            (true, _) => Some(0.0),
            (false, true) => Some(gap / speed),
            (false, false) => None,
        }
    }

    fn emit(
        &self,
        state: AlertState,
        event: &Event,
        since: i64,
        m: &Holt,
        eta: f64,
        out: &mut Emitter,
    ) {
        let breach = event.time + eta.min(1e13) as i64;
        let vars = [
            ("limit", Value::Num(self.limit)),
            (
                "predicted_breach",
                Value::Str(time::format_rfc3339(breach).into()),
            ),
            ("eta_s", Value::Num((eta / 1000.0).round())),
        ];
        out.alert(self.rule.alert(state, event, since, m.level, &vars));
    }
}

impl Operator for Forecast {
    type State = State;

    fn on_event(&self, state: &mut State, event: &Event, out: &mut Emitter) {
        let Some(x) = event.num(self.field) else {
            return;
        };
        let t = event.time;
        let m = match &mut state.model {
            Some(m) if t - m.last <= self.gap_ms => {
                m.update(x, t, self.level_ms, self.trend_ms);
                *m
            }
            // A gap (a lost link, readings filtered out) breaks the series:
            // what came before says nothing about the trend after it.
            _ => {
                state.model = Some(Holt::new(x, t));
                return;
            }
        };
        let eta = self.eta(&m);
        let warned = t - m.first >= self.warmup_ms && eta.is_some_and(|e| e <= self.horizon_ms);
        state.episode = match state.episode {
            Episode::Normal | Episode::Pending { .. } if !warned => Episode::Normal,
            Episode::Normal => Episode::Pending {
                since: t,
                level: m.level,
            },
            Episode::Firing { since } => {
                let safe = eta.is_none_or(|e| e > 2.0 * self.horizon_ms);
                if safe {
                    self.emit(
                        AlertState::Resolved,
                        event,
                        since,
                        &m,
                        eta.unwrap_or(f64::INFINITY),
                        out,
                    );
                    Episode::Normal
                } else {
                    Episode::Firing { since }
                }
            }
            pending => pending,
        };
        if let Episode::Pending { since, level } = state.episode
            && t - since >= self.hold_ms
        {
            // A bump that has already turned (a door opened and shut) can
            // still point the model at the limit; a drift keeps the
            // readings moving towards it.
            state.episode = if self.sign * (x - level) > 0.0 {
                let eta = eta.unwrap_or(0.0);
                self.emit(AlertState::Firing, event, since, &m, eta, out);
                Episode::Firing { since }
            } else {
                Episode::Normal
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, MINUTE};
    use crate::event::AlertState::{self, Firing, Resolved};

    /// The cold-chain pipeline's settings.
    const CONFIG: &str = "field: temp\nlimit: 4.0\nhorizon: 45m\nfor: 1m\n";

    /// Feeds `f(minute)` every 10 s for `minutes`, with a little
    /// deterministic noise; `None` is a reading that never arrives (the
    /// door was open and the pipeline filtered it out).
    fn run(config: &str, minutes: i64, f: impl Fn(f64) -> Option<f64>) -> Vec<(AlertState, i64)> {
        let mut h = Harness::new("forecast", config);
        let mut alerts = Vec::new();
        for i in 0..minutes * 6 {
            let m = i as f64 / 6.0;
            let noise = 0.05 * ((i * 7919 % 13) as f64 / 6.0 - 1.0);
            if let Some(v) = f(m) {
                let fired = h.feed("t1", i * 10_000, &[("temp", v + noise)]);
                alerts.extend(fired.iter().map(|a| (a.state, a.event_time)));
            }
        }
        alerts
    }

    /// A failed compressor at minute 30: from 2 C towards `ambient` with
    /// the insulation's 3 h time constant.
    fn failure(ambient: f64) -> impl Fn(f64) -> Option<f64> {
        move |m| match m < 30.0 {
            true => Some(2.0),
            false => Some(ambient - (ambient - 2.0) * (-(m - 30.0) / 180.0).exp()),
        }
    }

    #[test]
    fn warns_at_least_15_minutes_before_a_compressor_failure_breaches() {
        for ambient in [10.0f64, 14.0, 22.0] {
            // When 4 C is crossed, from the model of the drift.
            let breach = 30.0 + 180.0 * ((ambient - 2.0) / (ambient - 4.0)).ln();
            let alerts = run(CONFIG, 120, failure(ambient));
            let (state, fired) = alerts.first().copied().expect("a warning");
            assert_eq!(state, Firing);
            let lead = breach - fired as f64 / MINUTE as f64;
            assert!(
                lead >= 15.0,
                "ambient {ambient}: warned {lead:.1} min ahead"
            );
        }
    }

    #[test]
    fn noise_a_spike_a_delivery_and_a_step_after_a_gap_raise_nothing() {
        let quiet = |m: f64| match m {
            m if (40.0..40.1).contains(&m) => Some(20.0), // one wild reading
            m if (60.0..61.5).contains(&m) => None,       // door open: filtered
            m if (61.5..75.0).contains(&m) => Some(2.0 + 1.2 * (-(m - 61.5) / 5.0).exp()),
            m if (90.0..100.0).contains(&m) => None, // out of coverage
            m if m >= 100.0 => Some(2.8),            // back, a little warmer
            _ => Some(2.0),
        };
        assert_eq!(run(CONFIG, 180, quiet), []);
    }

    #[test]
    fn a_drift_too_slow_to_matter_within_the_horizon_raises_nothing() {
        // 0.01 C a minute: 4 C is more than three hours away.
        assert_eq!(run(CONFIG, 120, |m| Some(2.0 + 0.01 * m)), []);
    }

    #[test]
    fn resolves_when_the_trend_reverses_and_falling_limits_work() {
        let ramp = |m: f64| match m < 40.0 {
            true => Some(2.0 + 0.05 * m),
            false => Some(4.0 - 0.2 * (m - 40.0)),
        };
        let states: Vec<_> = run(CONFIG, 60, ramp).iter().map(|a| a.0).collect();
        assert_eq!(states, [Firing, Resolved]);

        let falling = "field: temp\nlimit: 10\ndirection: falling\nhorizon: 15m\n";
        let alerts = run(falling, 30, |m| Some(20.0 - 0.5 * m));
        assert_eq!(alerts.first().map(|a| a.0), Some(Firing));
    }
}
