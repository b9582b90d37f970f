//! A worker: owns a share of the keys and runs the whole operator graph for
//! them.
//!
//! Every operator is keyed by the same entity key, so one key's events and
//! everything derived from them stay on one worker: an event goes through
//! the graph depth-first, synchronously, with no channel between operators.

use super::dataflow::Dataflow;
use super::metrics::{Metrics, Snapshot};
use super::reorder::Reorder;
use super::router::WorkerMsg;
use crate::event::{Event, Key, time};
use crate::operators::{Emitter, KeyedOperator, Output};
use crate::sinks::dead_letter::DeadLetters;
use crate::sinks::{Batch, Record};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use tokio::sync::mpsc;

/// A sink stopped taking records; the run is failing.
#[derive(Debug)]
pub struct SinkGone;

pub struct Worker {
    flow: Arc<Dataflow>,
    state: State,
}

/// Everything a worker mutates, apart from the graph it reads, so the two
/// can be borrowed at once.
struct State {
    operators: Vec<Box<dyn KeyedOperator>>,
    /// Key -> slot; operators keep their per-key state in slot order.
    slots: FxHashMap<Key, usize>,
    keys: Vec<Key>,
    /// Per source, per slot: the key's clock and held-back events.
    clocks: Vec<Vec<Reorder>>,
    /// Per sink: records waiting to be sent after the current batch.
    outbox: Vec<Batch>,
    sinks: Vec<mpsc::Sender<Batch>>,
    /// Late events to dead-letter after the current batch, with how far
    /// behind their key's clock they were.
    late: Vec<(Event, i64)>,
    dead_letters: DeadLetters,
    /// Spare emitters, so the depth-first walk allocates nothing per event.
    spare: Vec<Emitter>,
    counts: Snapshot,
    metrics: Arc<Metrics>,
}

impl Worker {
    pub fn new(
        flow: Arc<Dataflow>,
        operators: Vec<Box<dyn KeyedOperator>>,
        sinks: Vec<mpsc::Sender<Batch>>,
        dead_letters: DeadLetters,
        metrics: Arc<Metrics>,
    ) -> Self {
        let state = State {
            operators,
            slots: FxHashMap::default(),
            keys: Vec::new(),
            clocks: (0..flow.sources).map(|_| Vec::new()).collect(),
            outbox: vec![Vec::new(); sinks.len()],
            sinks,
            late: Vec::new(),
            dead_letters,
            spare: Vec::new(),
            counts: Snapshot::default(),
            metrics,
        };
        Worker { flow, state }
    }

    /// Processes messages until every source has hung up, then flushes
    /// what the operators still hold (open windows).
    pub async fn run(mut self, mut rx: mpsc::Receiver<WorkerMsg>) -> Result<(), SinkGone> {
        let flow = &self.flow;
        let state = &mut self.state;
        let mut ready = Vec::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                WorkerMsg::Events(batch) => {
                    for event in batch {
                        state.accept(flow, event, &mut ready);
                    }
                }
                WorkerMsg::SourceEnded(source) => state.release(flow, source as usize, &mut ready),
            }
            state.flush(flow).await?;
        }
        state.end(flow);
        state.flush(flow).await
    }
}

impl State {
    fn slot(&mut self, key: &Key) -> usize {
        if let Some(&slot) = self.slots.get(key) {
            return slot;
        }
        let slot = self.keys.len();
        self.keys.push(key.clone());
        self.slots.insert(key.clone(), slot);
        self.clocks.iter_mut().for_each(|c| c.push(Reorder::default()));
        slot
    }

    /// Puts a source event through its key's clock, then through the graph.
    fn accept(&mut self, flow: &Dataflow, event: Event, ready: &mut Vec<Event>) {
        let slot = self.slot(&event.key);
        let source = event.origin.source as usize;
        let clock = &mut self.clocks[source][slot];
        if let Err(late) = clock.push(event, flow.max_ooo[source], ready) {
            let behind = clock.behind(late.time);
            self.late.push((late, behind));
        }
        for event in ready.drain(..) {
            self.counts.events += 1;
            self.process(flow, source, slot, &event);
        }
    }

    /// A source ended: its held-back events are processed now.
    fn release(&mut self, flow: &Dataflow, source: usize, ready: &mut Vec<Event>) {
        for slot in 0..self.keys.len() {
            self.clocks[source][slot].drain(ready);
            for event in ready.drain(..) {
                self.counts.events += 1;
                self.process(flow, source, slot, &event);
            }
        }
    }

    /// Sends `event`, produced by `component`, to its sinks and operators.
    fn process(&mut self, flow: &Dataflow, component: usize, slot: usize, event: &Event) {
        let sinks = &flow.sinks[component];
        if !sinks.is_empty() {
            let what = if component < flow.sources { "source" } else { "operator" };
            let extra = [("pipeline", flow.pipeline.as_ref()), (what, flow.names[component].as_ref())];
            let record = Arc::new(Record {
                line: event.to_json(&flow.schema, &extra),
                key: event.key.clone(),
                component: flow.names[component].clone(),
                is_alert: false,
            });
            if component >= flow.sources {
                self.counts.outputs += 1;
            }
            sinks.iter().for_each(|&s| self.outbox[s].push(record.clone()));
        }
        for &op in &flow.downstream[component] {
            let mut out = self.spare.pop().unwrap_or_default();
            self.operators[op - flow.sources].on_event(slot, event, &mut out);
            self.dispatch(flow, op, slot, &mut out);
            self.spare.push(out);
        }
    }

    /// Routes what operator `component` emitted.
    fn dispatch(&mut self, flow: &Dataflow, component: usize, slot: usize, out: &mut Emitter) {
        for output in out.outputs.drain(..) {
            match output {
                Output::Event(event) => self.process(flow, component, slot, &event),
                Output::Alert(alert) => {
                    self.counts.alerts += 1;
                    let record = Arc::new(Record {
                        line: alert.to_json(&flow.pipeline, time::now_ms()),
                        key: alert.key,
                        component: alert.rule,
                        is_alert: true,
                    });
                    for &s in &flow.sinks[component] {
                        self.outbox[s].push(record.clone());
                    }
                }
            }
        }
    }

    /// All input has ended: operators emit what they still hold, upstream
    /// first, so a window's last results still reach the operators after it.
    fn end(&mut self, flow: &Dataflow) {
        for op in 0..self.operators.len() {
            for slot in 0..self.keys.len() {
                let mut out = self.spare.pop().unwrap_or_default();
                let key = self.keys[slot].clone();
                self.operators[op].on_end(slot, &key, &mut out);
                self.dispatch(flow, flow.sources + op, slot, &mut out);
                self.spare.push(out);
            }
        }
    }

    /// Sends what the last batch produced. Waits while a sink is behind:
    /// that wait is the back-pressure that slows the sources.
    async fn flush(&mut self, flow: &Dataflow) -> Result<(), SinkGone> {
        for (sink, records) in self.sinks.iter().zip(&mut self.outbox) {
            if !records.is_empty() {
                sink.send(std::mem::take(records)).await.map_err(|_| SinkGone)?;
            }
        }
        for (event, behind) in self.late.drain(..) {
            self.counts.late += 1;
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
        self.metrics.add(&std::mem::take(&mut self.counts));
        Ok(())
    }
}
