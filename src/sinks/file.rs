//! `file`: alerts and outputs as JSON lines in a file.
//!
//! ```yaml
//! archive:
//!   type: file
//!   inputs: [too_warm]
//!   path: alerts.jsonl   # relative to the pipeline file
//!   append: true         # false truncates the file at start
//! ```
//!
//! The file is fsynced before the sink acknowledges what it wrote (once per
//! acknowledgement, not per line), so a checkpoint or a Kafka commit never
//! covers alerts that a power cut could still take away.

use super::{LinesSink, Sink, SinkError, SinkSpec};
use crate::config::Context;
use serde::Deserialize;
use std::fs::OpenOptions;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to write; relative paths start at the pipeline file's directory.
    path: PathBuf,
    /// Keep what the file already holds (the default), so a restart never
    /// erases earlier alerts.
    #[serde(default = "yes")]
    append: bool,
}

fn yes() -> bool {
    true
}

impl Config {
    /// The sink for `--sink NAME=file:PATH`: PATH from the working
    /// directory, appended to.
    pub fn for_path(path: &std::path::Path) -> Config {
        let path = std::env::current_dir()
            .map(|dir| dir.join(path))
            .unwrap_or_else(|_| path.to_path_buf());
        Config { path, append: true }
    }
}

impl SinkSpec for Config {
    fn open(&self, ctx: &Context) -> Result<Box<dyn Sink>, SinkError> {
        let path = ctx.base.join(&self.path);
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&path)
            .map_err(|source| SinkError::Open {
                path: path.display().to_string(),
                source,
            })?;
        let what = path.display().to_string();
        let sink = LinesSink::file(&what, file, 256 * 1024).map_err(|source| SinkError::Open {
            path: what.clone(),
            source,
        })?;
        Ok(Box::new(sink))
    }
}
