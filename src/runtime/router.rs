//! Routing events to the worker that owns their key.
//!
//! All events of one key go to one worker, over one FIFO channel, so they are
//! processed in order without locks; keys spread over the workers by hash.
//! Events travel in batches to keep the per-event cost of the channel low.

use super::Ack;
use super::checkpoint::Barrier;
use crate::event::{Event, Key};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// Events per batch sent to a worker.
pub const BATCH: usize = 512;

/// What a worker receives. Each message is from one source (by number);
/// each source's messages arrive in the order it sent them.
#[derive(Debug)]
pub enum WorkerMsg {
    /// Events, and when the first of them reached the router: alerts'
    /// latency is measured from then.
    Events(u16, Vec<Event>, Instant),
    /// The source is done. At the end of its input, what was held back for
    /// its ordering is released; when `stopped` (a shutdown with a state
    /// dir), it stays, for the last checkpoint.
    Done { source: u16, stopped: bool },
    /// Pass the acknowledgement on once what came before is processed;
    /// note the events of the source still held back.
    Mark(u16, Ack),
    /// Checkpoint `seq`: once this has come from every running source,
    /// save the keys, then pass the acknowledgement on.
    Barrier {
        source: u16,
        seq: u64,
        full: bool,
        ack: Ack,
    },
    /// Keys of partitions the source was given, with their state from its
    /// changelog (key, partition, state), before any event of them.
    Adopt(u16, Vec<(Key, u32, Vec<u8>)>),
    /// The source's partitions given to another instance: let their keys go.
    LetGo(u16, Arc<[u32]>),
}

impl WorkerMsg {
    pub fn source(&self) -> usize {
        let source = match self {
            WorkerMsg::Events(source, ..) | WorkerMsg::Mark(source, _) => source,
            WorkerMsg::Done { source, .. } | WorkerMsg::Barrier { source, .. } => source,
            WorkerMsg::Adopt(source, _) | WorkerMsg::LetGo(source, _) => source,
        };
        *source as usize
    }
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
    /// Per batch: when its first event came.
    arrived: Vec<Instant>,
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
            arrived: vec![Instant::now(); workers.len()],
            workers,
            batches,
            source,
        }
    }

    pub fn route_blocking(&mut self, event: Event) -> Result<(), Closed> {
        let w = worker_for(&event.key, self.workers.len());
        if self.batches[w].is_empty() {
            self.arrived[w] = Instant::now();
        }
        self.batches[w].push(event);
        if self.batches[w].len() >= BATCH {
            self.send_blocking(w)?;
        }
        Ok(())
    }

    pub fn flush_blocking(&mut self) -> Result<(), Closed> {
        (0..self.workers.len()).try_for_each(|w| self.send_blocking(w))
    }

    /// The source number this router sends for.
    pub fn source(&self) -> u16 {
        self.source
    }

    pub fn finish_blocking(&mut self, stopped: bool) -> Result<(), Closed> {
        self.flush_blocking()?;
        let source = self.source;
        self.to_all(|| WorkerMsg::Done { source, stopped })
    }

    /// As [`finish_blocking`](Self::finish_blocking) without waiting, for
    /// a source that failed: what is batched is lost with it.
    pub fn try_finish(&mut self, stopped: bool) {
        let source = self.source;
        for worker in self.workers.iter() {
            let _ = worker.try_send(WorkerMsg::Done { source, stopped });
        }
    }

    /// Sends a checkpoint barrier to every worker, behind the events
    /// routed so far.
    pub fn barrier_blocking(&mut self, barrier: &Barrier) -> Result<(), Closed> {
        self.flush_blocking()?;
        let source = self.source;
        self.to_all(|| WorkerMsg::Barrier {
            source,
            seq: barrier.seq,
            full: barrier.full,
            ack: barrier.ack.share(),
        })
    }

    /// Hands each worker the keys it owns of `keys` (key, partition,
    /// state), behind the events routed so far.
    pub fn adopt_blocking(&mut self, keys: Vec<(Key, u32, Vec<u8>)>) -> Result<(), Closed> {
        self.flush_blocking()?;
        let mut shares: Vec<Vec<_>> = (0..self.workers.len()).map(|_| Vec::new()).collect();
        for entry in keys {
            shares[worker_for(&entry.0, self.workers.len())].push(entry);
        }
        for (worker, share) in self.workers.iter().zip(shares) {
            if !share.is_empty() {
                let msg = WorkerMsg::Adopt(self.source, share);
                worker.blocking_send(msg).map_err(|_| Closed)?;
            }
        }
        Ok(())
    }

    /// Tells every worker to let go of the keys of `partitions`, behind
    /// the events routed so far.
    pub fn let_go_blocking(&mut self, partitions: Vec<u32>) -> Result<(), Closed> {
        self.flush_blocking()?;
        let partitions: Arc<[u32]> = partitions.into();
        self.to_all(|| WorkerMsg::LetGo(self.source, partitions.clone()))
    }

    fn to_all(&self, msg: impl Fn() -> WorkerMsg) -> Result<(), Closed> {
        for worker in self.workers.iter() {
            worker.blocking_send(msg()).map_err(|_| Closed)?;
        }
        Ok(())
    }

    /// Sends a share of `ack` to every worker, behind the events routed
    /// so far.
    pub fn mark_blocking(&mut self, ack: &Ack) -> Result<(), Closed> {
        self.flush_blocking()?;
        self.to_all(|| WorkerMsg::Mark(self.source, ack.share()))
    }

    fn send_blocking(&mut self, w: usize) -> Result<(), Closed> {
        if self.batches[w].is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batches[w], Vec::with_capacity(BATCH));
        self.workers[w]
            .blocking_send(WorkerMsg::Events(self.source, batch, self.arrived[w]))
            .map_err(|_| Closed)
    }
}
