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
use crate::event::decode::{DEFAULT_MAX_MESSAGE_BYTES, DecodeSpec, KeySpec, TimeSpec};
use crate::event::time::TimeFormat;
use crate::runtime::{BoxFuture, Closed, Ingest};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Every source type, by the name pipelines use in `type:`.
pub const REGISTRY: Registry<dyn SourceSpec> = Registry {
    section: "source",
    built: &[
        ("file", spec::<file::Config>),
        ("kafka", spec::<kafka::Config>),
        ("mqtt", mqtt::Config::parse),
        ("sim", spec::<sim::Config>),
    ],
};

fn spec<C: SourceSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Box<dyn SourceSpec>, Vec<ConfigError>> {
    Ok(Box::new(from_node::<C>(node)?))
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

/// Settings every source shares: how its records are keyed, timed and
/// ordered.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceCommon {
    /// Field holding the entity key, or `topic[N]` for level N of the MQTT
    /// topic. Without it the stream is one entity.
    pub key: Option<Spanned<String>>,
    /// Field holding the event time. Without it, events are stamped with
    /// their arrival time.
    pub time: Option<Spanned<String>>,
    /// How `time` is written: `auto` (RFC 3339 strings, or epoch
    /// milliseconds as numbers), `rfc3339`, `epoch_s`, `epoch_ms`,
    /// `epoch_us`, `epoch_ns` (numbers or numeric strings, fractions
    /// allowed), or a pattern such as `"%Y-%m-%d %H:%M:%S"` (UTC unless it
    /// has `%z`).
    pub time_format: Option<Spanned<TimeFormat>>,
    /// How far behind a key's latest event time an event may arrive and
    /// still be processed in order. Older events are dead-lettered as late.
    #[serde(default)]
    pub max_out_of_orderness: Duration,
    /// Larger messages are dead-lettered as oversized.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Events stamped further ahead than this are dead-lettered: of the
    /// wall clock when live, of the key's latest event in a replay. One
    /// reading dated 2099 would otherwise make every later reading of its
    /// device late.
    #[serde(default = "one_hour")]
    pub max_future: Duration,
    /// A key silent this long (on the timer clock: wall clock when live,
    /// event time in replays) is forgotten: its open windows are emitted
    /// and its state dropped, so a fleet that churns devices does not
    /// grow memory forever. Default: never.
    pub idle_timeout: Option<Duration>,
    /// At most this many keys from this source at once; events of further
    /// keys are dead-lettered until idle ones are forgotten.
    pub max_keys: Option<usize>,
    /// Where a correlation id is: a payload field (dotted for nested
    /// objects), or `record.header.NAME` (a Kafka header, an MQTT 5 user
    /// property); of a W3C `traceparent`, the trace id is taken. Alerts
    /// and dead letters then carry the id of the event behind them.
    pub trace: Option<Spanned<String>>,
}

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}

fn one_hour() -> Duration {
    Duration(3_600_000)
}

impl SourceCommon {
    pub const KEYS: &'static [&'static str] = &[
        "key",
        "time",
        "time_format",
        "max_out_of_orderness",
        "max_message_bytes",
        "max_future",
        "idle_timeout",
        "max_keys",
        "trace",
    ];

    pub fn decode_spec(&self) -> DecodeSpec {
        DecodeSpec {
            key: self.key.as_ref().map(|k| KeySpec::parse(k)),
            time: self.time.as_ref().map(|t| TimeSpec::parse(t)),
            time_format: (self.time_format.as_ref()).map_or(TimeFormat::Auto, |f| f.value.clone()),
            max_message_bytes: self.max_message_bytes,
            trace_header: (self.trace.as_ref())
                .and_then(|t| t.strip_prefix(crate::event::decode::TRACE_HEADER))
                .map(str::to_string),
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

    /// Whether it connects to a broker and says when it is connected
    /// (`/ready` waits for it); other sources are ready once they start.
    fn connects(&self) -> bool {
        false
    }

    /// Whether, with a state dir, its keys' state is checkpointed per
    /// input partition to a changelog the next owner of the partition
    /// reads (a Kafka consumer group), rather than to the state dir.
    fn changelog(&self) -> bool {
        false
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
    /// Headers (a Kafka record's, an MQTT 5 message's user properties):
    /// `trace: record.header.NAME`.
    pub headers: bool,
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
    #[error("state dir: {0}")]
    State(String),
    #[error("the pipeline stopped before the source ended")]
    Closed,
}

impl From<Closed> for SourceError {
    fn from(_: Closed) -> Self {
        SourceError::Closed
    }
}
