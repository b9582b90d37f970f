//! The dead-letter channel: every message the pipeline could not use, with
//! why and where it came from.
//!
//! Records look like:
//! `{"received_at":"...","source":"trucks","reason":"bad JSON: ...","origin":{"path":"x.jsonl","line":17},"payload":"..."}`.
//! A payload that is not UTF-8 is kept as `payload_base64` instead.

use crate::event::{Key, time};
use crate::runtime::Ack;
use crate::sinks::{Batch, LinesSink, Record, Sink};
use base64::Engine;
use std::io::BufWriter;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The default when a pipeline names no `dead_letter`: JSON lines on stderr,
/// so a rejected message is never silently gone.
pub fn stderr_sink() -> Box<dyn Sink> {
    let out = BufWriter::new(std::io::stderr());
    Box::new(LinesSink::new("stderr", Box::new(out)))
}

/// A handle to send dead letters; cheap to clone.
#[derive(Clone)]
pub struct DeadLetters {
    tx: mpsc::Sender<Batch>,
    metrics: Arc<crate::runtime::Metrics>,
}

/// The dead-letter sink has stopped; the pipeline is going down.
#[derive(Debug)]
pub struct Closed;

impl DeadLetters {
    pub fn new(tx: mpsc::Sender<Batch>, metrics: Arc<crate::runtime::Metrics>) -> Self {
        DeadLetters { tx, metrics }
    }

    /// Records a rejected message, waiting while the sink is behind.
    /// `kind` names the reason in metrics (`bad_json`, `late`, ...).
    pub fn send_blocking(
        &self,
        source: &str,
        (reason, kind): (&str, &'static str),
        origin: serde_json::Value,
        payload: &[u8],
    ) -> Result<(), Closed> {
        let record = self.record(source, (reason, kind), origin, payload);
        self.tx
            .blocking_send(Batch::new(vec![record]))
            .map_err(|_| Closed)
    }

    /// As [`send_blocking`](Self::send_blocking), from async code.
    pub async fn send(
        &self,
        source: &str,
        (reason, kind): (&str, &'static str),
        origin: serde_json::Value,
        payload: &[u8],
    ) -> Result<(), Closed> {
        let record = self.record(source, (reason, kind), origin, payload);
        self.tx
            .send(Batch::new(vec![record]))
            .await
            .map_err(|_| Closed)
    }

    /// Sends an acknowledgement behind the dead letters sent so far.
    pub fn ack_blocking(&self, ack: Ack) -> Result<(), Closed> {
        let batch = Batch {
            records: Vec::new(),
            acks: vec![ack],
        };
        self.tx.blocking_send(batch).map_err(|_| Closed)
    }

    /// As [`ack_blocking`](Self::ack_blocking), from async code.
    pub async fn ack(&self, ack: Ack) -> Result<(), Closed> {
        let batch = Batch {
            records: Vec::new(),
            acks: vec![ack],
        };
        self.tx.send(batch).await.map_err(|_| Closed)
    }

    fn record(
        &self,
        source: &str,
        (reason, kind): (&str, &'static str),
        origin: serde_json::Value,
        payload: &[u8],
    ) -> Arc<Record> {
        self.metrics.dead_letter(source, kind);
        let mut json = serde_json::json!({
            "received_at": time::format_rfc3339(time::now_ms()),
            "source": source,
            "reason": reason,
            "origin": origin,
        });
        match std::str::from_utf8(payload) {
            Ok(text) => json["payload"] = text.into(),
            Err(_) => {
                json["payload_base64"] = base64::engine::general_purpose::STANDARD
                    .encode(payload)
                    .into()
            }
        }
        Arc::new(Record {
            line: json.to_string(),
            key: Key::default(),
            component: source.into(),
            is_alert: false,
            suppressed: false,
        })
    }
}
