//! Sinks: where alerts and operator outputs go.
//!
//! Workers render each output once, as a JSON line in a shared [`Record`],
//! and send batches of records over a bounded channel to every sink that
//! takes the component that produced it. A slow sink fills its channel and
//! so slows the workers and, through them, the sources: nothing is dropped.

pub mod file;
pub mod kafka;
pub mod mqtt;
pub mod stdout;
pub mod webhook;

use crate::config::{ConfigError, Context, Node, Registry, from_node};
use crate::event::Key;
use crate::runtime::Ack;
use crate::runtime::{BoxFuture, DeadLetters};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Every sink type, by the name pipelines use in `type:`.
pub const REGISTRY: Registry<dyn SinkSpec> = Registry {
    section: "sink",
    built: &[
        ("stdout", spec::<stdout::Config>),
        ("file", spec::<file::Config>),
        ("mqtt", mqtt::Config::parse),
        ("kafka", spec::<kafka::Config>),
        ("webhook", spec::<webhook::Config>),
    ],
};

fn spec<C: SinkSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Box<dyn SinkSpec>, Vec<ConfigError>> {
    Ok(Box::new(from_node::<C>(node)?))
}

/// Where `floe simulate --to` and `floe run --sink` write: one URI syntax
/// for both, each command opening it its own way.
#[derive(Debug)]
pub enum Destination {
    /// `stdout` (or `-`).
    Stdout,
    /// `file:PATH`, JSON lines; PATH from the working directory.
    File(PathBuf),
    /// `mqtt://HOST:PORT[/TOPIC][?qos=N&client_id=ID&version=5]`.
    Mqtt(crate::mqtt::Uri),
    /// `kafka://HOST:PORT[,HOST:PORT]/TOPIC[?PARAMETERS]`.
    Kafka(crate::kafka::Uri),
}

impl Destination {
    pub fn parse(uri: &str) -> Result<Destination, String> {
        if uri == "stdout" || uri == "-" {
            Ok(Destination::Stdout)
        } else if let Some(path) = uri.strip_prefix("file:") {
            Ok(Destination::File(PathBuf::from(path)))
        } else if uri.starts_with("mqtt://") || uri.starts_with("mqtts://") {
            Ok(Destination::Mqtt(crate::mqtt::Uri::parse(uri)?))
        } else if uri.starts_with("kafka://") {
            Ok(Destination::Kafka(crate::kafka::Uri::parse(uri)?))
        } else {
            Err(
                "expected stdout, file:PATH, mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC"
                    .into(),
            )
        }
    }

    /// The sink that writes here, as a pipeline's sinks do.
    pub fn sink(self) -> Result<Box<dyn SinkSpec>, String> {
        Ok(match self {
            Destination::Stdout => Box::new(stdout::Config {}),
            Destination::File(path) => Box::new(file::Config::for_path(&path)),
            Destination::Mqtt(uri) => Box::new(mqtt::Config::from_uri(uri)?),
            Destination::Kafka(uri) => Box::new(kafka::Config::from_uri(uri)?),
        })
    }
}

/// One output, rendered once and shared by every sink that takes it.
#[derive(Debug)]
pub struct Record {
    /// The JSON object, without a trailing newline.
    pub line: String,
    pub key: Key,
    /// The operator or source that produced it (an alert's `rule`).
    pub component: Arc<str>,
    pub is_alert: bool,
    /// Held back by its rule's notification policy (cooldown, flapping):
    /// recorded, not sent to people (the `webhook` sink skips it).
    pub suppressed: bool,
}

/// What travels to a sink: records, and the acknowledgements it gives back
/// once those records, and every one before them, are durable.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Arc<Record>>,
    pub acks: Vec<Ack>,
}

impl Batch {
    pub fn new(records: Vec<Arc<Record>>) -> Self {
        Batch {
            records,
            acks: Vec::new(),
        }
    }

    /// Gives the acknowledgements back: this sink has made the records
    /// safe. A sink that fails drops them instead.
    pub fn done(self) {
        self.acks.into_iter().for_each(Ack::done);
    }
}

/// A sink's configuration, as deserialized from its pipeline entry.
pub trait SinkSpec: Debug + Send + Sync {
    /// Opens the sink.
    fn open(&self, ctx: &Context) -> Result<Box<dyn Sink>, SinkError>;
}

/// An opened sink.
pub trait Sink: Send {
    /// Writes batches until the channel closes, then flushes. What the
    /// destination refuses for good goes to `dead_letters`.
    fn run(
        self: Box<Self>,
        records: mpsc::Receiver<Batch>,
        dead_letters: DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("writing {what}: {source}")]
    Write {
        what: String,
        source: std::io::Error,
    },
    #[error("{what}: {reason}")]
    Failed { what: String, reason: String },
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::Error),
}

/// A sink that writes JSON lines to any writer (stdout, a file).
pub struct LinesSink {
    what: String,
    out: Box<dyn Write + Send>,
    /// The file behind `out`, if it is one: fsynced before acknowledging,
    /// so what is acknowledged survives a power cut.
    file: Option<std::fs::File>,
}

impl LinesSink {
    pub fn new(what: impl Into<String>, out: Box<dyn Write + Send>) -> Self {
        LinesSink {
            what: what.into(),
            out,
            file: None,
        }
    }

    /// Writes to `file`, through a buffer of `buffer` bytes.
    pub fn file(
        what: impl Into<String>,
        file: std::fs::File,
        buffer: usize,
    ) -> std::io::Result<Self> {
        let sync = file.try_clone()?;
        Ok(LinesSink {
            what: what.into(),
            out: Box::new(std::io::BufWriter::with_capacity(buffer, file)),
            file: Some(sync),
        })
    }

    fn write_all(mut self, mut records: mpsc::Receiver<Batch>) -> std::io::Result<()> {
        while let Some(batch) = records.blocking_recv() {
            for record in &batch.records {
                self.out.write_all(record.line.as_bytes())?;
                self.out.write_all(b"\n")?;
            }
            // Flush when caught up, so a quiet stream's alerts are not held
            // in a buffer while a busy one still writes in large blocks;
            // and before acknowledging, so what is acknowledged is written.
            if records.is_empty() || !batch.acks.is_empty() {
                self.out.flush()?;
            }
            if !batch.acks.is_empty()
                && let Some(file) = &self.file
            {
                file.sync_data()?;
            }
            batch.done();
        }
        self.out.flush()?;
        match &self.file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}

impl Sink for LinesSink {
    fn run(
        self: Box<Self>,
        records: mpsc::Receiver<Batch>,
        _: DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            let what = self.what.clone();
            let result = tokio::task::spawn_blocking(move || self.write_all(records)).await;
            let result = result.unwrap_or_else(|e| Err(std::io::Error::other(e)));
            result.map_err(|source| SinkError::Write { what, source })
        })
    }
}
