//! A worker: owns a share of the keys and runs the whole operator graph for
//! them.
//!
//! Every operator is keyed by the same entity key, so one key's events and
//! everything derived from them stay on one worker: an event goes through
//! the graph depth-first, synchronously, with no channel between operators.
//!
//! With a state dir the worker also takes part in checkpoints: once a
//! checkpoint's barrier has come from every running source it saves the
//! keys that changed (see [`Core::snapshot`]). A source's messages that
//! arrive after its barrier wait until then (barrier alignment), so the
//! saved state is exactly what the events before the barriers made.

use super::Ack;
use super::checkpoint::{Checkpoints, Restore};
use super::dataflow::Dataflow;
use super::keys::{Heard, Keys};
use super::metrics::{Metrics, Snapshot};
use super::reorder::{Reorder, Saved};
use super::router::WorkerMsg;
use crate::config::Duration;
use crate::event::{Event, Key, time};
use crate::operators::{Emitter, KeyedOperator, Output};
use crate::runtime::DeadLetters;
use crate::sinks::{Batch, Record};
use crate::state::codec::{self, CodecError};
use crate::state::store::{SavedKey, SegmentWriter, WorkerClock};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::mpsc;
use xxhash_rust::xxh3::xxh3_64;

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

/// The synchronous heart of a worker: keys, clocks and operator state.
/// Benchmarks drive it directly; [`Worker`] adds the channels.
pub struct Core {
    operators: Vec<Box<dyn KeyedOperator>>,
    /// The operators that keep time, by index.
    ticking: Vec<usize>,
    keys: Keys,
    /// Per source, per slot: the key's clock and held-back events.
    clocks: Vec<Vec<Reorder>>,
    /// Per sink: records produced since the outbox was last emptied.
    pub outbox: Vec<Vec<Arc<Record>>>,
    /// Events the worker could not use, and why.
    pub rejected: Vec<(Event, Rejection)>,
    /// What was processed since the counts were last taken.
    pub counts: Snapshot,
    /// Spare emitters, so the depth-first walk allocates nothing per event.
    spare: Vec<Emitter>,
    /// Scratch for events released by a clock.
    ready: Vec<Event>,
    /// Latest event time seen, and when operators' timers run next on it.
    clock: i64,
    next_tick: i64,
    /// The wall clock: set once per batch.
    now: i64,
    key_counts: Arc<KeyCounts>,
}

/// Why the worker dead-letters an event.
#[derive(Debug, PartialEq)]
pub enum Rejection {
    /// Behind its key's clock by more than `max_out_of_orderness`.
    Late { behind: i64 },
    /// Ahead by more than `max_future`: of the wall clock when live; in a
    /// replay, of its key's clock, with the key's next event not following.
    Future { ahead: i64, live: bool },
    /// A new key while its source already has `max_keys`.
    TooManyKeys { max: usize },
    /// An operator could not use it.
    Operator { component: usize, reason: String },
}

/// What a replay's check of an event's clock decided.
enum Screened {
    Pass(Event),
    /// Far ahead: held until the key's next event.
    Held,
    /// Two events far ahead of the clock, close to each other: a jump in
    /// the recording. In time order.
    Jump(Event, Event),
}

/// Keys made per source, counted across the workers against `max_keys`.
#[derive(Debug)]
pub struct KeyCounts {
    counts: Vec<AtomicUsize>,
    /// Whether reaching `max_keys` was logged (once per source).
    warned: Vec<AtomicBool>,
}

impl KeyCounts {
    pub fn new(sources: usize) -> Arc<KeyCounts> {
        Arc::new(KeyCounts {
            counts: (0..sources).map(|_| AtomicUsize::new(0)).collect(),
            warned: (0..sources).map(|_| AtomicBool::new(false)).collect(),
        })
    }
}

/// How often operators' timers run, in ms of the clock they run on.
const TICK_MS: i64 = 1000;

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
            WorkerMsg::Events(_, batch) => {
                self.core.now = time::now_ms();
                for event in batch {
                    self.core.accept(&self.flow, event);
                }
                if !self.flow.live {
                    self.core.tick_event_time(&self.flow);
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
            Ok(Some(segment)) => checkpoints.write_segment(seq, self.index, segment, ack.share()),
            Ok(None) => {}
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
        for (event, why) in self.core.rejected.drain(..) {
            let source = event.origin.source as usize;
            let reason = why.describe(flow, source);
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

impl Rejection {
    fn describe(&self, flow: &Dataflow, source: usize) -> String {
        match self {
            Rejection::Late { behind } => format!(
                "late: {} behind the key's latest event (max_out_of_orderness {})",
                Duration(*behind),
                Duration(flow.max_ooo[source])
            ),
            Rejection::Future { ahead, live } => format!(
                "future: {} ahead of {} (max_future {})",
                Duration(*ahead),
                match live {
                    true => "the wall clock",
                    false => "the key's clock, and its next event did not follow",
                },
                Duration(flow.max_future[source])
            ),
            Rejection::TooManyKeys { max } => format!(
                "max_keys: the source already has {max} keys; events of new keys are dead-lettered until idle ones are forgotten (idle_timeout)"
            ),
            Rejection::Operator { component, reason } => {
                format!("operator \"{}\": {reason}", flow.names[*component])
            }
        }
    }
}

impl Core {
    pub fn new(
        flow: &Dataflow,
        operators: Vec<Box<dyn KeyedOperator>>,
        sinks: usize,
        key_counts: Arc<KeyCounts>,
    ) -> Self {
        let ticking: Vec<usize> = (0..operators.len())
            .filter(|&i| operators[i].ticks())
            .collect();
        Core {
            keys: Keys::new(ticking.len()),
            ticking,
            operators,
            clocks: (0..flow.sources).map(|_| Vec::new()).collect(),
            outbox: vec![Vec::new(); sinks],
            rejected: Vec::new(),
            counts: Snapshot::default(),
            spare: Vec::new(),
            ready: Vec::new(),
            clock: i64::MIN,
            next_tick: i64::MIN,
            now: i64::MIN,
            key_counts,
        }
    }

    /// Whether the worker needs a timer: some operator keeps time, or
    /// idle keys are to be forgotten.
    pub fn ticks(&self, flow: &Dataflow) -> bool {
        !self.ticking.is_empty() || flow.idle_timeout.iter().any(Option::is_some)
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Runs the operators' timers for every key at `now`, then forgets
    /// keys silent for longer than their source's `idle_timeout`.
    pub fn tick(&mut self, flow: &Dataflow, now: i64) {
        for i in 0..self.ticking.len() {
            let op = self.ticking[i];
            for slot in 0..self.keys.len() {
                let mut out = self.spare.pop().unwrap_or_default();
                let key = self.keys.key(slot).clone();
                self.operators[op].on_tick(slot, &key, now, &mut out);
                if !out.outputs.is_empty() {
                    self.keys.mark_dirty(slot);
                }
                self.dispatch(flow, flow.sources + op, slot, &mut out, None);
                self.spare.push(out);
            }
        }
        self.forget_idle(flow, now);
    }

    /// In a replay, runs the timers as the event time seen passes each
    /// tick.
    pub fn tick_event_time(&mut self, flow: &Dataflow) {
        if self.clock == i64::MIN || self.clock < self.next_tick || !self.ticks(flow) {
            return;
        }
        self.next_tick = self.clock - self.clock.rem_euclid(TICK_MS) + TICK_MS;
        self.tick(flow, self.clock);
    }

    /// Forgets keys silent past their source's `idle_timeout`. A key
    /// forgotten ends as if its input had: held events are processed,
    /// open windows emitted.
    fn forget_idle(&mut self, flow: &Dataflow, now: i64) {
        if flow.idle_timeout.iter().all(Option::is_none) {
            return;
        }
        // Backwards: removing a slot moves the last one into it, and the
        // last one has been looked at already.
        for slot in (0..self.keys.len()).rev() {
            let heard = self.keys.heard(slot);
            let idle = flow.idle_timeout[heard.source as usize];
            if idle.is_some_and(|idle| now.saturating_sub(heard.at) >= idle) {
                self.end_key(flow, slot);
                self.remove(slot);
            }
        }
    }

    fn end_key(&mut self, flow: &Dataflow, slot: usize) {
        let mut ready = std::mem::take(&mut self.ready);
        for source in 0..flow.sources {
            self.release(source, slot, &mut ready);
            self.process_ready(flow, source, slot, &mut ready);
        }
        self.ready = ready;
        let key = self.keys.key(slot).clone();
        for op in 0..self.operators.len() {
            let mut out = self.spare.pop().unwrap_or_default();
            self.operators[op].on_end(slot, &key, &mut out);
            self.dispatch(flow, flow.sources + op, slot, &mut out, None);
            self.spare.push(out);
        }
    }

    fn remove(&mut self, slot: usize) {
        let last = self.keys.len() - 1;
        for op in &mut self.operators {
            op.remove(slot, last);
        }
        for clocks in &mut self.clocks {
            clocks.swap_remove(slot);
        }
        let heard = self.keys.remove(slot);
        self.key_counts.counts[heard.owner as usize].fetch_sub(1, Ordering::Relaxed);
        self.counts.forgotten += 1;
    }

    /// The slot of a key first seen now through `source`, unless that
    /// source has its `max_keys` already.
    fn new_slot(&mut self, flow: &Dataflow, key: &Key, source: usize) -> Result<usize, usize> {
        let count = &self.key_counts.counts[source];
        if let Some(max) = flow.max_keys[source] {
            if count.fetch_add(1, Ordering::Relaxed) >= max {
                count.fetch_sub(1, Ordering::Relaxed);
                if !self.key_counts.warned[source].swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "source \"{}\": {max} keys reached (max_keys); events of new keys go to the dead-letter sink until idle ones are forgotten",
                        flow.names[source]
                    );
                }
                self.counts.refused += 1;
                return Err(max);
            }
        } else {
            count.fetch_add(1, Ordering::Relaxed);
        }
        let heard = Heard {
            at: self.timer_now(flow),
            source: source as u16,
            owner: source as u16,
        };
        let slot = self.keys.insert(key.clone(), heard);
        self.clocks
            .iter_mut()
            .for_each(|c| c.push(Reorder::default()));
        Ok(slot)
    }

    /// The clock timers and idle keys run on.
    fn timer_now(&self, flow: &Dataflow) -> i64 {
        if flow.live { self.now } else { self.clock }
    }

    /// Whether `time` is ahead of `reference` by more than the source's
    /// `max_future`, and by how much.
    fn ahead(flow: &Dataflow, source: usize, reference: i64, time: i64) -> Option<i64> {
        let ahead = time.saturating_sub(reference);
        (reference != i64::MIN && ahead > flow.max_future[source]).then_some(ahead)
    }

    /// Puts a source event through its key's clock, then through the graph.
    pub fn accept(&mut self, flow: &Dataflow, event: Event) {
        let source = event.origin.source as usize;
        if flow.live
            && let Some(ahead) = Self::ahead(flow, source, self.now, event.time)
        {
            self.reject(event, Rejection::Future { ahead, live: true });
            return;
        }
        let known = self.keys.get(&event.key);
        let slot = match known.map_or_else(|| self.new_slot(flow, &event.key, source), Ok) {
            Ok(slot) => slot,
            Err(max) => {
                self.reject(event, Rejection::TooManyKeys { max });
                return;
            }
        };
        if flow.live {
            self.admit(flow, source, slot, event);
            return;
        }
        match self.screen(flow, source, slot, event) {
            Screened::Pass(event) => self.admit(flow, source, slot, event),
            Screened::Jump(first, second) => {
                self.admit(flow, source, slot, first);
                self.admit(flow, source, slot, second);
            }
            Screened::Held => {
                let heard = self.timer_now(flow);
                self.keys.touch(slot, heard, source as u16);
            }
        }
    }

    /// A replay has no wall clock to judge a timestamp by. An event far
    /// ahead of its key's clock (of the event time seen, for a new key) is
    /// held until the key's next event tells which it is: a jump in the
    /// recording, when the next one is as far ahead (both go on), or a
    /// wrong clock, when it is not (the held one is dead-lettered). So a
    /// reading dated 2099 neither moves the clocks nor stops a device that
    /// comes back from a long silence.
    fn screen(&mut self, flow: &Dataflow, source: usize, slot: usize, event: Event) -> Screened {
        let clock = &mut self.clocks[source][slot];
        let reference = clock.latest().unwrap_or(self.clock);
        let far = Self::ahead(flow, source, reference, event.time);
        let suspect = clock.take_suspect();
        let follows = |s: &Event| (s.time - event.time).abs() <= flow.max_future[source];
        match (suspect, far) {
            (None, None) => Screened::Pass(event),
            (Some(s), Some(_)) if follows(&s) => match s.time <= event.time {
                true => Screened::Jump(s, event),
                false => Screened::Jump(event, s),
            },
            (suspect, far) => {
                if let Some(s) = suspect {
                    let ahead = s.time.saturating_sub(reference);
                    self.reject(s, Rejection::Future { ahead, live: false });
                }
                match far {
                    Some(_) => {
                        self.clocks[source][slot].hold_suspect(event);
                        Screened::Held
                    }
                    None => Screened::Pass(event),
                }
            }
        }
    }

    /// Puts an event that passed the checks through its key's clock.
    fn admit(&mut self, flow: &Dataflow, source: usize, slot: usize, event: Event) {
        self.clock = self.clock.max(event.time);
        let heard = self.timer_now(flow);
        self.keys.touch(slot, heard, source as u16);
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
            self.reject(late, Rejection::Late { behind });
        }
        self.process_ready(flow, source, slot, &mut ready);
        self.ready = ready;
    }

    fn reject(&mut self, event: Event, why: Rejection) {
        self.rejected.push((event, why));
    }

    /// The input of `slot` from `source` has ended: what its clock held is
    /// ready, but for an event still suspected of a wrong clock, which no
    /// later event followed.
    fn release(&mut self, source: usize, slot: usize, ready: &mut Vec<Event>) {
        let clock = &mut self.clocks[source][slot];
        clock.drain(ready);
        if let Some(suspect) = clock.take_suspect() {
            let ahead = suspect
                .time
                .saturating_sub(clock.latest().unwrap_or(self.clock));
            self.reject(suspect, Rejection::Future { ahead, live: false });
        }
    }

    /// A source ended: its held-back events are processed now.
    pub fn source_ended(&mut self, flow: &Dataflow, source: usize) {
        let mut ready = std::mem::take(&mut self.ready);
        for slot in 0..self.keys.len() {
            self.release(source, slot, &mut ready);
            if !ready.is_empty() {
                self.keys.mark_dirty(slot);
            }
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
                Output::Reject(reason) => {
                    if let Some(event) = input {
                        let why = Rejection::Operator { component, reason };
                        self.reject(event.clone(), why);
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
                let key = self.keys.key(slot).clone();
                self.operators[op].on_end(slot, &key, &mut out);
                self.dispatch(flow, flow.sources + op, slot, &mut out, None);
                self.spare.push(out);
            }
        }
    }

    /// Events held back for ordering (or as suspects), not processed yet.
    pub fn held(&self) -> u64 {
        let clocks = self.clocks.iter().flatten();
        clocks
            .map(|c| c.held().count() as u64 + u64::from(c.has_suspect()))
            .sum()
    }

    /// The worker's timer clock, as a checkpoint keeps it.
    pub fn timer_clock(&self) -> WorkerClock {
        WorkerClock {
            clock: self.clock,
            next_tick: self.next_tick,
        }
    }

    /// The keys whose state changed since the last snapshot (all of them
    /// when `full`), as a checkpoint segment, with tombstones for the keys
    /// forgotten; `None` when there is nothing to write.
    pub fn snapshot(&mut self, flow: &Dataflow, full: bool) -> Result<Option<Vec<u8>>, CodecError> {
        let mut segment = SegmentWriter::new(&flow.components)?;
        // Tombstones first: a key forgotten and heard from again since is
        // written after its tombstone, and the later record wins.
        for key in self.keys.take_dropped() {
            // A full set replaces every segment before it: nothing to erase.
            if !full {
                segment.removed(&key)?;
            }
        }
        let mut scratch = Vec::new();
        for slot in 0..self.keys.len() {
            let ticked = self.ticked(slot, &mut scratch)?;
            if !(full || ticked || self.keys.is_dirty(slot)) {
                continue;
            }
            for source in 0..flow.sources {
                let clock = &self.clocks[source][slot];
                if !clock.is_new() {
                    let saved = clock.save(&flow.schema);
                    segment.part(source as u16, |buf| codec::encode_into(&saved, buf))?;
                }
            }
            for (i, op) in self.operators.iter().enumerate() {
                segment.part((flow.sources + i) as u16, |buf| op.save(slot, buf))?;
            }
            segment.end_key(self.keys.key(slot))?;
            self.keys.clean(slot);
        }
        Ok((segment.entries() > 0).then(|| segment.finish()))
    }

    /// Whether a timer changed the state of `slot` since the last snapshot.
    fn ticked(&mut self, slot: usize, scratch: &mut Vec<u8>) -> Result<bool, CodecError> {
        let mut changed = false;
        for (i, &op) in self.ticking.iter().enumerate() {
            scratch.clear();
            self.operators[op].save(slot, scratch)?;
            changed |= self.keys.rehash(slot, i, xxh3_64(scratch));
        }
        Ok(changed)
    }

    /// Takes this worker's keys from a restored checkpoint. Their idle
    /// clocks start again now.
    pub fn restore(
        &mut self,
        flow: &Dataflow,
        restore: &Restore,
        keys: Vec<SavedKey>,
        clock: WorkerClock,
    ) {
        (self.clock, self.next_tick) = (clock.clock, clock.next_tick);
        self.now = time::now_ms();
        let mut failed = vec![false; flow.components.len()];
        let component = |c: u16| restore.mapping.get(c as usize).copied().flatten();
        for (key, parts) in keys {
            // The key counts against the first source that knew it.
            let owner = (parts.iter().filter_map(|(c, _)| component(*c)))
                .find(|&c| c < flow.sources)
                .unwrap_or(0);
            let Ok(slot) = self.new_slot(flow, &key, owner) else {
                continue;
            };
            for (c, bytes) in parts {
                let Some(component) = component(c) else {
                    continue;
                };
                let restored = match component.checked_sub(flow.sources) {
                    None => codec::decode::<Saved>(&bytes).map(|saved| {
                        self.clocks[component][slot] =
                            Reorder::restore(saved, &key, component as u16, &flow.schema);
                    }),
                    Some(op) => self.operators[op].restore(slot, &bytes),
                };
                if let Err(e) = restored
                    && !std::mem::replace(&mut failed[component], true)
                {
                    tracing::warn!(
                        "\"{}\": saved state unreadable ({e}); its keys start with no state",
                        flow.names[component]
                    );
                }
            }
        }
    }
}
