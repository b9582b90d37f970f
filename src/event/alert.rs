//! Alerts: the episodes operators raise, in the SPEC's contract format.

use super::{Key, Value, time};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use uuid::Uuid;

/// Namespace for alert ids, so floe's UUIDv5 ids never collide with ids
/// other tools derive from the same names.
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6a1f_3c2e_9b4d_4e8a_a1f0_7c3d_2b5e_9f10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// One state change of one condition episode of one entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Id of the operator that raised it.
    pub rule: Arc<str>,
    pub key: Key,
    pub state: AlertState,
    pub severity: Severity,
    /// Event time of the reading that changed the state.
    pub event_time: i64,
    /// Event time at which the episode began. Together with the rule and key
    /// it names the episode, which is what makes `alert_id` deterministic.
    pub episode_start: i64,
    pub value: f64,
    pub message: String,
    /// The level the episode moved from, when this alert says its level
    /// changed (a `threshold` with `warning` and `critical`).
    pub previous: Option<Severity>,
    /// Operator-specific details, appended to the JSON object.
    pub details: Vec<(&'static str, Value)>,
}

impl Alert {
    /// The deterministic id: the same pipeline over the same input gives the
    /// same ids, so a replay or restart can be de-duplicated downstream.
    pub fn id(&self, pipeline: &str) -> Uuid {
        let mut name = format!(
            "{pipeline}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
            self.rule,
            self.key,
            self.episode_start,
            self.state.as_str()
        );
        // A level change is one more alert of its episode.
        if self.previous.is_some() {
            name += &format!("\u{1f}{}\u{1f}{}", self.severity.as_str(), self.event_time);
        }
        Uuid::new_v5(&ALERT_NAMESPACE, name.as_bytes())
    }

    /// Renders the alert as one JSON line; `emitted_at` is wall-clock epoch ms.
    pub fn to_json(&self, pipeline: &str, emitted_at: i64) -> String {
        super::json_object(|map| {
            map.serialize_entry("alert_id", &self.id(pipeline).to_string())?;
            map.serialize_entry("pipeline", pipeline)?;
            map.serialize_entry("rule", self.rule.as_ref())?;
            map.serialize_entry("key", self.key.as_str())?;
            map.serialize_entry("state", self.state.as_str())?;
            map.serialize_entry("severity", self.severity.as_str())?;
            map.serialize_entry("event_time", &time::format_rfc3339(self.event_time))?;
            map.serialize_entry("episode_start", &time::format_rfc3339(self.episode_start))?;
            map.serialize_entry("emitted_at", &time::format_rfc3339(emitted_at))?;
            map.serialize_entry("value", &Value::Num(self.value))?;
            map.serialize_entry("message", &self.message)?;
            if let Some(previous) = self.previous {
                map.serialize_entry("previous_severity", previous.as_str())?;
            }
            for (name, value) in &self.details {
                map.serialize_entry(name, value)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(state: AlertState, episode_start: i64) -> Alert {
        Alert {
            rule: "too_warm".into(),
            key: "truck-1".into(),
            state,
            severity: Severity::Critical,
            event_time: episode_start + 120_000,
            episode_start,
            value: 4.6,
            message: "hot".into(),
            previous: None,
            details: vec![],
        }
    }

    #[test]
    fn ids_are_deterministic_and_distinct_per_state_and_episode() {
        let a = alert(AlertState::Firing, 1000);
        assert_eq!(a.id("p"), alert(AlertState::Firing, 1000).id("p"));
        assert_ne!(a.id("p"), alert(AlertState::Resolved, 1000).id("p"));
        assert_ne!(a.id("p"), alert(AlertState::Firing, 2000).id("p"));
        assert_ne!(a.id("p"), a.id("q"));
    }

    #[test]
    fn json_has_the_contract_fields() {
        let json: serde_json::Value =
            serde_json::from_str(&alert(AlertState::Firing, 0).to_json("p", 120_004)).unwrap();
        for field in [
            "alert_id",
            "pipeline",
            "rule",
            "key",
            "state",
            "severity",
            "event_time",
            "emitted_at",
            "value",
            "message",
        ] {
            assert!(json.get(field).is_some(), "{field} missing");
        }
        assert_eq!(json["event_time"], "1970-01-01T00:02:00.000Z");
        assert_eq!(json["emitted_at"], "1970-01-01T00:02:00.004Z");
        assert_eq!(json["state"], "firing");
    }

    #[test]
    fn a_whole_value_is_written_as_an_integer() {
        let mut a = alert(AlertState::Firing, 0);
        a.value = 4.0;
        a.details = vec![("limit", Value::Num(4.0)), ("ratio", Value::Num(0.5))];
        let json = a.to_json("p", 0);
        assert!(
            json.contains(r#""value":4,"message":"hot","limit":4,"ratio":0.5}"#),
            "{json}"
        );
    }
}
