//! `floe simulate`: publish simulated telemetry.

use super::Failure;
use crate::config::Duration;
use crate::event::time;
use crate::kafka;
use crate::mqtt::{self, MqttError, Patience, Publisher, QoS, TopicTemplate};
use crate::pace::{self, Pace};
use crate::runtime::{Shutdown, SinkMetrics};
use crate::sim::run::{self, Limit, Output};
use crate::sim::{Label, Scenario};
use crate::sinks::Destination;
use std::fs::File;
use std::io::{BufWriter, ErrorKind, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The scenario file, like simulators/trucks.yaml.
    scenario: PathBuf,
    /// Where to send: `stdout`, `file:PATH` (JSON lines),
    /// `mqtt://HOST:PORT[/TOPIC][?qos=N]`, where TOPIC may use `{device}`
    /// (default: fleet/{device}/telemetry for trucks, plant/{device}/telemetry
    /// for a factory), or `kafka://HOST:PORT/TOPIC` (keyed by device).
    #[arg(long, value_name = "URI")]
    to: String,
    /// Messages per wall-clock second (sets the pace instead of --speed).
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    rate: Option<f64>,
    /// Simulated time per wall-clock time: 60 runs an hour a minute, 0 as
    /// fast as possible. Default 1.
    #[arg(long, value_parser = parse_speed, allow_negative_numbers = true)]
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
    /// How long to keep trying to reach the broker of an mqtt:// output
    /// before giving up (exit 2).
    #[arg(long, value_name = "D", value_parser = parse_timeout, default_value = "10s")]
    connect_timeout: Duration,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    Duration::parse(text)
}

pub fn parse_speed(text: &str) -> Result<f64, String> {
    pace::check_speed(parse_number(text)?)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match Duration::parse(text)? {
        d if d.ms() > 0 => Ok(d),
        _ => Err("must be longer than 0".into()),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    pace::check_rate(parse_number(text)?)
}

fn parse_number(text: &str) -> Result<f64, String> {
    text.parse().map_err(|_| "not a number".to_string())
}

pub fn simulate(args: Args) -> Result<(), Failure> {
    let scenario = Scenario::load(&args.scenario).map_err(|d| Failure::Invalid(d.to_string()))?;
    let pace = match (args.rate, args.speed) {
        (Some(_), Some(_)) => {
            return Err(Failure::Invalid("give --rate or --speed, not both".into()));
        }
        (Some(rate), None) => Pace::Rate(rate),
        (None, speed) => Pace::speed(speed.unwrap_or(1.0)),
    };
    let mut sim = scenario.simulation(args.seed).map_err(|e| {
        Failure::Invalid(crate::config::Diagnostics::new(&args.scenario, e).to_string())
    })?;
    let limit = args.duration.map_or(Limit::Never, |d| {
        Limit::for_duration(pace, d.ms(), sim.now())
    });
    let runtime = super::tokio_runtime(1)?;
    let shutdown = Shutdown::default();
    let patience = Patience {
        first_connect: Some(std::time::Duration::from_millis(
            args.connect_timeout.ms() as u64
        )),
        stop: Some(shutdown.clone()),
    };
    let mut out = {
        let _in_runtime = runtime.enter();
        Writer::open(&args.to, args.labels.as_deref(), &scenario, patience)?
    };
    let started = Instant::now();
    let first = sim.now();
    let result = runtime.block_on(async {
        shutdown.on_signals();
        let stop = shutdown.clone();
        tokio::task::spawn_blocking(move || {
            let sent = match run::run(&mut sim, &mut out, pace, limit, 0, || stop.is_requested()) {
                // A stop while a publish waited for the broker: the run
                // ends there, as at any other stop.
                Err(e) if e.kind() == ErrorKind::Interrupted => Ok(out.progress.sent),
                sent => sent,
            };
            let sent = sent.and_then(|sent| out.out.close().map(|()| sent));
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

/// Messages to their destination, labels to their own file.
struct Writer {
    out: Out,
    labels: Option<BufWriter<File>>,
    progress: Progress,
}

/// Where messages go.
enum Out {
    /// JSON lines, to stdout or a file.
    Lines(BufWriter<Box<dyn Write + Send>>),
    Mqtt(MqttOut),
    Kafka(KafkaOut),
}

impl Writer {
    /// Opens `--to`; MQTT needs to be inside the runtime.
    fn open(
        to: &str,
        labels: Option<&std::path::Path>,
        scenario: &Scenario,
        patience: Patience,
    ) -> Result<Writer, Failure> {
        let invalid = |e: String| Failure::Invalid(format!("--to {to}: {e}"));
        let lines = |w: Box<dyn Write + Send>| Out::Lines(BufWriter::with_capacity(1 << 20, w));
        let out = match Destination::parse(to).map_err(invalid)? {
            Destination::Stdout => lines(Box::new(std::io::stdout())),
            Destination::File(path) => lines(Box::new(
                File::create(path).map_err(|e| invalid(e.to_string()))?,
            )),
            Destination::Mqtt(uri) => {
                Out::Mqtt(MqttOut::open(uri, scenario, patience).map_err(invalid)?)
            }
            Destination::Kafka(uri) => Out::Kafka(KafkaOut::open(uri).map_err(invalid)?),
        };
        let labels = match labels {
            Some(path) => Some(BufWriter::new(File::create(path).map_err(|e| {
                Failure::Invalid(format!("--labels {}: {e}", path.display()))
            })?)),
            None => None,
        };
        Ok(Writer {
            out,
            labels,
            progress: Progress::new(),
        })
    }
}

impl Out {
    fn write(&mut self, device: &str, line: &str) -> std::io::Result<()> {
        match self {
            Out::Lines(out) => {
                out.write_all(line.as_bytes())?;
                out.write_all(b"\n")
            }
            Out::Mqtt(mqtt) => mqtt.publish(device, line),
            Out::Kafka(kafka) => kafka.send(device, line),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Lines(out) => out.flush(),
            Out::Mqtt(_) | Out::Kafka(_) => Ok(()),
        }
    }

    /// Flushes; for a broker, waits until it has every message.
    fn close(&mut self) -> std::io::Result<()> {
        match self {
            Out::Lines(out) => out.flush(),
            Out::Mqtt(mqtt) => mqtt.close(),
            Out::Kafka(kafka) => kafka.close(),
        }
    }
}

/// Produces through the same producer as the `kafka` sink, keyed by device.
struct KafkaOut {
    /// `None` once closed.
    producer: Option<kafka::Producer>,
    topic: String,
    runtime: tokio::runtime::Handle,
}

impl KafkaOut {
    fn open(uri: kafka::Uri) -> Result<KafkaOut, String> {
        let kafka::Uri {
            connection,
            topic,
            params,
        } = uri;
        if let Some((name, _)) = params.first() {
            return Err(format!("unknown parameter `{name}` for a kafka output"));
        }
        let producer = kafka::Producer::new(&connection).map_err(|e| e.to_string())?;
        producer.check_topic(&topic).map_err(|e| e.to_string())?;
        Ok(KafkaOut {
            producer: Some(producer),
            topic,
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Called from the simulation's blocking thread.
    fn send(&mut self, device: &str, line: &str) -> std::io::Result<()> {
        let producer = self.producer.as_mut().ok_or_else(closed)?;
        let sent = producer.send(&self.topic, device, line.as_bytes());
        self.runtime.block_on(sent).map_err(std::io::Error::other)
    }

    fn close(&mut self) -> std::io::Result<()> {
        let producer = self.producer.take().ok_or_else(closed)?;
        self.runtime
            .block_on(producer.close())
            .map_err(std::io::Error::other)
    }
}

/// Publishes through the same client as the `mqtt` sink.
struct MqttOut {
    /// `None` once closed.
    publisher: Option<Publisher>,
    topic: TopicTemplate,
    qos: QoS,
    runtime: tokio::runtime::Handle,
}

impl MqttOut {
    fn open(uri: mqtt::Uri, scenario: &Scenario, patience: Patience) -> Result<MqttOut, String> {
        let mqtt::Uri {
            mut connection,
            topic,
            qos,
        } = uri;
        let topic = topic.unwrap_or_else(|| scenario.default_topic().to_string());
        let topic = TopicTemplate::parse(&topic, &["device"])?;
        // Without a chosen id, there is no session worth resuming: a
        // broker would keep each run's forever.
        connection.clean_session = connection.client_id.is_none();
        let id = connection.client_id(&format!("floe-simulate-{}", std::process::id()));
        let publisher = Publisher::start(
            &connection,
            id,
            Path::new("."),
            "simulate".into(),
            patience,
            SinkMetrics::default(),
        )
        .map_err(|e| e.to_string())?;
        Ok(MqttOut {
            publisher: Some(publisher),
            topic,
            qos: qos.unwrap_or(QoS::AtLeastOnce),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    /// Called from the simulation's blocking thread.
    fn publish(&mut self, device: &str, line: &str) -> std::io::Result<()> {
        let topic = self.topic.render(|_| Some(device));
        let publisher = self.publisher.as_mut().ok_or_else(closed)?;
        let sent = publisher.publish(topic, line.as_bytes().to_vec(), self.qos, false);
        match self.runtime.block_on(sent) {
            Err(MqttError::Stopped) => Err(ErrorKind::Interrupted.into()),
            sent => sent.map_err(std::io::Error::other),
        }
    }

    fn close(&mut self) -> std::io::Result<()> {
        let publisher = self.publisher.take().ok_or_else(closed)?;
        self.runtime
            .block_on(publisher.close())
            .map_err(std::io::Error::other)
    }
}

fn closed() -> std::io::Error {
    std::io::Error::other("the MQTT client is closed")
}

impl Output for Writer {
    type Error = std::io::Error;

    fn message(&mut self, device: &str, line: &str) -> std::io::Result<()> {
        self.out.write(device, line)?;
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
