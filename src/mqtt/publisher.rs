//! Publishing with every QoS 1 and 2 message accounted for, for the `mqtt`
//! sink and `floe simulate --to mqtt://`.
//!
//! Messages wait in a bounded buffer while the broker is away; when it is
//! full, `publish` waits, and that wait is the back-pressure that slows the
//! pipeline. Closing waits until the broker has acknowledged everything.

use super::client::{self, Client};
use super::{Connection, Incoming, Link, MqttError, QoS};
use crate::runtime::Shutdown;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// Messages the client holds for the event loop before `publish` waits.
const BUFFER: usize = 10_000;

pub struct Publisher {
    client: Client,
    /// The event loop, driven in the background; `None` once joined.
    driver: Option<JoinHandle<Result<(), MqttError>>>,
    broker: String,
    what: String,
    /// QoS 1 and 2 messages handed to the client.
    sent: u64,
    /// Of those, acknowledged by the broker.
    acked: Arc<AtomicU64>,
    /// Tells the event loop to give up reconnecting once nothing waits.
    closing: Shutdown,
}

impl Publisher {
    /// Connects in the background; `what` names the component in logs.
    pub fn start(
        connection: &Connection,
        client_id: String,
        base: &Path,
        what: String,
    ) -> Result<Publisher, MqttError> {
        let (client, events) = client::connect(connection, client_id, base, false, BUFFER)?;
        let broker = connection.broker();
        let acked = Arc::new(AtomicU64::new(0));
        let link = Link::new(what.clone(), broker.clone());
        let closing = Shutdown::default();
        let driver = tokio::spawn(drive(events, link, acked.clone(), closing.clone()));
        Ok(Publisher {
            client,
            driver: Some(driver),
            broker,
            what,
            sent: 0,
            acked,
            closing,
        })
    }

    /// Queues a message; waits while the buffer is full.
    pub async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        retain: bool,
    ) -> Result<(), MqttError> {
        let running = self.driver.as_ref().is_some_and(|d| !d.is_finished());
        if !running
            || self
                .client
                .publish(topic, qos, retain, payload)
                .await
                .is_err()
        {
            return Err(self.join().await.err().unwrap_or(MqttError::Closed));
        }
        if qos != QoS::AtMostOnce {
            self.sent += 1;
        }
        Ok(())
    }

    /// Waits until the broker has acknowledged every message, then
    /// disconnects. While the broker is away this waits for it to return,
    /// saying so every few seconds: the messages are not dropped.
    pub async fn close(mut self) -> Result<(), MqttError> {
        let _ = self.settle().await;
        // Connected, the DISCONNECT goes out after what is queued; away,
        // the event loop stops retrying.
        self.closing.request();
        self.client.try_disconnect();
        self.join().await?;
        match self.unacknowledged() {
            0 => Ok(()),
            pending => Err(MqttError::Unacknowledged {
                broker: self.broker.clone(),
                pending,
            }),
        }
    }

    /// Waits until the broker has acknowledged every message sent so far;
    /// false if the event loop ended first (`close` then says why).
    pub async fn settle(&self) -> bool {
        let mut last_said = Instant::now();
        while self.unacknowledged() > 0 && self.driver.as_ref().is_some_and(|d| !d.is_finished()) {
            if last_said.elapsed() >= Duration::from_secs(5) {
                last_said = Instant::now();
                tracing::info!(
                    "{}: waiting for {} to acknowledge {} messages",
                    self.what,
                    self.broker,
                    self.unacknowledged()
                );
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.unacknowledged() == 0
    }

    fn unacknowledged(&self) -> u64 {
        self.sent.saturating_sub(self.acked.load(Ordering::Relaxed))
    }

    /// Waits for the event loop to end, for its error.
    async fn join(&mut self) -> Result<(), MqttError> {
        match self.driver.take() {
            Some(driver) => driver.await.unwrap_or(Err(MqttError::Closed)),
            None => Err(MqttError::Closed),
        }
    }
}

/// Polls a publisher's event loop until it disconnects, counting acks.
/// While messages wait for the broker it keeps reconnecting; `closing` is
/// requested only once none does.
async fn drive(
    mut events: client::EventLoop,
    mut link: Link,
    acked: Arc<AtomicU64>,
    closing: Shutdown,
) -> Result<(), MqttError> {
    while let Some(incoming) = link.next(&mut events, &closing).await? {
        if let Incoming::Acknowledged = incoming {
            acked.fetch_add(1, Ordering::Relaxed);
        }
    }
    tracing::info!("{}", link.summary());
    Ok(())
}
