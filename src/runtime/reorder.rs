//! Per-key event-time ordering.
//!
//! Each key has its own clock: the latest event time seen from it. An event
//! may arrive up to `max_out_of_orderness` behind that clock and is then
//! put back in order; operators see each key's events sorted by time. An
//! older event is late. A device that reconnects after an hour and sends its
//! backlog is in order within its own clock, whatever other keys are doing.
//!
//! Live, a key that goes quiet would keep its last events held until it
//! speaks again (a warm reefer's last reading, then silence, would never
//! alert). So when nothing has arrived from a key for
//! `max_out_of_orderness` of wall-clock time, what it holds is processed
//! (see [`Reorder::release_quiet`]); anything older that still comes is
//! late.

use crate::event::{Event, Key, Origin, Schema, Value};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Reorder {
    /// Latest event time seen for the key; `None` before its first event.
    latest: Option<i64>,
    /// Events held back until the clock has moved `max_out_of_orderness`
    /// past them, sorted by time (ties in arrival order).
    held: VecDeque<Event>,
    /// In a replay, an event far ahead of the clock, held until the key's
    /// next event says whether it was a wrong clock. Boxed: it is rare,
    /// and every key's clock is touched on every event, so it stays small.
    suspect: Option<Box<Event>>,
    /// Events before this time are late: the key's held events up to it
    /// were processed when the key went quiet.
    floor: Option<i64>,
    /// Wall-clock time the key's last event arrived; `None` until one has
    /// (or since a restore, which starts the wait again).
    arrived: Option<i64>,
}

impl Reorder {
    /// Takes an event; the ones now safe to process are appended to `ready`
    /// in time order. A late event is handed back.
    #[must_use = "a late event must be dead-lettered"]
    pub fn push(
        &mut self,
        event: Event,
        max_ooo: i64,
        now: i64,
        ready: &mut Vec<Event>,
    ) -> Option<Event> {
        if !self.advance(event.time, max_ooo) {
            return Some(event);
        }
        self.arrived = Some(now);
        if max_ooo == 0 {
            ready.push(event);
            return None;
        }
        let latest = self.latest.unwrap_or(event.time);
        // Nearly every event is the newest of its key.
        if self.held.back().is_none_or(|last| last.time <= event.time) {
            self.held.push_back(event);
        } else {
            let at = self.held.partition_point(|held| held.time <= event.time);
            self.held.insert(at, event);
        }
        let watermark = latest.saturating_sub(max_ooo);
        while self.held.front().is_some_and(|e| e.time <= watermark) {
            ready.extend(self.held.pop_front());
        }
        None
    }

    /// Moves the key's clock to `time` if that is later; false if an event
    /// at `time` is late. With no tolerance, an admitted event is ready at
    /// once and need not pass through [`push`](Self::push).
    pub fn advance(&mut self, time: i64, max_ooo: i64) -> bool {
        let latest = self.latest.unwrap_or(time);
        let floor = self.floor.unwrap_or(i64::MIN);
        if time < latest.saturating_sub(max_ooo).max(floor) {
            return false;
        }
        self.latest = Some(latest.max(time));
        true
    }

    /// Live: if nothing has arrived for `max_ooo` of wall-clock time by
    /// `now`, everything held is ready; true if anything was.
    pub fn release_quiet(&mut self, now: i64, max_ooo: i64, ready: &mut Vec<Event>) -> bool {
        let arrived = *self.arrived.get_or_insert(now);
        if self.held.is_empty() || now - arrived < max_ooo {
            return false;
        }
        self.floor = self.held.back().map(|e| e.time);
        ready.extend(self.held.drain(..));
        true
    }

    /// Whether an event at `time` is late only because the key's held
    /// events were processed when it went quiet.
    pub fn below_floor(&self, time: i64) -> bool {
        self.floor.is_some_and(|floor| time < floor)
    }

    /// The input has ended: everything held is ready.
    pub fn drain(&mut self, ready: &mut Vec<Event>) {
        ready.extend(self.held.drain(..));
    }

    /// The events held back, not yet processed.
    pub fn held(&self) -> impl Iterator<Item = &Event> {
        self.held.iter()
    }

    /// How far behind the key's clock `time` is, for the late message.
    pub fn behind(&self, time: i64) -> i64 {
        self.latest.map_or(0, |latest| latest - time)
    }

    /// Whether it knows nothing yet: nothing to checkpoint.
    pub fn is_new(&self) -> bool {
        self.latest.is_none() && self.suspect.is_none()
    }

    /// The key's clock; `None` before its first event.
    pub fn latest(&self) -> Option<i64> {
        self.latest
    }

    pub fn hold_suspect(&mut self, event: Event) {
        self.suspect = Some(Box::new(event));
    }

    pub fn take_suspect(&mut self) -> Option<Event> {
        self.suspect.take().map(|e| *e)
    }

    pub fn has_suspect(&self) -> bool {
        self.suspect.is_some()
    }

    /// The clock as a checkpoint keeps it: held events with their fields
    /// by name, since a changed pipeline numbers its fields differently.
    pub fn save<'a>(&'a self, schema: &'a Schema) -> Saved<'a> {
        let save = |e: &'a Event| SavedEvent {
            time: e.time,
            fields: (e.fields.iter())
                .map(|(id, value)| (Cow::Borrowed(schema.name(*id)), Cow::Borrowed(value)))
                .collect(),
            partition: e.origin.partition,
            position: e.origin.position,
        };
        Saved {
            latest: self.latest,
            held: self.held.iter().map(save).collect(),
            suspect: self.suspect.as_deref().map(save),
            floor: self.floor,
        }
    }

    /// A clock of `key` from source `source` as [`save`](Self::save) kept
    /// it. Fields this pipeline no longer reads are left out.
    pub fn restore(saved: Saved, key: &Key, source: u16, schema: &Schema) -> Reorder {
        let restore = |e: SavedEvent| {
            let mut event = Event::new(key.clone(), e.time);
            for (name, value) in e.fields {
                if let Some(id) = schema.id(&name) {
                    event.set(id, value.into_owned());
                }
            }
            event.origin = Origin {
                source,
                partition: e.partition,
                position: e.position,
            };
            event
        };
        Reorder {
            latest: saved.latest,
            held: saved.held.into_iter().map(restore).collect(),
            suspect: saved.suspect.map(restore).map(Box::new),
            floor: saved.floor,
            arrived: None,
        }
    }
}

/// A [`Reorder`] in a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
pub struct Saved<'a> {
    latest: Option<i64>,
    held: Vec<SavedEvent<'a>>,
    suspect: Option<SavedEvent<'a>>,
    floor: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SavedEvent<'a> {
    time: i64,
    fields: Vec<(Cow<'a, str>, Cow<'a, Value>)>,
    partition: u32,
    position: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn times(events: &[Event]) -> Vec<i64> {
        events.iter().map(|e| e.time).collect()
    }

    fn push_all(r: &mut Reorder, input: &[i64], max_ooo: i64) -> (Vec<i64>, Vec<i64>) {
        let (mut ready, mut late) = (Vec::new(), Vec::new());
        for &t in input {
            if let Some(e) = r.push(Event::new("k".into(), t), max_ooo, 0, &mut ready) {
                late.push(e.time);
            }
        }
        (times(&ready), late)
    }

    #[test]
    fn releases_in_order_once_the_clock_passes() {
        let mut r = Reorder::default();
        let (ready, late) = push_all(&mut r, &[10, 30, 20, 40, 50], 10);
        assert_eq!(ready, [10, 20, 30, 40]);
        assert!(late.is_empty());
        let mut rest = Vec::new();
        r.drain(&mut rest);
        assert_eq!(times(&rest), [50]);
    }

    #[test]
    fn events_too_far_behind_are_late() {
        let mut r = Reorder::default();
        let (ready, late) = push_all(&mut r, &[100, 85, 95, 89], 10);
        assert_eq!(late, [85, 89]);
        assert!(ready.is_empty());
        let mut rest = Vec::new();
        r.drain(&mut rest);
        assert_eq!(times(&rest), [95, 100]);
    }

    #[test]
    fn held_events_survive_a_checkpoint_with_their_fields_by_name() {
        let mut schema = Schema::default();
        let (temp, door) = (schema.intern("temp"), schema.intern("door"));
        let kind = schema.intern("kind");
        let mut r = Reorder::default();
        let mut ready = Vec::new();
        for (t, v) in [(10, -0.0), (30, f64::MAX), (20, 1e-300)] {
            let mut e = Event::new("k".into(), t);
            e.set(temp, Value::Num(v));
            e.set(door, Value::Bool(t == 20));
            e.set(kind, Value::Str("reefer".into()));
            e.origin.position = t as u64;
            assert!(r.push(e, 100, 0, &mut ready).is_none());
        }
        let bytes = crate::state::codec::encode(&r.save(&schema)).unwrap();
        // The next pipeline reads `door` and `temp` under other numbers,
        // and no longer reads `kind`.
        let mut next = Schema::default();
        let (door2, temp2) = (next.intern("door"), next.intern("temp"));
        let saved: Saved = crate::state::codec::decode(&bytes).unwrap();
        let mut back = Reorder::restore(saved, &"k".into(), 3, &next);
        let mut events = Vec::new();
        back.drain(&mut events);
        assert_eq!(times(&events), [10, 20, 30]);
        let bits = |e: &Event| e.num(temp2).map(f64::to_bits);
        assert_eq!(bits(&events[0]), Some((-0.0f64).to_bits()));
        assert_eq!(bits(&events[2]), Some(f64::MAX.to_bits()));
        assert_eq!(events[1].get(door2), Some(&Value::Bool(true)));
        assert_eq!(events[1].fields.len(), 2);
        assert_eq!(
            (events[1].origin.source, events[1].origin.position),
            (3, 20)
        );
        assert_eq!(back.latest(), Some(30));
    }

    #[test]
    fn a_quiet_key_releases_what_it_holds_and_older_events_are_late_after() {
        let mut r = Reorder::default();
        let mut ready = Vec::new();
        for t in [100, 120] {
            assert!(
                r.push(Event::new("k".into(), t), 30, 5_000, &mut ready)
                    .is_none()
            );
        }
        assert!(ready.is_empty());
        // Not quiet for 30 ms of wall clock yet, then quiet.
        assert!(!r.release_quiet(5_029, 30, &mut ready));
        assert!(r.release_quiet(5_030, 30, &mut ready));
        assert_eq!(times(&ready), [100, 120]);
        // 119 is within the tolerance of the clock (120), but 120 was
        // processed already: it is late now; 120 itself is not.
        let late = r.push(Event::new("k".into(), 119), 30, 6_000, &mut ready);
        assert_eq!(late.map(|e| e.time), Some(119));
        assert!(r.below_floor(119));
        assert!(
            r.push(Event::new("k".into(), 120), 30, 6_000, &mut ready)
                .is_none()
        );
    }

    #[test]
    fn zero_tolerance_passes_in_order_events_straight_through() {
        let mut r = Reorder::default();
        let (ready, late) = push_all(&mut r, &[1, 2, 2, 1, 3], 0);
        assert_eq!(ready, [1, 2, 2, 3]);
        assert_eq!(late, [1]);
    }
}
