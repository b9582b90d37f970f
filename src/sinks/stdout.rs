//! `stdout`: alerts and outputs as JSON lines on standard output.
//!
//! ```yaml
//! console:
//!   type: stdout
//!   inputs: [too_warm, temp_5m]
//! ```

use super::{LinesSink, Sink, SinkError, SinkSpec};
use crate::config::Context;
use serde::Deserialize;
use std::io::BufWriter;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

impl SinkSpec for Config {
    fn open(&self, _ctx: &Context) -> Result<Box<dyn Sink>, SinkError> {
        let out = BufWriter::with_capacity(64 * 1024, std::io::stdout());
        Ok(Box::new(LinesSink::new("stdout", Box::new(out))))
    }
}
