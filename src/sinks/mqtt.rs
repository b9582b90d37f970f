//! `mqtt`: alerts and outputs published to an MQTT broker.
//!
//! ```yaml
//! dispatch:
//!   type: mqtt
//!   inputs: [too_warm]
//!   url: mqtt://127.0.0.1:1883
//!   topic: alerts/{rule}/{key}    # placeholders: {pipeline}, {rule}, {key}
//!   qos: 1
//!   retain: false
//! ```
//!
//! `{rule}` is the alert's rule, or for an operator's output the operator
//! that produced it. While the broker is away, records wait in a bounded
//! buffer, and when it is full the pipeline waits: nothing is dropped. At
//! the end of a run the sink waits until the broker has acknowledged every
//! QoS 1 message.

use super::{Batch, Sink, SinkError, SinkSpec};
use crate::config::{ConfigError, Context, Node};
use crate::mqtt::{self, Connection, Patience, Publisher, QoS, Qos, TopicTemplate};
use crate::runtime::BoxFuture;
use serde::Deserialize;
use tokio::sync::mpsc;

#[derive(Debug)]
pub struct Config {
    connection: Connection,
    topic: TopicTemplate,
    qos: QoS,
    retain: bool,
}

/// The sink's own keys, next to the connection's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    topic: AlertTopic,
    #[serde(default)]
    qos: Qos,
    /// Ask the broker to keep the last message of each topic for new
    /// subscribers (a dashboard that connects later sees current states).
    #[serde(default)]
    retain: bool,
}

/// The topic template, with what a sink's records can fill in.
struct AlertTopic(TopicTemplate);

const TOPIC_VARS: &[&str] = &["pipeline", "rule", "key"];

impl Default for AlertTopic {
    fn default() -> Self {
        let template = TopicTemplate::parse("alerts/{rule}/{key}", TOPIC_VARS);
        AlertTopic(template.unwrap_or_else(|e| unreachable!("the default topic is valid: {e}")))
    }
}

impl<'de> Deserialize<'de> for AlertTopic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TopicTemplate::parse(&text, TOPIC_VARS)
            .map(AlertTopic)
            .map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// The sink for `--sink NAME=mqtt://HOST:PORT[/TOPIC][?qos=N]`; the
    /// topic is a template as in a pipeline file.
    pub fn from_uri(uri: mqtt::Uri) -> Result<Config, String> {
        let topic = match uri.topic {
            Some(text) => TopicTemplate::parse(&text, TOPIC_VARS)?,
            None => AlertTopic::default().0,
        };
        Ok(Config {
            connection: uri.connection,
            topic,
            qos: uri.qos.unwrap_or(QoS::AtLeastOnce),
            retain: false,
        })
    }

    /// Parses the sink's entry in a pipeline file.
    pub fn parse(node: &Node) -> Result<Box<dyn SinkSpec>, Vec<ConfigError>> {
        let (connection, options) = mqtt::split::<Options>(node)?;
        Ok(Box::new(Config {
            connection,
            topic: options.topic.0,
            qos: options.qos.0,
            retain: options.retain,
        }))
    }
}

impl SinkSpec for Config {
    fn open(&self, ctx: &Context) -> Result<Box<dyn Sink>, SinkError> {
        let id = self.connection.client_id(&ctx.default_client_id());
        let what = format!("sink \"{}\"", ctx.id);
        let metrics = ctx.sink_metrics();
        let publisher = Publisher::start(
            &self.connection,
            id,
            ctx.base,
            what,
            Patience::default(),
            metrics,
        )?;
        Ok(Box::new(MqttSink {
            publisher,
            topic: self.topic.clone(),
            qos: self.qos,
            retain: self.retain,
            pipeline: ctx.pipeline.to_string(),
        }))
    }
}

struct MqttSink {
    publisher: Publisher,
    topic: TopicTemplate,
    qos: QoS,
    retain: bool,
    pipeline: String,
}

impl Sink for MqttSink {
    fn run(
        mut self: Box<Self>,
        mut records: mpsc::Receiver<Batch>,
        _: crate::runtime::DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            while let Some(batch) = records.recv().await {
                for record in &batch.records {
                    let topic = self.topic.render(|var| match var {
                        "pipeline" => Some(&self.pipeline),
                        "rule" => Some(&record.component),
                        _ => Some(&record.key),
                    });
                    let payload = record.line.as_bytes().to_vec();
                    self.publisher
                        .publish(topic, payload, self.qos, self.retain)
                        .await?;
                }
                // Acknowledging waits for the broker; a lost connection
                // leaves the acknowledgements ungiven, and `close` says why.
                if !batch.acks.is_empty() && self.publisher.settle().await {
                    batch.done();
                }
            }
            Ok(self.publisher.close().await?)
        })
    }
}
