//! `--via`: sending the bench's readings through a broker, and the source
//! that reads them back.

use crate::config::Context;
use crate::kafka;
use crate::mqtt::{self, Patience, Publisher, QoS, TopicTemplate};
use crate::runtime::{Shutdown, SinkMetrics, Telemetry};
use crate::sources::{self, Source};
use std::path::Path;
use std::time::Duration;

pub enum Via {
    /// QoS 1 on `bench/RUN/DEVICE`, read with a clean session.
    Mqtt(mqtt::Uri),
    /// The URI's topic, keyed by device, read from the earliest offset by
    /// a group of the run's own: earlier runs' readings are read and not
    /// counted, so a topic of its own keeps the figures clean (a lookup by
    /// time was tried and is far slower on tansu). The URI's parameters
    /// are librdkafka properties of the consumer.
    Kafka(kafka::Uri),
}

/// What sends the readings.
pub enum Sender {
    Mqtt {
        publisher: Publisher,
        topic: TopicTemplate,
    },
    Kafka {
        producer: kafka::Producer,
        topic: String,
    },
}

impl Via {
    pub fn parse(uri: &str) -> Result<Via, String> {
        if uri.starts_with("mqtt://") || uri.starts_with("mqtts://") {
            Ok(Via::Mqtt(mqtt::Uri::parse(uri)?))
        } else if uri.starts_with("kafka://") {
            Ok(Via::Kafka(kafka::Uri::parse(uri)?))
        } else {
            Err("expected mqtt://HOST:PORT or kafka://HOST:PORT/TOPIC".into())
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Via::Mqtt(_) => "mqtt",
            Via::Kafka(_) => "kafka",
        }
    }

    /// The pipeline's source, reading what run `run` sends.
    pub fn source(&self, run: &str) -> Result<Box<dyn Source>, String> {
        let spec: Box<dyn sources::SourceSpec> = match self {
            Via::Mqtt(uri) => {
                let filter = format!("{}/bench/{run}/+", mqtt_base(uri));
                let mut config = sources::mqtt::Config::from_uri(&filter)?;
                config.connection.clean_session = true;
                Box::new(config)
            }
            Via::Kafka(uri) => {
                let brokers = &uri.connection.brokers;
                let topic = &uri.topic;
                // The URI's librdkafka properties are the consumer's.
                let properties: String = (uri.params.iter())
                    .map(|(name, value)| format!("&{name}={value}"))
                    .collect();
                let source = format!(
                    "kafka://{brokers}/{topic}?from=earliest&group=floe-bench-{run}{properties}"
                );
                Box::new(sources::kafka::Config::from_uri(&source)?)
            }
        };
        let ctx = Context {
            base: Path::new("."),
            pipeline: "bench",
            id: "readings",
            telemetry: &Telemetry::default(),
            state_dir: None,
        };
        spec.open(&ctx).map_err(|e| e.to_string())
    }

    /// Connects a sender for run `run`; `stop` ends its waiting.
    pub fn sender(&self, run: &str, stop: &Shutdown) -> Result<Sender, String> {
        match self {
            Via::Mqtt(uri) => {
                let patience = Patience {
                    first_connect: Some(Duration::from_secs(10)),
                    stop: Some(stop.clone()),
                };
                let id = format!("floe-bench-{run}");
                let what = "bench".to_string();
                let publisher = Publisher::start(
                    &uri.connection,
                    id,
                    Path::new("."),
                    what,
                    patience,
                    SinkMetrics::default(),
                )
                .map_err(|e| e.to_string())?;
                let topic = TopicTemplate::parse(&format!("bench/{run}/{{device}}"), &["device"])?;
                Ok(Sender::Mqtt { publisher, topic })
            }
            Via::Kafka(uri) => {
                let producer = kafka::Producer::new(&uri.connection).map_err(|e| e.to_string())?;
                producer
                    .check_topic(&uri.topic)
                    .map_err(|e| e.to_string())?;
                let topic = uri.topic.clone();
                Ok(Sender::Kafka { producer, topic })
            }
        }
    }
}

impl Sender {
    pub async fn send(&mut self, device: &str, line: String) -> Result<(), String> {
        match self {
            Sender::Mqtt { publisher, topic } => {
                let topic = topic.render(|_| Some(device));
                let sent = publisher.publish(topic, line.into_bytes(), QoS::AtLeastOnce, false);
                sent.await.map_err(|e| e.to_string())
            }
            Sender::Kafka { producer, topic } => {
                let sent = producer.send(topic, device, line.as_bytes());
                sent.await.map_err(|e| e.to_string())
            }
        }
    }

    /// Waits until the broker has everything sent.
    pub async fn close(self) -> Result<(), String> {
        match self {
            Sender::Mqtt { publisher, .. } => publisher.close().await.map_err(|e| e.to_string()),
            Sender::Kafka { producer, .. } => producer.close().await.map_err(|e| e.to_string()),
        }
    }
}

/// `mqtt://HOST:PORT` of a URI, without its topic and parameters.
fn mqtt_base(uri: &mqtt::Uri) -> String {
    let scheme = uri.connection.url.split("://").next().unwrap_or("mqtt");
    format!("{scheme}://{}", uri.connection.broker())
}
