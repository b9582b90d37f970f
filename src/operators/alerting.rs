//! What every alerting operator shares: turning a state change of a
//! condition into an [`Alert`] with its message.

use super::{BuildContext, FieldRef};
use crate::config::{ConfigError, Loc, Spanned, closest};
use crate::event::template::{BUILT_INS, Template};
use crate::event::{Alert, AlertState, Event, FieldId, Severity, Value, time};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// An alerting operator's identity and wording, ready to make alerts.
#[derive(Clone, Debug)]
pub struct Rule {
    id: Arc<str>,
    severity: Severity,
    message: Template,
    /// Event fields the message names, resolved once at build time.
    fields: Arc<[(String, FieldId)]>,
}

impl Rule {
    /// `own_vars` are the placeholders the operator fills in itself.
    pub fn new(
        ctx: &mut BuildContext,
        severity: Severity,
        message: &Template,
        own_vars: &[&str],
    ) -> Rule {
        let fields = message_fields(message, own_vars)
            .map(|name| (name.to_string(), ctx.field(name)))
            .collect();
        Rule {
            id: ctx.id.into(),
            severity,
            message: message.clone(),
            fields,
        }
    }

    /// An alert for `event`; `vars` fill the operator's own placeholders.
    pub fn alert(
        &self,
        state: AlertState,
        event: &Event,
        episode_start: i64,
        value: f64,
        vars: &[(&'static str, Value)],
    ) -> Alert {
        let message = self.message.render(|name| match name {
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
pub fn check_message(message: Option<&Spanned<Template>>, own_vars: &[&str]) -> Vec<ConfigError> {
    let Some(message) = message else {
        return Vec::new();
    };
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

/// What an alerting operator reads: the fields it names, and the fields
/// its message names.
pub fn fields_and_message_reads(
    fields: &[&Spanned<String>],
    message: Option<&Spanned<Template>>,
    own_vars: &[&str],
) -> Vec<FieldRef> {
    let mut reads: Vec<FieldRef> = fields
        .iter()
        .map(|f| FieldRef {
            name: f.value.clone(),
            loc: f.loc,
        })
        .collect();
    if let Some(m) = message {
        reads.extend(message_reads(&m.value, own_vars, m.loc));
    }
    reads
}

/// The fields a message reads, for validation.
fn message_reads(message: &Template, own_vars: &[&str], loc: Loc) -> Vec<FieldRef> {
    message_fields(message, own_vars)
        .map(|name| FieldRef {
            name: name.to_string(),
            loc,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::operators::test_support::Harness;

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
