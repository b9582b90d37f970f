//! Consistent checkpoints, taken while the pipeline runs.
//!
//! Chandy-Lamport, as Flink does it: every `interval` the coordinator asks
//! for checkpoint N; each source, at a point where everything it read so
//! far has been handed over, records its position and sends a barrier for
//! N behind its events, to every worker and to the dead-letter sink. A
//! worker that has the barrier from every running source (holding back,
//! meanwhile, what sources send after theirs) writes the keys that changed
//! since the last checkpoint to a segment, and passes the barrier on to the
//! sinks. When the segments are on disk and every sink has made durable
//! what came before the barrier, the coordinator writes the manifest: the
//! checkpoint is complete. Then sources may forget what it covers (Kafka
//! commits offsets, the MQTT journal drops old files).
//!
//! The barrier is an [`Ack`]: it completes when its last share is given
//! back, and a share dropped unfinished (a sink failed) abandons it.
//! One checkpoint is in flight at a time.

use super::Metrics;
use super::ack::{Ack, Settled};
use super::dataflow::Dataflow;
use crate::state::changelog::Change;
use crate::state::store::{self, Manifest, SavedKey, SegmentRef, SourcePosition, WorkerClock};
use crate::state::{Component, Restored, StateError, Store};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

/// What sources, workers and the coordinator share.
pub struct Checkpoints {
    round: Mutex<Round>,
    changed: Condvar,
    /// The checkpoint sources should send barriers for; 0 before the first.
    requested: AtomicU64,
    /// The last checkpoint completed.
    completed: AtomicU64,
    /// Wakes sources that wait for input asynchronously (MQTT).
    wake: tokio::sync::Notify,
    parts: mpsc::Sender<Part>,
    /// The state dir, and its segments directory.
    dir: PathBuf,
    segments: PathBuf,
    interval: Duration,
    /// Per source: where the restored checkpoint says to resume.
    resume: Vec<Option<Vec<u8>>>,
    /// Completed checkpoints' changes to changelog keys, by checkpoint,
    /// until their source writes them.
    outgoing: Mutex<Vec<(u64, Change)>>,
    /// A changelog write failed: the next checkpoint is a full one.
    changes_lost: std::sync::atomic::AtomicBool,
}

struct Round {
    /// Numbers the next checkpoint.
    last_seq: u64,
    settled: mpsc::Sender<Settled>,
    pending: Option<Pending>,
    /// Per source: still running.
    live: Vec<bool>,
    /// The next checkpoint writes every key, not only those that changed.
    full_next: bool,
    /// A source asked for a checkpoint now (a Kafka revoke).
    urgent: bool,
}

struct Pending {
    seq: u64,
    full: bool,
    /// The coordinator's share, given back once every running source has
    /// taken its own: until then the checkpoint cannot complete.
    root: Option<Ack>,
    /// Per source: its barrier is still to come.
    waiting: Vec<bool>,
}

/// A barrier for one source to send: checkpoint `seq`, its share of the
/// acknowledgement.
pub struct Barrier {
    pub seq: u64,
    pub full: bool,
    pub ack: Ack,
}

/// What the coordinator learns about a checkpoint from the others.
#[derive(Debug)]
pub enum Part {
    Position {
        seq: u64,
        source: usize,
        position: Vec<u8>,
    },
    Segment {
        seq: u64,
        segment: SegmentRef,
    },
    Clock {
        seq: u64,
        worker: usize,
        clock: WorkerClock,
    },
    /// A worker's changes to the keys changelogs keep.
    Changes {
        seq: u64,
        changes: Vec<Change>,
    },
}

impl Checkpoints {
    fn lock(&self) -> MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a checkpoint after `joined` waits for a barrier.
    pub fn due(&self, joined: u64) -> bool {
        self.requested.load(Ordering::Acquire) > joined
    }

    /// Resolves once a checkpoint after `joined` is requested.
    pub async fn requested_after(&self, joined: u64) {
        loop {
            let notified = self.wake.notified();
            if self.due(joined) {
                return;
            }
            notified.await;
        }
    }

    /// The barrier `source` must send for the pending checkpoint, if it
    /// has not sent it yet.
    pub fn join(&self, source: usize) -> Option<Barrier> {
        let mut round = self.lock();
        let barrier = take_share(&mut round, source);
        drop(round);
        self.changed.notify_all();
        barrier
    }

    /// The barrier for a source that is about to finish: for the pending
    /// checkpoint if it has not joined it, else for a new one (started now,
    /// once the pending one is over), so that the last checkpoint covers
    /// everything the source read.
    pub fn join_final(&self, source: usize) -> Option<Barrier> {
        let mut round = self.lock();
        loop {
            match &round.pending {
                Some(p) if p.waiting[source] => break,
                Some(_) => {
                    round = self.changed.wait(round).unwrap_or_else(|e| e.into_inner());
                }
                None if !round.live[source] => return None,
                None => {
                    self.start(&mut round);
                    break;
                }
            }
        }
        let barrier = take_share(&mut round, source);
        drop(round);
        self.changed.notify_all();
        barrier
    }

    /// The checkpoint last requested.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// `source` has finished: no checkpoint waits for it any more.
    pub fn leave(&self, source: usize) {
        let mut round = self.lock();
        round.live[source] = false;
        if let Some(p) = &mut round.pending {
            p.waiting[source] = false;
            if !p.waiting.contains(&true)
                && let Some(root) = p.root.take()
            {
                root.done();
            }
        }
        drop(round);
        self.changed.notify_all();
    }

    /// Asks for a checkpoint now rather than at the next interval.
    pub fn request_now(&self) {
        self.lock().urgent = true;
        self.changed.notify_all();
    }

    /// Records where `source` was at checkpoint `seq`.
    pub fn position(&self, seq: u64, source: usize, position: Vec<u8>) {
        let _ = self.parts.send(Part::Position {
            seq,
            source,
            position,
        });
    }

    /// Records a worker's timer clock at checkpoint `seq`.
    pub fn clock(&self, seq: u64, worker: usize, clock: WorkerClock) {
        let _ = self.parts.send(Part::Clock { seq, worker, clock });
    }

    /// Records a worker's changes to changelog keys at checkpoint `seq`.
    pub fn changes(&self, seq: u64, changes: Vec<Change>) {
        if !changes.is_empty() {
            let _ = self.parts.send(Part::Changes { seq, changes });
        }
    }

    /// The changes of completed checkpoints up to `seq` to `source`'s
    /// changelog, in order: the source writes them before it commits.
    pub fn take_changes(&self, source: usize, seq: u64) -> Vec<Change> {
        let mut outgoing = self.outgoing.lock().unwrap_or_else(|e| e.into_inner());
        let mine = |(s, c): &(u64, Change)| *s <= seq && c.source as usize == source;
        let (taken, kept) = std::mem::take(&mut *outgoing).into_iter().partition(mine);
        *outgoing = kept;
        taken.into_iter().map(|(_, c)| c).collect()
    }

    /// A changelog could not take a checkpoint's changes: the next
    /// checkpoint writes every key again.
    pub fn changes_lost(&self) {
        self.changes_lost.store(true, Ordering::Release);
    }

    /// Writes a worker's segment of checkpoint `seq` and makes it durable,
    /// then gives `ack` back; off the worker's thread. A failed write
    /// drops `ack`, which abandons the checkpoint.
    pub fn write_segment(&self, seq: u64, worker: usize, data: Vec<u8>, ack: Ack) {
        let path = self.segments.join(store::segment_name(seq, worker));
        let parts = self.parts.clone();
        tokio::task::spawn_blocking(move || match store::write_segment(&path, &data) {
            Ok(segment) => {
                let _ = parts.send(Part::Segment { seq, segment });
                ack.done();
            }
            Err(e) => tracing::error!("checkpoint {seq}: {e}"),
        });
    }

    /// The last checkpoint completed; 0 before any.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Waits up to `patience` for checkpoint `seq` to complete.
    pub fn wait_completed(&self, seq: u64, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        let mut round = self.lock();
        while self.completed() < seq {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            round = self
                .changed
                .wait_timeout(round, left)
                .map(|(r, _)| r)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        true
    }

    /// A directory of the state dir for `source`'s own files (the MQTT
    /// journal), named after its id.
    pub fn source_dir(&self, id: &str) -> PathBuf {
        let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        let name: String = match id.chars().all(safe) && !id.is_empty() {
            true => id.to_string(),
            false => id.bytes().map(|b| format!("{b:02x}")).collect(),
        };
        self.dir.join("sources").join(name)
    }

    /// Where the restored checkpoint left `source`.
    pub fn resume(&self, source: usize) -> Option<&[u8]> {
        self.resume.get(source)?.as_deref()
    }

    fn start(&self, round: &mut Round) {
        round.last_seq += 1;
        let seq = round.last_seq;
        let lost = self.changes_lost.swap(false, Ordering::AcqRel);
        round.pending = Some(Pending {
            seq,
            full: round.full_next || lost,
            root: Some(Ack::new(seq, round.settled.clone())),
            waiting: round.live.clone(),
        });
        round.urgent = false;
        self.requested.store(seq, Ordering::Release);
        self.wake.notify_waiters();
    }
}

fn take_share(round: &mut Round, source: usize) -> Option<Barrier> {
    let p = round.pending.as_mut()?;
    if !std::mem::take(&mut p.waiting[source]) {
        return None;
    }
    let ack = p.root.as_ref()?.share();
    if !p.waiting.contains(&true)
        && let Some(root) = p.root.take()
    {
        root.done();
    }
    Some(Barrier {
        seq: p.seq,
        full: p.full,
        ack,
    })
}

/// What a restored checkpoint means for this pipeline: which of its
/// components' state still applies, and where sources resume.
pub struct Restore {
    /// Per component of the checkpoint: the pipeline component its state
    /// goes to, if that component is unchanged.
    pub mapping: Vec<Option<usize>>,
    /// The keys and their parts, as in the checkpoint.
    pub keys: Vec<SavedKey>,
    /// Per worker, when the worker count is unchanged.
    pub clocks: Vec<WorkerClock>,
    pub positions: Vec<Option<Vec<u8>>>,
    pub manifest: Manifest,
}

impl Restore {
    /// Matches a checkpoint to `flow`, logging once per component that
    /// changed or went away.
    pub fn new(flow: &Dataflow, restored: Restored, workers: usize) -> Restore {
        let find = |c: &Component| flow.components.iter().position(|f| f.id == c.id);
        let mut mapping = Vec::new();
        let mut changed = Vec::new();
        for c in &restored.components {
            let here = find(c);
            let same = here.filter(|&i| flow.components[i].fingerprint == c.fingerprint);
            if here.is_some() && same.is_none() && !changed.contains(&c.id) {
                changed.push(c.id.clone());
            }
            mapping.push(same);
        }
        for id in &changed {
            tracing::info!(
                "\"{id}\" changed since the checkpoint: it starts with no state (the other components keep theirs)"
            );
        }
        let positions = (0..flow.sources)
            .map(|s| {
                let ours = &flow.components[s];
                let saved = restored.manifest.sources.iter().find(|p| p.source.id == ours.id)?;
                if saved.source.fingerprint != ours.fingerprint {
                    tracing::info!(
                        "source \"{}\" changed since the checkpoint: it starts where a new source would",
                        ours.id
                    );
                    return None;
                }
                Some(saved.position.clone())
            })
            .collect();
        let clocks = match restored.manifest.workers.len() == workers {
            true => restored.manifest.workers.clone(),
            false => {
                let latest = restored
                    .manifest
                    .workers
                    .iter()
                    .copied()
                    .max_by_key(|c| c.clock);
                vec![latest.unwrap_or_default(); workers]
            }
        };
        tracing::info!(
            "restored checkpoint {} ({} keys)",
            restored.manifest.seq,
            restored.keys.len()
        );
        Restore {
            mapping,
            keys: restored.keys,
            clocks,
            positions,
            manifest: restored.manifest,
        }
    }
}

/// Starts checkpoints on time and completes them; runs on its own thread
/// because completing one means fsyncs.
pub struct Coordinator {
    shared: Arc<Checkpoints>,
    store: Store,
    settled: mpsc::Receiver<Settled>,
    parts: mpsc::Receiver<Part>,
    pipeline: String,
    sources: Vec<Component>,
    /// Per source: its position at the last checkpoint it joined.
    positions: Vec<Option<Vec<u8>>>,
    clocks: Vec<WorkerClock>,
    metrics: Arc<Metrics>,
}

impl Coordinator {
    /// Sets up checkpoints of `flow` into `store`, resuming `restore`.
    pub fn new(
        flow: &Dataflow,
        store: Store,
        interval: Duration,
        workers: usize,
        restore: Option<&Restore>,
        metrics: Arc<Metrics>,
    ) -> (Coordinator, Arc<Checkpoints>) {
        let (settled_tx, settled) = mpsc::channel();
        let (parts_tx, parts) = mpsc::channel();
        let positions = match restore {
            Some(r) => r.positions.clone(),
            None => vec![None; flow.sources],
        };
        let last_seq = store.latest().map_or(0, |m| m.seq);
        let shared = Arc::new(Checkpoints {
            round: Mutex::new(Round {
                last_seq,
                settled: settled_tx,
                pending: None,
                live: vec![true; flow.sources],
                full_next: true,
                urgent: false,
            }),
            changed: Condvar::new(),
            requested: AtomicU64::new(last_seq),
            completed: AtomicU64::new(last_seq),
            wake: tokio::sync::Notify::new(),
            parts: parts_tx,
            dir: store.dir().to_path_buf(),
            segments: store.segment_path(""),
            interval,
            resume: positions.clone(),
            outgoing: Mutex::new(Vec::new()),
            changes_lost: std::sync::atomic::AtomicBool::new(false),
        });
        let coordinator = Coordinator {
            shared: shared.clone(),
            store,
            settled,
            parts,
            pipeline: flow.pipeline.to_string(),
            sources: flow.components[..flow.sources].to_vec(),
            positions,
            clocks: restore.map_or_else(
                || vec![WorkerClock::default(); workers],
                |r| r.clocks.clone(),
            ),
            metrics,
        };
        (coordinator, shared)
    }

    /// Takes checkpoints until every source has finished and the last one
    /// is complete.
    pub fn run(mut self) {
        while let Some((seq, full)) = self.next_round() {
            let started = Instant::now();
            let settled = loop {
                match self.settled.recv() {
                    Ok(s) if s.seq < seq => continue,
                    Ok(s) => break Some(s),
                    Err(_) => break None,
                }
            };
            let complete = settled.is_some_and(|s| s.complete);
            let result = self.complete(seq, full, complete);
            let mut round = self.shared.lock();
            round.pending = None;
            // After a failure the workers' changes since the last complete
            // checkpoint are in no manifest: the next one writes them all.
            round.full_next =
                result.is_err() || self.store.latest().is_none_or(Manifest::wants_full);
            drop(round);
            self.shared.changed.notify_all();
            match result {
                Ok(bytes) => {
                    self.metrics.checkpointed(bytes, started.elapsed());
                    tracing::debug!(
                        "checkpoint {seq}: {bytes} bytes of state in {} ms",
                        started.elapsed().as_millis()
                    );
                }
                Err(e) => tracing::warn!("checkpoint {seq} not taken: {e}"),
            }
        }
    }

    /// Waits until a checkpoint is due (or a source started one); `None`
    /// once every source has finished.
    fn next_round(&self) -> Option<(u64, bool)> {
        let shared = &self.shared;
        let mut round = shared.lock();
        let mut deadline = Instant::now() + shared.interval;
        loop {
            if let Some(p) = &round.pending {
                return Some((p.seq, p.full));
            }
            if !round.live.contains(&true) {
                return None;
            }
            let now = Instant::now();
            if round.urgent || now >= deadline {
                shared.start(&mut round);
                deadline = now + shared.interval;
                continue;
            }
            round = shared
                .changed
                .wait_timeout(round, deadline - now)
                .map(|(r, _)| r)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Collects what checkpoint `seq` wrote and commits its manifest;
    /// returns the bytes of its new segments and changelog records.
    fn complete(&mut self, seq: u64, full: bool, complete: bool) -> Result<u64, String> {
        let mut segments = Vec::new();
        let mut changes = Vec::new();
        while let Ok(part) = self.parts.try_recv() {
            match part {
                Part::Position {
                    seq: s,
                    source,
                    position,
                } if s == seq => self.positions[source] = Some(position),
                Part::Segment { seq: s, segment } if s == seq => segments.push(segment),
                Part::Clock {
                    seq: s,
                    worker,
                    clock,
                } if s == seq => {
                    if let Some(c) = self.clocks.get_mut(worker) {
                        *c = clock;
                    }
                }
                Part::Changes { seq: s, changes: c } if s == seq => changes.extend(c),
                _ => {}
            }
        }
        if !complete {
            return Err("some of what came before it was not made durable (a sink or a segment write failed)".into());
        }
        segments.sort_by(|a, b| a.name.cmp(&b.name));
        let changed: usize = (changes.iter())
            .map(|c| c.state.as_ref().map_or(0, Vec::len))
            .sum();
        let bytes = segments.iter().map(|s| s.bytes).sum::<u64>() + changed as u64;
        let mut manifest = Manifest::next(self.store.latest(), &self.pipeline, seq, full, segments);
        manifest.sources = (self.sources.iter().zip(&self.positions))
            .filter_map(|(source, position)| {
                Some(SourcePosition {
                    source: source.clone(),
                    position: position.clone()?,
                })
            })
            .collect();
        manifest.workers = self.clocks.clone();
        let unchanged = self.store.latest().is_some_and(|l| l.same_state(&manifest));
        if !unchanged {
            self.store
                .commit(manifest)
                .map_err(|e: StateError| e.to_string())?;
        }
        let mut outgoing = self
            .shared
            .outgoing
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        outgoing.extend(changes.into_iter().map(|c| (seq, c)));
        drop(outgoing);
        self.shared.completed.store(seq, Ordering::Release);
        Ok(bytes)
    }
}
