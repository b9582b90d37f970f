//! MQTT connections, shared by the `mqtt` source, the `mqtt` sink and
//! `floe simulate --to mqtt://`.
//!
//! [`Connection`] is how a pipeline file (or an `mqtt://` URI) says which
//! broker to reach and how; [`client`] puts one face on rumqttc's MQTT
//! 3.1.1 and 5 clients; [`Link`] supplies the reconnection backoff and
//! state logging rumqttc leaves to its user; [`Publisher`] publishes with
//! acknowledgements counted; [`topic`] checks subscription filters and
//! fills in topic templates.

pub mod client;
mod link;
mod publisher;
mod topic;

pub use client::{Client, EventLoop, Incoming, Message, PollError};
pub use link::Link;
pub use publisher::{Patience, Publisher};
pub use rumqttc::QoS;
pub use topic::{Filters, TopicTemplate, check_filter};

use crate::config::{ConfigError, Duration, Node, Secret, Spanned, from_node};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// How to reach a broker. Components that talk MQTT take these keys next
/// to their own; see [`split`].
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// `mqtt://HOST:PORT` or `mqtts://HOST:PORT` (TLS).
    pub url: Spanned<String>,
    /// The client id. Components default to `floe-PIPELINE-ID`, so a
    /// restarted floe resumes its session.
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Write it as `${MQTT_PASSWORD}`: values from the environment are
    /// never printed.
    pub password: Option<Secret>,
    /// Start a fresh session on connect. The default, `false`, lets the
    /// broker keep QoS 1 messages while floe is down.
    #[serde(default)]
    pub clean_session: bool,
    #[serde(default = "thirty_seconds")]
    pub keep_alive: Duration,
    /// `3.1.1` (the default) or `5`.
    #[serde(default)]
    pub version: Version,
    pub tls: Option<Tls>,
}

fn thirty_seconds() -> Duration {
    Duration(30_000)
}

/// The MQTT protocol version.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Version {
    #[default]
    V311,
    V5,
}

impl<'de> Deserialize<'de> for Version {
    /// Accepts `5`, `"5"` and `"3.1.1"`: YAML reads a bare 5 as a number.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(5) => Ok(Version::V5),
            Raw::Text(t) if t == "5" || t == "5.0" => Ok(Version::V5),
            Raw::Text(t) if t == "3.1.1" => Ok(Version::V311),
            _ => Err(serde::de::Error::custom("`version` must be 3.1.1 or 5")),
        }
    }
}

/// TLS settings; certificates and keys are PEM files.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The CA that signed the broker's certificate.
    pub ca: PathBuf,
    /// A client certificate and its key, for brokers that ask for one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// Keys of [`Connection`], for components that split their options.
pub const CONNECTION_KEYS: &[&str] = &[
    "url",
    "client_id",
    "username",
    "password",
    "clean_session",
    "keep_alive",
    "version",
    "tls",
];

/// Deserializes a component's options: the connection keys into a
/// [`Connection`], the rest into `T`.
pub fn split<T: serde::de::DeserializeOwned>(
    node: &Node,
) -> Result<(Connection, T), Vec<ConfigError>> {
    let connection =
        from_node::<Connection>(&node.only(CONNECTION_KEYS)).and_then(|c| match c.check() {
            problems if problems.is_empty() => Ok(c),
            problems => Err(problems),
        });
    // The component's own options do not know the connection keys, so
    // their typos get the hint here.
    let rest = from_node::<T>(&node.without(CONNECTION_KEYS)).map_err(|errors| {
        (errors.into_iter())
            .map(|e| e.hint_field(CONNECTION_KEYS))
            .collect::<Vec<_>>()
    });
    match (connection, rest) {
        (Ok(connection), Ok(rest)) => Ok((connection, rest)),
        (connection, rest) => Err((connection.err().into_iter().flatten())
            .chain(rest.err().into_iter().flatten())
            .collect()),
    }
}

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("{broker}: {reason}")]
    Refused { broker: String, reason: String },
    #[error("{broker}: the connection closed with {pending} messages unacknowledged")]
    Unacknowledged { broker: String, pending: u64 },
    #[error("cannot connect to {broker}: {reason} (gave up after {secs:.0}s)")]
    Unreachable {
        broker: String,
        reason: String,
        secs: f64,
    },
    #[error("stopped before {broker} could be reached: {pending} messages not sent")]
    NeverReached { broker: String, pending: u64 },
    #[error("stopped while waiting for the broker")]
    Stopped,
    #[error("the MQTT client stopped")]
    Closed,
}

/// An `mqtt://HOST:PORT/TOPIC?qos=N&client_id=ID` URI, as `--input` and
/// `floe simulate --to` take it.
#[derive(Debug)]
pub struct Uri {
    pub connection: Connection,
    /// The path: a topic filter for a source, a topic template for a publisher.
    pub topic: Option<String>,
    pub qos: Option<QoS>,
}

impl Uri {
    pub fn parse(uri: &str) -> Result<Uri, String> {
        let (base, query) = uri.split_once('?').unwrap_or((uri, ""));
        let (scheme, rest) = base
            .split_once("://")
            .ok_or("expected mqtt://HOST:PORT/TOPIC")?;
        let (authority, topic) = rest.split_once('/').unwrap_or((rest, ""));
        let mut connection = Connection::from_url(&format!("{scheme}://{authority}"));
        let mut qos = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("qos", n)) => {
                    qos = Some(n.parse().ok().and_then(self::qos).ok_or(QOS_LEVELS)?);
                }
                Some(("client_id", id)) => connection.client_id = Some(id.to_string()),
                Some(("version", v)) => {
                    connection.version = match v {
                        "5" => Version::V5,
                        "3.1.1" => Version::V311,
                        _ => return Err(format!("bad version `{v}`: expected 3.1.1 or 5")),
                    }
                }
                _ => {
                    return Err(format!(
                        "unknown parameter `{pair}`: expected qos, client_id or version"
                    ));
                }
            }
        }
        if let Some(problem) = connection.check().into_iter().next() {
            return Err(problem.message);
        }
        let topic = (!topic.is_empty()).then(|| topic.to_string());
        Ok(Uri {
            connection,
            topic,
            qos,
        })
    }
}

impl Connection {
    /// A connection with every option at its default.
    fn from_url(url: &str) -> Connection {
        Connection {
            url: Spanned {
                value: url.to_string(),
                loc: Default::default(),
            },
            client_id: None,
            username: None,
            password: None,
            clean_session: false,
            keep_alive: thirty_seconds(),
            version: Version::default(),
            tls: None,
        }
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if self.address().is_none() {
            let message = "`url` must be mqtt://HOST:PORT or mqtts://HOST:PORT";
            problems.push(ConfigError::at(self.url.loc, message));
        }
        if self.keep_alive.ms() != 0 && self.keep_alive.ms() < 1000 {
            problems.push(ConfigError::at(
                self.url.loc,
                "`keep_alive` must be at least 1s (or 0 to disable)",
            ));
        }
        if self.version == Version::V5 && self.keep_alive.ms() < 5000 {
            problems.push(ConfigError::at(
                self.url.loc,
                "with MQTT 5, `keep_alive` must be at least 5s",
            ));
        }
        problems
    }

    /// (TLS?, host, port) from the URL.
    fn address(&self) -> Option<(bool, String, u16)> {
        let (tls, rest) = match self.url.split_once("://")? {
            ("mqtt" | "tcp", rest) => (false, rest),
            ("mqtts" | "ssl", rest) => (true, rest),
            _ => return None,
        };
        let authority = rest.split(['/', '?']).next()?;
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (host, port.parse().ok()?),
            None => (authority, if tls { 8883 } else { 1883 }),
        };
        (!host.is_empty()).then(|| (tls, host.to_string(), port))
    }

    /// The broker, for logs and errors.
    pub fn broker(&self) -> String {
        self.address()
            .map_or_else(|| self.url.value.clone(), |(_, h, p)| format!("{h}:{p}"))
    }

    /// The client id: the configured one, else `default`.
    pub fn client_id(&self, default: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| default.to_string())
    }

    /// Reads the TLS files, if the URL asks for TLS. Relative paths start
    /// at `base`.
    fn tls_config(&self, base: &Path) -> Result<Option<rumqttc::TlsConfiguration>, MqttError> {
        if !self.address().is_some_and(|(tls, ..)| tls) {
            return Ok(None);
        }
        let read = |path: &PathBuf| {
            let path = base.join(path);
            std::fs::read(&path).map_err(|source| MqttError::File {
                path: path.display().to_string(),
                source,
            })
        };
        let Some(tls) = &self.tls else {
            return Ok(Some(rumqttc::TlsConfiguration::default()));
        };
        let client_auth = match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        };
        Ok(Some(rumqttc::TlsConfiguration::Simple {
            ca: read(&tls.ca)?,
            alpn: None,
            client_auth,
        }))
    }
}

/// Parses a QoS level. QoS 2 is refused: rumqttc forgets an incoming
/// QoS 2 handshake when the connection drops, and then fails on the
/// broker's retransmitted PUBREL, reconnecting forever.
pub fn qos(level: u8) -> Option<QoS> {
    match level {
        0 => Some(QoS::AtMostOnce),
        1 => Some(QoS::AtLeastOnce),
        _ => None,
    }
}

/// What [`qos`] accepts, as an error message.
pub const QOS_LEVELS: &str =
    "`qos` must be 0 (at most once) or 1 (at least once); QoS 2 is not supported";

/// A `qos:` option; 1 unless set.
#[derive(Clone, Copy, Debug)]
pub struct Qos(pub QoS);

impl Default for Qos {
    fn default() -> Self {
        Qos(QoS::AtLeastOnce)
    }
}

impl<'de> Deserialize<'de> for Qos {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let level = u8::deserialize(d)?;
        qos(level)
            .map(Qos)
            .ok_or_else(|| serde::de::Error::custom(QOS_LEVELS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml;

    fn connection(yaml_text: &str) -> Result<Connection, Vec<ConfigError>> {
        split::<std::collections::BTreeMap<String, String>>(&yaml::parse(yaml_text).unwrap())
            .map(|(c, _)| c)
    }

    #[test]
    fn urls_give_scheme_host_and_port() {
        let c = connection("url: mqtt://127.0.0.1:1884\n").unwrap();
        assert_eq!(c.address(), Some((false, "127.0.0.1".into(), 1884)));
        let c = connection("url: mqtts://broker.example\n").unwrap();
        assert_eq!(c.address(), Some((true, "broker.example".into(), 8883)));
        assert!(connection("url: http://x:1\n").is_err());
        assert!(connection("url: mqtt://:1\n").is_err());
        assert!(connection("url: mqtt://x\nkeep_alive: 500ms\n").is_err());
    }

    #[test]
    fn versions_read_as_numbers_or_strings() {
        assert_eq!(
            connection("url: mqtt://x\nversion: 5\n").unwrap().version,
            Version::V5
        );
        let c = connection("url: mqtt://x\nversion: \"3.1.1\"\n").unwrap();
        assert_eq!(c.version, Version::V311);
        let err = connection("url: mqtt://x\nversion: 4\n").unwrap_err();
        assert_eq!(err[0].message, "`version` must be 3.1.1 or 5");
    }

    #[test]
    fn passwords_stay_out_of_debug_output() {
        let c = connection("url: mqtt://x\nusername: u\npassword: hunter2\n").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn typos_of_connection_keys_get_a_hint() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Own {
            #[allow(dead_code)]
            topics: Vec<String>,
        }
        let node = yaml::parse("url: mqtt://x\ntopics: [a]\nclent_id: y\n").unwrap();
        let err = split::<Own>(&node).unwrap_err();
        assert_eq!(
            err[0].message,
            "unknown field `clent_id`, did you mean `client_id`?"
        );
    }

    #[test]
    fn uris_carry_topic_qos_and_client_id() {
        let uri = Uri::parse("mqtt://127.0.0.1:1884/fleet/+/telemetry?qos=1&client_id=a").unwrap();
        assert_eq!(uri.connection.broker(), "127.0.0.1:1884");
        assert_eq!(uri.topic.as_deref(), Some("fleet/+/telemetry"));
        assert_eq!(uri.qos, Some(QoS::AtLeastOnce));
        assert_eq!(uri.connection.client_id("d"), "a");
        assert_eq!(Uri::parse("mqtt://h:1").unwrap().topic, None);
        assert!(Uri::parse("mqtt://h:1/t?qos=2").is_err());
        assert!(Uri::parse("mqtt://h:1/t?colour=red").is_err());
        assert!(Uri::parse("mqtt://h:x/t").is_err());
    }
}
