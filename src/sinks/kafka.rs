//! `kafka`: alerts and outputs produced to a Kafka topic.
//!
//! ```yaml
//! dispatch:
//!   type: kafka
//!   inputs: [too_warm]
//!   brokers: 127.0.0.1:9092
//!   topic: alerts
//!   options: {security.protocol: SASL_SSL, sasl.password: "${KAFKA_PASSWORD}"}
//! ```
//!
//! Each record is keyed by its entity key, so one entity's alerts land on
//! one partition, in order. The sink takes a batch only once the brokers
//! have acknowledged the previous one; while they are away, records wait in
//! librdkafka's bounded queue and then the pipeline waits: nothing is
//! dropped.

use super::{Batch, Sink, SinkError, SinkSpec};
use crate::config::Context;
use crate::kafka::{Connection, Producer};
use crate::runtime::BoxFuture;
use serde::Deserialize;
use std::collections::BTreeMap;
use tokio::sync::mpsc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `HOST:PORT[,HOST:PORT...]`.
    brokers: String,
    topic: String,
    /// librdkafka producer properties, over floe's defaults.
    #[serde(default)]
    options: BTreeMap<String, String>,
}

impl Config {
    /// The sink for `--sink NAME=kafka://HOST:PORT/TOPIC[?PROPERTY=VALUE]`,
    /// where each parameter is a librdkafka producer property.
    pub fn from_uri(uri: crate::kafka::Uri) -> Result<Config, String> {
        let mut options = BTreeMap::new();
        for (name, value) in uri.params {
            // librdkafka's properties all have a dot.
            if !name.contains('.') {
                return Err(format!(
                    "unknown parameter `{name}`: expected a librdkafka property"
                ));
            }
            options.insert(name, value);
        }
        Ok(Config {
            brokers: uri.connection.brokers,
            topic: uri.topic,
            options,
        })
    }
}

impl SinkSpec for Config {
    fn open(&self, _ctx: &Context) -> Result<Box<dyn Sink>, SinkError> {
        let connection = Connection {
            brokers: self.brokers.clone(),
            options: self.options.clone(),
        };
        let producer = Producer::new(&connection)?;
        producer.check_topic(&self.topic)?;
        Ok(Box::new(KafkaSink {
            producer,
            topic: self.topic.clone(),
        }))
    }
}

struct KafkaSink {
    producer: Producer,
    topic: String,
}

impl Sink for KafkaSink {
    fn run(
        mut self: Box<Self>,
        mut records: mpsc::Receiver<Batch>,
        _: crate::runtime::DeadLetters,
    ) -> BoxFuture<Result<(), SinkError>> {
        Box::pin(async move {
            while let Some(batch) = records.recv().await {
                for record in &batch.records {
                    self.producer
                        .send(&self.topic, &record.key, record.line.as_bytes())
                        .await?;
                }
                self.producer.settle().await?;
                batch.done();
            }
            Ok(self.producer.close().await?)
        })
    }
}
