//! The recordings the detectors are scored on: deterministic single-series
//! recordings modelled on what users point a detector at (the Numenta
//! Anomaly Benchmark's categories: machine temperatures, CPU utilisation,
//! request and traffic counts, ambient temperatures, AWS CloudWatch
//! metrics, industrial sensors), deliberately not on floe's simulator.
//! Each is one device reporting `{"device", "ts", "value"}`, with its
//! incidents labelled as NAB labels them: a window from each incident's
//! onset, 10% of the recording long divided by its number of incidents,
//! so a detection that needs a while to confirm still counts. Only the
//! change of a lasting level shift is an incident; the new level is normal.
//!
//! Hours are counted from the start, a Monday at midnight UTC.
//!
//! - `machine_temp_bearing` (10 d, 5 min): a machine at 72 C with a daily load cycle; a bearing heats it 0.8 C/h from h 156, it trips after 10 h, cools and restarts.
//! - `machine_temp_setpoint` (9 d, 2 min): a controller's setpoint moves from 65 to 72 C at h 72 (a new level); from h 170 its loop oscillates, single-reading spikes for 2 h.
//! - `machine_temp_stuck` (8 d, 5 min): a thermocouple with a daily cycle sticks at its reading for 8 h at h 60, and reads 0 (disconnected) for 3 h at h 140.
//! - `cpu_web_deploy` (7 d, 5 min): web-server CPU, 0.1 %, daily and weekly, noise growing with load; a deploy adds 12 points for good at h 60; a runaway pins it at 100 % for 4 h at h 130.
//! - `cpu_batch_cycle` (10 d, 5 min): a batch host idle at 6 % with a nightly job at 88 % from 01:00 to 02:30; the job does not run at h 121, and hangs past its end until 09:00 at h 194.5.
//! - `cpu_idle_leak` (7 d, 5 min): an idle VM in whole percent, reading exactly 1 for its first 8 h; a leaking thread adds 0.8 %/h from h 100 until it is killed 30 h later.
//! - `requests_weekly` (14 d, 1 min): requests per minute, daily and weekly; an outage drops them to 2 % for 45 min at h 180; a scraper keeps the night at day level for 5 h at h 242.
//! - `requests_bursty` (10 d, 5 min): mentions per 5 minutes, small and bursty (normal bursts of 3 to 5 times); a real event at h 150 peaks at 15 times in an hour and fades over 6 h; the feed dies (zeros) for 6 h at h 200.
//! - `traffic_speed` (7 d, 5 min): a road's speed in whole km/h with weekday rush-hour dips; an accident at 20 km/h for 70 min at h 83 (Thursday 11:00); the loop detector repeats its reading for 6 h at h 128.
//! - `ambient_office_hvac` (14 d, 10 min): an office in steps of 0.1 C, heated on weekdays, set back at night and at weekends; the heating fails at h 225 (Wednesday 09:00) and is repaired the next morning.
//! - `ambient_outdoor` (14 d, 10 min): outdoor temperature in steps of 0.1 C, a daily cycle on weather that wanders by days and a cold front at h 130; no incidents.
//! - `datacenter_inlet_gaps` (6 d, 2 min): a rack inlet in steps of 0.1 C; the collector is down 3 h at h 40, 8 h at h 75 and 1 h at h 110 (gaps); a cooling unit fails at h 95, +6 C for 2 h.
//! - `cloudwatch_ec2_cpu` (14 d, 5 min): an instance at 4 % with an hourly cron spike to 18 % (normal), datapoints missing now and then and for 2 h at h 200; resized at h 150 (2 %, cron to 9 %: a new level); a runaway at 60-100 % for 2 h at h 260.
//! - `cloudwatch_elb_requests` (7 d, 5 min): a load balancer's request count, daily and weekly; half the traffic moves to another region for good at h 60; a flood of 8 times for 30 min at h 120.
//! - `cloudwatch_rds_queue` (5 d, 1 min): a database's disk queue, multiplicative noise; it turns erratic (3 times the spread, the same level) for 8 h at h 70; the queue builds to 40 over 3 h from h 100 until a failover.
//! - `pump_pressure_bursts` (4 d, 1 min and bursts): discharge pressure with a second pump on from 06:00 to 22:00; reports by exception (bursts of readings 1-3 s apart on a change) through a gateway that delays each by up to 4 s, so bursts arrive out of order; cavitation dips for 40 min at h 55.
//! - `vibration_mount` (8 d, 2 min): vibration RMS; a loose mount quadruples its spread for 6 h at h 60; remounted and recalibrated at h 100 (2.1 to 2.6 mm/s: a new level); bearing impacts, spikes for 1 h, at h 150.
//! - `flow_retries` (7 d, 2 min): a flow meter through a gateway that re-sends 3 % of readings (duplicates) and re-polls 1 % (the same timestamp, a fresh value); a blockage at h 80 takes 65 % of the flow for 2 h; fouling makes it under-read from h 130 until it fails (zero) at h 136, replaced at h 139.
//! - `power_flat_warmup` (6 d, 2 min): a motor's power in whole kW, off (exactly 0) for its first 10 h, with breaks at 00:00 and 12:00; friction adds 0.8 kW/h from h 90 until it trips at h 100, restarted 2 h later.
//! - `humidity_whole_percent` (5 d, 1 min): a warehouse's humidity in whole percent, so long runs of one value; the sensor reads 0 for 2 h at h 70; a door left open raises it 12 points at h 95.
//! - `cold_room_defrost` (6 d, 2 min): a cold room at -18 C, defrosting every 6 h (to -6 C for 20 min, normal); the heater sticks on after the defrost at h 78 (to +2 C); defrosts stop from h 114 and the iced coil lets it warm 0.15 C/h.
//! - `greenhouse` (10 d, 5 min): a greenhouse at 16 C at night, warmed by the sun to a vent-capped 28-30 C by day, noisy under passing clouds; a vent sticks shut on a sunny day at h 154 (to 45 C).
//! - `oven_two_products` (8 d, 2 min): an oven alternating between two products at 180 and 205 C in runs of 6-10 h; no incidents.
//! - `network_in_weekly` (14 d, 10 min): bytes in per 10 minutes, daily and weekly; an unplanned transfer at 4 times for 40 min at h 100; a Saturday at weekday level from h 296.
//! - `cpu_autoscaled` (7 d, 5 min): a group's mean CPU under an autoscaler, which steps it down or up whenever it adds or removes an instance; no incidents.

use floe::event::time::format_rfc3339;
use floe::rng::Rng;
use std::f64::consts::TAU;

/// 2026-11-02T00:00:00Z, a Monday.
const START: i64 = 1_793_577_600_000;
const HOUR: f64 = 3_600_000.0;

pub struct Recording {
    pub name: &'static str,
    /// The readings as JSON lines, in the order a file source reads them.
    pub lines: Vec<String>,
    /// Labelled incident windows, (start, end) in epoch ms, in time order.
    pub windows: Vec<(i64, i64)>,
}

pub fn recordings() -> Vec<Recording> {
    vec![
        machine_temp_bearing(),
        machine_temp_setpoint(),
        machine_temp_stuck(),
        cpu_web_deploy(),
        cpu_batch_cycle(),
        cpu_idle_leak(),
        requests_weekly(),
        requests_bursty(),
        traffic_speed(),
        ambient_office_hvac(),
        ambient_outdoor(),
        datacenter_inlet_gaps(),
        cloudwatch_ec2_cpu(),
        cloudwatch_elb_requests(),
        cloudwatch_rds_queue(),
        pump_pressure_bursts(),
        vibration_mount(),
        flow_retries(),
        power_flat_warmup(),
        humidity_whole_percent(),
        cold_room_defrost(),
        greenhouse(),
        oven_two_products(),
        network_in_weekly(),
        cpu_autoscaled(),
    ]
}

/// How a recording is sampled and labelled.
struct Spec {
    name: &'static str,
    days: f64,
    /// Minutes between readings.
    every: f64,
    /// Incident onsets, hours from the start.
    onsets: Vec<f64>,
    /// Readings are rounded to 1/`per`: 10 gives steps of 0.1, 1 integers.
    per: f64,
}

/// One reading: when it was taken (epoch ms) and what it read.
#[derive(Clone, Copy)]
struct Reading {
    t: i64,
    value: f64,
}

impl Spec {
    fn new(name: &'static str, days: f64, every: f64, onsets: &[f64]) -> Spec {
        Spec {
            name,
            days,
            every,
            onsets: onsets.to_vec(),
            per: 1000.0,
        }
    }

    fn per(self, per: f64) -> Spec {
        Spec { per, ..self }
    }

    /// A value as the sensor reports it.
    fn round(&self, x: f64) -> f64 {
        (x * self.per).round() / self.per
    }

    /// Seeded by the name, so adding a recording changes no other.
    fn rng(&self) -> Rng {
        let fnv = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        Rng::new(self.name.bytes().fold(0xcbf2_9ce4_8422_2325, fnv))
    }

    /// Samples `value(hours, rng)` every `every` minutes; `None` is a
    /// reading missing.
    fn sample(
        &self,
        rng: &mut Rng,
        mut value: impl FnMut(f64, &mut Rng) -> Option<f64>,
    ) -> Vec<Reading> {
        let n = (self.days * 24.0 * 60.0 / self.every) as i64;
        (0..n)
            .filter_map(|i| {
                // Whole minutes divided once: on the hour, `h` is exact.
                let h = i as f64 * self.every / 60.0;
                let value = value(h, rng)?;
                Some(Reading {
                    t: START + (h * HOUR).round() as i64,
                    value: self.round(value),
                })
            })
            .collect()
    }

    /// The recording of `readings`, in file order.
    fn recording(&self, readings: &[Reading]) -> Recording {
        let end = START + (self.days * 24.0 * HOUR) as i64;
        let width = (0.1 * self.days * 24.0 * HOUR / self.onsets.len().max(1) as f64) as i64;
        let windows: Vec<(i64, i64)> = (self.onsets.iter())
            .map(|&h| {
                let start = START + (h * HOUR) as i64;
                (start, start + width)
            })
            .collect();
        let inside = windows.iter().all(|&(s, e)| START < s && e < end);
        let disjoint = windows.windows(2).all(|w| w[0].1 < w[1].0);
        assert!(inside && disjoint, "{}: windows {windows:?}", self.name);
        let lines = (readings.iter())
            .map(|r| {
                let (name, ts) = (self.name, format_rfc3339(r.t));
                format!(r#"{{"device":"{name}","ts":"{ts}","value":{}}}"#, r.value)
            })
            .collect();
        Recording {
            name: self.name,
            lines,
            windows,
        }
    }

    /// A recording delivered as sampled.
    fn record(&self, value: impl FnMut(f64, &mut Rng) -> Option<f64>) -> Recording {
        let readings = self.sample(&mut self.rng(), value);
        self.recording(&readings)
    }
}

/// A daily cycle: 1 at `peak` o'clock, -1 twelve hours away.
fn daily(h: f64, peak: f64) -> f64 {
    (TAU * (h - peak) / 24.0).cos()
}

/// The time of day, in hours.
fn clock(h: f64) -> f64 {
    h.rem_euclid(24.0)
}

fn weekend(h: f64) -> bool {
    (h / 24.0) as i64 % 7 >= 5
}

/// Whether `h` is within `hours` from `from`.
fn during(h: f64, from: f64, hours: f64) -> bool {
    (from..from + hours).contains(&h)
}

/// 0 until `from`, then rising to 1 over `hours`.
fn ramp(h: f64, from: f64, hours: f64) -> f64 {
    ((h - from) / hours).clamp(0.0, 1.0)
}

/// Autocorrelated noise (an AR(1) process): standard deviation `sd`,
/// forgetting over about `memory` readings. Sensors and systems wander
/// rather than draw independent noise.
struct Wander {
    x: f64,
    keep: f64,
    sd: f64,
}

impl Wander {
    fn new(sd: f64, memory: f64) -> Wander {
        Wander {
            x: 0.0,
            keep: (-1.0 / memory).exp(),
            sd,
        }
    }

    fn next(&mut self, rng: &mut Rng) -> f64 {
        let fresh = (1.0 - self.keep * self.keep).sqrt() * self.sd;
        self.x = self.keep * self.x + fresh * rng.normal();
        self.x
    }
}

/// A count of events with mean `mean`: Poisson (normal for large means).
fn count(rng: &mut Rng, mean: f64) -> f64 {
    if mean > 50.0 {
        return (mean + mean.sqrt() * rng.normal()).round().max(0.0);
    }
    let (limit, mut product, mut k) = ((-mean).exp(), rng.unit(), 0.0);
    while product > limit {
        product *= rng.unit();
        k += 1.0;
    }
    k
}

/// A sensor that can stick: while stuck it repeats the reading it had
/// when it stuck.
#[derive(Default)]
struct Stuck(Option<f64>);

impl Stuck {
    fn read(&mut self, stuck: bool, x: f64) -> f64 {
        match stuck {
            true => *self.0.get_or_insert(x),
            false => *self.0.insert(x),
        }
    }
}

fn machine_temp_bearing() -> Recording {
    let fault = 156.0;
    let (trip, restart) = (fault + 10.0, fault + 17.0);
    let mut wander = Wander::new(0.6, 12.0);
    Spec::new("machine_temp_bearing", 10.0, 5.0, &[fault]).record(|h, rng| {
        let running = 72.0 + 3.0 * daily(h, 14.0) + wander.next(rng) + 0.2 * rng.normal();
        // It trips 8 C hot and cools to the 25 C room until it restarts.
        let hot = running + 0.8 * 10.0;
        Some(match h {
            _ if during(h, fault, 10.0) => running + 0.8 * (h - fault),
            _ if during(h, trip, 7.0) => 25.0 + (hot - 25.0) * (-(h - trip) / 0.8).exp(),
            _ if during(h, restart, 3.0) => running - 47.0 * (-(h - restart) / 0.5).exp(),
            _ => running,
        })
    })
}

fn machine_temp_setpoint() -> Recording {
    let (moved, oscillating) = (72.0, 170.0);
    let mut wander = Wander::new(0.3, 30.0);
    let spec = Spec::new("machine_temp_setpoint", 9.0, 2.0, &[moved, oscillating]).per(100.0);
    spec.record(|h, rng| {
        // The loop settles on the new setpoint in about 20 minutes.
        let setpoint = 65.0 + 7.0 * (1.0 - (-(h - moved).max(0.0) / 0.3).exp());
        let spike = match during(h, oscillating, 2.0) && rng.chance(0.08) {
            true => rng.range(5.0, 9.0),
            false => 0.0,
        };
        Some(setpoint + wander.next(rng) + 0.15 * rng.normal() + spike)
    })
}

fn machine_temp_stuck() -> Recording {
    let (stuck, disconnected) = (60.0, 140.0);
    let mut wander = Wander::new(0.3, 6.0);
    let mut sensor = Stuck::default();
    let spec = Spec::new("machine_temp_stuck", 8.0, 5.0, &[stuck, disconnected]).per(100.0);
    spec.record(|h, rng| {
        let real = 48.0 + 2.0 * daily(h, 15.0) + wander.next(rng) + 0.1 * rng.normal();
        let read = sensor.read(during(h, stuck, 8.0), real);
        Some(if during(h, disconnected, 3.0) {
            0.0
        } else {
            read
        })
    })
}

fn cpu_web_deploy() -> Recording {
    let (deploy, runaway) = (60.0, 130.0);
    let spec = Spec::new("cpu_web_deploy", 7.0, 5.0, &[deploy, runaway]).per(10.0);
    spec.record(|h, rng| {
        let week = if weekend(h) { -8.0 } else { 0.0 };
        let release = if h >= deploy { 12.0 } else { 0.0 };
        let level = 25.0 + 15.0 * daily(h, 15.0) + week + release;
        let busy = level * (1.0 + 0.08 * rng.normal());
        let pinned = 100.0 - 2.0 * rng.unit();
        let cpu = if during(h, runaway, 4.0) {
            pinned
        } else {
            busy
        };
        Some(cpu.clamp(0.0, 100.0))
    })
}

fn cpu_batch_cycle() -> Recording {
    let (skipped, hung) = (121.0, 194.5);
    let spec = Spec::new("cpu_batch_cycle", 10.0, 5.0, &[skipped, hung]).per(10.0);
    spec.record(|h, rng| {
        let scheduled = during(clock(h), 1.0, 1.5) && !during(h, skipped, 1.5);
        let batch = scheduled || during(h, hung, 6.5);
        let cpu = match batch {
            true => 88.0 + 6.0 * rng.normal(),
            false => 6.0 + 1.5 * rng.normal(),
        };
        Some(cpu.clamp(0.0, 100.0))
    })
}

fn cpu_idle_leak() -> Recording {
    let leak = 100.0;
    let spec = Spec::new("cpu_idle_leak", 7.0, 5.0, &[leak]).per(1.0);
    spec.record(|h, rng| {
        let leaked = if during(h, leak, 30.0) {
            0.8 * (h - leak)
        } else {
            0.0
        };
        let idle = 2.0 + 0.8 * rng.normal() + leaked;
        Some(if h < 8.0 { 1.0 } else { idle.max(0.0) })
    })
}

fn requests_weekly() -> Recording {
    let (outage, scraper) = (180.0, 242.0);
    let spec = Spec::new("requests_weekly", 14.0, 1.0, &[outage, scraper]).per(1.0);
    spec.record(|h, rng| {
        let week = if weekend(h) { 0.6 } else { 1.0 };
        let mut mean = 80.0 * (0.55 + 0.45 * daily(h, 13.0)) * week;
        if during(h, outage, 0.75) {
            mean *= 0.02;
        }
        if during(h, scraper, 5.0) {
            mean = mean.max(72.0);
        }
        Some(count(rng, mean))
    })
}

fn requests_bursty() -> Recording {
    let (event, dead) = (150.0, 200.0);
    let mut burst = 0.0;
    let spec = Spec::new("requests_bursty", 10.0, 5.0, &[event, dead]).per(1.0);
    spec.record(|h, rng| {
        // Bursts of 3 to 5 times, fading over half an hour, twice a day.
        burst *= 0.85;
        if rng.chance(0.007) {
            burst = rng.range(2.0, 4.0);
        }
        let news = 14.0 * ramp(h, event, 1.0) * (-(h - event - 1.0).max(0.0) / 2.0).exp();
        let mean = 15.0 * (1.0 + 0.6 * daily(h, 20.0)) * (1.0 + burst + news);
        Some(if during(h, dead, 6.0) {
            0.0
        } else {
            count(rng, mean)
        })
    })
}

fn traffic_speed() -> Recording {
    let (accident, stuck) = (83.0, 128.0);
    let mut sensor = Stuck::default();
    let spec = Spec::new("traffic_speed", 7.0, 5.0, &[accident, stuck]).per(1.0);
    spec.record(|h, rng| {
        let dip =
            |at: f64, depth: f64, width: f64| depth * (-((clock(h) - at) / width).powi(2)).exp();
        let rush = match weekend(h) {
            true => 0.0,
            false => dip(8.2, 50.0, 0.6) + dip(17.5, 45.0, 0.8),
        };
        let flowing = 95.0 - rush + 3.0 * rng.normal();
        let speed = if during(h, accident, 70.0 / 60.0) {
            20.0 + 5.0 * rng.normal()
        } else {
            flowing
        };
        Some(sensor.read(during(h, stuck, 6.0), speed.max(0.0)))
    })
}

fn ambient_office_hvac() -> Recording {
    let (failed, repaired) = (225.0, 247.0);
    let mut temperature = 18.0;
    let spec = Spec::new("ambient_office_hvac", 14.0, 10.0, &[failed]).per(10.0);
    spec.record(|h, rng| {
        let heated = !weekend(h) && during(clock(h), 7.0, 12.0);
        let (target, hours): (f64, f64) =
            match (during(h, failed, repaired - failed), weekend(h), heated) {
                (true, ..) => (12.0, 6.0),
                (_, true, _) => (17.0, 1.5),
                (_, _, true) => (21.5, 1.5),
                _ => (18.0, 1.5),
            };
        temperature += (target - temperature) * (1.0 - (-(10.0 / 60.0) / hours).exp());
        Some(temperature + 0.1 * rng.normal())
    })
}

fn ambient_outdoor() -> Recording {
    let mut weather = Wander::new(3.0, 288.0);
    let spec = Spec::new("ambient_outdoor", 14.0, 10.0, &[]).per(10.0);
    spec.record(|h, rng| {
        let front = -7.0 * ramp(h, 130.0, 3.0);
        Some(9.0 + weather.next(rng) + front + 4.0 * daily(h, 15.0) + 0.2 * rng.normal())
    })
}

fn datacenter_inlet_gaps() -> Recording {
    let failure = 95.0;
    let mut wander = Wander::new(0.25, 15.0);
    let spec = Spec::new("datacenter_inlet_gaps", 6.0, 2.0, &[failure]).per(10.0);
    spec.record(|h, rng| {
        let down = during(h, 40.0, 3.0) || during(h, 75.0, 8.0) || during(h, 110.0, 1.0);
        let cooling = 6.0 * (ramp(h, failure, 0.67) - ramp(h, failure + 1.7, 0.5));
        let inlet = 22.5 + 0.4 * daily(h, 16.0) + wander.next(rng) + 0.05 * rng.normal();
        (!down).then_some(inlet + cooling)
    })
}

fn cloudwatch_ec2_cpu() -> Recording {
    let (resized, runaway) = (150.0, 260.0);
    let spec = Spec::new("cloudwatch_ec2_cpu", 14.0, 5.0, &[resized, runaway]);
    spec.record(|h, rng| {
        let scale = if h >= resized { 0.5 } else { 1.0 };
        let cron = if clock(h).fract() == 0.0 { 14.0 } else { 0.0 };
        let cpu = match during(h, runaway, 2.0) {
            true => 80.0 + 15.0 * rng.normal(),
            false => scale * (4.0 * (0.25 * rng.normal()).exp() + cron),
        };
        let missing = rng.chance(0.005) || during(h, 200.0, 2.0);
        (!missing).then_some(cpu.clamp(0.0, 100.0))
    })
}

fn cloudwatch_elb_requests() -> Recording {
    let (moved, flood) = (60.0, 120.0);
    let spec = Spec::new("cloudwatch_elb_requests", 7.0, 5.0, &[moved, flood]).per(1.0);
    spec.record(|h, rng| {
        let week = if weekend(h) { 0.7 } else { 1.0 };
        let region = if h >= moved { 0.5 } else { 1.0 };
        let attack = 1.0 + 7.0 * (ramp(h, flood, 1.0 / 6.0) - ramp(h, flood + 0.5, 1.0 / 6.0));
        let mean = 2000.0 * (0.5 + 0.5 * daily(h, 14.0)) * week * region * attack;
        Some(count(rng, mean))
    })
}

fn cloudwatch_rds_queue() -> Recording {
    let (erratic, building) = (70.0, 100.0);
    let spec = Spec::new("cloudwatch_rds_queue", 5.0, 1.0, &[erratic, building]).per(100.0);
    spec.record(|h, rng| {
        let queue = match during(h, building, 3.0) {
            true => 40.0 * ramp(h, building, 3.0),
            false => 0.0,
        };
        let level = 1.5 + 0.8 * daily(h, 11.0) + queue;
        let spread = if during(h, erratic, 8.0) { 1.05 } else { 0.35 };
        Some(level * (spread * rng.normal()).exp())
    })
}

fn pump_pressure_bursts() -> Recording {
    let cavitation = 55.0;
    let spec = Spec::new("pump_pressure_bursts", 4.0, 1.0, &[cavitation]).per(100.0);
    let mut rng = spec.rng();
    let mut wander = Wander::new(0.05, 10.0);
    let heartbeat = spec.sample(&mut rng, |h, rng| {
        let second = 0.8 * (ramp(clock(h), 6.0, 0.05) - ramp(clock(h), 22.0, 0.05));
        let dip = match during(h, cavitation, 40.0 / 60.0) && rng.chance(0.35) {
            true => rng.range(0.8, 1.8),
            false => 0.0,
        };
        Some(6.2 + second + wander.next(rng) + 0.02 * rng.normal() - dip)
    });
    // A change past the deadband is reported again 1-3 s apart, and the
    // gateway delays every reading by up to 4 s.
    let mut sent = Vec::new();
    let mut last = f64::NAN;
    for r in heartbeat {
        sent.push(r);
        if (r.value - last).abs() > 0.25 {
            let mut t = r.t;
            for _ in 0..rng.between(2, 3) {
                t += rng.between(1000, 3000);
                let value = spec.round(r.value + 0.03 * rng.normal());
                sent.push(Reading { t, value });
            }
        }
        last = r.value;
    }
    let mut arrived: Vec<(i64, Reading)> = (sent.into_iter())
        .map(|r| (r.t + rng.between(0, 4000), r))
        .collect();
    arrived.sort_by_key(|&(at, _)| at);
    let readings: Vec<Reading> = arrived.into_iter().map(|(_, r)| r).collect();
    spec.recording(&readings)
}

fn vibration_mount() -> Recording {
    let (loose, remounted, impacts) = (60.0, 100.0, 150.0);
    let spec = Spec::new("vibration_mount", 8.0, 2.0, &[loose, remounted, impacts]);
    spec.record(|h, rng| {
        let level = if h >= remounted { 2.6 } else { 2.1 };
        let spread = if during(h, loose, 6.0) { 0.16 } else { 0.04 };
        let impact = during(h, impacts, 1.0) && rng.chance(0.15);
        let knock = if impact { rng.range(1.4, 1.9) } else { 1.0 };
        Some(level * knock * (spread * rng.normal()).exp())
    })
}

fn flow_retries() -> Recording {
    let (blocked, fouling, failed, replaced) = (80.0, 130.0, 136.0, 139.0);
    let spec = Spec::new("flow_retries", 7.0, 2.0, &[blocked, fouling]).per(10.0);
    let mut rng = spec.rng();
    let mut wander = Wander::new(3.0, 20.0);
    let flow = spec.sample(&mut rng, |h, rng| {
        let real = 120.0 + 30.0 * daily(h, 13.0) + wander.next(rng) + 1.5 * rng.normal();
        let blockage = 0.65 * (ramp(h, blocked, 0.33) - ramp(h, blocked + 2.0, 0.1));
        let under_reads = match h < failed {
            true => 0.15 * ramp(h, fouling, failed - fouling),
            false => 0.0,
        };
        let dead = during(h, failed, replaced - failed);
        Some(if dead {
            0.0
        } else {
            real * (1.0 - blockage - under_reads)
        })
    });
    let mut readings = Vec::new();
    for r in flow {
        readings.push(r);
        if rng.chance(0.03) {
            readings.push(r);
        } else if rng.chance(0.01) {
            let value = spec.round(r.value + 1.5 * rng.normal());
            readings.push(Reading { value, ..r });
        }
    }
    spec.recording(&readings)
}

fn power_flat_warmup() -> Recording {
    let (friction, tripped) = (90.0, 100.0);
    let spec = Spec::new("power_flat_warmup", 6.0, 2.0, &[friction]).per(1.0);
    spec.record(|h, rng| {
        let on_break = during(clock(h), 0.0, 0.5) || during(clock(h), 12.0, 0.5);
        let drag = match during(h, friction, tripped - friction) {
            true => 0.8 * (h - friction),
            false => 0.0,
        };
        let power = match on_break {
            true => 8.0 + rng.normal(),
            false => 44.0 + 2.0 * rng.normal() + drag,
        };
        let off = h < 10.0 || during(h, tripped, 2.0);
        Some(if off { 0.0 } else { power })
    })
}

fn humidity_whole_percent() -> Recording {
    let (zero, door) = (70.0, 95.0);
    let mut weather = Wander::new(2.0, 600.0);
    let spec = Spec::new("humidity_whole_percent", 5.0, 1.0, &[zero, door]).per(1.0);
    spec.record(|h, rng| {
        let open = 12.0 * (ramp(h, door, 1.0) - ramp(h, door + 1.0, 2.0));
        let humidity = 45.0 - 6.0 * daily(h, 15.0) + weather.next(rng) + 0.4 * rng.normal();
        Some(if during(h, zero, 2.0) {
            0.0
        } else {
            humidity + open
        })
    })
}

fn cold_room_defrost() -> Recording {
    let (heater_stuck, iced) = (78.0, 114.0);
    let mut wander = Wander::new(0.2, 10.0);
    // The stuck heater shows when the defrost should have ended.
    let onsets = [heater_stuck + 1.0 / 3.0, iced];
    let spec = Spec::new("cold_room_defrost", 6.0, 2.0, &onsets).per(10.0);
    spec.record(|h, rng| {
        // The heater comes on at 00, 06, 12 and 18 for 20 minutes, warming
        // the room 36 C/h (to +2 C at most), and it cools back in an hour.
        let cycle = (h / 6.0).floor();
        let since = h - 6.0 * cycle;
        let heater = if 6.0 * cycle == heater_stuck {
            2.5
        } else {
            1.0 / 3.0
        };
        let defrost = match () {
            _ if 6.0 * cycle >= iced => 0.0,
            _ if since < heater => (36.0 * since).min(20.0),
            _ => (36.0 * heater).min(20.0) * (-(since - heater) / 0.5).exp(),
        };
        let ice = 0.15 * (h - iced).max(0.0);
        let compressor = 0.4 * (TAU * h / (40.0 / 60.0)).sin();
        Some(-18.0 + defrost + ice + compressor + wander.next(rng) + 0.05 * rng.normal())
    })
}

fn greenhouse() -> Recording {
    let stuck = 154.0;
    let mut sun = 0.7;
    let spec = Spec::new("greenhouse", 10.0, 5.0, &[stuck]).per(10.0);
    spec.record(|h, rng| {
        // A new sky every day; the day the vent sticks is sunny.
        if clock(h) == 0.0 {
            sun = if (h / 24.0) as i64 == 6 {
                1.0
            } else {
                rng.range(0.3, 1.0)
            };
        }
        let warmed = 16.0 + 30.0 * sun * daily(h, 13.5).max(0.0).powf(1.5);
        // The vents open above 27 C and hold it near 28-30.
        let vented = if warmed > 27.0 {
            27.0 + 0.15 * (warmed - 27.0)
        } else {
            warmed
        };
        let air = if during(h, stuck, 7.0) {
            warmed
        } else {
            vented
        };
        let clouds = 0.1 + 0.8 * sun * daily(h, 13.5).max(0.0);
        Some(air + clouds * rng.normal())
    })
}

fn oven_two_products() -> Recording {
    let (mut setpoint, mut until, mut oven) = (205.0, 0.0, 180.0);
    let mut wander = Wander::new(0.8, 10.0);
    let spec = Spec::new("oven_two_products", 8.0, 2.0, &[]).per(10.0);
    spec.record(|h, rng| {
        if h >= until {
            setpoint = if setpoint == 180.0 { 205.0 } else { 180.0 };
            until = h + rng.range(6.0, 10.0);
        }
        // It reaches a new setpoint in about 25 minutes.
        oven += (setpoint - oven) * (1.0 - (-(2.0 / 60.0) / 0.15f64).exp());
        Some(oven + wander.next(rng) + 0.3 * rng.normal())
    })
}

fn network_in_weekly() -> Recording {
    let (transfer, saturday) = (100.0, 296.0);
    let spec = Spec::new("network_in_weekly", 14.0, 10.0, &[transfer, saturday]).per(1.0);
    spec.record(|h, rng| {
        let working = !weekend(h) || during(h, saturday, 14.0);
        let week = if working { 1.0 } else { 0.35 };
        let burst = if during(h, transfer, 40.0 / 60.0) {
            4.0
        } else {
            1.0
        };
        let bytes = 5e8 * (0.5 + 0.5 * daily(h, 14.0)) * week * burst;
        Some(bytes * (0.08 * rng.normal()).exp())
    })
}

fn cpu_autoscaled() -> Recording {
    let mut instances = 4.0;
    let spec = Spec::new("cpu_autoscaled", 7.0, 5.0, &[]).per(10.0);
    spec.record(|h, rng| {
        let demand = 200.0 * (1.0 + 0.6 * daily(h, 15.0)) * (1.0 + 0.05 * rng.normal());
        let cpu = demand / instances;
        // Scaling acts on this reading; the next one sees the new size.
        if cpu > 70.0 {
            instances += 1.0;
        } else if cpu < 35.0 && instances > 2.0 {
            instances -= 1.0;
        }
        Some(cpu.clamp(0.0, 100.0))
    })
}
