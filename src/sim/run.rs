//! Running a simulation to an output, paced, until a limit.
//!
//! `floe simulate` writes to stdout or a file; the `sim` source feeds a
//! pipeline. Both go through [`run`], so pacing, limits and labels behave
//! the same everywhere.

use super::{Label, Messages, Simulation};
use crate::pace::{Pace, Pacer, nap};

/// Where simulated messages go.
pub trait Output {
    type Error;

    /// One message (a JSON object) from `device`.
    fn message(&mut self, device: &str, line: &str) -> Result<(), Self::Error>;

    /// A fault began.
    fn label(&mut self, label: &Label) -> Result<(), Self::Error>;

    /// Called before the run waits, and at the end.
    fn flush(&mut self) -> Result<(), Self::Error>;
}

/// When a run ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// After this many messages.
    Messages(u64),
    /// When simulated time reaches this (epoch ms).
    Until(i64),
    /// Only when stopped.
    Never,
}

impl Limit {
    /// The limit for running `duration_ms` of wall-clock time at `pace`,
    /// from simulated time `start`. The amount of output depends only on
    /// the pace, not on how fast the machine is, so a seeded run is
    /// reproducible: `Rate` gives exactly rate × duration messages, `Speed`
    /// covers speed × duration of simulated time, and `Max`, having no
    /// wall-clock meaning, covers the duration in simulated time.
    pub fn for_duration(pace: Pace, duration_ms: i64, start: i64) -> Limit {
        match pace {
            Pace::Rate(rate) => {
                Limit::Messages((rate * duration_ms as f64 / 1000.0).round() as u64)
            }
            // `as` saturates, and so does the addition: a speed of 1e300
            // runs to the end of time rather than wrapping into the past.
            Pace::Speed(speed) => {
                Limit::Until(start.saturating_add((speed * duration_ms as f64) as i64))
            }
            Pace::Max => Limit::Until(start.saturating_add(duration_ms)),
        }
    }
}

/// How many messages pass between checks of the stop flag when nothing waits.
const STOP_CHECK: u64 = 1024;

/// Runs `sim` into `out` until `limit` or until `stop` says so; returns the
/// number of messages sent. The first `skip` messages are made but neither
/// sent nor paced: a restored run resumes the same seeded simulation where
/// it stopped.
pub fn run<O: Output>(
    sim: &mut Simulation,
    out: &mut O,
    pace: Pace,
    limit: Limit,
    skip: u64,
    stop: impl Fn() -> bool,
) -> Result<u64, O::Error> {
    let mut pacer = Pacer::new(pace);
    let (mut messages, mut labels) = (Messages::default(), Vec::new());
    let mut sent = 0u64;
    'run: loop {
        match limit {
            Limit::Messages(n) if sent >= n => break,
            Limit::Until(t) if sim.now() >= t => break,
            _ if sent.is_multiple_of(STOP_CHECK) && stop() => break,
            _ => {}
        }
        sim.advance(&mut messages, &mut labels);
        for label in labels.drain(..) {
            out.label(&label)?;
        }
        for (device, line) in messages.iter() {
            if matches!(limit, Limit::Messages(n) if sent >= n) {
                break 'run;
            }
            if sent < skip {
                sent += 1;
                continue;
            }
            if let Some(delay) = pacer.delay(sim.now()) {
                out.flush()?;
                if !nap(delay, &stop) {
                    break 'run;
                }
            }
            out.message(sim.device_name(device), line)?;
            sent += 1;
        }
        messages.clear();
    }
    out.flush()?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::super::Scenario;
    use super::*;

    #[derive(Default)]
    struct Collect {
        lines: Vec<String>,
        labels: Vec<Label>,
    }

    impl Output for Collect {
        type Error = ();
        fn message(&mut self, _: &str, line: &str) -> Result<(), ()> {
            self.lines.push(line.to_string());
            Ok(())
        }
        fn label(&mut self, label: &Label) -> Result<(), ()> {
            self.labels.push(label.clone());
            Ok(())
        }
        fn flush(&mut self) -> Result<(), ()> {
            Ok(())
        }
    }

    const SCENARIO: &str = "kind: trucks\ntrucks: 50\nfaults:\n  sensor_spike: {per_day: 100}\n";

    fn collect(seed: u64, limit: Limit) -> Collect {
        let scenario = Scenario::parse(SCENARIO, "t".into()).unwrap();
        let mut sim = scenario.simulation(seed).unwrap();
        let mut out = Collect::default();
        run(&mut sim, &mut out, Pace::Max, limit, 0, || false).unwrap();
        out
    }

    #[test]
    fn limits_are_exact_and_seeds_reproducible() {
        let a = collect(7, Limit::Messages(1234));
        assert_eq!(a.lines.len(), 1234);
        let b = collect(7, Limit::Messages(1234));
        assert_eq!(a.lines, b.lines);
        assert_eq!(a.labels, b.labels);
        assert_ne!(a.lines, collect(8, Limit::Messages(1234)).lines);
        // 50 trucks every 10 s for 10 simulated minutes.
        let start = Scenario::parse(SCENARIO, "t".into())
            .unwrap()
            .simulation(7)
            .unwrap()
            .now();
        let ten_minutes = collect(7, Limit::Until(start + 600_000));
        assert!(
            (2950..=3050).contains(&ten_minutes.lines.len()),
            "{}",
            ten_minutes.lines.len()
        );
    }

    #[test]
    fn durations_map_to_exact_amounts() {
        assert_eq!(
            Limit::for_duration(Pace::Rate(50_000.0), 10_000, 0),
            Limit::Messages(500_000)
        );
        assert_eq!(
            Limit::for_duration(Pace::Speed(60.0), 1_000, 5),
            Limit::Until(60_005)
        );
        assert_eq!(
            Limit::for_duration(Pace::Max, 3_600_000, 0),
            Limit::Until(3_600_000)
        );
        assert_eq!(
            Limit::for_duration(Pace::Speed(1e300), 1_000, 5),
            Limit::Until(i64::MAX)
        );
        assert_eq!(
            Limit::for_duration(Pace::Rate(1e-20), 1_000, 0),
            Limit::Messages(0)
        );
    }
}
