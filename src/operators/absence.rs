//! `absence`: alert when a known entity stops sending.
//!
//! ```yaml
//! silent:
//!   type: absence
//!   inputs: [trucks]
//!   timeout: 5m         # no reading from a known key for 5 minutes
//!   severity: warning
//!   message: "{key}: no data since {last_seen}"
//! ```
//!
//! Silence is measured on the runtime's timer clock: the wall clock when
//! the pipeline reads a broker (or a paced replay), the event time the
//! worker has seen when it replays a recording as fast as it can. A key is
//! known once it has sent one reading; the firing alert's `event_time` is
//! the last reading's time plus `timeout`, and its next reading resolves
//! the episode (with that reading's time, which may be older when a device
//! sends a backlog after a gap).

use super::alerting::{AlertingSpec, Rule};
use super::{BuildContext, Emitter, FieldRef, Keyed, KeyedOperator, Operator};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::{AlertState, Event, Key, Value, time};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Silence that fires.
    timeout: Spanned<Duration>,
}

impl AlertingSpec for Config {
    const OWN_VARS: &'static [&'static str] = &["last_seen", "timeout"];

    fn default_message(&self) -> String {
        "{key}: no data since {last_seen}".into()
    }

    fn reads(&self) -> Vec<FieldRef> {
        Vec::new()
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if self.timeout.value.ms() <= 0 {
            problems.push(ConfigError::at(self.timeout.loc, "must be longer than 0"));
        }
        problems
    }

    fn build(&self, _: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator> {
        Keyed::boxed(Absence {
            rule,
            timeout_ms: self.timeout.value.ms(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Absence {
    rule: Rule,
    timeout_ms: i64,
}

/// What the operator knows of one key.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// A reading came since the last tick.
    heard: bool,
    /// Timer-clock time of the first tick after the last reading; `None`
    /// before the key's first reading.
    heard_at: Option<i64>,
    /// Event time of the last reading.
    last_event: i64,
    firing: bool,
}

impl Absence {
    fn emit(&self, state: AlertState, event: &Event, last_event: i64, out: &mut Emitter) {
        let vars = [
            (
                "last_seen",
                Value::Str(time::format_rfc3339(last_event).into()),
            ),
            (
                "timeout",
                Value::Str(Duration(self.timeout_ms).to_string().into()),
            ),
        ];
        let silence = (event.time - last_event) as f64 / 1000.0;
        out.alert(self.rule.alert(state, event, last_event, silence, &vars));
    }
}

impl Operator for Absence {
    type State = State;

    const TICKS: bool = true;

    fn on_event(&self, state: &mut State, event: &Event, out: &mut Emitter) {
        if state.firing {
            self.emit(AlertState::Resolved, event, state.last_event, out);
            state.firing = false;
        }
        state.heard = true;
        state.last_event = state.last_event.max(event.time);
    }

    fn on_tick(&self, state: &mut State, key: &Key, now: i64, out: &mut Emitter) {
        if std::mem::take(&mut state.heard) {
            state.heard_at = Some(now);
            return;
        }
        let silent = state.heard_at.is_some_and(|at| now - at >= self.timeout_ms);
        if silent && !state.firing {
            let at = Event::new(key.clone(), state.last_event + self.timeout_ms);
            self.emit(AlertState::Firing, &at, state.last_event, out);
            state.firing = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, alerts};
    use crate::event::AlertState::{Firing, Resolved};

    const SECOND: i64 = 1000;

    /// Feeds a reading of `key` at `t` seconds.
    fn read(h: &mut Harness, key: &str, t: i64) -> Vec<(crate::event::AlertState, i64)> {
        let got = h.feed(key, t * SECOND, &[("temp", 1.0)]);
        got.iter().map(|a| (a.state, a.event_time)).collect()
    }

    /// Ticks every key at `t` seconds.
    fn tick(h: &mut Harness, keys: &[&str], t: i64) -> Vec<(crate::event::AlertState, i64)> {
        let outputs: Vec<_> = keys.iter().flat_map(|k| h.tick(k, t * SECOND)).collect();
        alerts(outputs)
            .iter()
            .map(|a| (a.state, a.event_time))
            .collect()
    }

    #[test]
    fn a_key_silent_for_the_timeout_fires_once_and_its_next_reading_resolves() {
        let mut h = Harness::new("absence", "timeout: 60s\n");
        let mut fired = Vec::new();
        for t in 0..200 {
            // t1 reports every 10 s but goes quiet from 50 s to 150 s;
            // t2 reports throughout.
            if t % 10 == 0 && !(50..150).contains(&t) {
                fired.extend(read(&mut h, "t1", t));
            }
            if t % 10 == 0 {
                fired.extend(read(&mut h, "t2", t));
            }
            fired.extend(tick(&mut h, &["t1", "t2"], t));
        }
        assert_eq!(fired, [(Firing, 100 * SECOND), (Resolved, 150 * SECOND)]);
    }

    #[test]
    fn gaps_shorter_than_the_timeout_and_unknown_keys_raise_nothing() {
        let mut h = Harness::new("absence", "timeout: 60s\n");
        let mut fired = Vec::new();
        for t in 0..300 {
            if t % 50 == 0 {
                fired.extend(read(&mut h, "t1", t));
            }
            fired.extend(tick(&mut h, &["t1", "never-seen"], t));
        }
        assert!(fired.is_empty(), "{fired:?}");
    }
}
