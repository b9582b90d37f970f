//! `floe eval`: how well a pipeline's alerts match the simulator's labels.

use super::Failure;
use super::simulate::parse_duration;
use crate::config::Duration;
use crate::event::time;
use crate::sim::Label;
use crate::sim::eval::{self, Fault, Fired, Scoring, Warning};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Ground truth written by `floe simulate --labels`.
    #[arg(long, value_name = "FILE")]
    labels: PathBuf,
    /// Alerts of a run over the same simulation (JSON lines; other lines
    /// in the file are skipped).
    #[arg(long, value_name = "FILE")]
    alerts: PathBuf,
    /// How long after a fault ends an alert still counts for it.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    grace: Duration,
    /// Faults beginning less than this before the end of the run are left
    /// out: they had no time to show.
    #[arg(long, value_parser = parse_duration, default_value = "30m")]
    settle: Duration,
    /// Entities simulated (default: the devices named in labels and alerts).
    #[arg(long)]
    entities: Option<usize>,
    /// Simulated time covered (default: first to last label or alert).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// An early-warning rule to time against the breach it warns of:
    /// `WARNING:BREACH`, e.g. `warming:too_warm` (repeatable); a breach of
    /// `RULE@SEVERITY` is the rule's first alert at that severity
    /// (`warming:too_warm@critical`, for a threshold with levels).
    #[arg(long, value_name = "WARNING:BREACH")]
    warning: Vec<String>,
    /// How much warning counts as in time.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    lead: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn eval(args: Args) -> Result<(), Failure> {
    let labels: Vec<Label> = json_lines(&args.labels)?
        .into_iter()
        .map(|(n, v)| serde_json::from_value(v).map_err(|e| at(&args.labels, n, e)))
        .collect::<Result<_, _>>()?;
    let faults: Vec<Fault> = labels
        .iter()
        .map(Fault::from_label)
        .collect::<Result<_, _>>()
        .map_err(Failure::Invalid)?;
    let alerts = firing_alerts(&args.alerts)?;
    let times = faults
        .iter()
        .map(|f| f.start)
        .chain(alerts.iter().map(|a| a.time));
    let (first, last) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let (first, last) = if first > last { (0, 0) } else { (first, last) };
    let end = match args.duration {
        Some(d) => first + d.ms(),
        None => last,
    };
    let devices: HashSet<&str> = (faults.iter().map(|f| f.device.as_str()))
        .chain(alerts.iter().map(|a| a.key.as_str()))
        .collect();
    let warnings = (args.warning.iter())
        .map(|w| match w.split_once(':') {
            Some((rule, breach)) => Ok(Warning {
                rule: rule.into(),
                breach: breach.into(),
                needed: args.lead.ms(),
            }),
            None => Err(Failure::Invalid(format!(
                "--warning {w}: expected WARNING:BREACH, e.g. warming:too_warm"
            ))),
        })
        .collect::<Result<_, _>>()?;
    let scoring = Scoring {
        warnings,
        grace: args.grace.ms(),
        settle: args.settle.ms(),
        entities: args.entities.unwrap_or(devices.len()),
        hours: (end - first) as f64 / 3_600_000.0,
    };
    let report = eval::score(&faults, &alerts, end, &scoring);
    if args.json {
        let json = serde_json::to_string_pretty(&report).unwrap_or_default();
        println!("{json}");
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

/// The firing alerts of a file of JSON lines.
fn firing_alerts(path: &Path) -> Result<Vec<Fired>, Failure> {
    let mut alerts = Vec::new();
    for (n, line) in json_lines(path)? {
        if line["state"] != "firing" {
            continue;
        }
        let text = |f: &str| line[f].as_str().map(str::to_string);
        let time_of = |f: &str| text(f).and_then(|t| time::parse_rfc3339(&t));
        let time = time_of("event_time");
        // Alerts of floe versions before episode_start began at event_time;
        // a level's condition began at its own start.
        let episode_start = (time_of("level_start").or(time_of("episode_start"))).or(time);
        match (text("key"), text("rule"), time, episode_start) {
            (Some(key), Some(rule), Some(time), Some(episode_start)) => alerts.push(Fired {
                at_severity: text("severity").map(|s| format!("{rule}@{s}")),
                key,
                rule,
                time,
                episode_start,
            }),
            _ => return Err(at(path, n, "a firing alert needs key, rule and event_time")),
        }
    }
    Ok(alerts)
}

/// The JSON objects of a file, with their line numbers.
fn json_lines(path: &Path) -> Result<Vec<(usize, serde_json::Value)>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Invalid(format!("{}: {e}", path.display())))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .map(|v| (i + 1, v))
                .map_err(|e| at(path, i + 1, e))
        })
        .collect()
}

fn at(path: &Path, line: usize, e: impl std::fmt::Display) -> Failure {
    Failure::Invalid(format!("{}:{line}: {e}", path.display()))
}
