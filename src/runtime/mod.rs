//! The runtime: runs a built pipeline on tasks and channels.
//!
//! ```text
//! source ──decode──▶ router ──(by key)──▶ worker 1..N ──▶ sink channels ──▶ sinks
//!    └──────────── rejected ──────────────────┴──(late)──▶ dead-letter sink
//! ```
//!
//! Every channel is bounded, so the slowest stage sets the pace and nothing
//! is dropped. Shutdown flows the same way as the end of input: sources
//! stop, workers drain and flush open windows, sinks flush, the run returns.

mod ack;
pub mod board;
mod checkpoint;
mod dataflow;
mod dead_letters;
mod field_watch;
mod ingest;
mod keys;
mod metrics;
mod reorder;
mod router;
mod shutdown;
mod worker;

pub use ack::{Ack, Marks, Settled};
pub use checkpoint::Checkpoints;
pub use dataflow::{Dataflow, Plan};
pub use dead_letters::DeadLetters;
pub use field_watch::FieldWatch;
pub use ingest::{Closed, Ingest};
pub use metrics::{Metrics, SinkMetrics, Snapshot, Telemetry};
pub use router::{BATCH, Router, WorkerMsg, worker_for};
pub use shutdown::Shutdown;
pub use worker::{Core, KeyCounts, Rejection};

use crate::config::{Context, Pipeline};
use crate::sinks::{Sink, SinkError};
use crate::sources::{Source, SourceError};
use crate::state::{StateError, Store};
use checkpoint::{Coordinator, Restore};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use worker::Worker;

/// What sources' and sinks' `run` return: a task the runtime spawns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Batches each channel holds before its sender waits.
const CHANNEL_BATCHES: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("source \"{id}\": {source}")]
    Source { id: String, source: SourceError },
    #[error("sink \"{id}\": {source}")]
    Sink { id: String, source: SinkError },
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0} stopped unexpectedly")]
    Crashed(String),
}

/// The opened ends of a pipeline.
pub struct Io {
    /// One per source, in pipeline order.
    pub sources: Vec<Box<dyn Source>>,
    /// One per sink, in pipeline order, with its id.
    pub sinks: Vec<(String, Box<dyn Sink>)>,
    pub dead_letter: Box<dyn Sink>,
}

impl Io {
    /// Opens the pipeline's own sources and sinks.
    pub fn open(
        p: &Pipeline,
        telemetry: &Telemetry,
        state_dir: Option<&std::path::Path>,
    ) -> Result<Io, RuntimeError> {
        let base = p.resolve(std::path::Path::new(""));
        let context = Context {
            base: &base,
            pipeline: &p.name,
            id: "",
            telemetry,
            state_dir,
        };
        let sources = p
            .sources
            .iter()
            .map(|s| {
                let opened = s.spec.open(&Context {
                    id: &s.id,
                    ..context
                });
                opened.map_err(|source| RuntimeError::Source {
                    id: s.id.clone(),
                    source,
                })
            })
            .collect::<Result<_, _>>()?;
        let open_sink = |id: &str, spec: &dyn crate::sinks::SinkSpec| {
            let opened = spec.open(&Context { id, ..context });
            opened.map_err(|source| RuntimeError::Sink {
                id: id.to_string(),
                source,
            })
        };
        let sinks = p
            .sinks
            .iter()
            .map(|s| Ok::<_, RuntimeError>((s.id.clone(), open_sink(&s.id, s.spec.as_ref())?)))
            .collect::<Result<_, _>>()?;
        let dead_letter = match &p.dead_letter {
            Some(spec) => open_sink("dead_letter", spec.as_ref())?,
            None => dead_letters::stderr_sink(),
        };
        Ok(Io {
            sources,
            sinks,
            dead_letter,
        })
    }
}

/// How to run.
pub struct Options {
    /// Worker tasks; keys are spread over them by hash.
    pub workers: usize,
    /// Where and how often to checkpoint; without it, state lives only
    /// as long as the run.
    pub state: Option<StateOptions>,
    /// The process's metrics, which the run adds its own to.
    pub telemetry: Arc<Telemetry>,
}

/// Checkpointing, for runs that keep their state.
pub struct StateOptions {
    pub store: Store,
    pub interval: std::time::Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            state: None,
            telemetry: Arc::default(),
        }
    }
}

/// Runs a pipeline until its sources end or `shutdown` is requested, then
/// drains and flushes everything. Returns what was processed.
///
/// With a state dir it first restores the newest checkpoint there, and
/// checkpoints as it runs; stopped by `shutdown`, it takes a last
/// checkpoint and keeps open windows for the next run instead of flushing
/// them.
pub async fn run(
    plan: Plan,
    io: Io,
    options: Options,
    shutdown: Shutdown,
) -> Result<Snapshot, RuntimeError> {
    let flow = Arc::new(plan.flow);
    let sink_ids: Vec<String> = io.sinks.iter().map(|(id, _)| id.clone()).collect();
    let metrics = Arc::new(Metrics::new(&options.telemetry, &flow, &sink_ids));
    let workers = options.workers.max(1);
    let (coordinator, checkpoints, restore) = match options.state {
        Some(StateOptions {
            mut store,
            interval,
        }) => {
            let restore = store.load()?.map(|r| Restore::new(&flow, r, workers));
            let (coordinator, checkpoints) = Coordinator::new(
                &flow,
                store,
                interval,
                workers,
                restore.as_ref(),
                metrics.clone(),
            );
            (Some(coordinator), Some(checkpoints), restore)
        }
        None => (None, None, None),
    };

    let (dead_tx, dead_rx) = mpsc::channel(CHANNEL_BATCHES * 64);
    // The dead-letter sink has nowhere to send what it cannot write: its
    // own handle would keep its channel open for ever.
    let (nowhere, _) = mpsc::channel(1);
    let nowhere = DeadLetters::new(nowhere, metrics.clone());
    let dead_letter_task = tokio::spawn(io.dead_letter.run(dead_rx, nowhere));
    let dead_letters = DeadLetters::new(dead_tx, metrics.clone());

    let mut sink_txs = Vec::new();
    let mut sink_tasks = Vec::new();
    for (i, (id, sink)) in io.sinks.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        sink_txs.push(tx);
        let failures = metrics.sink(i).failures;
        let dead = dead_letters.clone();
        let run = async move {
            // The failure that ends a sink counts as one too.
            sink.run(rx, dead).await.inspect_err(|_| {
                failures.inc();
            })
        };
        sink_tasks.push((id, tokio::spawn(run)));
    }

    let mut restored = vec![Vec::new(); workers];
    if let Some(restore) = &restore {
        for (key, parts) in restore.keys.iter().cloned() {
            restored[worker_for(&key, workers)].push((key, parts));
        }
    }
    let key_counts = KeyCounts::new(flow.sources);
    let mut worker_txs = Vec::new();
    let mut worker_tasks = Vec::new();
    for (index, keys) in restored.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let operators = plan.operators.iter().map(|o| o.fork()).collect();
        let mut core = Core::new(&flow, operators, sink_txs.len(), key_counts.clone());
        if metrics.has_board() {
            core.board = Some(Default::default());
        }
        if let Some(restore) = &restore {
            core.restore(&flow, restore, keys, restore.clocks[index]);
        }
        let worker = Worker::new(
            flow.clone(),
            core,
            index,
            sink_txs.clone(),
            dead_letters.clone(),
            metrics.clone(),
            checkpoints.clone(),
        );
        worker_txs.push(tx);
        worker_tasks.push(tokio::spawn(worker.run(rx)));
    }
    drop((sink_txs, restore));
    let worker_txs: Arc<[_]> = worker_txs.into();
    metrics.started(&options.telemetry, &flow);
    let coordinator = coordinator.map(|c| tokio::task::spawn_blocking(move || c.run()));

    let mut source_tasks = Vec::new();
    let decoders = plan.decoders.into_iter().zip(plan.watches);
    for (i, (source, (decoder, watch))) in io.sources.into_iter().zip(decoders).enumerate() {
        let router = Router::new(worker_txs.clone(), i as u16);
        let ingest = Ingest::new(
            flow.names[i].clone(),
            decoder,
            router,
            dead_letters.clone(),
            metrics.clone(),
            shutdown.clone(),
            checkpoints.clone(),
        )
        .watching(watch);
        source_tasks.push(tokio::spawn(source.run(ingest)));
    }
    drop((worker_txs, dead_letters, checkpoints));

    let mut errors = Vec::new();
    for (i, task) in source_tasks.into_iter().enumerate() {
        let id = flow.names[i].to_string();
        if let Err(e) = joined(task, &id)
            .await
            .and_then(|r| r.map_err(|source| RuntimeError::Source { id, source }))
        {
            // One broken source stops the others; the run reports it.
            shutdown.request();
            errors.push(e);
        }
    }
    for task in worker_tasks {
        // A worker returns an error only when a sink stopped, and that
        // sink's own error below says why; a worker that crashed is one.
        if let Err(e) = joined(task, "a worker").await {
            errors.push(e);
        }
    }
    for (id, task) in sink_tasks {
        if let Err(e) = joined(task, &id)
            .await
            .and_then(|r| r.map_err(|source| RuntimeError::Sink { id, source }))
        {
            errors.insert(0, e);
        }
    }
    if let Err(e) = joined(dead_letter_task, "dead_letter").await.and_then(|r| {
        r.map_err(|source| RuntimeError::Sink {
            id: "dead_letter".into(),
            source,
        })
    }) {
        errors.insert(0, e);
    }
    if let Some(coordinator) = coordinator {
        joined(coordinator, "checkpoints").await?;
    }
    match errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(metrics.snapshot()),
    }
}

async fn joined<T>(task: JoinHandle<T>, what: &str) -> Result<T, RuntimeError> {
    task.await
        .map_err(|_| RuntimeError::Crashed(what.to_string()))
}
