//! `file`: replays a recording, JSON lines or CSV.
//!
//! ```yaml
//! recording:
//!   type: file
//!   path: data/trucks.jsonl   # relative to the pipeline file
//!   format: jsonl             # or csv; default from the extension
//!   speed: 0                  # 0: as fast as possible; 1: real time; 60: an hour a minute
//!   key: device
//!   time: ts
//! ```
//!
//! The run ends when the file ends. Malformed lines are dead-lettered with
//! their line number; a line longer than `max_message_bytes` is skipped
//! without being held in memory, and its first kilobyte is dead-lettered.

use super::{Ingest, Source, SourceError, SourceSpec};
use crate::config::{Context, Spanned};
use crate::event::decode::{CsvHeader, DecodeError, Envelope, Format};
use crate::pace::{self, Pace, Pacer, nap};
use crate::runtime::BoxFuture;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The recording; relative paths start at the pipeline file's directory.
    path: Spanned<PathBuf>,
    /// `jsonl` or `csv`. Default: `csv` for `.csv` files, else `jsonl`.
    format: Option<Format>,
    /// Replay speed relative to event time: 0 replays as fast as possible.
    #[serde(default, deserialize_with = "pace::deserialize_speed")]
    speed: f64,
}

impl Config {
    /// A file given on the command line: relative to the working directory,
    /// replayed as fast as possible.
    pub fn for_path(path: &str) -> Config {
        let path = std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| PathBuf::from(path));
        Config {
            path: Spanned {
                value: path,
                loc: Default::default(),
            },
            format: None,
            speed: 0.0,
        }
    }

    fn format(&self) -> Format {
        self.format.unwrap_or_else(|| match self.path.extension() {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        })
    }
}

impl SourceSpec for Config {
    fn live(&self) -> bool {
        self.speed > 0.0
    }

    fn open(&self, ctx: &Context) -> Result<Box<dyn Source>, SourceError> {
        let path = ctx.base.join(&self.path.value);
        let file = File::open(&path).map_err(|source| SourceError::Open {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Box::new(FileSource {
            path: path.display().to_string(),
            file,
            format: self.format(),
            speed: self.speed,
        }))
    }
}

struct FileSource {
    path: String,
    file: File,
    format: Format,
    speed: f64,
}

/// How many lines pass between checks for a shutdown request.
const SHUTDOWN_CHECK_LINES: u64 = 4096;

impl Source for FileSource {
    fn run(self: Box<Self>, ingest: Ingest) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.replay(ingest))
                .await
                .unwrap_or(Err(SourceError::Closed))
        })
    }
}

/// Where a replay is: the byte offset after the last line handed over,
/// and that line's number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Position {
    offset: u64,
    line: u64,
}

impl FileSource {
    fn replay(self, mut ingest: Ingest) -> Result<(), SourceError> {
        let limit = ingest.decoder().max_message_bytes();
        let read_error = |source| SourceError::Read {
            path: self.path.clone(),
            source,
        };
        let mut reader = BufReader::with_capacity(1 << 20, &self.file);
        let mut csv_header: Option<CsvHeader> = None;
        let mut at = self.resume_at(&ingest);
        if at.offset > 0 {
            if self.format == Format::Csv {
                let mut header = Lines::new(&mut reader, limit);
                if let Some((bytes, _)) = header.next().map_err(read_error)? {
                    csv_header = ingest.decoder().csv_header(bytes).ok();
                }
            }
            reader
                .seek(SeekFrom::Start(at.offset))
                .map_err(read_error)?;
        }
        let mut lines = Lines::new(reader, limit);
        let mut pacer = Pacer::new(Pace::speed(self.speed));
        loop {
            if ingest.barrier_due() {
                ingest.barrier_blocking(&at)?;
            }
            let line = lines.next().map_err(read_error)?;
            let Some((bytes, size)) = line else { break };
            let number = at.line + 1;
            if number.is_multiple_of(SHUTDOWN_CHECK_LINES) && ingest.shutdown_requested() {
                break;
            }
            let origin = || serde_json::json!({"path": self.path, "line": number});
            let decoded = match (self.format, &csv_header) {
                _ if size > limit => Err(DecodeError::TooLarge { size, limit }),
                (Format::Jsonl, _) => ingest.decode_message(bytes, &Envelope::at(number)),
                (Format::Csv, Some(header)) => ingest.decode_csv(header, bytes, number),
                (Format::Csv, None) => {
                    match ingest.decoder().csv_header(bytes) {
                        Ok(header) => csv_header = Some(header),
                        Err(error) => ingest.reject_blocking(&error, origin(), bytes)?,
                    }
                    at = Position {
                        offset: at.offset + lines.taken(),
                        line: number,
                    };
                    continue;
                }
            };
            match decoded {
                Ok(event) => {
                    if let Some(delay) = pacer.delay(event.time) {
                        ingest.flush_blocking()?;
                        if !wait(&mut ingest, delay, &at)? {
                            break;
                        }
                    }
                    ingest.route_blocking(event)?;
                }
                Err(error) => ingest.reject_blocking(&error, origin(), bytes)?,
            }
            at = Position {
                offset: at.offset + lines.taken(),
                line: number,
            };
        }
        ingest.finish_blocking(&at)?;
        Ok(())
    }

    /// Where a restored run resumes: the checkpoint's position, unless the
    /// file is now shorter than that (replaced), when it starts again.
    fn resume_at(&self, ingest: &Ingest) -> Position {
        let Some(at) = ingest.resume::<Position>() else {
            return Position::default();
        };
        let len = self.file.metadata().map_or(0, |m| m.len());
        if at.offset > len {
            tracing::warn!(
                "source \"{}\": {} is shorter than where the checkpoint left it (byte {}); replaying it from the start",
                ingest.id,
                self.path,
                at.offset
            );
            return Position::default();
        }
        at
    }
}

/// Waits out a paced replay's `delay`, sending checkpoint barriers that
/// come due meanwhile (the next line is not handed over yet, so the
/// position is `at`). False if the run is stopping.
fn wait(
    ingest: &mut Ingest,
    delay: std::time::Duration,
    at: &Position,
) -> Result<bool, SourceError> {
    // A pace too slow for the clock to say when waits until stopped.
    let until = std::time::Instant::now().checked_add(delay);
    loop {
        let left = until.map_or(std::time::Duration::MAX, |u| {
            u.saturating_duration_since(std::time::Instant::now())
        });
        if nap(left, || ingest.shutdown_requested() || ingest.barrier_due()) {
            return Ok(true);
        }
        if ingest.shutdown_requested() {
            return Ok(false);
        }
        ingest.barrier_blocking(at)?;
    }
}

/// Splits a reader into lines without holding more than `limit` bytes of
/// any one line; longer lines are returned cut, with their full size.
struct Lines<R> {
    reader: R,
    limit: usize,
    line: Vec<u8>,
    /// Bytes of the previous line still to be consumed from the reader.
    consumed: usize,
    /// Bytes the last line took from the input, its newline included.
    taken: u64,
}

impl<R: BufRead> Lines<R> {
    fn new(reader: R, limit: usize) -> Self {
        Lines {
            reader,
            limit,
            line: Vec::new(),
            consumed: 0,
            taken: 0,
        }
    }

    /// Bytes the line last returned took from the input, with its newline:
    /// how far a replay has come.
    fn taken(&self) -> u64 {
        self.taken
    }

    /// The next line (without its `\n` or `\r\n`) and its full size.
    fn next(&mut self) -> std::io::Result<Option<(&[u8], usize)>> {
        self.reader.consume(std::mem::take(&mut self.consumed));
        self.line.clear();
        self.taken = 0;
        let mut size = 0;
        let mut fast = true;
        loop {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                if size == 0 {
                    return Ok(None);
                }
                break;
            }
            match memchr::memchr(b'\n', buf) {
                // The whole line is in the buffer: hand it out without copying.
                Some(i) if fast => {
                    self.consumed = i + 1;
                    self.taken = i as u64 + 1;
                    let line = trim_cr(&self.reader.fill_buf()?[..i]);
                    return Ok(Some((line, line.len())));
                }
                Some(i) => {
                    keep(&mut self.line, self.limit, &buf[..i]);
                    size += i;
                    self.taken += i as u64 + 1;
                    self.reader.consume(i + 1);
                    break;
                }
                None => {
                    let n = buf.len();
                    keep(&mut self.line, self.limit, buf);
                    size += n;
                    self.taken += n as u64;
                    self.reader.consume(n);
                    fast = false;
                }
            }
        }
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
            size -= 1;
        }
        Ok(Some((&self.line, size)))
    }
}

/// Appends what fits of `chunk`: one byte past `limit` marks the line as too long.
fn keep(line: &mut Vec<u8>, limit: usize, chunk: &[u8]) {
    let room = (limit + 1).saturating_sub(line.len());
    line.extend_from_slice(&chunk[..chunk.len().min(room)]);
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines(input: &[u8], buffer: usize, limit: usize) -> Vec<(Vec<u8>, usize)> {
        let mut lines = Lines::new(BufReader::with_capacity(buffer, input), limit);
        let mut out = Vec::new();
        while let Some((line, size)) = lines.next().unwrap() {
            out.push((line.to_vec(), size));
        }
        out
    }

    #[test]
    fn splits_lines_across_buffer_boundaries() {
        let input = b"one\r\ntwo\n\nthree-is-longer\nlast";
        for buffer in [1, 2, 3, 7, 64] {
            let lines = all_lines(input, buffer, 100);
            let texts: Vec<_> = lines
                .iter()
                .map(|(l, _)| String::from_utf8_lossy(l).into_owned())
                .collect();
            assert_eq!(
                texts,
                ["one", "two", "", "three-is-longer", "last"],
                "buffer {buffer}"
            );
        }
    }

    #[test]
    fn long_lines_are_cut_but_measured() {
        let mut input = vec![b'x'; 5000];
        input.extend_from_slice(b"\nok\n");
        let lines = all_lines(&input, 64, 100);
        assert_eq!(lines[0].1, 5000);
        assert_eq!(lines[0].0.len(), 101);
        assert_eq!(lines[1], (b"ok".to_vec(), 2));
    }
}
