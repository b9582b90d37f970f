//! Sources: where events come from.
//!
//! A source reads raw messages and hands each to its [`Ingest`], which
//! decodes it (or dead-letters it with its reason and origin) and routes the
//! event to the worker that owns its key. Sources only move bytes; decoding,
//! routing and back-pressure are the same for all of them.

pub mod file;
pub mod kafka;
pub mod mqtt;
pub mod sim;

use crate::config::{ConfigError, Context, Duration, Node, Registry, Spanned, from_node};
use crate::event::Event;
use crate::event::decode::{
    DEFAULT_MAX_MESSAGE_BYTES, DecodeError, DecodeSpec, Decoder, KeySpec, TimeSpec,
};
use crate::runtime::{Ack, BoxFuture, DeadLetters, Metrics, Router, Shutdown};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::sync::Arc;

/// Every source type, by the name pipelines use in `type:`.
pub const REGISTRY: Registry<dyn SourceSpec> = Registry {
    section: "source",
    built: &[
        ("file", spec::<file::Config>),
        ("kafka", spec::<kafka::Config>),
        ("mqtt", mqtt::Config::parse),
        ("sim", spec::<sim::Config>),
    ],
    planned: &[],
};

fn spec<C: SourceSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Box<dyn SourceSpec>, Vec<ConfigError>> {
    Ok(Box::new(from_node::<C>(node).map_err(|e| vec![e])?))
}

/// Builds a source from an `--input NAME=URI` value.
pub fn from_uri(uri: &str) -> Result<Box<dyn SourceSpec>, String> {
    if let Some(path) = uri.strip_prefix("file:") {
        return Ok(Box::new(file::Config::for_path(path)));
    }
    if let Some(path) = uri.strip_prefix("sim:") {
        return Ok(Box::new(sim::Config::for_path(path)));
    }
    let scheme = uri.split(':').next().unwrap_or_default();
    match scheme {
        "mqtt" | "mqtts" => Ok(Box::new(mqtt::Config::from_uri(uri)?)),
        "kafka" => Ok(Box::new(kafka::Config::from_uri(uri)?)),
        _ => Err(format!(
            "unknown input `{uri}`: expected file:PATH, sim:SCENARIO, mqtt://HOST:PORT/TOPIC or kafka://HOST:PORT/TOPIC"
        )),
    }
}

/// How much of an oversized message the dead-letter record keeps.
const OVERSIZED_PREFIX: usize = 1024;

/// Settings every source shares: how its records are keyed, timed and
/// ordered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCommon {
    /// Field holding the entity key, or `topic[N]` for level N of the MQTT
    /// topic. Without it the stream is one entity.
    pub key: Option<Spanned<String>>,
    /// Field holding the event time (RFC 3339 or epoch ms). Without it,
    /// events are stamped with their arrival time.
    pub time: Option<Spanned<String>>,
    /// How far behind a key's latest event time an event may arrive and
    /// still be processed in order. Older events are dead-lettered as late.
    #[serde(default)]
    pub max_out_of_orderness: Duration,
    /// Larger messages are dead-lettered as oversized.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

impl SourceCommon {
    pub const KEYS: &'static [&'static str] =
        &["key", "time", "max_out_of_orderness", "max_message_bytes"];

    pub fn decode_spec(&self) -> DecodeSpec {
        DecodeSpec {
            key: self.key.as_ref().map(|k| KeySpec::parse(k)),
            time: self.time.as_ref().map(|t| TimeSpec::parse(t)),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

/// A source's configuration, as deserialized from its pipeline entry.
pub trait SourceSpec: Debug + Send + Sync {
    /// Opens the source.
    fn open(&self, ctx: &Context) -> Result<Box<dyn Source>, SourceError>;

    /// What its messages carry beside their payload.
    fn carries(&self) -> Carries {
        Carries::default()
    }

    /// Whether it delivers at the pace of the world (a broker, a paced
    /// replay) rather than as fast as it can read (a recording): wall-clock
    /// timers (`absence`) then run on the wall clock, not on event time.
    fn live(&self) -> bool {
        true
    }
}

/// What a source's messages carry beside their payload, that `key:` and
/// `time:` may read.
#[derive(Clone, Copy, Debug, Default)]
pub struct Carries {
    /// An MQTT topic: `key: topic[N]`.
    pub topics: bool,
    /// A Kafka record's key and timestamp: `key: record.key`,
    /// `time: record.timestamp`.
    pub records: bool,
}

/// An opened source.
pub trait Source: Send {
    /// Reads until the input ends or shutdown is requested.
    fn run(self: Box<Self>, ingest: Ingest) -> BoxFuture<Result<(), SourceError>>;
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Scenario(String),
    #[error(transparent)]
    Mqtt(#[from] crate::mqtt::MqttError),
    #[error(transparent)]
    Kafka(#[from] crate::kafka::Error),
    #[error("the pipeline stopped before the source ended")]
    Closed,
}

/// A source's way into the pipeline: decode, dead-letter, route.
pub struct Ingest {
    /// Id of the source, for dead-letter records.
    pub id: Arc<str>,
    decoder: Decoder,
    router: Router,
    dead_letters: DeadLetters,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
}

impl Ingest {
    pub fn new(
        id: Arc<str>,
        decoder: Decoder,
        router: Router,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
    ) -> Self {
        Ingest {
            id,
            decoder,
            router,
            dead_letters,
            metrics,
            shutdown,
        }
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// The shutdown flag, for loops that hold the `Ingest` mutably.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Dead-letters a message that could not be decoded. Blocks while the
    /// dead-letter sink is behind: rejected messages are never dropped. An
    /// oversized payload is kept only in part, so a flood of huge messages
    /// cannot exhaust memory on their way to the dead-letter sink.
    pub fn reject_blocking(
        &self,
        error: &DecodeError,
        origin: serde_json::Value,
        payload: &[u8],
    ) -> Result<(), SourceError> {
        let payload = match error {
            DecodeError::TooLarge { .. } => &payload[..payload.len().min(OVERSIZED_PREFIX)],
            _ => payload,
        };
        self.dead_letters
            .send_blocking(&self.id, &error.to_string(), origin, payload)
            .map_err(|_| SourceError::Closed)
    }

    /// Counts messages the broker marked as possibly delivered before.
    pub fn count_redelivered(&self, n: u64) {
        self.metrics.redelivered(n);
    }

    /// Hands a decoded event to its worker, blocking while workers are behind.
    pub fn route_blocking(&mut self, event: Event) -> Result<(), SourceError> {
        self.router
            .route_blocking(event)
            .map_err(|_| SourceError::Closed)
    }

    /// Sends events still batched to their workers.
    pub fn flush_blocking(&mut self) -> Result<(), SourceError> {
        self.router
            .flush_blocking()
            .map_err(|_| SourceError::Closed)
    }

    /// Sends `ack` behind everything this source has handed over so far:
    /// events to their workers, rejected messages to the dead-letter sink.
    pub fn mark_blocking(&mut self, ack: Ack) -> Result<(), SourceError> {
        self.router
            .mark_blocking(&ack)
            .map_err(|_| SourceError::Closed)?;
        self.dead_letters
            .ack_blocking(ack.share())
            .map_err(|_| SourceError::Closed)?;
        ack.done();
        Ok(())
    }

    /// Tells the workers this source has ended, so they can release the
    /// events they were holding back for ordering.
    pub fn finish_blocking(&mut self) -> Result<(), SourceError> {
        self.router
            .finish_blocking()
            .map_err(|_| SourceError::Closed)
    }
}
