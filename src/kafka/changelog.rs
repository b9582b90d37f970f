//! A Kafka source's changelog topic: where the state of the keys of each
//! input partition is kept, so whichever instance of the consumer group
//! owns a partition next can restore it (the format is
//! [`crate::state::changelog`]'s).
//!
//! The topic is compacted (only the latest record of each key matters) and
//! created on first use with as many partitions as the largest input
//! topic; input partition `p` is kept in changelog partition `p` modulo the
//! changelog's count, so an instance given a partition reads one changelog
//! partition. Everything here blocks: it runs on the source's thread,
//! between polls or inside a rebalance.

use super::{Connection, Error};
use crate::event::Key;
use crate::state::changelog::{RecordKey, Replay};
use crate::state::codec;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a read or a write may take before the changelog counts as
/// unreachable.
const PATIENCE: Duration = Duration::from_secs(60);

/// One input partition's changed key: (topic, partition, key, state or
/// `None` for a key forgotten).
pub type KeyChange = (String, i32, Key, Option<Vec<u8>>);

pub struct Changelog {
    topic: String,
    partitions: i32,
    connection: Connection,
    producer: BaseProducer<Deliveries>,
}

impl Changelog {
    /// Opens `topic`, creating it (compacted, with as many partitions as
    /// the largest of `inputs`) if it does not exist.
    pub fn open(
        connection: &Connection,
        topic: &str,
        inputs: &[String],
    ) -> Result<Changelog, Error> {
        let client = |e| client_error(connection, e);
        let producer: BaseProducer<Deliveries> = connection
            .client_config(&[
                ("enable.idempotence", "true"),
                ("message.timeout.ms", "30000"),
                ("queue.buffering.max.messages", "100000"),
                ("linger.ms", "5"),
            ])
            .create_with_context(Deliveries::default())
            .map_err(client)?;
        let count = |name: &str| -> Result<i32, Error> {
            let metadata = (producer.client())
                .fetch_metadata(Some(name), PATIENCE)
                .map_err(client)?;
            let topic = metadata.topics().iter().find(|t| t.name() == name);
            Ok(topic
                .filter(|t| t.error().is_none())
                .map_or(0, |t| t.partitions().len() as i32))
        };
        let mut partitions = count(topic)?;
        if partitions == 0 {
            let wanted =
                (inputs.iter().map(|t| count(t))).try_fold(1, |most, n| n.map(|n| most.max(n)))?;
            create(connection, topic, wanted)?;
            partitions = wanted;
            tracing::info!("changelog topic {topic} created with {wanted} partitions");
        }
        Ok(Changelog {
            topic: topic.to_string(),
            partitions,
            connection: connection.clone(),
            producer,
        })
    }

    fn partition_of(&self, input: i32) -> i32 {
        input.rem_euclid(self.partitions)
    }

    /// Writes a checkpoint: the changed keys, then for each input
    /// partition the offset its state covers; returns once the brokers
    /// have it all.
    pub fn write(
        &self,
        changes: Vec<KeyChange>,
        positions: &[(String, i32, i64)],
    ) -> Result<(), Error> {
        let failed_before = self.producer.context().failures();
        for (topic, partition, key, state) in changes {
            let record_key = RecordKey::State {
                topic,
                partition,
                key: key.to_string(),
            };
            self.send(&record_key, partition, state.as_deref())?;
        }
        for (topic, partition, next) in positions {
            let record_key = RecordKey::Position {
                topic: topic.clone(),
                partition: *partition,
            };
            self.send(
                &record_key,
                *partition,
                Some(&codec::encode(next).unwrap_or_default()),
            )?;
        }
        (self.producer.flush(PATIENCE)).map_err(|e| client_error(&self.connection, e))?;
        match self.producer.context().failures() {
            (n, _) if n == failed_before.0 => Ok(()),
            (_, reason) => Err(Error::Delivery {
                brokers: self.connection.brokers.clone(),
                topic: self.topic.clone(),
                source: Box::new(reason.unwrap_or(KafkaError::Canceled)),
            }),
        }
    }

    fn send(&self, key: &RecordKey, input: i32, value: Option<&[u8]>) -> Result<(), Error> {
        let key = codec::encode(key).unwrap_or_default();
        let mut record = BaseRecord::to(&self.topic)
            .partition(self.partition_of(input))
            .key(&key);
        if let Some(value) = value {
            record = record.payload(value);
        }
        let deadline = Instant::now() + PATIENCE;
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    record = back;
                    self.producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(client_error(&self.connection, e)),
            }
        }
    }

    /// Reads what the changelog holds for `inputs` (topic, partition): per
    /// input partition, its keys' state at the last checkpoint written and
    /// the offset that state covers.
    pub fn read(&self, inputs: &[(String, i32)]) -> Result<HashMap<(String, i32), Replay>, Error> {
        let client = |e| client_error(&self.connection, e);
        // A partition is read to where the consumer finds no more
        // (librdkafka's end-of-partition event), not to the high watermark
        // the broker lists, which tansu 0.6 gives short of the last record
        // when several came in one batch.
        let consumer: BaseConsumer<Reader> = (self.connection)
            .client_config(&[
                ("enable.auto.commit", "false"),
                ("enable.partition.eof", "true"),
                ("group.id", "floe-changelog"),
            ])
            .create_with_context(Reader)
            .map_err(client)?;
        let mut replays: HashMap<(String, i32), Replay> = inputs
            .iter()
            .map(|i| (i.clone(), Replay::default()))
            .collect();
        // The changelog partitions not read to their end yet.
        let mut unread: HashSet<i32> = inputs.iter().map(|(_, p)| self.partition_of(*p)).collect();
        let mut tpl = TopicPartitionList::new();
        for &p in &unread {
            tpl.add_partition_offset(&self.topic, p, Offset::Beginning)
                .map_err(client)?;
        }
        tracing::debug!(
            "changelog {}: reading {unread:?} for {inputs:?}",
            self.topic
        );
        consumer.assign(&tpl).map_err(client)?;
        let deadline = Instant::now() + PATIENCE;
        while !unread.is_empty() {
            if Instant::now() > deadline {
                return Err(client(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::OperationTimedOut,
                )));
            }
            let message = match consumer.poll(Duration::from_millis(100)) {
                None => continue,
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    unread.remove(&p);
                    continue;
                }
                Some(message) => message.map_err(client)?,
            };
            let Some(key) = message
                .key()
                .and_then(|k| codec::decode::<RecordKey>(k).ok())
            else {
                continue;
            };
            let (topic, partition) = key.input();
            let Some(replay) = replays.get_mut(&(topic.to_string(), partition)) else {
                continue;
            };
            match key {
                RecordKey::State { key, .. } => {
                    replay.state(key, message.payload().map(<[u8]>::to_vec))
                }
                RecordKey::Position { .. } => {
                    if let Some(next) = message.payload().and_then(|v| codec::decode::<i64>(v).ok())
                    {
                        replay.position(next);
                    }
                }
            }
        }
        Ok(replays)
    }
}

/// Creates the compacted `topic`, with the cluster's default replication.
fn create(connection: &Connection, topic: &str, partitions: i32) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> =
        (connection.client_config(&[]).create()).map_err(|e| client_error(connection, e))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))
        .set("cleanup.policy", "compact");
    let options = AdminOptions::new().operation_timeout(Some(PATIENCE));
    let created = tokio::runtime::Handle::current().block_on(admin.create_topics([&new], &options));
    let results = created.map_err(|e| client_error(connection, e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(client_error(connection, KafkaError::AdminOp(code))),
        }
    }
    Ok(())
}

fn client_error(connection: &Connection, source: KafkaError) -> Error {
    Error::Client {
        brokers: connection.brokers.clone(),
        source: Box::new(source),
    }
}

/// The reader's context: the end of a partition is what it waits for, not
/// an error to log.
struct Reader;

impl ClientContext for Reader {
    fn error(&self, error: KafkaError, reason: &str) {
        let end = RDKafkaErrorCode::PartitionEOF;
        if !matches!(error, KafkaError::PartitionEOF(_)) && error.rdkafka_error_code() != Some(end)
        {
            tracing::warn!("changelog: {error}: {reason}");
        }
    }
}

impl ConsumerContext for Reader {}

/// Counts the records the brokers did not take, keeping the last reason.
#[derive(Default)]
struct Deliveries(Mutex<(u64, Option<KafkaError>)>);

impl Deliveries {
    fn failures(&self) -> (u64, Option<KafkaError>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            let mut failures = self.0.lock().unwrap_or_else(|e| e.into_inner());
            failures.0 += 1;
            failures.1 = Some(e.clone());
        }
    }
}
