//! `floe test`: run the test cases pipelines carry.
//!
//! A case runs the real pipeline with in-memory sources and no sinks, in
//! event time, so it needs no broker. It passes when the alerts raised are
//! exactly the expected ones, in any order (`event_time` is checked when
//! given).

use super::Failure;
use crate::config::Pipeline;
use crate::config::test_case::{Expected, TestCase, message, recording};
use crate::event::decode::Envelope;
use crate::event::time;
use crate::runtime::{self, BoxFuture, Ingest, Io, Options, Plan, Shutdown};
use crate::sinks::{Batch, Sink, SinkError};
use crate::sources::{Source, SourceError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

pub fn test(paths: &[PathBuf]) -> Result<(), Failure> {
    let runtime = super::tokio_runtime(1)?;
    let (mut passed, mut failed) = (0, 0);
    for path in paths {
        let pipeline = match Pipeline::load(path) {
            Ok(p) => p,
            Err(diagnostics) => {
                eprintln!("{diagnostics}");
                failed += 1;
                continue;
            }
        };
        if pipeline.tests.is_empty() {
            println!("{}: no tests", path.display());
        }
        for case in &pipeline.tests {
            let outcome = runtime.block_on(run_case(&pipeline, case));
            if outcome.failures.is_empty() {
                passed += 1;
                println!("ok    {}: {}", path.display(), outcome.name);
            } else {
                failed += 1;
                println!("FAIL  {}: {}", path.display(), outcome.name);
                for failure in &outcome.failures {
                    println!("        {failure}");
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(Failure::Invalid(String::new()))
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
    plan.unwatch_fields();
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
    let options = Options {
        workers: 1,
        ..Options::default()
    };
    if let Err(e) = runtime::run(plan, io, options, Shutdown::default()).await {
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
            tokio::task::spawn_blocking(move || -> Result<(), SourceError> {
                for (i, record) in self.records.iter().enumerate() {
                    // Decoded as a message with its topic, as the real
                    // source decodes it, so `key: topic[N]` works here too.
                    let (topic, payload) = message(record);
                    let bytes = payload.to_string().into_bytes();
                    let position = i as u64 + 1;
                    let envelope = Envelope {
                        topic,
                        ..Envelope::at(position)
                    };
                    match ingest.decode_message(&bytes, &envelope) {
                        Ok(event) => ingest.route_blocking(event)?,
                        Err(error) => {
                            let origin =
                                serde_json::json!({"test_input": position, "topic": topic});
                            ingest.reject_blocking(&error, origin, &bytes)?
                        }
                    }
                }
                ingest.finish_blocking(&())?;
                Ok(())
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
        _: crate::runtime::DeadLetters,
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
