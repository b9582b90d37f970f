//! `rolling`: statistics over each key's most recent readings, emitted with
//! every event.
//!
//! ```yaml
//! temp_trend:
//!   type: rolling
//!   inputs: [trucks]
//!   over: 15m            # or `last: 100` for the last 100 events
//!   aggregates: {temp_avg: mean(temperature_c), temp_slope: slope(temperature_c)}
//! ```
//!
//! For every input event the output is that event, with its fields, plus
//! one field per aggregate computed over the readings in `(t - over, t]`
//! (or the last `last` events, the current one included). Unlike a window
//! it answers at once, at the price of emitting an event per event.
//!
//! Statistics are kept incrementally: sums and moments are added and
//! removed, minimum and maximum come from monotonic queues, percentiles
//! from a sorted buffer. A key holds at most 100,000 readings; older ones
//! are dropped first, so a very high rate over a long `over` is bounded.

use super::aggregate::{self, Aggregates, Moments, Needs, Readings, Resolved};
use super::{BuildContext, Emits, Emitter, FieldRef, Keyed, KeyedOperator, Operator, OperatorSpec};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::Event;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Most readings one key keeps, whatever `over` or `last` say.
pub const MAX_READINGS: u64 = 100_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The readings of the last this long (event time), the current included.
    over: Option<Spanned<Duration>>,
    /// The last this many events, the current included.
    last: Option<Spanned<u64>>,
    /// Output field -> aggregate, like `temp_avg: mean(temperature_c)`.
    aggregates: Spanned<Aggregates>,
}

impl OperatorSpec for Config {
    fn reads(&self) -> Vec<FieldRef> {
        self.aggregates.reads()
    }

    fn emits(&self) -> Emits {
        Emits::Events {
            keeps_input: true,
            adds: self.aggregates.outputs(),
        }
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Aggregates::parse(&self.aggregates)
            .err()
            .unwrap_or_default();
        let span = match (&self.over, &self.last) {
            (None, None) => Some((
                self.aggregates.loc,
                "give `over` (a duration) or `last` (a count)",
            )),
            (Some(_), Some(last)) => Some((last.loc, "give `over` or `last`, not both")),
            (Some(over), None) if over.ms() <= 0 => {
                Some((over.loc, "`over` must be longer than 0"))
            }
            (None, Some(last)) if !(1..=MAX_READINGS).contains(&last.value) => {
                Some((last.loc, "`last` must be between 1 and 100000"))
            }
            _ => None,
        };
        problems.extend(span.map(|(loc, message)| ConfigError::at(loc, message)));
        problems
    }

    fn build(&self, ctx: &mut BuildContext) -> Box<dyn KeyedOperator> {
        let aggregates = Aggregates::parse(&self.aggregates).unwrap_or_default();
        let span = match (&self.over, &self.last) {
            (Some(over), _) => Span::Over(over.ms()),
            (None, last) => Span::Last(last.as_ref().map_or(1, |l| l.value)),
        };
        Keyed::boxed(Rolling {
            span,
            aggregates: Resolved::new(&aggregates, ctx),
        })
    }
}

#[derive(Clone, Copy, Debug)]
enum Span {
    /// Milliseconds of event time.
    Over(i64),
    /// Events.
    Last(u64),
}

#[derive(Clone, Debug)]
pub struct Rolling {
    span: Span,
    aggregates: Resolved,
}

/// One key's recent readings.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// Number of the next event.
    next: u64,
    /// (number, time) of the events in the span, oldest first.
    events: VecDeque<(u64, i64)>,
    /// One per tracked field.
    tracks: Vec<Track>,
}

/// A reading: event number, time, value.
type Reading = (u64, i64, f64);

/// The readings of one field in the span, with what the aggregates need.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Track {
    readings: VecDeque<Reading>,
    moments: Moments,
    /// Candidates for the minimum: values increase from front to back.
    minima: VecDeque<Reading>,
    /// Candidates for the maximum: values decrease from front to back.
    maxima: VecDeque<Reading>,
    /// Values in order, kept only for percentiles.
    sorted: Vec<f64>,
}

impl Track {
    fn push(&mut self, reading: Reading, needs: Needs) {
        let v = reading.2;
        self.readings.push_back(reading);
        self.moments.add(reading.1, v);
        if needs.extremes {
            while self.minima.back().is_some_and(|m| m.2 >= v) {
                self.minima.pop_back();
            }
            self.minima.push_back(reading);
            while self.maxima.back().is_some_and(|m| m.2 <= v) {
                self.maxima.pop_back();
            }
            self.maxima.push_back(reading);
        }
        if needs.values {
            let at = self.sorted.partition_point(|x| x.total_cmp(&v).is_lt());
            self.sorted.insert(at, v);
        }
    }

    /// Drops readings of events numbered below `first`.
    fn evict(&mut self, first: u64) {
        while let Some(&(n, t, v)) = self.readings.front() {
            if n >= first {
                break;
            }
            self.readings.pop_front();
            self.moments.remove(t, v);
            if !self.sorted.is_empty()
                && let Ok(at) = self.sorted.binary_search_by(|x| x.total_cmp(&v))
            {
                self.sorted.remove(at);
            }
        }
        for queue in [&mut self.minima, &mut self.maxima] {
            while queue.front().is_some_and(|r| r.0 < first) {
                queue.pop_front();
            }
        }
    }
}

impl Readings for Track {
    fn moments(&self) -> &Moments {
        &self.moments
    }
    fn min(&self) -> Option<f64> {
        self.minima.front().map(|r| r.2)
    }
    fn max(&self) -> Option<f64> {
        self.maxima.front().map(|r| r.2)
    }
    fn first(&self) -> Option<(i64, f64)> {
        self.readings.front().map(|r| (r.1, r.2))
    }
    fn last(&self) -> Option<(i64, f64)> {
        self.readings.back().map(|r| (r.1, r.2))
    }
    fn values(&self) -> &[f64] {
        &self.sorted
    }
    fn quantile(&self, q: f64) -> Option<f64> {
        aggregate::quantile_sorted(&self.sorted, q)
    }
}

impl Rolling {
    /// Number of the oldest event still in the span once event `n` at `t`
    /// has arrived.
    fn first_kept(&self, state: &State, n: u64, t: i64) -> u64 {
        let by_cap = (n + 1).saturating_sub(MAX_READINGS);
        let by_span = match self.span {
            Span::Last(count) => (n + 1).saturating_sub(count),
            Span::Over(ms) => {
                let cutoff = t - ms;
                let older = state
                    .events
                    .iter()
                    .take_while(|(_, time)| *time <= cutoff)
                    .count();
                state.events.get(older).map_or(n, |(k, _)| *k)
            }
        };
        by_cap.max(by_span)
    }
}

impl Operator for Rolling {
    type State = State;

    fn on_event(&self, state: &mut State, event: &Event, out: &mut Emitter) {
        let (n, t) = (state.next, event.time);
        state.next += 1;
        state.events.push_back((n, t));
        let inputs = &self.aggregates.inputs;
        state.tracks.resize_with(inputs.len(), Track::default);
        for (track, &(field, needs)) in state.tracks.iter_mut().zip(inputs.iter()) {
            if let Some(v) = event.num(field) {
                track.push((n, t, v), needs);
            }
        }
        let first = self.first_kept(state, n, t);
        while state.events.front().is_some_and(|(k, _)| *k < first) {
            state.events.pop_front();
        }
        state.tracks.iter_mut().for_each(|track| track.evict(first));

        let mut output = event.clone();
        let readings = |i: usize| &state.tracks[i] as &dyn Readings;
        self.aggregates
            .fill(&mut output, readings, state.events.len() as u64);
        out.event(output);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, events};
    use crate::event::{Event, Value};

    fn push(h: &mut Harness, t: i64, temp: Option<f64>) -> Event {
        let fields: Vec<_> = temp.map(|v| ("temp", Value::Num(v))).into_iter().collect();
        let mut out = events(h.push("a", t, &fields));
        assert_eq!(out.len(), 1, "one output per input");
        out.remove(0)
    }

    fn get(h: &mut Harness, e: &Event, name: &str) -> Option<f64> {
        let id = h.field(name);
        e.num(id)
    }

    #[test]
    fn duration_span_excludes_readings_at_or_before_t_minus_over() {
        let mut h = Harness::new(
            "rolling",
            "over: 10s\naggregates: {n: count(), s: sum(temp), lo: min(temp), hi: max(temp)}\n",
        );
        let expect = [
            (0, 5.0, (1.0, 5.0, 5.0, 5.0)),
            (4_000, 1.0, (2.0, 6.0, 1.0, 5.0)),
            (10_000, 3.0, (2.0, 4.0, 1.0, 3.0)),
            (14_000, 2.0, (2.0, 5.0, 2.0, 3.0)),
            (30_000, 9.0, (1.0, 9.0, 9.0, 9.0)),
        ];
        for (t, v, (n, s, lo, hi)) in expect {
            let e = push(&mut h, t, Some(v));
            let got = (
                get(&mut h, &e, "n"),
                get(&mut h, &e, "s"),
                get(&mut h, &e, "lo"),
                get(&mut h, &e, "hi"),
            );
            assert_eq!(got, (Some(n), Some(s), Some(lo), Some(hi)), "at {t}");
        }
    }

    #[test]
    fn count_span_keeps_the_last_n_events_and_the_input_fields() {
        let mut h = Harness::new(
            "rolling",
            "last: 3\naggregates: {avg: mean(temp), first: first(temp), n: count(temp)}\n",
        );
        let mut last = None;
        for (i, v) in [1.0, 2.0, 3.0, 4.0, 10.0].into_iter().enumerate() {
            last = Some(push(&mut h, i as i64 * 1000, Some(v)));
        }
        let e = last.unwrap();
        assert_eq!(get(&mut h, &e, "avg"), Some(17.0 / 3.0));
        assert_eq!(get(&mut h, &e, "first"), Some(3.0));
        assert_eq!(
            get(&mut h, &e, "temp"),
            Some(10.0),
            "the input's fields are kept"
        );
        // An event without the field still counts towards `last`.
        let e = push(&mut h, 5000, None);
        assert_eq!(get(&mut h, &e, "n"), Some(2.0));
    }

    #[test]
    fn min_max_and_percentiles_follow_evictions_exactly() {
        let mut h = Harness::new(
            "rolling",
            "last: 50\naggregates: {lo: min(temp), hi: max(temp), p90: p90(temp), sd: stddev(temp)}\n",
        );
        let mut all = Vec::new();
        let mut x = 99u64;
        for i in 0..500 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((x >> 33) % 1000) as f64 / 10.0;
            all.push(v);
            let e = push(&mut h, i * 100, Some(v));
            let window = &all[all.len().saturating_sub(50)..];
            let lo = window.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = window.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            assert_eq!(get(&mut h, &e, "lo"), Some(lo), "min at {i}");
            assert_eq!(get(&mut h, &e, "hi"), Some(hi), "max at {i}");
            assert_eq!(
                get(&mut h, &e, "p90"),
                super::aggregate::quantile(window, 0.9),
                "p90 at {i}"
            );
            if window.len() > 1 {
                let mean = window.iter().sum::<f64>() / window.len() as f64;
                let var = window.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
                    / (window.len() - 1) as f64;
                let sd = get(&mut h, &e, "sd").unwrap();
                assert!(
                    (sd - var.sqrt()).abs() < 1e-9,
                    "stddev at {i}: {sd} vs {}",
                    var.sqrt()
                );
            }
        }
    }

    #[test]
    fn slope_and_rate_over_a_ramp() {
        let mut h = Harness::new(
            "rolling",
            "over: 1h\naggregates: {slope: slope(temp), rate: rate(temp)}\n",
        );
        let mut e = push(&mut h, 0, Some(2.0));
        assert_eq!(get(&mut h, &e, "slope"), None);
        for i in 1..=30 {
            e = push(&mut h, i * 60_000, Some(2.0 + 0.1 * i as f64));
        }
        let per_second = 0.1 / 60.0;
        assert!((get(&mut h, &e, "slope").unwrap() - per_second).abs() < 1e-12);
        assert!((get(&mut h, &e, "rate").unwrap() - per_second).abs() < 1e-12);
    }

    #[test]
    fn needs_exactly_one_span() {
        for bad in [
            "aggregates: {n: count()}\n",
            "over: 1m\nlast: 3\naggregates: {n: count()}\n",
            "last: 0\naggregates: {n: count()}\n",
            "over: 1m\naggregates: {n: cnt()}\n",
        ] {
            assert!(Harness::try_new("rolling", bad).is_err(), "{bad}");
        }
    }
}
