//! `floe bench`: a load test of the whole path, from a reading being sent
//! to its alert reaching a sink.
//!
//! A generator sends readings at a fixed rate, in process or through a
//! broker, into a one-rule pipeline. Each device's readings alternate
//! around the rule's threshold, so every reading makes exactly one alert
//! (firing, then resolved, then firing...), and the alert's value names
//! the reading. Latency is measured from when the reading was due to be
//! sent, not from when it was sent: if the pipeline stalls, the readings
//! that waited behind the stall count as late too (no coordinated
//! omission).

mod plot;
mod via;

use super::Failure;
use crate::config::{Duration, Pipeline};
use crate::event::decode::Envelope;
use crate::pace::check_rate;
use crate::runtime::{self, BoxFuture, Io, Options, Plan, Shutdown, Telemetry};
use crate::sinks::{Batch, Sink, SinkError};
use crate::sources::{Source, SourceError};
use hdrhistogram::Histogram;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use via::Via;

#[derive(clap::Args)]
pub struct Args {
    /// Readings per second; several (`--rate 1000,10000,30000`) run one
    /// after another.
    #[arg(long, value_delimiter = ',', default_value = "10000", value_parser = parse_rate)]
    rate: Vec<f64>,
    /// How long each rate runs.
    #[arg(long, default_value = "10s", value_parser = super::simulate::parse_duration)]
    duration: Duration,
    /// Devices the readings are spread over.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    devices: u64,
    /// Send through a broker instead of in process:
    /// mqtt://HOST:PORT (QoS 1, topic bench/RUN/DEVICE).
    #[arg(long, value_name = "URI")]
    via: Option<String>,
    /// Print the results as JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// Write latency against rate to this SVG file.
    #[arg(long, value_name = "FILE")]
    plot: Option<std::path::PathBuf>,
    /// Worker tasks (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    check_rate(rate)
}

/// The pipeline under load: one threshold over every reading.
const PIPELINE: &str = "name: bench
sources:
  readings:
    type: file
    path: generated
    key: device
    time: ts
operators:
  flip:
    type: threshold
    inputs: [readings]
    field: value
    above: 0
    severity: critical
sinks:
  latency:
    type: stdout
    inputs: [flip]
";

/// One rate's results.
#[derive(Debug, serde::Serialize)]
struct Outcome {
    rate: f64,
    via: String,
    sent: u64,
    alerts: u64,
    lost: u64,
    /// Alerts per second of the run.
    throughput: f64,
    /// Latency in milliseconds.
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
}

pub fn bench(args: Args) -> Result<(), Failure> {
    let via = match &args.via {
        None => None,
        Some(uri) => {
            let parsed = Via::parse(uri);
            Some(parsed.map_err(|e| Failure::Invalid(format!("--via {uri}: {e}")))?)
        }
    };
    let workers = args.workers.unwrap_or(Options::default().workers);
    let runtime = super::tokio_runtime(workers)?;
    let stop = Shutdown::default();
    runtime.block_on(async { stop.on_signals() });
    let mut outcomes = Vec::new();
    for &rate in &args.rate {
        let run = Run {
            rate,
            total: (rate * args.duration.ms() as f64 / 1000.0).round().max(1.0) as u64,
            devices: args.devices,
            workers,
        };
        let outcome = runtime.block_on(run.go(via.as_ref(), &stop))?;
        if !args.json {
            print_row(&outcome, outcomes.is_empty());
        } else {
            println!("{}", serde_json::to_string(&outcome).unwrap_or_default());
        }
        outcomes.push(outcome);
        if stop.is_requested() {
            break;
        }
    }
    if let Some(path) = &args.plot {
        let via = args.via.as_deref().unwrap_or("in process");
        let title = format!("floe bench: reading to alert latency, {via}");
        std::fs::write(path, plot::svg(&outcomes, &title))
            .map_err(|e| Failure::Runtime(format!("--plot {}: {e}", path.display())))?;
    }
    Ok(())
}

fn print_row(o: &Outcome, header: bool) {
    if header {
        println!(
            "{:>9} {:>10} {:>9} {:>6} {:>11} {:>8} {:>8} {:>8} {:>8} {:>8}",
            "rate/s",
            "via",
            "sent",
            "lost",
            "alerts/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
    }
    println!(
        "{:>9.0} {:>10} {:>9} {:>6} {:>11.0} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
        o.rate,
        o.via,
        o.sent,
        o.lost,
        o.throughput,
        o.p50_ms,
        o.p90_ms,
        o.p99_ms,
        o.p999_ms,
        o.max_ms
    );
}

/// One rate's run.
struct Run {
    rate: f64,
    total: u64,
    devices: u64,
    workers: usize,
}

/// When each reading is due: `start + i / rate`.
#[derive(Clone, Copy)]
struct Schedule {
    start: Instant,
    start_ms: i64,
    rate: f64,
    /// Names the run in its devices' keys.
    tag: u32,
}

impl Schedule {
    fn due(&self, i: u64) -> Instant {
        self.start + std::time::Duration::from_secs_f64(i as f64 / self.rate)
    }

    /// Reading `i`: its device's readings alternate around 0, so each
    /// flips the rule; `|value| - 1` is `i`.
    fn reading(&self, i: u64, devices: u64) -> (String, String) {
        let device = format!("r{}-{}", self.tag, i % devices);
        let sign = if (i / devices).is_multiple_of(2) {
            1.0
        } else {
            -1.0
        };
        let ts = self.start_ms + (i as f64 * 1000.0 / self.rate) as i64;
        let value = sign * (i + 1) as f64;
        let line = format!(r#"{{"device":"{device}","ts":{ts},"value":{value}}}"#);
        (device, line)
    }
}

impl Run {
    async fn go(&self, via: Option<&Via>, stop: &Shutdown) -> Result<Outcome, Failure> {
        let path = Path::new("bench.yaml");
        let pipeline = Pipeline::parse(path, PIPELINE)
            .map_err(|e| Failure::Runtime(format!("the bench pipeline is broken: {e:?}")))?;
        let now_ms = crate::event::time::now_ms();
        let run_id = format!("{}-{now_ms}", std::process::id());
        let schedule = Schedule {
            start: Instant::now() + std::time::Duration::from_millis(500),
            start_ms: now_ms + 500,
            rate: self.rate,
            // Short, so keys stay inline; it tells this run's readings from
            // earlier runs' on a Kafka topic.
            tag: (now_ms % 1_000_000) as u32,
        };
        let latencies = Arc::new(Latencies::new(schedule));
        let shutdown = Shutdown::default();
        let source: Box<dyn Source> = match via {
            None => Box::new(Generator {
                schedule,
                total: self.total,
                devices: self.devices,
            }),
            Some(via) => via.source(&run_id).map_err(Failure::Runtime)?,
        };
        let io = Io {
            sources: vec![source],
            sinks: vec![(
                "latency".into(),
                Box::new(latencies.clone()) as Box<dyn Sink>,
            )],
            dead_letter: Box::new(latencies.clone()),
        };
        let telemetry = Arc::new(Telemetry::default());
        let options = Options {
            workers: self.workers,
            state: None,
            telemetry: telemetry.clone(),
        };
        let plan = Plan::new(&pipeline);
        let pipeline_run = tokio::spawn(runtime::run(plan, io, options, shutdown.clone()));
        let progress = progress(self.total);
        let sent = match via {
            None => {
                self.watch_in_process(&latencies, &progress, stop, &shutdown)
                    .await
            }
            Some(via) => {
                self.publish(via, &run_id, &telemetry, &latencies, &progress, stop)
                    .await?
            }
        };
        // Readings still on their way get a grace period, then the run stops.
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while latencies.alerts() < sent && Instant::now() < deadline && !stop.is_requested() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        shutdown.request();
        progress.finish_and_clear();
        let ended = pipeline_run.await;
        ended
            .map_err(|e| Failure::Runtime(e.to_string()))?
            .map_err(|e| Failure::Runtime(e.to_string()))?;
        Ok(latencies.outcome(self.rate, via.map_or("process", Via::name).into(), sent))
    }

    /// In process the generator is the source; this waits for it to end.
    async fn watch_in_process(
        &self,
        latencies: &Latencies,
        progress: &indicatif::ProgressBar,
        stop: &Shutdown,
        shutdown: &Shutdown,
    ) -> u64 {
        while latencies.alerts() < self.total && !stop.is_requested() {
            progress.set_position(latencies.alerts());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        if stop.is_requested() {
            shutdown.request();
        }
        self.total
    }

    /// Publishes the readings at the rate, once the source is subscribed;
    /// returns how many went out.
    async fn publish(
        &self,
        via: &Via,
        run_id: &str,
        telemetry: &Telemetry,
        latencies: &Latencies,
        progress: &indicatif::ProgressBar,
        stop: &Shutdown,
    ) -> Result<u64, Failure> {
        let subscribed = Instant::now() + std::time::Duration::from_secs(10);
        while !telemetry.not_ready().is_empty() {
            if Instant::now() > subscribed || stop.is_requested() {
                let waiting = telemetry.not_ready().join(", ");
                return Err(Failure::Runtime(format!("--via: {waiting} not connected")));
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        latencies.restart(Instant::now() + std::time::Duration::from_millis(100));
        let schedule = latencies.schedule();
        let mut sender = via.sender(run_id, stop).map_err(Failure::Runtime)?;
        let mut sent = 0;
        for i in 0..self.total {
            if stop.is_requested() {
                break;
            }
            tokio::time::sleep_until(schedule.due(i).into()).await;
            let (device, line) = schedule.reading(i, self.devices);
            sender.send(&device, line).await.map_err(Failure::Runtime)?;
            sent += 1;
            if i.is_multiple_of(1024) {
                progress.set_position(i);
            }
        }
        sender.close().await.map_err(Failure::Runtime)?;
        Ok(sent)
    }
}

fn progress(total: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} alerts") {
        bar.set_style(style);
    }
    bar
}

/// The in-process source: readings at the schedule's pace.
struct Generator {
    schedule: Schedule,
    total: u64,
    devices: u64,
}

impl Source for Generator {
    fn run(
        self: Box<Self>,
        mut ingest: crate::runtime::Ingest,
    ) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            let generate = move || {
                for i in 0..self.total {
                    let due = self.schedule.due(i);
                    let now = Instant::now();
                    if due > now {
                        // Nothing is waiting: what was made goes on now,
                        // as a live source's does.
                        ingest.flush_blocking()?;
                        std::thread::sleep(due - now);
                    }
                    if ingest.shutdown_requested() {
                        break;
                    }
                    let (_, line) = self.schedule.reading(i, self.devices);
                    let event = ingest.decode_message(line.as_bytes(), &Envelope::at(i));
                    if let Ok(event) = event {
                        ingest.route_blocking(event)?;
                    }
                }
                ingest.finish_blocking(&self.total)?;
                Ok(())
            };
            tokio::task::spawn_blocking(generate)
                .await
                .unwrap_or(Err(SourceError::Closed))
        })
    }
}

/// The sink: each alert's latency from its reading's due time.
struct Latencies {
    schedule: Mutex<Schedule>,
    histogram: Mutex<Histogram<u64>>,
    alerts: AtomicU64,
    first: Mutex<Option<Instant>>,
    last: Mutex<Option<Instant>>,
}

impl Latencies {
    fn new(schedule: Schedule) -> Latencies {
        // 1 µs to an hour, three significant digits.
        let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
            .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits are allowed"));
        Latencies {
            schedule: Mutex::new(schedule),
            histogram: Mutex::new(histogram),
            alerts: AtomicU64::new(0),
            first: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    fn schedule(&self) -> Schedule {
        *self.schedule.lock().expect("not poisoned")
    }

    /// Moves the schedule's start, for a generator that could start only
    /// once the broker was reached.
    fn restart(&self, start: Instant) {
        let mut schedule = self.schedule.lock().expect("not poisoned");
        let later = start.saturating_duration_since(schedule.start).as_millis() as i64;
        schedule.start = start;
        schedule.start_ms += later;
    }

    fn alerts(&self) -> u64 {
        self.alerts.load(Ordering::Relaxed)
    }

    fn record(&self, lines: &[&str], now: Instant) {
        let schedule = self.schedule();
        let Ok(mut histogram) = self.histogram.lock() else {
            return;
        };
        let ours = format!("r{}-", schedule.tag);
        for line in lines {
            let Ok(alert) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let key = alert["key"].as_str().unwrap_or_default();
            let Some(value) = alert["value"].as_f64().filter(|_| key.starts_with(&ours)) else {
                continue;
            };
            let i = value.abs() as u64 - 1;
            let late = now.saturating_duration_since(schedule.due(i));
            let _ = histogram.record((late.as_micros() as u64).max(1));
            self.alerts.fetch_add(1, Ordering::Relaxed);
        }
        if let Ok(mut first) = self.first.lock() {
            first.get_or_insert(now);
        }
        if let Ok(mut last) = self.last.lock() {
            *last = Some(now);
        }
    }

    fn outcome(&self, rate: f64, via: String, sent: u64) -> Outcome {
        let alerts = self.alerts();
        let span = match (
            *self.first.lock().expect("not poisoned"),
            *self.last.lock().expect("not poisoned"),
        ) {
            (Some(first), Some(last)) => (last - first).as_secs_f64(),
            _ => 0.0,
        };
        let histogram = self.histogram.lock().expect("not poisoned");
        let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
        Outcome {
            rate,
            via,
            sent,
            alerts,
            lost: sent.saturating_sub(alerts),
            throughput: if span > 0.0 {
                alerts as f64 / span
            } else {
                alerts as f64
            },
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: histogram.max() as f64 / 1000.0,
        }
    }
}

impl Sink for Arc<Latencies> {
    fn run(
        self: Box<Self>,
        mut records: mpsc::Receiver<Batch>,
        _: crate::runtime::DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            while let Some(batch) = records.recv().await {
                let now = Instant::now();
                let lines: Vec<&str> = (batch.records.iter())
                    .filter(|r| r.is_alert)
                    .map(|r| r.line.as_str())
                    .collect();
                self.record(&lines, now);
                batch.done();
            }
            Ok(())
        })
    }
}
