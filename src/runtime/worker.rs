//! A worker: owns a share of the keys and runs the whole operator graph for
//! them.
//!
//! Every operator is keyed by the same entity key, so one key's events and
//! everything derived from them stay on one worker: an event goes through
//! the graph depth-first, synchronously, with no channel between operators.

use super::Ack;
use super::dataflow::Dataflow;
use super::metrics::{Metrics, Snapshot};
use super::reorder::Reorder;
use super::router::WorkerMsg;
use crate::event::{Event, Key, time};
use crate::operators::{Emitter, KeyedOperator, Output};
use crate::runtime::DeadLetters;
use crate::sinks::{Batch, Record};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A sink stopped taking records; the run is failing.
#[derive(Debug)]
pub struct SinkGone;

pub struct Worker {
    flow: Arc<Dataflow>,
    core: Core,
    sinks: Vec<mpsc::Sender<Batch>>,
    dead_letters: DeadLetters,
    metrics: Arc<Metrics>,
}

/// The synchronous heart of a worker: keys, clocks and operator state.
/// Benchmarks drive it directly; [`Worker`] adds the channels.
pub struct Core {
    operators: Vec<Box<dyn KeyedOperator>>,
    /// Key -> slot; operators keep their per-key state in slot order.
    slots: FxHashMap<Key, usize>,
    keys: Vec<Key>,
    /// Per source, per slot: the key's clock and held-back events.
    clocks: Vec<Vec<Reorder>>,
    /// Per sink: records produced since the outbox was last emptied.
    pub outbox: Vec<Vec<Arc<Record>>>,
    /// Late events, with how far behind their key's clock they were.
    pub late: Vec<(Event, i64)>,
    /// What was processed since the counts were last taken.
    pub counts: Snapshot,
    /// Spare emitters, so the depth-first walk allocates nothing per event.
    spare: Vec<Emitter>,
    /// Scratch for events released by a clock.
    ready: Vec<Event>,
    /// Latest event time seen, and when operators' timers run next on it.
    clock: i64,
    next_tick: i64,
}

/// How often operators' timers run, in ms of the clock they run on.
const TICK_MS: i64 = 1000;

impl Worker {
    pub fn new(
        flow: Arc<Dataflow>,
        operators: Vec<Box<dyn KeyedOperator>>,
        sinks: Vec<mpsc::Sender<Batch>>,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
    ) -> Self {
        let core = Core::new(&flow, operators, sinks.len());
        Worker {
            flow,
            core,
            sinks,
            dead_letters,
            metrics,
        }
    }

    /// Processes messages until every source has hung up, then flushes
    /// what the operators still hold (open windows).
    pub async fn run(mut self, mut rx: mpsc::Receiver<WorkerMsg>) -> Result<(), SinkGone> {
        let wall_clock = self.flow.live && self.core.ticks();
        let mut ticker = tokio::time::interval(std::time::Duration::from_millis(TICK_MS as u64));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            let msg = tokio::select! {
                msg = rx.recv() => msg,
                _ = ticker.tick(), if wall_clock => {
                    self.core.tick(&self.flow, time::now_ms());
                    self.flush(None).await?;
                    continue;
                }
            };
            let Some(msg) = msg else { break };
            match msg {
                WorkerMsg::Events(batch) => {
                    for event in batch {
                        self.core.accept(&self.flow, event);
                    }
                    if !self.flow.live {
                        self.core.tick_event_time(&self.flow);
                    }
                }
                WorkerMsg::SourceEnded(source) => {
                    self.core.source_ended(&self.flow, source as usize)
                }
                WorkerMsg::Mark(source, ack) => {
                    self.core.note_held(source as usize, &ack);
                    self.flush(Some(&ack)).await?;
                    ack.done();
                    continue;
                }
            }
            self.flush(None).await?;
        }
        self.core.end(&self.flow);
        self.flush(None).await
    }

    /// Sends what the last batch produced, and shares of `ack` behind it.
    /// Waits while a sink is behind: that wait is the back-pressure that
    /// slows the sources.
    async fn flush(&mut self, ack: Option<&Ack>) -> Result<(), SinkGone> {
        for (sink, records) in self.sinks.iter().zip(&mut self.core.outbox) {
            if !records.is_empty() || ack.is_some() {
                let batch = Batch {
                    records: std::mem::take(records),
                    acks: ack.iter().map(|a| a.share()).collect(),
                };
                sink.send(batch).await.map_err(|_| SinkGone)?;
            }
        }
        let flow = &self.flow;
        for (event, behind) in self.core.late.drain(..) {
            let source = event.origin.source as usize;
            let reason = format!(
                "late: {} behind the key's latest event (max_out_of_orderness {})",
                crate::config::Duration(behind),
                crate::config::Duration(flow.max_ooo[source])
            );
            let origin = serde_json::json!({"position": event.origin.position});
            let payload = event.to_json(&flow.schema, &[]);
            self.dead_letters
                .send(&flow.names[source], &reason, origin, payload.as_bytes())
                .await
                .map_err(|_| SinkGone)?;
        }
        if let Some(ack) = ack {
            self.dead_letters
                .ack(ack.share())
                .await
                .map_err(|_| SinkGone)?;
        }
        self.metrics.add(&std::mem::take(&mut self.core.counts));
        Ok(())
    }
}

impl Core {
    pub fn new(flow: &Dataflow, operators: Vec<Box<dyn KeyedOperator>>, sinks: usize) -> Self {
        Core {
            operators,
            slots: FxHashMap::default(),
            keys: Vec::new(),
            clocks: (0..flow.sources).map(|_| Vec::new()).collect(),
            outbox: vec![Vec::new(); sinks],
            late: Vec::new(),
            counts: Snapshot::default(),
            spare: Vec::new(),
            ready: Vec::new(),
            clock: i64::MIN,
            next_tick: i64::MIN,
        }
    }

    /// Whether some operator keeps time between events.
    pub fn ticks(&self) -> bool {
        self.operators.iter().any(|o| o.ticks())
    }

    /// Runs the operators' timers for every key at `now`.
    pub fn tick(&mut self, flow: &Dataflow, now: i64) {
        for op in 0..self.operators.len() {
            if !self.operators[op].ticks() {
                continue;
            }
            for slot in 0..self.keys.len() {
                let mut out = self.spare.pop().unwrap_or_default();
                let key = self.keys[slot].clone();
                self.operators[op].on_tick(slot, &key, now, &mut out);
                self.dispatch(flow, flow.sources + op, slot, &mut out, None);
                self.spare.push(out);
            }
        }
    }

    /// In a replay, runs the timers as the event time seen passes each
    /// tick.
    pub fn tick_event_time(&mut self, flow: &Dataflow) {
        if self.clock < self.next_tick || !self.ticks() {
            return;
        }
        self.next_tick = self.clock - self.clock.rem_euclid(TICK_MS) + TICK_MS;
        self.tick(flow, self.clock);
    }

    fn slot(&mut self, key: &Key) -> usize {
        if let Some(&slot) = self.slots.get(key) {
            return slot;
        }
        let slot = self.keys.len();
        self.keys.push(key.clone());
        self.slots.insert(key.clone(), slot);
        self.clocks
            .iter_mut()
            .for_each(|c| c.push(Reorder::default()));
        slot
    }

    /// Puts a source event through its key's clock, then through the graph.
    pub fn accept(&mut self, flow: &Dataflow, event: Event) {
        self.clock = self.clock.max(event.time);
        let slot = self.slot(&event.key);
        let source = event.origin.source as usize;
        let max_ooo = flow.max_ooo[source];
        let clock = &mut self.clocks[source][slot];
        // Without a tolerance nothing is held back: skip the buffer.
        if max_ooo == 0 && clock.advance(event.time, 0) {
            self.counts.events += 1;
            self.process(flow, source, slot, &event);
            return;
        }
        let mut ready = std::mem::take(&mut self.ready);
        if let Some(late) = clock.push(event, max_ooo, &mut ready) {
            let behind = clock.behind(late.time);
            self.counts.late += 1;
            self.late.push((late, behind));
        }
        self.process_ready(flow, source, slot, &mut ready);
        self.ready = ready;
    }

    /// A source ended: its held-back events are processed now.
    pub fn source_ended(&mut self, flow: &Dataflow, source: usize) {
        let mut ready = std::mem::take(&mut self.ready);
        for slot in 0..self.keys.len() {
            self.clocks[source][slot].drain(&mut ready);
            self.process_ready(flow, source, slot, &mut ready);
        }
        self.ready = ready;
    }

    /// Notes on `ack` the events of `source` held back for ordering: they
    /// are not processed yet, so their source must not forget them.
    pub fn note_held(&self, source: usize, ack: &Ack) {
        let mut lowest = std::collections::BTreeMap::<u32, u64>::new();
        for event in self.clocks[source].iter().flat_map(Reorder::held) {
            let at = lowest.entry(event.origin.partition).or_insert(u64::MAX);
            *at = (*at).min(event.origin.position);
        }
        for (partition, position) in lowest {
            ack.hold(partition, position);
        }
    }

    fn process_ready(
        &mut self,
        flow: &Dataflow,
        source: usize,
        slot: usize,
        ready: &mut Vec<Event>,
    ) {
        for event in ready.drain(..) {
            self.counts.events += 1;
            self.process(flow, source, slot, &event);
        }
    }

    /// Sends `event`, produced by `component`, to its sinks and operators.
    fn process(&mut self, flow: &Dataflow, component: usize, slot: usize, event: &Event) {
        let sinks = &flow.sinks[component];
        if !sinks.is_empty() {
            let what = if component < flow.sources {
                "source"
            } else {
                "operator"
            };
            let extra = [
                ("pipeline", flow.pipeline.as_ref()),
                (what, flow.names[component].as_ref()),
            ];
            let record = Arc::new(Record {
                line: event.to_json(&flow.schema, &extra),
                key: event.key.clone(),
                component: flow.names[component].clone(),
                is_alert: false,
            });
            if component >= flow.sources {
                self.counts.outputs += 1;
            }
            sinks
                .iter()
                .for_each(|&s| self.outbox[s].push(record.clone()));
        }
        for &op in &flow.downstream[component] {
            let mut out = self.spare.pop().unwrap_or_default();
            self.operators[op - flow.sources].on_event(slot, event, &mut out);
            self.dispatch(flow, op, slot, &mut out, Some(event));
            self.spare.push(out);
        }
    }

    /// Routes what operator `component` emitted while handling `input`.
    fn dispatch(
        &mut self,
        flow: &Dataflow,
        component: usize,
        slot: usize,
        out: &mut Emitter,
        input: Option<&Event>,
    ) {
        for output in out.outputs.drain(..) {
            match output {
                Output::Event(event) => self.process(flow, component, slot, &event),
                Output::Pass => {
                    if let Some(event) = input {
                        self.process(flow, component, slot, event);
                    }
                }
                Output::Alert(alert) => {
                    self.counts.alerts += 1;
                    if flow.alert_sinks[component].is_empty() {
                        continue;
                    }
                    let record = Arc::new(Record {
                        line: alert.to_json(&flow.pipeline, time::now_ms()),
                        key: alert.key,
                        component: alert.rule,
                        is_alert: true,
                    });
                    for &s in &flow.alert_sinks[component] {
                        self.outbox[s].push(record.clone());
                    }
                }
            }
        }
    }

    /// All input has ended: operators emit what they still hold, upstream
    /// first, so a window's last results still reach the operators after it.
    pub fn end(&mut self, flow: &Dataflow) {
        for op in 0..self.operators.len() {
            for slot in 0..self.keys.len() {
                let mut out = self.spare.pop().unwrap_or_default();
                let key = self.keys[slot].clone();
                self.operators[op].on_end(slot, &key, &mut out);
                self.dispatch(flow, flow.sources + op, slot, &mut out, None);
                self.spare.push(out);
            }
        }
    }
}
