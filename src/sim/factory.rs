//! Factory machines (presses): temperature, vibration, power and speed,
//! with operating modes and faults.
//!
//! ```yaml
//! kind: factory
//! machines: 200
//! interval: 200ms        # 1,000 readings a second for the plant
//! faults:
//!   bearing_wear: {per_day: 0.2, duration: 4h..8h}
//! ```
//!
//! A machine is idle or running at a load between 40% and 100%; modes and
//! loads change on their own every few tens of minutes and shift the normal
//! levels (that is operation, not a fault). Temperature follows its target
//! with an 8-minute time constant; vibration, power and speed follow the
//! load with noise.
//!
//! Faults: bearing wear (vibration rising over hours, with spikes late in
//! the wear), overheating (a cooling fault: temperature ramps up), power
//! surge and power drop (a stall: power and speed collapse while running),
//! sensor failure (the temperature sensor reports -999).

use super::{FaultRate, Label, Messages, Model, Schedule, name_width};
use crate::config::{ConfigError, Duration};
use crate::event::time;
use crate::rng::Rng;
use serde::Deserialize;
use std::fmt::Write;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of machines.
    machines: usize,
    /// Time between two readings of one machine.
    #[serde(default = "one_second")]
    interval: Duration,
    /// Temperature of the hall.
    #[serde(default = "hall")]
    ambient_c: f64,
    /// How long a machine stays in one mode or at one load, on average.
    #[serde(default = "thirty_minutes")]
    mode_change_every: Duration,
    /// Share of the time machines run rather than idle.
    #[serde(default = "four_in_five")]
    running_share: f64,
    #[serde(default)]
    faults: Faults,
}

fn one_second() -> Duration {
    Duration(1000)
}

fn hall() -> f64 {
    24.0
}

fn thirty_minutes() -> Duration {
    Duration(30 * 60_000)
}

fn four_in_five() -> f64 {
    0.8
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    bearing_wear: Option<FaultRate>,
    overheating: Option<FaultRate>,
    power_surge: Option<FaultRate>,
    power_drop: Option<FaultRate>,
    sensor_failure: Option<FaultRate>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    BearingWear,
    Overheating,
    PowerSurge,
    PowerDrop,
    SensorFailure,
}

const FAULTS: [Fault; 5] = [
    Fault::BearingWear,
    Fault::Overheating,
    Fault::PowerSurge,
    Fault::PowerDrop,
    Fault::SensorFailure,
];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::BearingWear => "bearing_wear",
            Fault::Overheating => "overheating",
            Fault::PowerSurge => "power_surge",
            Fault::PowerDrop => "power_drop",
            Fault::SensorFailure => "sensor_failure",
        }
    }

    /// The rules of `pipelines/factory.yaml` a correct pipeline raises.
    fn rules(self) -> &'static [&'static str] {
        match self {
            Fault::BearingWear => &["bearing_wear"],
            Fault::Overheating => &["overheating"],
            Fault::PowerSurge => &["power_surge"],
            Fault::PowerDrop => &["stalled"],
            Fault::SensorFailure => &["sensor_failure"],
        }
    }

    fn rate(self, faults: &Faults) -> Option<FaultRate> {
        match self {
            Fault::BearingWear => faults.bearing_wear,
            Fault::Overheating => faults.overheating,
            Fault::PowerSurge => faults.power_surge,
            Fault::PowerDrop => faults.power_drop,
            Fault::SensorFailure => faults.sensor_failure,
        }
    }

    /// Whether the fault can only show while the machine runs.
    fn needs_running(self) -> bool {
        matches!(
            self,
            Fault::PowerSurge | Fault::PowerDrop | Fault::Overheating
        )
    }
}

/// A plant of machines.
pub struct Plant {
    config: Config,
    machines: Vec<Machine>,
}

struct Machine {
    name: String,
    rng: Rng,
    /// Load while running, 0 while idle.
    load: f64,
    next_change: i64,
    temperature: f64,
    /// The active fault, when it began and when it ends.
    fault: Option<(Fault, i64, i64)>,
    /// When each fault in `FAULTS` next begins.
    schedule: Schedule<5>,
    last_step: i64,
    first: i64,
}

impl Plant {
    pub fn new(config: Config, start: i64, seed: u64) -> Result<Plant, Vec<ConfigError>> {
        let mut problems = Vec::new();
        if config.machines == 0 {
            problems.push(ConfigError::new(None, "`machines` must be at least 1"));
        }
        if config.interval.ms() <= 0 || config.mode_change_every.ms() <= 0 {
            problems.push(ConfigError::new(
                None,
                "`interval` and `mode_change_every` must be longer than 0",
            ));
        }
        if !(0.0..=1.0).contains(&config.running_share) {
            problems.push(ConfigError::new(
                None,
                "`running_share` must be between 0 and 1",
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let width = name_width(config.machines);
        let machines = (0..config.machines)
            .map(|i| {
                Machine::new(
                    &config,
                    format!("press-{i:0width$}"),
                    Rng::fork(seed, i as u64),
                    start,
                )
            })
            .collect();
        Ok(Plant { config, machines })
    }
}

impl Model for Plant {
    fn devices(&self) -> usize {
        self.machines.len()
    }

    fn name(&self, device: usize) -> &str {
        &self.machines[device].name
    }

    fn first(&self, device: usize) -> i64 {
        self.machines[device].first
    }

    fn step(
        &mut self,
        device: usize,
        now: i64,
        out: &mut Messages,
        labels: &mut Vec<Label>,
    ) -> i64 {
        let config = &self.config;
        let machine = &mut self.machines[device];
        machine.advance(config, now, labels);
        machine.reading(now, out.text());
        out.end(device);
        now + config.interval.ms()
    }
}

impl Machine {
    fn new(config: &Config, name: String, mut rng: Rng, start: i64) -> Machine {
        let first = start + rng.between(0, config.interval.ms() - 1);
        let schedule = Schedule::new(FAULTS.map(|f| f.rate(&config.faults)), first, &mut rng);
        let mut machine = Machine {
            name,
            load: 0.0,
            next_change: first,
            temperature: config.ambient_c + 20.0,
            fault: None,
            schedule,
            last_step: first,
            first,
            rng,
        };
        machine.change_mode(config, first);
        machine.temperature = machine.normal_temperature(config);
        machine
    }

    fn change_mode(&mut self, config: &Config, now: i64) {
        self.load = if self.rng.chance(config.running_share) {
            self.rng.range(0.4, 1.0)
        } else {
            0.0
        };
        self.next_change = now + self.rng.exponential(config.mode_change_every.ms() as f64) as i64;
    }

    fn running(&self) -> bool {
        self.load > 0.0
    }

    fn active(&self, fault: Fault) -> bool {
        matches!(self.fault, Some((f, _, _)) if f == fault)
    }

    /// How far the fault has progressed, 0 at its start to 1 at its end.
    fn progress(&self, now: i64) -> f64 {
        match self.fault {
            Some((_, start, end)) if end > start => (now - start) as f64 / (end - start) as f64,
            _ => 0.0,
        }
    }

    fn normal_temperature(&self, config: &Config) -> f64 {
        if self.running() {
            config.ambient_c + 16.0 + 24.0 * self.load
        } else {
            config.ambient_c + 6.0
        }
    }

    fn advance(&mut self, config: &Config, now: i64, labels: &mut Vec<Label>) {
        let dt = (now - self.last_step).max(0) as f64 / 1000.0;
        self.last_step = now;
        if self.fault.is_some_and(|(_, _, end)| now >= end) {
            self.fault = None;
        }
        // A stalled machine keeps its mode until the stall clears.
        if now >= self.next_change && !self.active(Fault::PowerDrop) {
            self.change_mode(config, now);
        }
        self.start_fault(config, now, labels);
        let mut target = self.normal_temperature(config);
        if self.active(Fault::Overheating) {
            target += 70.0 * self.progress(now);
        }
        let k = 1.0 / (8.0 * 60.0);
        self.temperature = target + (self.temperature - target) * (-k * dt).exp();
    }

    fn start_fault(&mut self, config: &Config, now: i64, labels: &mut Vec<Label>) {
        let (busy, running) = (self.fault.is_some(), self.running());
        let free = |kind: usize| !busy && (running || !FAULTS[kind].needs_running());
        let rates = FAULTS.map(|f| f.rate(&config.faults));
        let Some((kind, end)) = self.schedule.due(rates, now, &mut self.rng, free) else {
            return;
        };
        let fault = FAULTS[kind];
        labels.push(Label::new(
            &self.name,
            fault.name(),
            now,
            end,
            fault.rules(),
        ));
        self.fault = Some((fault, now, end));
        if fault.needs_running() {
            // Keep running through the fault, so it shows.
            self.next_change = self.next_change.max(end);
        }
    }

    fn reading(&mut self, now: i64, line: &mut String) {
        let noise = |rng: &mut Rng, scale: f64| 1.0 + scale * rng.normal();
        let load = self.load;
        let mut vibration = if self.running() {
            1.2 + 1.2 * load
        } else {
            0.3
        } * noise(&mut self.rng, 0.05);
        let mut power = if self.running() {
            20.0 + 40.0 * load
        } else {
            4.0
        } * noise(&mut self.rng, 0.03);
        let mut rpm = if self.running() {
            1480.0 + 4.0 * self.rng.normal()
        } else {
            0.0
        };
        let mut temperature = self.temperature + 0.3 * self.rng.normal();
        match self.fault.map(|(f, _, _)| f) {
            Some(Fault::BearingWear) => {
                let wear = self.progress(now);
                vibration *= 1.0 + 2.5 * wear;
                if wear > 0.6 && self.rng.chance(0.05) {
                    vibration *= 2.0;
                }
            }
            Some(Fault::PowerSurge) => power *= 1.9,
            Some(Fault::PowerDrop) => {
                power *= 0.15;
                rpm *= 0.2;
            }
            Some(Fault::SensorFailure) => temperature = -999.0,
            _ => {}
        }
        let mode = if self.running() { "running" } else { "idle" };
        let _ = write!(line, r#"{{"machine":"{}","ts":""#, self.name);
        time::write_rfc3339(line, now);
        let _ = write!(
            line,
            r#"","mode":"{mode}","temperature_c":{temperature:.2},"vibration_rms":{vibration:.3},"power_kw":{power:.2},"rpm":{rpm:.1}}}"#
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Scenario, Simulation};
    use super::*;

    fn readings(yaml: &str, minutes: i64) -> (Vec<serde_json::Value>, Vec<Label>) {
        let scenario = Scenario::parse(yaml, "f".into()).unwrap();
        let mut sim = Simulation::new(scenario.build(3).unwrap());
        let (mut out, mut labels) = (Messages::default(), Vec::new());
        let start = sim.now();
        while sim.now() < start + minutes * 60_000 {
            sim.advance(&mut out, &mut labels);
        }
        let values = out
            .iter()
            .map(|(_, l)| serde_json::from_str(l).unwrap())
            .collect();
        (values, labels)
    }

    fn field(v: &serde_json::Value, name: &str) -> f64 {
        v[name].as_f64().unwrap()
    }

    #[test]
    fn modes_shift_normal_levels_without_crossing_fault_limits() {
        let (values, labels) = readings(
            "kind: factory\nmachines: 20\ninterval: 5s\nmode_change_every: 10m\n",
            240,
        );
        assert!(labels.is_empty());
        let running: Vec<_> = values.iter().filter(|v| v["mode"] == "running").collect();
        let idle: Vec<_> = values.iter().filter(|v| v["mode"] == "idle").collect();
        assert!(!running.is_empty() && !idle.is_empty());
        assert!(
            running
                .iter()
                .all(|v| field(v, "power_kw") < 70.0 && field(v, "rpm") > 1400.0)
        );
        assert!(
            values
                .iter()
                .all(|v| field(v, "temperature_c") < 75.0 && field(v, "vibration_rms") < 4.0)
        );
        let mean = |vs: &[&serde_json::Value], f| {
            vs.iter().map(|v| field(v, f)).sum::<f64>() / vs.len() as f64
        };
        assert!(mean(&running, "power_kw") > 3.0 * mean(&idle, "power_kw"));
    }

    #[test]
    fn faults_show_in_the_readings_they_are_labelled_for() {
        let yaml = "kind: factory\nmachines: 40\ninterval: 5s\nfaults:\n  overheating: {per_day: 4, duration: 40m}\n  power_drop: {per_day: 4, duration: 5m}\n  sensor_failure: {per_day: 4, duration: 10m}\n  bearing_wear: {per_day: 4, duration: 2h}\n";
        let (values, labels) = readings(yaml, 360);
        for fault in [
            "overheating",
            "power_drop",
            "sensor_failure",
            "bearing_wear",
        ] {
            let label = labels
                .iter()
                .find(|l| l.fault == fault)
                .unwrap_or_else(|| panic!("no {fault}"));
            let end = time::parse_rfc3339(&label.end).unwrap();
            let near_end: Vec<_> = values
                .iter()
                .filter(|v| v["machine"] == label.device.as_str())
                .filter(|v| {
                    let t = time::parse_rfc3339(v["ts"].as_str().unwrap()).unwrap();
                    (end - 120_000..end).contains(&t)
                })
                .collect();
            assert!(!near_end.is_empty());
            let ok = near_end.iter().all(|v| match fault {
                "overheating" => field(v, "temperature_c") > 85.0,
                "power_drop" => field(v, "rpm") < 1000.0,
                "sensor_failure" => field(v, "temperature_c") == -999.0,
                _ => field(v, "vibration_rms") > 2.0 || v["mode"] == "idle",
            });
            assert!(ok, "{fault} does not show: {near_end:?}");
        }
    }
}
