//! Pacing a replay or a simulation against the wall clock.

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
    /// `time`; `None` when it is due already.
    pub fn delay(&mut self, time: i64) -> Option<Duration> {
        let (wall, first) = *self.start.get_or_insert((Instant::now(), time));
        let offset_secs = match self.pace {
            Pace::Max => return None,
            Pace::Speed(speed) => (time - first).max(0) as f64 / 1000.0 / speed,
            Pace::Rate(rate) => self.count as f64 / rate,
        };
        self.count += 1;
        let due = wall + Duration::from_secs_f64(offset_secs);
        Some(due.saturating_duration_since(Instant::now())).filter(|d| !d.is_zero())
    }
}

/// Sleeps for `time` in short naps, so a stop request is noticed; false if
/// `stop` said to stop.
pub fn nap(time: Duration, stop: impl Fn() -> bool) -> bool {
    let until = Instant::now() + time;
    loop {
        if stop() {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
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
    fn naps_end_early_when_asked_to_stop() {
        let started = Instant::now();
        assert!(!nap(Duration::from_secs(10), || true));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(nap(Duration::from_millis(1), || false));
    }
}
