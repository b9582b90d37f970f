//! Pipeline test cases, as written under `tests:` (`floe test` runs them).
//!
//! A pipeline carries its own cases: events for named sources, and the
//! alerts expected out.
//!
//! ```yaml
//! tests:
//!   - name: a compressor failure fires once and resolves
//!     inputs:
//!       trucks:
//!         - {device: t1, ts: "2026-11-23T10:00:00Z", temperature_c: 3.0}
//!         - {device: t1, ts: "2026-11-23T10:05:00Z", temperature_c: 5.0}
//!     expect:
//!       - {rule: too_warm, key: t1, state: firing, event_time: "2026-11-23T10:05:00Z"}
//! ```
//!
//! A case passes when the alerts raised are exactly the expected ones, in
//! any order (`event_time` is checked when given). A case too long to
//! write out (hours of readings for a detector that learns) takes a
//! source's records from a JSON-lines file beside the pipeline:
//! `inputs: {machines: {file: data/factory-sample.jsonl}}`.
//!
//! A record is a message's payload, or the message with its MQTT topic,
//! for sources keyed by a topic level (`key: topic[1]`):
//! `{topic: fleet/t1/telemetry, payload: {ts: "...", temperature_c: 3.0}}`.

use super::Spanned;
use crate::event::{AlertState, time};
use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: Spanned<String>,
    /// Records per source id, as the source would receive them: a list,
    /// or `{file: PATH}` (see [`recording`]).
    #[serde(default)]
    pub inputs: BTreeMap<String, Spanned<serde_json::Value>>,
    /// The alerts the case must raise; none when empty.
    #[serde(default)]
    pub expect: Vec<Expected>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expected {
    pub rule: Spanned<String>,
    pub key: String,
    pub state: AlertState,
    pub event_time: Option<Timestamp>,
}

/// An RFC 3339 time in a test case, checked when the pipeline is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp(pub i64);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        time::parse_rfc3339(&text)
            .map(Timestamp)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not an RFC 3339 time")))
    }
}

/// A test record as a message: its topic when it is written with one
/// (an object of exactly `topic`, a string, and `payload`, an object), and
/// its payload.
pub fn message(record: &serde_json::Value) -> (Option<&str>, &serde_json::Value) {
    if let Some(fields) = record.as_object()
        && fields.len() == 2
        && let (Some(topic), Some(payload)) = (fields.get("topic"), fields.get("payload"))
        && let (Some(topic), true) = (topic.as_str(), payload.is_object())
    {
        return (Some(topic), payload);
    }
    (None, record)
}

/// The file a test input names, if it names one; an error if the input is
/// neither a list nor `{file: PATH}`.
pub fn recording(input: &serde_json::Value) -> Result<Option<&str>, String> {
    let file = input.get("file").and_then(serde_json::Value::as_str);
    match (input, file) {
        (serde_json::Value::Array(_), _) => Ok(None),
        (serde_json::Value::Object(o), Some(path)) if o.len() == 1 => Ok(Some(path)),
        _ => Err("a test input is a list of records, or `{file: PATH}` (JSON lines)".into()),
    }
}
