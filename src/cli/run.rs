//! `floe run`: run a pipeline until its sources end or it is stopped.
//!
//! With `--watch`, a valid edit of the pipeline file is applied without
//! leaving the process: the run stops as a signal stops it (a last
//! checkpoint keeps every key's state, open windows included), and the new
//! pipeline starts from that checkpoint, which keeps the state of the
//! operators whose definition did not change and starts the others empty.
//! An invalid edit is reported and the running pipeline goes on.

use super::Failure;
use crate::config::{Loc, Pipeline, SinkDef, Spanned};
use crate::runtime::{self, Io, Options, Plan, Shutdown, StateOptions};
use crate::sinks::{Destination, stdout};
use crate::sources;
use crate::state::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct Args {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Replace source NAME with another input: file:PATH (JSON lines, or
    /// CSV by extension), sim:SCENARIO, mqtt://HOST:PORT/TOPIC-FILTER,
    /// kafka://HOST:PORT/TOPIC[?from=earliest&group=GROUP]. Repeatable.
    #[arg(long = "input", value_name = "NAME=URI")]
    inputs: Vec<String>,
    /// Replace sink NAME (or `dead_letter`) with another output: stdout,
    /// file:PATH (JSON lines, appended), mqtt://HOST:PORT[/TOPIC][?qos=N],
    /// kafka://HOST:PORT/TOPIC. Repeatable.
    #[arg(long = "sink", value_name = "NAME=URI")]
    sinks: Vec<String>,
    /// Write to no sink: what the sinks would get goes to stdout (each
    /// output once), dead letters to stderr, and no state is kept.
    #[arg(long, conflicts_with_all = ["sinks", "state_dir"])]
    dry_run: bool,
    /// Worker tasks, at least 1 (default: one per core).
    #[arg(long, value_parser = parse_workers)]
    workers: Option<usize>,
    /// Keep state here (checkpoints, the MQTT journal) so that a restart,
    /// even after kill -9, resumes where the run stopped. Overrides the
    /// pipeline's `state: {dir}`.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Apply edits of the pipeline file as they are saved, keeping the
    /// state of unchanged operators (needs a state dir).
    #[arg(long, conflicts_with = "dry_run")]
    watch: bool,
    #[command(flatten)]
    http: super::serve::HttpArgs,
}

/// How often `--watch` looks at the pipeline file.
const WATCH_EVERY: Duration = Duration::from_millis(300);

/// Keys are spread over the workers: with none, nothing would run them.
fn parse_workers(text: &str) -> Result<usize, String> {
    match text.parse() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err("not a whole number".into()),
    }
}

/// The pipeline file, with the command line's changes to it.
fn load(args: &Args) -> Result<Pipeline, Failure> {
    let mut pipeline =
        Pipeline::load(&args.pipeline).map_err(|d| Failure::Invalid(d.to_string()))?;
    for input in &args.inputs {
        replace_input(&mut pipeline, input)
            .map_err(|e| Failure::Invalid(format!("--input {input}: {e}")))?;
    }
    for sink in &args.sinks {
        replace_sink(&mut pipeline, sink)
            .map_err(|e| Failure::Invalid(format!("--sink {sink}: {e}")))?;
    }
    if args.dry_run {
        dry_run(&mut pipeline);
    }
    Ok(pipeline)
}

pub fn run(args: Args) -> Result<(), Failure> {
    let pipeline = load(&args)?;
    let workers = args.workers.unwrap_or(Options::default().workers);
    let telemetry = args.http.telemetry(pipeline.http.as_ref());
    let runtime = super::tokio_runtime(workers)?;
    let started = Instant::now();
    let (report, pipeline) = runtime.block_on(async {
        let stop = Shutdown::default();
        stop.on_signals();
        let _server = (args.http)
            .start(pipeline.http.as_ref(), telemetry.clone())
            .await?;
        let mut pipeline = pipeline;
        loop {
            let options = Options {
                workers,
                state: state_options(&pipeline, args.state_dir.as_deref())?,
                telemetry: telemetry.clone(),
            };
            if args.watch && options.state.is_none() {
                return Err(Failure::Invalid(
                    "--watch needs a state dir (--state-dir DIR, or `state:` in the pipeline): a reload carries the state over through it".into(),
                ));
            }
            let shutdown = Shutdown::default();
            let stopping = tokio::spawn(forward(stop.clone(), shutdown.clone()));
            let edited = Arc::new(AtomicBool::new(false));
            let watching = (args.watch)
                .then(|| tokio::spawn(watch(args.pipeline.clone(), shutdown.clone(), edited.clone())));
            let plan = Plan::new(&pipeline);
            let state_dir = options.state.as_ref().map(|s| s.store.dir());
            let io = Io::open(&pipeline, &options.telemetry, state_dir)
                .map_err(|e| Failure::Runtime(e.to_string()))?;
            let run = runtime::run(plan, io, options, shutdown).await;
            stopping.abort();
            watching.inspect(|w| w.abort());
            let report = run.map_err(|e| Failure::Runtime(e.to_string()))?;
            match edited.load(Ordering::Acquire) && !stop.is_requested() {
                true => match load(&args) {
                    Ok(next) => {
                        tracing::info!("{}: reloaded", args.pipeline.display());
                        pipeline = next;
                    }
                    // Changed again since it was checked: the old one goes on.
                    Err(Failure::Invalid(problems)) => eprintln!("{problems}"),
                    Err(other) => return Err(other),
                },
                false => return Ok((report, pipeline)),
            }
        }
    })?;
    let secs = started.elapsed().as_secs_f64();
    let mut extra = String::new();
    if report.redelivered > 0 {
        extra += &format!(", {} redelivered by the broker", report.redelivered);
    }
    if report.forgotten > 0 {
        extra += &format!(", {} idle keys forgotten", report.forgotten);
    }
    if report.refused > 0 {
        extra += &format!(", {} events of new keys refused (max_keys)", report.refused);
    }
    if report.held > 0 {
        extra += &format!(
            ", {} held back for ordering (kept for the next run)",
            report.held
        );
    }
    if report.checkpoints > 0 {
        let kb = report.checkpoint_bytes as f64 / 1024.0;
        extra += &format!(
            ", {} checkpoints ({kb:.0} KiB of state written)",
            report.checkpoints
        );
    }
    eprintln!(
        "floe: {}: {} events in {:.2}s ({:.0}/s), {} alerts, {} outputs, {} dead letters ({} late){extra}",
        pipeline.name,
        report.events,
        secs,
        report.events as f64 / secs.max(1e-9),
        report.alerts,
        report.outputs,
        report.dead_letters,
        report.late
    );
    Ok(())
}

/// Stops the run when the process is told to stop.
async fn forward(stop: Shutdown, run: Shutdown) {
    stop.requested().await;
    run.request();
}

/// Waits for a valid edit of the pipeline at `path`, then stops the run
/// for the reload; an invalid one is reported and waited past.
async fn watch(path: PathBuf, run: Shutdown, edited: Arc<AtomicBool>) {
    let mut seen = std::fs::read(&path).ok();
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let now = std::fs::read(&path).ok();
        if now == seen {
            continue;
        }
        seen = now;
        match Pipeline::load(&path) {
            Ok(_) => {
                edited.store(true, Ordering::Release);
                run.request();
                return;
            }
            Err(problems) => eprintln!(
                "{problems}\n{}: not reloaded; the running pipeline goes on",
                path.display()
            ),
        }
    }
}

/// Applies `--sink NAME=URI`: the sink keeps its inputs and writes
/// somewhere else.
fn replace_sink(pipeline: &mut Pipeline, sink: &str) -> Result<(), String> {
    let (name, uri) = sink.split_once('=').ok_or("expected NAME=URI")?;
    let spec = Destination::parse(uri).and_then(Destination::sink)?;
    if name == DEAD_LETTER {
        pipeline.dead_letter = Some(spec);
        return Ok(());
    }
    let ids: Vec<&str> = pipeline.sinks.iter().map(|s| s.id.as_str()).collect();
    let hint = crate::config::did_you_mean(name, ids.into_iter().chain([DEAD_LETTER]));
    let sink = pipeline
        .sinks
        .iter_mut()
        .find(|s| s.id == name)
        .ok_or_else(|| format!("the pipeline has no sink \"{name}\"{hint}"))?;
    sink.spec = spec;
    Ok(())
}

/// What `--sink` calls the dead-letter sink.
const DEAD_LETTER: &str = "dead_letter";

/// `--dry-run`: one stdout sink takes what every sink took, so each output
/// is printed once (not once per sink that takes it); dead letters go to
/// stderr, their default, so stdout holds only outputs; and nothing is
/// checkpointed, so a dry run leaves a live run's state dir alone.
fn dry_run(pipeline: &mut Pipeline) {
    let mut inputs: Vec<Spanned<String>> = Vec::new();
    for sink in pipeline.sinks.drain(..) {
        for input in sink.inputs {
            if !inputs.iter().any(|i| i.value == input.value) {
                inputs.push(input);
            }
        }
    }
    if !inputs.is_empty() {
        pipeline.sinks.push(SinkDef {
            id: "dry-run".into(),
            loc: Loc::default(),
            fingerprint: 0,
            inputs,
            spec: Box::new(stdout::Config {}),
        });
    }
    pipeline.dead_letter = None;
    pipeline.state = None;
}

/// Opens the state dir: `--state-dir`, else the pipeline's `state: {dir}`.
/// A directory that is locked or belongs to another pipeline is refused
/// before anything is connected.
fn state_options(
    pipeline: &Pipeline,
    flag: Option<&Path>,
) -> Result<Option<StateOptions>, Failure> {
    let config = pipeline.state.as_ref();
    let dir = match (flag, config) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(state)) => pipeline.resolve(&state.dir),
        (None, None) => return Ok(None),
    };
    let interval = config.map_or(1000, |s| s.interval.ms());
    let store = Store::open(&dir, &pipeline.name).map_err(|e| Failure::Invalid(e.to_string()))?;
    Ok(Some(StateOptions {
        store,
        interval: std::time::Duration::from_millis(interval as u64),
    }))
}

/// Applies `--input NAME=URI`: the source keeps its key, time and ordering
/// settings and reads from somewhere else.
fn replace_input(pipeline: &mut Pipeline, input: &str) -> Result<(), String> {
    let (name, uri) = input.split_once('=').ok_or("expected NAME=URI")?;
    let ids: Vec<&str> = pipeline.sources.iter().map(|s| s.id.as_str()).collect();
    let hint = crate::config::did_you_mean(name, ids.iter().copied());
    let source = pipeline
        .sources
        .iter_mut()
        .find(|s| s.id == name)
        .ok_or_else(|| format!("the pipeline has no source \"{name}\"{hint}"))?;
    if let Some(path) = uri.strip_prefix("file:").or(uri.strip_prefix("sim:"))
        && !std::path::Path::new(path).is_file()
    {
        return Err(format!("no such file: {path}"));
    }
    source.spec = sources::from_uri(uri)?;
    // A checkpoint resumes the replacement only if it is the same input.
    let replaced = format!("{}\u{1f}{uri}", source.fingerprint);
    source.fingerprint = xxhash_rust::xxh3::xxh3_64(replaced.as_bytes());
    match source.check_envelope().into_iter().next() {
        Some(problem) => Err(problem.message),
        None => Ok(()),
    }
}
