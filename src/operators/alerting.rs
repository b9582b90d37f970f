//! What every alerting operator shares: turning a state change of a
//! condition into an [`Alert`] with its message.

use super::{BuildContext, FieldRef};
use crate::config::{Loc, Spanned};
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
