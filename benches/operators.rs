//! The operator core: events through a worker's keyed graph, without
//! channels or I/O. `cargo bench --bench operators`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use floe::config::Pipeline;
use floe::event::{Event, Value};
use floe::runtime::{BATCH, Core, KeyCounts, Plan};
use std::path::Path;
use std::sync::Arc;

const KEYS: usize = 10_000;
const EVENTS: usize = 1_000_000;
const START: i64 = 1_795_428_000_000;

/// Readings of `KEYS` trucks every 10 s, in time order, with a slow warm-up
/// on one truck in fifty so thresholds and windows have work to do, a load
/// that changes every half hour, and a position driving north.
fn events(schema: &floe::event::Schema) -> Vec<Event> {
    // A pipeline gets only the fields it reads, as from a real decoder.
    let temp = schema.id("temperature_c");
    let load = schema.id("load");
    let (lat, lon) = (schema.id("lat"), schema.id("lon"));
    (0..EVENTS)
        .map(|i| {
            let (key, step) = (i % KEYS, (i / KEYS) as i64);
            let mut e = Event::new(
                format!("truck-{key:05}").into(),
                START + step * 10_000 + key as i64,
            );
            let drift = if key % 50 == 7 {
                step as f64 * 0.05
            } else {
                0.0
            };
            if let Some(temp) = temp {
                e.set(temp, Value::Num(2.0 + drift + (i % 7) as f64 * 0.05));
            }
            if let Some(load) = load {
                let level = (step / 180 + key as i64) % 6;
                e.set(
                    load,
                    Value::Num(0.4 + 0.1 * level as f64 + (i % 5) as f64 * 0.01),
                );
            }
            if let (Some(lat), Some(lon)) = (lat, lon) {
                e.set(lat, Value::Num(52.0 + step as f64 * 0.0025));
                e.set(lon, Value::Num(5.0 + key as f64 * 0.0001));
            }
            e
        })
        .collect()
}

fn bench_pipeline(c: &mut Criterion, name: &str, yaml: &str) {
    let pipeline = Pipeline::parse(Path::new("bench.yaml"), yaml).expect("bench pipeline is valid");
    let plan = Plan::new(&pipeline);
    let flow = Arc::new(plan.flow);
    let input = events(&flow.schema);
    let mut group = c.benchmark_group("operators");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.sample_size(10);
    group.bench_function(name, |b| {
        b.iter_batched(
            || {
                let operators = plan.operators.iter().map(|o| o.fork()).collect();
                (
                    Core::new(&flow, operators, 0, KeyCounts::new(flow.sources)),
                    input.clone(),
                )
            },
            |(mut core, events)| {
                // Timers run as a replaying worker runs them: after each
                // batch of the router's size.
                for (i, event) in events.into_iter().enumerate() {
                    core.accept(&flow, event);
                    if i % BATCH == BATCH - 1 {
                        core.tick_event_time(&flow);
                    }
                }
                core
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

const SOURCE: &str = "
sources:
  trucks: {type: file, path: none.jsonl, key: device, time: ts}
";

fn threshold(c: &mut Criterion) {
    let yaml = format!(
        "{SOURCE}
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, for: 2m, clear_below: 3.5}}
"
    );
    bench_pipeline(c, "threshold_10k_keys", &yaml);
}

/// The operator-core target: threshold plus a sliding 5m/1m window
/// with mean and p95, over 10,000 keys.
fn threshold_and_window(c: &mut Criterion) {
    let yaml = format!(
        "{SOURCE}
operators:
  too_warm: {{type: threshold, inputs: [trucks], field: temperature_c, above: 4.0, for: 2m, clear_below: 3.5}}
  temp_5m:
    type: window
    inputs: [trucks]
    size: 5m
    slide: 1m
    aggregates: {{temp_mean: mean(temperature_c), temp_p95: p95(temperature_c)}}
"
    );
    bench_pipeline(c, "threshold_sliding_window_10k_keys", &yaml);
}

/// The detection operators, each alone: their cost per event next to the
/// threshold's. (Timers run after each of the router's batches, so `absence` includes its once-a-second timer over
/// every key.)
fn detection(c: &mut Criterion) {
    let operators = [
        (
            "forecast_10k_keys",
            "warming: {type: forecast, inputs: [trucks], field: temperature_c, limit: 4.0, horizon: 45m, for: 1m}",
        ),
        (
            "anomaly_zscore_10k_keys",
            "odd: {type: anomaly, inputs: [trucks], field: temperature_c, warmup: 5m}",
        ),
        (
            "anomaly_ewma_10k_keys",
            "odd: {type: anomaly, inputs: [trucks], field: temperature_c, method: ewma, warmup: 5m}",
        ),
        (
            "anomaly_mad_10k_keys",
            "odd: {type: anomaly, inputs: [trucks], field: temperature_c, method: mad, warmup: 5m}",
        ),
        (
            "anomaly_cusum_10k_keys",
            "odd: {type: anomaly, inputs: [trucks], field: temperature_c, method: cusum, warmup: 5m}",
        ),
        (
            "anomaly_zscore_likelihood_10k_keys",
            "odd: {type: anomaly, inputs: [trucks], field: temperature_c, likelihood: true, warmup: 5m}",
        ),
        // Three 5-minute cycles in the 17 minutes of readings: the first is
        // the warm-up.
        (
            "anomaly_zscore_cycle_10k_keys",
            "odd: {type: anomaly, inputs: [trucks], field: temperature_c, cycle: 5m, cycle_bins: 10, warmup: 5m}",
        ),
        (
            "anomaly_ewma_explain_10k_keys",
            "odd: {type: anomaly, inputs: [trucks], field: temperature_c, method: ewma, explain: load, warmup: 5m}",
        ),
        (
            "jump_10k_keys",
            "gps_jump: {type: jump, inputs: [trucks], max_speed_kmh: 250}",
        ),
        (
            "absence_10k_keys",
            "silent: {type: absence, inputs: [trucks], timeout: 2m}",
        ),
    ];
    for (name, operator) in operators {
        let yaml = format!("{SOURCE}\noperators:\n  {operator}\n");
        bench_pipeline(c, name, &yaml);
    }
}

criterion_group!(benches, threshold, threshold_and_window, detection);
criterion_main!(benches);
