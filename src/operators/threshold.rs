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
//!
//! Two levels instead of one limit (Kapacitor's warn and crit, with their
//! resets): each level is such a condition of its own, and one episode
//! moves between them. It fires at the highest level that holds, says so
//! again (`firing`, with `previous_severity`) each time that level
//! changes, and resolves once no level holds.
//!
//! ```yaml
//!   warning: {above: 3.0, for: 5m, clear_below: 2.5}
//!   critical: {above: 4.0, for: 2m, clear_below: 3.5}
//! ```
//!
//! Levels may come from the data, for limits per asset: `above:
//! setpoint_c + 2` is evaluated on each reading (see `expr.rs`), and a
//! reading it cannot be evaluated on leaves the episode as it is.

use super::alerting::{AlertingSpec, Episode, Rule};
use super::expr::Expr;
use super::{BuildContext, Emitter, FieldRef, Keyed, KeyedOperator, Operator};
use crate::config::{ConfigError, Duration, Loc, Spanned};
use crate::event::{AlertState, Event, FieldId, Severity, Value, time};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The numeric field to watch.
    field: Spanned<String>,
    /// Fire when the value is above this limit: a number, a field, or
    /// arithmetic over the event's fields (`setpoint_c + 2`).
    above: Option<Spanned<String>>,
    /// Fire when the value is below this limit, written as `above` is.
    below: Option<Spanned<String>>,
    /// How long, in event time, the condition must hold before firing.
    #[serde(default, rename = "for")]
    hold: Duration,
    /// With `above`: resolve only once the value is below this (written
    /// as the limit is). Default: the limit.
    clear_below: Option<Spanned<String>>,
    /// With `below`: resolve only once the value is above this. Default: the limit.
    clear_above: Option<Spanned<String>>,
    /// The lower of two levels, instead of the options above.
    warning: Option<Level>,
    /// The higher of two levels.
    critical: Option<Level>,
}

/// One level's condition: the options a single-level threshold takes.
/// `Config` repeats them rather than `#[serde(flatten)]` this, because
/// serde does not combine `flatten` with `deny_unknown_fields`, which is
/// what points a typo at its line.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Level {
    above: Option<Spanned<String>>,
    below: Option<Spanned<String>>,
    #[serde(default, rename = "for")]
    hold: Duration,
    clear_below: Option<Spanned<String>>,
    clear_above: Option<Spanned<String>>,
}

/// Which side of the limit fires.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Above,
    Below,
}

impl Side {
    /// Whether `a` is past `b` on this side: above it, or below it.
    fn past(self, a: f64, b: f64) -> bool {
        match self {
            Side::Above => a > b,
            Side::Below => a < b,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Above => "above",
            Side::Below => "below",
        }
    }
}

/// A level's limit as written, and its clear level with the option naming it.
struct Written<'a> {
    side: Side,
    limit: &'a Spanned<String>,
    clear: Option<(&'static str, &'a Spanned<String>)>,
}

impl Config {
    /// The levels, by severity; the single level has the rule's.
    fn levels(&self) -> Vec<(Option<Severity>, Level)> {
        let two = [
            (Severity::Warning, &self.warning),
            (Severity::Critical, &self.critical),
        ];
        let leveled: Vec<_> = (two.into_iter())
            .filter_map(|(severity, level)| Some((Some(severity), level.clone()?)))
            .collect();
        if !leveled.is_empty() {
            return leveled;
        }
        let single = Level {
            above: self.above.clone(),
            below: self.below.clone(),
            hold: self.hold,
            clear_below: self.clear_below.clone(),
            clear_above: self.clear_above.clone(),
        };
        vec![(None, single)]
    }
}

impl Level {
    /// The limit and clear level, once `check` has found one limit.
    fn written(&self) -> Option<Written<'_>> {
        let (side, limit, clear) = match (&self.above, &self.below) {
            (Some(limit), _) => (Side::Above, limit, ("clear_below", &self.clear_below)),
            (None, Some(limit)) => (Side::Below, limit, ("clear_above", &self.clear_above)),
            (None, None) => return None,
        };
        let (name, clear) = clear;
        Some(Written {
            side,
            limit,
            clear: clear.as_ref().map(|text| (name, text)),
        })
    }

    fn options(&self) -> [&Option<Spanned<String>>; 4] {
        [
            &self.above,
            &self.below,
            &self.clear_below,
            &self.clear_above,
        ]
    }

    /// Problems of this level; `loc` is where to report a missing limit.
    fn check(&self, loc: Loc) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        let mut problem = |loc, message: &str| problems.push(ConfigError::at(loc, message));
        match (&self.above, &self.below) {
            (None, None) => problem(loc, "give `above` or `below`"),
            (Some(_), Some(b)) => problem(b.loc, "give `above` or `below`, not both"),
            _ => {}
        }
        if let (None, Some(clear)) = (&self.above, &self.clear_below) {
            problem(clear.loc, "`clear_below` goes with `above`");
        }
        if let (None, Some(clear)) = (&self.below, &self.clear_above) {
            problem(clear.loc, "`clear_above` goes with `below`");
        }
        let Some(written) = self.written() else {
            return problems;
        };
        let (limit, clear) = (written.limit(), written.clear());
        // Levels from the data can only be compared when they are known;
        // constant ones are compared here.
        let constant = |level: Option<&Result<Expr, _>>| level?.as_ref().ok()?.constant();
        if let (Some(limit), Some(clear), Some((name, text))) = (
            constant(Some(&limit)),
            constant(clear.as_ref()),
            written.clear,
        ) && written.side.past(clear, limit)
        {
            let side = written.side.name();
            problem(
                text.loc,
                &format!("`{name}` must not be {side} the `{side}` limit"),
            );
        }
        problems.extend(limit.err());
        problems.extend(clear.and_then(Result::err));
        problems
    }

    /// The running condition; `check` has passed.
    fn bound(&self, ctx: &mut BuildContext) -> Bound {
        let written = self.written();
        let mut bound = |level: Result<Expr, ConfigError>| {
            let mut expr = level.unwrap_or(Expr::Num(f64::NAN));
            expr.bind(ctx);
            expr
        };
        Bound {
            side: written.as_ref().map_or(Side::Above, |w| w.side),
            limit: bound(
                written
                    .as_ref()
                    .map_or(Ok(Expr::Num(f64::NAN)), Written::limit),
            ),
            clear: written.as_ref().and_then(Written::clear).map(bound),
            hold_ms: self.hold.ms(),
        }
    }
}

impl Written<'_> {
    fn limit(&self) -> Result<Expr, ConfigError> {
        Expr::parse_number(self.limit, &format!("bad `{}`", self.side.name()))
    }

    fn clear(&self) -> Option<Result<Expr, ConfigError>> {
        let (name, text) = self.clear?;
        Some(Expr::parse_number(text, &format!("bad `{name}`")))
    }
}

impl AlertingSpec for Config {
    const OWN_VARS: &'static [&'static str] = &["limit"];

    fn default_message(&self) -> String {
        let levels = self.levels();
        let written = levels.last().and_then(|(_, level)| level.written());
        let side = written.map_or(Side::Above, |w| w.side);
        format!(
            "{{key}} {} is {{value}}, {} {{limit}}",
            self.field.value,
            side.name()
        )
    }

    fn reads(&self) -> Vec<FieldRef> {
        let mut reads = FieldRef::named(&[&self.field]);
        for (_, level) in self.levels() {
            for option in level.options().into_iter().flatten() {
                let Ok(expr) = Expr::parse(option) else {
                    continue;
                };
                reads.extend(expr.fields().into_iter().map(|name| FieldRef {
                    name: name.to_string(),
                    loc: option.loc,
                }));
            }
        }
        reads
    }

    fn check(&self) -> Vec<ConfigError> {
        let leveled = self.warning.is_some() || self.critical.is_some();
        let single = [
            &self.above,
            &self.below,
            &self.clear_below,
            &self.clear_above,
        ];
        if let Some(own) = single.into_iter().flatten().next().filter(|_| leveled) {
            let text = "with `warning` and `critical`, each level takes its own `above` or `below`";
            return vec![ConfigError::at(own.loc, text)];
        }
        let levels = self.levels();
        let mut problems: Vec<ConfigError> = (levels.iter())
            .flat_map(|(_, level)| level.check(self.field.loc))
            .collect();
        let sides: Vec<Side> = (levels.iter())
            .filter_map(|(_, level)| Some(level.written()?.side))
            .collect();
        if sides.windows(2).any(|pair| pair[0] != pair[1]) {
            let text = "`warning` and `critical` must both be `above` or both `below`";
            problems.push(ConfigError::at(self.field.loc, text));
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator> {
        let field = ctx.numeric_field(&self.field);
        let mut levels: Vec<(Option<Severity>, Bound)> = (self.levels().iter())
            .map(|(severity, level)| (*severity, level.bound(ctx)))
            .collect();
        match levels.as_slice() {
            [(None, _)] => Keyed::boxed(Threshold {
                rule,
                field,
                bound: levels.remove(0).1,
            }),
            _ => Keyed::boxed(Leveled {
                rule,
                field,
                levels: (levels.into_iter())
                    .map(|(severity, bound)| (severity.unwrap_or_default(), bound))
                    .collect(),
            }),
        }
    }
}

/// One level's condition, ready to judge readings.
#[derive(Clone, Debug)]
struct Bound {
    side: Side,
    /// Evaluated on each event: a constant, or per asset from its fields.
    limit: Expr,
    /// The clear level; `None` when it is the limit.
    clear: Option<Expr>,
    hold_ms: i64,
}

impl Bound {
    /// (limit, clear level) for `event`; `None` when the event does not
    /// give them (a field they read is missing).
    fn levels(&self, event: &Event) -> Option<(f64, f64)> {
        let limit = self.limit.number(event)?;
        let clear = match &self.clear {
            Some(clear) => clear.number(event)?,
            None => limit,
        };
        // A clear level past the limit would resolve the reading that
        // fires it; from the data it can be, so it is held at the limit.
        match self.side.past(clear, limit) {
            true => Some((limit, limit)),
            false => Some((limit, clear)),
        }
    }

    /// Moves `episode` on with the reading `v` of `event`; `emit` gets
    /// each state change with the episode's start and the limit.
    fn step(
        &self,
        episode: Episode,
        event: &Event,
        v: f64,
        mut emit: impl FnMut(AlertState, i64, f64),
    ) -> Episode {
        // Without its limit a reading cannot be judged: like a reading
        // without the field, it leaves the episode where it is.
        let Some((limit, clear)) = self.levels(event) else {
            return episode;
        };
        episode.step(
            event.time,
            self.side.past(v, limit),
            self.side.past(clear, v),
            self.hold_ms,
            |state, since| emit(state, since, limit),
        )
    }
}

#[derive(Clone, Debug)]
pub struct Threshold {
    rule: Rule,
    field: FieldId,
    bound: Bound,
}

impl Operator for Threshold {
    type State = Episode;

    fn on_event(&self, state: &mut Episode, event: &Event, out: &mut Emitter) {
        let Some(v) = event.num(self.field) else {
            return;
        };
        *state = self.bound.step(*state, event, v, |alert, since, limit| {
            let vars = [("limit", Value::Num(limit))];
            out.alert(self.rule.alert(alert, event, since, v, &vars));
        });
    }
}

/// A threshold of two levels.
#[derive(Clone, Debug)]
pub struct Leveled {
    rule: Rule,
    field: FieldId,
    /// Lowest first.
    levels: Vec<(Severity, Bound)>,
}

/// Where one key is: each level's own episode, and the episode the key
/// is in once one fires: its start, its level, that level's limit and
/// start.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct LevelState {
    levels: Vec<Episode>,
    firing: Option<(i64, Severity, f64, i64)>,
}

impl Operator for Leveled {
    type State = LevelState;

    fn on_event(&self, state: &mut LevelState, event: &Event, out: &mut Emitter) {
        let Some(v) = event.num(self.field) else {
            return;
        };
        state.levels.resize(self.levels.len(), Episode::default());
        // (the level's own start, its severity, its limit).
        let mut top = None;
        for ((severity, bound), episode) in self.levels.iter().zip(&mut state.levels) {
            let mut limit = None;
            *episode = bound.step(*episode, event, v, |_, _, l| limit = Some(l));
            if let Episode::Firing { since } = *episode {
                let limit = limit.or_else(|| bound.levels(event).map(|(l, _)| l));
                top = Some((since, *severity, limit.unwrap_or(f64::NAN)));
            }
        }
        // (state, the episode's start, the level's: its start, severity
        // and limit, and the level it moved from).
        let (state_now, since, (level_since, severity, limit), previous) = match (state.firing, top)
        {
            (None, Some(now)) => (AlertState::Firing, now.0, now, None),
            (Some(was), Some(now)) if was.1 != now.1 => {
                (AlertState::Firing, was.0, now, Some(was.1))
            }
            (Some(was), None) => (AlertState::Resolved, was.0, (was.3, was.1, was.2), None),
            _ => return,
        };
        let vars = [
            ("limit", Value::Num(limit)),
            (
                "level_start",
                Value::Str(time::format_rfc3339(level_since).into()),
            ),
        ];
        let mut raised = self.rule.alert(state_now, event, since, v, &vars);
        raised.severity = severity;
        raised.previous = previous;
        out.alert(raised);
        state.firing = match state_now {
            AlertState::Firing => Some((since, severity, limit, level_since)),
            AlertState::Resolved => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, MINUTE};
    use crate::event::AlertState::{Firing, Resolved};
    use crate::event::Value;

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

    /// Per-asset limits: each truck's limit is 2 C over its own setpoint.
    #[test]
    fn limits_from_the_data_are_per_key_and_the_alert_carries_the_evaluated_one() {
        let config = "field: temp\nabove: setpoint + 2\nclear_below: setpoint + 1.5\n";
        let mut h = Harness::new("threshold", config);
        let reading = |h: &mut Harness, key, t, temp, setpoint| {
            let alerts = h.feed(key, t * MINUTE, &[("temp", temp), ("setpoint", setpoint)]);
            let seen = alerts.iter().map(|a| (a.state, a.details.clone()));
            seen.collect::<Vec<_>>()
        };
        let limit = |v| vec![("limit", Value::Num(v))];
        assert_eq!(
            reading(&mut h, "chilled", 0, 4.5, 2.0),
            [(Firing, limit(4.0))]
        );
        assert!(reading(&mut h, "frozen", 0, 3.0, -18.0).len() == 1);
        assert!(reading(&mut h, "deep", 0, -15.5, -18.0).len() == 1);
        assert!(reading(&mut h, "chilled", 1, 3.6, 2.0).is_empty());
        assert_eq!(
            reading(&mut h, "chilled", 2, 3.4, 2.0),
            [(Resolved, limit(4.0))]
        );
        assert!(reading(&mut h, "deep", 1, -16.4, -18.0).is_empty());
        assert_eq!(
            reading(&mut h, "deep", 2, -16.6, -18.0),
            [(Resolved, limit(-16.0))]
        );
    }

    #[test]
    fn a_reading_without_its_limit_leaves_the_episode_as_it_is() {
        let mut h = Harness::new("threshold", "field: temp\nabove: max_temp\nfor: 2m\n");
        assert!(
            h.feed("t1", 0, &[("temp", 5.0), ("max_temp", 4.0)])
                .is_empty()
        );
        // Still pending since 0: the next reading with a limit decides.
        assert!(h.feed("t1", MINUTE, &[("temp", 3.0)]).is_empty());
        let fired = h.feed("t1", 2 * MINUTE, &[("temp", 5.0), ("max_temp", 4.0)]);
        assert_eq!((fired[0].state, fired[0].episode_start), (Firing, 0));
        // Firing: a reading without a limit does not resolve.
        assert!(h.feed("t1", 3 * MINUTE, &[("temp", 1.0)]).is_empty());
        let resolved = h.feed("t1", 4 * MINUTE, &[("temp", 1.0), ("max_temp", 4.0)]);
        assert_eq!(resolved[0].state, Resolved);
    }

    #[test]
    fn a_clear_level_from_the_data_past_the_limit_is_held_at_the_limit() {
        let mut h = Harness::new("threshold", "field: temp\nabove: hi\nclear_below: lo\n");
        let levels = [("hi", 4.0), ("lo", 6.0)];
        let at = |temp| [("temp", temp), levels[0], levels[1]];
        assert_eq!(h.feed("t1", 0, &at(5.0))[0].state, Firing);
        assert!(h.feed("t1", MINUTE, &at(4.5)).is_empty());
        assert_eq!(h.feed("t1", 2 * MINUTE, &at(3.9))[0].state, Resolved);
    }

    #[test]
    fn limits_are_numbers_fields_or_arithmetic_and_errors_point_into_them() {
        for good in [
            "above: -15",
            "below: limit_c",
            "above: \"(a + b) / 2\"",
            "above: -x",
        ] {
            assert!(
                Harness::try_new("threshold", &format!("field: t\n{good}\n")).is_ok(),
                "{good}"
            );
        }
        let error = |options: &str| {
            let mut errors = Harness::try_new("threshold", options)
                .err()
                .unwrap_or_default();
            let e = errors.remove(0);
            (e.loc.map(|l| (l.line, l.col)), e.message)
        };
        assert_eq!(
            error("field: t\nabove: setpoint_c +\n"),
            (
                Some((2, 20)),
                "bad `above`: expected a value, found the end".into()
            )
        );
        assert_eq!(
            error("field: t\nabove: 4\nclear_below: setpoint_c > 2\n"),
            (
                Some((3, 14)),
                "bad `clear_below`: `setpoint_c > 2` is not a number, a field or arithmetic over fields (like `setpoint_c + 2`)".into()
            )
        );
    }

    #[test]
    fn rejects_inconsistent_levels() {
        for bad in [
            "field: t\n",
            "field: t\nabove: 1\nbelow: 0\n",
            "field: t\nabove: 4\nclear_below: 5\n",
            "field: t\nbelow: 4\nclear_below: 3\n",
            "field: t\nbelow: -15\nclear_above: -16\n",
        ] {
            assert!(Harness::try_new("threshold", bad).is_err(), "{bad}");
        }
    }

    const LEVELS: &str = "field: temp\nwarning: {above: 3.0, for: 2m, clear_below: 2.5}\ncritical: {above: 4.0, for: 1m, clear_below: 3.5}\n";

    /// (state, minute, severity, previous severity) of what `temps`, one a
    /// minute from minute 0, raised.
    fn leveled(
        temps: &[f64],
    ) -> Vec<(
        crate::event::AlertState,
        i64,
        &'static str,
        Option<&'static str>,
    )> {
        let mut h = Harness::new("threshold", LEVELS);
        let mut seen = Vec::new();
        for (i, t) in temps.iter().enumerate() {
            for a in h.feed("t1", i as i64 * MINUTE, &[("temp", *t)]) {
                let previous = a.previous.map(|p| p.as_str());
                seen.push((
                    a.state,
                    a.event_time / MINUTE,
                    a.severity.as_str(),
                    previous,
                ));
            }
        }
        seen
    }

    #[test]
    fn an_episode_moves_between_levels_each_with_its_own_hold_and_reset() {
        // Warm from minute 1; critical from minute 4, held for a minute
        // at 5; down to the warning band at 7 (below 3.5); resolved at 9
        // (below 2.5), not at 8 (2.8 is above the warning's reset).
        let temps = [2.0, 3.2, 3.3, 3.4, 4.2, 4.3, 4.1, 3.2, 2.8, 2.4];
        assert_eq!(
            leveled(&temps),
            [
                (Firing, 3, "warning", None),
                (Firing, 5, "critical", Some("warning")),
                (Firing, 7, "warning", Some("critical")),
                (Resolved, 9, "warning", None),
            ]
        );
    }

    #[test]
    fn a_jump_straight_past_both_levels_fires_at_the_highest_once_it_holds() {
        // Critical holds after a minute, before warning's two: one alert.
        let temps = [2.0, 5.0, 5.0, 5.0, 2.0];
        assert_eq!(
            leveled(&temps),
            [
                (Firing, 2, "critical", None),
                (Resolved, 4, "critical", None)
            ]
        );
    }

    #[test]
    fn each_alert_of_an_episode_has_its_own_id_and_says_its_previous_level() {
        let mut h = Harness::new("threshold", LEVELS);
        let mut raised = Vec::new();
        for (i, t) in [3.5, 3.5, 4.5, 4.5, 3.4, 4.5, 4.5, 2.0].iter().enumerate() {
            raised.extend(h.feed("t1", i as i64 * MINUTE, &[("temp", *t)]));
        }
        let ids: std::collections::BTreeSet<_> = raised.iter().map(|a| a.id("p")).collect();
        assert_eq!(ids.len(), raised.len(), "{raised:?}");
        let json: serde_json::Value = serde_json::from_str(&raised[1].to_json("p", 0)).unwrap();
        assert_eq!(json["previous_severity"], "warning");
        assert_eq!(json["severity"], "critical");
    }

    #[test]
    fn levels_are_checked() {
        for bad in [
            "field: t\nabove: 4\nwarning: {above: 3}\n",
            "field: t\nwarning: {above: 3}\ncritical: {below: 1}\n",
            "field: t\nwarning: {clear_below: 3}\n",
            "field: t\ncritical: {above: 4, clear_below: 5}\n",
        ] {
            assert!(Harness::try_new("threshold", bad).is_err(), "{bad}");
        }
        assert!(Harness::try_new("threshold", "field: t\ncritical: {above: 4}\n").is_ok());
    }
}
