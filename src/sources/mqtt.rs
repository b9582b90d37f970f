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
//! Delivery is at-least-once: a QoS 1 message is acknowledged only after
//! its event is in the pipeline (handed to the worker that owns its key),
//! so a message floe never acknowledged is redelivered by the broker after
//! a crash. With `clean_session: false` (the default) the broker keeps the
//! session, and queues messages while floe is down.
//!
//! Two tasks share the work. The poller drives rumqttc's event loop, which
//! must be polled continuously (pings and acknowledgements go out only
//! while it is), and forwards messages; the decoder, on a blocking thread
//! like every source's, decodes and routes them, and acknowledges them
//! once they are routed. A bad payload is dead-lettered with its topic and
//! acknowledged: it is handled, and the connection is never dropped for it.

use super::{Carries, Ingest, Source, SourceError, SourceSpec};
use crate::config::{ConfigError, Context, Node};
use crate::event::decode::Envelope;
use crate::mqtt::{
    self, Client, Connection, EventLoop, Filters, Incoming, Link, Message, MqttError, QoS, Qos,
};
use crate::runtime::BoxFuture;
use crate::runtime::Shutdown;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TryRecvError;

#[derive(Debug)]
pub struct Config {
    connection: Connection,
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
        }
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
        let broker = link.broker().to_string();
        let shutdown = ingest.shutdown_handle();
        let (tx, rx) = mpsc::channel(QUEUE);
        let stopper = tokio::spawn(stop_on(shutdown.clone(), tx.clone()));
        let subscriber = Subscriber {
            client: client.clone(),
            topics,
            qos,
            tx,
        };
        let mut poller = tokio::spawn(subscriber.poll(events, link, shutdown));
        let acker = client.clone();
        let decoded = tokio::task::spawn_blocking(move || decode(ingest, rx, &acker, &broker))
            .await
            .unwrap_or(Err(SourceError::Closed));
        stopper.abort();
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

/// Decodes and routes forwarded messages until told to stop, acknowledging
/// each once its event is with the workers.
fn decode(
    mut ingest: Ingest,
    mut rx: mpsc::Receiver<Item>,
    client: &Client,
    broker: &str,
) -> Result<(), SourceError> {
    let mut unacked = Vec::new();
    let mut position = 0u64;
    loop {
        let item = match rx.try_recv() {
            Ok(item) => item,
            Err(TryRecvError::Empty) => {
                // Caught up: settle before waiting, so a quiet stream's
                // events are neither held in a batch nor left unacknowledged.
                settle(&mut ingest, client, &mut unacked)?;
                match rx.blocking_recv() {
                    Some(item) => item,
                    None => break,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        let Item::Message(message) = item else { break };
        position += 1;
        if message.redelivered() {
            ingest.count_redelivered(1);
        }
        let topic = message.topic();
        let envelope = Envelope {
            topic: Some(topic),
            position,
            ..Envelope::default()
        };
        match ingest
            .decoder()
            .decode_message(message.payload(), &envelope)
        {
            Ok(event) => ingest.route_blocking(event)?,
            Err(error) => {
                let origin =
                    serde_json::json!({"broker": broker, "topic": topic, "message": position});
                ingest.reject_blocking(&error, origin, message.payload())?;
            }
        }
        if message.needs_ack() {
            unacked.push(message);
            if unacked.len() >= ACK_BATCH {
                settle(&mut ingest, client, &mut unacked)?;
            }
        }
    }
    settle(&mut ingest, client, &mut unacked)?;
    ingest.finish_blocking()
}

/// Hands routed events to the workers, then acknowledges their messages.
fn settle(
    ingest: &mut Ingest,
    client: &Client,
    unacked: &mut Vec<Message>,
) -> Result<(), SourceError> {
    ingest.flush_blocking()?;
    for message in unacked.drain(..) {
        // A refused ack means the event loop has ended; the broker
        // redelivers the message to the next session.
        client.try_ack(&message);
    }
    Ok(())
}
