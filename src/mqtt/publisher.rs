//! Publishing with every QoS 1 and 2 message accounted for, for the `mqtt`
//! sink and `floe simulate --to mqtt://`.
//!
//! Messages wait in a bounded buffer while the broker is away; when it is
//! full, `publish` waits, and that wait is the back-pressure that slows the
//! pipeline. Closing waits until the broker has acknowledged everything,
//! unless the caller's [`Patience`] says when to stop waiting.

use super::client::{self, Client};
use super::{Connection, Incoming, Link, MqttError, QoS};
use crate::runtime::{Shutdown, SinkMetrics};
use prometheus_client::metrics::counter::Counter;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Messages the client holds for the event loop before `publish` waits.
const BUFFER: usize = 10_000;

/// After a stop, how long acknowledgements from a connected broker are
/// still waited for: a broker that is there answers in milliseconds.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// How long a publisher waits for its broker. The default waits for ever,
/// as a sink does: its broker may come up after floe, and the alerts wait.
#[derive(Clone, Default)]
pub struct Patience {
    /// Give up when the first connection has failed for this long.
    pub first_connect: Option<Duration>,
    /// Once requested, nothing waits for a broker that is away, and a
    /// connected one gets [`STOP_GRACE`] to acknowledge what it has.
    pub stop: Option<Shutdown>,
}

pub struct Publisher {
    client: Client,
    /// The event loop, driven in the background; `None` once joined.
    driver: Option<JoinHandle<Result<(), MqttError>>>,
    broker: String,
    what: String,
    /// QoS 1 and 2 messages handed to the client.
    sent: u64,
    seen: Arc<Seen>,
    /// Tells the event loop to give up reconnecting once nothing waits.
    closing: Shutdown,
    stop: Option<Shutdown>,
}

/// What the event loop has seen, for the publisher to read.
#[derive(Default)]
struct Seen {
    /// QoS 1 and 2 messages acknowledged by the broker.
    acked: AtomicU64,
    /// A connection was made, at least once.
    connected: AtomicBool,
}

impl Publisher {
    /// Connects in the background; `what` names the component in logs.
    pub fn start(
        connection: &Connection,
        client_id: String,
        base: &Path,
        what: String,
        patience: Patience,
        metrics: SinkMetrics,
    ) -> Result<Publisher, MqttError> {
        let (client, events) = client::connect(connection, client_id, base, false, BUFFER)?;
        let broker = connection.broker();
        let seen = Arc::new(Seen::default());
        let link = Link::new(what.clone(), broker.clone())
            .give_up_after(patience.first_connect)
            .counting_failures(metrics.failures);
        let closing = Shutdown::default();
        if let Some(stop) = patience.stop.clone() {
            // A stop ends the retrying at once, as closing does.
            let closing = closing.clone();
            tokio::spawn(async move {
                stop.requested().await;
                closing.request();
            });
        }
        let driver = tokio::spawn(drive(
            events,
            link,
            seen.clone(),
            closing.clone(),
            metrics.retries,
        ));
        Ok(Publisher {
            client,
            driver: Some(driver),
            broker,
            what,
            sent: 0,
            seen,
            closing,
            stop: patience.stop,
        })
    }

    /// Queues a message; waits while the buffer is full. Fails with
    /// [`MqttError::Stopped`] if the caller's stop comes first.
    pub async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), MqttError> {
        let running = self.driver.as_ref().is_some_and(|d| !d.is_finished());
        let queued = match running {
            true => tokio::select! {
                queued = self.client.publish(topic, qos, retain, payload) => queued.is_ok(),
                () = stopped(&self.stop) => return Err(MqttError::Stopped),
            },
            false => false,
        };
        if !queued {
            // A stop ends the event loop too; whichever the select saw
            // first, the caller asked for this.
            if self.stop.as_ref().is_some_and(Shutdown::is_requested) {
                return Err(MqttError::Stopped);
            }
            return Err(self.join().await.err().unwrap_or(MqttError::Closed));
        }
        if qos != QoS::AtMostOnce {
            self.sent += 1;
        }
        Ok(())
    }

    /// Waits until the broker has acknowledged every message, then
    /// disconnects. While the broker is away this waits for it to return,
    /// saying so every few seconds: the messages are not dropped (unless
    /// the caller's stop says to give up).
    pub async fn close(mut self) -> Result<(), MqttError> {
        let settled = self.settle().await;
        // Connected, the DISCONNECT goes out after what is queued; away,
        // the event loop stops retrying.
        self.closing.request();
        self.client.try_disconnect();
        if !settled
            && self.stop.as_ref().is_some_and(Shutdown::is_requested)
            && let Some(driver) = &self.driver
        {
            // Given up: what is queued would go out at the broker's pace.
            driver.abort();
        }
        self.join().await?;
        match self.unacknowledged() {
            0 => Ok(()),
            pending if !self.seen.connected.load(Ordering::Relaxed) => {
                Err(MqttError::NeverReached {
                    broker: self.broker.clone(),
                    pending,
                })
            }
            pending => Err(MqttError::Unacknowledged {
                broker: self.broker.clone(),
                pending,
            }),
        }
    }

    /// Waits until the broker has acknowledged every message sent so far;
    /// false if the event loop ended first (`close` then says why), or
    /// the caller's stop gave up on the broker.
    pub async fn settle(&self) -> bool {
        tokio::select! {
            () = self.acknowledged() => {}
            () = self.given_up() => {}
        }
        self.unacknowledged() == 0
    }

    async fn acknowledged(&self) {
        let mut last_said = Instant::now();
        while self.unacknowledged() > 0 && self.driver.as_ref().is_some_and(|d| !d.is_finished()) {
            if last_said.elapsed() >= Duration::from_secs(5) {
                last_said = Instant::now();
                let waiting = match self.seen.connected.load(Ordering::Relaxed) {
                    true => "to acknowledge",
                    false => "to be reached to send",
                };
                tracing::info!(
                    "{}: waiting for {} {waiting} {} messages",
                    self.what,
                    self.broker,
                    self.unacknowledged()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Resolves once the caller's stop says to wait no longer: at once for
    /// a broker never reached, after [`STOP_GRACE`] for one that was.
    async fn given_up(&self) {
        stopped(&self.stop).await;
        if self.seen.connected.load(Ordering::Relaxed) {
            tokio::time::sleep(STOP_GRACE).await;
        }
    }

    fn unacknowledged(&self) -> u64 {
        self.sent
            .saturating_sub(self.seen.acked.load(Ordering::Relaxed))
    }

    /// Waits for the event loop to end, for its error; an aborted one
    /// ends without one.
    async fn join(&mut self) -> Result<(), MqttError> {
        match self.driver.take() {
            Some(driver) => match driver.await {
                Ok(result) => result,
                Err(e) if e.is_cancelled() => Ok(()),
                Err(_) => Err(MqttError::Closed),
            },
            None => Err(MqttError::Closed),
        }
    }
}

/// Resolves when `stop` is requested; never without one.
async fn stopped(stop: &Option<Shutdown>) {
    match stop {
        Some(stop) => stop.requested().await,
        None => std::future::pending().await,
    }
}

/// Polls a publisher's event loop until it disconnects, counting acks.
/// While messages wait for the broker it keeps reconnecting; `closing` is
/// requested only once none does.
async fn drive(
    mut events: client::EventLoop,
    mut link: Link,
    seen: Arc<Seen>,
    closing: Shutdown,
    retries: Counter,
) -> Result<(), MqttError> {
    let mut resent = 0;
    while let Some(incoming) = link.next(&mut events, &closing).await? {
        match incoming {
            Incoming::Acknowledged => {
                seen.acked.fetch_add(1, Ordering::Relaxed);
            }
            Incoming::Connected { .. } => {
                seen.connected.store(true, Ordering::Relaxed);
                retries.inc_by(events.resent() - resent);
                resent = events.resent();
            }
            _ => {}
        }
    }
    tracing::info!("{}", link.summary());
    Ok(())
}
