//! Turns raw messages (a JSON object or a CSV row) into [`Event`]s.
//!
//! Every source decodes through this module, so a malformed message is
//! rejected the same way whatever it arrived on. The decoder keeps only the
//! fields the pipeline uses and checks their types once, here, so operators
//! can trust what they get.

use super::{Event, FieldId, Fields, Key, Origin, Schema, Value, time};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;
use std::sync::Arc;

/// Messages larger than this are rejected unless the source says otherwise:
/// telemetry readings are a few hundred bytes, and a megabyte payload is far
/// more likely a misrouted file than a reading.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Why a message could not become an event. The text is what the dead-letter
/// record carries as `reason`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty message")]
    Empty,
    #[error("the record has no value (a tombstone)")]
    NullValue,
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    #[error("bad JSON: {0}")]
    BadJson(String),
    #[error("bad CSV: {0}")]
    BadCsv(String),
    #[error("missing key field `{0}`")]
    MissingKey(String),
    #[error("the topic has no level {0} to take the key from")]
    MissingTopicLevel(usize),
    #[error("the record has no key")]
    MissingRecordKey,
    #[error("the record's key is not UTF-8")]
    BadRecordKey,
    #[error("the record has no timestamp")]
    MissingTimestamp,
    #[error("key field `{0}` must be a string or an integer")]
    BadKey(String),
    #[error("missing time field `{0}`")]
    MissingTime(String),
    #[error("time field `{field}`: `{value}` is not an RFC 3339 timestamp or epoch milliseconds")]
    BadTime { field: String, value: String },
    #[error("time field `{field}`: {value} is outside 2000-01-01..2100-01-01")]
    AbsurdTime { field: String, value: String },
    #[error("field `{field}` must be a number, got {got}")]
    WrongType { field: String, got: &'static str },
    #[error("field `{0}` is not a finite number")]
    NotFinite(String),
}

impl DecodeError {
    /// A short stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Empty | DecodeError::NullValue => "empty",
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::InvalidUtf8(_) => "invalid_utf8",
            DecodeError::BadJson(_) => "bad_json",
            DecodeError::BadCsv(_) => "bad_csv",
            DecodeError::MissingKey(_)
            | DecodeError::BadKey(_)
            | DecodeError::MissingTopicLevel(_)
            | DecodeError::MissingRecordKey
            | DecodeError::BadRecordKey => "bad_key",
            DecodeError::MissingTime(_)
            | DecodeError::BadTime { .. }
            | DecodeError::MissingTimestamp => "bad_time",
            DecodeError::AbsurdTime { .. } => "absurd_time",
            DecodeError::WrongType { .. } | DecodeError::NotFinite(_) => "wrong_type",
        }
    }
}

/// Payload encoding of a source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
}

/// Where a source's entity key is.
#[derive(Clone, Debug, PartialEq)]
pub enum KeySpec {
    /// A field of the payload.
    Field(String),
    /// A level of the MQTT topic, counting from 0: `topic[1]` of
    /// `fleet/truck-7/telemetry` is `truck-7`.
    TopicLevel(usize),
    /// The Kafka record's key: `record.key`.
    RecordKey,
}

impl KeySpec {
    /// Reads `topic[N]`, `record.key` or a field name.
    pub fn parse(text: &str) -> KeySpec {
        let level = text
            .strip_prefix("topic[")
            .and_then(|r| r.strip_suffix(']'))
            .and_then(|n| n.parse().ok());
        match (level, text) {
            (Some(n), _) => KeySpec::TopicLevel(n),
            (None, "record.key") => KeySpec::RecordKey,
            (None, _) => KeySpec::Field(text.to_string()),
        }
    }
}

/// Where a source's event time is.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeSpec {
    /// A field of the payload, RFC 3339 or epoch milliseconds.
    Field(String),
    /// The Kafka record's timestamp: `record.timestamp`.
    RecordTimestamp,
}

impl TimeSpec {
    pub fn parse(text: &str) -> TimeSpec {
        match text {
            "record.timestamp" => TimeSpec::RecordTimestamp,
            _ => TimeSpec::Field(text.to_string()),
        }
    }
}

/// What a message's transport tells about it, beside its payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Envelope<'a> {
    /// The MQTT or Kafka topic.
    pub topic: Option<&'a str>,
    /// The Kafka record's key.
    pub key: Option<&'a [u8]>,
    /// The Kafka record's timestamp, epoch milliseconds.
    pub timestamp: Option<i64>,
    pub partition: u32,
    /// Line number, message number or offset.
    pub position: u64,
}

impl Envelope<'_> {
    /// A message known only by its position in its input.
    pub fn at(position: u64) -> Self {
        Envelope {
            position,
            ..Envelope::default()
        }
    }
}

/// What a source's records look like: where the key and the time are.
#[derive(Clone, Debug)]
pub struct DecodeSpec {
    /// Where the entity key is; `None` makes the stream one entity.
    pub key: Option<KeySpec>,
    /// Where the event time is; `None` means arrival time.
    pub time: Option<TimeSpec>,
    pub max_message_bytes: usize,
}

/// What the decoder does with a field name it meets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Key,
    Time,
    Field(FieldId, bool),
    Skip,
}

/// A decoder for one source. Cheap to clone; holds no per-message state.
#[derive(Clone)]
pub struct Decoder {
    spec: Arc<DecodeSpec>,
    /// (name, slot) for every name the decoder keeps. A linear scan beats
    /// hashing for the handful of names a pipeline reads.
    names: Arc<[(Box<str>, Slot)]>,
    source: u16,
}

/// The key used when a source has no `key`: the whole stream is one entity.
pub const SINGLE_KEY: &str = "all";

impl Decoder {
    pub fn new(spec: DecodeSpec, schema: &Schema, source: u16) -> Self {
        let mut names: Vec<(Box<str>, Slot)> = Vec::new();
        if let Some(KeySpec::Field(k)) = &spec.key {
            names.push((k.as_str().into(), Slot::Key));
        }
        if let Some(TimeSpec::Field(t)) = &spec.time {
            names.push((t.as_str().into(), Slot::Time));
        }
        for id in 0..schema.len() as FieldId {
            let name = schema.name(id);
            if !names.iter().any(|(n, _)| n.as_ref() == name) {
                names.push((name.into(), Slot::Field(id, schema.is_numeric(id))));
            }
        }
        Decoder {
            spec: Arc::new(spec),
            names: names.into(),
            source,
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.spec.max_message_bytes
    }

    fn slot(&self, name: &str) -> Slot {
        self.names
            .iter()
            .find(|(n, _)| n.as_ref() == name)
            .map_or(Slot::Skip, |(_, s)| *s)
    }

    /// Checks the size and encoding every format shares.
    fn check_bytes<'a>(&self, bytes: &'a [u8]) -> Result<&'a str, DecodeError> {
        if bytes.len() > self.spec.max_message_bytes {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit: self.spec.max_message_bytes,
            });
        }
        let text =
            std::str::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8(e.valid_up_to()))?;
        if text.trim().is_empty() {
            return Err(DecodeError::Empty);
        }
        Ok(text)
    }

    /// Decodes one JSON object; `position` is its line or offset. Without a
    /// time field the event is stamped with its arrival time.
    pub fn decode_json(&self, bytes: &[u8], position: u64) -> Result<Event, DecodeError> {
        self.decode_message(bytes, &Envelope::at(position))
    }

    /// Decodes one JSON message; its envelope may hold the key and time.
    pub fn decode_message(&self, bytes: &[u8], envelope: &Envelope) -> Result<Event, DecodeError> {
        let text = self.check_bytes(bytes)?;
        let mut builder = Builder::new(self);
        let mut de = serde_json::Deserializer::from_str(text);
        (&mut builder)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| DecodeError::BadJson(e.to_string()))?;
        builder.finish(envelope)
    }

    /// Decodes one CSV row given the header's column names.
    pub fn decode_csv(
        &self,
        header: &CsvHeader,
        bytes: &[u8],
        position: u64,
    ) -> Result<Event, DecodeError> {
        let text = self.check_bytes(bytes)?;
        let cells = split_csv(text.trim_end_matches('\r'))?;
        if cells.len() != header.slots.len() {
            return Err(DecodeError::BadCsv(format!(
                "{} columns, the header has {}",
                cells.len(),
                header.slots.len()
            )));
        }
        let mut builder = Builder::new(self);
        for ((slot, name), cell) in header.slots.iter().zip(&header.names).zip(cells) {
            if !cell.is_empty() {
                builder.put(*slot, name, csv_scalar(&cell))?;
            }
        }
        builder.finish(&Envelope::at(position))
    }

    /// Reads a CSV header line into the column layout rows are decoded with.
    pub fn csv_header(&self, line: &[u8]) -> Result<CsvHeader, DecodeError> {
        let text = self.check_bytes(line)?;
        let names = split_csv(text.trim_end_matches('\r').trim_start_matches('\u{feff}'))?;
        Ok(CsvHeader {
            slots: names.iter().map(|n| self.slot(n)).collect(),
            names,
        })
    }
}

/// Column layout of a CSV file, from its header line.
#[derive(Clone, Debug)]
pub struct CsvHeader {
    names: Vec<String>,
    slots: Vec<Slot>,
}

/// A scalar as it appears in a message, before the schema's checks.
enum Scalar<'a> {
    Num(f64),
    Bool(bool),
    Str(&'a str),
    Null,
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Num(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Str(_) => "a string",
            Scalar::Null => "null",
        }
    }
}

/// Collects one event while the message is parsed.
struct Builder<'d> {
    decoder: &'d Decoder,
    key: Option<Key>,
    time: Option<i64>,
    fields: Fields,
    /// The first problem found; parsing goes on so the JSON itself is still
    /// validated, but the message is rejected.
    error: Option<DecodeError>,
}

impl<'d> Builder<'d> {
    fn new(decoder: &'d Decoder) -> Self {
        Builder {
            decoder,
            key: None,
            time: None,
            fields: Fields::new(),
            error: None,
        }
    }

    fn put(&mut self, slot: Slot, name: &str, value: Scalar<'_>) -> Result<(), DecodeError> {
        match (slot, value) {
            (_, Scalar::Null) | (Slot::Skip, _) => {}
            (Slot::Key, Scalar::Str(s)) => self.key = Some(Key::new(s)),
            (Slot::Key, Scalar::Num(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                self.key = Some(compact_str::format_compact!("{}", n as i64))
            }
            (Slot::Key, _) => return Err(DecodeError::BadKey(name.into())),
            (Slot::Time, v) => self.time = Some(parse_time(name, v)?),
            (Slot::Field(_, true), Scalar::Num(n)) if !n.is_finite() => {
                return Err(DecodeError::NotFinite(name.into()));
            }
            (Slot::Field(id, _), Scalar::Num(n)) => self.fields.push((id, Value::Num(n))),
            // Where a number is expected a boolean counts as 1 or 0, so a
            // threshold can say "door open for 5 minutes".
            (Slot::Field(id, true), Scalar::Bool(b)) => {
                self.fields.push((id, Value::Num(b as u8 as f64)))
            }
            (Slot::Field(_, true), v) => {
                return Err(DecodeError::WrongType {
                    field: name.into(),
                    got: v.type_name(),
                });
            }
            (Slot::Field(id, false), Scalar::Bool(b)) => self.fields.push((id, Value::Bool(b))),
            (Slot::Field(id, false), Scalar::Str(s)) => {
                self.fields.push((id, Value::Str(s.into())))
            }
        }
        Ok(())
    }

    fn finish(self, envelope: &Envelope) -> Result<Event, DecodeError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let spec = &self.decoder.spec;
        let key = match (&spec.key, self.key) {
            (None, _) => Key::const_new(SINGLE_KEY),
            (Some(KeySpec::TopicLevel(n)), _) => {
                let level = envelope
                    .topic
                    .and_then(|t| t.split('/').nth(*n))
                    .filter(|l| !l.is_empty());
                Key::new(level.ok_or(DecodeError::MissingTopicLevel(*n))?)
            }
            (Some(KeySpec::RecordKey), _) => {
                let key = envelope.key.ok_or(DecodeError::MissingRecordKey)?;
                Key::new(std::str::from_utf8(key).map_err(|_| DecodeError::BadRecordKey)?)
            }
            (Some(KeySpec::Field(_)), Some(k)) => k,
            (Some(KeySpec::Field(name)), None) => {
                return Err(DecodeError::MissingKey(name.clone()));
            }
        };
        let time = match (&spec.time, self.time) {
            // Read the clock only when needed: it costs as much as parsing.
            (None, _) => time::now_ms(),
            (Some(TimeSpec::RecordTimestamp), _) => {
                let ms = envelope.timestamp.ok_or(DecodeError::MissingTimestamp)?;
                check_time_range("record.timestamp", ms, || ms.to_string())?
            }
            (Some(TimeSpec::Field(_)), Some(t)) => t,
            (Some(TimeSpec::Field(name)), None) => {
                return Err(DecodeError::MissingTime(name.clone()));
            }
        };
        let origin = Origin {
            source: self.decoder.source,
            partition: envelope.partition,
            position: envelope.position,
        };
        Ok(Event {
            key,
            time,
            fields: self.fields,
            origin,
        })
    }
}

fn parse_time(field: &str, value: Scalar<'_>) -> Result<i64, DecodeError> {
    let ms = match value {
        Scalar::Str(s) => time::parse_rfc3339(s).ok_or_else(|| DecodeError::BadTime {
            field: field.into(),
            value: s.chars().take(64).collect(),
        })?,
        Scalar::Num(n) if n.is_finite() && n.abs() < 1e15 => n as i64,
        other => {
            return Err(DecodeError::BadTime {
                field: field.into(),
                value: other.type_name().into(),
            });
        }
    };
    check_time_range(field, ms, || match value {
        Scalar::Str(s) => s.chars().take(64).collect(),
        _ => ms.to_string(),
    })
}

fn check_time_range(field: &str, ms: i64, shown: impl Fn() -> String) -> Result<i64, DecodeError> {
    if !(time::MIN_TIME..time::MAX_TIME).contains(&ms) {
        return Err(DecodeError::AbsurdTime {
            field: field.into(),
            value: shown(),
        });
    }
    Ok(ms)
}

impl<'de> DeserializeSeed<'de> for &mut Builder<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut Builder<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let decoder = self.decoder;
        while let Some(name) = map.next_key_seed(NameSeed)? {
            let slot = decoder.slot(&name);
            if slot == Slot::Skip || self.error.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let scalar = map.next_value_seed(ScalarSeed)?;
            let value = match &scalar {
                OwnedScalar::Num(n) => Scalar::Num(*n),
                OwnedScalar::Bool(b) => Scalar::Bool(*b),
                OwnedScalar::Str(s) => Scalar::Str(s),
                OwnedScalar::Null => Scalar::Null,
                OwnedScalar::Nested => {
                    self.error = Some(DecodeError::WrongType {
                        field: name.to_string(),
                        got: "an object or array",
                    });
                    continue;
                }
            };
            if let Err(e) = self.put(slot, &name, value) {
                self.error = Some(e);
            }
        }
        Ok(())
    }
}

/// Field names, borrowed from the input when they contain no escapes.
struct NameSeed;

impl<'de> DeserializeSeed<'de> for NameSeed {
    type Value = std::borrow::Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = std::borrow::Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(v.into())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(v.to_owned().into())
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON value reduced to what telemetry fields can hold.
enum OwnedScalar<'de> {
    Num(f64),
    Bool(bool),
    Str(std::borrow::Cow<'de, str>),
    Null,
    Nested,
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = OwnedScalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = OwnedScalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(OwnedScalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(OwnedScalar::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(OwnedScalar::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(OwnedScalar::Num(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(OwnedScalar::Str(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(OwnedScalar::Str(v.to_owned().into()))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(OwnedScalar::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(OwnedScalar::Nested)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(OwnedScalar::Nested)
    }
}

/// A CSV cell as a scalar: numbers and booleans are recognised, the rest is text.
fn csv_scalar(cell: &str) -> Scalar<'_> {
    if let Ok(n) = cell.parse::<f64>() {
        return Scalar::Num(n);
    }
    match cell {
        "true" => Scalar::Bool(true),
        "false" => Scalar::Bool(false),
        _ => Scalar::Str(cell),
    }
}

/// Splits one CSV line (RFC 4180 quoting; a quoted cell may not span lines).
fn split_csv(line: &str) -> Result<Vec<String>, DecodeError> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (false, '"') if cell.is_empty() => quoted = true,
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (_, c) => cell.push(c),
        }
    }
    if quoted {
        return Err(DecodeError::BadCsv("unterminated quote".into()));
    }
    cells.push(cell);
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder() -> (Decoder, FieldId, FieldId) {
        let mut schema = Schema::default();
        let temp = schema.intern_numeric("temperature_c");
        let kind = schema.intern("kind");
        let spec = DecodeSpec {
            key: Some(KeySpec::Field("device".into())),
            time: Some(TimeSpec::Field("ts".into())),
            max_message_bytes: 1024,
        };
        (Decoder::new(spec, &schema, 0), temp, kind)
    }

    #[test]
    fn keeps_only_schema_fields() {
        let (d, temp, kind) = decoder();
        let e = d
            .decode_json(
                br#"{"device":"t1","ts":"2026-11-23T10:00:00Z","temperature_c":3.5,"kind":"reefer","lat":52.1,"nested":{"a":[1]}}"#,
                7,
            )
            .unwrap();
        assert_eq!(e.key, "t1");
        assert_eq!(e.time, time::parse_rfc3339("2026-11-23T10:00:00Z").unwrap());
        assert_eq!(e.num(temp), Some(3.5));
        assert_eq!(e.get(kind), Some(&Value::Str("reefer".into())));
        assert_eq!(e.fields.len(), 2);
        assert_eq!(e.origin.position, 7);
    }

    #[test]
    fn booleans_count_as_one_and_zero_in_numeric_fields() {
        let (d, temp, _) = decoder();
        let e = d
            .decode_json(
                br#"{"device":"t1","ts":1795428000000,"temperature_c":true}"#,
                0,
            )
            .unwrap();
        assert_eq!(e.num(temp), Some(1.0));
    }

    #[test]
    fn keys_from_topic_levels() {
        let spec = DecodeSpec {
            key: Some(KeySpec::parse("topic[1]")),
            time: None,
            max_message_bytes: 1024,
        };
        let d = Decoder::new(spec, &Schema::default(), 0);
        let on = |topic| Envelope {
            topic: Some(topic),
            ..Envelope::default()
        };
        let e = d
            .decode_message(b"{}", &on("fleet/truck-7/telemetry"))
            .unwrap();
        assert_eq!(e.key, "truck-7");
        let err = d.decode_message(b"{}", &on("fleet")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the topic has no level 1 to take the key from"
        );
        assert_eq!(KeySpec::parse("device"), KeySpec::Field("device".into()));
    }

    #[test]
    fn epoch_millis_and_integer_keys() {
        let (d, ..) = decoder();
        let e = d
            .decode_json(br#"{"device":42,"ts":1795428000000}"#, 0)
            .unwrap();
        assert_eq!(e.key, "42");
        assert_eq!(e.time, 1_795_428_000_000);
    }

    #[test]
    fn rejects_each_kind_of_bad_message() {
        let (d, ..) = decoder();
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"   ", "empty"),
            (b"{not json", "bad_json"),
            (b"[1,2]", "bad_json"),
            (br#"{"ts":"2026-11-23T10:00:00Z"}"#, "bad_key"),
            (br#"{"device":"t1"}"#, "bad_time"),
            (br#"{"device":"t1","ts":"yesterday"}"#, "bad_time"),
            (
                br#"{"device":"t1","ts":"1970-01-01T00:00:00Z"}"#,
                "absurd_time",
            ),
            (br#"{"device":"t1","ts":1}"#, "absurd_time"),
            (
                br#"{"device":"t1","ts":"2026-11-23T10:00:00Z","temperature_c":"hot"}"#,
                "wrong_type",
            ),
            (
                br#"{"device":"t1","ts":"2026-11-23T10:00:00Z","temperature_c":NaN}"#,
                "bad_json",
            ),
            (
                br#"{"device":"t1","ts":"2026-11-23T10:00:00Z","temperature_c":[1]}"#,
                "wrong_type",
            ),
            (b"{\"device\":\"t\xff\"}", "invalid_utf8"),
            (&[b' '; 2000], "too_large"),
        ];
        for (input, kind) in cases {
            let err = d.decode_json(input, 0).unwrap_err();
            assert_eq!(
                err.kind(),
                *kind,
                "{:?}: {err}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn csv_rows_follow_the_header() {
        let (d, temp, kind) = decoder();
        let header = d.csv_header(b"device,ts,temperature_c,kind,note").unwrap();
        let e = d
            .decode_csv(
                &header,
                b"t1,2026-11-23T10:00:00Z,3.5,\"ree\"\"fer\",\"a, b\"",
                2,
            )
            .unwrap();
        assert_eq!(e.num(temp), Some(3.5));
        assert_eq!(e.get(kind), Some(&Value::Str("ree\"fer".into())));
        let err = d
            .decode_csv(&header, b"t1,2026-11-23T10:00:00Z,NaN,x,y", 3)
            .unwrap_err();
        assert_eq!(err.kind(), "wrong_type");
        let err = d
            .decode_csv(&header, b"t1,2026-11-23T10:00:00Z", 4)
            .unwrap_err();
        assert_eq!(err.kind(), "bad_csv");
    }
}
