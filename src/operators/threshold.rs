//! `threshold`: alert when a field stays above (or below) a limit.
//!
//! ```yaml
//! too_warm:
//!   type: threshold
//!   inputs: [trucks]
//!   field: temperature_c
//!   above: 4.0
//!   for: 2m            # must hold for 2 minutes of event time
//!   clear_below: 3.5   # resolves only below 3.5
//!   severity: critical
//!   message: "{key} reefer at {value} C (limit {limit} C)"
//! ```
//!
//! One excursion gives one `firing` alert once the condition has held for
//! `for`, and one `resolved` alert when the value crosses back past the
//! clear level. A reading that ends the excursion before `for` has passed
//! (a spike) gives nothing.

use super::alerting::{AlertingSpec, Episode, Rule};
use super::{BuildContext, Emitter, FieldRef, Keyed, KeyedOperator, Operator};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::{AlertState, Event, FieldId, Value};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The numeric field to watch.
    field: Spanned<String>,
    /// Fire when the value is above this limit.
    above: Option<Spanned<f64>>,
    /// Fire when the value is below this limit.
    below: Option<Spanned<f64>>,
    /// How long, in event time, the condition must hold before firing.
    #[serde(default, rename = "for")]
    hold: Duration,
    /// With `above`: resolve only once the value is below this. Default: the limit.
    clear_below: Option<Spanned<f64>>,
    /// With `below`: resolve only once the value is above this. Default: the limit.
    clear_above: Option<Spanned<f64>>,
}

impl Config {
    /// (limit, clear level, fires above?) once `check` has passed.
    fn levels(&self) -> (f64, f64, bool) {
        match (&self.above, &self.below) {
            (Some(above), _) => (
                above.value,
                self.clear_below.as_ref().map_or(above.value, |c| c.value),
                true,
            ),
            (None, Some(below)) => (
                below.value,
                self.clear_above.as_ref().map_or(below.value, |c| c.value),
                false,
            ),
            (None, None) => (f64::NAN, f64::NAN, true),
        }
    }
}

impl AlertingSpec for Config {
    const OWN_VARS: &'static [&'static str] = &["limit"];

    fn default_message(&self) -> String {
        let side = if self.above.is_some() {
            "above"
        } else {
            "below"
        };
        format!(
            "{{key}} {} is {{value}}, {side} {{limit}}",
            self.field.value
        )
    }

    fn reads(&self) -> Vec<FieldRef> {
        FieldRef::named(&[&self.field])
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |loc, message: &str| problems.push(ConfigError::at(loc, message));
        match (&self.above, &self.below) {
            (None, None) => problem(self.field.loc, "give `above` or `below`"),
            (Some(_), Some(b)) => problem(b.loc, "give `above` or `below`, not both"),
            _ => {}
        }
        match (&self.above, &self.clear_below) {
            (Some(above), Some(clear)) if clear.value > above.value => problem(
                clear.loc,
                "`clear_below` must not be above the `above` limit",
            ),
            (None, Some(clear)) => problem(clear.loc, "`clear_below` goes with `above`"),
            _ => {}
        }
        match (&self.below, &self.clear_above) {
            (Some(below), Some(clear)) if clear.value < below.value => problem(
                clear.loc,
                "`clear_above` must not be below the `below` limit",
            ),
            (None, Some(clear)) => problem(clear.loc, "`clear_above` goes with `below`"),
            _ => {}
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator> {
        let (limit, clear, above) = self.levels();
        Keyed::boxed(Threshold {
            rule,
            field: ctx.numeric_field(&self.field),
            limit,
            clear,
            above,
            hold_ms: self.hold.ms(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Threshold {
    rule: Rule,
    field: FieldId,
    limit: f64,
    clear: f64,
    above: bool,
    hold_ms: i64,
}

impl Threshold {
    fn breached(&self, v: f64) -> bool {
        if self.above {
            v > self.limit
        } else {
            v < self.limit
        }
    }

    fn cleared(&self, v: f64) -> bool {
        if self.above {
            v < self.clear
        } else {
            v > self.clear
        }
    }

    fn emit(&self, state: AlertState, event: &Event, since: i64, value: f64, out: &mut Emitter) {
        let vars = [("limit", Value::Num(self.limit))];
        out.alert(self.rule.alert(state, event, since, value, &vars));
    }
}

impl Operator for Threshold {
    type State = Episode;

    fn on_event(&self, state: &mut Episode, event: &Event, out: &mut Emitter) {
        let Some(v) = event.num(self.field) else {
            return;
        };
        let (breached, cleared) = (self.breached(v), self.cleared(v));
        *state = state.step(
            event.time,
            breached,
            cleared,
            self.hold_ms,
            |alert, since| self.emit(alert, event, since, v, out),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, MINUTE};
    use crate::event::AlertState::{Firing, Resolved};

    const CONFIG: &str = "field: temp\nabove: 4.0\nfor: 2m\nclear_below: 3.5\n";

    #[test]
    fn fires_once_after_holding_and_resolves_below_clear() {
        let mut h = Harness::new("threshold", CONFIG);
        let temps = [3.0, 4.5, 4.6, 4.7, 4.8, 3.8, 3.4, 3.0];
        let alerts = h.alerts_for_series("t1", &temps, MINUTE);
        assert_eq!(
            alerts,
            [(Firing, 3 * MINUTE, 4.7), (Resolved, 6 * MINUTE, 3.4)]
        );
    }

    #[test]
    fn a_spike_or_short_excursion_does_not_fire() {
        let mut h = Harness::new("threshold", CONFIG);
        let temps = [3.0, 9.0, 3.0, 4.5, 4.5, 3.0, 3.0];
        assert!(h.alerts_for_series("t1", &temps, MINUTE).is_empty());
    }

    #[test]
    fn hysteresis_absorbs_flapping_around_the_limit() {
        let mut h = Harness::new("threshold", CONFIG);
        let temps = [4.5, 4.5, 4.5, 3.9, 4.1, 3.9, 4.1, 3.6, 3.4];
        let alerts = h.alerts_for_series("t1", &temps, MINUTE);
        assert_eq!(
            alerts,
            [(Firing, 2 * MINUTE, 4.5), (Resolved, 8 * MINUTE, 3.4)]
        );
    }

    #[test]
    fn a_dip_below_the_limit_restarts_the_hold() {
        let mut h = Harness::new("threshold", CONFIG);
        let temps = [4.5, 4.5, 3.9, 4.5, 4.5, 4.5];
        let alerts = h.alerts_for_series("t1", &temps, MINUTE);
        assert_eq!(alerts, [(Firing, 5 * MINUTE, 4.5)]);
    }

    #[test]
    fn below_mode_with_clear_above_and_immediate_firing() {
        let mut h = Harness::new("threshold", "field: temp\nbelow: 11.5\nclear_above: 12\n");
        let alerts = h.alerts_for_series("t1", &[12.5, 11.0, 11.8, 12.2], MINUTE);
        assert_eq!(
            alerts,
            [(Firing, MINUTE, 11.0), (Resolved, 3 * MINUTE, 12.2)]
        );
    }

    #[test]
    fn keys_are_independent_and_messages_render() {
        let mut h = Harness::new(
            "threshold",
            "field: temp\nabove: 4\nmessage: \"{key} at {value:.1} C (limit {limit} C)\"\n",
        );
        let a = h.feed("a", 0, &[("temp", 5.0)]);
        let b = h.feed("b", 0, &[("temp", 3.0)]);
        assert_eq!(a.len(), 1);
        assert!(b.is_empty());
        assert_eq!(a[0].message, "a at 5.0 C (limit 4 C)");
        assert_eq!(a[0].details, [("limit", crate::event::Value::Num(4.0))]);
    }

    #[test]
    fn resolved_alerts_take_the_resolved_message_or_else_the_firing_one() {
        let message = "message: \"{key} at {value} C (limit {limit} C)\"\n";
        let resolved = "resolved_message: \"{key} back to {value} C ({door})\"\n";
        let mut h = Harness::new(
            "threshold",
            &format!("field: temp\nabove: 4\n{message}{resolved}"),
        );
        let fired = h.feed("a", 0, &[("temp", 5.0), ("door", 1.0)]);
        let cleared = h.feed("a", MINUTE, &[("temp", 3.5), ("door", 0.0)]);
        assert_eq!(fired[0].message, "a at 5 C (limit 4 C)");
        assert_eq!(
            (cleared[0].state, cleared[0].message.as_str()),
            (Resolved, "a back to 3.5 C (0)")
        );
        let mut h = Harness::new("threshold", &format!("field: temp\nabove: 4\n{message}"));
        h.feed("a", 0, &[("temp", 5.0)]);
        let cleared = h.feed("a", MINUTE, &[("temp", 3.5)]);
        assert_eq!(cleared[0].message, "a at 3.5 C (limit 4 C)");
    }

    #[test]
    fn rejects_inconsistent_levels() {
        for bad in [
            "field: t\n",
            "field: t\nabove: 1\nbelow: 0\n",
            "field: t\nabove: 4\nclear_below: 5\n",
            "field: t\nbelow: 4\nclear_below: 3\n",
        ] {
            assert!(Harness::try_new("threshold", bad).is_err(), "{bad}");
        }
    }
}
