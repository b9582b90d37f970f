//! What a running pipeline has done: the totals of the run's closing report,
//! and the Prometheus metrics `/metrics` serves.
//!
//! [`Telemetry`] holds the metric families, one registry per process, so
//! that two pipelines in one process (`floe demo`) are told apart by their
//! `pipeline` label. [`Metrics`] is one run's handles on them, resolved
//! once at start: the hot path adds to plain atomics, and workers add per
//! batch, not per event.

use super::board::Board;
use super::dataflow::Dataflow;
use super::worker::BoardNews;
use crate::event::AlertState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ComponentLabels {
    pipeline: String,
    /// The source, operator or sink id.
    component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    pipeline: String,
    component: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadLetterLabels {
    pipeline: String,
    source: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    pipeline: String,
    component: String,
    /// `topic/N`.
    partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    pipeline: String,
    worker: String,
}

type Counters<L> = Family<L, Counter>;
type Gauges<L> = Family<L, Gauge>;
type FloatGauges<L> = Family<L, Gauge<f64, AtomicU64>>;

/// The process's metric families. Names follow Prometheus conventions:
/// `floe_` first, base units, `_total` on counters (added by the encoder).
pub struct Telemetry {
    registry: Registry,
    families: Families,
    /// Every run's sources (`pipeline/source`) with their connection
    /// gauge, for `/ready`. A run adds its sources once its state is
    /// restored.
    sources: Mutex<Vec<(String, Gauge)>>,
    /// What the dashboard shows, when one is served.
    board: Option<Arc<Board>>,
}

#[derive(Clone)]
struct Families {
    source_events: Counters<ComponentLabels>,
    source_bytes: Counters<ComponentLabels>,
    source_decode_failures: Counters<ComponentLabels>,
    source_redeliveries: Counters<ComponentLabels>,
    source_connected: Gauges<ComponentLabels>,
    source_disconnected: Family<ComponentLabels, Counter<f64, AtomicU64>>,
    source_lag: Gauges<PartitionLabels>,
    operator_events_in: Counters<ComponentLabels>,
    operator_events_out: Counters<ComponentLabels>,
    alerts: Counters<AlertLabels>,
    sink_records: Counters<ComponentLabels>,
    sink_queue_batches: Gauges<ComponentLabels>,
    sink_retries: Counters<ComponentLabels>,
    sink_failures: Counters<ComponentLabels>,
    dead_letters: Counters<DeadLetterLabels>,
    events: Counters<PipelineLabels>,
    keys_forgotten: Counters<PipelineLabels>,
    checkpoints: Counters<PipelineLabels>,
    checkpoint_bytes: Counters<PipelineLabels>,
    checkpoint_duration: Family<PipelineLabels, Histogram>,
    emit_latency: Family<PipelineLabels, Histogram>,
    event_time_lag: FloatGauges<WorkerLabels>,
}

impl Default for Telemetry {
    fn default() -> Self {
        // 100 µs to ~26 s: floe's own latency is sub-millisecond, a
        // reordering tolerance or a slow sink adds seconds.
        let latency = || Histogram::new(exponential_buckets(0.0001, 2.0, 19));
        // 1 ms to ~65 s.
        let checkpoint = || Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let families = Families {
            source_events: Default::default(),
            source_bytes: Default::default(),
            source_decode_failures: Default::default(),
            source_redeliveries: Default::default(),
            source_connected: Default::default(),
            source_disconnected: Default::default(),
            source_lag: Default::default(),
            operator_events_in: Default::default(),
            operator_events_out: Default::default(),
            alerts: Default::default(),
            sink_records: Default::default(),
            sink_queue_batches: Default::default(),
            sink_retries: Default::default(),
            sink_failures: Default::default(),
            dead_letters: Default::default(),
            events: Default::default(),
            keys_forgotten: Default::default(),
            checkpoints: Default::default(),
            checkpoint_bytes: Default::default(),
            checkpoint_duration: Family::new_with_constructor(checkpoint),
            emit_latency: Family::new_with_constructor(latency),
            event_time_lag: Default::default(),
        };
        let mut registry = Registry::default();
        let f = families.clone();
        let r = &mut registry;
        r.register(
            "floe_source_events",
            "Messages a source decoded into events",
            f.source_events,
        );
        r.register_with_unit(
            "floe_source",
            "Bytes of the messages a source received",
            Unit::Bytes,
            f.source_bytes,
        );
        r.register(
            "floe_source_decode_failures",
            "Messages a source could not decode (dead-lettered)",
            f.source_decode_failures,
        );
        r.register(
            "floe_source_redeliveries",
            "Messages the broker said it delivered again",
            f.source_redeliveries,
        );
        r.register(
            "floe_source_connected",
            "1 while the source is connected to its broker, 0 while it is not",
            f.source_connected,
        );
        r.register_with_unit(
            "floe_source_disconnected",
            "Time a broker source spent disconnected, counted when it reconnects",
            Unit::Seconds,
            f.source_disconnected,
        );
        r.register(
            "floe_source_lag_records",
            "Records in a Kafka partition not read yet, as of the last statistics",
            f.source_lag,
        );
        r.register(
            "floe_operator_events_in",
            "Events an operator was given",
            f.operator_events_in,
        );
        r.register(
            "floe_operator_events_out",
            "Events an operator passed on or produced",
            f.operator_events_out,
        );
        r.register(
            "floe_alerts",
            "Alerts raised, by operator and state",
            f.alerts,
        );
        r.register(
            "floe_sink_records",
            "Records handed to a sink",
            f.sink_records,
        );
        r.register(
            "floe_sink_queue_batches",
            "Batches waiting for a sink",
            f.sink_queue_batches,
        );
        r.register(
            "floe_sink_retries",
            "Records a sink sent again after a failed attempt",
            f.sink_retries,
        );
        r.register(
            "floe_sink_failures",
            "Failed attempts of a sink to reach or write to its destination",
            f.sink_failures,
        );
        r.register(
            "floe_dead_letters",
            "Messages sent to the dead-letter sink, by source and reason",
            f.dead_letters,
        );
        r.register("floe_events", "Events processed by operators", f.events);
        r.register(
            "floe_keys_forgotten",
            "Keys forgotten after idle_timeout",
            f.keys_forgotten,
        );
        r.register("floe_checkpoints", "Checkpoints completed", f.checkpoints);
        r.register_with_unit(
            "floe_checkpoint",
            "Bytes of state checkpoints wrote",
            Unit::Bytes,
            f.checkpoint_bytes,
        );
        r.register_with_unit(
            "floe_checkpoint_duration",
            "Time to take a checkpoint",
            Unit::Seconds,
            f.checkpoint_duration,
        );
        r.register_with_unit(
            "floe_emit_latency",
            "From an event's batch reaching floe to the alert it caused being handed to the sinks",
            Unit::Seconds,
            f.emit_latency,
        );
        r.register_with_unit(
            "floe_event_time_lag",
            "Wall clock minus the latest event time a worker has seen",
            Unit::Seconds,
            f.event_time_lag,
        );
        Telemetry {
            registry,
            families,
            sources: Mutex::default(),
            board: None,
        }
    }
}

impl Telemetry {
    /// Telemetry that also keeps the dashboard's board: a tile per key,
    /// which costs memory a run without a dashboard need not pay.
    pub fn with_board() -> Telemetry {
        Telemetry {
            board: Some(Arc::default()),
            ..Telemetry::default()
        }
    }

    pub fn board(&self) -> Option<&Board> {
        self.board.as_deref()
    }

    /// The handles of sink `id` of `pipeline`: for the sink, which counts
    /// its retries and failures from the moment it opens, and for the run.
    pub fn sink(&self, pipeline: &str, id: &str) -> SinkMetrics {
        let f = &self.families;
        let labels = ComponentLabels {
            pipeline: pipeline.to_string(),
            component: id.to_string(),
        };
        SinkMetrics {
            records: f.sink_records.get_or_create_owned(&labels),
            queue: f.sink_queue_batches.get_or_create_owned(&labels),
            retries: f.sink_retries.get_or_create_owned(&labels),
            failures: f.sink_failures.get_or_create_owned(&labels),
        }
    }

    /// Events its sources have decoded so far, per pipeline, for the
    /// dashboard's rates: what arrives, not what the operators have done
    /// (which lags by the reordering tolerance).
    pub fn events_by_pipeline(&self) -> Vec<(String, u64)> {
        let sources = self.sources.lock().map(|s| s.clone()).unwrap_or_default();
        let mut totals: Vec<(String, u64)> = Vec::new();
        for (name, _) in sources {
            let Some((pipeline, source)) = name.split_once('/') else {
                continue;
            };
            let labels = ComponentLabels {
                pipeline: pipeline.to_string(),
                component: source.to_string(),
            };
            let events = self
                .families
                .source_events
                .get_or_create_owned(&labels)
                .get();
            match totals.iter_mut().find(|(p, _)| p == pipeline) {
                Some((_, total)) => *total += events,
                None => totals.push((pipeline.to_string(), events)),
            }
        }
        totals
    }

    /// The metrics in the OpenMetrics text format, which Prometheus reads.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// What keeps the process from being ready: the sources not connected,
    /// as `pipeline/source`. Empty once every run has restored its state
    /// and connected.
    pub fn not_ready(&self) -> Vec<String> {
        let sources = self.sources.lock().map(|s| s.clone()).unwrap_or_default();
        (sources.into_iter())
            .filter(|(_, connected)| connected.get() == 0)
            .map(|(name, _)| name)
            .collect()
    }
}

/// One component's counters, added to per batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct ComponentCounts {
    pub events_in: u64,
    pub events_out: u64,
    pub firing: u64,
    pub resolved: u64,
}

impl ComponentCounts {
    pub fn alert(&mut self, state: AlertState) {
        match state {
            AlertState::Firing => self.firing += 1,
            AlertState::Resolved => self.resolved += 1,
        }
    }
}

/// A sink's handles. The default counts into nothing, for a sink run
/// outside a pipeline (`floe simulate --to`).
#[derive(Clone, Debug, Default)]
pub struct SinkMetrics {
    pub records: Counter,
    pub queue: Gauge,
    /// Records sent again after a failed attempt.
    pub retries: Counter,
    /// Failed attempts to reach or write to the destination.
    pub failures: Counter,
}

/// A source's handles.
#[derive(Clone)]
pub struct SourceMetrics {
    pub events: Counter,
    pub bytes: Counter,
    pub decode_failures: Counter,
    pub redeliveries: Counter,
    pub connected: Gauge,
    pub disconnected_seconds: Counter<f64, AtomicU64>,
    lag: Gauges<PartitionLabels>,
    labels: ComponentLabels,
}

impl SourceMetrics {
    /// The lag gauge of a partition (`topic/N`).
    pub fn lag(&self, partition: String) -> Gauge {
        let labels = PartitionLabels {
            pipeline: self.labels.pipeline.clone(),
            component: self.labels.component.clone(),
            partition,
        };
        self.lag.get_or_create_owned(&labels)
    }
}

struct OperatorMetrics {
    events_in: Counter,
    events_out: Counter,
    firing: Counter,
    resolved: Counter,
}

/// One run's metrics.
pub struct Metrics {
    pipeline: Arc<str>,
    /// The sources' ids.
    names: Vec<String>,
    families: Families,
    sources: Vec<SourceMetrics>,
    /// By component number; `None` for sources.
    operators: Vec<Option<OperatorMetrics>>,
    sinks: Vec<SinkMetrics>,
    events: Counter,
    keys_forgotten: Counter,
    checkpoints: Counter,
    checkpoint_bytes: Counter,
    checkpoint_duration: Histogram,
    emit_latency: Histogram,
    board: Option<Arc<Board>>,
    report: Report,
}

/// The totals only the closing report shows.
#[derive(Debug, Default)]
struct Report {
    late: AtomicU64,
    dead_letters: AtomicU64,
    alerts: AtomicU64,
    outputs: AtomicU64,
    redelivered: AtomicU64,
    refused: AtomicU64,
    held: AtomicU64,
}

/// A point-in-time copy of a run's totals, and what a worker adds per batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Events decoded and processed by operators.
    pub events: u64,
    /// Events dropped from processing for arriving too late (and dead-lettered).
    pub late: u64,
    /// Messages dead-lettered, late ones included.
    pub dead_letters: u64,
    pub alerts: u64,
    /// Operator output events (window results) sent to sinks.
    pub outputs: u64,
    /// Messages a broker delivered again, as far as it said so (MQTT's
    /// DUP flag): possible duplicates of events already processed.
    pub redelivered: u64,
    /// Keys forgotten after `idle_timeout`.
    pub forgotten: u64,
    /// Checkpoints completed, and the bytes of state they wrote.
    pub checkpoints: u64,
    pub checkpoint_bytes: u64,
    /// Events of new keys dead-lettered because of `max_keys`.
    pub refused: u64,
    /// Events still held back for ordering when a run with a state dir
    /// stopped: in its last checkpoint, for the next run.
    pub held: u64,
}

impl Metrics {
    /// Resolves the run's handles; `sinks` are the sink ids in order.
    pub fn new(telemetry: &Telemetry, flow: &Dataflow, sinks: &[String]) -> Metrics {
        let f = telemetry.families.clone();
        let pipeline = flow.pipeline.to_string();
        let component = |name: &str| ComponentLabels {
            pipeline: pipeline.clone(),
            component: name.to_string(),
        };
        let sources = (flow.names[..flow.sources].iter())
            .map(|name| {
                let labels = component(name);
                SourceMetrics {
                    events: f.source_events.get_or_create_owned(&labels),
                    bytes: f.source_bytes.get_or_create_owned(&labels),
                    decode_failures: f.source_decode_failures.get_or_create_owned(&labels),
                    redeliveries: f.source_redeliveries.get_or_create_owned(&labels),
                    connected: f.source_connected.get_or_create_owned(&labels),
                    disconnected_seconds: f.source_disconnected.get_or_create_owned(&labels),
                    lag: f.source_lag.clone(),
                    labels,
                }
            })
            .collect();
        let operators = (flow.names.iter().enumerate())
            .map(|(i, name)| {
                let labels = component(name);
                let alerts = |state| AlertLabels {
                    pipeline: pipeline.clone(),
                    component: name.to_string(),
                    state,
                };
                (i >= flow.sources).then(|| OperatorMetrics {
                    events_in: f.operator_events_in.get_or_create_owned(&labels),
                    events_out: f.operator_events_out.get_or_create_owned(&labels),
                    firing: f.alerts.get_or_create_owned(&alerts("firing")),
                    resolved: f.alerts.get_or_create_owned(&alerts("resolved")),
                })
            })
            .collect();
        let sinks = (sinks.iter())
            .map(|id| telemetry.sink(&pipeline, id))
            .collect();
        let run = PipelineLabels {
            pipeline: pipeline.clone(),
        };
        Metrics {
            events: f.events.get_or_create_owned(&run),
            keys_forgotten: f.keys_forgotten.get_or_create_owned(&run),
            checkpoints: f.checkpoints.get_or_create_owned(&run),
            checkpoint_bytes: f.checkpoint_bytes.get_or_create_owned(&run),
            checkpoint_duration: f.checkpoint_duration.get_or_create_owned(&run),
            emit_latency: f.emit_latency.get_or_create_owned(&run),
            names: flow.names[..flow.sources]
                .iter()
                .map(|n| n.to_string())
                .collect(),
            pipeline: flow.pipeline.clone(),
            families: telemetry.families.clone(),
            sources,
            operators,
            sinks,
            board: telemetry.board.clone(),
            report: Report::default(),
        }
    }

    /// Counts the run in `/ready`: its state is restored. A source that
    /// `connects` is ready once it says so; the others are at once.
    pub fn started(&self, telemetry: &Telemetry, flow: &Dataflow) {
        let sources = self.sources.iter().zip(&flow.connects).zip(&self.names);
        for ((source, connects), name) in sources {
            source.connected.set(i64::from(!connects));
            if let Ok(mut sources) = telemetry.sources.lock() {
                sources.push((
                    format!("{}/{name}", self.pipeline),
                    source.connected.clone(),
                ));
            }
        }
    }

    /// A source's handles, for its ingest and its connection.
    pub fn source(&self, source: usize) -> SourceMetrics {
        self.sources[source].clone()
    }

    /// Adds what a worker processed in one batch; zeroes `components`.
    pub fn add(&self, delta: &Snapshot, components: &mut [ComponentCounts]) {
        let r = &self.report;
        self.events.inc_by(delta.events);
        self.keys_forgotten.inc_by(delta.forgotten);
        r.late.fetch_add(delta.late, Relaxed);
        r.alerts.fetch_add(delta.alerts, Relaxed);
        r.outputs.fetch_add(delta.outputs, Relaxed);
        r.refused.fetch_add(delta.refused, Relaxed);
        r.held.fetch_add(delta.held, Relaxed);
        for (counts, metrics) in components.iter_mut().zip(&self.operators) {
            if let Some(m) = metrics {
                m.events_in.inc_by(counts.events_in);
                m.events_out.inc_by(counts.events_out);
                m.firing.inc_by(counts.firing);
                m.resolved.inc_by(counts.resolved);
            }
            *counts = ComponentCounts::default();
        }
    }

    /// Whether a dashboard wants to hear of new keys and alerts.
    pub fn has_board(&self) -> bool {
        self.board.is_some()
    }

    /// Tells the dashboard what a batch brought.
    pub fn board(&self, news: &mut BoardNews) {
        if let Some(board) = &self.board {
            board.update(&self.pipeline, &mut news.keys, &mut news.raised);
        }
    }

    /// Counts records handed to sink `sink`, and the batches now waiting.
    pub fn sent(&self, sink: usize, records: usize, queued: usize) {
        let sink = &self.sinks[sink];
        sink.records.inc_by(records as u64);
        sink.queue.set(queued as i64);
    }

    /// A sink's handles, for the sink itself.
    pub fn sink(&self, sink: usize) -> SinkMetrics {
        self.sinks[sink].clone()
    }

    /// An alert's latency, from its event's batch reaching floe.
    pub fn emitted(&self, latency: Duration) {
        self.emit_latency.observe(latency.as_secs_f64());
    }

    /// A worker's gauge of how far behind the wall clock its event time is.
    pub fn event_time_lag(&self, worker: usize) -> Gauge<f64, AtomicU64> {
        let labels = WorkerLabels {
            pipeline: self.pipeline.to_string(),
            worker: worker.to_string(),
        };
        self.families.event_time_lag.get_or_create_owned(&labels)
    }

    /// `reason` is a short stable name (a decode error's kind, `late`, ...).
    pub fn dead_letter(&self, source: &str, reason: &'static str) {
        self.report.dead_letters.fetch_add(1, Relaxed);
        let labels = DeadLetterLabels {
            pipeline: self.pipeline.to_string(),
            source: source.to_string(),
            reason,
        };
        self.families
            .dead_letters
            .get_or_create_owned(&labels)
            .inc();
    }

    pub fn checkpointed(&self, bytes: u64, took: Duration) {
        self.checkpoints.inc();
        self.checkpoint_bytes.inc_by(bytes);
        self.checkpoint_duration.observe(took.as_secs_f64());
    }

    pub fn redelivered(&self, source: usize, n: u64) {
        self.report.redelivered.fetch_add(n, Relaxed);
        self.sources[source].redeliveries.inc_by(n);
    }

    pub fn snapshot(&self) -> Snapshot {
        let r = &self.report;
        Snapshot {
            events: self.events.get(),
            late: r.late.load(Relaxed),
            dead_letters: r.dead_letters.load(Relaxed),
            alerts: r.alerts.load(Relaxed),
            outputs: r.outputs.load(Relaxed),
            redelivered: r.redelivered.load(Relaxed),
            forgotten: self.keys_forgotten.get(),
            checkpoints: self.checkpoints.get(),
            checkpoint_bytes: self.checkpoint_bytes.get(),
            refused: r.refused.load(Relaxed),
            held: r.held.load(Relaxed),
        }
    }
}
