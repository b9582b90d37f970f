//! The state of one connection to a broker, for backoff and for logs.
//!
//! rumqttc reconnects when its event loop is polled again after an error,
//! but has no backoff of its own: polled in a loop, it would hammer a broker
//! that is down. [`Link`] says how long to wait, logs each change of state
//! once (not once per retry), and adds up the time spent disconnected. A
//! link may also give up on a broker it has never reached
//! ([`Link::give_up_after`]): for `floe simulate`, which has nothing to do
//! but publish, a broker that is not there is an error, not a wait.

use super::{EventLoop, Incoming, MqttError, PollError};
use crate::backoff::Backoff;
use crate::runtime::Shutdown;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::fmt::Display;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// Backoff between reconnection attempts: doubling from 100 ms to 30 s.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Link {
    /// The component, as logs name it (`source "trucks"`).
    what: String,
    broker: String,
    down_since: Option<Instant>,
    backoff: Backoff,
    /// Connections made, the first included.
    connects: u64,
    /// Milliseconds spent disconnected before the current connection.
    down_ms: u64,
    /// Give up when the first connection has failed for this long.
    first_connect_limit: Option<Duration>,
    created: Instant,
    /// Set to 0 when the connection fails, for `/metrics`; its user sets
    /// it to 1 once the connection is of use (a source: subscribed).
    state: Option<Gauge>,
    /// Seconds spent disconnected, added on each reconnection.
    downtime: Option<Counter<f64, AtomicU64>>,
    /// Failed attempts and dropped connections.
    failed: Option<Counter>,
}

impl Link {
    pub fn new(what: impl Into<String>, broker: impl Into<String>) -> Link {
        Link {
            what: what.into(),
            broker: broker.into(),
            down_since: None,
            backoff: Backoff::new(BACKOFF_MIN, BACKOFF_MAX),
            connects: 0,
            down_ms: 0,
            first_connect_limit: None,
            created: Instant::now(),
            state: None,
            downtime: None,
            failed: None,
        }
    }

    /// Counts each failed attempt and dropped connection on `failed`.
    pub fn counting_failures(mut self, failed: Counter) -> Link {
        self.failed = Some(failed);
        self
    }

    /// Reports a failed connection on `gauge`, and the time spent
    /// disconnected on `downtime`.
    pub fn reporting(mut self, gauge: Gauge, downtime: Counter<f64, AtomicU64>) -> Link {
        self.state = Some(gauge);
        self.downtime = Some(downtime);
        self
    }

    /// Makes [`next`](Self::next) fail once the broker has not been
    /// reached for `limit` since the link was made; `None` waits for ever.
    pub fn give_up_after(mut self, limit: Option<Duration>) -> Link {
        self.first_connect_limit = limit;
        self
    }

    pub fn connected(&mut self) {
        self.connects += 1;
        match self.down_since.take() {
            Some(since) => {
                let down = since.elapsed();
                self.down_ms += down.as_millis() as u64;
                if let Some(downtime) = &self.downtime {
                    downtime.inc_by(down.as_secs_f64());
                }
                tracing::info!(
                    "{}: reconnected to {} after {:.1}s down",
                    self.what,
                    self.broker,
                    down.as_secs_f64()
                );
            }
            None => tracing::info!("{}: connected to {}", self.what, self.broker),
        }
        self.backoff.reset();
    }

    /// Records a failed attempt or a dropped connection and returns how
    /// long to wait before the next attempt.
    pub fn failed(&mut self, error: &impl Display) -> Duration {
        if let Some(failed) = &self.failed {
            failed.inc();
        }
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            if let Some(state) = &self.state {
                state.set(0);
            }
            let was = if self.connects == 0 {
                "cannot connect to"
            } else {
                "disconnected from"
            };
            tracing::warn!(
                "{}: {was} {}: {error}; retrying with backoff",
                self.what,
                self.broker
            );
        } else {
            tracing::debug!(
                "{}: reconnect to {} failed: {error}",
                self.what,
                self.broker
            );
        }
        self.backoff.failed()
    }

    /// The component, as logs name it.
    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn broker(&self) -> &str {
        &self.broker
    }

    pub fn is_down(&self) -> bool {
        self.down_since.is_some()
    }

    /// Polls `events` until something happens, waiting out failures with
    /// backoff. `None` means the session is over: the client disconnected
    /// or closed, or `stop` was requested while the broker was away.
    pub async fn next(
        &mut self,
        events: &mut EventLoop,
        stop: &Shutdown,
    ) -> Result<Option<Incoming>, MqttError> {
        loop {
            if self.is_down() && stop.is_requested() {
                return Ok(None);
            }
            match events.poll().await {
                Ok(Incoming::Connected { session_present }) => {
                    self.connected();
                    return Ok(Some(Incoming::Connected { session_present }));
                }
                Ok(Incoming::Disconnected) | Err(PollError::Closed) => return Ok(None),
                Ok(incoming) => return Ok(Some(incoming)),
                Err(e) if e.is_fatal(self.connects > 0) => {
                    return Err(MqttError::Refused {
                        broker: self.broker.clone(),
                        reason: e.to_string(),
                    });
                }
                Err(e) => {
                    let mut wait = self.failed(&e);
                    if let Some(limit) = self.first_connect_limit.filter(|_| self.connects == 0) {
                        let tried = self.created.elapsed();
                        if tried >= limit {
                            return Err(MqttError::Unreachable {
                                broker: self.broker.clone(),
                                reason: e.to_string(),
                                secs: tried.as_secs_f64(),
                            });
                        }
                        wait = wait.min(limit - tried);
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stop.requested() => {}
                    }
                }
            }
        }
    }

    /// One line for the end of a run: how often and how long it was away.
    pub fn summary(&self) -> String {
        let ongoing = self
            .down_since
            .map_or(0, |since| since.elapsed().as_millis() as u64);
        let down = (self.down_ms + ongoing) as f64 / 1000.0;
        format!(
            "{}: {} connection(s) to {}, {down:.1}s disconnected",
            self.what, self.connects, self.broker
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let mut link = Link::new("test", "b");
        let first = link.failed(&"refused");
        assert!(first >= Duration::from_millis(100) && first < Duration::from_millis(200));
        let second = link.failed(&"refused");
        assert!(second >= Duration::from_millis(200) && second < Duration::from_millis(400));
        for _ in 0..20 {
            link.failed(&"refused");
        }
        let late = link.failed(&"refused");
        assert!(late >= Duration::from_millis(15_000) && late <= Duration::from_millis(30_000));
        assert!(link.is_down());
        link.connected();
        assert!(!link.is_down());
        assert_eq!(link.connects, 1);
        // After a success the backoff starts again from the bottom.
        assert!(link.failed(&"gone") < Duration::from_millis(200));
    }
}
