//! `window`: aggregates over tumbling or sliding windows of event time.
//!
//! ```yaml
//! temp_5m:
//!   type: window
//!   inputs: [trucks]
//!   size: 5m
//!   slide: 1m          # omit for tumbling windows
//!   aggregates: {temp_mean: mean(temperature_c), temp_p95: p95(temperature_c)}
//! ```
//!
//! Windows are aligned to the epoch: `[start, start + size)` with `start` a
//! multiple of `slide` (of `size` when tumbling). A window is emitted when
//! its key's clock reaches its end, that is when the key's next event is at
//! or past it; a key that stops reporting keeps its last window open until
//! the input ends. Then the windows up to the one ending with the newest
//! pane are emitted; later sliding windows, which would hold only a subset
//! of the same readings, are not. Windows without events are not emitted.
//!
//! The output is an event of the same key whose time is the window's end,
//! with one field per aggregate (see `aggregate.rs` for the functions).
//! Sliding windows are built from panes of width `slide` (Arroyo-style), so
//! an event is added once, not once per window.

use super::aggregate::{Aggregates, Moments, Readings, Resolved};
use super::{BuildContext, Emits, Emitter, FieldRef, Keyed, KeyedOperator, Operator, OperatorSpec};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::{Event, Key, time};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::VecDeque;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Length of each window.
    size: Spanned<Duration>,
    /// Distance between the starts of consecutive windows; `size` must be a
    /// multiple of it. Omit for tumbling windows (slide = size).
    slide: Option<Spanned<Duration>>,
    /// Output field -> aggregate, like `temp_p95: p95(temperature_c)`.
    aggregates: Spanned<Aggregates>,
}

impl Config {
    fn slide(&self) -> i64 {
        self.slide.as_ref().map_or(self.size.ms(), |s| s.ms())
    }
}

impl OperatorSpec for Config {
    fn reads(&self) -> Vec<FieldRef> {
        self.aggregates.reads()
    }

    fn emits(&self) -> Emits {
        Emits::Events {
            keeps_input: false,
            adds: self.aggregates.outputs(),
        }
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Aggregates::parse(&self.aggregates)
            .err()
            .unwrap_or_default();
        if self.size.ms() <= 0 {
            problems.push(ConfigError::at(
                self.size.loc,
                "`size` must be longer than 0",
            ));
        }
        if let Some(slide) = &self.slide
            && (slide.ms() <= 0 || self.size.ms() % slide.ms() != 0)
        {
            let message = format!(
                "`size` ({}) must be a multiple of `slide` ({})",
                self.size.value, slide.value
            );
            problems.push(ConfigError::at(slide.loc, message));
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext) -> Box<dyn KeyedOperator> {
        let aggregates = Aggregates::parse(&self.aggregates).unwrap_or_default();
        Keyed::boxed(Window {
            size: self.size.ms(),
            slide: self.slide(),
            aggregates: Resolved::new(&aggregates, ctx),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Window {
    size: i64,
    slide: i64,
    aggregates: Resolved,
}

/// One key's open panes.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Panes in time order; only those some unemitted window still needs.
    panes: VecDeque<Pane>,
    /// Every window ending at or before this time has been emitted.
    emitted_until: Option<i64>,
    /// Panes no longer needed, kept to reuse their buffers.
    #[serde(skip)]
    spare: Vec<Pane>,
}

/// The readings of one key in `[start, start + slide)`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Pane {
    start: i64,
    events: u64,
    /// One summary per aggregated field.
    fields: Vec<Summary>,
}

/// A mergeable summary of one field's readings.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Summary {
    moments: Moments,
    min: f64,
    max: f64,
    first: (i64, f64),
    last: (i64, f64),
    /// Kept only when a percentile of this field is asked for.
    values: Vec<f64>,
}

impl Summary {
    fn add(&mut self, t: i64, v: f64, keep_value: bool) {
        if self.moments.n == 0 {
            (self.min, self.max, self.first) = (v, v, (t, v));
        }
        self.moments.add(t, v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = (t, v);
        if keep_value {
            self.values.push(v);
        }
    }

    fn merge(&mut self, other: &Summary) {
        if other.moments.n == 0 {
            return;
        }
        if self.moments.n == 0 {
            (self.min, self.max, self.first) = (other.min, other.max, other.first);
        }
        self.moments.merge(&other.moments);
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.last = other.last;
        self.values.extend_from_slice(&other.values);
    }

    fn clear(&mut self) {
        self.moments = Moments::default();
        self.values.clear();
    }
}

impl Readings for Summary {
    fn moments(&self) -> &Moments {
        &self.moments
    }
    fn min(&self) -> Option<f64> {
        (self.moments.n > 0).then_some(self.min)
    }
    fn max(&self) -> Option<f64> {
        (self.moments.n > 0).then_some(self.max)
    }
    fn first(&self) -> Option<(i64, f64)> {
        (self.moments.n > 0).then_some(self.first)
    }
    fn last(&self) -> Option<(i64, f64)> {
        (self.moments.n > 0).then_some(self.last)
    }
    fn values(&self) -> &[f64] {
        &self.values
    }
}

thread_local! {
    /// Where a sliding window's panes are merged, reused across windows.
    static MERGED: RefCell<Pane> = RefCell::new(Pane::default());
}

impl Window {
    /// Emits every window with data that ends at or before `until`, then
    /// drops the panes no open window needs.
    fn emit_until(&self, state: &mut State, key: &Key, until: i64, out: &mut Emitter) {
        let (Some(oldest), Some(newest)) = (state.panes.front(), state.panes.back()) else {
            return;
        };
        let last_end = newest.start + self.size;
        let mut end = oldest.start + self.slide;
        if let Some(done) = state.emitted_until {
            end = end.max(done + self.slide);
        }
        while end <= until && end <= last_end {
            self.emit(state, key, end, out);
            state.emitted_until = Some(end);
            end += self.slide;
        }
        while let (Some(front), Some(done)) = (state.panes.front(), state.emitted_until) {
            if front.start + self.size > done {
                break;
            }
            state.spare.extend(state.panes.pop_front());
        }
    }

    /// Emits the window `[end - size, end)` if it holds any event.
    fn emit(&self, state: &State, key: &Key, end: i64, out: &mut Emitter) {
        let begin = end - self.size;
        let mut panes = state
            .panes
            .iter()
            .filter(|p| p.start >= begin && p.start < end);
        let Some(first) = panes.next() else {
            return;
        };
        MERGED.with_borrow_mut(|merged| {
            let window = if self.size == self.slide {
                first
            } else {
                merged.events = 0;
                merged
                    .fields
                    .resize_with(self.aggregates.inputs.len(), Summary::default);
                merged.fields.iter_mut().for_each(Summary::clear);
                for pane in std::iter::once(first).chain(panes) {
                    merged.events += pane.events;
                    merged
                        .fields
                        .iter_mut()
                        .zip(&pane.fields)
                        .for_each(|(m, p)| m.merge(p));
                }
                &*merged
            };
            let mut event = Event::new(key.clone(), end);
            let readings = |i: usize| &window.fields[i] as &dyn Readings;
            self.aggregates.fill(&mut event, readings, window.events);
            if !event.fields.is_empty() {
                out.event(event);
            }
        });
    }

    /// The pane holding time `t`, created if needed.
    fn pane<'s>(&self, state: &'s mut State, t: i64) -> &'s mut Pane {
        let start = t - t.rem_euclid(self.slide);
        // Events of a key arrive in time order, so the pane is nearly always
        // the newest one; an operator fed by two inputs may look further.
        let at = state.panes.iter().rposition(|p| p.start <= start);
        if let Some(i) = at.filter(|&i| state.panes[i].start == start) {
            return &mut state.panes[i];
        }
        let mut pane = state.spare.pop().unwrap_or_default();
        pane.start = start;
        pane.events = 0;
        pane.fields
            .resize_with(self.aggregates.inputs.len(), Summary::default);
        pane.fields.iter_mut().for_each(Summary::clear);
        let index = at.map_or(0, |i| i + 1);
        state.panes.insert(index, pane);
        &mut state.panes[index]
    }
}

impl Operator for Window {
    type State = State;

    fn on_event(&self, state: &mut State, event: &Event, out: &mut Emitter) {
        let t = event.time;
        self.emit_until(state, &event.key, t, out);
        if let Some(done) = state.emitted_until.filter(|&done| t < done) {
            // A window holding `t` has been emitted already: counting the
            // event now would change a result already sent.
            out.reject(format!(
                "late: {} before the end of a window already emitted ({})",
                Duration(done - t),
                time::format_rfc3339(done)
            ));
            return;
        }
        let pane = self.pane(state, t);
        pane.events += 1;
        for (summary, &(field, needs)) in pane.fields.iter_mut().zip(self.aggregates.inputs.iter())
        {
            if let Some(v) = event.num(field) {
                summary.add(t, v, needs.values);
            }
        }
    }

    /// Emits the open windows up to the one that ends with the newest
    /// pane. Later sliding windows would only hold a subset of the same
    /// readings, stamped with times the key never reached.
    fn on_end(&self, state: &mut State, key: &Key, out: &mut Emitter) {
        if let Some(newest) = state.panes.back() {
            let until = newest.start + self.slide;
            self.emit_until(state, key, until, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Output;
    use super::super::test_support::{Harness, MINUTE, events};
    use crate::event::{Event, Value};

    fn field(h: &mut Harness, e: &Event, name: &str) -> Option<f64> {
        let id = h.field(name);
        e.num(id)
    }

    fn push(h: &mut Harness, key: &str, t: i64, temp: f64) -> Vec<Event> {
        events(h.push(key, t, &[("temp", Value::Num(temp))]))
    }

    #[test]
    fn tumbling_windows_close_when_the_clock_reaches_their_end() {
        let mut h = Harness::new(
            "window",
            "size: 1m\naggregates: {n: count(), avg: mean(temp)}\n",
        );
        assert!(push(&mut h, "a", 0, 1.0).is_empty());
        assert!(push(&mut h, "a", 59_999, 3.0).is_empty());
        // An event exactly at the boundary belongs to the next window.
        let out = push(&mut h, "a", MINUTE, 10.0);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time, MINUTE);
        assert_eq!(field(&mut h, &out[0], "n"), Some(2.0));
        assert_eq!(field(&mut h, &out[0], "avg"), Some(2.0));
        let out = events(h.end("a"));
        assert_eq!((out.len(), out[0].time), (1, 2 * MINUTE));
        assert_eq!(field(&mut h, &out[0], "avg"), Some(10.0));
    }

    #[test]
    fn an_event_older_than_an_emitted_window_is_rejected_as_late() {
        let mut h = Harness::new("window", "size: 1m\naggregates: {n: count()}\n");
        push(&mut h, "a", 0, 1.0);
        assert_eq!(push(&mut h, "a", 2 * MINUTE, 1.0).len(), 1);
        // Two inputs can interleave out of order; the first minute is out.
        let late = h.push("a", 30_000, &[("temp", Value::Num(1.0))]);
        match late.as_slice() {
            [Output::Reject(reason)] => assert!(
                reason
                    == "late: 30s before the end of a window already emitted (1970-01-01T00:01:00.000Z)",
                "{reason}"
            ),
            other => panic!("expected a rejection, got {other:?}"),
        }
        // The rejected event counted nowhere.
        let out = events(h.end("a"));
        assert_eq!(field(&mut h, &out[0], "n"), Some(1.0));
    }

    #[test]
    fn each_event_is_in_size_over_slide_sliding_windows() {
        let mut h = Harness::new(
            "window",
            "size: 3m\nslide: 1m\naggregates: {n: count(), s: sum(temp)}\n",
        );
        let mut out = push(&mut h, "a", 30_000, 1.0);
        out.extend(push(&mut h, "a", MINUTE + 30_000, 10.0));
        out.extend(push(&mut h, "a", 10 * MINUTE, 100.0));
        out.extend(events(h.end("a")));
        let mut ends = Vec::new();
        for e in out {
            ends.push((
                e.time / MINUTE,
                field(&mut h, &e, "n"),
                field(&mut h, &e, "s"),
            ));
        }
        assert_eq!(
            ends,
            [
                (1, Some(1.0), Some(1.0)),
                (2, Some(2.0), Some(11.0)),
                (3, Some(2.0), Some(11.0)),
                (4, Some(1.0), Some(10.0)),
                // At the end, only the window ending with the last pane.
                (11, Some(1.0), Some(100.0)),
            ]
        );
    }

    #[test]
    fn gaps_produce_no_empty_windows_and_keys_are_independent() {
        let mut h = Harness::new("window", "size: 1m\naggregates: {n: count()}\n");
        push(&mut h, "a", 0, 1.0);
        push(&mut h, "b", 0, 1.0);
        let out = push(&mut h, "a", 60 * MINUTE, 1.0);
        assert_eq!(out.len(), 1, "only the window that held data");
        assert_eq!(out[0].key, "a");
        assert_eq!(events(h.end("b")).len(), 1);
    }

    #[test]
    fn missing_fields_leave_aggregates_out_but_count_events() {
        let mut h = Harness::new(
            "window",
            "size: 1m\naggregates: {n: count(), nt: count(temp), avg: mean(temp)}\n",
        );
        h.push("a", 0, &[("other", Value::Num(1.0))]);
        let out = events(h.end("a"));
        assert_eq!(field(&mut h, &out[0], "n"), Some(1.0));
        assert_eq!(field(&mut h, &out[0], "nt"), Some(0.0));
        assert_eq!(field(&mut h, &out[0], "avg"), None);
    }

    #[test]
    fn sliding_percentiles_are_exact() {
        let mut h = Harness::new(
            "window",
            "size: 5m\nslide: 1m\naggregates: {p95: p95(temp), p50: p50(temp)}\n",
        );
        let mut all = Vec::new();
        let mut x = 7u64;
        let mut out = Vec::new();
        for i in 0..300 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (x >> 40) as f64 / 1e4;
            all.push((i * 1000, v));
            out.extend(push(&mut h, "a", i * 1000, v));
        }
        out.extend(events(h.end("a")));
        // The window [0, 5m) holds every reading.
        let full = out.iter().find(|e| e.time == 5 * MINUTE).unwrap();
        let values: Vec<f64> = all.iter().map(|p| p.1).collect();
        assert_eq!(
            field(&mut h, full, "p95"),
            super::super::aggregate::quantile(&values, 0.95)
        );
        assert_eq!(
            field(&mut h, full, "p50"),
            super::super::aggregate::quantile(&values, 0.5)
        );
        // The window [-1m, 4m) holds the readings before 240 s.
        let later = out.iter().find(|e| e.time == 4 * MINUTE).unwrap();
        let tail: Vec<f64> = all[..240].iter().map(|p| p.1).collect();
        assert_eq!(
            field(&mut h, later, "p95"),
            super::super::aggregate::quantile(&tail, 0.95)
        );
    }

    #[test]
    fn rejects_a_size_that_is_not_a_multiple_of_the_slide_and_bad_aggregates() {
        for bad in [
            "size: 5m\nslide: 2m\naggregates: {n: count()}\n",
            "size: 5m\naggregates: {}\n",
            "size: 5m\naggregates: {m: maen(temp)}\n",
            "size: 0\naggregates: {n: count()}\n",
        ] {
            assert!(Harness::try_new("window", bad).is_err(), "{bad}");
        }
    }
}
