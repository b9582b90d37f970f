//! Refrigerated trucks: position, ambient temperature, cargo temperature,
//! deliveries and faults.
//!
//! ```yaml
//! kind: trucks
//! trucks: 2000
//! interval: 10s
//! frozen_share: 0.3
//! faults:
//!   compressor_failure: {per_day: 0.2, duration: 1h..3h}
//! ```
//!
//! The cargo air follows a first-order thermal model: it is pulled toward
//! the ambient temperature through the insulation (time constant 3 h) and
//! through an open door (15 min chilled, 40 min frozen, where strip
//! curtains slow the exchange), and toward the setpoint by the compressor
//! (5 min). A delivery opens the door for a minute or two: a short rise
//! that recovers, which must not alert. A failed compressor lets the cargo
//! drift toward ambient: chilled cargo crosses 4 C after tens of minutes.
//! Ambient follows a daily cycle, coldest at 05:00.

use super::{DurationRange, FaultRate, Label, Messages, Model, Schedule, name_width};
use crate::config::{ConfigError, Duration};
use crate::event::time;
use crate::rng::Rng;
use serde::Deserialize;
use std::fmt::Write;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of trucks.
    trucks: usize,
    /// Time between two readings of one truck.
    #[serde(default = "ten_seconds")]
    interval: Duration,
    /// Share of trucks carrying frozen goods (setpoint -18 C); the others
    /// carry chilled goods (+2 C).
    #[serde(default)]
    frozen_share: f64,
    #[serde(default)]
    region: Region,
    #[serde(default = "default_speed")]
    speed_kmh: f64,
    #[serde(default)]
    ambient: Ambient,
    #[serde(default)]
    deliveries: Deliveries,
    #[serde(default)]
    faults: Faults,
}

fn ten_seconds() -> Duration {
    Duration(10_000)
}

fn default_speed() -> f64 {
    70.0
}

/// Where trucks drive: a disc around a point.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Region {
    lat: f64,
    lon: f64,
    radius_km: f64,
}

impl Default for Region {
    fn default() -> Self {
        Region {
            lat: 52.1,
            lon: 5.1,
            radius_km: 120.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ambient {
    mean_c: f64,
    /// Half the difference between the warmest (17:00) and coldest (05:00) hour.
    swing_c: f64,
}

impl Default for Ambient {
    fn default() -> Self {
        Ambient {
            mean_c: 14.0,
            swing_c: 4.0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deliveries {
    /// Driving time between two stops.
    every: DurationRange,
    /// Time parked at a stop.
    stop: DurationRange,
    /// How long the door is open at a stop.
    door_open: DurationRange,
}

impl Default for Deliveries {
    fn default() -> Self {
        Deliveries {
            every: DurationRange(30 * MINUTE, 90 * MINUTE),
            stop: DurationRange(10 * MINUTE, 20 * MINUTE),
            door_open: DurationRange(MINUTE, 2 * MINUTE),
        }
    }
}

/// Fault rates; a fault left out never happens.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Faults {
    compressor_failure: Option<FaultRate>,
    door_left_open: Option<FaultRate>,
    sensor_stuck: Option<FaultRate>,
    sensor_spike: Option<FaultRate>,
    connectivity_loss: Option<FaultRate>,
    gps_jump: Option<FaultRate>,
}

const MINUTE: i64 = 60_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    CompressorFailure,
    DoorLeftOpen,
    SensorStuck,
    SensorSpike,
    ConnectivityLoss,
    GpsJump,
}

const FAULTS: [Fault; 6] = [
    Fault::CompressorFailure,
    Fault::DoorLeftOpen,
    Fault::SensorStuck,
    Fault::SensorSpike,
    Fault::ConnectivityLoss,
    Fault::GpsJump,
];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Fault::CompressorFailure => "compressor_failure",
            Fault::DoorLeftOpen => "door_left_open",
            Fault::SensorStuck => "sensor_stuck",
            Fault::SensorSpike => "sensor_spike",
            Fault::ConnectivityLoss => "connectivity_loss",
            Fault::GpsJump => "gps_jump",
        }
    }

    /// The rules of `pipelines/cold-chain.yaml` a correct pipeline raises.
    fn rules(self, frozen: bool) -> &'static [&'static str] {
        match (self, frozen) {
            (Fault::CompressorFailure, true) => &["thawing", "warming"],
            (Fault::CompressorFailure, false) => &["too_warm", "warming"],
            (Fault::DoorLeftOpen, true) => &["door_left_open", "thawing", "warming"],
            (Fault::DoorLeftOpen, false) => &["door_left_open", "too_warm", "warming"],
            (Fault::SensorStuck, _) => &["sensor_stuck"],
            (Fault::SensorSpike, _) => &[],
            (Fault::ConnectivityLoss, _) => &["silent"],
            (Fault::GpsJump, _) => &["gps_jump"],
        }
    }

    fn rate(self, faults: &Faults) -> Option<FaultRate> {
        match self {
            Fault::CompressorFailure => faults.compressor_failure,
            Fault::DoorLeftOpen => faults.door_left_open,
            Fault::SensorStuck => faults.sensor_stuck,
            Fault::SensorSpike => faults.sensor_spike,
            Fault::ConnectivityLoss => faults.connectivity_loss,
            Fault::GpsJump => faults.gps_jump,
        }
    }
}

/// A fleet of trucks.
pub struct Fleet {
    config: Config,
    trucks: Vec<Truck>,
}

/// What a truck is doing.
#[derive(Clone, Copy, Debug)]
enum Activity {
    /// Driving to the destination; the next stop is due at `stop_at`.
    Driving { stop_at: i64 },
    /// Parked at a delivery until `until`, door open in `[open, close)`.
    Stopped { until: i64, open: i64, close: i64 },
}

struct Truck {
    name: String,
    rng: Rng,
    frozen: bool,
    setpoint: f64,
    /// The truck's own deviation from the regional ambient temperature.
    ambient_offset: f64,
    /// The cargo air temperature, as the physics has it.
    air: f64,
    position: (f64, f64),
    destination: (f64, f64),
    activity: Activity,
    /// The active fault and when it ends.
    fault: Option<(Fault, i64)>,
    /// The value a stuck sensor repeats.
    stuck_at: f64,
    /// When each fault in `FAULTS` next begins.
    schedule: Schedule<6>,
    /// Readings held back while the connection is lost.
    backlog: Vec<String>,
    last_step: i64,
    first: i64,
}

impl Fleet {
    pub fn new(config: Config, start: i64, seed: u64) -> Result<Fleet, Vec<ConfigError>> {
        let mut problems = Vec::new();
        if config.trucks == 0 {
            problems.push(ConfigError::new(None, "`trucks` must be at least 1"));
        }
        if config.interval.ms() <= 0 {
            problems.push(ConfigError::new(None, "`interval` must be longer than 0"));
        }
        if !(0.0..=1.0).contains(&config.frozen_share) {
            problems.push(ConfigError::new(
                None,
                "`frozen_share` must be between 0 and 1",
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        let width = name_width(config.trucks);
        let trucks = (0..config.trucks)
            .map(|i| {
                Truck::new(
                    &config,
                    format!("truck-{i:0width$}"),
                    Rng::fork(seed, i as u64),
                    start,
                )
            })
            .collect();
        Ok(Fleet { config, trucks })
    }
}

impl Model for Fleet {
    fn devices(&self) -> usize {
        self.trucks.len()
    }

    fn name(&self, device: usize) -> &str {
        &self.trucks[device].name
    }

    fn first(&self, device: usize) -> i64 {
        self.trucks[device].first
    }

    fn step(
        &mut self,
        device: usize,
        now: i64,
        out: &mut Messages,
        labels: &mut Vec<Label>,
    ) -> i64 {
        let config = &self.config;
        let truck = &mut self.trucks[device];
        truck.advance(config, now, labels);
        let fault = truck.start_fault(config, now, labels);
        let reading = truck.reading(now, fault);
        match truck.fault {
            Some((Fault::ConnectivityLoss, _)) => truck.backlog.push(reading),
            _ => {
                truck.flush_backlog(device, out);
                out.push(device, &reading);
            }
        }
        now + config.interval.ms()
    }
}

impl Truck {
    fn new(config: &Config, name: String, mut rng: Rng, start: i64) -> Truck {
        let frozen = rng.chance(config.frozen_share);
        let setpoint = if frozen { -18.0 } else { 2.0 };
        let position = random_point(&config.region, &mut rng);
        let destination = random_point(&config.region, &mut rng);
        let first = start + rng.between(0, config.interval.ms() - 1);
        let schedule = Schedule::new(FAULTS.map(|f| f.rate(&config.faults)), first, &mut rng);
        let stop_at = first + config.deliveries.every.sample(&mut rng);
        let ambient_offset = rng.range(-1.5, 1.5);
        Truck {
            name,
            frozen,
            setpoint,
            ambient_offset,
            // Start in equilibrium, so the fleet does not begin with a trend.
            air: equilibrium(setpoint, ambient(&config.ambient, first) + ambient_offset),
            position,
            destination,
            activity: Activity::Driving { stop_at },
            fault: None,
            stuck_at: 0.0,
            schedule,
            backlog: Vec::new(),
            last_step: first,
            first,
            rng,
        }
    }

    fn door_open(&self, now: i64) -> bool {
        let delivery = matches!(self.activity, Activity::Stopped { open, close, .. } if (open..close).contains(&now));
        delivery || matches!(self.fault, Some((Fault::DoorLeftOpen, _)))
    }

    /// Moves the truck and its cargo temperature from the last step to `now`.
    fn advance(&mut self, config: &Config, now: i64, labels: &mut Vec<Label>) {
        let dt = (now - self.last_step).max(0) as f64 / 1000.0;
        self.last_step = now;
        if self.fault.is_some_and(|(_, end)| now >= end) {
            self.fault = None;
        }
        self.move_on(config, now, dt, labels);
        let ambient = ambient(&config.ambient, now) + self.ambient_offset;
        let k_door = match (self.door_open(now), self.frozen) {
            (false, _) => 0.0,
            (true, false) => 1.0 / (15.0 * 60.0),
            (true, true) => 1.0 / (40.0 * 60.0),
        };
        let cooling = !matches!(self.fault, Some((Fault::CompressorFailure, _)));
        let k_cool = if cooling { K_COOL } else { 0.0 };
        let k = K_INSULATION + k_door + k_cool;
        let target = ((K_INSULATION + k_door) * ambient + k_cool * self.setpoint) / k;
        self.air = target + (self.air - target) * (-k * dt).exp();
    }

    fn move_on(&mut self, config: &Config, now: i64, dt: f64, labels: &mut Vec<Label>) {
        match self.activity {
            Activity::Stopped { until, .. } if now >= until => {
                self.destination = random_point(&config.region, &mut self.rng);
                let stop_at = now + config.deliveries.every.sample(&mut self.rng);
                self.activity = Activity::Driving { stop_at };
            }
            Activity::Stopped { .. } => {}
            // Deliveries wait while a fault plays out, so the two never mix.
            Activity::Driving { stop_at } if now >= stop_at && self.fault.is_none() => {
                let d = &config.deliveries;
                let open = now + self.rng.between(MINUTE, 3 * MINUTE);
                let close = open + d.door_open.sample(&mut self.rng);
                let until = (now + d.stop.sample(&mut self.rng)).max(close + MINUTE);
                labels.push(Label::new(&self.name, "delivery", open, close, &[]));
                self.activity = Activity::Stopped { until, open, close };
            }
            Activity::Driving { .. } => {
                let step_km = config.speed_kmh * dt / 3600.0;
                let (lat, lon) = self.position;
                let (dlat, dlon) = (self.destination.0 - lat, self.destination.1 - lon);
                let km = (dlat * 111.0).hypot(dlon * 111.0 * lat.to_radians().cos());
                if km <= step_km {
                    self.position = self.destination;
                    self.destination = random_point(&config.region, &mut self.rng);
                } else {
                    let f = step_km / km;
                    self.position = (lat + dlat * f, lon + dlon * f);
                }
            }
        }
    }

    /// Starts the fault that is due, if the truck is free for one.
    fn start_fault(&mut self, config: &Config, now: i64, labels: &mut Vec<Label>) -> Option<Fault> {
        let busy = self.fault.is_some() || matches!(self.activity, Activity::Stopped { .. });
        let rates = FAULTS.map(|f| f.rate(&config.faults));
        let (kind, end) = self.schedule.due(rates, now, &mut self.rng, |_| !busy)?;
        let fault = FAULTS[kind];
        labels.push(Label::new(
            &self.name,
            fault.name(),
            now,
            end,
            fault.rules(self.frozen),
        ));
        if end > now {
            self.fault = Some((fault, end));
        }
        if fault == Fault::SensorStuck {
            self.stuck_at = self.measure();
        }
        Some(fault)
    }

    /// What the sensor reads: the air temperature with noise, to 0.01 C.
    fn measure(&mut self) -> f64 {
        ((self.air + 0.05 * self.rng.normal()) * 100.0).round() / 100.0
    }

    fn reading(&mut self, now: i64, starting: Option<Fault>) -> String {
        let mut temperature = match self.fault {
            Some((Fault::SensorStuck, _)) => self.stuck_at,
            _ => self.measure(),
        };
        let (mut lat, mut lon) = self.position;
        match starting {
            Some(Fault::SensorSpike) => temperature += self.rng.range(12.0, 25.0),
            Some(Fault::GpsJump) => {
                lat += self.rng.range(1.0, 3.0);
                lon -= self.rng.range(1.0, 3.0);
            }
            _ => {}
        }
        let speed = match self.activity {
            Activity::Driving { .. } => 70.0 + 5.0 * self.rng.normal(),
            Activity::Stopped { .. } => 0.0,
        };
        let mut line = String::with_capacity(200);
        let _ = write!(line, r#"{{"device":"{}","ts":""#, self.name);
        time::write_rfc3339(&mut line, now);
        let _ = write!(
            line,
            r#"","kind":"reefer","temperature_c":{temperature:.2},"setpoint_c":{:.1},"door_open":{},"lat":{lat:.5},"lon":{lon:.5},"speed_kmh":{:.1}}}"#,
            self.setpoint,
            self.door_open(now),
            speed.max(0.0),
        );
        line
    }

    /// Sends the readings held back while offline: all at once, roughly
    /// in order, some neighbours swapped, as a device's buffer drains.
    fn flush_backlog(&mut self, device: usize, out: &mut Messages) {
        let mut backlog = std::mem::take(&mut self.backlog);
        // Swap disjoint pairs, so no reading moves more than one place.
        for i in (1..backlog.len()).step_by(2) {
            if self.rng.chance(0.3) {
                backlog.swap(i - 1, i);
            }
        }
        backlog.iter().for_each(|line| out.push(device, line));
    }
}

/// Heat exchange rates, per second: through the insulation (3 h) and by
/// a working compressor (5 min).
const K_INSULATION: f64 = 1.0 / (3.0 * 3600.0);
const K_COOL: f64 = 1.0 / (5.0 * 60.0);

/// Where the cargo settles with the door shut and the compressor working.
fn equilibrium(setpoint: f64, ambient: f64) -> f64 {
    (K_INSULATION * ambient + K_COOL * setpoint) / (K_INSULATION + K_COOL)
}

/// Ambient temperature: a daily cycle, coldest at 05:00.
fn ambient(a: &Ambient, now: i64) -> f64 {
    let hours = now.rem_euclid(86_400_000) as f64 / 3_600_000.0;
    a.mean_c - a.swing_c * (std::f64::consts::TAU * (hours - 5.0) / 24.0).cos()
}

fn random_point(region: &Region, rng: &mut Rng) -> (f64, f64) {
    let r = region.radius_km * rng.unit().sqrt();
    let angle = rng.range(0.0, std::f64::consts::TAU);
    let lat = region.lat + r * angle.sin() / 111.0;
    let lon = region.lon + r * angle.cos() / (111.0 * region.lat.to_radians().cos());
    (lat, lon)
}

#[cfg(test)]
mod tests {
    use super::super::{Scenario, Simulation};
    use super::*;

    /// Runs a one-truck scenario for `minutes`; returns (time, temperature,
    /// door open) of each reading, and the labels.
    fn run(yaml: &str, minutes: i64) -> (Vec<(i64, f64, bool)>, Vec<Label>) {
        let scenario = Scenario::parse(yaml, "t".into()).unwrap();
        let mut sim = Simulation::new(scenario.build(1).unwrap());
        let (mut out, mut labels) = (Messages::default(), Vec::new());
        let start = sim.now();
        while sim.now() < start + minutes * MINUTE {
            sim.advance(&mut out, &mut labels);
        }
        let readings = out
            .iter()
            .map(|(_, line)| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                let t = time::parse_rfc3339(v["ts"].as_str().unwrap()).unwrap();
                (
                    t,
                    v["temperature_c"].as_f64().unwrap(),
                    v["door_open"].as_bool().unwrap(),
                )
            })
            .collect();
        (readings, labels)
    }

    const QUIET: &str = "kind: trucks\ntrucks: 1\nambient: {mean_c: 15, swing_c: 0}\n";

    #[test]
    fn holds_the_setpoint_and_recovers_after_a_delivery() {
        let yaml = format!("{QUIET}deliveries: {{every: 20m, stop: 15m, door_open: 2m}}\n");
        let (readings, labels) = run(&yaml, 60);
        let delivery = labels
            .iter()
            .find(|l| l.fault == "delivery")
            .expect("a delivery within the hour");
        assert!(delivery.rules.is_empty());
        let open = time::parse_rfc3339(&delivery.start).unwrap();
        let close = time::parse_rfc3339(&delivery.end).unwrap();
        let before: Vec<f64> = readings
            .iter()
            .filter(|r| r.0 < open)
            .map(|r| r.1)
            .collect();
        assert!(
            before.iter().all(|t| (1.8..3.0).contains(t)),
            "near the setpoint: {before:?}"
        );
        let peak = readings
            .iter()
            .filter(|r| r.2)
            .map(|r| r.1)
            .fold(f64::MIN, f64::max);
        assert!(peak > 3.0 && peak < 4.5, "a short benign rise: {peak}");
        let recovered = close + 10 * MINUTE..close + 18 * MINUTE;
        let later: Vec<f64> = readings
            .iter()
            .filter(|r| recovered.contains(&r.0))
            .map(|r| r.1)
            .collect();
        assert!(
            !later.is_empty() && later.iter().all(|t| *t < 3.0),
            "recovered: {later:?}"
        );
    }

    #[test]
    fn a_failed_compressor_drifts_toward_ambient_and_crosses_4c_in_tens_of_minutes() {
        let yaml = format!(
            "{QUIET}deliveries: {{every: 10h..10h, stop: 10m, door_open: 1m}}\nfaults:\n  compressor_failure: {{per_day: 200, duration: 3h}}\n"
        );
        let (readings, labels) = run(&yaml, 180);
        let failure = labels
            .iter()
            .find(|l| l.fault == "compressor_failure")
            .unwrap();
        assert_eq!(failure.rules, ["too_warm", "warming"]);
        let start = time::parse_rfc3339(&failure.start).unwrap();
        let crossing = readings
            .iter()
            .find(|r| r.0 > start && r.1 > 4.0)
            .expect("crosses 4 C")
            .0;
        let minutes = (crossing - start) / MINUTE;
        assert!((15..=90).contains(&minutes), "crossed after {minutes} min");
        let last = readings.last().unwrap().1;
        assert!(last > 8.0 && last < 15.5, "drifting to ambient: {last}");
    }

    #[test]
    fn a_stuck_sensor_repeats_one_value_and_a_lost_connection_sends_its_backlog_late() {
        let yaml = format!(
            "{QUIET}faults:\n  sensor_stuck: {{per_day: 100, duration: 20m}}\n  connectivity_loss: {{per_day: 50, duration: 10m}}\n"
        );
        let (readings, labels) = run(&yaml, 240);
        let stuck = labels.iter().find(|l| l.fault == "sensor_stuck").unwrap();
        let (s, e) = (
            time::parse_rfc3339(&stuck.start).unwrap(),
            time::parse_rfc3339(&stuck.end).unwrap(),
        );
        let during: Vec<f64> = readings
            .iter()
            .filter(|r| r.0 >= s && r.0 < e)
            .map(|r| r.1)
            .collect();
        assert!(
            during.len() > 100 && during.windows(2).all(|w| w[0] == w[1]),
            "flat line"
        );
        assert!(labels.iter().any(|l| l.fault == "connectivity_loss"));
        let out_of_order = readings.windows(2).filter(|w| w[1].0 < w[0].0).count();
        assert!(out_of_order > 0, "the backlog arrives out of order");
    }
}
