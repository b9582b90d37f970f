//! The runtime through the library API: back-pressure from a slow sink
//! loses nothing, and work spreads over several workers.

mod support;

use floe::config::Pipeline;
use floe::runtime::{self, Io, Options, Plan, Shutdown};
use floe::sinks::{Batch, Sink, SinkError};
use floe::sources::BoxFuture;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

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
    let path = support::write(dir.path(), "p.yaml", yaml);
    let pipeline = Pipeline::load(&path).unwrap();
    let mut io = Io::open(&pipeline).unwrap();
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
            &Options { workers: 2 },
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
