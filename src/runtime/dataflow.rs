//! The compiled pipeline: who feeds whom, and the operators ready to fork
//! onto workers.

use super::field_watch::FieldWatch;
use crate::config::Pipeline;
use crate::event::decode::Decoder;
use crate::event::{Event, FieldId, Schema, Value};
use crate::operators::notify::Firing;
use crate::operators::{BuildContext, Emits, KeyedOperator};
use crate::state::Component;
use std::collections::HashMap;
use std::sync::Arc;

/// The pipeline's graph, numbered. Components are the sources, then the
/// operators in topological order, so an operator's number is always higher
/// than those of its inputs.
#[derive(Debug)]
pub struct Dataflow {
    pub pipeline: Arc<str>,
    pub schema: Arc<Schema>,
    /// Component ids, as written in the pipeline file.
    pub names: Vec<Arc<str>>,
    pub sources: usize,
    /// Per component: the operators that take its output, in order.
    pub downstream: Vec<Vec<usize>>,
    /// Per component: the sinks that take its events.
    pub sinks: Vec<Vec<usize>>,
    /// Per component: the sinks that take its alerts.
    pub alert_sinks: Vec<Vec<usize>>,
    /// Per component: whether it raises alerts.
    pub alerting: Vec<bool>,
    /// Per component: its id and definition's fingerprint, as checkpoints
    /// name it.
    pub components: Vec<Component>,
    /// Per source: `max_out_of_orderness` in ms.
    pub max_ooo: Vec<i64>,
    /// Per source: `max_future` in ms.
    pub max_future: Vec<i64>,
    /// Per source: `idle_timeout` in ms.
    pub idle_timeout: Vec<Option<i64>>,
    /// Per source: `max_keys`.
    pub max_keys: Vec<Option<usize>>,
    /// Some source delivers at the pace of the world: operators' timers
    /// run on the wall clock. Otherwise (recordings replayed as fast as
    /// possible) they run on the event time the workers have seen.
    pub live: bool,
    /// Per source: the field holding its events' correlation id.
    pub trace: Vec<Option<FieldId>>,
    /// Per source: whether it connects to a broker (see
    /// [`SourceSpec::connects`](crate::sources::SourceSpec::connects)).
    pub connects: Vec<bool>,
    /// Per source: its keys' state is kept per input partition in a
    /// changelog (see [`SourceSpec::changelog`](crate::sources::SourceSpec::changelog)).
    pub changelog: Vec<bool>,
}

impl Dataflow {
    /// The correlation id an event carries, from its source's `trace`
    /// field: a W3C `traceparent` (`00-TRACE_ID-SPAN_ID-FLAGS`) gives its
    /// trace id, any other string or number is the id itself.
    pub fn trace_id(&self, event: &Event) -> Option<String> {
        let field = (*self.trace.get(event.origin.source as usize)?)?;
        let id = match event.get(field)? {
            Value::Str(text) => text.to_string(),
            Value::Num(n) => serde_json::to_string(&Value::Num(*n)).ok()?,
            Value::Bool(_) => return None,
        };
        let parts: Vec<&str> = id.split('-').collect();
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parts[..] {
            [version, trace, span, flags]
                if hex(version, 2) && hex(trace, 32) && hex(span, 16) && hex(flags, 2) =>
            {
                Some(trace.to_string())
            }
            _ => Some(id),
        }
    }
}

/// A pipeline built and ready to run, before any I/O is opened.
pub struct Plan {
    pub flow: Dataflow,
    /// The operators, in component order (component `sources + i`).
    pub operators: Vec<Box<dyn KeyedOperator>>,
    /// One decoder per source.
    pub decoders: Vec<Decoder>,
    /// Per source: the fields read from its events, to warn about those
    /// that never come.
    pub watches: Vec<FieldWatch>,
}

impl Plan {
    /// Builds a validated pipeline.
    pub fn new(p: &Pipeline) -> Plan {
        let order = p.operator_order();
        let mut schema = Schema::default();
        let inhibitors = (p.operators.iter()).filter_map(|o| o.spec.inhibited_by());
        let firing = Firing::tracking(inhibitors.map(|rule| rule.value.as_str()));
        let operators: Vec<_> = order
            .iter()
            .map(|&i| {
                let def = &p.operators[i];
                def.spec.build(&mut BuildContext {
                    pipeline: &p.name,
                    id: &def.id,
                    schema: &mut schema,
                    firing: &firing,
                })
            })
            .collect();
        let names: Vec<Arc<str>> = p
            .sources
            .iter()
            .map(|s| s.id.as_str())
            .chain(order.iter().map(|&i| p.operators[i].id.as_str()))
            .map(Arc::from)
            .collect();
        let fingerprints = (p.sources.iter().map(|s| s.fingerprint))
            .chain(order.iter().map(|&i| p.operators[i].fingerprint));
        let components = (names.iter().zip(fingerprints))
            .map(|(id, fingerprint)| Component {
                id: id.to_string(),
                fingerprint,
            })
            .collect();
        let number: HashMap<&str, usize> = names
            .iter()
            .enumerate()
            .map(|(c, n)| (n.as_ref(), c))
            .collect();
        let inputs_of = |inputs: &[crate::config::Spanned<String>]| -> Vec<usize> {
            inputs
                .iter()
                .filter_map(|i| number.get(i.as_str()).copied())
                .collect()
        };
        let mut downstream = vec![Vec::new(); names.len()];
        for (k, &i) in order.iter().enumerate() {
            for input in inputs_of(&p.operators[i].inputs) {
                downstream[input].push(p.sources.len() + k);
            }
        }
        let mut sinks = vec![Vec::new(); names.len()];
        for (k, sink) in p.sinks.iter().enumerate() {
            for input in inputs_of(&sink.inputs) {
                sinks[input].push(k);
            }
        }
        let alerting = (0..p.sources.len())
            .map(|_| false)
            .chain(order.iter().map(|&i| p.operators[i].spec.alerts()))
            .collect();
        let trace = (p.sources.iter())
            .map(|s| s.common.trace.as_ref().map(|f| schema.intern(f)))
            .collect();
        let decoders = p
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| Decoder::new(s.common.decode_spec(), &schema, i as u16))
            .collect();
        let watches = (p.sources.iter().zip(p.source_reads()))
            .map(|(s, mut reads)| {
                // The key and time fields are taken as such, never as fields.
                let consumed =
                    [&s.common.key, &s.common.time].map(|c| c.as_ref().map(|c| c.as_str()));
                reads.retain(|(f, _)| !consumed.contains(&Some(f.as_str())));
                FieldWatch::new(&s.id, reads, &schema)
            })
            .collect();
        // An operator that scores every reading and raises alerts (anomaly)
        // gives sinks its alerts; its scored readings go on to operators
        // (a filter after it writes them to a sink).
        let alert_sinks = sinks.clone();
        let scores_only_downstream = order.iter().map(|&i| {
            let spec = &p.operators[i].spec;
            spec.alerts() && spec.emits() != Emits::Alerts
        });
        for (c, quiet) in (p.sources.len()..).zip(scores_only_downstream) {
            if quiet {
                sinks[c].clear();
            }
        }
        Plan {
            flow: Dataflow {
                pipeline: p.name.as_str().into(),
                schema: Arc::new(schema),
                names,
                sources: p.sources.len(),
                downstream,
                alert_sinks,
                sinks,
                alerting,
                components,
                max_ooo: p
                    .sources
                    .iter()
                    .map(|s| s.common.max_out_of_orderness.ms())
                    .collect(),
                max_future: p.sources.iter().map(|s| s.common.max_future.ms()).collect(),
                idle_timeout: (p.sources.iter())
                    .map(|s| s.common.idle_timeout.map(|d| d.ms()))
                    .collect(),
                max_keys: p.sources.iter().map(|s| s.common.max_keys).collect(),
                live: p.sources.iter().any(|s| s.spec.live()),
                connects: p.sources.iter().map(|s| s.spec.connects()).collect(),
                changelog: p.sources.iter().map(|s| s.spec.changelog()).collect(),
                trace,
            },
            operators,
            decoders,
            watches,
        }
    }

    /// No warnings about fields that never come: a pipeline test's few
    /// records need not carry every field.
    pub fn unwatch_fields(&mut self) {
        self.watches
            .iter_mut()
            .for_each(|w| *w = FieldWatch::default());
    }

    /// Sends every alert to sink 0 and nothing else anywhere: how pipeline
    /// tests collect what the rules raise.
    pub fn collect_alerts_only(&mut self) {
        for (component, sinks) in self.flow.alert_sinks.iter_mut().enumerate() {
            *sinks = if self.flow.alerting[component] {
                vec![0]
            } else {
                Vec::new()
            };
        }
        self.flow.sinks.iter_mut().for_each(Vec::clear);
    }
}
