//! `floe demo`: the simulator feeding the example pipelines, in one
//! process, with no broker and no files.
//!
//! The pipelines and scenarios are built into the binary, so the demo runs
//! the same from anywhere. Each pipeline's sources are replaced by the
//! simulator, its sinks by the console.

use super::Failure;
use crate::config::{Duration, Pipeline};
use crate::pace::Pace;
use crate::runtime::BoxFuture;
use crate::runtime::{self, Io, Options, Plan, Shutdown, Snapshot, Telemetry};
use crate::sim::Scenario;
use crate::sim::run::Limit;
use crate::sinks::{Batch, Sink, SinkError};
use crate::sources::Source;
use crate::sources::sim::SimSource;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(clap::Args)]
pub struct Args {
    /// Stop after this long (wall clock). Default: until Ctrl-C.
    #[arg(long, value_parser = super::simulate::parse_duration)]
    duration: Option<Duration>,
    /// Simulated time per wall-clock time.
    #[arg(
        long,
        default_value_t = 60.0,
        value_parser = super::simulate::parse_speed,
        allow_negative_numbers = true
    )]
    speed: f64,
    /// Print alerts as JSON lines instead of readable lines.
    #[arg(long)]
    json: bool,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    // Default: 127.0.0.1:8080, or any free port if that one is taken.
    #[command(flatten)]
    http: super::serve::HttpArgs,
}

/// (pipeline path, pipeline, scenario path, scenario) of each demo pipeline.
const DEMOS: [(&str, &str, &str, &str); 2] = [
    (
        "pipelines/cold-chain.yaml",
        include_str!("../../pipelines/cold-chain.yaml"),
        "simulators/demo-trucks.yaml",
        include_str!("../../simulators/demo-trucks.yaml"),
    ),
    (
        "pipelines/factory.yaml",
        include_str!("../../pipelines/factory.yaml"),
        "simulators/demo-factory.yaml",
        include_str!("../../simulators/demo-factory.yaml"),
    ),
];

pub fn demo(args: Args) -> Result<(), Failure> {
    if args.speed <= 0.0 {
        return Err(Failure::Invalid("--speed must be above 0".into()));
    }
    let style = Style {
        json: args.json,
        color: std::io::stdout().is_terminal(),
    };
    let mut runs = Vec::new();
    for (pipeline_path, pipeline, scenario_path, scenario) in DEMOS {
        let built_in =
            |what: &str, e: String| Failure::Runtime(format!("the built-in {what} is broken: {e}"));
        let pipeline = Pipeline::parse(Path::new(pipeline_path), pipeline)
            .map_err(|e| built_in(pipeline_path, format!("{e:?}")))?;
        let scenario = Scenario::parse(scenario, scenario_path.into())
            .map_err(|e| built_in(scenario_path, format!("{e:?}")))?;
        runs.push((pipeline, scenario));
    }
    let fleets: Vec<String> = runs
        .iter()
        .map(|(pipeline, scenario)| {
            let devices = scenario.simulation(args.seed).map_or(0, |s| s.devices());
            format!(
                "{devices} simulated devices ({}) into pipelines/{}.yaml",
                scenario.name, pipeline.name
            )
        })
        .collect();
    eprintln!(
        "floe demo: {}; simulated time runs {}x real time.\nAlerts appear below as the injected faults develop; Ctrl-C to stop.",
        fleets.join(", "),
        args.speed
    );
    let runtime = super::tokio_runtime(2)?;
    let reports = runtime.block_on(async {
        let shutdown = Shutdown::default();
        shutdown.on_signals();
        if let Some(d) = args.duration {
            let stop = shutdown.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(d.ms().max(0) as u64)).await;
                stop.request();
            });
        }
        let telemetry = Arc::new(Telemetry::with_board());
        let server = args.http.start_demo(telemetry.clone()).await?;
        eprintln!("floe demo: dashboard at http://{}/", server.addr);
        let mut tasks = Vec::new();
        for (pipeline, scenario) in &runs {
            let mut plan = Plan::new(pipeline);
            plan.collect_alerts_only();
            // Timers run on the simulation's clock, which runs faster
            // than the wall clock.
            plan.flow.live = false;
            let sources = (0..pipeline.sources.len())
                .map(|_| {
                    let sim = scenario
                        .simulation(args.seed)
                        .map_err(|e| format!("{e:?}"))?;
                    Ok(
                        Box::new(SimSource::new(sim, Pace::Speed(args.speed), Limit::Never))
                            as Box<dyn Source>,
                    )
                })
                .collect::<Result<Vec<_>, String>>();
            let sources = sources.map_err(Failure::Runtime)?;
            let io = Io {
                sources,
                sinks: vec![(
                    "console".into(),
                    Box::new(Console { style }) as Box<dyn Sink>,
                )],
                dead_letter: Box::new(Discard),
            };
            let options = Options {
                workers: 1,
                state: None,
                telemetry: telemetry.clone(),
            };
            let shutdown = shutdown.clone();
            let name = pipeline.name.clone();
            tasks.push(tokio::spawn(async move {
                (name, runtime::run(plan, io, options, shutdown).await)
            }));
        }
        let mut reports: Vec<(String, Snapshot)> = Vec::new();
        for task in tasks {
            let (name, report) = task.await.map_err(|e| Failure::Runtime(e.to_string()))?;
            reports.push((name, report.map_err(|e| Failure::Runtime(e.to_string()))?));
        }
        Ok::<_, Failure>(reports)
    })?;
    for (name, report) in reports {
        eprintln!(
            "floe demo: {name}: {} events, {} alerts",
            report.events, report.alerts
        );
    }
    Ok(())
}

/// How alerts are shown.
#[derive(Clone, Copy)]
struct Style {
    json: bool,
    color: bool,
}

/// Prints alerts as they come.
struct Console {
    style: Style,
}

impl Sink for Console {
    fn run(
        self: Box<Self>,
        mut records: mpsc::Receiver<Batch>,
        _: crate::runtime::DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            while let Some(batch) = records.recv().await {
                let mut out = std::io::stdout().lock();
                for record in &batch.records {
                    let line = if self.style.json {
                        record.line.clone()
                    } else {
                        readable(&record.line, self.style.color)
                    };
                    let written = writeln!(out, "{line}").and_then(|()| out.flush());
                    written.map_err(|source| SinkError::Write {
                        what: "stdout".into(),
                        source,
                    })?;
                }
                batch.done();
            }
            Ok(())
        })
    }
}

/// `14:07:10  critical  cold-chain  too_warm        truck-0042  FIRING    truck-0042: chilled cargo at 4.6 C`
fn readable(json: &str, color: bool) -> String {
    let alert: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let text = |field: &str| alert[field].as_str().unwrap_or_default().to_string();
    let time = text("event_time")
        .get(11..19)
        .unwrap_or_default()
        .to_string();
    let state = text("state");
    let severity = text("severity");
    let line = format!(
        "{time}  {severity:<8}  {:<10}  {:<15} {:<11} {:<9} {}",
        text("pipeline"),
        text("rule"),
        text("key"),
        state.to_uppercase(),
        text("message")
    );
    if !color {
        return line;
    }
    let code = match (state.as_str(), severity.as_str()) {
        ("resolved", _) => "32",
        (_, "critical") => "31;1",
        _ => "33",
    };
    format!("\x1b[{code}m{line}\x1b[0m")
}

/// Dead letters are not expected from the simulator; the demo drops them.
struct Discard;

impl Sink for Discard {
    fn run(
        self: Box<Self>,
        mut records: mpsc::Receiver<Batch>,
        _: crate::runtime::DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            while let Some(batch) = records.recv().await {
                batch.done();
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_read_as_one_line() {
        let json = r#"{"alert_id":"x","pipeline":"cold-chain","rule":"too_warm","key":"truck-0042","state":"firing","severity":"critical","event_time":"2026-11-23T14:07:10.000Z","emitted_at":"2026-11-24T00:00:00.000Z","value":4.6,"message":"truck-0042: chilled cargo at 4.6 C"}"#;
        let line = readable(json, false);
        assert!(
            line.starts_with("14:07:10  critical  cold-chain  too_warm"),
            "{line}"
        );
        assert!(
            line.contains("FIRING") && line.ends_with("chilled cargo at 4.6 C"),
            "{line}"
        );
        assert!(readable(json, true).starts_with("\x1b[31;1m"));
    }

    #[test]
    fn the_built_in_pipelines_and_scenarios_load() {
        for (pipeline_path, pipeline, scenario_path, scenario) in DEMOS {
            assert!(
                Pipeline::parse(Path::new(pipeline_path), pipeline).is_ok(),
                "{pipeline_path}"
            );
            assert!(
                Scenario::parse(scenario, scenario_path.into()).is_ok(),
                "{scenario_path}"
            );
        }
    }
}
