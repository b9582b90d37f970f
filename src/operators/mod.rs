//! Operators: keyed, event-time computations over telemetry.
//!
//! An operator is synchronous and sees one key at a time. It gets that key's
//! state and an event, and emits events or alerts; it never reads a clock,
//! so a replay gives the same output as the live run. The runtime owns the
//! state of every key (see [`KeyedOperator`]), which is what lets later
//! versions checkpoint it and move it between machines.
//!
//! Adding an operator: write `operators/<name>.rs` with a `Config` that
//! implements [`OperatorSpec`] and an operator that implements [`Operator`],
//! then add one line to [`REGISTRY`].

pub mod absence;
mod aggregate;
mod alerting;
pub mod anomaly;
pub mod dedup;
mod expr;
pub mod filter;
pub mod forecast;
pub mod jump;
pub mod notify;
pub mod rolling;
pub mod threshold;
pub mod window;

use crate::config::{ConfigError, Loc, Node, Registry, Spanned, from_node};
use crate::event::{Alert, Event, FieldId, Key, Schema};
use crate::state::codec::{self, CodecError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Every operator type, by the name pipelines use in `type:`.
pub const REGISTRY: Registry<dyn OperatorSpec> = Registry {
    section: "operator",
    built: &[
        ("filter", spec::<filter::Config>),
        ("threshold", alerting::spec::<threshold::Config>),
        ("window", spec::<window::Config>),
        ("rolling", spec::<rolling::Config>),
        ("forecast", alerting::spec::<forecast::Config>),
        ("absence", alerting::spec::<absence::Config>),
        ("anomaly", alerting::spec::<anomaly::Config>),
        ("jump", alerting::spec::<jump::Config>),
        ("dedup", spec::<dedup::Config>),
    ],
};

fn spec<C: OperatorSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Box<dyn OperatorSpec>, Vec<ConfigError>> {
    let config: C = from_node(node)?;
    checked(Box::new(config))
}

/// A parsed spec, once it passes its own [`check`](OperatorSpec::check).
fn checked(spec: Box<dyn OperatorSpec>) -> Result<Box<dyn OperatorSpec>, Vec<ConfigError>> {
    match spec.check() {
        problems if problems.is_empty() => Ok(spec),
        problems => Err(problems),
    }
}

/// An operator's configuration, as deserialized from its pipeline entry.
pub trait OperatorSpec: Debug + Send + Sync {
    /// Fields of its input the operator reads, with where they are named;
    /// validation checks each against what the inputs produce.
    fn reads(&self) -> Vec<FieldRef>;

    /// What the operator sends downstream.
    fn emits(&self) -> Emits;

    /// Whether it raises alerts: those that emit only alerts do, and an
    /// operator that emits events may raise alerts besides (`anomaly`).
    fn alerts(&self) -> bool {
        self.emits() == Emits::Alerts
    }

    /// Checks what serde cannot: combinations of options, value ranges.
    fn check(&self) -> Vec<ConfigError> {
        Vec::new()
    }

    /// The rule whose firing holds this one's notifications back
    /// (`inhibit_when`), if any.
    fn inhibited_by(&self) -> Option<&Spanned<String>> {
        None
    }

    /// Builds the running operator (with no key state yet).
    fn build(&self, ctx: &mut BuildContext) -> Box<dyn KeyedOperator>;
}

/// A field name an operator reads, and where the pipeline file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRef {
    pub name: String,
    pub loc: Loc,
}

impl FieldRef {
    /// The fields an operator names in its options.
    pub fn named(fields: &[&Spanned<String>]) -> Vec<FieldRef> {
        fields
            .iter()
            .map(|f| FieldRef {
                name: f.value.clone(),
                loc: f.loc,
            })
            .collect()
    }
}

/// What an operator's output is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Emits {
    /// Alert episodes; only sinks take them.
    Alerts,
    /// Events, which other operators and sinks can take.
    Events {
        /// The output keeps the input's fields (filter, rolling).
        keeps_input: bool,
        /// Fields the operator adds (a window's aggregates).
        adds: Vec<String>,
    },
}

/// What an operator needs to know about the pipeline to build itself.
pub struct BuildContext<'a> {
    pub pipeline: &'a str,
    /// The operator's id: the `rule` of its alerts.
    pub id: &'a str,
    pub schema: &'a mut Schema,
    /// Which rules fire for which keys, for `inhibit_when`.
    pub firing: &'a std::sync::Arc<notify::Firing>,
}

impl BuildContext<'_> {
    /// The id of a field the operator reads or writes.
    pub fn field(&mut self, name: &str) -> FieldId {
        self.schema.intern(name)
    }

    /// The id of a field the operator reads as a number: the decoder rejects
    /// records where it is not one.
    pub fn numeric_field(&mut self, name: &str) -> FieldId {
        self.schema.intern_numeric(name)
    }
}

/// A running operator: its logic, without any key's state.
pub trait Operator: Clone + Send + 'static {
    /// What the operator remembers about one key. Plain data, so the runtime
    /// can checkpoint it and move it with its key.
    type State: Default + Serialize + DeserializeOwned + Send + 'static;

    /// Handles one event of `event.key`. Events of one key arrive in event
    /// time order; `event.time` is that key's clock.
    fn on_event(&self, state: &mut Self::State, event: &Event, out: &mut Emitter);

    /// The input has ended: emit what would otherwise wait for more data
    /// (open windows).
    fn on_end(&self, _state: &mut Self::State, _key: &Key, _out: &mut Emitter) {}

    /// Whether the operator keeps time between events (and so gets
    /// [`on_tick`](Self::on_tick) for every key about once a second).
    const TICKS: bool = false;

    /// The clock reads `now` (wall clock when live, the event time seen so
    /// far in a replay); called for every key the worker knows.
    fn on_tick(&self, _state: &mut Self::State, _key: &Key, _now: i64, _out: &mut Emitter) {}
}

/// Where operators put what they produce.
#[derive(Default, Debug)]
pub struct Emitter {
    pub(crate) outputs: Vec<Output>,
}

#[derive(Debug)]
pub enum Output {
    Event(Event),
    /// The input event, passed on unchanged (without copying it).
    Pass,
    Alert(Alert),
    /// The input event cannot be used, for this reason: the runtime
    /// dead-letters it.
    Reject(String),
}

impl Emitter {
    pub fn event(&mut self, event: Event) {
        self.outputs.push(Output::Event(event));
    }

    /// Passes the event being handled on, unchanged.
    pub fn pass(&mut self) {
        self.outputs.push(Output::Pass);
    }

    pub fn alert(&mut self, alert: Alert) {
        self.outputs.push(Output::Alert(alert));
    }

    /// Sends the event being handled to the dead-letter sink with `reason`.
    pub fn reject(&mut self, reason: String) {
        self.outputs.push(Output::Reject(reason));
    }
}

/// An operator together with the state of each key one worker owns.
/// Keys are numbered by the worker (slots), so an event costs one hash
/// lookup per worker, not one per operator.
pub trait KeyedOperator: Send {
    fn on_event(&mut self, slot: usize, event: &Event, out: &mut Emitter);
    fn on_end(&mut self, slot: usize, key: &Key, out: &mut Emitter);
    fn ticks(&self) -> bool;
    fn on_tick(&mut self, slot: usize, key: &Key, now: i64, out: &mut Emitter);
    /// The same operator with no state, for another worker.
    fn fork(&self) -> Box<dyn KeyedOperator>;
    /// Appends the encoded state of `slot` to `buf`, for a checkpoint.
    fn save(&self, slot: usize, buf: &mut Vec<u8>) -> Result<(), CodecError>;
    /// Sets the state of `slot` from what [`save`](Self::save) wrote.
    fn restore(&mut self, slot: usize, bytes: &[u8]) -> Result<(), CodecError>;
    /// Forgets the state of `slot`, and moves the state of `last` (the
    /// highest slot in use) into it.
    fn remove(&mut self, slot: usize, last: usize);
}

/// The [`KeyedOperator`] for any [`Operator`].
pub struct Keyed<O: Operator> {
    operator: O,
    states: Vec<O::State>,
}

impl<O: Operator> Keyed<O> {
    pub fn boxed(operator: O) -> Box<dyn KeyedOperator> {
        Box::new(Keyed {
            operator,
            states: Vec::new(),
        })
    }
}

/// The state of `slot`, made (as new) if the key has none yet.
fn state_of<S: Default>(states: &mut Vec<S>, slot: usize) -> &mut S {
    if slot >= states.len() {
        states.resize_with(slot + 1, Default::default);
    }
    &mut states[slot]
}

impl<O: Operator> KeyedOperator for Keyed<O> {
    fn on_event(&mut self, slot: usize, event: &Event, out: &mut Emitter) {
        let state = state_of(&mut self.states, slot);
        self.operator.on_event(state, event, out);
    }

    fn on_end(&mut self, slot: usize, key: &Key, out: &mut Emitter) {
        if slot < self.states.len() {
            self.operator.on_end(&mut self.states[slot], key, out);
        }
    }

    fn ticks(&self) -> bool {
        O::TICKS
    }

    fn on_tick(&mut self, slot: usize, key: &Key, now: i64, out: &mut Emitter) {
        let state = state_of(&mut self.states, slot);
        self.operator.on_tick(state, key, now, out);
    }

    fn fork(&self) -> Box<dyn KeyedOperator> {
        Keyed::boxed(self.operator.clone())
    }

    fn save(&self, slot: usize, buf: &mut Vec<u8>) -> Result<(), CodecError> {
        match self.states.get(slot) {
            Some(state) => codec::encode_into(state, buf),
            None => codec::encode_into(&O::State::default(), buf),
        }
    }

    fn restore(&mut self, slot: usize, bytes: &[u8]) -> Result<(), CodecError> {
        *state_of(&mut self.states, slot) = codec::decode(bytes)?;
        Ok(())
    }

    fn remove(&mut self, slot: usize, last: usize) {
        state_of(&mut self.states, last);
        self.states.swap_remove(slot);
        self.states.truncate(last);
    }
}

/// Drives one operator by hand, for the operators' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::config::{Spanned, yaml};
    use crate::event::{AlertState, Value};
    use std::collections::HashMap;

    pub const MINUTE: i64 = 60_000;

    pub struct Harness {
        pub operator: Box<dyn KeyedOperator>,
        pub schema: Schema,
        slots: HashMap<String, usize>,
    }

    impl Harness {
        /// Builds operator `type_name` from the YAML of its options.
        pub fn new(type_name: &str, options: &str) -> Harness {
            Harness::try_new(type_name, options).unwrap_or_else(|e| panic!("{e:?}"))
        }

        pub fn try_new(type_name: &str, options: &str) -> Result<Harness, Vec<ConfigError>> {
            let node = yaml::parse(options)?;
            let type_name = Spanned {
                value: type_name.to_string(),
                loc: Loc::default(),
            };
            let spec = REGISTRY.parse(&type_name, &node)?;
            let mut schema = Schema::default();
            let operator = spec.build(&mut BuildContext {
                pipeline: "test",
                id: "rule",
                schema: &mut schema,
                firing: &Default::default(),
            });
            Ok(Harness {
                operator,
                schema,
                slots: HashMap::new(),
            })
        }

        fn slot(&mut self, key: &str) -> usize {
            let next = self.slots.len();
            *self.slots.entry(key.to_string()).or_insert(next)
        }

        pub fn field(&mut self, name: &str) -> FieldId {
            self.schema.intern(name)
        }

        /// Feeds one event; returns everything emitted.
        pub fn push(&mut self, key: &str, time: i64, fields: &[(&str, Value)]) -> Vec<Output> {
            let mut event = Event::new(key.into(), time);
            for (name, value) in fields {
                let id = self.field(name);
                event.set(id, value.clone());
            }
            let slot = self.slot(key);
            let mut out = Emitter::default();
            self.operator.on_event(slot, &event, &mut out);
            // Resolve passes here, as the runtime does.
            let outputs = out.outputs.into_iter();
            outputs
                .map(|o| match o {
                    Output::Pass => Output::Event(event.clone()),
                    other => other,
                })
                .collect()
        }

        /// Feeds one event of numeric fields; returns the alerts emitted.
        pub fn feed(&mut self, key: &str, time: i64, fields: &[(&str, f64)]) -> Vec<Alert> {
            let fields: Vec<_> = fields.iter().map(|(n, v)| (*n, Value::Num(*v))).collect();
            alerts(self.push(key, time, &fields))
        }

        /// Feeds `values` of field `temp` at `step` intervals from time 0;
        /// returns (state, event time, value) of each alert.
        pub fn alerts_for_series(
            &mut self,
            key: &str,
            values: &[f64],
            step: i64,
        ) -> Vec<(AlertState, i64, f64)> {
            let mut seen = Vec::new();
            for (i, v) in values.iter().enumerate() {
                for a in self.feed(key, i as i64 * step, &[("temp", *v)]) {
                    seen.push((a.state, a.event_time, a.value));
                }
            }
            seen
        }

        /// Runs `key`'s timers at `now`; returns everything emitted.
        pub fn tick(&mut self, key: &str, now: i64) -> Vec<Output> {
            let slot = self.slot(key);
            let mut out = Emitter::default();
            self.operator.on_tick(slot, &key.into(), now, &mut out);
            out.outputs
        }

        /// Signals the end of input for `key`; returns everything emitted.
        pub fn end(&mut self, key: &str) -> Vec<Output> {
            let slot = self.slot(key);
            let mut out = Emitter::default();
            self.operator.on_end(slot, &key.into(), &mut out);
            out.outputs
        }

        /// Every key's state, encoded as a checkpoint keeps it.
        pub fn save(&self) -> Vec<(String, Vec<u8>)> {
            let mut saved: Vec<_> = (self.slots.iter())
                .map(|(key, &slot)| {
                    let mut buf = Vec::new();
                    self.operator.save(slot, &mut buf).expect("state encodes");
                    (key.clone(), buf)
                })
                .collect();
            saved.sort();
            saved
        }

        /// Sets every key's state from [`save`](Self::save).
        pub fn restore(&mut self, saved: &[(String, Vec<u8>)]) {
            for (key, bytes) in saved {
                let slot = self.slot(key);
                self.operator.restore(slot, bytes).expect("state decodes");
            }
        }
    }

    /// Feeds `steps` random readings of `temp` (and `lat`/`lon`, `mode`)
    /// over three keys to `harness`, with timer ticks and an end; when
    /// `restart_at` is reached, continues on a fresh harness restored from
    /// the first one's state. Returns everything emitted, as text.
    pub fn run_with_restart(
        type_name: &str,
        options: &str,
        seed: u64,
        steps: usize,
        restart_at: Option<usize>,
    ) -> Vec<String> {
        let mut rng = crate::rng::Rng::new(seed);
        let mut h = Harness::new(type_name, options);
        let mut seen = Vec::new();
        let mut time = 1_795_000_000_000i64;
        let keys = ["k1", "k2", "k3"];
        // Each key runs hot in spells, so conditions hold for a while.
        let mut hot = [false; 3];
        for step in 0..steps {
            if restart_at == Some(step) {
                let saved = h.save();
                h = Harness::new(type_name, options);
                h.restore(&saved);
            }
            time += rng.range(0.0, 20_000.0) as i64;
            let k = rng.range(0.0, 3.0) as usize % 3;
            let key = keys[k];
            hot[k] ^= rng.range(0.0, 1.0) < 0.08;
            let drift = if hot[k] { 6.0 } else { 0.0 };
            let fields = [
                ("temp", Value::Num(3.0 + drift + rng.range(-1.0, 1.0))),
                ("lat", Value::Num(52.0 + rng.range(0.0, 0.5))),
                ("lon", Value::Num(4.0 + rng.range(0.0, 0.5))),
                (
                    "mode",
                    Value::Str(if rng.range(0.0, 1.0) < 0.5 { "a" } else { "b" }.into()),
                ),
            ];
            seen.extend(h.push(key, time, &fields).iter().map(|o| format!("{o:?}")));
            if step % 7 == 0 {
                for key in keys {
                    seen.extend(h.tick(key, time).iter().map(|o| format!("{o:?}")));
                }
            }
        }
        for key in keys {
            seen.extend(h.end(key).iter().map(|o| format!("{o:?}")));
        }
        seen
    }

    /// Every operator, restored from a snapshot taken mid-stream, goes on
    /// exactly as it would have without the restart.
    #[test]
    fn every_operator_continues_identically_after_a_restore() {
        let cases = [
            ("filter", "condition: temp > 5 && mode == \"a\"\n"),
            (
                "threshold",
                "field: temp\nabove: 6\nfor: 1m\nclear_below: 5\n",
            ),
            (
                "window",
                "size: 5m\nslide: 1m\naggregates: {n: count(), m: mean(temp), p: p95(temp), s: stddev(temp), l: last(temp), r: slope(temp)}\n",
            ),
            (
                "window",
                "size: 2m\naggregates: {n: count(), lo: min(temp), hi: max(temp)}\n",
            ),
            (
                "rolling",
                "over: 5m\naggregates: {m: mean(temp), p: p50(temp)}\n",
            ),
            ("rolling", "last: 10\naggregates: {s: stddev(temp)}\n"),
            (
                "forecast",
                "field: temp\nlimit: 8\nhorizon: 15m\nwarmup: 2m\n",
            ),
            ("absence", "timeout: 30s\n"),
            (
                "anomaly",
                "field: temp\nmethod: zscore\nwarmup: 5m\nthreshold: 3\n",
            ),
            (
                "anomaly",
                "field: temp\nmethod: ewma\nwarmup: 5m\nthreshold: 3\nby: mode\n",
            ),
            (
                "anomaly",
                "field: temp\nmethod: mad\nwarmup: 5m\nthreshold: 3\n",
            ),
            (
                "anomaly",
                "field: temp\nmethod: cusum\nwarmup: 5m\nthreshold: 3\nexplain: lat\n",
            ),
            ("jump", "max_speed_kmh: 100\n"),
            ("dedup", "field: temp\nttl: 2m\nmax_ids: 5\n"),
        ];
        for (type_name, options) in cases {
            for seed in 0..8 {
                let whole = run_with_restart(type_name, options, seed, 600, None);
                assert!(!whole.is_empty(), "{type_name}: no output at all");
                let at = 50 + (seed as usize * 67) % 500;
                let restarted = run_with_restart(type_name, options, seed, 600, Some(at));
                assert!(
                    whole == restarted,
                    "{type_name} ({options}) seed {seed}: output differs after a restore at step {at}"
                );
            }
        }
    }

    pub fn alerts(outputs: Vec<Output>) -> Vec<Alert> {
        outputs
            .into_iter()
            .filter_map(|o| match o {
                Output::Alert(a) => Some(a),
                _ => None,
            })
            .collect()
    }

    pub fn events(outputs: Vec<Output>) -> Vec<Event> {
        outputs
            .into_iter()
            .filter_map(|o| match o {
                Output::Event(e) => Some(e),
                _ => None,
            })
            .collect()
    }
}
