//! The synchronous heart of a worker: keys, clocks and operator state,
//! and the walk of an event through the operator graph.

use crate::config::Duration;
use crate::event::{Event, Key, Value, time};
use crate::operators::notify::SUPPRESSED;
use crate::operators::{Emitter, KeyedOperator, Output};
use crate::runtime::Ack;
use crate::runtime::board::Raised;
use crate::runtime::dataflow::Dataflow;
use crate::runtime::keys::{Heard, Keys};
use crate::runtime::metrics::{ComponentCounts, Snapshot};
use crate::runtime::reorder::Reorder;
use crate::sinks::Record;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The synchronous heart of a worker: keys, clocks and operator state.
/// Benchmarks drive it directly; the async worker around it adds the
/// channels.
pub struct Core {
    pub(super) operators: Vec<Box<dyn KeyedOperator>>,
    /// The operators that keep time, by index.
    pub(super) ticking: Vec<usize>,
    pub(super) keys: Keys,
    /// Per source, per slot: the key's clock and held-back events.
    pub(super) clocks: Vec<Vec<Reorder>>,
    /// Per sink: records produced since the outbox was last emptied.
    pub outbox: Vec<Vec<Arc<Record>>>,
    /// Events the worker could not use, and why.
    pub rejected: Vec<(Event, Rejection)>,
    /// What was processed since the counts were last taken.
    pub counts: Snapshot,
    /// The same, per component.
    pub components: Vec<ComponentCounts>,
    /// New keys and alerts for the dashboard, when one is served.
    pub board: Option<BoardNews>,
    /// Spare emitters, so the depth-first walk allocates nothing per event.
    spare: Vec<Emitter>,
    /// Scratch for events released by a clock.
    ready: Vec<Event>,
    /// Latest event time seen, and when operators' timers run next on it.
    pub(super) clock: i64,
    pub(super) next_tick: i64,
    /// The wall clock: set once per batch.
    pub(super) now: i64,
    key_counts: Arc<KeyCounts>,
}

/// What a batch brought that the dashboard shows.
#[derive(Debug, Default)]
pub struct BoardNews {
    /// Keys seen for the first time.
    pub keys: Vec<Key>,
    pub raised: Vec<Raised>,
}

/// Why the worker dead-letters an event.
#[derive(Debug, PartialEq)]
pub enum Rejection {
    /// Behind its key's clock by more than `max_out_of_orderness`, or
    /// older than what the key held when it went quiet (`quiet`), which was
    /// processed then.
    Late { behind: i64, quiet: bool },
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
pub(super) const TICK_MS: i64 = 1000;

impl Rejection {
    /// A short stable name for metrics labels.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Rejection::Late { .. } => "late",
            Rejection::Future { .. } => "future",
            Rejection::TooManyKeys { .. } => "max_keys",
            Rejection::Operator { .. } => "operator",
        }
    }

    pub(super) fn describe(&self, flow: &Dataflow, source: usize) -> String {
        match self {
            Rejection::Late { behind, quiet } => format!(
                "late: {} behind the key's latest event (max_out_of_orderness {}){}",
                Duration(*behind),
                Duration(flow.max_ooo[source]),
                match quiet {
                    true => ", which was processed when the key went quiet",
                    false => "",
                }
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
            components: vec![ComponentCounts::default(); flow.names.len()],
            board: None,
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
        let held_live = flow.live && flow.max_ooo.iter().any(|&m| m > 0);
        held_live || !self.ticking.is_empty() || flow.idle_timeout.iter().any(Option::is_some)
    }

    /// Keys held now.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    /// Runs the operators' timers for every key at `now`, then forgets
    /// keys silent for longer than their source's `idle_timeout`.
    pub fn tick(&mut self, flow: &Dataflow, now: i64) {
        if flow.live {
            self.release_quiet(flow, now);
        }
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

    /// Live, processes what each key holds back for ordering once nothing
    /// has come from it for `max_out_of_orderness`: a truck's last reading
    /// before it goes quiet is not held until it speaks again.
    fn release_quiet(&mut self, flow: &Dataflow, now: i64) {
        let mut ready = std::mem::take(&mut self.ready);
        for source in 0..flow.sources {
            let max_ooo = flow.max_ooo[source];
            if max_ooo == 0 {
                continue;
            }
            for slot in 0..self.keys.len() {
                if self.clocks[source][slot].release_quiet(now, max_ooo, &mut ready) {
                    self.keys.mark_dirty(slot);
                    self.process_ready(flow, source, slot, &mut ready);
                }
            }
        }
        self.ready = ready;
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
                self.remove(slot, true);
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

    /// Removes the key in `slot`; with `tombstone` (it was forgotten) its
    /// saved state is erased at the next checkpoint.
    pub(super) fn remove(&mut self, slot: usize, tombstone: bool) {
        let last = self.keys.len() - 1;
        for op in &mut self.operators {
            op.remove(slot, last);
        }
        for clocks in &mut self.clocks {
            clocks.swap_remove(slot);
        }
        let heard = self.keys.remove(slot, tombstone);
        self.key_counts.counts[heard.owner as usize].fetch_sub(1, Ordering::Relaxed);
        if tombstone {
            self.counts.forgotten += 1;
        }
    }

    /// The slot of a key first seen now through `source`, unless that
    /// source has its `max_keys` already.
    pub(super) fn new_slot(
        &mut self,
        flow: &Dataflow,
        key: &Key,
        source: usize,
    ) -> Result<usize, usize> {
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
            changelog: None,
        };
        let slot = self.keys.insert(key.clone(), heard);
        if let Some(board) = &mut self.board {
            board.keys.push(key.clone());
        }
        self.clocks
            .iter_mut()
            .for_each(|c| c.push(Reorder::default()));
        Ok(slot)
    }

    /// The key in `slot` was heard from through `source`, on `partition`.
    pub(super) fn touch(&mut self, flow: &Dataflow, source: usize, slot: usize, partition: u32) {
        let heard = self.timer_now(flow);
        let changelog = flow.changelog[source].then_some(partition);
        self.keys.touch(slot, heard, source as u16, changelog);
    }

    /// The clock timers and idle keys run on.
    pub(super) fn timer_now(&self, flow: &Dataflow) -> i64 {
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
        let partition = event.origin.partition;
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
        if flow.live || !self.suspicious(flow, source, slot, event.time) {
            self.admit(flow, source, slot, event);
            return;
        }
        match self.screen(flow, source, slot, event) {
            Screened::Pass(event) => self.admit(flow, source, slot, event),
            Screened::Jump(first, second) => {
                self.admit(flow, source, slot, first);
                self.admit(flow, source, slot, second);
            }
            Screened::Held => self.touch(flow, source, slot, partition),
        }
    }

    /// Whether a replayed event needs [`screen`](Self::screen): it is far
    /// ahead of its key's clock, or the key holds a suspect. Asked first so
    /// that nearly every event goes straight on, without being moved.
    fn suspicious(&self, flow: &Dataflow, source: usize, slot: usize, time: i64) -> bool {
        let clock = &self.clocks[source][slot];
        let reference = clock.latest().unwrap_or(self.clock);
        clock.has_suspect() || Self::ahead(flow, source, reference, time).is_some()
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
        self.touch(flow, source, slot, event.origin.partition);
        let max_ooo = flow.max_ooo[source];
        let clock = &mut self.clocks[source][slot];
        // Without a tolerance nothing is held back: skip the buffer.
        if max_ooo == 0 && clock.advance(event.time, 0) {
            self.counts.events += 1;
            self.process(flow, source, slot, &event);
            return;
        }
        let mut ready = std::mem::take(&mut self.ready);
        if let Some(late) = clock.push(event, max_ooo, self.now, &mut ready) {
            let (behind, quiet) = (clock.behind(late.time), clock.below_floor(late.time));
            self.counts.late += 1;
            self.reject(late, Rejection::Late { behind, quiet });
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
                suppressed: false,
            });
            if component >= flow.sources {
                self.counts.outputs += 1;
            }
            sinks
                .iter()
                .for_each(|&s| self.outbox[s].push(record.clone()));
        }
        for &op in &flow.downstream[component] {
            self.components[op].events_in += 1;
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
                Output::Event(event) => {
                    self.components[component].events_out += 1;
                    self.process(flow, component, slot, &event);
                }
                Output::Pass => {
                    if let Some(event) = input {
                        self.components[component].events_out += 1;
                        self.process(flow, component, slot, event);
                    }
                }
                Output::Alert(mut alert) => {
                    self.counts.alerts += 1;
                    if let Some(id) = input.and_then(|e| flow.trace_id(e)) {
                        alert.details.push(("trace_id", Value::Str(id.into())));
                    }
                    self.components[component].alert(alert.state);
                    let sinks = &flow.alert_sinks[component];
                    if sinks.is_empty() && self.board.is_none() {
                        continue;
                    }
                    let line = alert.to_json(&flow.pipeline, time::now_ms());
                    if let Some(board) = &mut self.board {
                        board.raised.push(Raised {
                            rule: alert.rule.clone(),
                            key: alert.key.clone(),
                            state: alert.state,
                            severity: alert.severity,
                            line: line.as_str().into(),
                        });
                    }
                    let suppressed = (alert.details.iter()).any(|(name, _)| *name == SUPPRESSED);
                    let record = Arc::new(Record {
                        line,
                        key: alert.key,
                        component: alert.rule,
                        is_alert: true,
                        suppressed,
                    });
                    for &s in sinks {
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
}
