//! `filter`: passes on the events for which a condition holds.
//!
//! ```yaml
//! chilled:
//!   type: filter
//!   inputs: [trucks]
//!   condition: kind == "reefer" && setpoint_c > -5
//! ```
//!
//! Events pass unchanged; see `expr.rs` for the condition language.

use super::expr::Expr;
use super::{BuildContext, Emits, Emitter, FieldRef, Keyed, KeyedOperator, Operator, OperatorSpec};
use crate::config::{ConfigError, Spanned};
use crate::event::Event;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The condition an event must meet to pass.
    condition: Spanned<String>,
}

impl Config {
    fn parse(&self) -> Result<Expr, ConfigError> {
        Expr::parse_spanned(&self.condition, "bad condition")
    }
}

impl OperatorSpec for Config {
    fn reads(&self) -> Vec<FieldRef> {
        let Ok(expr) = Expr::parse(&self.condition) else {
            return Vec::new();
        };
        expr.fields()
            .into_iter()
            .map(|name| FieldRef {
                name: name.to_string(),
                loc: self.condition.loc,
            })
            .collect()
    }

    fn emits(&self) -> Emits {
        Emits::Events {
            keeps_input: true,
            adds: Vec::new(),
        }
    }

    fn check(&self) -> Vec<ConfigError> {
        self.parse().err().into_iter().collect()
    }

    fn build(&self, ctx: &mut BuildContext) -> Box<dyn KeyedOperator> {
        // `check` has passed; an unparsable condition cannot reach here.
        let mut condition = self.parse().unwrap_or(Expr::Bool(false));
        condition.bind(ctx);
        Keyed::boxed(Filter { condition })
    }
}

#[derive(Clone, Debug)]
pub struct Filter {
    condition: Expr,
}

impl Operator for Filter {
    /// A filter remembers nothing.
    type State = ();

    fn on_event(&self, _: &mut (), event: &Event, out: &mut Emitter) {
        if self.condition.matches(event) {
            out.pass();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, events};
    use crate::event::Value;

    #[test]
    fn passes_matching_events_unchanged_and_drops_the_rest() {
        let mut h = Harness::new(
            "filter",
            "condition: \"temperature_c > 4 && kind == 'reefer'\"\n",
        );
        let hot = [
            ("temperature_c", Value::Num(5.0)),
            ("kind", Value::Str("reefer".into())),
        ];
        let out = events(h.push("t1", 7, &hot));
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].key.as_str(), out[0].time, out[0].fields.len()),
            ("t1", 7, 2)
        );
        let cold = [
            ("temperature_c", Value::Num(3.0)),
            ("kind", Value::Str("reefer".into())),
        ];
        assert!(h.push("t1", 8, &cold).is_empty());
        assert!(
            h.push("t1", 9, &[("kind", Value::Str("reefer".into()))])
                .is_empty()
        );
    }

    #[test]
    fn a_bad_condition_is_a_config_error_at_its_position() {
        let err = Harness::try_new("filter", "condition: t >> 1\n")
            .err()
            .unwrap()
            .remove(0);
        assert_eq!(err.message, "bad condition: expected a value, found `>`");
        assert_eq!(err.loc.map(|l| (l.line, l.col)), Some((1, 15)));
    }
}
