//! `floe simulate`: publish simulated telemetry.

use super::Failure;
use crate::config::Duration;
use crate::event::time;
use crate::runtime::Shutdown;
use crate::sim::run::{self, Limit, Output};
use crate::sim::{Label, Scenario};
use crate::sources::pace::Pace;
use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The scenario file, like simulators/trucks.yaml.
    scenario: PathBuf,
    /// Where to send: `stdout` or `file:PATH` (JSON lines).
    #[arg(long, value_name = "URI")]
    to: String,
    /// Messages per wall-clock second (sets the pace instead of --speed).
    #[arg(long)]
    rate: Option<f64>,
    /// Simulated time per wall-clock time: 60 runs an hour a minute, 0 as
    /// fast as possible. Default 1.
    #[arg(long)]
    speed: Option<f64>,
    /// How long to run, at the chosen pace (simulated time when --speed 0).
    /// Default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seed: the same seed gives the same output, byte for byte.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write the ground truth (faults, their times, the rules they should
    /// raise) to this file as JSON lines.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    Duration::parse(text)
}

pub fn simulate(args: Args) -> Result<(), Failure> {
    let scenario = Scenario::load(&args.scenario).map_err(|d| Failure::Invalid(d.to_string()))?;
    let pace = match (args.rate, args.speed) {
        (Some(_), Some(_)) => {
            return Err(Failure::Invalid("give --rate or --speed, not both".into()));
        }
        (Some(rate), None) if rate > 0.0 => Pace::Rate(rate),
        (Some(_), None) => return Err(Failure::Invalid("--rate must be above 0".into())),
        (None, speed) => Pace::speed(speed.unwrap_or(1.0)),
    };
    let mut sim = scenario.simulation(args.seed).map_err(|e| {
        Failure::Invalid(crate::config::Diagnostics::new(&args.scenario, e).to_string())
    })?;
    let limit = args.duration.map_or(Limit::Never, |d| {
        Limit::for_duration(pace, d.ms(), sim.now())
    });
    let mut out = Writer::open(&args.to, args.labels.as_deref())?;
    let runtime = super::tokio_runtime(1)?;
    let shutdown = Shutdown::default();
    let started = Instant::now();
    let first = sim.now();
    let result = runtime.block_on(async {
        shutdown.on_signals();
        let stop = shutdown.clone();
        tokio::task::spawn_blocking(move || {
            let sent = run::run(&mut sim, &mut out, pace, limit, || stop.is_requested());
            (sent, sim.now(), out.progress.finish())
        })
        .await
    });
    let (sent, last, labelled) = result.map_err(|e| Failure::Runtime(e.to_string()))?;
    let sent = sent.map_err(|e| Failure::Runtime(format!("writing {}: {e}", args.to)))?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "floe: {}: {sent} messages in {secs:.2}s ({:.0}/s), simulated {} to {}, {labelled} labels",
        scenario.name,
        sent as f64 / secs.max(1e-9),
        time::format_rfc3339(first),
        time::format_rfc3339(last),
    );
    Ok(())
}

/// JSON lines to stdout or a file, labels to their own file.
struct Writer {
    out: BufWriter<Box<dyn Write + Send>>,
    labels: Option<BufWriter<File>>,
    progress: Progress,
}

impl Writer {
    fn open(to: &str, labels: Option<&std::path::Path>) -> Result<Writer, Failure> {
        let out: Box<dyn Write + Send> = if to == "stdout" || to == "-" {
            Box::new(std::io::stdout())
        } else if let Some(path) = to.strip_prefix("file:") {
            Box::new(File::create(path).map_err(|e| Failure::Invalid(format!("--to {to}: {e}")))?)
        } else {
            let scheme = to.split(':').next().unwrap_or_default();
            let message = match scheme {
                "mqtt" | "mqtts" | "kafka" => format!(
                    "--to {to}: `{scheme}` outputs are not available in this version of floe yet"
                ),
                _ => format!("--to {to}: expected stdout or file:PATH"),
            };
            return Err(Failure::Invalid(message));
        };
        let labels = match labels {
            Some(path) => Some(BufWriter::new(File::create(path).map_err(|e| {
                Failure::Invalid(format!("--labels {}: {e}", path.display()))
            })?)),
            None => None,
        };
        Ok(Writer {
            out: BufWriter::with_capacity(1 << 20, out),
            labels,
            progress: Progress::new(),
        })
    }
}

impl Output for Writer {
    type Error = std::io::Error;

    fn message(&mut self, _device: &str, line: &str) -> std::io::Result<()> {
        self.out.write_all(line.as_bytes())?;
        self.out.write_all(b"\n")?;
        self.progress.message();
        Ok(())
    }

    fn label(&mut self, label: &Label) -> std::io::Result<()> {
        self.progress.labels += 1;
        match &mut self.labels {
            Some(file) => writeln!(file, "{}", serde_json::to_string(label).unwrap_or_default()),
            None => Ok(()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        self.labels.as_mut().map_or(Ok(()), |l| l.flush())
    }
}

/// A progress bar on a terminal, a log line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    sent: u64,
    labels: u64,
    started: Instant,
    last_log: Instant,
}

/// Messages between progress updates: updating costs more than a message.
const PROGRESS_EVERY: u64 = 4096;

impl Progress {
    fn new() -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {human_pos} messages ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            sent: 0,
            labels: 0,
            started: Instant::now(),
            last_log: Instant::now(),
        }
    }

    fn message(&mut self) {
        self.sent += 1;
        if !self.sent.is_multiple_of(PROGRESS_EVERY) {
            return;
        }
        match &self.bar {
            Some(bar) => {
                bar.set_position(self.sent);
                bar.set_message(format!("{} labels", self.labels));
            }
            None if self.last_log.elapsed().as_secs() >= 5 => {
                self.last_log = Instant::now();
                let rate = self.sent as f64 / self.started.elapsed().as_secs_f64();
                tracing::info!(
                    "sent {} messages ({rate:.0}/s), {} labels",
                    self.sent,
                    self.labels
                );
            }
            None => {}
        }
    }

    /// Clears the bar; returns the number of labels.
    fn finish(&mut self) -> u64 {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        self.labels
    }
}
