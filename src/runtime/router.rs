//! Routing events to the worker that owns their key.
//!
//! All events of one key go to one worker, over one FIFO channel, so they are
//! processed in order without locks; keys spread over the workers by hash.
//! Events travel in batches to keep the per-event cost of the channel low.

use super::Ack;
use crate::event::{Event, Key};
use std::hash::BuildHasher;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Events per batch sent to a worker.
pub const BATCH: usize = 512;

/// What a worker receives.
#[derive(Debug)]
pub enum WorkerMsg {
    Events(Vec<Event>),
    /// Source number `n` has ended: release what was held for its ordering.
    SourceEnded(u16),
    /// Pass the acknowledgement on once what came before is processed;
    /// note the events of source `n` still held back.
    Mark(u16, Ack),
}

/// The worker that owns `key`, out of `workers`. Stable for a given key and
/// worker count, which is what lets a later version move keyed state.
pub fn worker_for(key: &Key, workers: usize) -> usize {
    // The high bits of FxHash mix better than the low ones.
    ((rustc_hash::FxBuildHasher.hash_one(key.as_str()) >> 32) as usize) % workers
}

/// One source's handle on the workers' channels, with its pending batches.
pub struct Router {
    workers: Arc<[mpsc::Sender<WorkerMsg>]>,
    batches: Vec<Vec<Event>>,
    source: u16,
}

/// The workers have stopped.
#[derive(Debug)]
pub struct Closed;

impl Router {
    pub fn new(workers: Arc<[mpsc::Sender<WorkerMsg>]>, source: u16) -> Self {
        let batches = (0..workers.len())
            .map(|_| Vec::with_capacity(BATCH))
            .collect();
        Router {
            workers,
            batches,
            source,
        }
    }

    pub fn route_blocking(&mut self, event: Event) -> Result<(), Closed> {
        let w = worker_for(&event.key, self.workers.len());
        self.batches[w].push(event);
        if self.batches[w].len() >= BATCH {
            self.send_blocking(w)?;
        }
        Ok(())
    }

    pub fn flush_blocking(&mut self) -> Result<(), Closed> {
        (0..self.workers.len()).try_for_each(|w| self.send_blocking(w))
    }

    pub fn finish_blocking(&mut self) -> Result<(), Closed> {
        self.flush_blocking()?;
        for worker in self.workers.iter() {
            worker
                .blocking_send(WorkerMsg::SourceEnded(self.source))
                .map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Sends a share of `ack` to every worker, behind the events routed
    /// so far.
    pub fn mark_blocking(&mut self, ack: &Ack) -> Result<(), Closed> {
        self.flush_blocking()?;
        for worker in self.workers.iter() {
            worker
                .blocking_send(WorkerMsg::Mark(self.source, ack.share()))
                .map_err(|_| Closed)?;
        }
        Ok(())
    }

    fn send_blocking(&mut self, w: usize) -> Result<(), Closed> {
        if self.batches[w].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batches[w], Vec::with_capacity(BATCH));
        self.workers[w]
            .blocking_send(WorkerMsg::Events(batch))
            .map_err(|_| Closed)
    }
}
