//! `sim`: the simulator in-process, as a source.
//!
//! ```yaml
//! trucks:
//!   type: sim
//!   scenario: ../simulators/trucks.yaml   # relative to the pipeline file
//!   speed: 60          # simulated time per wall time; 0 as fast as possible
//!   seed: 7
//!   duration: 12h      # simulated time to run; default: until stopped
//!   key: device
//!   time: ts
//! ```
//!
//! Messages go through the source's decoder like any other, so a pipeline
//! tested against the simulator is tested against real decoding.

use super::{Ingest, Source, SourceError, SourceSpec};
use crate::config::{Context, Duration, Spanned};
use crate::event::decode::Envelope;
use crate::pace::{self, Pace};
use crate::runtime::BoxFuture;
use crate::sim::run::{self, Limit, Output};
use crate::sim::{Label, Scenario, Simulation};
use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The scenario file; relative paths start at the pipeline file's directory.
    scenario: Spanned<PathBuf>,
    /// Simulated time per wall-clock time; 0 runs as fast as possible.
    #[serde(default = "real_time", deserialize_with = "pace::deserialize_speed")]
    speed: f64,
    /// The same seed gives the same messages.
    #[serde(default)]
    seed: u64,
    /// How much simulated time to run; without it, until stopped.
    duration: Option<Duration>,
}

fn real_time() -> f64 {
    1.0
}

impl Config {
    /// A scenario given on the command line (`sim:PATH`): real time, seed 0.
    pub fn for_path(path: &str) -> Config {
        let path = std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| PathBuf::from(path));
        Config {
            scenario: Spanned {
                value: path,
                loc: Default::default(),
            },
            speed: 1.0,
            seed: 0,
            duration: None,
        }
    }
}

impl SourceSpec for Config {
    fn live(&self) -> bool {
        self.speed > 0.0
    }

    fn open(&self, ctx: &Context) -> Result<Box<dyn Source>, SourceError> {
        let path = ctx.base.join(&self.scenario.value);
        let scenario = Scenario::load(&path).map_err(|d| SourceError::Scenario(d.to_string()))?;
        let sim = scenario.simulation(self.seed).map_err(|e| {
            SourceError::Scenario(crate::config::Diagnostics::new(&path, e).to_string())
        })?;
        let pace = Pace::speed(self.speed);
        let limit = match self.duration {
            Some(d) => Limit::Until(sim.now().saturating_add(d.ms())),
            None => Limit::Never,
        };
        Ok(Box::new(SimSource { sim, pace, limit }))
    }
}

/// A running simulation feeding a pipeline.
pub struct SimSource {
    sim: Simulation,
    pace: Pace,
    limit: Limit,
}

impl SimSource {
    pub fn new(sim: Simulation, pace: Pace, limit: Limit) -> SimSource {
        SimSource { sim, pace, limit }
    }
}

impl Source for SimSource {
    fn run(self: Box<Self>, ingest: Ingest) -> BoxFuture<Result<(), SourceError>> {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let SimSource {
                    mut sim,
                    pace,
                    limit,
                } = *self;
                let skip = ingest.resume::<u64>().unwrap_or(0);
                let mut out = IngestOutput {
                    ingest,
                    position: skip,
                };
                let stop = out.ingest.shutdown_handle();
                run::run(&mut sim, &mut out, pace, limit, skip, || {
                    stop.is_requested()
                })?;
                out.ingest.finish_blocking(&out.position)?;
                Ok(())
            })
            .await
            .unwrap_or(Err(SourceError::Closed))
        })
    }
}

/// Decodes simulated messages into the pipeline.
struct IngestOutput {
    ingest: Ingest,
    /// Messages made so far (the number of the last one, as its origin):
    /// where a restored run resumes.
    position: u64,
}

impl Output for IngestOutput {
    type Error = SourceError;

    fn message(&mut self, device: &str, line: &str) -> Result<(), SourceError> {
        if self.ingest.barrier_due() {
            self.ingest.barrier_blocking(&self.position)?;
        }
        self.position += 1;
        let envelope = Envelope::at(self.position);
        match self.ingest.decode_message(line.as_bytes(), &envelope) {
            Ok(event) => self.ingest.route_blocking(event)?,
            Err(error) => {
                let origin = serde_json::json!({"device": device, "message": self.position});
                self.ingest
                    .reject_blocking(&error, origin, line.as_bytes())?
            }
        }
        Ok(())
    }

    fn label(&mut self, label: &Label) -> Result<(), SourceError> {
        tracing::debug!(device = %label.device, fault = %label.fault, start = %label.start, "simulated fault");
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SourceError> {
        Ok(self.ingest.flush_blocking()?)
    }
}
