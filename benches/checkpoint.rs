//! What a checkpoint costs a worker: encoding the state of the cold-chain
//! pipeline's keys into a segment, all of them (a full checkpoint) or the
//! tenth that changed in the last second (a delta: trucks reporting every
//! 10 s), for 10,000 and 1,000,000 keys; and writing a segment durably.
//! `cargo bench --bench checkpoint`.

use criterion::{Criterion, criterion_group, criterion_main};
use floe::config::Pipeline;
use floe::event::{Event, Value};
use floe::runtime::{Core, Dataflow, KeyCounts, Plan};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

const START: i64 = 1_795_428_000_000;

/// Reading `step` of truck `key`: a chilled reefer, one in fifty warming.
fn reading(flow: &Dataflow, key: usize, step: i64) -> Event {
    let id = |name: &str| flow.schema.id(name).expect("the pipeline reads it");
    let mut e = Event::new(format!("truck-{key:07}").into(), START + step * 10_000);
    let drift = if key % 50 == 7 {
        step as f64 * 0.05
    } else {
        0.0
    };
    e.set(id("kind"), Value::Str("reefer".into()));
    e.set(id("setpoint_c"), Value::Num(2.0));
    e.set(
        id("temperature_c"),
        Value::Num(2.0 + drift + (key % 7) as f64 * 0.05),
    );
    e.set(id("door_open"), Value::Bool(false));
    e
}

/// A worker's core holding `keys` trucks, each with 40 readings (a window
/// of them held by the sliding windows and the reorder buffer).
fn loaded(keys: usize) -> (Core, Dataflow) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/cold-chain.yaml");
    let pipeline = Pipeline::load(&path).expect("the example pipeline is valid");
    let plan = Plan::new(&pipeline);
    let operators = plan.operators.iter().map(|o| o.fork()).collect();
    let mut flow = plan.flow;
    // No sinks: only the operators' state matters here.
    flow.sinks
        .iter_mut()
        .chain(&mut flow.alert_sinks)
        .for_each(Vec::clear);
    let mut core = Core::new(&flow, operators, 0, KeyCounts::new(flow.sources));
    for step in 0..40 {
        for key in 0..keys {
            core.accept(&flow, reading(&flow, key, step));
        }
    }
    (core, flow)
}

fn checkpoint(c: &mut Criterion) {
    let mut group = c.benchmark_group("checkpoint");
    group.sample_size(10);
    for keys in [10_000, 1_000_000] {
        let (mut core, flow) = loaded(keys);
        let full = core
            .snapshot(&flow, true)
            .unwrap()
            .segment
            .unwrap_or_default();
        eprintln!(
            "{keys} keys: full segment {} bytes ({} per key)",
            full.len(),
            full.len() / keys
        );
        group.bench_function(format!("full_{keys}_keys"), |b| {
            b.iter(|| core.snapshot(&flow, true).unwrap())
        });
        let mut step = 40;
        let mut delta_bytes = 0;
        group.bench_function(format!("delta_10pct_{keys}_keys"), |b| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    for key in (0..keys).step_by(10) {
                        core.accept(&flow, reading(&flow, key, step));
                    }
                    step += 1;
                    let started = Instant::now();
                    let segment = core.snapshot(&flow, false).unwrap();
                    spent += started.elapsed();
                    delta_bytes = segment.segment.map_or(0, |s| s.len());
                }
                spent
            })
        });
        eprintln!("{keys} keys: delta segment (a tenth changed) {delta_bytes} bytes");
        let dir = tempfile::tempdir().unwrap();
        group.bench_function(format!("write_fsync_full_{keys}_keys"), |b| {
            b.iter(|| {
                let mut file = std::fs::File::create(dir.path().join("segment")).unwrap();
                file.write_all(&full).unwrap();
                file.sync_data().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, checkpoint);
criterion_main!(benches);
