//! `stdout`: alerts and outputs as JSON lines on standard output.
//!
//! ```yaml
//! console:
//!   type: stdout
//!   inputs: [too_warm, temp_5m]
//! ```

use super::{LinesSink, Sink, SinkError, SinkSpec};
use serde::Deserialize;
use std::io::BufWriter;
use std::path::Path;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl SinkSpec for Config {
    fn open(&self, _base: &Path) -> Result<Box<dyn Sink>, SinkError> {
        let out = BufWriter::with_capacity(64 * 1024, std::io::stdout());
        Ok(Box::new(LinesSink::new("stdout", Box::new(out))))
    }
}
