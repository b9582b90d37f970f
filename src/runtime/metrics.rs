//! Counters of what a running pipeline has done.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Pipeline-wide counters. Workers add per batch, not per event, so the
/// shared cache lines are touched rarely.
#[derive(Debug, Default)]
pub struct Metrics {
    events: AtomicU64,
    late: AtomicU64,
    dead_letters: AtomicU64,
    alerts: AtomicU64,
    outputs: AtomicU64,
    redelivered: AtomicU64,
    forgotten: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_bytes: AtomicU64,
    refused: AtomicU64,
    held: AtomicU64,
}

/// A point-in-time copy of [`Metrics`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Events decoded and processed by operators.
    pub events: u64,
    /// Events dropped from processing for arriving too late (and dead-lettered).
    pub late: u64,
    /// Messages dead-lettered, late ones included.
    pub dead_letters: u64,
    pub alerts: u64,
    /// Operator output events (window results) sent to sinks.
    pub outputs: u64,
    /// Messages a broker delivered again, as far as it said so (MQTT's
    /// DUP flag): possible duplicates of events already processed.
    pub redelivered: u64,
    /// Keys forgotten after `idle_timeout`.
    pub forgotten: u64,
    /// Checkpoints completed, and the bytes of state they wrote.
    pub checkpoints: u64,
    pub checkpoint_bytes: u64,
    /// Events of new keys dead-lettered because of `max_keys`.
    pub refused: u64,
    /// Events still held back for ordering when a run with a state dir
    /// stopped: in its last checkpoint, for the next run.
    pub held: u64,
}

impl Metrics {
    pub fn add(&self, delta: &Snapshot) {
        self.events.fetch_add(delta.events, Relaxed);
        self.late.fetch_add(delta.late, Relaxed);
        self.alerts.fetch_add(delta.alerts, Relaxed);
        self.outputs.fetch_add(delta.outputs, Relaxed);
        self.forgotten.fetch_add(delta.forgotten, Relaxed);
        self.refused.fetch_add(delta.refused, Relaxed);
        self.held.fetch_add(delta.held, Relaxed);
    }

    pub fn dead_letter(&self) {
        self.dead_letters.fetch_add(1, Relaxed);
    }

    pub fn checkpointed(&self, bytes: u64) {
        self.checkpoints.fetch_add(1, Relaxed);
        self.checkpoint_bytes.fetch_add(bytes, Relaxed);
    }

    pub fn redelivered(&self, n: u64) {
        self.redelivered.fetch_add(n, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            events: self.events.load(Relaxed),
            late: self.late.load(Relaxed),
            dead_letters: self.dead_letters.load(Relaxed),
            alerts: self.alerts.load(Relaxed),
            outputs: self.outputs.load(Relaxed),
            redelivered: self.redelivered.load(Relaxed),
            forgotten: self.forgotten.load(Relaxed),
            checkpoints: self.checkpoints.load(Relaxed),
            checkpoint_bytes: self.checkpoint_bytes.load(Relaxed),
            refused: self.refused.load(Relaxed),
            held: self.held.load(Relaxed),
        }
    }
}
