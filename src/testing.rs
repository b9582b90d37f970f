//! Pipeline test cases: `floe test`.
//!
//! A pipeline carries its own cases under `tests:`: events for named
//! sources, and the alerts expected out. A case runs the real pipeline with
//! in-memory sources and no sinks, in event time, so it needs no broker.
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

use crate::config::{Pipeline, Spanned};
use crate::event::{AlertState, time};
use crate::runtime::{self, Io, Options, Plan, Shutdown};
use crate::sinks::{Batch, Sink, SinkError};
use crate::sources::{BoxFuture, Ingest, Source, SourceError};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestCase {
    pub name: Spanned<String>,
    /// Records per source id, as the source would receive them: a list,
    /// or `{file: PATH}` (see [`records`]).
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

/// The result of one case.
#[derive(Debug)]
pub struct Outcome {
    pub name: String,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
}

/// An alert as the comparison sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    rule: String,
    key: String,
    state: String,
    event_time: Option<i64>,
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{} {} for key {}", self.rule, self.state, self.key)?;
        if let Some(t) = self.event_time {
            write!(f, " at {}", time::format_rfc3339(t))?;
        }
        Ok(())
    }
}

/// Runs one case of `pipeline`.
pub async fn run_case(pipeline: &Pipeline, case: &TestCase) -> Outcome {
    let mut plan = Plan::new(pipeline);
    plan.collect_alerts_only();
    // Test cases are in event time: timers run on the time of the inputs.
    plan.flow.live = false;
    let alerts = Arc::new(Mutex::new(Vec::new()));
    let rejected = Arc::new(Mutex::new(Vec::new()));
    let mut failures = Vec::new();
    let sources = pipeline
        .sources
        .iter()
        .map(|s| {
            let input = case.inputs.get(&s.id).map(|r| records(&r.value, pipeline));
            let records = input.unwrap_or(Ok(Vec::new())).unwrap_or_else(|e| {
                failures.push(e);
                Vec::new()
            });
            Box::new(MemorySource { records }) as Box<dyn Source>
        })
        .collect();
    let io = Io {
        sources,
        sinks: vec![(
            "test".into(),
            Box::new(Collect(alerts.clone())) as Box<dyn Sink>,
        )],
        dead_letter: Box::new(Collect(rejected.clone())),
    };
    let options = Options { workers: 1 };
    if let Err(e) = runtime::run(plan, io, &options, Shutdown::default()).await {
        failures.push(format!("the pipeline failed: {e}"));
    }
    let seen = take(&alerts).iter().map(|line| parse_alert(line)).collect();
    failures.extend(compare(&case.expect, seen));
    if !failures.is_empty() {
        failures.extend(
            take(&rejected)
                .into_iter()
                .map(|line| format!("input rejected: {line}")),
        );
    }
    Outcome {
        name: case.name.value.clone(),
        failures,
    }
}

/// A test input's records: a list of them, or `{file: PATH}`, a file of
/// JSON lines (PATH relative to the pipeline file). The file is read when
/// the case runs, so a pipeline deployed without its test data still loads.
pub fn records(
    input: &serde_json::Value,
    pipeline: &Pipeline,
) -> Result<Vec<serde_json::Value>, String> {
    match recording(input)? {
        Some(path) => read_lines(&pipeline.resolve(Path::new(path))),
        None => Ok(input.as_array().cloned().unwrap_or_default()),
    }
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

fn read_lines(path: &Path) -> Result<Vec<serde_json::Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))
        })
        .collect()
}

fn take(lines: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()))
}

fn parse_alert(line: &str) -> Seen {
    let json: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
    let text = |field: &str| json[field].as_str().unwrap_or_default().to_string();
    Seen {
        rule: text("rule"),
        key: text("key"),
        state: text("state"),
        event_time: time::parse_rfc3339(&text("event_time")),
    }
}

/// Matches expected alerts to raised ones; returns what did not match.
fn compare(expected: &[Expected], mut seen: Vec<Seen>) -> Vec<String> {
    let mut failures = Vec::new();
    for want in expected {
        let want = Seen {
            rule: want.rule.value.clone(),
            key: want.key.clone(),
            state: want.state.as_str().to_string(),
            event_time: want.event_time.map(|t| t.0),
        };
        let hit = seen.iter().position(|s| {
            s.rule == want.rule
                && s.key == want.key
                && s.state == want.state
                && want.event_time.is_none_or(|t| s.event_time == Some(t))
        });
        match hit {
            Some(i) => {
                seen.remove(i);
            }
            None => failures.push(format!("expected {want}, not raised")),
        }
    }
    failures.extend(seen.into_iter().map(|s| format!("unexpected {s}")));
    failures
}

/// A source that replays a test case's records.
struct MemorySource {
    records: Vec<serde_json::Value>,
}

impl Source for MemorySource {
    fn run(self: Box<Self>, mut ingest: Ingest) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                for (i, record) in self.records.iter().enumerate() {
                    let bytes = record.to_string().into_bytes();
                    let position = i as u64 + 1;
                    match ingest.decoder().decode_json(&bytes, position) {
                        Ok(event) => ingest.route_blocking(event)?,
                        Err(error) => {
                            let origin = serde_json::json!({"test_input": position});
                            ingest.reject_blocking(&error, origin, &bytes)?
                        }
                    }
                }
                ingest.finish_blocking()
            })
            .await
            .unwrap_or(Err(SourceError::Closed))
        })
    }
}

/// A sink that keeps every line in memory.
struct Collect(Arc<Mutex<Vec<String>>>);

impl Sink for Collect {
    fn run(
        self: Box<Self>,
        mut records: mpsc::Receiver<Batch>,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            while let Some(batch) = records.recv().await {
                let mut lines = self.0.lock().unwrap_or_else(|e| e.into_inner());
                lines.extend(batch.records.iter().map(|r| r.line.clone()));
                batch.done();
            }
            Ok(())
        })
    }
}
