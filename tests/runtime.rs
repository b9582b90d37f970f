//! The runtime through the library API: back-pressure from a slow sink
//! loses nothing, work spreads over several workers, and a source's marks
//! settle only behind the sinks.

mod support;

use floe::config::Pipeline;
use floe::event::decode::Envelope;
use floe::runtime::BoxFuture;
use floe::runtime::{self, Ingest, Io, Marks, Options, Plan, Settled, Shutdown};
use floe::sinks::{Batch, Sink, SinkError};
use floe::sources::{Source, SourceError};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Writes `yaml` as dir/p.yaml and opens the pipeline's sources and sinks,
/// for a test to replace some of them.
fn opened(dir: &std::path::Path, yaml: &str) -> (Pipeline, Io) {
    let path = support::write(dir, "p.yaml", yaml);
    let pipeline = Pipeline::load(&path).unwrap();
    let io = Io::open(&pipeline, &Default::default(), None).unwrap();
    (pipeline, io)
}

/// A sink that takes its time over every batch and remembers every line.
struct Slow {
    lines: Arc<Mutex<Vec<String>>>,
    /// Most batches waiting in its channel at any time it looked.
    peak_queued: Arc<Mutex<usize>>,
}

impl Sink for Slow {
    fn run(
        self: Box<Self>,
        mut records: mpsc::Receiver<Batch>,
        _: floe::runtime::DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            while let Some(batch) = records.recv().await {
                {
                    let mut peak = self.peak_queued.lock().unwrap();
                    *peak = (*peak).max(records.len());
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                self.lines
                    .lock()
                    .unwrap()
                    .extend(batch.records.iter().map(|r| r.line.clone()));
                batch.done();
            }
            Ok(())
        })
    }
}

#[test]
fn a_slow_sink_slows_the_pipeline_and_nothing_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let events = 50_000;
    let lines: Vec<String> = (0..events)
        .map(|i| {
            format!(
                r#"{{"device":"t{}","ts":{},"temperature_c":1.0}}"#,
                i % 100,
                1_795_428_000_000i64 + i * 1000
            )
        })
        .collect();
    support::write(dir.path(), "in.jsonl", lines.join("\n"));
    let yaml = r#"
sources:
  trucks: {type: file, path: in.jsonl, key: device, time: ts}
sinks:
  slow: {type: stdout, inputs: [trucks]}
"#;
    let (pipeline, mut io) = opened(dir.path(), yaml);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let peak = Arc::new(Mutex::new(0));
    io.sinks[0].1 = Box::new(Slow {
        lines: seen.clone(),
        peak_queued: peak.clone(),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(runtime::run(
            Plan::new(&pipeline),
            io,
            Options {
                workers: 2,
                ..Options::default()
            },
            Shutdown::default(),
        ))
        .unwrap();
    assert_eq!(report.events, events as u64);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), events as usize, "every event reaches the sink");
    // The channel is bounded: the sink never had more than its capacity
    // waiting, however far ahead the source could have read.
    assert!(*peak.lock().unwrap() <= 16, "peak {}", peak.lock().unwrap());
    // Per key, order is kept.
    let mut last = std::collections::HashMap::new();
    for line in seen.iter() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        let t = v["event_time"].as_str().unwrap().to_string();
        if let Some(prev) = last.insert(key, t.clone()) {
            assert!(prev <= t, "out of order: {prev} then {t}");
        }
    }
}

/// A source that routes `lines`, sends a mark behind them, and keeps what
/// the mark settled with and how many lines the sink had by then.
struct Marking {
    lines: Vec<String>,
    sink_lines: Arc<Mutex<Vec<String>>>,
    settled: Arc<Mutex<Option<(Settled, usize)>>>,
}

impl Source for Marking {
    fn run(self: Box<Self>, mut ingest: Ingest) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            let routed = tokio::task::spawn_blocking(move || -> Result<(), SourceError> {
                for (position, line) in self.lines.iter().enumerate() {
                    let envelope = Envelope::at(position as u64);
                    let event = ingest.decode_message(line.as_bytes(), &envelope);
                    ingest.route_blocking(event.expect("a valid line"))?;
                }
                let mut marks = Marks::default();
                ingest.mark_blocking(marks.mark())?;
                let settled = marks.wait(1, std::time::Duration::from_secs(10));
                let in_sink = self.sink_lines.lock().unwrap().len();
                *self.settled.lock().unwrap() = settled.map(|s| (s, in_sink));
                ingest.finish_blocking(&())?;
                Ok(())
            });
            routed.await.unwrap_or(Err(SourceError::Closed))
        })
    }
}

#[test]
fn a_mark_settles_once_the_sinks_have_what_came_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
sources:
  trucks: {type: file, path: p.yaml, key: device, time: ts, max_out_of_orderness: 1m}
sinks:
  slow: {type: stdout, inputs: [trucks]}
"#;
    // The file source is opened, then replaced by the marking one.
    let (pipeline, mut io) = opened(dir.path(), yaml);
    // One reading a minute from each of three trucks for ten minutes: the
    // last minute of each stays held back for ordering.
    let lines: Vec<String> = (0..30)
        .map(|i| {
            let minute = i / 3;
            format!(
                r#"{{"device":"t{}","ts":{}}}"#,
                i % 3,
                1_795_428_000_000i64 + minute * 60_000
            )
        })
        .collect();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let settled = Arc::new(Mutex::new(None));
    io.sources[0] = Box::new(Marking {
        lines,
        sink_lines: seen.clone(),
        settled: settled.clone(),
    });
    io.sinks[0].1 = Box::new(Slow {
        lines: seen.clone(),
        peak_queued: Arc::new(Mutex::new(0)),
    });
    let rt = tokio::runtime::Runtime::new().unwrap();
    let run = runtime::run(
        Plan::new(&pipeline),
        io,
        Options {
            workers: 2,
            ..Options::default()
        },
        Shutdown::default(),
    );
    rt.block_on(run).unwrap();
    let (settled, in_sink) = settled.lock().unwrap().take().expect("the mark settled");
    assert!(settled.complete);
    // Minutes 0..=8 were processed and written before the mark settled;
    // minute 9 of each truck (positions 27..=29) was held back, and the
    // lowest of those is what the source must not forget.
    assert_eq!(in_sink, 27);
    assert_eq!(settled.held.get(&0), Some(&27));
    assert_eq!(
        seen.lock().unwrap().len(),
        30,
        "held events are released at the end"
    );
}
