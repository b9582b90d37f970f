//! One face over rumqttc's MQTT 3.1.1 and MQTT 5 clients.
//!
//! rumqttc has separate types for the two protocol versions; what floe
//! needs from either (connect, subscribe, publish, acknowledge, poll) is
//! here, so the source, the sink and the simulator are written once.
//!
//! The event loop also keeps a promise rumqttc does not: when a broker
//! comes back without the client's session (restarted without persistence,
//! or before it saved), rumqttc discards the publishes it never got
//! acknowledged, as MQTT allows: they belonged to the old session. For
//! floe those are alerts or readings that would be lost, so they are set
//! aside when the connection drops and sent again on the next connection,
//! whatever the broker remembers. The cost is a possible duplicate.

use super::{Connection, MqttError, QoS, Version};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::QoS as V5QoS;
use rumqttc::v5::mqttbytes::v5 as v5b;
use std::path::Path;
use std::time::Duration;

/// The largest MQTT packet (256 MB): a message over rumqttc's 10 KB
/// default would drop the connection, and the broker would redeliver it
/// forever. Oversized payloads are the decoder's to reject.
const MAX_PACKET: usize = 268_435_455;

/// A handle that sends requests to the event loop; cheap to clone.
#[derive(Clone, Debug)]
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The connection itself; must be polled continuously.
pub struct EventLoop {
    inner: Inner,
    /// Publishes sent again on a new connection, having gone unacknowledged
    /// on the one that dropped.
    resent: u64,
}

enum Inner {
    V311 {
        events: Box<rumqttc::EventLoop>,
        /// Requests not acknowledged when the connection dropped.
        unsent: Vec<rumqttc::Request>,
    },
    V5 {
        events: Box<v5::EventLoop>,
        unsent: Vec<v5::Request>,
    },
}

/// A message received on a subscription.
#[derive(Debug)]
pub enum Message {
    V311(rumqttc::Publish),
    /// Boxed: MQTT 5 messages carry properties, and are large.
    V5(Box<v5b::Publish>),
}

/// What a poll of the event loop brought.
#[derive(Debug)]
pub enum Incoming {
    Connected {
        session_present: bool,
    },
    Message(Message),
    /// The broker took one of our QoS 1 or 2 publishes.
    Acknowledged,
    /// The broker answered a subscription; `refused` counts the filters it
    /// did not grant.
    Subscribed {
        refused: usize,
    },
    /// Our DISCONNECT went out: the session is over.
    Disconnected,
    Other,
}

/// Why a poll failed.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    /// The broker turned us away (bad credentials, unknown client id).
    #[error("the broker refused the connection: {0}")]
    Refused(String),
    /// The TLS handshake failed (a wrong CA, an expired certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection dropped or could not be made; polling again retries.
    #[error("{0}")]
    Transient(String),
    /// Every client handle is gone.
    #[error("the client closed")]
    Closed,
}

impl PollError {
    /// Whether retrying is pointless: a refusal always is; a TLS failure is
    /// when no connection has ever worked (a broker that restarts mid-
    /// handshake is not a misconfiguration).
    pub fn is_fatal(&self, ever_connected: bool) -> bool {
        match self {
            PollError::Refused(_) => true,
            PollError::Tls(_) => !ever_connected,
            PollError::Transient(_) | PollError::Closed => false,
        }
    }
}

/// Opens a client for `connection` (it connects on the first poll).
/// `manual_acks` holds back acknowledgements until [`Client::try_ack`];
/// `capacity` is how many requests wait for the event loop before a sender
/// waits.
pub fn connect(
    connection: &Connection,
    client_id: String,
    base: &Path,
    manual_acks: bool,
    capacity: usize,
) -> Result<(Client, EventLoop), MqttError> {
    let (_, host, port) = connection.address().ok_or(MqttError::Closed)?;
    let transport = connection
        .tls_config(base)?
        .map(rumqttc::Transport::tls_with_config);
    let credentials = connection.username.as_ref().map(|user| {
        let password = connection.password.as_ref().map_or("", |p| p.expose());
        (user.clone(), password.to_string())
    });
    let keep_alive = Duration::from_millis(connection.keep_alive.ms() as u64);
    Ok(match connection.version {
        Version::V311 => {
            let mut options = rumqttc::MqttOptions::new(client_id, host, port);
            options
                .set_clean_session(connection.clean_session)
                .set_keep_alive(keep_alive)
                .set_max_packet_size(MAX_PACKET, MAX_PACKET)
                .set_manual_acks(manual_acks);
            if let Some((user, password)) = credentials {
                options.set_credentials(user, password);
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, events) = rumqttc::AsyncClient::new(options, capacity);
            let unsent = Vec::new();
            (
                Client::V311(client),
                EventLoop {
                    inner: Inner::V311 {
                        events: Box::new(events),
                        unsent,
                    },
                    resent: 0,
                },
            )
        }
        Version::V5 => {
            let mut options = v5::MqttOptions::new(client_id, host, port);
            options
                .set_clean_start(connection.clean_session)
                .set_keep_alive(keep_alive)
                .set_max_packet_size(Some(MAX_PACKET as u32))
                .set_manual_acks(manual_acks);
            // MQTT 5 ends a session at disconnect unless asked to keep it;
            // keep it as long as the broker allows, as 3.1.1 does.
            if !connection.clean_session {
                options.set_session_expiry_interval(Some(u32::MAX));
            }
            if let Some((user, password)) = credentials {
                options.set_credentials(user, password);
            }
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            let (client, events) = v5::AsyncClient::new(options, capacity);
            let unsent = Vec::new();
            (
                Client::V5(client),
                EventLoop {
                    inner: Inner::V5 {
                        events: Box::new(events),
                        unsent,
                    },
                    resent: 0,
                },
            )
        }
    })
}

fn v5_qos(qos: QoS) -> V5QoS {
    match qos {
        QoS::AtMostOnce => V5QoS::AtMostOnce,
        QoS::AtLeastOnce => V5QoS::AtLeastOnce,
        QoS::ExactlyOnce => V5QoS::ExactlyOnce,
    }
}

impl Client {
    /// Queues a message; waits while the request queue is full.
    pub async fn publish(
        &self,
        topic: String,
        qos: QoS,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), MqttError> {
        let sent = match self {
            Client::V311(c) => c.publish(topic, qos, retain, payload).await.is_ok(),
            Client::V5(c) => c.publish(topic, v5_qos(qos), retain, payload).await.is_ok(),
        };
        sent.then_some(()).ok_or(MqttError::Closed)
    }

    /// Acknowledges a QoS 1 or 2 message received with manual acks. Never
    /// waits: the request queue has room for every message the broker may
    /// have in flight (see the source), so `false` means the client is gone.
    pub fn try_ack(&self, message: &Message) -> bool {
        match (self, message) {
            (Client::V311(c), Message::V311(p)) => c.try_ack(p).is_ok(),
            (Client::V5(c), Message::V5(p)) => c.try_ack(p).is_ok(),
            _ => false,
        }
    }

    /// Subscribes to `filters`, without waiting.
    pub fn try_subscribe(&self, filters: &[String], qos: QoS) -> bool {
        match self {
            Client::V311(c) => {
                let filters = filters
                    .iter()
                    .map(|f| rumqttc::SubscribeFilter::new(f.clone(), qos));
                c.try_subscribe_many(filters).is_ok()
            }
            Client::V5(c) => {
                let filters = filters
                    .iter()
                    .map(|f| v5b::Filter::new(f.clone(), v5_qos(qos)));
                c.try_subscribe_many(filters).is_ok()
            }
        }
    }

    /// Asks the event loop to end the session once the requests queued
    /// before this one have gone out.
    pub fn try_disconnect(&self) -> bool {
        match self {
            Client::V311(c) => c.try_disconnect().is_ok(),
            Client::V5(c) => c.try_disconnect().is_ok(),
        }
    }
}

impl Message {
    pub fn topic(&self) -> &str {
        match self {
            Message::V311(p) => &p.topic,
            Message::V5(p) => std::str::from_utf8(&p.topic).unwrap_or_default(),
        }
    }

    pub fn payload(&self) -> &[u8] {
        match self {
            Message::V311(p) => &p.payload,
            Message::V5(p) => &p.payload,
        }
    }

    /// Whether it needs an acknowledgement.
    pub fn needs_ack(&self) -> bool {
        match self {
            Message::V311(p) => p.qos != QoS::AtMostOnce,
            Message::V5(p) => p.qos != V5QoS::AtMostOnce,
        }
    }

    /// The value of its MQTT 5 user property `name`, if it has one.
    pub fn user_property(&self, name: &str) -> Option<&str> {
        match self {
            Message::V311(_) => None,
            Message::V5(p) => (p.properties.as_ref()?.user_properties.iter())
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str()),
        }
    }

    /// Whether the broker says it may have sent it before.
    pub fn redelivered(&self) -> bool {
        match self {
            Message::V311(p) => p.dup,
            Message::V5(p) => p.dup,
        }
    }
}

impl EventLoop {
    /// Publishes sent again so far, on a new connection after the one
    /// they went out on dropped unacknowledged.
    pub fn resent(&self) -> u64 {
        self.resent
    }

    /// Drives the connection: connects (or reconnects, after an error),
    /// sends queued requests, and returns the next thing that happened.
    /// Not cancel-safe: always poll to completion.
    pub async fn poll(&mut self) -> Result<Incoming, PollError> {
        let EventLoop { inner, resent } = self;
        match inner {
            Inner::V311 { events, unsent } => match events.poll().await {
                Ok(event) => {
                    if matches!(event, rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) {
                        let publishes = unsent
                            .iter()
                            .filter(|r| matches!(r, rumqttc::Request::Publish(_)));
                        *resent += publishes.count() as u64;
                        events.pending.extend(unsent.drain(..));
                    }
                    Ok(v311_incoming(event))
                }
                Err(error) => {
                    unsent.extend(events.pending.drain(..));
                    Err(v311_error(error))
                }
            },
            Inner::V5 { events, unsent } => match events.poll().await {
                Ok(event) => {
                    if matches!(event, v5::Event::Incoming(v5b::Packet::ConnAck(_))) {
                        let publishes = unsent
                            .iter()
                            .filter(|r| matches!(r, v5::Request::Publish(_)));
                        *resent += publishes.count() as u64;
                        events.pending.extend(unsent.drain(..));
                    }
                    Ok(v5_incoming(event))
                }
                Err(error) => {
                    unsent.extend(events.pending.drain(..));
                    Err(v5_error(error))
                }
            },
        }
    }
}

fn v311_incoming(event: rumqttc::Event) -> Incoming {
    use rumqttc::{Event, Outgoing, Packet, SubscribeReasonCode};
    match event {
        Event::Incoming(Packet::ConnAck(ack)) => Incoming::Connected {
            session_present: ack.session_present,
        },
        Event::Incoming(Packet::Publish(p)) => Incoming::Message(Message::V311(p)),
        Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)) => Incoming::Acknowledged,
        Event::Incoming(Packet::SubAck(ack)) => Incoming::Subscribed {
            refused: ack
                .return_codes
                .iter()
                .filter(|c| matches!(c, SubscribeReasonCode::Failure))
                .count(),
        },
        Event::Outgoing(Outgoing::Disconnect) => Incoming::Disconnected,
        _ => Incoming::Other,
    }
}

fn v5_incoming(event: v5::Event) -> Incoming {
    use v5b::{Packet, SubscribeReasonCode};
    match event {
        v5::Event::Incoming(Packet::ConnAck(ack)) => Incoming::Connected {
            session_present: ack.session_present,
        },
        v5::Event::Incoming(Packet::Publish(p)) => Incoming::Message(Message::V5(Box::new(p))),
        v5::Event::Incoming(Packet::PubAck(_) | Packet::PubComp(_)) => Incoming::Acknowledged,
        v5::Event::Incoming(Packet::SubAck(ack)) => Incoming::Subscribed {
            refused: ack
                .return_codes
                .iter()
                .filter(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                .count(),
        },
        v5::Event::Outgoing(rumqttc::Outgoing::Disconnect) => Incoming::Disconnected,
        _ => Incoming::Other,
    }
}

fn v311_error(error: rumqttc::ConnectionError) -> PollError {
    use rumqttc::{ConnectReturnCode as Code, ConnectionError as E};
    match error {
        E::ConnectionRefused(Code::ServiceUnavailable) => {
            PollError::Transient("the broker is unavailable".into())
        }
        E::ConnectionRefused(code) => PollError::Refused(format!("{code:?}")),
        E::Tls(e) => PollError::Tls(e.to_string()),
        E::RequestsDone => PollError::Closed,
        e => PollError::Transient(e.to_string()),
    }
}

fn v5_error(error: v5::ConnectionError) -> PollError {
    use v5::ConnectionError as E;
    use v5b::ConnectReturnCode as Code;
    match error {
        E::ConnectionRefused(
            Code::ServiceUnavailable
            | Code::ServerUnavailable
            | Code::ServerBusy
            | Code::QuotaExceeded
            | Code::ConnectionRateExceeded,
        ) => PollError::Transient("the broker is unavailable".into()),
        E::ConnectionRefused(code) => PollError::Refused(format!("{code:?}")),
        E::Tls(e) => PollError::Tls(e.to_string()),
        E::RequestsDone => PollError::Closed,
        e => PollError::Transient(e.to_string()),
    }
}
