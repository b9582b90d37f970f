//! A worker: owns a share of the keys and runs the whole operator graph for
//! them.
//!
//! Every operator is keyed by the same entity key, so one key's events and
//! everything derived from them stay on one worker: an event goes through
//! the graph depth-first, synchronously, with no channel between operators.
//!
//! With a state dir the worker also takes part in checkpoints: once a
//! checkpoint's barrier has come from every running source it saves the
//! keys that changed (see [`snapshot`]). A source's messages that
//! arrive after its barrier wait until then (barrier alignment), so the
//! saved state is exactly what the events before the barriers made.

mod core;
mod snapshot;

pub use core::{BoardNews, Core, KeyCounts, Rejection};

use super::Ack;
use super::checkpoint::Checkpoints;
use super::dataflow::Dataflow;
use super::metrics::Metrics;
use super::router::WorkerMsg;
use crate::event::time;
use crate::runtime::DeadLetters;
use crate::sinks::Batch;
use core::TICK_MS;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio::sync::mpsc;

/// A sink stopped taking records; the run is failing.
#[derive(Debug)]
pub struct SinkGone;

pub struct Worker {
    flow: Arc<Dataflow>,
    core: Core,
    /// This worker's number.
    index: usize,
    sinks: Vec<mpsc::Sender<Batch>>,
    dead_letters: DeadLetters,
    metrics: Arc<Metrics>,
    /// Wall clock minus the latest event time, in seconds.
    lag: Gauge<f64, AtomicU64>,
    checkpoints: Option<Arc<Checkpoints>>,
    /// Per source: `Some(stopped)` once it is done.
    done: Vec<Option<bool>>,
    /// The checkpoint whose barriers are arriving.
    aligning: Option<Aligning>,
    /// Per source: its messages that came after its barrier.
    behind: Vec<VecDeque<WorkerMsg>>,
    /// Messages released by a completed alignment, handled before the
    /// channel's.
    released: VecDeque<WorkerMsg>,
}

struct Aligning {
    seq: u64,
    full: bool,
    /// Per source: its barrier has come.
    reached: Vec<bool>,
    ack: Option<Ack>,
}

impl Worker {
    pub fn new(
        flow: Arc<Dataflow>,
        core: Core,
        index: usize,
        sinks: Vec<mpsc::Sender<Batch>>,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
        checkpoints: Option<Arc<Checkpoints>>,
    ) -> Self {
        let sources = flow.sources;
        Worker {
            flow,
            core,
            index,
            sinks,
            dead_letters,
            lag: metrics.event_time_lag(index),
            metrics,
            checkpoints,
            done: vec![None; sources],
            aligning: None,
            behind: (0..sources).map(|_| VecDeque::new()).collect(),
            released: VecDeque::new(),
        }
    }

    /// Processes messages until every source has hung up, then flushes
    /// what the operators still hold (open windows), unless a source was
    /// stopped with its state kept for the next run.
    pub async fn run(mut self, mut rx: mpsc::Receiver<WorkerMsg>) -> Result<(), SinkGone> {
        let wall_clock = self.flow.live && self.core.ticks(&self.flow);
        let mut ticker = tokio::time::interval(std::time::Duration::from_millis(TICK_MS as u64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let msg = match self.released.pop_front() {
                Some(msg) => msg,
                None => tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(msg) => msg,
                        None => break,
                    },
                    _ = ticker.tick(), if wall_clock => {
                        self.core.tick(&self.flow, time::now_ms());
                        self.flush(None).await?;
                        continue;
                    }
                },
            };
            self.handle(msg).await?;
        }
        // The sources are gone mid-checkpoint (the run is failing): what
        // waited behind barriers is still processed.
        self.aligning = None;
        for msg in self
            .behind
            .iter_mut()
            .flat_map(|q| q.drain(..))
            .collect::<Vec<_>>()
        {
            self.handle(msg).await?;
        }
        match self.done.contains(&Some(true)) {
            true => self.core.counts.held = self.core.held(),
            false => self.core.end(&self.flow),
        }
        self.flush(None).await
    }

    async fn handle(&mut self, msg: WorkerMsg) -> Result<(), SinkGone> {
        let source = msg.source();
        if self.aligning.as_ref().is_some_and(|a| a.reached[source]) {
            self.behind[source].push_back(msg);
            return Ok(());
        }
        match msg {
            WorkerMsg::Events(_, batch, arrived) => {
                self.core.now = time::now_ms();
                let alerts = self.core.counts.alerts;
                for event in batch {
                    self.core.accept(&self.flow, event);
                }
                if !self.flow.live {
                    self.core.tick_event_time(&self.flow);
                }
                let latency = arrived.elapsed();
                for _ in alerts..self.core.counts.alerts {
                    self.metrics.emitted(latency);
                }
                if self.core.clock != i64::MIN {
                    let lag = self.core.now.saturating_sub(self.core.clock);
                    self.lag.set(lag as f64 / 1000.0);
                }
            }
            WorkerMsg::Done { stopped, .. } => {
                if !stopped {
                    self.core.source_ended(&self.flow, source);
                }
                self.done[source] = Some(stopped);
                self.flush(None).await?;
                return self.align().await;
            }
            WorkerMsg::Mark(_, ack) => {
                self.core.note_held(source, &ack);
                self.flush(Some(&ack)).await?;
                ack.done();
                return Ok(());
            }
            WorkerMsg::Adopt(_, keys) => self.core.adopt(&self.flow, source as u16, keys),
            WorkerMsg::LetGo(_, partitions) => self.core.let_go(source as u16, &partitions),
            WorkerMsg::Barrier { seq, full, ack, .. } => {
                let sources = self.flow.sources;
                let aligning = self.aligning.get_or_insert_with(|| Aligning {
                    seq,
                    full,
                    reached: vec![false; sources],
                    ack: None,
                });
                aligning.reached[source] = true;
                match &aligning.ack {
                    Some(_) => ack.done(),
                    None => aligning.ack = Some(ack),
                }
                return self.align().await;
            }
        }
        self.flush(None).await
    }

    /// Completes the checkpoint being aligned once every source still
    /// running has sent its barrier: saves the changed keys, passes the
    /// acknowledgement on behind what they produced, and releases what
    /// waited behind the barriers.
    async fn align(&mut self) -> Result<(), SinkGone> {
        let Some(aligning) = &self.aligning else {
            return Ok(());
        };
        let all_in = (aligning.reached.iter().zip(&self.done)).all(|(r, d)| *r || d.is_some());
        if !all_in {
            return Ok(());
        }
        let Some(Aligning { seq, full, ack, .. }) = self.aligning.take() else {
            return Ok(());
        };
        if let (Some(ack), Some(checkpoints)) = (ack, self.checkpoints.clone()) {
            self.save(&checkpoints, seq, full, &ack);
            self.flush(Some(&ack)).await?;
            ack.done();
        }
        for queue in &mut self.behind {
            self.released.extend(queue.drain(..));
        }
        Ok(())
    }

    /// Writes this worker's part of checkpoint `seq`. A failure abandons
    /// the checkpoint (the share of `ack` is dropped), not the run.
    fn save(&mut self, checkpoints: &Checkpoints, seq: u64, full: bool, ack: &Ack) {
        checkpoints.clock(seq, self.index, self.core.timer_clock());
        match self.core.snapshot(&self.flow, full) {
            Ok(snapshot) => {
                if let Some(segment) = snapshot.segment {
                    checkpoints.write_segment(seq, self.index, segment, ack.share());
                }
                checkpoints.changes(seq, snapshot.changes);
            }
            Err(e) => {
                tracing::error!("checkpoint {seq}: worker {}: {e}", self.index);
                drop(ack.share());
            }
        }
    }

    /// Sends what the last batch produced, and shares of `ack` behind it.
    /// Waits while a sink is behind: that wait is the back-pressure that
    /// slows the sources.
    async fn flush(&mut self, ack: Option<&Ack>) -> Result<(), SinkGone> {
        for (i, (sink, records)) in self.sinks.iter().zip(&mut self.core.outbox).enumerate() {
            if !records.is_empty() || ack.is_some() {
                let batch = Batch {
                    records: std::mem::take(records),
                    acks: ack.iter().map(|a| a.share()).collect(),
                };
                let sent = batch.records.len();
                sink.send(batch).await.map_err(|_| SinkGone)?;
                self.metrics
                    .sent(i, sent, sink.max_capacity() - sink.capacity());
            }
        }
        let flow = &self.flow;
        for (event, why) in self.core.rejected.drain(..) {
            let source = event.origin.source as usize;
            let reason = (why.describe(flow, source), why.kind());
            let mut origin = serde_json::json!({"position": event.origin.position});
            if let Some(id) = flow.trace_id(&event) {
                origin["trace_id"] = id.into();
            }
            let payload = event.to_json(&flow.schema, &[]);
            let reason = (reason.0.as_str(), reason.1);
            self.dead_letters
                .send(&flow.names[source], reason, origin, payload.as_bytes())
                .await
                .map_err(|_| SinkGone)?;
        }
        if let Some(ack) = ack {
            self.dead_letters
                .ack(ack.share())
                .await
                .map_err(|_| SinkGone)?;
        }
        if let Some(news) = &mut self.core.board {
            self.metrics.board(news);
        }
        let counts = std::mem::take(&mut self.core.counts);
        self.metrics.add(&counts, &mut self.core.components);
        Ok(())
    }
}
