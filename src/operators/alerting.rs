//! What every alerting operator shares: the options that word and grade
//! its alerts, and turning a state change of a condition into an
//! [`Alert`] with its message.
//!
//! `severity`, `message` and `resolved_message` are split off an alerting
//! operator's entry before its own options are read (as the MQTT
//! connection keys are for the MQTT components), so they are declared,
//! documented and checked here once for every such operator; so are the
//! notification policy's keys (see [`super::notify`]).

use super::notify::{POLICY_KEYS, Policy};
use super::{BuildContext, Emits, FieldRef, KeyedOperator, OperatorSpec};
use crate::config::{ConfigError, Node, Spanned, closest, from_node};
use crate::event::template::{BUILT_INS, Template};
use crate::event::{Alert, AlertState, Event, FieldId, Severity, Value, time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::sync::Arc;

/// How an alerting operator's alerts are graded and worded.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wording {
    /// `info`, `warning` or `critical`.
    #[serde(default)]
    severity: Severity,
    /// The firing alert's message: a template of `{key}`, `{value}`,
    /// `{rule}`, `{severity}`, `{event_time}`, the operator's own
    /// placeholders, or any field of the event (`{value:.1}` rounds).
    /// Default: one the operator words from its options.
    message: Option<Spanned<Template>>,
    /// The resolved alert's message, with the same placeholders, filled
    /// in from the reading that resolves the episode. Default: `message`.
    resolved_message: Option<Spanned<Template>>,
}

/// The keys of [`Wording`].
const WORDING_KEYS: &[&str] = &["severity", "message", "resolved_message"];

/// An alerting operator's own options, without its [`Wording`].
pub trait AlertingSpec: Debug + Send + Sync {
    /// Placeholders the operator fills in besides the built-ins.
    const OWN_VARS: &'static [&'static str];

    /// The firing message when the pipeline gives none, as template text.
    fn default_message(&self) -> String;

    /// Fields the operator reads (its messages' fields are added to them).
    fn reads(&self) -> Vec<FieldRef>;

    fn emits(&self) -> Emits {
        Emits::Alerts
    }

    fn check(&self) -> Vec<ConfigError> {
        Vec::new()
    }

    /// Builds the running operator around `rule`.
    fn build(&self, ctx: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator>;
}

/// An alerting operator's entry: its own options and its wording.
#[derive(Debug)]
pub struct Alerting<C> {
    own: C,
    wording: Wording,
    policy: Policy,
}

/// Parses an alerting operator's entry: the wording keys into a
/// [`Wording`], the rest into `C`.
pub fn spec<C: AlertingSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Box<dyn OperatorSpec>, Vec<ConfigError>> {
    let shared: Vec<&str> = WORDING_KEYS.iter().chain(POLICY_KEYS).copied().collect();
    let wording = from_node::<Wording>(&node.only(WORDING_KEYS));
    let policy = from_node::<Policy>(&node.only(POLICY_KEYS));
    // The operator's options do not know the shared keys, so their typos
    // (`mesage`) get the hint here.
    let own = from_node::<C>(&node.without(&shared)).map_err(|errors| {
        errors
            .into_iter()
            .map(|e| e.hint_field(&shared))
            .collect::<Vec<_>>()
    });
    match (own, wording, policy) {
        (Ok(own), Ok(wording), Ok(policy)) => super::checked(Box::new(Alerting {
            own,
            wording,
            policy,
        })),
        (own, wording, policy) => Err(own
            .err()
            .into_iter()
            .chain(wording.err())
            .chain(policy.err())
            .flatten()
            .collect()),
    }
}

impl<C: AlertingSpec> OperatorSpec for Alerting<C> {
    fn reads(&self) -> Vec<FieldRef> {
        let mut reads = self.own.reads();
        for m in self.wording.templates() {
            reads.extend(message_fields(&m.value, C::OWN_VARS).map(|name| FieldRef {
                name: name.to_string(),
                loc: m.loc,
            }));
        }
        reads
    }

    fn emits(&self) -> Emits {
        self.own.emits()
    }

    fn alerts(&self) -> bool {
        true
    }

    fn inhibited_by(&self) -> Option<&Spanned<String>> {
        self.policy.inhibited_by()
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = self.own.check();
        for template in self.wording.templates() {
            problems.extend(check_message(template, C::OWN_VARS));
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext) -> Box<dyn KeyedOperator> {
        let message = match &self.wording.message {
            Some(m) => m.value.clone(),
            // A field name with braces in it would not make a template.
            None => Template::parse(&self.own.default_message())
                .or_else(|_| Template::parse("{key}: {value}"))
                .unwrap_or_else(|e| unreachable!("a literal template: {e}")),
        };
        let resolved = self.wording.resolved_message.as_ref();
        let rule = Rule {
            id: ctx.id.into(),
            severity: self.wording.severity,
            fields: std::iter::once(&message)
                .chain(resolved.map(|r| &r.value))
                .flat_map(|t| message_fields(t, C::OWN_VARS))
                .map(|name| (name.to_string(), ctx.field(name)))
                .collect(),
            resolved: resolved.map(|r| r.value.clone()),
            message,
        };
        let (id, firing) = (ctx.id.to_string(), ctx.firing.clone());
        self.policy.wrap(&id, &firing, self.own.build(ctx, rule))
    }
}

impl Wording {
    /// The templates the pipeline wrote.
    fn templates(&self) -> impl Iterator<Item = &Spanned<Template>> {
        self.message.iter().chain(&self.resolved_message)
    }
}

/// An alerting operator's identity and wording, ready to make alerts.
#[derive(Clone, Debug)]
pub struct Rule {
    id: Arc<str>,
    severity: Severity,
    message: Template,
    /// The resolved alert's message, when it is not `message`.
    resolved: Option<Template>,
    /// Event fields the messages name, resolved once at build time.
    fields: Arc<[(String, FieldId)]>,
}

impl Rule {
    /// An alert for `event`; `vars` fill the operator's own placeholders.
    pub fn alert(
        &self,
        state: AlertState,
        event: &Event,
        episode_start: i64,
        value: f64,
        vars: &[(&'static str, Value)],
    ) -> Alert {
        let template = match (state, &self.resolved) {
            (AlertState::Resolved, Some(resolved)) => resolved,
            _ => &self.message,
        };
        let message = template.render(|name| match name {
            "key" => Some(Value::Str(event.key.clone())),
            "value" => Some(Value::Num(value)),
            "rule" => Some(Value::Str(self.id.as_ref().into())),
            "severity" => Some(Value::Str(self.severity.as_str().into())),
            "event_time" => Some(Value::Str(time::format_rfc3339(event.time).into())),
            _ => vars
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
                .or_else(|| {
                    let (_, id) = self.fields.iter().find(|(n, _)| n == name)?;
                    event.get(*id).cloned()
                }),
        });
        Alert {
            rule: self.id.clone(),
            key: event.key.clone(),
            state,
            severity: self.severity,
            event_time: event.time,
            episode_start,
            value,
            message,
            previous: None,
            details: vars.to_vec(),
        }
    }
}

/// Placeholders of a message that name event fields.
fn message_fields<'a>(
    message: &'a Template,
    own_vars: &'a [&str],
) -> impl Iterator<Item = &'a str> {
    message
        .vars()
        .filter(move |v| !BUILT_INS.contains(v) && !own_vars.contains(v))
}

/// Placeholders of a message that look like typos of a built-in or of the
/// operator's own variables (`{valu}`): taken as event fields, they would
/// print `?` in every alert. Any other name is an event field. Since a
/// refused name cannot be written at all, and fields may well be named
/// like a built-in (`event_type`), only a near-certain typo is refused: one
/// edit away, or a beginning; the rest are fields, and one never seen in
/// the data is warned about at run time.
fn check_message(message: &Spanned<Template>, own_vars: &[&str]) -> Vec<ConfigError> {
    let known = || BUILT_INS.iter().chain(own_vars).copied();
    message_fields(&message.value, own_vars)
        .filter_map(|name| {
            let meant = closest(name, known())?;
            let typo = meant.starts_with(name) || strsim::damerau_levenshtein(name, meant) <= 1;
            let text = format!("unknown placeholder `{{{name}}}`, did you mean `{{{meant}}}`?");
            typo.then(|| ConfigError::at(message.loc, text))
        })
        .collect()
}

/// Where one key is in an alert episode with a hold time and a separate
/// clear level: the state machine of `threshold` and `anomaly`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Episode {
    #[default]
    Normal,
    /// The condition holds since `since`, not yet for long enough.
    Pending { since: i64 },
    /// Firing; the episode began at `since`.
    Firing { since: i64 },
}

impl Episode {
    /// Moves on with a reading at `t`: `breached` when the condition holds,
    /// `cleared` when the value is back past the clear level. `emit` raises
    /// an alert with the episode's start.
    pub fn step(
        self,
        t: i64,
        breached: bool,
        cleared: bool,
        hold_ms: i64,
        mut emit: impl FnMut(AlertState, i64),
    ) -> Episode {
        let next = match self {
            Episode::Normal | Episode::Pending { .. } if !breached => Episode::Normal,
            Episode::Normal => Episode::Pending { since: t },
            Episode::Firing { since } if cleared => {
                emit(AlertState::Resolved, since);
                Episode::Normal
            }
            other => other,
        };
        match next {
            Episode::Pending { since } if t - since >= hold_ms => {
                emit(AlertState::Firing, since);
                Episode::Firing { since }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Harness;

    /// One set of options for each alerting operator.
    const ALERTING: &[(&str, &str)] = &[
        ("threshold", "field: temp\nabove: 4\n"),
        ("forecast", "field: temp\nlimit: 4\nhorizon: 10m\n"),
        ("absence", "timeout: 1m\n"),
        ("anomaly", "field: temp\n"),
        ("jump", "max_speed_kmh: 100\n"),
    ];

    #[test]
    fn every_alerting_operator_takes_the_wording_options() {
        let wording =
            "severity: critical\nmessage: \"{key} bad\"\nresolved_message: \"{key} ok\"\n";
        for (type_name, options) in ALERTING {
            let built = Harness::try_new(type_name, &format!("{options}{wording}"));
            assert!(built.is_ok(), "{type_name}: {:?}", built.err());
        }
    }

    #[test]
    fn typos_of_the_wording_options_get_a_hint() {
        for (type_name, options) in ALERTING {
            let typo = format!("{options}resolved_mesage: \"{{key}} ok\"\n");
            let errors = Harness::try_new(type_name, &typo).err().unwrap_or_default();
            let messages: Vec<_> = errors.iter().map(|e| e.message.as_str()).collect();
            assert_eq!(
                messages,
                ["unknown field `resolved_mesage`, did you mean `resolved_message`?"],
                "{type_name}"
            );
        }
    }

    fn problems(type_name: &str, options: &str) -> Vec<String> {
        match Harness::try_new(type_name, options) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.message).collect(),
        }
    }

    #[test]
    fn a_placeholder_one_edit_from_a_known_one_is_refused_and_others_are_fields() {
        let threshold = "field: temp\nabove: 4\nmessage: \"{key} at {valu} C ({limt}), {vlaue} {event_type} {speed} {door}\"\n";
        assert_eq!(
            problems("threshold", threshold),
            [
                "unknown placeholder `{valu}`, did you mean `{value}`?",
                "unknown placeholder `{limt}`, did you mean `{limit}`?",
                "unknown placeholder `{vlaue}`, did you mean `{value}`?",
            ]
        );
        assert_eq!(
            problems(
                "forecast",
                "field: temp\nlimit: 4\nhorizon: 10m\nmessage: \"{key} in {eta}\"\n"
            ),
            ["unknown placeholder `{eta}`, did you mean `{eta_s}`?"]
        );
        assert_eq!(
            problems(
                "absence",
                "timeout: 1m\nmessage: \"{key} since {last_seen} ({limit})\"\n"
            ),
            Vec::<String>::new()
        );
    }
}
