//! Checkpoint files: segments of keyed state, and the manifests that make
//! a set of them one consistent checkpoint.
//!
//! ```text
//! DIR/PIPELINE                          the pipeline this directory belongs to
//! DIR/LOCK                              held (flock) by the floe using it
//! DIR/checkpoint-00000000000000000042   a manifest: one frame, checksummed
//! DIR/segments/00000000000000000042-0.seg   what worker 0 changed by checkpoint 42
//! ```
//!
//! A checkpoint is incremental: each worker writes a segment with only the
//! keys that changed since the last checkpoint (and tombstones for the keys
//! it dropped), and the manifest lists the segments to apply in order, last
//! write winning. When the deltas since the last full set outgrow it (or
//! the chain grows long), every worker writes all its keys instead and the
//! chain starts again. So a checkpoint costs what changed, and a restore
//! reads at most about twice the live state.
//!
//! A manifest is written last, atomically (write, fsync, rename, fsync the
//! directory) and only after its segments are on disk, so it is the commit
//! point. Segments carry a checksum in the manifest and the manifest its own;
//! a torn or corrupted checkpoint is skipped for the one before it. The two
//! newest manifests are kept, and every segment they name.

use super::codec::{self, CodecError};
use crate::event::Key;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::xxh3_64;

/// Changes when the layout of these files changes; older files are refused.
const FORMAT: u32 = 1;
const MANIFEST_PREFIX: &str = "checkpoint-";
/// Manifests kept: the newest, and one to fall back on.
const KEPT: usize = 2;
/// Segments a chain may hold per worker before a full set is written.
const MAX_CHAIN_PER_WORKER: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state dir {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("state dir {0} is in use by another floe")]
    Locked(String),
    #[error(
        "state dir {dir} belongs to pipeline \"{theirs}\", not \"{ours}\"; give each pipeline its own"
    )]
    OtherPipeline {
        dir: String,
        theirs: String,
        ours: String,
    },
    #[error(
        "state dir {dir}: no readable checkpoint ({problems}); move the directory away to start with no state"
    )]
    Unreadable { dir: String, problems: String },
    #[error(transparent)]
    Codec(#[from] CodecError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A component as a checkpoint names it: its id, and a fingerprint of its
/// definition, so state is restored only into the same definition.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Component {
    pub id: String,
    pub fingerprint: u64,
}

/// Where one source was in its input at a checkpoint, as it encoded it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourcePosition {
    pub source: Component,
    pub position: Vec<u8>,
}

/// A segment file and what it must hash to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegmentRef {
    pub name: String,
    pub bytes: u64,
    pub checksum: u64,
}

/// One worker's timer clock (the event time it has seen, for replays).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerClock {
    pub clock: i64,
    pub next_tick: i64,
}

/// One checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    format: u32,
    pub pipeline: String,
    pub seq: u64,
    /// Wall-clock epoch ms.
    pub written_at: i64,
    /// To apply in order: the last full set, then the deltas after it.
    pub segments: Vec<SegmentRef>,
    /// Bytes of the last full set, and of the deltas written since.
    pub full_bytes: u64,
    pub delta_bytes: u64,
    pub sources: Vec<SourcePosition>,
    /// Per worker, by worker number.
    pub workers: Vec<WorkerClock>,
}

impl Manifest {
    /// The manifest that follows `previous`: `segments` replace its chain
    /// when `full`, and extend it otherwise.
    pub fn next(
        previous: Option<&Manifest>,
        pipeline: &str,
        seq: u64,
        full: bool,
        segments: Vec<SegmentRef>,
    ) -> Manifest {
        let written: u64 = segments.iter().map(|s| s.bytes).sum();
        let (chain, full_bytes, delta_bytes) = match previous {
            Some(p) if !full => {
                let chain = p.segments.iter().cloned().chain(segments).collect();
                (chain, p.full_bytes, p.delta_bytes + written)
            }
            _ => (segments, written, 0),
        };
        Manifest {
            format: FORMAT,
            pipeline: pipeline.to_string(),
            seq,
            written_at: crate::event::time::now_ms(),
            segments: chain,
            full_bytes,
            delta_bytes,
            sources: Vec::new(),
            workers: Vec::new(),
        }
    }

    /// Whether the next checkpoint should write every key again: the
    /// deltas outweigh the full set, or the chain is long.
    pub fn wants_full(&self) -> bool {
        let workers = self.workers.len().max(1);
        self.delta_bytes > self.full_bytes || self.segments.len() > MAX_CHAIN_PER_WORKER * workers
    }

    /// Whether `other` records nothing this one does not: no new segment,
    /// the same positions and clocks.
    pub fn same_state(&self, other: &Manifest) -> bool {
        self.segments == other.segments
            && self.sources == other.sources
            && self.workers == other.workers
    }
}

/// A piece of a key's saved state: the number of its component in the
/// checkpoint's table, and the state as that component encoded it.
pub type StatePart = (u16, Vec<u8>);

/// A key with its saved state.
pub type SavedKey = (Key, Vec<StatePart>);

/// One key's record in a segment.
#[derive(Debug, PartialEq)]
pub struct Entry {
    pub key: Key,
    /// (component number in the segment's table, encoded state); `None`
    /// when the key was dropped.
    pub parts: Option<Vec<StatePart>>,
}

/// `parts` is `u32::MAX` for a tombstone.
#[derive(Serialize, Deserialize)]
struct EntryHead<'a> {
    key: &'a str,
    parts: u32,
}

const TOMBSTONE: u32 = u32::MAX;

/// Builds one segment in memory: the table of components its entries
/// refer to by number, then the entries.
pub struct SegmentWriter {
    buf: Vec<u8>,
    entries: usize,
    /// Where the current key's part count is, to patch it.
    scratch: Vec<(u16, std::ops::Range<usize>)>,
    parts: Vec<u8>,
}

impl SegmentWriter {
    pub fn new(components: &[Component]) -> Result<SegmentWriter, CodecError> {
        Ok(SegmentWriter {
            buf: codec::encode(components)?,
            entries: 0,
            scratch: Vec::new(),
            parts: Vec::new(),
        })
    }

    /// Ends the entry of the key whose parts were just written (see
    /// [`PartWriter`]).
    pub fn end_key(&mut self, key: &str) -> Result<(), CodecError> {
        let head = EntryHead {
            key,
            parts: self.scratch.len() as u32,
        };
        codec::encode_into(&head, &mut self.buf)?;
        for (component, range) in self.scratch.drain(..) {
            codec::encode_into(&(component, &self.parts[range]), &mut self.buf)?;
        }
        self.parts.clear();
        self.entries += 1;
        Ok(())
    }

    pub fn removed(&mut self, key: &str) -> Result<(), CodecError> {
        let head = EntryHead {
            key,
            parts: TOMBSTONE,
        };
        codec::encode_into(&head, &mut self.buf)?;
        self.entries += 1;
        Ok(())
    }

    /// Entries written so far.
    pub fn entries(&self) -> usize {
        self.entries
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Takes one key's state, a part per component.
pub trait PartWriter {
    /// Adds the part of component number `component`, as `encode` writes it.
    fn part(
        &mut self,
        component: u16,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    ) -> Result<(), CodecError>;
}

impl PartWriter for SegmentWriter {
    fn part(
        &mut self,
        component: u16,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let start = self.parts.len();
        encode(&mut self.parts)?;
        self.scratch.push((component, start..self.parts.len()));
        Ok(())
    }
}

/// Reads a segment: its component table and its entries, in order.
pub fn read_segment(data: &[u8]) -> Result<(Vec<Component>, Vec<Entry>), CodecError> {
    let (components, mut rest) =
        postcard::take_from_bytes::<Vec<Component>>(data).map_err(CodecError::Decode)?;
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let (head, after) =
            postcard::take_from_bytes::<EntryHead>(rest).map_err(CodecError::Decode)?;
        rest = after;
        let parts = match head.parts {
            TOMBSTONE => None,
            n => {
                let mut parts = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let (part, after) =
                        postcard::take_from_bytes::<StatePart>(rest).map_err(CodecError::Decode)?;
                    rest = after;
                    parts.push(part);
                }
                Some(parts)
            }
        };
        entries.push(Entry {
            key: head.key.into(),
            parts,
        });
    }
    Ok((components, entries))
}

/// What a restart finds: the newest readable checkpoint, with the state of
/// every key it holds.
#[derive(Debug)]
pub struct Restored {
    pub manifest: Manifest,
    /// Every component some entry refers to.
    pub components: Vec<Component>,
    /// The latest record of every key still held, parts numbered by
    /// `components`.
    pub keys: Vec<SavedKey>,
}

/// A state directory, locked for this process.
pub struct Store {
    dir: PathBuf,
    /// Held for as long as the store is open.
    _lock: File,
    /// The newest manifest committed, which the next one extends.
    latest: Option<Manifest>,
}

impl Store {
    /// Opens (creating) `dir` for pipeline `pipeline`: refuses a directory
    /// another floe holds or another pipeline wrote.
    pub fn open(dir: &Path, pipeline: &str) -> Result<Store, StateError> {
        fs::create_dir_all(dir.join("segments")).map_err(io_error(dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(StateError::Locked(dir.display().to_string()));
        }
        let owner_path = dir.join("PIPELINE");
        match fs::read_to_string(&owner_path) {
            Ok(theirs) if theirs.trim_end() != pipeline => {
                return Err(StateError::OtherPipeline {
                    dir: dir.display().to_string(),
                    theirs: theirs.trim_end().to_string(),
                    ours: pipeline.to_string(),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_atomically(&owner_path, format!("{pipeline}\n").as_bytes())?;
            }
            Err(e) => return Err(io_error(&owner_path)(e)),
        }
        Ok(Store {
            dir: dir.to_path_buf(),
            _lock: lock,
            latest: None,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The newest committed manifest.
    pub fn latest(&self) -> Option<&Manifest> {
        self.latest.as_ref()
    }

    /// Loads the newest checkpoint that reads back whole, falling back to
    /// older ones (with a warning) when the newest is torn or corrupt.
    pub fn load(&mut self) -> Result<Option<Restored>, StateError> {
        let mut problems = Vec::new();
        for seq in self.manifest_seqs()?.into_iter().rev() {
            match self.load_checkpoint(seq) {
                Ok(restored) => {
                    if !problems.is_empty() {
                        tracing::warn!(
                            "state dir {}: {}; restoring checkpoint {seq} instead",
                            self.dir.display(),
                            problems.join("; ")
                        );
                    }
                    self.latest = Some(restored.manifest.clone());
                    return Ok(Some(restored));
                }
                Err(problem) => problems.push(format!("checkpoint {seq} {problem}")),
            }
        }
        if problems.is_empty() {
            return Ok(None);
        }
        Err(StateError::Unreadable {
            dir: self.dir.display().to_string(),
            problems: problems.join("; "),
        })
    }

    fn load_checkpoint(&self, seq: u64) -> Result<Restored, String> {
        let path = self.manifest_path(seq);
        let data = fs::read(&path).map_err(|e| format!("cannot be read: {e}"))?;
        let manifest = match codec::read_frame(&data) {
            Ok(Some((payload, _))) => {
                codec::decode::<Manifest>(payload).map_err(|e| e.to_string())?
            }
            Ok(None) => return Err("is empty".into()),
            Err(e) => return Err(format!("is corrupt ({e})")),
        };
        if manifest.format != FORMAT {
            return Err(format!(
                "has format {} (this floe reads {FORMAT})",
                manifest.format
            ));
        }
        let mut components: Vec<Component> = Vec::new();
        let mut numbers: HashMap<Component, u16> = HashMap::new();
        let mut keys: HashMap<Key, Option<Vec<StatePart>>> = HashMap::new();
        for segment in &manifest.segments {
            let path = self.dir.join("segments").join(&segment.name);
            let data = fs::read(&path).map_err(|e| format!("segment {}: {e}", segment.name))?;
            if data.len() as u64 != segment.bytes || xxh3_64(&data) != segment.checksum {
                return Err(format!(
                    "segment {} is corrupt (checksum mismatch)",
                    segment.name
                ));
            }
            let (table, entries) =
                read_segment(&data).map_err(|e| format!("segment {}: {e}", segment.name))?;
            let global: Vec<u16> = table
                .into_iter()
                .map(|c| {
                    let next = components.len() as u16;
                    *numbers.entry(c.clone()).or_insert_with(|| {
                        components.push(c);
                        next
                    })
                })
                .collect();
            for entry in entries {
                let parts = entry.parts.map(|parts| {
                    parts
                        .into_iter()
                        .filter_map(|(c, bytes)| Some((*global.get(c as usize)?, bytes)))
                        .collect()
                });
                keys.insert(entry.key, parts);
            }
        }
        let keys = keys
            .into_iter()
            .filter_map(|(key, parts)| Some((key, parts?)))
            .collect();
        Ok(Restored {
            manifest,
            components,
            keys,
        })
    }

    /// Where a segment goes.
    pub fn segment_path(&self, name: &str) -> PathBuf {
        self.dir.join("segments").join(name)
    }

    /// Makes `manifest` the newest checkpoint, once its segments are on
    /// disk; then forgets what no kept manifest needs.
    pub fn commit(&mut self, manifest: Manifest) -> Result<(), StateError> {
        let segments = self.dir.join("segments");
        sync_dir(&segments)?;
        let mut frame = Vec::new();
        codec::write_frame(&mut frame, &codec::encode(&manifest)?).map_err(io_error(&self.dir))?;
        write_atomically(&self.manifest_path(manifest.seq), &frame)?;
        self.latest = Some(manifest);
        self.collect_garbage()
    }

    fn collect_garbage(&self) -> Result<(), StateError> {
        let seqs = self.manifest_seqs()?;
        let (old, kept) = seqs.split_at(seqs.len().saturating_sub(KEPT));
        for seq in old {
            let _ = fs::remove_file(self.manifest_path(*seq));
        }
        let mut needed: Vec<String> = Vec::new();
        for seq in kept {
            match self.load_manifest_names(*seq) {
                Some(names) => needed.extend(names),
                // An unreadable manifest protects nothing; leave all files.
                None => return Ok(()),
            }
        }
        let segments = self.dir.join("segments");
        for file in fs::read_dir(&segments)
            .map_err(io_error(&segments))?
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if !needed.contains(&name) {
                let _ = fs::remove_file(file.path());
            }
        }
        Ok(())
    }

    fn load_manifest_names(&self, seq: u64) -> Option<Vec<String>> {
        let data = fs::read(self.manifest_path(seq)).ok()?;
        let (payload, _) = codec::read_frame(&data).ok()??;
        let manifest: Manifest = codec::decode(payload).ok()?;
        Some(manifest.segments.into_iter().map(|s| s.name).collect())
    }

    fn manifest_path(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{MANIFEST_PREFIX}{seq:020}"))
    }

    /// Sequence numbers of the manifests present, oldest first.
    fn manifest_seqs(&self) -> Result<Vec<u64>, StateError> {
        let mut seqs: Vec<u64> = fs::read_dir(&self.dir)
            .map_err(io_error(&self.dir))?
            .flatten()
            .filter_map(|f| {
                let name = f.file_name();
                name.to_str()?.strip_prefix(MANIFEST_PREFIX)?.parse().ok()
            })
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }
}

/// A segment's file name.
pub fn segment_name(seq: u64, worker: usize) -> String {
    format!("{seq:020}-{worker}.seg")
}

/// Writes a segment and makes it durable; returns what the manifest records.
pub fn write_segment(path: &Path, data: &[u8]) -> Result<SegmentRef, StateError> {
    let mut file = File::create(path).map_err(io_error(path))?;
    file.write_all(data).map_err(io_error(path))?;
    file.sync_data().map_err(io_error(path))?;
    Ok(SegmentRef {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes: data.len() as u64,
        checksum: xxh3_64(data),
    })
}

/// Replaces `path` with `data` so that a crash leaves the old file or the
/// new one, never a mix: write a temporary file, fsync, rename, fsync the
/// directory.
fn write_atomically(path: &Path, data: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(data).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    fs::rename(&tmp, path).map_err(io_error(path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component(id: &str) -> Component {
        Component {
            id: id.into(),
            fingerprint: 7,
        }
    }

    /// Writes a checkpoint with one segment holding `keys` (a `None` state
    /// is a tombstone), extending the last one unless `full`.
    fn checkpoint(store: &mut Store, seq: u64, full: bool, keys: &[(&str, Option<&[u8]>)]) {
        let mut segment = SegmentWriter::new(&[component("a"), component("b")]).unwrap();
        for (key, state) in keys {
            match state {
                Some(bytes) => {
                    segment
                        .part(1, |buf| {
                            buf.extend_from_slice(bytes);
                            Ok(())
                        })
                        .unwrap();
                    segment.end_key(key).unwrap();
                }
                None => segment.removed(key).unwrap(),
            }
        }
        let path = store.segment_path(&segment_name(seq, 0));
        let written = write_segment(&path, &segment.finish()).unwrap();
        let manifest = Manifest::next(store.latest(), "p", seq, full, vec![written]);
        store.commit(manifest).unwrap();
    }

    fn keys(restored: &Restored) -> Vec<(String, Vec<u8>)> {
        let mut keys: Vec<_> = (restored.keys.iter())
            .map(|(k, parts)| {
                let (c, bytes) = &parts[0];
                assert_eq!(restored.components[*c as usize], component("b"));
                (k.to_string(), bytes.clone())
            })
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn deltas_apply_in_order_with_tombstones_and_a_full_set_restarts_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), "p").unwrap();
        checkpoint(
            &mut store,
            1,
            true,
            &[("t1", Some(b"1")), ("t2", Some(b"2"))],
        );
        checkpoint(&mut store, 2, false, &[("t1", Some(b"1b")), ("t2", None)]);
        checkpoint(&mut store, 3, false, &[("t3", Some(b"3"))]);
        drop(store);
        let mut store = Store::open(dir.path(), "p").unwrap();
        let restored = store.load().unwrap().unwrap();
        assert_eq!(restored.manifest.seq, 3);
        assert_eq!(restored.manifest.segments.len(), 3);
        let expected = [("t1", &b"1b"[..]), ("t3", b"3")].map(|(k, v)| (k.to_string(), v.to_vec()));
        assert_eq!(keys(&restored), expected);
        checkpoint(&mut store, 4, true, &[("t9", Some(b"9"))]);
        let restored = store.load().unwrap().unwrap();
        assert_eq!(restored.manifest.segments.len(), 1);
        assert_eq!(keys(&restored), [("t9".to_string(), b"9".to_vec())]);
        // Checkpoints 3 and 4 are kept, and the segments 3 names.
        let left = fs::read_dir(dir.path().join("segments")).unwrap().count();
        assert_eq!(left, 4);
    }

    #[test]
    fn a_corrupt_newest_checkpoint_falls_back_to_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), "p").unwrap();
        checkpoint(&mut store, 1, true, &[("t1", Some(b"old"))]);
        checkpoint(&mut store, 2, false, &[("t1", Some(b"new"))]);
        drop(store);
        // Flip one byte of the newest segment: its checksum no longer holds.
        let segment = dir.path().join("segments").join(segment_name(2, 0));
        let mut data = fs::read(&segment).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        fs::write(&segment, data).unwrap();
        let mut store = Store::open(dir.path(), "p").unwrap();
        let restored = store.load().unwrap().unwrap();
        assert_eq!(restored.manifest.seq, 1);
        assert_eq!(keys(&restored), [("t1".to_string(), b"old".to_vec())]);
        // A torn manifest is skipped the same way.
        drop(store);
        let manifest = dir.path().join(format!("{MANIFEST_PREFIX}{:020}", 2));
        let data = fs::read(&manifest).unwrap();
        fs::write(&manifest, &data[..data.len() / 2]).unwrap();
        let mut store = Store::open(dir.path(), "p").unwrap();
        assert_eq!(store.load().unwrap().unwrap().manifest.seq, 1);
        // With nothing readable left, the store refuses rather than start
        // afresh and fire every episode again.
        drop(store);
        let manifest = dir.path().join(format!("{MANIFEST_PREFIX}{:020}", 1));
        fs::write(&manifest, b"garbage").unwrap();
        let mut store = Store::open(dir.path(), "p").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("no readable checkpoint"), "{err}");
    }

    #[test]
    fn another_pipeline_or_a_second_floe_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "cold-chain").unwrap();
        let err = Store::open(dir.path(), "cold-chain")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("in use by another floe"), "{err}");
        drop(store);
        let err = Store::open(dir.path(), "factory")
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("belongs to pipeline \"cold-chain\", not \"factory\""),
            "{err}"
        );
    }
}
