//! Kafka connections, shared by the `kafka` sink and `floe simulate --to
//! kafka://`: broker addresses, librdkafka properties, and a producer that
//! waits for delivery reports.
//!
//! Producing is idempotent (`enable.idempotence`), and a record is never
//! given up on (`message.timeout.ms: 0`): while the brokers are away,
//! records wait in librdkafka's bounded queue, and when it is full, sending
//! waits. Any property can be overridden under `options`.

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
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

/// A `kafka://HOST:PORT[,HOST:PORT]/TOPIC` URI.
pub fn parse_uri(uri: &str) -> Result<(Connection, String), String> {
    let rest = uri
        .strip_prefix("kafka://")
        .ok_or("expected kafka://HOST:PORT/TOPIC")?;
    let (brokers, topic) = rest
        .split_once('/')
        .ok_or("expected kafka://HOST:PORT/TOPIC")?;
    if brokers.is_empty() || topic.is_empty() || topic.contains('/') {
        return Err("expected kafka://HOST:PORT/TOPIC".into());
    }
    let connection = Connection {
        brokers: brokers.to_string(),
        options: BTreeMap::new(),
    };
    Ok((connection, topic.to_string()))
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
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &connection.brokers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "0")
            .set("queue.buffering.max.messages", QUEUE)
            .set("linger.ms", "5");
        for (key, value) in &connection.options {
            config.set(key, value);
        }
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
        let (c, topic) = parse_uri("kafka://127.0.0.1:9092,127.0.0.1:9093/telemetry").unwrap();
        assert_eq!(c.brokers, "127.0.0.1:9092,127.0.0.1:9093");
        assert_eq!(topic, "telemetry");
        for bad in [
            "kafka://h:1",
            "kafka:///t",
            "kafka://h:1/",
            "mqtt://h:1/t",
            "kafka://h:1/a/b",
        ] {
            assert!(parse_uri(bad).is_err(), "{bad}");
        }
    }
}
