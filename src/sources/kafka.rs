//! `kafka`: telemetry from Kafka topics, read as a consumer group.
//!
//! ```yaml
//! trucks:
//!   type: kafka
//!   brokers: 127.0.0.1:9092
//!   topics: [telemetry]
//!   group_id: cold-chain          # default floe-PIPELINE-SOURCE
//!   start: committed              # earliest | latest | 2026-11-24T00:00:00Z
//!   commit_interval: 1s
//!   options: {security.protocol: SASL_SSL, sasl.password: "${KAFKA_PASSWORD}"}
//!   key: record.key               # or a payload field
//!   time: ts                      # or record.timestamp
//!   state: changelog              # or local (with a state dir)
//! ```
//!
//! Delivery is at-least-once. Offsets are committed only for records whose
//! effects are safe: every `commit_interval` the source sends a mark behind
//! its events (see [`crate::runtime::Ack`]) and commits the offsets it had
//! read at that mark once every sink has acknowledged everything before
//! it. Records a worker still holds back for ordering are not committed.
//! When partitions are revoked (another instance joined the group), the
//! source marks, waits for the mark to settle, commits, and only then lets
//! the partitions go, so the next owner starts where this one's effects end.
//!
//! With a state dir, checkpoints take the place of marks: the offsets at a
//! checkpoint's barrier are committed once the checkpoint is complete (the
//! records held back for ordering are in it), a revoke takes a checkpoint
//! first, and a restart seeks every partition to the offset of the
//! checkpoint it restores, whatever was committed.
//!
//! With a state dir and `state: changelog` (the default) the keys' state
//! belongs to the input partition their records come from, and is kept in
//! a compacted topic of the same cluster, `GROUP-changelog`
//! ([`crate::kafka::changelog`]), rather than in the state dir: a
//! completed checkpoint's changed keys and each partition's offset are
//! written there before the offsets are committed; a revoked partition's
//! keys are checkpointed and let go; an assigned partition's keys are read
//! from the changelog, and the partition sought to the offset their state
//! covers, before any of its records is processed. So partitions can move
//! between instances (one joins, one dies) and their open windows, episodes
//! and models move with them. `state: local` keeps everything in the state
//! dir (one instance, or a group whose partitions never move).
//!
//! Everything runs on one blocking thread: librdkafka calls the rebalance
//! and statistics callbacks from inside `poll`, on that thread, so the
//! reader's state is never contended.

use super::{Carries, Ingest, Source, SourceError, SourceSpec};
use crate::config::{Context, Duration as ConfigDuration};
use crate::event::decode::{DecodeError, Envelope};
use crate::event::time;
use crate::kafka::changelog::Changelog;
use crate::kafka::{self, Connection};
use crate::runtime::BoxFuture;
use crate::runtime::{Marks, Settled};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `HOST:PORT[,HOST:PORT...]`.
    brokers: String,
    topics: Vec<String>,
    /// The consumer group; instances sharing it share the partitions.
    group_id: Option<String>,
    #[serde(default)]
    start: Start,
    /// How often offsets are committed (and marks sent).
    #[serde(default = "default_commit_interval")]
    commit_interval: ConfigDuration,
    /// librdkafka consumer properties, over floe's defaults.
    #[serde(default)]
    options: BTreeMap<String, String>,
    /// Where the keys' state is checkpointed, with a state dir.
    #[serde(default)]
    state: StateHome,
}

/// Where a Kafka source's keys' state is checkpointed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateHome {
    /// In the changelog topic, per input partition, for whichever instance
    /// owns the partition next.
    #[default]
    Changelog,
    /// In the state dir, with the rest.
    Local,
}

fn default_commit_interval() -> ConfigDuration {
    ConfigDuration(1000)
}

/// Where a partition starts when this run is first given it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Start {
    /// Where the group's committed offset says; a partition the group has
    /// never committed starts at its earliest record (librdkafka's
    /// `auto.offset.reset`, which `options` may change).
    #[default]
    Committed,
    /// At the earliest record kept: a replay of the topic.
    Earliest,
    /// At the next record written: history is skipped.
    Latest,
    /// At the first record with a timestamp at or after this (epoch ms).
    Time(i64),
}

impl Start {
    fn parse(text: &str) -> Result<Start, String> {
        match text {
            "committed" => Ok(Start::Committed),
            "earliest" => Ok(Start::Earliest),
            "latest" => Ok(Start::Latest),
            _ => time::parse_rfc3339(text).map(Start::Time).ok_or_else(|| {
                format!(
                    "start `{text}`: expected committed, earliest, latest or an RFC 3339 timestamp"
                )
            }),
        }
    }
}

impl<'de> Deserialize<'de> for Start {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Start::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Config {
    /// A source given on the command line:
    /// `kafka://HOST:PORT/TOPIC?from=earliest&group=NAME&fetch.max.bytes=N`.
    pub fn from_uri(uri: &str) -> Result<Config, String> {
        let uri = kafka::Uri::parse(uri)?;
        let mut config = Config {
            brokers: uri.connection.brokers,
            topics: vec![uri.topic],
            group_id: None,
            start: Start::Committed,
            commit_interval: default_commit_interval(),
            options: BTreeMap::new(),
            state: StateHome::default(),
        };
        for (name, value) in uri.params {
            match name.as_str() {
                "from" => config.start = Start::parse(&value)?,
                "group" => config.group_id = Some(value),
                // librdkafka's properties all have a dot.
                _ if name.contains('.') => {
                    config.options.insert(name, value);
                }
                _ => {
                    return Err(format!(
                        "unknown parameter `{name}`: expected from, group or a librdkafka property"
                    ));
                }
            }
        }
        Ok(config)
    }
}

impl SourceSpec for Config {
    fn open(&self, ctx: &Context) -> Result<Box<dyn Source>, SourceError> {
        let connection = Connection {
            brokers: self.brokers.clone(),
            options: self.options.clone(),
        };
        let group = (self.group_id.clone()).unwrap_or_else(|| ctx.default_client_id());
        Ok(Box::new(KafkaSource {
            connection,
            group,
            topics: self.topics.clone(),
            start: self.start,
            commit_interval: Duration::from_millis(self.commit_interval.ms().max(1) as u64),
            what: format!("source \"{}\"", ctx.id),
            changelog: self.changelog(),
        }))
    }

    fn changelog(&self) -> bool {
        self.state == StateHome::Changelog
    }

    fn carries(&self) -> Carries {
        Carries {
            topics: false,
            records: true,
            headers: true,
        }
    }
}

struct KafkaSource {
    connection: Connection,
    group: String,
    topics: Vec<String>,
    start: Start,
    commit_interval: Duration,
    what: String,
    /// Keys' state goes to the changelog (with a state dir).
    changelog: bool,
}

/// How often librdkafka reports statistics, and so how often lag is logged,
/// unless `options` says otherwise.
const STATS_INTERVAL_MS: &str = "10000";
/// How long `poll` waits when no record is there.
const POLL: Duration = Duration::from_millis(100);
/// How long a revoke or a stop waits for in-flight work to be acknowledged
/// before letting go without committing it (it is then read again).
const SETTLE_PATIENCE: Duration = Duration::from_secs(60);

impl Source for KafkaSource {
    fn run(self: Box<Self>, ingest: Ingest) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            let consumed = tokio::task::spawn_blocking(move || self.consume(ingest)).await;
            consumed.unwrap_or(Err(SourceError::Closed))
        })
    }
}

impl KafkaSource {
    fn consume(self, ingest: Ingest) -> Result<(), SourceError> {
        let config = self.connection.client_config(&[
            ("group.id", &self.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", STATS_INTERVAL_MS),
            // Kafka answers a fetch as soon as it has data; some compatible
            // brokers (tansu) hold every fetch this long, which at
            // librdkafka's 500 ms caps a drain at ~100,000 records/s.
            ("fetch.wait.max.ms", "100"),
        ]);
        let changelog = match self.changelog && ingest.durable() {
            true => {
                let topic = format!("{}-changelog", self.group);
                let opened = Changelog::open(&self.connection, &topic, &self.topics);
                Some(opened.map_err(SourceError::Kafka)?)
            }
            false => None,
        };
        let reader = Reader {
            // With a changelog the offsets are where it says, per partition.
            resume: match changelog {
                Some(_) => Vec::new(),
                None => ingest.resume().unwrap_or_default(),
            },
            changelog,
            ingest,
            marks: Marks::default(),
            what: self.what,
            brokers: self.connection.brokers.clone(),
            start: self.start,
            partitions: Vec::new(),
            in_flight: VecDeque::new(),
            last_mark: Instant::now(),
            commit_interval: self.commit_interval,
            failed: None,
            finished: false,
        };
        let consumer: BaseConsumer<Reading> = config
            .create_with_context(Reading(Mutex::new(reader)))
            .map_err(|e| kafka_error(&self.connection.brokers, e))?;
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|e| kafka_error(&self.connection.brokers, e))?;
        let result = poll_until_stopped(&consumer);
        let mut reader = consumer.context().lock();
        let finished = reader.finish(&consumer, result.is_ok());
        drop(reader);
        // Dropping the consumer leaves the group; the revoke it triggers
        // finds nothing left to commit.
        drop(consumer);
        result.and(finished)
    }
}

fn poll_until_stopped(consumer: &BaseConsumer<Reading>) -> Result<(), SourceError> {
    let shutdown = consumer.context().lock().ingest.shutdown_handle();
    while !shutdown.is_requested() {
        let mut polled = consumer.poll(Duration::ZERO);
        if polled.is_none() {
            // Caught up: hand over what is batched before waiting, so a
            // quiet stream's events are not held back.
            consumer.context().lock().ingest.flush_blocking()?;
            polled = consumer.poll(POLL);
        }
        let mut reader = consumer.context().lock();
        match polled {
            Some(Ok(message)) => reader.take(&message)?,
            Some(Err(e)) => tracing::warn!("{}: {}: {e}", reader.what, reader.brokers),
            None => {}
        }
        reader.tick(consumer)?;
    }
    Ok(())
}

fn kafka_error(brokers: &str, source: KafkaError) -> SourceError {
    SourceError::Kafka(kafka::Error::Client {
        brokers: brokers.to_string(),
        source: Box::new(source),
    })
}

/// The consumer's context: the reader, reached from the poll loop and from
/// librdkafka's callbacks, both on the source's thread.
struct Reading(Mutex<Reader>);

impl Reading {
    fn lock(&self) -> MutexGuard<'_, Reader> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientContext for Reading {
    fn stats(&self, statistics: Statistics) {
        self.lock().report_lag(&statistics);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reader = self.lock();
        tracing::warn!("{}: {}: {error}: {reason}", reader.what, reader.brokers);
    }
}

impl ConsumerContext for Reading {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let mut reader = self.lock();
        let done = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                reader.assigned(consumer, tpl);
                match cooperative {
                    true => consumer.incremental_assign(tpl),
                    false => consumer.assign(tpl),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                reader.revoked(consumer, tpl);
                match cooperative {
                    true => consumer.incremental_unassign(tpl),
                    false => consumer.unassign(),
                }
            }
            other => {
                tracing::warn!("{}: rebalance failed: {other:?}", reader.what);
                Ok(())
            }
        };
        if let Err(e) = done {
            tracing::warn!("{}: applying the rebalance: {e}", reader.what);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            let reader = self.lock();
            tracing::warn!("{}: committing offsets: {e}", reader.what);
        }
    }
}

/// One topic partition this run has been given at some point.
struct Partition {
    topic: String,
    partition: i32,
    assigned: bool,
    /// Assigned before in this run: `start` applies only the first time.
    seen: bool,
    /// Offset after the last record handed to the pipeline; -1 before one.
    next: i64,
    /// Offset last committed by this run; -1 before one.
    committed: i64,
    /// Offset after the last record this run handed to the pipeline, kept
    /// across revokes: a record below it, read again after the partition
    /// came back, has had its effects here already.
    high: i64,
    /// Event time of the last event read from it.
    event_time: Option<i64>,
    /// The offset a restored checkpoint placed it at, until a record is
    /// read: the first record should be that one.
    sought: Option<i64>,
}

/// Where the source is: the next offset of every partition it reads.
type Positions = Vec<(String, i32, i64)>;

/// The source's state: what was read, what is in flight, what is committed.
struct Reader {
    ingest: Ingest,
    /// Where the restored checkpoint (or the changelog) left each partition.
    resume: Positions,
    /// Where the keys' state is kept per partition, if not in the state dir.
    changelog: Option<Changelog>,
    marks: Marks,
    what: String,
    brokers: String,
    start: Start,
    /// Partitions by the index events carry as `origin.partition`.
    partitions: Vec<Partition>,
    /// Marks sent and not yet settled, with each partition's `next` then.
    in_flight: VecDeque<(u64, Vec<(u32, i64)>)>,
    last_mark: Instant,
    commit_interval: Duration,
    /// Set when the pipeline stopped taking events, for the poll loop.
    failed: Option<SourceError>,
    /// The source has told the pipeline it is done.
    finished: bool,
}

impl Reader {
    fn index_of(&mut self, topic: &str, partition: i32) -> u32 {
        // A scan, not a map keyed by an owned topic name: that would
        // allocate per record, and a consumer has few partitions.
        let known =
            (self.partitions.iter()).position(|p| p.partition == partition && p.topic == topic);
        if let Some(i) = known {
            return i as u32;
        }
        let i = self.partitions.len() as u32;
        self.partitions.push(Partition {
            topic: topic.to_string(),
            partition,
            assigned: false,
            seen: false,
            next: -1,
            committed: -1,
            high: -1,
            event_time: None,
            sought: None,
        });
        i
    }

    /// Decodes and routes one record, or dead-letters it with its origin.
    fn take(&mut self, message: &BorrowedMessage) -> Result<(), SourceError> {
        let index = self.index_of(message.topic(), message.partition());
        let p = &mut self.partitions[index as usize];
        if let Some(sought) = p.sought.take()
            && message.offset() > sought
        {
            tracing::warn!(
                "{}: {}/{} resumed at offset {}, not at {sought} where the checkpoint left it: the broker returned nothing in between (expected on a compacted topic or after a transaction; otherwise it skipped records)",
                self.what,
                p.topic,
                p.partition,
                message.offset()
            );
        }
        p.next = message.offset() + 1;
        if message.offset() < p.high {
            self.ingest.count_redelivered(1);
            return Ok(());
        }
        p.high = p.next;
        let trace = (self.ingest.decoder().trace_header()).and_then(|name| header(message, name));
        let envelope = Envelope {
            topic: Some(message.topic()),
            key: message.key(),
            timestamp: message.timestamp().to_millis(),
            trace,
            partition: index,
            position: message.offset().max(0) as u64,
        };
        let payload = message.payload().unwrap_or_default();
        let decoded = match message.payload() {
            Some(bytes) => self.ingest.decode_message(bytes, &envelope),
            None => Err(DecodeError::NullValue),
        };
        match decoded {
            Ok(event) => {
                self.partitions[index as usize].event_time = Some(event.time);
                self.ingest.route_blocking(event)?;
            }
            Err(error) => {
                let origin = serde_json::json!({
                    "brokers": self.brokers,
                    "topic": message.topic(),
                    "partition": message.partition(),
                    "offset": message.offset(),
                });
                self.ingest.reject_blocking(&error, origin, payload)?;
            }
        }
        Ok(())
    }

    /// Commits what is safe, and marks (or sends a checkpoint's barrier)
    /// when it is time to.
    fn tick(&mut self, consumer: &BaseConsumer<Reading>) -> Result<(), SourceError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.ingest.durable() {
            if self.ingest.barrier_due() {
                let positions = self.positions();
                if let Some(seq) = self.ingest.barrier_blocking(&self.named(&positions))? {
                    self.in_flight.push_back((seq, positions));
                }
            }
            self.commit_checkpointed(consumer, CommitMode::Async);
            return Ok(());
        }
        while let Some(settled) = self.marks.try_settled() {
            self.commit(consumer, &settled, CommitMode::Async);
        }
        if self.last_mark.elapsed() >= self.commit_interval && self.uncommitted() {
            self.mark()?;
        }
        Ok(())
    }

    /// Each assigned partition's next offset, by the index events carry.
    /// A partition not read since a restore is where the restored
    /// checkpoint left it (its committed offset may be older, if the run
    /// was killed before committing).
    fn positions(&self) -> Vec<(u32, i64)> {
        let restored = |p: &Partition| {
            (self.resume.iter())
                .find(|(topic, partition, _)| *topic == p.topic && *partition == p.partition)
                .map(|&(_, _, next)| next)
        };
        (self.partitions.iter().enumerate())
            .filter(|(_, p)| p.assigned)
            .filter_map(|(i, p)| {
                let next = if p.next >= 0 {
                    Some(p.next)
                } else {
                    restored(p)
                };
                Some((i as u32, next?))
            })
            .collect()
    }

    /// Positions as a checkpoint keeps them: by topic and partition.
    fn named(&self, positions: &[(u32, i64)]) -> Positions {
        (positions.iter())
            .map(|&(i, next)| {
                let p = &self.partitions[i as usize];
                (p.topic.clone(), p.partition, next)
            })
            .collect()
    }

    /// Commits the offsets of the checkpoints completed since the last call.
    fn commit_checkpointed(&mut self, consumer: &BaseConsumer<Reading>, mode: CommitMode) {
        let completed = self.ingest.checkpointed();
        let mut positions = None;
        while self
            .in_flight
            .front()
            .is_some_and(|(seq, _)| *seq <= completed)
        {
            positions = self.in_flight.pop_front().map(|(_, p)| p);
        }
        let Some(positions) = positions else {
            return;
        };
        if let Err(e) = self.write_changelog(completed, &positions) {
            tracing::warn!(
                "{}: writing the changelog: {e}; offsets are not committed, and the next checkpoint writes every key",
                self.what
            );
            self.ingest.changes_lost();
            return;
        }
        self.commit_positions(consumer, positions, &BTreeMap::new(), mode);
    }

    /// Writes the changes of the checkpoints completed up to `seq` and the
    /// partitions' `positions` to the changelog, if there is one.
    fn write_changelog(&mut self, seq: u64, positions: &[(u32, i64)]) -> Result<(), kafka::Error> {
        let Some(changelog) = &self.changelog else {
            return Ok(());
        };
        let changes = (self.ingest.take_changes(seq).into_iter())
            .map(|c| {
                let p = &self.partitions[c.partition as usize];
                (p.topic.clone(), p.partition, c.key, c.state)
            })
            .collect();
        changelog.write(changes, &self.named(positions))
    }

    /// The source is stopping: makes everything read safe (unless it
    /// failed), commits it, and tells the pipeline.
    fn finish(
        &mut self,
        consumer: &BaseConsumer<Reading>,
        cleanly: bool,
    ) -> Result<(), SourceError> {
        self.finished = true;
        if !self.ingest.durable() || !cleanly {
            if cleanly {
                self.settle_all(consumer);
            }
            self.ingest.finish_blocking(&())?;
            return Ok(());
        }
        let positions = self.positions();
        let last = self.ingest.finish_blocking(&self.named(&positions))?;
        if let Some(seq) = last {
            self.in_flight.push_back((seq, positions));
            self.ingest.wait_checkpointed(seq, SETTLE_PATIENCE);
            self.commit_checkpointed(consumer, CommitMode::Sync);
        }
        Ok(())
    }

    /// Whether some assigned partition was read past its committed offset.
    fn uncommitted(&self) -> bool {
        self.partitions
            .iter()
            .any(|p| p.assigned && p.next > p.committed)
    }

    /// Sends a mark behind everything read so far; returns its number.
    fn mark(&mut self) -> Result<u64, SourceError> {
        let ack = self.marks.mark();
        let seq = ack.seq();
        let positions = self.positions();
        self.in_flight.push_back((seq, positions));
        self.last_mark = Instant::now();
        self.ingest.mark_blocking(ack)?;
        Ok(seq)
    }

    /// Commits the offsets read at a settled mark, except where a worker
    /// still held an event back, and for partitions still assigned.
    fn commit(&mut self, consumer: &BaseConsumer<Reading>, settled: &Settled, mode: CommitMode) {
        let mut positions = None;
        while self
            .in_flight
            .front()
            .is_some_and(|(seq, _)| *seq <= settled.seq)
        {
            positions = self.in_flight.pop_front().map(|(_, p)| p);
        }
        let Some(positions) = positions.filter(|_| settled.complete) else {
            return;
        };
        self.commit_positions(consumer, positions, &settled.held, mode);
    }

    /// Commits `positions`, except below what a worker still `held` back,
    /// for partitions still assigned.
    fn commit_positions(
        &mut self,
        consumer: &BaseConsumer<Reading>,
        positions: Vec<(u32, i64)>,
        held: &BTreeMap<u32, u64>,
        mode: CommitMode,
    ) {
        let mut tpl = TopicPartitionList::new();
        for (index, next) in positions {
            let held = held.get(&index).map_or(i64::MAX, |&h| h as i64);
            let offset = next.min(held);
            let p = &mut self.partitions[index as usize];
            if p.assigned && offset > p.committed {
                let added = tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(offset));
                if added.is_ok() {
                    p.committed = offset;
                }
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, mode)
        {
            tracing::warn!("{}: committing offsets: {e}", self.what);
        }
    }

    /// Marks, waits until everything read is safe, and commits it.
    fn settle_all(&mut self, consumer: &BaseConsumer<Reading>) {
        if !self.uncommitted() {
            return;
        }
        let seq = match self.mark() {
            Ok(seq) => seq,
            Err(e) => {
                self.failed = Some(e);
                return;
            }
        };
        match self.marks.wait(seq, SETTLE_PATIENCE) {
            Some(settled) => self.commit(consumer, &settled, CommitMode::Sync),
            None => tracing::warn!(
                "{}: what was read was not acknowledged within {:?}; it is not committed and will be read again",
                self.what,
                SETTLE_PATIENCE
            ),
        }
    }

    /// Takes a checkpoint now and commits what it covers.
    fn checkpoint_now(&mut self, consumer: &BaseConsumer<Reading>) {
        let positions = self.positions();
        match self
            .ingest
            .checkpoint_now_blocking(&self.named(&positions), SETTLE_PATIENCE)
        {
            Ok(Some(seq)) => {
                self.in_flight.push_back((seq, positions));
                self.commit_checkpointed(consumer, CommitMode::Sync);
            }
            Ok(None) => tracing::warn!(
                "{}: no checkpoint completed within {:?}; what was read is not committed and will be read again",
                self.what,
                SETTLE_PATIENCE
            ),
            Err(e) => self.failed = Some(e.into()),
        }
    }

    /// New partitions: places them where the restored checkpoint left them,
    /// or where `start` says, if this run has not had them before.
    fn assigned(&mut self, consumer: &BaseConsumer<Reading>, tpl: &mut TopicPartitionList) {
        let (mut fresh, mut restored) = (TopicPartitionList::new(), TopicPartitionList::new());
        self.adopt(tpl);
        let from_changelog = self.changelog.is_some();
        for element in tpl.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let index = self.index_of(topic, partition);
            let p = &mut self.partitions[index as usize];
            // The changelog's offset holds even for a partition had before.
            let resume = (self.resume.iter())
                .find(|(t, n, _)| t == topic && *n == partition)
                .filter(|_| from_changelog || !p.seen);
            let offset = match self.start {
                _ if resume.is_some() => {
                    let next = resume.map_or(0, |&(_, _, next)| next);
                    let _ = restored.add_partition_offset(topic, partition, Offset::Offset(next));
                    p.sought = Some(next);
                    None
                }
                _ if p.seen => None,
                Start::Committed => None,
                Start::Earliest => Some(Offset::Beginning),
                Start::Latest => Some(Offset::End),
                Start::Time(ms) => Some(Offset::Offset(ms)),
            };
            if let Some(offset) = offset {
                let _ = fresh.add_partition_offset(topic, partition, offset);
            }
            p.assigned = true;
            p.seen = true;
        }
        if let Start::Time(_) = self.start
            && fresh.count() > 0
        {
            match consumer.offsets_for_times(fresh.clone(), Duration::from_secs(10)) {
                Ok(found) => fresh = found,
                Err(e) => {
                    tracing::warn!(
                        "{}: finding offsets for the start time: {e}; starting from committed offsets",
                        self.what
                    );
                    fresh = TopicPartitionList::new();
                }
            }
        }
        for element in fresh.elements().iter().chain(&restored.elements()) {
            let _ =
                tpl.set_partition_offset(element.topic(), element.partition(), element.offset());
        }
        tracing::info!("{}: assigned {}", self.what, describe(tpl));
    }

    /// Reads the state of the keys of the partitions in `tpl` from the
    /// changelog and hands it to the workers; notes where each partition's
    /// state leaves it, to seek there.
    fn adopt(&mut self, tpl: &TopicPartitionList) {
        let Some(changelog) = &self.changelog else {
            return;
        };
        let inputs: Vec<(String, i32)> = (tpl.elements().iter())
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let replays = match changelog.read(&inputs) {
            Ok(replays) => replays,
            Err(e) => {
                tracing::error!("{}: reading the changelog: {e}", self.what);
                self.failed = Some(SourceError::Kafka(e));
                return;
            }
        };
        let mut keys = Vec::new();
        for ((topic, partition), replay) in replays {
            let (states, position) = replay.finish();
            let index = self.index_of(&topic, partition);
            // Its records are read again from where the state leaves them.
            self.partitions[index as usize].high = -1;
            self.resume
                .retain(|(t, n, _)| !(*t == topic && *n == partition));
            if let Some(next) = position {
                self.resume.push((topic, partition, next));
            }
            keys.extend(states.into_iter().map(|(key, state)| (key, index, state)));
        }
        tracing::info!(
            "{}: {} keys restored from the changelog",
            self.what,
            keys.len()
        );
        if let Err(e) = self.ingest.adopt_blocking(keys) {
            self.failed = Some(e.into());
        }
    }

    /// Partitions taken away: everything read from them is made safe and
    /// committed before they go; with a changelog, their keys go too.
    fn revoked(&mut self, consumer: &BaseConsumer<Reading>, tpl: &TopicPartitionList) {
        match self.ingest.durable() {
            // Leaving the group after the last checkpoint: nothing left.
            true if self.finished => {}
            true => self.checkpoint_now(consumer),
            false => self.settle_all(consumer),
        }
        let mut gone = Vec::new();
        for element in tpl.elements() {
            let index = self.index_of(element.topic(), element.partition());
            let p = &mut self.partitions[index as usize];
            p.assigned = false;
            p.next = -1;
            p.committed = -1;
            gone.push(index);
        }
        if self.changelog.is_some()
            && !self.finished
            && let Err(e) = self.ingest.let_go_blocking(gone)
        {
            self.failed = Some(e.into());
        }
        tracing::info!("{}: revoked {}", self.what, describe(tpl));
    }

    /// Logs each assigned partition's lag, in records and in event time,
    /// and sets its gauge.
    fn report_lag(&self, statistics: &Statistics) {
        let now = time::now_ms();
        let metrics = self.ingest.metrics();
        let lags: Vec<String> = (self.partitions.iter().filter(|p| p.assigned))
            .map(|p| {
                // The newest offset less the next one to read: not
                // librdkafka's `consumer_lag`, which counts from the
                // committed offset and so includes what is in flight.
                let high = (statistics.topics.get(&p.topic))
                    .and_then(|t| t.partitions.get(&p.partition))
                    .map_or(-1, |s| s.hi_offset);
                let records = match (high, p.next) {
                    (high, next) if high >= 0 && next >= 0 => {
                        let lag = (high - next).max(0);
                        metrics.lag(format!("{}/{}", p.topic, p.partition)).set(lag);
                        lag.to_string()
                    }
                    _ => "?".to_string(),
                };
                let seconds = p.event_time.map_or("?".to_string(), |t| {
                    format!("{:.1}", (now - t) as f64 / 1000.0)
                });
                format!("{}/{} {records} records {seconds} s", p.topic, p.partition)
            })
            .collect();
        if !lags.is_empty() {
            tracing::info!("{}: lag {}", self.what, lags.join(", "));
        }
    }
}

/// The value of a record's header `name`, if it is text.
fn header<'m>(message: &'m BorrowedMessage, name: &str) -> Option<&'m str> {
    use rdkafka::message::Headers;
    let headers = message.headers()?;
    let found = headers.iter().find(|h| h.key == name)?;
    std::str::from_utf8(found.value?).ok()
}

/// `telemetry/0, telemetry/1`.
fn describe(tpl: &TopicPartitionList) -> String {
    let names: Vec<String> = tpl
        .elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!(Start::parse("earliest"), Ok(Start::Earliest));
        assert_eq!(
            Start::parse("2026-11-24T00:00:00Z"),
            Ok(Start::Time(1_795_478_400_000))
        );
        assert!(
            Start::parse("yesterday")
                .unwrap_err()
                .contains("expected committed")
        );
    }

    #[test]
    fn uris_take_a_start_and_a_group() {
        let c = Config::from_uri("kafka://127.0.0.1:9092/telemetry?from=earliest&group=replay")
            .unwrap();
        assert_eq!(c.start, Start::Earliest);
        assert_eq!(c.group_id.as_deref(), Some("replay"));
        let c = Config::from_uri("kafka://h:1/t?statistics.interval.ms=1000").unwrap();
        assert_eq!(c.options["statistics.interval.ms"], "1000");
        assert!(Config::from_uri("kafka://h:1/t?qos=1").is_err());
    }
}
