//! Kafka connections, shared by the `kafka` source and sink and `floe
//! simulate --to kafka://`: broker addresses, librdkafka properties, and a
//! producer that waits for delivery reports.
//!
//! Producing is idempotent (`enable.idempotence`), and a record is never
//! given up on (`message.timeout.ms: 0`): while the brokers are away,
//! records wait in librdkafka's bounded queue, and when it is full, sending
//! waits. Any property can be overridden under `options`.

pub mod changelog;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaRespErr;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Which cluster, and how to talk to it.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// `HOST:PORT[,HOST:PORT...]`: where to start; the cluster names the rest.
    pub brokers: String,
    /// librdkafka properties (`security.protocol`, `sasl.username`, ...),
    /// applied after floe's defaults.
    pub options: BTreeMap<String, String>,
}

/// What can go wrong producing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{brokers}: {source}")]
    Client {
        brokers: String,
        source: Box<KafkaError>,
    },
    #[error(
        "{brokers}: topic {topic} does not exist; create it, or let the brokers create topics on first use"
    )]
    NoSuchTopic { brokers: String, topic: String },
    #[error("{brokers}: a record for {topic} was not delivered: {source}")]
    Delivery {
        brokers: String,
        topic: String,
        source: Box<KafkaError>,
    },
}

/// Records librdkafka holds before `send` waits: the bounded buffer that
/// fills while the brokers are away.
const QUEUE: &str = "10000";

impl Connection {
    /// The client configuration: floe's `defaults`, then the user's options.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.options {
            config.set(key, value);
        }
        config
    }
}

/// A `kafka://HOST:PORT[,HOST:PORT]/TOPIC[?NAME=VALUE&...]` URI.
#[derive(Debug)]
pub struct Uri {
    pub connection: Connection,
    pub topic: String,
    /// The query's parameters, in order; their meaning is the user's.
    pub params: Vec<(String, String)>,
}

impl Uri {
    pub fn parse(uri: &str) -> Result<Uri, String> {
        const EXPECTED: &str = "expected kafka://HOST:PORT/TOPIC";
        let rest = uri.strip_prefix("kafka://").ok_or(EXPECTED)?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (brokers, topic) = rest.split_once('/').ok_or(EXPECTED)?;
        if brokers.is_empty() || topic.is_empty() || topic.contains('/') {
            return Err(EXPECTED.into());
        }
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                pair.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| format!("expected NAME=VALUE in the query, got `{pair}`"))
            })
            .collect::<Result<_, _>>()?;
        let connection = Connection {
            brokers: brokers.to_string(),
            options: BTreeMap::new(),
        };
        Ok(Uri {
            connection,
            topic: topic.to_string(),
            params,
        })
    }
}

/// A producer that keeps the delivery reports of what it sent, so its user
/// can wait until the brokers have everything.
pub struct Producer {
    producer: FutureProducer,
    brokers: String,
    /// Deliveries not yet reported, oldest first, with their topics.
    pending: VecDeque<(String, DeliveryFuture)>,
}

impl Producer {
    pub fn new(connection: &Connection) -> Result<Producer, Error> {
        let config = connection.client_config(&[
            ("enable.idempotence", "true"),
            ("message.timeout.ms", "0"),
            ("queue.buffering.max.messages", QUEUE),
            ("linger.ms", "5"),
        ]);
        let producer = config.create().map_err(|source| Error::Client {
            brokers: connection.brokers.clone(),
            source: Box::new(source),
        })?;
        Ok(Producer {
            producer,
            brokers: connection.brokers.clone(),
            pending: VecDeque::new(),
        })
    }

    /// Fails when the brokers answer that `topic` does not exist: records
    /// for it would wait forever. Brokers that do not answer are waited
    /// for later, as they come back.
    pub fn check_topic(&self, topic: &str) -> Result<(), Error> {
        let metadata = self
            .producer
            .client()
            .fetch_metadata(Some(topic), Duration::from_secs(5));
        let unknown = metadata.ok().is_some_and(|m| {
            m.topics().iter().any(|t| {
                t.name() == topic
                    && t.error() == Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            })
        });
        match unknown {
            true => Err(Error::NoSuchTopic {
                brokers: self.brokers.clone(),
                topic: topic.to_string(),
            }),
            false => Ok(()),
        }
    }

    /// Queues a record. When librdkafka's queue is full (the brokers are
    /// slow or away), waits for the oldest delivery first.
    pub async fn send(&mut self, topic: &str, key: &str, payload: &[u8]) -> Result<(), Error> {
        let mut record = FutureRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => {
                    self.pending.push_back((topic.to_string(), delivery));
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    if !self.settle_one().await? {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                Err((source, _)) => return Err(self.client_error(source)),
            }
        }
    }

    /// Waits until every record sent so far is delivered.
    pub async fn settle(&mut self) -> Result<(), Error> {
        while self.settle_one().await? {}
        Ok(())
    }

    /// Waits for the oldest pending delivery; false when none is pending.
    async fn settle_one(&mut self) -> Result<bool, Error> {
        let Some((topic, delivery)) = self.pending.pop_front() else {
            return Ok(false);
        };
        match delivery.await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err((source, _))) => Err(Error::Delivery {
                brokers: self.brokers.clone(),
                topic,
                source: Box::new(source),
            }),
            Err(_) => Err(self.client_error(KafkaError::Canceled)),
        }
    }

    /// Waits for every delivery, then flushes what librdkafka still holds.
    pub async fn close(mut self) -> Result<(), Error> {
        self.settle().await?;
        let flushed = tokio::task::spawn_blocking(move || {
            self.producer
                .flush(Duration::from_secs(10))
                .map_err(|source| Error::Client {
                    brokers: self.brokers,
                    source: Box::new(source),
                })
        });
        flushed.await.unwrap_or(Ok(()))
    }

    fn client_error(&self, source: KafkaError) -> Error {
        Error::Client {
            brokers: self.brokers.clone(),
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_name_brokers_and_a_topic() {
        let uri =
            Uri::parse("kafka://127.0.0.1:9092,127.0.0.1:9093/telemetry?from=earliest").unwrap();
        assert_eq!(uri.connection.brokers, "127.0.0.1:9092,127.0.0.1:9093");
        assert_eq!(uri.topic, "telemetry");
        assert_eq!(uri.params, [("from".to_string(), "earliest".to_string())]);
        for bad in [
            "kafka://h:1",
            "kafka:///t",
            "kafka://h:1/",
            "mqtt://h:1/t",
            "kafka://h:1/a/b",
            "kafka://h:1/t?from",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad}");
        }
    }
}
