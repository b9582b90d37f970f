//! Acknowledgements that follow a source's events through the pipeline.
//!
//! A source that can read its input again (Kafka) may forget what it read
//! only once the effects are safe: every event processed, every output
//! written by every sink. To learn when, it sends an [`Ack`] behind its
//! events. The router hands a share to every worker; a worker, once it has
//! processed what came before, hands shares to every sink and to the
//! dead-letter sink; a sink gives its share back once the records before it
//! are durable (a file flushed, a broker's acknowledgement received). When
//! the last share is given back, the source hears [`Settled`].
//!
//! Every channel on the way is FIFO, so when mark N is settled, every mark
//! before it is too. A share dropped without [`Ack::done`] (a sink failed,
//! the run is going down) makes the whole mark incomplete: the source must
//! not forget anything on its account.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One holder's share of a mark.
#[derive(Debug)]
pub struct Ack {
    shared: Arc<Shared>,
    done: bool,
}

#[derive(Debug)]
struct Shared {
    seq: u64,
    incomplete: AtomicBool,
    /// Per partition: the lowest position of an event a worker still holds
    /// back for ordering, so not yet processed.
    held: Mutex<BTreeMap<u32, u64>>,
    settled: mpsc::Sender<Settled>,
}

/// What a source hears when every share of its mark is given back.
#[derive(Debug)]
pub struct Settled {
    pub seq: u64,
    /// False if some share was dropped without being done.
    pub complete: bool,
    /// Per partition, the lowest position still held back by a worker:
    /// events from there on were not processed yet.
    pub held: BTreeMap<u32, u64>,
}

impl Ack {
    /// The first share of mark `seq`; `settled` hears when the last share
    /// is given back.
    pub fn new(seq: u64, settled: mpsc::Sender<Settled>) -> Ack {
        Ack {
            shared: Arc::new(Shared {
                seq,
                incomplete: AtomicBool::new(false),
                held: Mutex::new(BTreeMap::new()),
                settled,
            }),
            done: false,
        }
    }

    /// Another share of the same mark, for one more holder.
    pub fn share(&self) -> Ack {
        Ack {
            shared: self.shared.clone(),
            done: false,
        }
    }

    pub fn seq(&self) -> u64 {
        self.shared.seq
    }

    /// Gives this share back: what came before it is safe here.
    pub fn done(mut self) {
        self.done = true;
    }

    /// Notes that the event at `position` of `partition` is held back.
    pub fn hold(&self, partition: u32, position: u64) {
        let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
        let lowest = held.entry(partition).or_insert(position);
        *lowest = (*lowest).min(position);
    }
}

impl Drop for Ack {
    fn drop(&mut self) {
        if !self.done {
            self.shared.incomplete.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let held = std::mem::take(self.held.get_mut().unwrap_or_else(|e| e.into_inner()));
        let _ = self.settled.send(Settled {
            seq: self.seq,
            complete: !self.incomplete.load(Ordering::Relaxed),
            held,
        });
    }
}

/// A source's side: makes numbered marks and hears them settle.
pub struct Marks {
    next: u64,
    tx: mpsc::Sender<Settled>,
    rx: mpsc::Receiver<Settled>,
}

impl Default for Marks {
    fn default() -> Self {
        let (tx, rx) = mpsc::channel();
        Marks { next: 0, tx, rx }
    }
}

impl Marks {
    /// A new mark, numbered one above the last.
    pub fn mark(&mut self) -> Ack {
        self.next += 1;
        Ack::new(self.next, self.tx.clone())
    }

    /// A mark settled since the last call, if any; never waits.
    pub fn try_settled(&self) -> Option<Settled> {
        self.rx.try_recv().ok()
    }

    /// Waits up to `patience` for mark `seq` (or a later one) to settle,
    /// and returns it.
    pub fn wait(&self, seq: u64, patience: Duration) -> Option<Settled> {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let settled = self.rx.recv_timeout(left).ok()?;
            if settled.seq >= seq {
                return Some(settled);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settles_when_the_last_share_is_done() {
        let mut marks = Marks::default();
        let ack = marks.mark();
        let (a, b) = (ack.share(), ack.share());
        ack.done();
        a.hold(3, 40);
        b.hold(3, 17);
        a.done();
        assert!(marks.try_settled().is_none());
        b.done();
        let settled = marks.try_settled().unwrap();
        assert_eq!((settled.seq, settled.complete), (1, true));
        assert_eq!(settled.held.get(&3), Some(&17));
    }

    #[test]
    fn a_share_dropped_unfinished_makes_the_mark_incomplete() {
        let mut marks = Marks::default();
        let ack = marks.mark();
        let lost = ack.share();
        ack.done();
        drop(lost);
        let settled = marks.wait(1, Duration::from_secs(1)).unwrap();
        assert!(!settled.complete);
    }
}
