//! The telemetry event: what sources produce and operators consume.
//!
//! An event is one reading of one entity: its key, its event time and the
//! fields the pipeline uses. Field names are interned into a per-pipeline
//! [`Schema`] when the pipeline is built, so the hot path compares small
//! integers instead of strings.

pub mod alert;
pub mod decode;
pub mod template;
pub mod time;

use compact_str::CompactString;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub use alert::{Alert, AlertState, Severity};

/// The entity key (`truck-0042`). Short keys are stored inline, without a
/// heap allocation per event.
pub type Key = CompactString;

/// A field's value: a scalar. The decoder looks into JSON objects for the
/// dotted names a pipeline reads (`reefer.temp_c`); objects and arrays
/// themselves are not values.
///
/// In JSON a value is written bare (`3.5`, `true`, `"open"`; a whole number
/// as an integer, `292`); in a checkpoint, which is binary and not
/// self-describing, with its variant.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Num(f64),
    Bool(bool),
    Str(CompactString),
}

/// [`Value`]'s two encodings.
mod value_serde {
    use super::Value;
    use compact_str::CompactString;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    enum Tagged<S> {
        Num(f64),
        Bool(bool),
        Str(S),
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Bare {
        Num(f64),
        Bool(bool),
        Str(CompactString),
    }

    impl Serialize for Value {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match (self, s.is_human_readable()) {
                (Value::Num(n), true) => match super::json_integer(*n) {
                    Some(i) => s.serialize_i64(i),
                    None => s.serialize_f64(*n),
                },
                (Value::Bool(b), true) => s.serialize_bool(*b),
                (Value::Str(t), true) => s.serialize_str(t),
                (Value::Num(n), false) => Tagged::<&str>::Num(*n).serialize(s),
                (Value::Bool(b), false) => Tagged::<&str>::Bool(*b).serialize(s),
                (Value::Str(t), false) => Tagged::Str(t.as_str()).serialize(s),
            }
        }
    }

    impl<'de> Deserialize<'de> for Value {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if d.is_human_readable() {
                return Ok(match Bare::deserialize(d)? {
                    Bare::Num(n) => Value::Num(n),
                    Bare::Bool(b) => Value::Bool(b),
                    Bare::Str(t) => Value::Str(t),
                });
            }
            Ok(match Tagged::<CompactString>::deserialize(d)? {
                Tagged::Num(n) => Value::Num(n),
                Tagged::Bool(b) => Value::Bool(b),
                Tagged::Str(t) => Value::Str(t),
            })
        }
    }
}

/// `n` as the integer JSON should print for it (`292`, not `292.0`), when
/// it is one that every JSON reader takes back exactly (below 2^53).
pub fn json_integer(n: f64) -> Option<i64> {
    const EXACT: f64 = (1u64 << 53) as f64;
    (n.fract() == 0.0 && n.abs() < EXACT).then_some(n as i64)
}

impl Value {
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }
}

/// Index of a field name in the pipeline's [`Schema`].
pub type FieldId = u16;

/// The field names a pipeline reads or produces, numbered.
#[derive(Debug, Default, Clone)]
pub struct Schema {
    names: Vec<String>,
    ids: HashMap<String, FieldId>,
    /// Fields some operator reads as a number: the decoder rejects a record
    /// whose value there is not a finite number, so operators never see one.
    numeric: Vec<bool>,
}

impl Schema {
    /// Returns the id of `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> FieldId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as FieldId;
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        self.numeric.push(false);
        id
    }

    /// Interns `name` and marks it as a field that must hold a number.
    pub fn intern_numeric(&mut self, name: &str) -> FieldId {
        let id = self.intern(name);
        self.numeric[id as usize] = true;
        id
    }

    pub fn id(&self, name: &str) -> Option<FieldId> {
        self.ids.get(name).copied()
    }

    pub fn name(&self, id: FieldId) -> &str {
        &self.names[id as usize]
    }

    pub fn is_numeric(&self, id: FieldId) -> bool {
        self.numeric[id as usize]
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// An event's fields, inline up to four.
pub type Fields = smallvec::SmallVec<[(FieldId, Value); 4]>;

/// Where an event came from, so a late or rejected event can be traced back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// Index of the source in the pipeline.
    pub source: u16,
    /// Partition for partitioned sources (Kafka), 0 otherwise.
    pub partition: u32,
    /// Line number for files, offset for Kafka.
    pub position: u64,
}

/// One reading of one entity, or one output of an operator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub key: Key,
    /// Event time, milliseconds since the Unix epoch.
    pub time: i64,
    /// Fields in the order they were decoded; lookups are linear because an
    /// event rarely carries more than a handful of the pipeline's fields.
    /// The first few live inline, so most events cost no heap allocation.
    pub fields: Fields,
    pub origin: Origin,
}

impl Event {
    pub fn new(key: Key, time: i64) -> Self {
        Event {
            key,
            time,
            fields: Fields::new(),
            origin: Origin::default(),
        }
    }

    pub fn get(&self, id: FieldId) -> Option<&Value> {
        self.fields.iter().find(|(f, _)| *f == id).map(|(_, v)| v)
    }

    pub fn num(&self, id: FieldId) -> Option<f64> {
        self.get(id).and_then(Value::as_f64)
    }

    pub fn set(&mut self, id: FieldId, value: Value) {
        match self.fields.iter_mut().find(|(f, _)| *f == id) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((id, value)),
        }
    }

    /// Renders the event as a JSON object: `extra` entries, the key, the
    /// event time, then the fields.
    pub fn to_json(&self, schema: &Schema, extra: &[(&str, &str)]) -> String {
        json_object(|map| {
            for (name, value) in extra {
                map.serialize_entry(name, value)?;
            }
            map.serialize_entry("key", self.key.as_str())?;
            map.serialize_entry("event_time", &time::format_rfc3339(self.time))?;
            for (id, value) in &self.fields {
                map.serialize_entry(schema.name(*id), value)?;
            }
            Ok(())
        })
    }
}

/// Writes one JSON object with entries in the order given (the order users
/// read them in), straight to a string. Non-finite numbers become `null`.
pub fn json_object(
    entries: impl FnOnce(
        &mut serde_json::ser::Compound<'_, &mut Vec<u8>, serde_json::ser::CompactFormatter>,
    ) -> Result<(), serde_json::Error>,
) -> String {
    use serde::ser::{SerializeMap, Serializer};
    let mut buf = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::new(&mut buf);
    // Serializing strings and numbers into memory cannot fail.
    if let Ok(mut map) = ser.serialize_map(None) {
        let _ = entries(&mut map).and_then(|()| map.end());
    }
    String::from_utf8(buf).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_are_json_integers_and_stay_tagged_in_checkpoints() {
        let mut schema = Schema::default();
        let mut event = Event::new("t1".into(), 0);
        let values = [
            292.0,
            4.5,
            -3.0,
            -0.0,
            9_007_199_254_740_991.0,
            2f64.powi(53),
            1e300,
        ];
        for (i, n) in values.iter().enumerate() {
            event.set(schema.intern(&format!("f{i}")), Value::Num(*n));
        }
        assert_eq!(
            event.to_json(&schema, &[]),
            r#"{"key":"t1","event_time":"1970-01-01T00:00:00.000Z","f0":292,"f1":4.5,"f2":-3,"f3":0,"f4":9007199254740991,"f5":9007199254740992.0,"f6":1e+300}"#
        );
        let back: Value = serde_json::from_str("292").unwrap();
        assert_eq!(back, Value::Num(292.0));
        let saved = crate::state::codec::encode(&Value::Num(292.0)).unwrap();
        assert_eq!(
            crate::state::codec::decode::<Value>(&saved).unwrap(),
            Value::Num(292.0)
        );
    }
}
