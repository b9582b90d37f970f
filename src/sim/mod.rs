//! The fleet simulator: refrigerated trucks and factory machines, with
//! labelled faults.
//!
//! A scenario file (`simulators/*.yaml`) names a model and its parameters.
//! The simulation runs on its own clock: every device acts at its own
//! times, and a queue hands the next action to the model, so the output is
//! in the order devices would send it. Everything random comes from the
//! seed, one stream per device, so a seed gives the same bytes every time
//! however fast the output is paced.
//!
//! Faults are scheduled per device as Poisson processes; when one begins,
//! its ground truth is recorded as a [`Label`]: which device, which fault,
//! when it starts and ends, and which rules a correct pipeline raises.

pub mod eval;
pub mod factory;
pub mod run;
pub mod trucks;

use crate::config::{ConfigError, Diagnostics, Duration, Node, Spanned, from_node, yaml};
use crate::event::time;
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::Path;

/// 2026-11-23T06:00:00Z: the default start, so seeded runs are identical
/// whenever they are made.
const DEFAULT_START: i64 = 1_795_413_600_000;

/// A device model: the physics and faults of one kind of fleet.
pub trait Model: Send {
    fn devices(&self) -> usize;

    /// The device's name: the entity key of its messages.
    fn name(&self, device: usize) -> &str;

    /// When the device first acts.
    fn first(&self, device: usize) -> i64;

    /// Device `device` acts at simulated time `now`: it appends the
    /// messages it sends now (none, one, or a backlog) to `out`, records
    /// faults that begin in `labels`, and returns when it acts next.
    fn step(&mut self, device: usize, now: i64, out: &mut Messages, labels: &mut Vec<Label>)
    -> i64;
}

/// Ground truth for one fault (or one benign event that must not alert).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Label {
    pub device: String,
    pub fault: String,
    /// Event times, RFC 3339.
    pub start: String,
    pub end: String,
    /// The rules a correct pipeline raises for it; empty for benign events.
    pub rules: Vec<String>,
}

impl Label {
    pub fn new(device: &str, fault: &str, start: i64, end: i64, rules: &[&str]) -> Label {
        Label {
            device: device.to_string(),
            fault: fault.to_string(),
            start: time::format_rfc3339(start),
            end: time::format_rfc3339(end),
            rules: rules.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// Messages produced by one step, one JSON object per line.
#[derive(Debug, Default)]
pub struct Messages {
    /// The lines, concatenated without separators.
    text: String,
    /// (device, end of its line in `text`).
    ends: Vec<(usize, usize)>,
}

impl Messages {
    /// The buffer to write the next message into; finish it with [`Messages::end`].
    pub fn text(&mut self) -> &mut String {
        &mut self.text
    }

    /// Marks everything written since the last message as one message.
    pub fn end(&mut self, device: usize) {
        self.ends.push((device, self.text.len()));
    }

    /// Adds a message written elsewhere (a buffered one).
    pub fn push(&mut self, device: usize, line: &str) {
        self.text.push_str(line);
        self.end(device);
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// (device, line) pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(device, end)| {
            let line = &self.text[start..end];
            start = end;
            (device, line)
        })
    }

    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// A running simulation: a model and the queue of device actions.
pub struct Simulation {
    model: Box<dyn Model>,
    /// (time, device) of every device's next action, earliest first.
    queue: BinaryHeap<Reverse<(i64, usize)>>,
    now: i64,
}

impl Simulation {
    pub fn new(model: Box<dyn Model>) -> Simulation {
        let queue = (0..model.devices())
            .map(|d| Reverse((model.first(d), d)))
            .collect();
        let now = (0..model.devices())
            .map(|d| model.first(d))
            .min()
            .unwrap_or(DEFAULT_START);
        Simulation { model, queue, now }
    }

    /// Simulated time of the last action.
    pub fn now(&self) -> i64 {
        self.now
    }

    pub fn devices(&self) -> usize {
        self.model.devices()
    }

    pub fn device_name(&self, device: usize) -> &str {
        self.model.name(device)
    }

    /// Runs the next device action, appending what it sends to `out`.
    pub fn advance(&mut self, out: &mut Messages, labels: &mut Vec<Label>) {
        let Some(Reverse((now, device))) = self.queue.pop() else {
            return;
        };
        self.now = now;
        let next = self.model.step(device, now, out, labels);
        self.queue.push(Reverse((next.max(now + 1), device)));
    }
}

/// A scenario file.
pub struct Scenario {
    pub name: String,
    model: Node,
    kind: Spanned<String>,
    start: i64,
}

/// Model kinds, by the `kind:` scenario files use.
const KINDS: &[&str] = &["trucks", "factory"];

/// Keys every scenario has; the rest belong to the model.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    name: Option<String>,
    kind: Spanned<String>,
    /// When simulated time begins (RFC 3339).
    start: Option<Spanned<String>>,
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Scenario, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics::new(
                path,
                vec![ConfigError::new(None, format!("cannot read file: {e}"))],
            )
        })?;
        let fallback = path.file_stem().map(|s| s.to_string_lossy().into_owned());
        Scenario::parse(&text, fallback.unwrap_or_default()).map_err(|e| Diagnostics::new(path, e))
    }

    pub fn parse(text: &str, fallback_name: String) -> Result<Scenario, Vec<ConfigError>> {
        let root = yaml::parse(text)?;
        let header: Header = from_node(&root.only(&["name", "kind", "start"]))?;
        if !KINDS.contains(&header.kind.as_str()) {
            let hint = crate::config::did_you_mean(&header.kind, KINDS.iter().copied());
            let hint = if hint.is_empty() {
                ", expected trucks or factory".to_string()
            } else {
                hint
            };
            let message = format!("unknown scenario kind `{}`{hint}", header.kind.value);
            return Err(vec![ConfigError::at(header.kind.loc, message)]);
        }
        let start = match &header.start {
            None => DEFAULT_START,
            Some(s) => time::parse_rfc3339(s)
                .ok_or_else(|| vec![ConfigError::at(s.loc, "`start` must be an RFC 3339 time")])?,
        };
        let scenario = Scenario {
            name: header.name.unwrap_or(fallback_name),
            model: root.without(&["name", "kind", "start"]),
            kind: header.kind,
            start,
        };
        scenario.build(0).map(|_| scenario)
    }

    /// The model's kind: `trucks` or `factory`.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The model, seeded.
    pub fn build(&self, seed: u64) -> Result<Box<dyn Model>, Vec<ConfigError>> {
        Ok(match self.kind.as_str() {
            "trucks" => Box::new(trucks::Fleet::new(
                from_node(&self.model)?,
                self.start,
                seed,
            )?),
            _ => Box::new(factory::Plant::new(
                from_node(&self.model)?,
                self.start,
                seed,
            )?),
        })
    }

    /// Where `floe simulate --to mqtt://` publishes unless told: the
    /// topics the example pipelines subscribe to.
    pub fn default_topic(&self) -> &'static str {
        match self.kind.as_str() {
            "trucks" => "fleet/{device}/telemetry",
            _ => "plant/{device}/telemetry",
        }
    }

    pub fn simulation(&self, seed: u64) -> Result<Simulation, Vec<ConfigError>> {
        Ok(Simulation::new(self.build(seed)?))
    }
}

/// `1h..3h`: a range of durations a value is drawn from uniformly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DurationRange(pub i64, pub i64);

impl DurationRange {
    pub fn sample(&self, rng: &mut crate::rng::Rng) -> i64 {
        rng.between(self.0, self.1)
    }
}

impl<'de> Deserialize<'de> for DurationRange {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let (lo, hi) = text.split_once("..").unwrap_or((&text, &text));
        let (lo, hi) = (Duration::parse(lo), Duration::parse(hi));
        match (lo, hi) {
            (Ok(lo), Ok(hi)) if lo <= hi => Ok(DurationRange(lo.ms(), hi.ms())),
            (Ok(_), Ok(_)) => Err(serde::de::Error::custom(format!(
                "`{text}`: the range must not run backwards"
            ))),
            (Err(e), _) | (_, Err(e)) => Err(serde::de::Error::custom(e)),
        }
    }
}

/// How often a fault happens, and for how long.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRate {
    /// Expected occurrences per device per day of simulated time.
    pub per_day: f64,
    /// How long one lasts; ignored by instantaneous faults (spikes, jumps).
    #[serde(default = "instant")]
    pub duration: DurationRange,
}

fn instant() -> DurationRange {
    DurationRange(0, 0)
}

const DAY_MS: f64 = 86_400_000.0;

impl FaultRate {
    /// When the next occurrence begins after `now`; never for a zero rate.
    pub fn next_after(&self, now: i64, rng: &mut crate::rng::Rng) -> i64 {
        if self.per_day <= 0.0 {
            return i64::MAX;
        }
        now + rng.exponential(DAY_MS / self.per_day) as i64
    }
}

/// When each kind of fault next begins on one device: one Poisson process
/// per kind.
#[derive(Debug)]
pub struct Schedule<const N: usize> {
    next: [i64; N],
}

impl<const N: usize> Schedule<N> {
    pub fn new(rates: [Option<FaultRate>; N], from: i64, rng: &mut crate::rng::Rng) -> Self {
        Schedule {
            next: rates.map(|rate| rate.map_or(i64::MAX, |r| r.next_after(from, rng))),
        }
    }

    /// The kind of fault due at `now` and when it ends, if one is due and
    /// `free` says the device can take it. One the device cannot take is
    /// skipped: its process moves on to the next occurrence.
    pub fn due(
        &mut self,
        rates: [Option<FaultRate>; N],
        now: i64,
        rng: &mut crate::rng::Rng,
        free: impl Fn(usize) -> bool,
    ) -> Option<(usize, i64)> {
        let (kind, &due) = self.next.iter().enumerate().min_by_key(|(_, t)| **t)?;
        let rate = rates[kind].filter(|_| due <= now)?;
        self.next[kind] = rate.next_after(now, rng);
        free(kind).then(|| (kind, now + rate.duration.sample(rng)))
    }
}

/// Width of device numbers, so names sort (`truck-0042`).
pub fn name_width(devices: usize) -> usize {
    devices.saturating_sub(1).to_string().len().max(4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_duration_ranges() {
        let node = yaml::parse("a: 1h..3h\nb: 5m\nc: 3h..1h\n").unwrap();
        assert_eq!(
            from_node::<DurationRange>(node.get("a").unwrap()).unwrap(),
            DurationRange(3_600_000, 10_800_000)
        );
        assert_eq!(
            from_node::<DurationRange>(node.get("b").unwrap()).unwrap(),
            DurationRange(300_000, 300_000)
        );
        assert!(from_node::<DurationRange>(node.get("c").unwrap()).is_err());
    }

    #[test]
    fn messages_split_into_lines() {
        let mut m = Messages::default();
        m.text().push_str("{\"a\":1}");
        m.end(3);
        m.push(4, "{\"b\":2}");
        let lines: Vec<_> = m.iter().collect();
        assert_eq!(lines, [(3, "{\"a\":1}"), (4, "{\"b\":2}")]);
    }

    #[test]
    fn unknown_kinds_and_bad_starts_are_reported_at_their_position() {
        let err = Scenario::parse("kind: truck\n", "x".into()).err().unwrap();
        assert_eq!(
            err[0].message,
            "unknown scenario kind `truck`, did you mean `trucks`?"
        );
        let err = Scenario::parse("kind: trucks\nstart: yesterday\n", "x".into())
            .err()
            .unwrap();
        assert_eq!(err[0].loc.map(|l| l.line), Some(2));
    }
}
