//! `jump`: alert when a position moves faster than anything the entity can
//! travel: a GPS fix far off, a device reporting under the wrong id.
//!
//! ```yaml
//! gps_jump:
//!   type: jump
//!   inputs: [trucks]
//!   lat: lat              # the default field names
//!   lon: lon
//!   max_speed_kmh: 250    # faster than any truck: the position is wrong
//!   severity: warning
//!   message: "{key}: position jumped {distance_km:.0} km"
//! ```
//!
//! Each key's last plausible position is the reference; a reading that
//! would need more than `max_speed_kmh` to reach fires and is left out of
//! the reference, so the next good fix resolves. A key that really moved
//! while it was silent is accepted once enough time has passed for the
//! move to be possible at that speed.

use super::alerting::{AlertingSpec, Rule};
use super::{BuildContext, Emitter, FieldRef, Keyed, KeyedOperator, Operator};
use crate::config::{ConfigError, Spanned};
use crate::event::{AlertState, Event, FieldId, Value};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Latitude in degrees.
    #[serde(default = "default_lat")]
    lat: Spanned<String>,
    /// Longitude in degrees.
    #[serde(default = "default_lon")]
    lon: Spanned<String>,
    /// The fastest the entity can travel: a faster move is a wrong position.
    max_speed_kmh: Spanned<f64>,
}

fn default_lat() -> Spanned<String> {
    Spanned::unplaced("lat".into())
}

fn default_lon() -> Spanned<String> {
    Spanned::unplaced("lon".into())
}

const EARTH_RADIUS_KM: f64 = 6371.0;
/// The shortest time two fixes are taken to be apart: two readings with
/// the same timestamp are not an infinitely fast move.
const MIN_DT_MS: f64 = 1000.0;

impl AlertingSpec for Config {
    const OWN_VARS: &'static [&'static str] = &["distance_km", "speed_kmh"];

    fn default_message(&self) -> String {
        "{key} position jumped {distance_km:.0} km ({speed_kmh:.0} km/h)".into()
    }

    fn reads(&self) -> Vec<FieldRef> {
        FieldRef::named(&[&self.lat, &self.lon])
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        // Written so that NaN (from `${VAR}`) is refused too.
        let above_zero = self.max_speed_kmh.value > 0.0;
        if !above_zero {
            problems.push(ConfigError::at(self.max_speed_kmh.loc, "must be above 0"));
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext, rule: Rule) -> Box<dyn KeyedOperator> {
        Keyed::boxed(Jump {
            rule,
            lat: ctx.numeric_field(&self.lat),
            lon: ctx.numeric_field(&self.lon),
            max_speed_kmh: self.max_speed_kmh.value,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Jump {
    rule: Rule,
    lat: FieldId,
    lon: FieldId,
    max_speed_kmh: f64,
}

/// One key's last plausible fix, and the start of the jump episode if one
/// is firing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    reference: Option<Fix>,
    firing_since: Option<i64>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Fix {
    lat: f64,
    lon: f64,
    time: i64,
}

impl Fix {
    fn valid(&self) -> bool {
        self.lat.abs() <= 90.0 && self.lon.abs() <= 180.0
    }

    /// Great-circle distance (haversine).
    fn km_to(&self, other: &Fix) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let (dp, dl) = (p2 - p1, (other.lon - self.lon).to_radians());
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

impl Operator for Jump {
    type State = State;

    fn on_event(&self, state: &mut State, event: &Event, out: &mut Emitter) {
        let (Some(lat), Some(lon)) = (event.num(self.lat), event.num(self.lon)) else {
            return;
        };
        let fix = Fix {
            lat,
            lon,
            time: event.time,
        };
        let Some(reference) = state.reference else {
            // The first fix is the reference; one off the globe never is.
            if fix.valid() {
                state.reference = Some(fix);
            }
            return;
        };
        let (km, speed) = match fix.valid() {
            true => {
                let km = reference.km_to(&fix);
                let hours = ((fix.time - reference.time) as f64).max(MIN_DT_MS) / 3_600_000.0;
                (km, km / hours)
            }
            false => (f64::INFINITY, f64::INFINITY),
        };
        let vars = [
            ("distance_km", Value::Num(km)),
            ("speed_kmh", Value::Num(speed)),
        ];
        let jumped = speed > self.max_speed_kmh;
        match (jumped, state.firing_since) {
            (true, None) => {
                out.alert(
                    self.rule
                        .alert(AlertState::Firing, event, fix.time, speed, &vars),
                );
                state.firing_since = Some(fix.time);
            }
            (false, Some(since)) => {
                out.alert(
                    self.rule
                        .alert(AlertState::Resolved, event, since, speed, &vars),
                );
                state.firing_since = None;
            }
            _ => {}
        }
        if !jumped {
            state.reference = Some(fix);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, alerts};
    use crate::event::AlertState::{Firing, Resolved};
    use crate::event::{AlertState, Value};

    const TEN_S: i64 = 10_000;

    /// Pushes fixes every 10 s; returns (index, state) of each alert.
    fn run(config: &str, fixes: &[(f64, f64)]) -> Vec<(usize, AlertState)> {
        let mut h = Harness::new("jump", config);
        let mut seen = Vec::new();
        for (i, &(lat, lon)) in fixes.iter().enumerate() {
            let fields = [("lat", Value::Num(lat)), ("lon", Value::Num(lon))];
            for a in alerts(h.push("t1", i as i64 * TEN_S, &fields)) {
                seen.push((i, a.state));
            }
        }
        seen
    }

    /// A truck driving north at about 90 km/h (0.00025 degrees a second).
    fn drive(n: usize) -> Vec<(f64, f64)> {
        (0..n).map(|i| (52.0 + 0.0025 * i as f64, 5.0)).collect()
    }

    #[test]
    fn a_far_fix_fires_once_and_the_next_good_one_resolves() {
        let mut fixes = drive(10);
        fixes[5] = (54.0, 3.0);
        let seen = run("max_speed_kmh: 250\n", &fixes);
        assert_eq!(seen, [(5, Firing), (6, Resolved)]);
    }

    #[test]
    fn driving_and_a_fix_off_the_globe_are_told_apart() {
        assert_eq!(run("max_speed_kmh: 250\n", &drive(30)), []);
        let mut fixes = drive(10);
        fixes[0] = (91.0, 5.0);
        fixes[7] = (0.0, 999.0);
        let seen = run("max_speed_kmh: 250\n", &fixes);
        assert_eq!(seen, [(7, Firing), (8, Resolved)]);
    }

    #[test]
    fn a_move_made_while_silent_is_accepted_once_it_was_possible() {
        // 300 km away: impossible 10 s later, possible 2 hours later.
        let mut fixes = drive(3);
        fixes.push((54.7, 5.0));
        let seen = run("max_speed_kmh: 250\n", &fixes);
        assert_eq!(seen, [(3, Firing)]);
        let mut h = Harness::new("jump", "max_speed_kmh: 250\n");
        let at = |lat: f64| [("lat", Value::Num(lat)), ("lon", Value::Num(5.0))];
        assert!(alerts(h.push("t1", 0, &at(52.0))).is_empty());
        assert!(alerts(h.push("t1", 2 * 3_600_000, &at(54.7))).is_empty());
    }

    #[test]
    fn the_speed_limit_must_be_positive() {
        assert!(Harness::try_new("jump", "max_speed_kmh: 0\n").is_err());
    }
}
