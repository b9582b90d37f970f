//! `dedup`: drops events whose id was already seen, so redeliveries (MQTT
//! QoS 1 after a reconnect, a replayed Kafka range) have their effects
//! downstream only once.
//!
//! ```yaml
//! once:
//!   type: dedup
//!   inputs: [trucks]
//!   field: seq          # the event's id
//!   ttl: 10m            # how long, in the key's event time, an id is remembered
//!   max_ids: 10000      # per key; when full, the oldest id is forgotten first
//! ```
//!
//! Ids are per key: the same `seq` from two trucks is two events. Events
//! without the field pass, since there is nothing to compare them by. A
//! duplicate is expected rather than bad input, so it is dropped without a
//! dead letter, and counted in the key's state.

use super::{BuildContext, Emits, Emitter, FieldRef, Keyed, KeyedOperator, Operator, OperatorSpec};
use crate::config::{ConfigError, Duration, Spanned};
use crate::event::{Event, FieldId, Value};
use rustc_hash::FxHashSet;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The field holding the event's id (a number or a string); events
    /// without it pass.
    field: Spanned<String>,
    /// How long, in the key's event time, an id is remembered after it was
    /// first seen: a repeat this long after or later passes again.
    ttl: Spanned<Duration>,
    /// The most ids remembered per key; when full, the oldest is forgotten.
    #[serde(default = "default_max_ids")]
    max_ids: Spanned<usize>,
}

fn default_max_ids() -> Spanned<usize> {
    Spanned::unplaced(10_000)
}

impl OperatorSpec for Config {
    fn reads(&self) -> Vec<FieldRef> {
        FieldRef::named(&[&self.field])
    }

    fn emits(&self) -> Emits {
        Emits::Events {
            keeps_input: true,
            adds: Vec::new(),
        }
    }

    fn check(&self) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        if self.ttl.value.ms() <= 0 {
            problems.push(ConfigError::at(self.ttl.loc, "must be longer than 0"));
        }
        if self.max_ids.value == 0 {
            problems.push(ConfigError::at(self.max_ids.loc, "must be at least 1"));
        }
        problems
    }

    fn build(&self, ctx: &mut BuildContext) -> Box<dyn KeyedOperator> {
        Keyed::boxed(Dedup {
            // Not a numeric field: ids may be strings.
            field: ctx.field(&self.field),
            ttl_ms: self.ttl.value.ms(),
            max_ids: self.max_ids.value,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Dedup {
    field: FieldId,
    ttl_ms: i64,
    max_ids: usize,
}

impl Operator for Dedup {
    type State = State;

    fn on_event(&self, state: &mut State, event: &Event, out: &mut Emitter) {
        let Some(value) = event.get(self.field) else {
            out.pass();
            return;
        };
        state.forget_until(event.time.saturating_sub(self.ttl_ms));
        let id = id_hash(value);
        if !state.ids.insert(id) {
            state.duplicates += 1;
            return;
        }
        state.order.push_back((event.time, id));
        // A loop, not an `if`: a state restored under a smaller `max_ids`
        // may hold more. The new id is at the back, so it stays.
        while state.order.len() > self.max_ids {
            state.forget_oldest();
        }
        out.pass();
    }
}

/// One key's remembered ids. `order` is the truth (what a checkpoint
/// stores); `ids` is the lookup set over it, rebuilt when restored.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(from = "Seen", into = "Seen")]
pub struct State {
    /// (event time first seen, id hash), oldest first.
    order: VecDeque<(i64, u64)>,
    ids: FxHashSet<u64>,
    /// Duplicates dropped for this key.
    duplicates: u64,
}

impl State {
    /// Forgets the ids first seen at or before `time`.
    fn forget_until(&mut self, time: i64) {
        while self.order.front().is_some_and(|&(t, _)| t <= time) {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.ids.remove(&id);
        }
    }
}

/// What a checkpoint holds of a [`State`]: plain sequences, so any serde
/// format (postcard included) encodes it.
#[derive(Serialize, Deserialize)]
struct Seen {
    order: Vec<(i64, u64)>,
    duplicates: u64,
}

impl From<Seen> for State {
    fn from(seen: Seen) -> State {
        let mut state = State {
            ids: FxHashSet::default(),
            order: VecDeque::with_capacity(seen.order.len()),
            duplicates: seen.duplicates,
        };
        // A corrupt or hand-edited checkpoint could repeat an id; keeping
        // only its first sighting keeps `order` and `ids` one to one.
        for (time, id) in seen.order {
            if state.ids.insert(id) {
                state.order.push_back((time, id));
            }
        }
        state
    }
}

impl From<State> for Seen {
    fn from(state: State) -> Seen {
        Seen {
            order: state.order.into(),
            duplicates: state.duplicates,
        }
    }
}

/// A 64-bit hash of an id that is the same in every build and version, so
/// ids in a checkpoint still match after an upgrade. Numbers hash by their
/// value (JSON `1` and `1.0` are one id), and each type has its own tag so
/// the string `"1"` is not the number 1. Two distinct ids colliding is a
/// 1-in-2^64 chance per pair: negligible at any `max_ids`.
fn id_hash(value: &Value) -> u64 {
    let bits;
    let (tag, bytes): (u8, &[u8]) = match value {
        Value::Num(n) => {
            // -0 == 0, and every NaN is one id.
            let n = if *n == 0.0 { 0.0 } else { *n };
            let n = if n.is_nan() { f64::NAN } else { n };
            bits = n.to_bits().to_le_bytes();
            (b'n', &bits)
        }
        Value::Bool(b) => (b'b', if *b { b"1" } else { b"0" }),
        Value::Str(s) => (b's', s.as_bytes()),
    };
    fnv1a(fnv1a(FNV_OFFSET, &[tag]), bytes)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a, 64 bits, continuing from `hash`: fixed by its definition, unlike
/// std's or rustc-hash's hashers, whose output may change between versions.
fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, MINUTE, events};
    use super::*;

    const CONFIG: &str = "field: seq\nttl: 10m\n";

    /// Feeds `seq` ids for `key` at the given minutes; returns the ids that passed.
    fn passed(h: &mut Harness, key: &str, ids: &[(i64, Value)]) -> Vec<Value> {
        let seq = h.field("seq");
        ids.iter()
            .flat_map(|(minute, id)| events(h.push(key, minute * MINUTE, &[("seq", id.clone())])))
            .filter_map(|e| e.get(seq).cloned())
            .collect()
    }

    fn num(n: f64) -> Value {
        Value::Num(n)
    }

    #[test]
    fn drops_repeats_within_ttl_and_passes_them_again_after() {
        let mut h = Harness::new("dedup", CONFIG);
        let out = passed(
            &mut h,
            "t1",
            &[
                (0, num(1.0)),
                (1, num(2.0)),
                (2, num(1.0)),  // a redelivery: dropped
                (9, num(2.0)),  // 8 minutes after it was seen: dropped
                (10, num(1.0)), // 10 minutes after: forgotten, passes
                (11, num(2.0)), // so is 2, 10 minutes after its first sighting
            ],
        );
        assert_eq!(out, [num(1.0), num(2.0), num(1.0), num(2.0)]);
    }

    #[test]
    fn keys_have_their_own_ids() {
        let mut h = Harness::new("dedup", CONFIG);
        assert_eq!(passed(&mut h, "a", &[(0, num(7.0))]), [num(7.0)]);
        assert_eq!(passed(&mut h, "b", &[(0, num(7.0))]), [num(7.0)]);
        assert!(passed(&mut h, "a", &[(1, num(7.0))]).is_empty());
    }

    #[test]
    fn max_ids_forgets_the_oldest_first() {
        let mut h = Harness::new("dedup", "field: seq\nttl: 1h\nmax_ids: 3\n");
        let ids: Vec<_> = (1..=4).map(|n| (n, num(n as f64))).collect();
        assert_eq!(passed(&mut h, "t1", &ids).len(), 4);
        // 1 was pushed out by 4; 4, 3 and 2 are still remembered.
        let again: Vec<_> = (1..=4).rev().map(|n| (10, num(n as f64))).collect();
        assert_eq!(passed(&mut h, "t1", &again), [num(1.0)]);
    }

    #[test]
    fn numbers_are_ids_by_value_zero_of_either_sign_and_strings_are_not_numbers() {
        let mut h = Harness::new("dedup", CONFIG);
        let out = passed(
            &mut h,
            "t1",
            &[
                (0, num(1.0)),
                (0, num(1.0)),
                (0, Value::Str("1".into())),
                (0, Value::Str("1".into())),
                (0, num(-0.0)),
                (0, num(0.0)),
            ],
        );
        assert_eq!(out, [num(1.0), Value::Str("1".into()), num(-0.0)]);
    }

    #[test]
    fn events_without_the_field_pass() {
        let mut h = Harness::new("dedup", CONFIG);
        for minute in [0, 0, 1] {
            let out = events(h.push("t1", minute * MINUTE, &[("temp", num(4.0))]));
            assert_eq!(out.len(), 1);
        }
    }

    #[test]
    fn the_id_hash_is_fnv1a_64() {
        // Published FNV-1a test vectors: checkpoints rely on this never changing.
        assert_eq!(fnv1a(FNV_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(FNV_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(FNV_OFFSET, b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn state_round_trips_and_rebuilds_its_lookup_set() {
        let dedup = Dedup {
            field: 0,
            ttl_ms: 10 * MINUTE,
            max_ids: 100,
        };
        let mut state = State::default();
        let mut out = Emitter::default();
        for (time, id) in [
            (0, num(1.0)),
            (MINUTE, Value::Str("b".into())),
            (MINUTE, num(1.0)),
        ] {
            let mut event = Event::new("t1".into(), time);
            event.set(0, id);
            dedup.on_event(&mut state, &event, &mut out);
        }
        let json = serde_json::to_string(&state).unwrap();
        let mut restored: State = serde_json::from_str(&json).unwrap();
        assert_eq!(restored.order, state.order);
        assert_eq!(restored.ids, state.ids);
        assert_eq!(restored.duplicates, 1);
        let mut event = Event::new("t1".into(), 2 * MINUTE);
        event.set(0, Value::Str("b".into()));
        let mut out = Emitter::default();
        dedup.on_event(&mut restored, &event, &mut out);
        assert!(out.outputs.is_empty(), "a restored id is still a duplicate");
    }

    #[test]
    fn rejects_a_zero_ttl_or_max_ids_and_a_missing_field() {
        for bad in [
            "field: seq\nttl: 0\n",
            "field: seq\nttl: 1m\nmax_ids: 0\n",
            "ttl: 1m\n",
            "field: seq\n",
        ] {
            assert!(Harness::try_new("dedup", bad).is_err(), "{bad}");
        }
    }
}
