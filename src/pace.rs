//! Pacing a replay or a simulation against the wall clock.

use serde::{Deserialize, Deserializer};
use std::time::{Duration, Instant};

/// How fast to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pace {
    /// As fast as the receiver takes it.
    Max,
    /// Event time per wall time: 1 is real time, 60 an hour a minute.
    Speed(f64),
    /// Items per wall-clock second, whatever their event times.
    Rate(f64),
}

/// Checks a speed as users write it (`speed:` in a pipeline, `--speed`).
pub fn check_speed(speed: f64) -> Result<f64, String> {
    match speed.is_finite() && speed >= 0.0 {
        true => Ok(speed),
        false => Err("must be a finite number, 0 or more (0: as fast as possible)".into()),
    }
}

/// Checks a rate as users write it (`--rate`).
pub fn check_rate(rate: f64) -> Result<f64, String> {
    match rate.is_finite() && rate > 0.0 {
        true => Ok(rate),
        false => Err("must be a finite number above 0".into()),
    }
}

/// A pipeline's `speed:`, checked where it is written so the error points
/// at it.
pub fn deserialize_speed<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    check_speed(f64::deserialize(d)?).map_err(|e| serde::de::Error::custom(format!("`speed` {e}")))
}

impl Pace {
    /// `speed` as replays write it: 0 means as fast as possible.
    pub fn speed(speed: f64) -> Pace {
        if speed > 0.0 {
            Pace::Speed(speed)
        } else {
            Pace::Max
        }
    }
}

/// Holds items back until their time, measured from the first item.
#[derive(Debug)]
pub struct Pacer {
    pace: Pace,
    /// Wall time and event time of the first item.
    start: Option<(Instant, i64)>,
    /// Items paced so far.
    count: u64,
}

impl Pacer {
    pub fn new(pace: Pace) -> Pacer {
        Pacer {
            pace,
            start: None,
            count: 0,
        }
    }

    /// How long to wait before sending the next item, whose event time is
    /// `time`; `None` when it is due already. An item due later than the
    /// clock can count (a rate of 1e-20 a second) waits [`Duration::MAX`]:
    /// until the run is stopped.
    pub fn delay(&mut self, time: i64) -> Option<Duration> {
        let (wall, first) = *self.start.get_or_insert((Instant::now(), time));
        let offset_secs = match self.pace {
            Pace::Max => return None,
            Pace::Speed(speed) => (time - first).max(0) as f64 / 1000.0 / speed,
            Pace::Rate(rate) => self.count as f64 / rate,
        };
        self.count += 1;
        let due = Duration::try_from_secs_f64(offset_secs)
            .ok()
            .and_then(|offset| wall.checked_add(offset));
        match due {
            Some(due) => {
                Some(due.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
            }
            None => Some(Duration::MAX),
        }
    }
}

/// Sleeps for `time` in short naps, so a stop request is noticed; false if
/// `stop` said to stop. A `time` past what the clock can count sleeps until
/// `stop` says so.
pub fn nap(time: Duration, stop: impl Fn() -> bool) -> bool {
    let until = Instant::now().checked_add(time);
    loop {
        if stop() {
            return false;
        }
        let left = until.map_or(Duration::MAX, |u| {
            u.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speed_follows_event_time_and_rate_follows_count() {
        let mut speed = Pacer::new(Pace::Speed(1000.0));
        assert_eq!(speed.delay(0), None);
        let d = speed.delay(100_000).unwrap();
        assert!(
            d > Duration::from_millis(80) && d <= Duration::from_millis(100),
            "{d:?}"
        );
        let mut rate = Pacer::new(Pace::Rate(10.0));
        assert_eq!(rate.delay(0), None);
        let d = rate.delay(0).unwrap();
        assert!(
            d > Duration::from_millis(80) && d <= Duration::from_millis(100),
            "{d:?}"
        );
        assert_eq!(Pacer::new(Pace::speed(0.0)).delay(5), None);
    }

    #[test]
    fn paces_too_slow_for_the_clock_wait_until_stopped() {
        for pace in [
            Pace::Rate(1e-20),
            Pace::Rate(f64::MIN_POSITIVE),
            Pace::Speed(1e-12),
            Pace::Speed(1e-300),
        ] {
            let mut pacer = Pacer::new(pace);
            assert_eq!(
                pacer.delay(0),
                None,
                "{pace:?}: the first item is due at once"
            );
            // A year of event time later.
            let d = pacer.delay(365 * 86_400_000).unwrap();
            assert!(d > Duration::from_secs(1_000_000_000), "{pace:?}: {d:?}");
        }
        let started = Instant::now();
        let calls = std::cell::Cell::new(0);
        let stop = || {
            calls.set(calls.get() + 1);
            calls.get() > 2
        };
        assert!(!nap(Duration::MAX, stop));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn paces_too_fast_to_wait_never_wait() {
        for pace in [
            Pace::Rate(1e300),
            Pace::Rate(f64::MAX),
            Pace::Speed(f64::MAX),
        ] {
            let mut pacer = Pacer::new(pace);
            assert_eq!(pacer.delay(0), None);
            assert_eq!(pacer.delay(365 * 86_400_000), None, "{pace:?}");
        }
    }

    #[test]
    fn speeds_and_rates_are_finite_and_not_negative() {
        for ok in [0.0, 1e-300, 1.0, 60.0, 1e300] {
            assert_eq!(check_speed(ok), Ok(ok));
        }
        for bad in [-1.0, -0.5, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(check_speed(bad).is_err(), "{bad}");
        }
        assert_eq!(check_rate(1e-20), Ok(1e-20));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(check_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn naps_end_early_when_asked_to_stop() {
        let started = Instant::now();
        assert!(!nap(Duration::from_secs(10), || true));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(nap(Duration::from_millis(1), || false));
    }
}
