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
pub mod rolling;
pub mod threshold;
pub mod window;

use crate::config::{ConfigError, Loc, Node, Registry, from_node};
use crate::event::{Alert, Event, FieldId, Key, Schema};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Every operator type, by the name pipelines use in `type:`.
pub const REGISTRY: Registry<dyn OperatorSpec> = Registry {
    section: "operator",
    built: &[
        ("filter", spec::<filter::Config>),
        ("threshold", spec::<threshold::Config>),
        ("window", spec::<window::Config>),
        ("rolling", spec::<rolling::Config>),
        ("forecast", spec::<forecast::Config>),
        ("absence", spec::<absence::Config>),
        ("anomaly", spec::<anomaly::Config>),
        ("jump", spec::<jump::Config>),
        ("dedup", spec::<dedup::Config>),
    ],
    planned: &[],
};

fn spec<C: OperatorSpec + DeserializeOwned + 'static>(
    node: &Node,
) -> Result<Box<dyn OperatorSpec>, Vec<ConfigError>> {
    let config: C = from_node(node).map_err(|e| vec![e])?;
    let problems = config.check();
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Box::new(config))
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

    /// Builds the running operator (with no key state yet).
    fn build(&self, ctx: &mut BuildContext) -> Box<dyn KeyedOperator>;
}

/// A field name an operator reads, and where the pipeline file names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRef {
    pub name: String,
    pub loc: Loc,
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

impl<O: Operator> KeyedOperator for Keyed<O> {
    fn on_event(&mut self, slot: usize, event: &Event, out: &mut Emitter) {
        if slot >= self.states.len() {
            self.states.resize_with(slot + 1, Default::default);
        }
        self.operator.on_event(&mut self.states[slot], event, out);
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
        if slot >= self.states.len() {
            self.states.resize_with(slot + 1, Default::default);
        }
        self.operator.on_tick(&mut self.states[slot], key, now, out);
    }

    fn fork(&self) -> Box<dyn KeyedOperator> {
        Keyed::boxed(self.operator.clone())
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
