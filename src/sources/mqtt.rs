//! `mqtt`: telemetry from an MQTT broker.
//!
//! ```yaml
//! trucks:
//!   type: mqtt
//!   url: mqtt://127.0.0.1:1883      # mqtts:// for TLS
//!   topics: [fleet/+/telemetry]      # wildcards and $share/GROUP/... work
//!   qos: 1
//!   key: topic[1]                    # or a payload field: key: device
//!   time: ts
//! ```
//!
//! Delivery is at-least-once. Without a state dir, a QoS 1 message is
//! acknowledged once its event is in the pipeline (handed to the worker
//! that owns its key): a crash of floe loses what was acknowledged and not
//! yet processed. With a state dir (`floe run --state-dir`), each message
//! is first appended to a write-ahead journal there, and acknowledged only
//! once the journal is fsynced (group commit: one fsync for everything
//! that arrived meanwhile); a restart replays the journal from the last
//! checkpoint's position, so nothing acknowledged is lost. With
//! `clean_session: false` (the default) the broker keeps the session, and
//! queues messages while floe is down.
//!
//! Two tasks share the work. The poller drives rumqttc's event loop, which
//! must be polled continuously (pings and acknowledgements go out only
//! while it is), and forwards messages; the decoder, on a blocking thread
//! like every source's, decodes and routes them, and acknowledges them
//! (or journals them, and the journal's writer acknowledges). A bad
//! payload is dead-lettered with its topic and acknowledged: it is
//! handled, and the connection is never dropped for it.

use super::{Carries, Source, SourceError, SourceSpec};
use crate::config::{ConfigError, Context, Node};
use crate::event::decode::Envelope;
use crate::mqtt::{
    self, Client, Connection, EventLoop, Filters, Incoming, Link, Message, MqttError, QoS, Qos,
};
use crate::runtime::BoxFuture;
use crate::runtime::{Checkpoints, Ingest, Shutdown};
use crate::state::journal::{self, Appender, Journal};
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

#[derive(Debug)]
pub struct Config {
    pub(crate) connection: Connection,
    topics: Vec<String>,
    qos: QoS,
}

/// The source's own keys, next to the connection's.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// Topic filters to subscribe to.
    topics: Filters,
    #[serde(default)]
    qos: Qos,
}

impl Config {
    /// Parses the source's entry in a pipeline file.
    pub fn parse(node: &Node) -> Result<Box<dyn SourceSpec>, Vec<ConfigError>> {
        let (connection, options) = mqtt::split::<Options>(node)?;
        Ok(Box::new(Config {
            connection,
            topics: options.topics.0,
            qos: options.qos.0,
        }))
    }

    /// A source given on the command line: `mqtt://HOST:PORT/FILTER?qos=1`.
    pub fn from_uri(uri: &str) -> Result<Config, String> {
        let uri = mqtt::Uri::parse(uri)?;
        let filter = uri.topic.ok_or("expected mqtt://HOST:PORT/TOPIC-FILTER")?;
        mqtt::check_filter(&filter)?;
        Ok(Config {
            connection: uri.connection,
            topics: vec![filter],
            qos: uri.qos.unwrap_or(QoS::AtLeastOnce),
        })
    }
}

/// Requests the client queues for its event loop: more than MQTT's packet
/// ids can number, so an acknowledgement always finds room. (Every
/// acknowledgement answers a message the broker still has in flight, and
/// a broker cannot have more in flight than there are packet ids.)
const REQUESTS: usize = u16::MAX as usize + 64;
/// Messages forwarded to the decoder before the poller waits.
const QUEUE: usize = 1024;
/// Messages routed before they are acknowledged, when the decoder does not
/// catch up sooner.
const ACK_BATCH: usize = 256;
/// How long a stopping source waits for its last acknowledgements to go out.
const DISCONNECT_PATIENCE: Duration = Duration::from_secs(5);

impl SourceSpec for Config {
    fn open(&self, ctx: &Context) -> Result<Box<dyn Source>, SourceError> {
        let id = self.connection.client_id(&ctx.default_client_id());
        let (client, events) =
            mqtt::client::connect(&self.connection, id, ctx.base, true, REQUESTS)?;
        let what = format!("source \"{}\"", ctx.id);
        Ok(Box::new(MqttSource {
            client,
            events,
            link: Link::new(what, self.connection.broker()),
            topics: self.topics.clone(),
            qos: self.qos,
        }))
    }

    fn carries(&self) -> Carries {
        Carries {
            topics: true,
            records: false,
            headers: self.connection.version == mqtt::Version::V5,
        }
    }

    fn connects(&self) -> bool {
        true
    }
}

struct MqttSource {
    client: Client,
    events: EventLoop,
    link: Link,
    topics: Vec<String>,
    qos: QoS,
}

/// What the poller hands the decoder.
enum Item {
    Message(Message),
    /// A checkpoint waits for this source's barrier.
    Barrier,
    /// Finish: route and acknowledge what came before, then end.
    Stop,
}

impl Source for MqttSource {
    fn run(self: Box<Self>, ingest: Ingest) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(self.consume(ingest))
    }
}

impl MqttSource {
    async fn consume(self, ingest: Ingest) -> Result<(), SourceError> {
        let MqttSource {
            client,
            events,
            link,
            topics,
            qos,
        } = self;
        let metrics = ingest.metrics();
        let connected = metrics.connected.clone();
        let link = link.reporting(metrics.connected, metrics.disconnected_seconds);
        let broker = link.broker().to_string();
        let shutdown = ingest.shutdown_handle();
        let (tx, rx) = mpsc::channel(QUEUE);
        let stopper = tokio::spawn(stop_on(shutdown.clone(), tx.clone()));
        let barriers = ingest
            .checkpoints()
            .map(|c| tokio::spawn(barriers(c, tx.clone())));
        let subscriber = Subscriber {
            client: client.clone(),
            topics,
            qos,
            tx,
            connected,
        };
        let mut poller = tokio::spawn(subscriber.poll(events, link, shutdown));
        let acker = client.clone();
        let decoded = tokio::task::spawn_blocking(move || decode(ingest, rx, &acker, &broker))
            .await
            .unwrap_or(Err(SourceError::Closed));
        stopper.abort();
        barriers.inspect(|b| b.abort());
        // The disconnect goes out after the acknowledgements queued before it.
        client.try_disconnect();
        let polled = match tokio::time::timeout(DISCONNECT_PATIENCE, &mut poller).await {
            Ok(joined) => joined.unwrap_or(Err(MqttError::Closed)),
            Err(_) => {
                poller.abort();
                Ok(())
            }
        };
        polled?;
        decoded
    }
}

/// Asks the decoder for a barrier whenever a checkpoint wants one, so a
/// quiet stream does not hold checkpoints up.
async fn barriers(checkpoints: Arc<Checkpoints>, tx: mpsc::Sender<Item>) {
    let mut seen = checkpoints.requested();
    loop {
        checkpoints.requested_after(seen).await;
        seen = checkpoints.requested();
        if tx.send(Item::Barrier).await.is_err() {
            return;
        }
    }
}

/// Asks the decoder to finish once shutdown is requested.
async fn stop_on(shutdown: Shutdown, tx: mpsc::Sender<Item>) {
    shutdown.requested().await;
    let _ = tx.send(Item::Stop).await;
}

/// The poller's side: the event loop and what it forwards.
struct Subscriber {
    client: Client,
    topics: Vec<String>,
    qos: QoS,
    tx: mpsc::Sender<Item>,
    /// 1 once subscribed, for `/ready`.
    connected: Gauge,
}

impl Subscriber {
    /// Polls until the session ends, then tells the decoder to finish.
    async fn poll(
        self,
        mut events: EventLoop,
        mut link: Link,
        shutdown: Shutdown,
    ) -> Result<(), MqttError> {
        let result = self.forward(&mut events, &mut link, &shutdown).await;
        let _ = self.tx.send(Item::Stop).await;
        tracing::info!("{}", link.summary());
        result
    }

    async fn forward(
        &self,
        events: &mut EventLoop,
        link: &mut Link,
        shutdown: &Shutdown,
    ) -> Result<(), MqttError> {
        while let Some(incoming) = link.next(events, shutdown).await? {
            match incoming {
                // Subscribing on every connection, not only when the broker
                // lost the session, also picks up filters added to the
                // pipeline since the session began.
                Incoming::Connected { .. }
                    if !self.client.try_subscribe(&self.topics, self.qos) =>
                {
                    return Err(MqttError::Closed);
                }
                Incoming::Subscribed { refused: 0 } => {
                    // Ready only now: what is published from here on comes.
                    self.connected.set(1);
                    let topics = self.topics.join(", ");
                    tracing::info!("{}: subscribed to {topics}", link.what());
                }
                Incoming::Subscribed { .. } => {
                    return Err(MqttError::Refused {
                        broker: link.broker().to_string(),
                        reason: format!(
                            "the broker refused the subscription to {}",
                            self.topics.join(", ")
                        ),
                    });
                }
                // Once the decoder has stopped, a message stays
                // unacknowledged: the broker redelivers it next session.
                Incoming::Message(message) => {
                    let _ = self.tx.send(Item::Message(message)).await;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Decodes and routes forwarded messages until told to stop, and has
/// them acknowledged once safe.
fn decode(
    mut ingest: Ingest,
    mut rx: mpsc::Receiver<Item>,
    client: &Client,
    broker: &str,
) -> Result<(), SourceError> {
    let mut acks = match ingest.state_dir() {
        Some(dir) => Acks::Journaled(Journaled::open(&mut ingest, &dir, client, broker)?),
        None => Acks::Routed {
            unacked: Vec::new(),
            position: 0,
        },
    };
    // The user property holding correlation ids, if `trace:` names one.
    let trace = ingest.decoder().trace_header().map(str::to_string);
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(TryRecvError::Empty) => {
                // Caught up: settle before waiting, so a quiet stream's
                // events are neither held in a batch nor left unacknowledged.
                acks.settle(&mut ingest, client)?;
                match rx.blocking_recv() {
                    Some(item) => item,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let message = match item {
            Item::Message(message) => message,
            Item::Barrier => {
                acks.barrier(&mut ingest)?;
                continue;
            }
            Item::Stop => break,
        };
        if message.redelivered() {
            ingest.count_redelivered(1);
        }
        let received = Received {
            topic: message.topic(),
            payload: message.payload(),
            trace: (trace.as_deref()).and_then(|name| message.user_property(name)),
            position: acks.position(),
        };
        take(&mut ingest, received, broker)?;
        acks.taken(&mut ingest, client, message, trace.as_deref())?;
    }
    acks.settle(&mut ingest, client)?;
    ingest.finish_blocking(&acks.last())?;
    Ok(())
}

/// What the decoder takes from a message, live or replayed.
#[derive(Clone, Copy)]
struct Received<'a> {
    topic: &'a str,
    payload: &'a [u8],
    /// The value of the MQTT 5 user property `trace:` names.
    trace: Option<&'a str>,
    /// The message's number: its journal sequence number, when journaled.
    position: u64,
}

impl<'a> Received<'a> {
    fn replayed(record: &'a journal::Record) -> Self {
        Received {
            topic: &record.topic,
            payload: &record.payload,
            trace: record.trace.as_deref(),
            position: record.seq,
        }
    }
}

/// Decodes one message and routes its event, or dead-letters it.
fn take(ingest: &mut Ingest, message: Received, broker: &str) -> Result<(), SourceError> {
    let Received {
        topic,
        payload,
        trace,
        position,
    } = message;
    let envelope = Envelope {
        topic: Some(topic),
        trace,
        position,
        ..Envelope::default()
    };
    match ingest.decode_message(payload, &envelope) {
        Ok(event) => ingest.route_blocking(event)?,
        Err(error) => {
            let origin = serde_json::json!({"broker": broker, "topic": topic, "message": position});
            ingest.reject_blocking(&error, origin, payload)?;
        }
    }
    Ok(())
}

/// When messages are acknowledged.
enum Acks {
    /// Once routed to the workers (no state dir).
    Routed {
        unacked: Vec<Message>,
        /// Messages taken, as their origin's number.
        position: u64,
    },
    /// Once in the journal.
    Journaled(Journaled),
}

/// The journal, and which of its positions checkpoints still need.
struct Journaled {
    appender: Appender<Message>,
    /// The journal position at each barrier sent and not yet completed.
    barriers: VecDeque<(u64, u64)>,
    /// The position of the last completed checkpoint: the journal keeps
    /// what follows it, for a restore that falls back to it.
    kept_from: u64,
}

impl Journaled {
    /// Opens the journal and replays what came after the restored
    /// checkpoint: those messages were acknowledged, so the broker will not
    /// send them again.
    fn open(
        ingest: &mut Ingest,
        dir: &std::path::Path,
        client: &Client,
        broker: &str,
    ) -> Result<Journaled, SourceError> {
        let journal = Journal::open(dir).map_err(|e| SourceError::State(e.to_string()))?;
        let from = ingest.resume::<u64>().unwrap_or(0);
        let mut failed = None;
        let replayed = journal
            .replay(from, |record: journal::Record| {
                if failed.is_none()
                    && let Err(e) = take(ingest, Received::replayed(&record), broker)
                {
                    failed = Some(e);
                }
            })
            .map_err(|e| SourceError::State(e.to_string()))?;
        if let Some(e) = failed {
            return Err(e);
        }
        if replayed > 0 {
            tracing::info!(
                "source \"{}\": replayed {replayed} journaled messages",
                ingest.id
            );
        }
        let acker = client.clone();
        let appender = journal
            .start(move |message: Message| {
                if message.needs_ack() {
                    // Refused once the event loop has ended: the broker
                    // redelivers the message to the next session.
                    acker.try_ack(&message);
                }
            })
            .map_err(|e| SourceError::State(e.to_string()))?;
        Ok(Journaled {
            appender,
            barriers: VecDeque::new(),
            kept_from: from,
        })
    }

    /// Lets the journal drop what the checkpoints completed since the last
    /// call no longer need.
    fn forget(&mut self, completed: u64) {
        while let Some(&(seq, position)) = self.barriers.front() {
            if seq > completed {
                break;
            }
            self.barriers.pop_front();
            // Keep from the checkpoint before this one: a restore falls
            // back to it if this one turns out unreadable.
            self.appender.forget_through(self.kept_from);
            self.kept_from = position;
        }
    }
}

impl Acks {
    /// The position of the next message.
    fn position(&self) -> u64 {
        match self {
            Acks::Routed { position, .. } => position + 1,
            Acks::Journaled(j) => j.appender.last() + 1,
        }
    }

    /// The position of the last message taken.
    fn last(&self) -> u64 {
        self.position() - 1
    }

    /// The message's event has been routed (or it was dead-lettered).
    /// `trace` names the user property that holds its correlation id.
    fn taken(
        &mut self,
        ingest: &mut Ingest,
        client: &Client,
        message: Message,
        trace: Option<&str>,
    ) -> Result<(), SourceError> {
        match self {
            Acks::Routed { unacked, position } => {
                *position += 1;
                if message.needs_ack() {
                    unacked.push(message);
                    if unacked.len() >= ACK_BATCH {
                        self.settle(ingest, client)?;
                    }
                }
            }
            Acks::Journaled(j) => {
                let stopped =
                    |_| SourceError::State("the journal stopped writing (see the log)".into());
                let trace = trace.and_then(|name| message.user_property(name));
                (j.appender.append(message.topic(), message.payload(), trace)).map_err(stopped)?;
                j.appender.when_durable(message).map_err(stopped)?;
                if ingest.barrier_due() {
                    self.barrier(ingest)?;
                }
            }
        }
        Ok(())
    }

    /// Hands routed events to the workers, then acknowledges what is safe.
    fn settle(&mut self, ingest: &mut Ingest, client: &Client) -> Result<(), SourceError> {
        ingest.flush_blocking()?;
        match self {
            Acks::Routed { unacked, .. } => {
                for message in unacked.drain(..) {
                    // A refused ack means the event loop has ended; the
                    // broker redelivers the message to the next session.
                    client.try_ack(&message);
                }
            }
            Acks::Journaled(j) => {
                j.appender.flush().map_err(|_| {
                    SourceError::State("the journal stopped writing (see the log)".into())
                })?;
                j.forget(ingest.checkpointed());
            }
        }
        Ok(())
    }

    /// Sends this source's barrier, if a checkpoint waits for it.
    fn barrier(&mut self, ingest: &mut Ingest) -> Result<(), SourceError> {
        let last = self.last();
        if let Some(seq) = ingest.barrier_blocking(&last)?
            && let Acks::Journaled(j) = self
        {
            j.barriers.push_back((seq, last));
            j.forget(ingest.checkpointed());
        }
        Ok(())
    }
}
