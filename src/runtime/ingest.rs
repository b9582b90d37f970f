//! A source's way into the pipeline: decode, dead-letter, route, and take
//! part in checkpoints.
//!
//! Sources only move bytes. They hand each message to their [`Ingest`],
//! which decodes it (or dead-letters it with its reason and origin) and
//! routes the event to the worker that owns its key. With a state dir, a
//! source also says where it is in its input when a checkpoint asks
//! ([`Ingest::barrier_due`], [`Ingest::barrier_blocking`]), and where a
//! restored run resumes it ([`Ingest::resume`]).

use super::checkpoint::{Barrier, Checkpoints};
use super::field_watch::FieldWatch;
use super::metrics::SourceMetrics;
use super::{Ack, DeadLetters, Metrics, Router, Shutdown};
use crate::event::decode::{self, CsvHeader, DecodeError, Decoder, Envelope};
use crate::event::{Event, Key};
use crate::state::changelog::Change;
use crate::state::codec;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::Duration;

/// How much of an oversized message the dead-letter record keeps.
const OVERSIZED_PREFIX: usize = 1024;

/// Messages between additions to a source's metrics.
const REPORT_EVERY: u64 = 256;

#[derive(Debug, Default)]
struct Unreported {
    messages: u64,
    events: u64,
    bytes: u64,
}

/// The pipeline has stopped taking events.
#[derive(Debug)]
pub struct Closed;

pub struct Ingest {
    /// Id of the source, for dead-letter records.
    pub id: Arc<str>,
    source: u16,
    decoder: Decoder,
    /// Which of the fields the pipeline reads the events have carried.
    watch: FieldWatch,
    router: Router,
    dead_letters: DeadLetters,
    run: Arc<Metrics>,
    /// This source's metrics.
    metrics: SourceMetrics,
    /// Messages and bytes not yet added to `metrics`: the counters are
    /// shared with the scraper, so they are added to in bulk.
    unreported: Unreported,
    shutdown: Shutdown,
    /// Present when the run keeps state.
    checkpoints: Option<Arc<Checkpoints>>,
    /// The last checkpoint this source looked at.
    joined: u64,
    finished: bool,
}

impl Ingest {
    pub fn new(
        id: Arc<str>,
        decoder: Decoder,
        router: Router,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        checkpoints: Option<Arc<Checkpoints>>,
    ) -> Self {
        let joined = checkpoints.as_ref().map_or(0, |c| c.requested());
        let source = router.source();
        Ingest {
            id,
            source,
            decoder,
            watch: FieldWatch::default(),
            router,
            dead_letters,
            metrics: metrics.source(source as usize),
            unreported: Unreported::default(),
            run: metrics,
            shutdown,
            checkpoints,
            joined,
            finished: false,
        }
    }

    /// Warns about the fields `watch` names that the events never carry.
    pub fn watching(mut self, watch: FieldWatch) -> Self {
        self.watch = watch;
        self
    }

    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// This source's metrics, for what only the source knows (its
    /// connection).
    pub fn metrics(&self) -> SourceMetrics {
        self.metrics.clone()
    }

    /// Counts a message received, whether or not it decodes.
    fn received<T>(&mut self, bytes: &[u8], decoded: &Result<T, DecodeError>) {
        let unreported = &mut self.unreported;
        unreported.messages += 1;
        unreported.bytes += bytes.len() as u64;
        unreported.events += u64::from(decoded.is_ok());
        if unreported.messages >= REPORT_EVERY {
            self.report();
        }
    }

    fn report(&mut self) {
        let unreported = std::mem::take(&mut self.unreported);
        self.metrics.events.inc_by(unreported.events);
        self.metrics.bytes.inc_by(unreported.bytes);
    }

    /// Decodes one JSON message (see [`Decoder::decode_message`]), noting
    /// which of the pipeline's fields its event carries.
    pub fn decode_message(
        &mut self,
        bytes: &[u8],
        envelope: &Envelope,
    ) -> Result<Event, DecodeError> {
        let decoded = self.decoder.decode_message(bytes, envelope);
        self.received(bytes, &decoded);
        if let Ok(event) = &decoded {
            self.watch.saw(event, || decode::json_field_names(bytes));
        }
        decoded
    }

    /// Decodes one CSV row (see [`Decoder::decode_csv`]), noting which of
    /// the pipeline's fields its event carries.
    pub fn decode_csv(
        &mut self,
        header: &CsvHeader,
        bytes: &[u8],
        position: u64,
    ) -> Result<Event, DecodeError> {
        let decoded = self.decoder.decode_csv(header, bytes, position);
        self.received(bytes, &decoded);
        if let Ok(event) = &decoded {
            self.watch.saw(event, || header.names().to_vec());
        }
        decoded
    }

    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.is_requested()
    }

    /// The shutdown flag, for loops that hold the `Ingest` mutably.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Whether the run keeps state (a state dir): a source then saves its
    /// position at checkpoints and acknowledges input only once durable.
    pub fn durable(&self) -> bool {
        self.checkpoints.is_some()
    }

    /// A directory of its own in the state dir, for a source that keeps
    /// files (the MQTT journal).
    pub fn state_dir(&self) -> Option<std::path::PathBuf> {
        Some(self.checkpoints.as_ref()?.source_dir(&self.id))
    }

    /// The checkpoint handle, for sources that wait on it (see
    /// [`Checkpoints::requested_after`]).
    pub fn checkpoints(&self) -> Option<Arc<Checkpoints>> {
        self.checkpoints.clone()
    }

    /// Where the restored checkpoint says this source was, as it saved it.
    /// `None` on a first run, or when the source's definition changed.
    pub fn resume<P: DeserializeOwned>(&self) -> Option<P> {
        let bytes = self.checkpoints.as_ref()?.resume(self.source as usize)?;
        match codec::decode(bytes) {
            Ok(position) => Some(position),
            Err(e) => {
                tracing::warn!(
                    "source \"{}\": saved position unreadable ({e}); starting afresh",
                    self.id
                );
                None
            }
        }
    }

    /// Dead-letters a message that could not be decoded. Blocks while the
    /// dead-letter sink is behind: rejected messages are never dropped. An
    /// oversized payload is kept only in part, so a flood of huge messages
    /// cannot exhaust memory on their way to the dead-letter sink.
    pub fn reject_blocking(
        &self,
        error: &DecodeError,
        origin: serde_json::Value,
        payload: &[u8],
    ) -> Result<(), Closed> {
        let payload = match error {
            DecodeError::TooLarge { .. } => &payload[..payload.len().min(OVERSIZED_PREFIX)],
            _ => payload,
        };
        self.metrics.decode_failures.inc();
        let reason = (error.to_string(), error.kind());
        self.dead_letters
            .send_blocking(&self.id, (&reason.0, reason.1), origin, payload)
            .map_err(|_| Closed)
    }

    /// Counts messages the broker marked as possibly delivered before.
    pub fn count_redelivered(&self, n: u64) {
        self.run.redelivered(self.source as usize, n);
    }

    /// Hands a decoded event to its worker, blocking while workers are behind.
    pub fn route_blocking(&mut self, event: Event) -> Result<(), Closed> {
        self.router.route_blocking(event).map_err(|_| Closed)
    }

    /// Sends events still batched to their workers.
    pub fn flush_blocking(&mut self) -> Result<(), Closed> {
        self.report();
        self.router.flush_blocking().map_err(|_| Closed)
    }

    /// Sends `ack` behind everything this source has handed over so far:
    /// events to their workers, rejected messages to the dead-letter sink.
    pub fn mark_blocking(&mut self, ack: Ack) -> Result<(), Closed> {
        self.router.mark_blocking(&ack).map_err(|_| Closed)?;
        self.dead_letters
            .ack_blocking(ack.share())
            .map_err(|_| Closed)?;
        ack.done();
        Ok(())
    }

    /// Whether a checkpoint waits for this source's barrier. Cheap: an
    /// atomic load, for sources to ask per message.
    pub fn barrier_due(&self) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| c.due(self.joined))
    }

    /// If a checkpoint waits for it, sends this source's barrier behind
    /// everything handed over so far, with `position`: where the source
    /// resumes if the run is restored from this checkpoint. Returns the
    /// checkpoint's number.
    pub fn barrier_blocking<P: Serialize>(&mut self, position: &P) -> Result<Option<u64>, Closed> {
        let Some(checkpoints) = self.checkpoints.clone() else {
            return Ok(None);
        };
        self.joined = checkpoints.requested();
        match checkpoints.join(self.source as usize) {
            Some(barrier) => self.send_barrier(&checkpoints, barrier, position).map(Some),
            None => Ok(None),
        }
    }

    /// The last checkpoint completed (0 before any): what it covers may be
    /// forgotten.
    pub fn checkpointed(&self) -> u64 {
        self.checkpoints.as_ref().map_or(0, |c| c.completed())
    }

    /// Asks for a checkpoint now and waits up to `patience` for it to
    /// complete, this source's barrier (at `position`) included.
    pub fn checkpoint_now_blocking<P: Serialize>(
        &mut self,
        position: &P,
        patience: Duration,
    ) -> Result<Option<u64>, Closed> {
        let Some(checkpoints) = self.checkpoints.clone() else {
            return Ok(None);
        };
        checkpoints.request_now();
        let Some(barrier) = checkpoints.join_final(self.source as usize) else {
            return Ok(None);
        };
        self.joined = barrier.seq;
        let seq = self.send_barrier(&checkpoints, barrier, position)?;
        Ok(checkpoints.wait_completed(seq, patience).then_some(seq))
    }

    fn send_barrier<P: Serialize>(
        &mut self,
        checkpoints: &Checkpoints,
        barrier: Barrier,
        position: &P,
    ) -> Result<u64, Closed> {
        let seq = barrier.seq;
        match codec::encode(position) {
            Ok(bytes) => checkpoints.position(seq, self.source as usize, bytes),
            // The barrier still goes out; without a position the source
            // starts afresh on restore, which is logged there.
            Err(e) => tracing::error!("source \"{}\": cannot save its position: {e}", self.id),
        }
        self.router.barrier_blocking(&barrier).map_err(|_| Closed)?;
        self.dead_letters
            .ack_blocking(barrier.ack.share())
            .map_err(|_| Closed)?;
        barrier.ack.done();
        Ok(seq)
    }

    /// The source is done, at `position`. At the end of its input, the
    /// workers release what they held back for ordering; when stopped
    /// (Ctrl-C) with a state dir, they keep it, and the last checkpoint
    /// (taken now) holds it for the next run.
    ///
    /// Returns the number of that last checkpoint, to wait for with
    /// [`wait_checkpointed`](Self::wait_checkpointed).
    pub fn finish_blocking<P: Serialize>(&mut self, position: &P) -> Result<Option<u64>, Closed> {
        self.report();
        self.watch.finish();
        self.router.flush_blocking().map_err(|_| Closed)?;
        let stopped = self.durable() && self.shutdown.is_requested();
        let mut last = None;
        if let Some(checkpoints) = self.checkpoints.clone()
            && let Some(barrier) = checkpoints.join_final(self.source as usize)
        {
            last = Some(self.send_barrier(&checkpoints, barrier, position)?);
        }
        self.finished = true;
        let done = self.router.finish_blocking(stopped).map_err(|_| Closed);
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.leave(self.source as usize);
        }
        done.map(|()| last)
    }

    /// The changes to this source's changelog of the checkpoints completed
    /// up to `seq`, to write before committing what they cover.
    pub fn take_changes(&self, seq: u64) -> Vec<Change> {
        (self.checkpoints.as_ref())
            .map_or_else(Vec::new, |c| c.take_changes(self.source as usize, seq))
    }

    /// The changelog did not take some changes: the next checkpoint
    /// writes every key.
    pub fn changes_lost(&self) {
        if let Some(c) = &self.checkpoints {
            c.changes_lost();
        }
    }

    /// Gives the workers the keys of partitions this source was just
    /// given (key, partition, state from its changelog).
    pub fn adopt_blocking(&mut self, keys: Vec<(Key, u32, Vec<u8>)>) -> Result<(), Closed> {
        self.router.adopt_blocking(keys).map_err(|_| Closed)
    }

    /// The workers let go of the keys of `partitions`.
    pub fn let_go_blocking(&mut self, partitions: Vec<u32>) -> Result<(), Closed> {
        self.router.let_go_blocking(partitions).map_err(|_| Closed)
    }

    /// Waits up to `patience` for checkpoint `seq` to complete.
    pub fn wait_checkpointed(&self, seq: u64, patience: Duration) -> bool {
        self.checkpoints
            .as_ref()
            .is_some_and(|c| c.wait_completed(seq, patience))
    }
}

impl Drop for Ingest {
    /// A source that failed without finishing: checkpoints stop waiting
    /// for it, and the workers hear it is gone.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        self.router.try_finish(self.durable());
        if let Some(checkpoints) = &self.checkpoints {
            checkpoints.leave(self.source as usize);
        }
    }
}
