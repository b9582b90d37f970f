//! A sink's spool: the records it was given and has not delivered yet, on
//! disk under the state dir, so that neither a receiver down for hours nor
//! a restart of floe loses one.
//!
//! Records are appended to a [`Journal`], and a batch's acknowledgements go
//! back as soon as its records are on disk: checkpoints complete, and the
//! sources go on, while the receiver is away. The sink's deliverer reads
//! the records in order with a [`Tail`] and, once it has delivered some,
//! saves the last one's sequence number (`delivered`, fsynced); a restart
//! resumes after it. What was delivered after the last save is delivered
//! again: the same records, so alerts keep their ids.
//!
//! ```text
//! DIR/00000000000000000001.wal   the records (see [`super::journal`])
//! DIR/delivered                  the last record delivered, as decimal text
//! ```

use super::journal::{Appender, Journal, Record, Tail};
use super::store::StateError;
use crate::runtime::Ack;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

/// Records delivered between deletions of the journal files they fill.
const FORGET_EVERY: u64 = 10_000;

/// What the writer's thread tells the deliverer.
#[derive(Default)]
struct Progress {
    /// The last record on disk.
    durable: AtomicU64,
    /// The last record delivered and saved.
    delivered: AtomicU64,
    wake: Notify,
}

/// What travels with the records to the journal's writer.
enum Token {
    /// Every record up to this one is on disk.
    Through(u64),
    Ack(Ack),
}

/// The appending side, for the sink's receiving loop.
pub struct Spool {
    appender: Appender<Token>,
    progress: Arc<Progress>,
    forgotten: u64,
}

/// The delivering side.
pub struct Unsent {
    tail: Tail,
    progress: Arc<Progress>,
    saved: PathBuf,
}

/// Opens the spool in `dir`: its appending and its delivering sides, the
/// latter after what was delivered last time.
pub fn open(dir: &Path) -> Result<(Spool, Unsent), StateError> {
    let journal = Journal::open(dir)?;
    let saved = dir.join("delivered");
    let delivered = match fs::read_to_string(&saved) {
        Ok(text) => text.trim().parse().unwrap_or(0),
        Err(_) => 0,
    };
    let progress = Arc::new(Progress::default());
    progress.delivered.store(delivered, Ordering::Release);
    let tail = Tail::new(dir, delivered);
    let writer = progress.clone();
    let appender = journal.start(move |token| match token {
        Token::Through(seq) => {
            writer.durable.store(seq, Ordering::Release);
            writer.wake.notify_one();
        }
        Token::Ack(ack) => ack.done(),
    })?;
    // What an earlier run left is on disk already.
    (progress.durable).store(appender.last(), Ordering::Release);
    let unsent = Unsent {
        tail,
        progress: progress.clone(),
        saved,
    };
    let spool = Spool {
        appender,
        progress,
        forgotten: delivered,
    };
    Ok((spool, unsent))
}

/// The journal's writer stopped (a write failed; it logged why).
#[derive(Debug, thiserror::Error)]
#[error("the spool stopped writing (see the log)")]
pub struct Stopped;

impl Spool {
    /// Adds a record; `topic` says where it goes (a URL).
    pub fn append(&mut self, topic: &str, payload: &[u8]) -> Result<(), Stopped> {
        (self.appender.append(topic, payload, None)).map_err(|_| Stopped)?;
        Ok(())
    }

    /// Gives `acks` back once what was appended so far is on disk, and
    /// lets the deliverer know of it; hands the records to the writer.
    pub fn commit(&mut self, acks: Vec<Ack>) -> Result<(), Stopped> {
        let last = self.appender.last();
        (self.appender.when_durable(Token::Through(last))).map_err(|_| Stopped)?;
        for ack in acks {
            self.appender
                .when_durable(Token::Ack(ack))
                .map_err(|_| Stopped)?;
        }
        self.appender.flush().map_err(|_| Stopped)?;
        let delivered = self.progress.delivered.load(Ordering::Acquire);
        if delivered >= self.forgotten + FORGET_EVERY {
            self.appender.forget_through(delivered);
            self.forgotten = delivered;
        }
        Ok(())
    }
}

impl Unsent {
    /// Up to `limit` records on disk and not delivered, in order.
    pub fn next(&mut self, limit: usize) -> Result<Vec<Record>, StateError> {
        let durable = self.progress.durable.load(Ordering::Acquire);
        self.tail.read(durable, limit)
    }

    /// Waits until more records are on disk.
    pub async fn more(&self) {
        let woken = self.progress.wake.notified();
        if self.progress.durable.load(Ordering::Acquire) > self.tail.after() {
            return;
        }
        woken.await;
    }

    /// Whether every record on disk has been read.
    pub fn caught_up(&self) -> bool {
        self.progress.durable.load(Ordering::Acquire) <= self.tail.after()
    }

    /// Records that everything up to `seq` is delivered: a restart does
    /// not send it again.
    pub fn delivered(&mut self, seq: u64) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: self.saved.display().to_string(),
            source,
        };
        let temporary = self.saved.with_extension("new");
        fs::write(&temporary, seq.to_string()).map_err(io)?;
        fs::File::open(&temporary)
            .and_then(|f| f.sync_all())
            .map_err(io)?;
        fs::rename(&temporary, &self.saved).map_err(io)?;
        self.progress.delivered.store(seq, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(records: &[Record]) -> Vec<String> {
        (records.iter())
            .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
            .collect()
    }

    #[test]
    fn records_come_out_in_order_once_on_disk_and_a_reopened_spool_resumes_after_the_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let (mut spool, mut unsent) = open(dir.path()).unwrap();
        for i in 0..5 {
            spool.append("u", format!("r{i}").as_bytes()).unwrap();
        }
        spool.commit(Vec::new()).unwrap();
        let mut read = Vec::new();
        for _ in 0..1000 {
            read.extend(unsent.next(3).unwrap());
            if read.len() == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(payloads(&read), ["r0", "r1", "r2", "r3", "r4"]);
        assert!(unsent.caught_up());
        unsent.delivered(read[2].seq).unwrap();
        drop((spool, unsent));

        let (mut spool, mut unsent) = open(dir.path()).unwrap();
        spool.append("u", b"r5").unwrap();
        spool.commit(Vec::new()).unwrap();
        let mut again = Vec::new();
        for _ in 0..1000 {
            again.extend(unsent.next(10).unwrap());
            if again.len() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(payloads(&again), ["r3", "r4", "r5"]);
    }
}
