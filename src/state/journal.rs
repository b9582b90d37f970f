//! A write-ahead journal of raw input messages, for a source whose broker
//! forgets a message once it is acknowledged (MQTT).
//!
//! Waiting for a checkpoint before acknowledging would cap throughput at
//! the broker's in-flight window per checkpoint interval (20 messages a
//! second with mosquitto's defaults). Instead each message is appended
//! here and acknowledged as soon as it is on disk; a restart replays what
//! came after the checkpoint's position. Appends are group-committed: a
//! writer thread takes everything queued, writes it, fsyncs once, and
//! only then hands back the messages' acknowledgement tokens.
//!
//! ```text
//! DIR/00000000000000001234.wal   records from seq 1234 on, until the next file
//! ```
//!
//! Each record is one checksummed frame (see [`super::codec`]), so a tail
//! torn by a crash is found and cut off when the journal is opened again;
//! what it held was never acknowledged, and the broker sends it again.

use super::codec;
use super::store::StateError;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

/// Batches queued for the writer before a flush waits.
const QUEUE: usize = 256;
/// Bytes written before a commit even if more records are queued, so
/// acknowledgements flow during a flood.
const COMMIT_BYTES: usize = 4 << 20;

/// One message as it was received.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    pub topic: String,
    pub payload: Vec<u8>,
    /// The correlation id it carried outside its payload (an MQTT 5 user
    /// property), for the events replayed from it.
    pub trace: Option<String>,
}

#[derive(Serialize)]
struct RecordRef<'a> {
    seq: u64,
    topic: &'a str,
    payload: &'a [u8],
    trace: Option<&'a str>,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A journal directory, opened and recovered.
pub struct Journal {
    dir: PathBuf,
    /// Files present, by first sequence number, oldest first.
    files: Vec<u64>,
    /// The sequence number the next record gets.
    next: u64,
}

impl Journal {
    /// Opens (creating) the journal in `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> Result<Journal, StateError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let mut journal = Journal {
            dir: dir.to_path_buf(),
            files: list(dir)?,
            next: 1,
        };
        for i in 0..journal.files.len() {
            let path = journal.path(journal.files[i]);
            let data = fs::read(&path).map_err(io_error(&path))?;
            let (good, last) = scan(&data, |_| {});
            if good < data.len() {
                tracing::warn!(
                    "journal {}: {} bytes after the last whole record cut off (never acknowledged, so the broker sends them again)",
                    path.display(),
                    data.len() - good
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_error(&path))?;
                file.set_len(good as u64).map_err(io_error(&path))?;
                file.sync_all().map_err(io_error(&path))?;
            }
            journal.next = journal.next.max(journal.files[i]);
            if let Some(last) = last {
                journal.next = journal.next.max(last + 1);
            }
        }
        Ok(journal)
    }

    /// Calls `each` with every record after `seq`, in order.
    pub fn replay(&self, seq: u64, mut each: impl FnMut(Record)) -> Result<u64, StateError> {
        let mut count = 0;
        for (i, &first) in self.files.iter().enumerate() {
            let holds_later = self.files.get(i + 1).is_none_or(|&next| next > seq + 1);
            if !holds_later {
                continue;
            }
            let path = self.path(first);
            let data = fs::read(&path).map_err(io_error(&path))?;
            scan(&data, |record| {
                if record.seq > seq {
                    count += 1;
                    each(record);
                }
            });
        }
        Ok(count)
    }

    /// Starts the writer thread. `durable` gets each record's token once
    /// the record is on disk, in append order.
    pub fn start<T: Send + 'static>(
        self,
        durable: impl FnMut(T) + Send + 'static,
    ) -> Result<Appender<T>, StateError> {
        let mut journal = self;
        let file = journal.create(journal.next)?;
        if journal.files.last() != Some(&journal.next) {
            journal.files.push(journal.next);
        }
        let this = journal;
        let next = this.next;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let writer = Writer {
            journal: this,
            file,
            durable,
            scratch: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("floe-journal".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StateError::Io {
                path: "journal writer thread".into(),
                source: e,
            })?;
        Ok(Appender {
            tx: Some(tx),
            next,
            frames: Vec::new(),
            tokens: Vec::new(),
            scratch: Vec::new(),
            thread: Some(thread),
        })
    }

    fn path(&self, first: u64) -> PathBuf {
        self.dir.join(format!("{first:020}.wal"))
    }

    fn create(&self, first: u64) -> Result<BufWriter<File>, StateError> {
        let path = self.path(first);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(&self.dir))?;
        Ok(BufWriter::with_capacity(1 << 20, file))
    }
}

/// The whole records at the start of `data`: calls `each` with each, and
/// returns how many bytes they take and the last one's sequence number.
fn scan(data: &[u8], mut each: impl FnMut(Record)) -> (usize, Option<u64>) {
    let (mut at, mut last) = (0, None);
    while let Ok(Some((payload, used))) = codec::read_frame(&data[at..]) {
        let Ok(record) = codec::decode::<Record>(payload) else {
            break;
        };
        at += used;
        last = Some(record.seq);
        each(record);
    }
    (at, last)
}

fn list(dir: &Path) -> Result<Vec<u64>, StateError> {
    let mut files: Vec<u64> = fs::read_dir(dir)
        .map_err(io_error(dir))?
        .flatten()
        .filter_map(|f| f.file_name().to_str()?.strip_suffix(".wal")?.parse().ok())
        .collect();
    files.sort_unstable();
    Ok(files)
}

enum Item<T> {
    /// Frames of consecutive records, and the tokens to hand back once
    /// they are on disk.
    Batch {
        frames: Vec<u8>,
        tokens: Vec<T>,
        next: u64,
    },
    /// Start a new file and delete those holding only records up to `seq`.
    Forget(u64),
}

/// The appending side, used by the source's thread. Records gather in a
/// batch that goes to the writer when it is full or on
/// [`flush`](Self::flush): one hand-over (and at most one wake-up of the
/// writer) per batch, not per message.
pub struct Appender<T> {
    tx: Option<mpsc::SyncSender<Item<T>>>,
    next: u64,
    frames: Vec<u8>,
    tokens: Vec<T>,
    scratch: Vec<u8>,
    thread: Option<JoinHandle<()>>,
}

/// Records per batch before it goes to the writer without a flush.
const BATCH: usize = 256;

/// The journal's writer thread has stopped (a write failed).
#[derive(Debug)]
pub struct Stopped;

impl<T> Appender<T> {
    /// Adds a message to the journal; returns its sequence number. It is
    /// durable once the batch it is in has been written.
    pub fn append(
        &mut self,
        topic: &str,
        payload: &[u8],
        trace: Option<&str>,
    ) -> Result<u64, Stopped> {
        let seq = self.next;
        let record = RecordRef {
            seq,
            topic,
            payload,
            trace,
        };
        self.scratch.clear();
        codec::encode_into(&record, &mut self.scratch).map_err(|_| Stopped)?;
        codec::write_frame(&mut self.frames, &self.scratch).map_err(|_| Stopped)?;
        self.next += 1;
        Ok(seq)
    }

    /// Hands `token` back to the journal's `durable` callback once what
    /// was appended so far is on disk.
    pub fn when_durable(&mut self, token: T) -> Result<(), Stopped> {
        self.tokens.push(token);
        if self.tokens.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    /// Sends the batch to the writer; waits while the writer is far behind.
    pub fn flush(&mut self) -> Result<(), Stopped> {
        if self.frames.is_empty() && self.tokens.is_empty() {
            return Ok(());
        }
        let tx = self.tx.as_ref().ok_or(Stopped)?;
        let batch = Item::Batch {
            frames: std::mem::take(&mut self.frames),
            tokens: std::mem::take(&mut self.tokens),
            next: self.next,
        };
        tx.send(batch).map_err(|_| Stopped)
    }

    /// The sequence number of the last record appended (0 before any).
    pub fn last(&self) -> u64 {
        self.next - 1
    }

    /// Lets the journal delete what no checkpoint still needs: records up
    /// to `seq`.
    pub fn forget_through(&mut self, seq: u64) {
        if self.flush().is_ok()
            && let Some(tx) = &self.tx
        {
            let _ = tx.send(Item::Forget(seq));
        }
    }
}

impl<T> Drop for Appender<T> {
    /// Commits what is queued and waits for the writer to finish.
    fn drop(&mut self) {
        let _ = self.flush();
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads a journal's records in order while they are being written: for a
/// sink that delivers from its own spool. It reads only up to the record
/// the writer last reported durable; past it a frame may be half-written.
pub struct Tail {
    dir: PathBuf,
    /// The file being read, by its first sequence number.
    file: Option<(u64, File)>,
    /// Bytes read from the file and not yet taken.
    buf: Vec<u8>,
    /// The sequence number of the last record taken.
    after: u64,
}

impl Tail {
    /// A reader of the records of `dir` after `after`.
    pub fn new(dir: &Path, after: u64) -> Tail {
        Tail {
            dir: dir.to_path_buf(),
            file: None,
            buf: Vec::new(),
            after,
        }
    }

    /// The last record taken.
    pub fn after(&self) -> u64 {
        self.after
    }

    /// Up to `limit` records after the last one taken, none past `durable`.
    pub fn read(&mut self, durable: u64, limit: usize) -> Result<Vec<Record>, StateError> {
        let mut records = Vec::new();
        while records.len() < limit && self.after < durable {
            if !self.take(durable, limit, &mut records)? && !self.read_more()? {
                break;
            }
        }
        Ok(records)
    }

    /// Takes the whole records buffered; false if there were none.
    fn take(
        &mut self,
        durable: u64,
        limit: usize,
        records: &mut Vec<Record>,
    ) -> Result<bool, StateError> {
        let (mut at, before) = (0, records.len());
        while records.len() < limit {
            let Ok(Some((payload, used))) = codec::read_frame(&self.buf[at..]) else {
                break;
            };
            let record = codec::decode::<Record>(payload)?;
            if record.seq > durable {
                break;
            }
            at += used;
            if record.seq > self.after {
                self.after = record.seq;
                records.push(record);
            }
        }
        self.buf.drain(..at);
        Ok(records.len() > before)
    }

    /// Reads what was added to the file, or moves on to the next file once
    /// the writer has started one; false if there is nothing new yet.
    fn read_more(&mut self) -> Result<bool, StateError> {
        if let Some((_, file)) = &mut self.file {
            let read = file
                .read_to_end(&mut self.buf)
                .map_err(io_error(&self.dir))?;
            if read > 0 {
                return Ok(true);
            }
        }
        // The file to read is the last to start at or before the next record.
        let files = list(&self.dir)?;
        let next = self.after + 1;
        let target = (files.iter().rev().find(|&&first| first <= next))
            .or(files.first())
            .copied();
        match (target, &self.file) {
            (Some(first), Some((current, _))) if first <= *current => Ok(false),
            (Some(first), _) => {
                let path = self.dir.join(format!("{first:020}.wal"));
                self.file = Some((first, File::open(&path).map_err(io_error(&path))?));
                self.buf.clear();
                Ok(true)
            }
            (None, _) => Ok(false),
        }
    }
}

struct Writer<T, F> {
    journal: Journal,
    file: BufWriter<File>,
    durable: F,
    scratch: Vec<T>,
}

impl<T, F: FnMut(T)> Writer<T, F> {
    fn run(mut self, rx: mpsc::Receiver<Item<T>>) {
        while let Ok(first) = rx.recv() {
            let mut written = self.take(first);
            while written < COMMIT_BYTES {
                match rx.try_recv() {
                    Ok(item) => written += self.take(item),
                    Err(_) => break,
                }
            }
            if let Err(e) = self.commit() {
                // Nothing more is acknowledged: the broker keeps what
                // follows, and the source's next append fails.
                tracing::error!("journal {}: {e}", self.journal.dir.display());
                return;
            }
        }
        let _ = self.commit();
    }

    /// Writes one item; returns the bytes it added.
    fn take(&mut self, item: Item<T>) -> usize {
        match item {
            Item::Batch {
                frames,
                tokens,
                next,
            } => {
                if self.file.write_all(&frames).is_err() {
                    return COMMIT_BYTES;
                }
                self.journal.next = next;
                self.scratch.extend(tokens);
                frames.len()
            }
            Item::Forget(seq) => {
                if let Err(e) = self.roll_and_forget(seq) {
                    tracing::warn!("journal {}: {e}", self.journal.dir.display());
                }
                0
            }
        }
    }

    fn commit(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        self.scratch.drain(..).for_each(&mut self.durable);
        Ok(())
    }

    /// Starts a new file at the next sequence number, then deletes the
    /// files whose records all lie at or before `seq`.
    fn roll_and_forget(&mut self, seq: u64) -> Result<(), StateError> {
        self.commit().map_err(io_error(&self.journal.dir))?;
        let next = self.journal.next;
        if self.journal.files.last() != Some(&next) {
            self.file = self.journal.create(next)?;
            self.journal.files.push(next);
        }
        let files = &self.journal.files;
        let gone = files
            .windows(2)
            .take_while(|pair| pair[1] <= seq + 1)
            .count();
        let gone: Vec<u64> = self.journal.files.drain(..gone).collect();
        for first in gone {
            let _ = fs::remove_file(self.journal.path(first));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn replayed(dir: &Path, after: u64) -> Vec<(u64, String)> {
        let journal = Journal::open(dir).unwrap();
        let mut seen = Vec::new();
        journal
            .replay(after, |r| {
                seen.push((r.seq, String::from_utf8(r.payload).unwrap()))
            })
            .unwrap();
        seen
    }

    #[test]
    fn records_are_acknowledged_once_durable_and_replayed_after_a_position() {
        let dir = tempfile::tempdir().unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        let sink = acked.clone();
        let mut appender = Journal::open(dir.path())
            .unwrap()
            .start(move |token: u32| sink.lock().unwrap().push(token))
            .unwrap();
        for i in 0..100u32 {
            let trace = format!("r{i}");
            let trace = Some(trace.as_str()).filter(|_| i % 2 == 1);
            let seq = appender
                .append("fleet/t1", format!("m{i}").as_bytes(), trace)
                .unwrap();
            appender.when_durable(i).unwrap();
            assert_eq!(seq, u64::from(i) + 1);
        }
        drop(appender);
        assert_eq!(*acked.lock().unwrap(), (0..100).collect::<Vec<_>>());
        let after_90 = replayed(dir.path(), 90);
        assert_eq!(after_90.len(), 10);
        assert_eq!(after_90[0], (91, "m90".to_string()));
        let mut traces = Vec::new();
        let journal = Journal::open(dir.path()).unwrap();
        (journal.replay(96, |r| traces.push(r.trace))).unwrap();
        let expected = ["r97", "r99"].map(|t| Some(t.to_string()));
        assert_eq!(
            traces,
            [None, expected[0].clone(), None, expected[1].clone()]
        );
        // A second run continues the numbering.
        let mut appender = Journal::open(dir.path())
            .unwrap()
            .start(|_: ()| {})
            .unwrap();
        assert_eq!(appender.append("t", b"next", None).unwrap(), 101);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_numbering_resumes_after_the_last_whole_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut appender = Journal::open(dir.path())
            .unwrap()
            .start(|_: ()| {})
            .unwrap();
        for i in 0..5 {
            appender
                .append("t", format!("m{i}").as_bytes(), None)
                .unwrap();
        }
        drop(appender);
        let file = list(dir.path()).unwrap()[0];
        let path = dir.path().join(format!("{file:020}.wal"));
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        assert_eq!(replayed(dir.path(), 0).len(), 4);
        let mut appender = Journal::open(dir.path())
            .unwrap()
            .start(|_: ()| {})
            .unwrap();
        assert_eq!(appender.append("t", b"again", None).unwrap(), 5);
        drop(appender);
        let all = replayed(dir.path(), 0);
        assert_eq!(all.last(), Some(&(5, "again".to_string())));
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn forgetting_deletes_only_files_wholly_covered() {
        let dir = tempfile::tempdir().unwrap();
        let mut appender = Journal::open(dir.path())
            .unwrap()
            .start(|_: ()| {})
            .unwrap();
        for round in 0..3 {
            for i in 0..10 {
                appender
                    .append("t", format!("{round}-{i}").as_bytes(), None)
                    .unwrap();
            }
            // Forget up to the middle of what was written.
            appender.forget_through(appender.last() - 5);
        }
        drop(appender);
        let left = replayed(dir.path(), 0);
        // Files hold records 1-10, 11-20 and 21-30 (and an empty one from
        // 31); forgetting through 25 deletes the first two, and keeps 21-30
        // whole, though 21-25 are covered.
        assert_eq!(left.first().map(|r| r.0), Some(21));
        assert_eq!(left.len(), 10);
    }
}
