//! Turns raw messages (a JSON object or a CSV row) into [`Event`]s.
//!
//! Every source decodes through this module, so a malformed message is
//! rejected the same way whatever it arrived on. The decoder keeps only the
//! fields the pipeline uses and checks their types once, here, so operators
//! can trust what they get. A dotted name (`reefer.temp_c`) is a top-level
//! key spelled so, or else a path into nested objects.

use super::time::{self, EpochUnit, TimeFormat};
use super::{Event, FieldId, Fields, Key, Origin, Schema, Value};
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
    /// `problem` says what the value is not: the source's `time_format`.
    #[error("time field `{field}`: {value} {problem}")]
    BadTime {
        field: String,
        value: String,
        problem: String,
    },
    /// `hint` is empty or says which `time_format` would read the value
    /// as a plausible time.
    #[error("time field `{field}`: {value} is outside 2000-01-01..2100-01-01{hint}")]
    AbsurdTime {
        field: String,
        value: String,
        hint: String,
    },
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
    /// A field of the payload, written as its `time_format` says.
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
    /// The value of the header [`Decoder::trace_header`] names.
    pub trace: Option<&'a str>,
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
    /// How a time field is written.
    pub time_format: TimeFormat,
    pub max_message_bytes: usize,
    /// A Kafka header holding the correlation id (`trace:
    /// record.header.NAME`): the field of that name gets its value.
    pub trace_header: Option<String>,
}

/// How `trace:` names a Kafka header.
pub const TRACE_HEADER: &str = "record.header.";

/// What the decoder does with a field name it meets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Slot {
    Key,
    Time,
    Field(FieldId, bool),
    Skip,
}

/// How the decoder reached a name, for a record that holds it both ways
/// (`{"a.b": 1, "a": {"b": 2}}`): the top-level key wins.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Reach {
    /// A name without dots: there is no other way to it.
    Only,
    /// A top-level key spelled with dots (`"a.b"`).
    Dotted,
    /// Through enclosing objects (`a`, then `b`).
    Nested,
}

/// One key the decoder looks for in an object, and, when its value is an
/// object, the keys it looks for inside. Built once per source, so an
/// object nobody asked into is skipped without a look at its keys.
#[derive(Clone, Debug)]
struct Entry {
    key: Box<str>,
    /// `Skip` for a key that only leads to nested names.
    slot: Slot,
    reach: Reach,
    /// The name as the pipeline writes it, for errors.
    name: Box<str>,
    inner: Vec<Entry>,
}

impl Entry {
    /// The entry for `key` among `entries`, added if new.
    fn at<'e>(entries: &'e mut Vec<Entry>, key: &str) -> &'e mut Entry {
        let i = match entries.iter().position(|e| *e.key == *key) {
            Some(i) => i,
            None => {
                entries.push(Entry {
                    key: key.into(),
                    slot: Slot::Skip,
                    reach: Reach::Only,
                    name: key.into(),
                    inner: Vec::new(),
                });
                entries.len() - 1
            }
        };
        &mut entries[i]
    }

    fn set(&mut self, slot: Slot, reach: Reach, name: &str) {
        self.slot = slot;
        self.reach = reach;
        self.name = name.into();
    }
}

/// A decoder for one source. Cheap to clone; holds no per-message state.
#[derive(Clone)]
pub struct Decoder {
    spec: Arc<DecodeSpec>,
    /// The trace header's field.
    trace_field: Option<FieldId>,
    /// What to look for at the top level of a record. A linear scan beats
    /// hashing for the handful of names a pipeline reads.
    entries: Arc<[Entry]>,
    source: u16,
}

/// The key used when a source has no `key`: the whole stream is one entity.
pub const SINGLE_KEY: &str = "all";

impl Decoder {
    pub fn new(spec: DecodeSpec, schema: &Schema, source: u16) -> Self {
        let mut names: Vec<(&str, Slot)> = Vec::new();
        if let Some(KeySpec::Field(k)) = &spec.key {
            names.push((k, Slot::Key));
        }
        if let Some(TimeSpec::Field(t)) = &spec.time {
            names.push((t, Slot::Time));
        }
        for id in 0..schema.len() as FieldId {
            let name = schema.name(id);
            if !names.iter().any(|(n, _)| *n == name) {
                names.push((name, Slot::Field(id, schema.is_numeric(id))));
            }
        }
        let mut entries = Vec::new();
        for (name, slot) in names {
            if !name.contains('.') {
                Entry::at(&mut entries, name).set(slot, Reach::Only, name);
                continue;
            }
            Entry::at(&mut entries, name).set(slot, Reach::Dotted, name);
            if name.split('.').any(str::is_empty) {
                continue;
            }
            let mut level = &mut entries;
            let mut segments = name.split('.').peekable();
            while let Some(segment) = segments.next() {
                let entry = Entry::at(level, segment);
                if segments.peek().is_none() {
                    entry.set(slot, Reach::Nested, name);
                }
                level = &mut entry.inner;
            }
        }
        let trace_field = (spec.trace_header.as_ref())
            .and_then(|name| schema.id(&format!("{TRACE_HEADER}{name}")));
        Decoder {
            spec: Arc::new(spec),
            trace_field,
            entries: entries.into(),
            source,
        }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.spec.max_message_bytes
    }

    /// The slot of a top-level name (a CSV column): CSV has no nesting.
    fn slot(&self, name: &str) -> Slot {
        self.entries
            .iter()
            .find(|e| *e.key == *name)
            .map_or(Slot::Skip, |e| e.slot)
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

    /// The Kafka header whose value is the correlation id, if `trace:`
    /// names one.
    pub fn trace_header(&self) -> Option<&str> {
        self.spec.trace_header.as_deref()
    }

    /// Decodes one JSON message; its envelope may hold the key and time.
    /// Without a time, the event is stamped with its arrival time.
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
                builder.put(*slot, name, Reach::Only, csv_scalar(&cell))?;
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

impl CsvHeader {
    /// The column names.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Every field name of a JSON object, dotted inside nested objects
/// (`reefer.temp_c`): what a source's records hold, for messages about
/// what the pipeline reads. Not for the hot path: it builds the whole tree.
pub fn json_field_names(bytes: &[u8]) -> Vec<String> {
    fn walk(
        prefix: &str,
        object: &serde_json::Map<String, serde_json::Value>,
        out: &mut Vec<String>,
    ) {
        for (key, value) in object {
            let name = format!("{prefix}{key}");
            match value {
                serde_json::Value::Object(inner) => walk(&format!("{name}."), inner, out),
                _ => out.push(name),
            }
        }
    }
    let mut names = Vec::new();
    if let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(bytes) {
        walk("", &object, &mut names);
    }
    names
}

/// A scalar as it appears in a message, before the schema's checks.
#[derive(Clone, Copy)]
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

    fn put(
        &mut self,
        slot: Slot,
        name: &str,
        reach: Reach,
        value: Scalar<'_>,
    ) -> Result<(), DecodeError> {
        if reach == Reach::Nested && self.has(slot) {
            return Ok(());
        }
        match (slot, value) {
            (_, Scalar::Null) | (Slot::Skip, _) => {}
            (Slot::Key, Scalar::Str(s)) => self.key = Some(Key::new(s)),
            (Slot::Key, Scalar::Num(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                self.key = Some(compact_str::format_compact!("{}", n as i64))
            }
            (Slot::Key, _) => return Err(DecodeError::BadKey(name.into())),
            (Slot::Time, v) => {
                self.time = Some(parse_time(name, v, &self.decoder.spec.time_format)?)
            }
            (Slot::Field(_, true), Scalar::Num(n)) if !n.is_finite() => {
                return Err(DecodeError::NotFinite(name.into()));
            }
            (Slot::Field(id, _), Scalar::Num(n)) => self.set(id, Value::Num(n), reach),
            // Where a number is expected a boolean counts as 1 or 0, so a
            // threshold can say "door open for 5 minutes".
            (Slot::Field(id, true), Scalar::Bool(b)) => {
                self.set(id, Value::Num(b as u8 as f64), reach)
            }
            (Slot::Field(_, true), v) => {
                return Err(DecodeError::WrongType {
                    field: name.into(),
                    got: v.type_name(),
                });
            }
            (Slot::Field(id, false), Scalar::Bool(b)) => self.set(id, Value::Bool(b), reach),
            (Slot::Field(id, false), Scalar::Str(s)) => self.set(id, Value::Str(s.into()), reach),
        }
        Ok(())
    }

    /// Whether the slot holds a value already.
    fn has(&self, slot: Slot) -> bool {
        match slot {
            Slot::Key => self.key.is_some(),
            Slot::Time => self.time.is_some(),
            Slot::Field(id, _) => self.fields.iter().any(|(f, _)| *f == id),
            Slot::Skip => false,
        }
    }

    fn set(&mut self, id: FieldId, value: Value, reach: Reach) {
        // Only a dotted top-level key can meet its field already filled
        // (through nesting); it replaces that value.
        if reach == Reach::Dotted
            && let Some(slot) = self.fields.iter_mut().find(|(f, _)| *f == id)
        {
            slot.1 = value;
            return;
        }
        self.fields.push((id, value));
    }

    /// Takes the keys of one object the decoder knows, as `entries` say,
    /// and skips the rest unread.
    fn fill<'de, A: MapAccess<'de>>(
        &mut self,
        map: &mut A,
        entries: &'d [Entry],
    ) -> Result<(), A::Error> {
        while let Some(name) = map.next_key_seed(NameSeed)? {
            match entries.iter().find(|e| *e.key == *name) {
                Some(entry) if self.error.is_none() => map.next_value_seed(EntrySeed {
                    builder: &mut *self,
                    entry,
                })?,
                _ => map.next_value::<IgnoredAny>().map(drop)?,
            }
        }
        Ok(())
    }

    /// Records the first problem with the message.
    fn fail(&mut self, error: DecodeError) {
        self.error.get_or_insert(error);
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
                check_time_range("record.timestamp", ms, || ms.to_string(), String::new)?
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
        let mut fields = self.fields;
        if let (Some(id), Some(trace)) = (self.decoder.trace_field, envelope.trace) {
            fields.push((id, Value::Str(trace.into())));
        }
        Ok(Event {
            key,
            time,
            fields,
            origin,
        })
    }
}

fn parse_time(field: &str, value: Scalar<'_>, format: &TimeFormat) -> Result<i64, DecodeError> {
    let ms = match value {
        Scalar::Str(s) => format.parse_str(s),
        Scalar::Num(n) => format.parse_num(n),
        Scalar::Bool(_) | Scalar::Null => None,
    };
    let shown = |quote: &str| match value {
        Scalar::Str(s) => format!("{quote}{}{quote}", s.chars().take(64).collect::<String>()),
        Scalar::Num(n) => n.to_string(),
        other => other.type_name().into(),
    };
    let Some(ms) = ms else {
        let problem = match format {
            TimeFormat::Auto => "is not an RFC 3339 timestamp or epoch milliseconds".into(),
            format => format!("does not match time_format `{format}`"),
        };
        return Err(DecodeError::BadTime {
            field: field.into(),
            value: shown("`"),
            problem,
        });
    };
    let hint = || match (format, value) {
        (TimeFormat::Auto, Scalar::Num(n)) => epoch_hint(n),
        _ => String::new(),
    };
    check_time_range(field, ms, || shown(""), hint)
}

/// Epoch seconds and milliseconds are both plain numbers: when a number
/// read as milliseconds is no plausible time but would be one in another
/// unit (seconds give January 1970), say which `time_format` reads it so.
fn epoch_hint(n: f64) -> String {
    let plausible = |unit: &EpochUnit| {
        unit.ms(n)
            .is_some_and(|ms| (time::MIN_TIME..time::MAX_TIME).contains(&ms))
    };
    match EpochUnit::ALL.into_iter().find(plausible) {
        Some(unit) => format!(
            " as epoch milliseconds; if it is epoch {}, set `time_format: {}`",
            unit.name(),
            TimeFormat::Epoch(unit)
        ),
        None => String::new(),
    }
}

fn check_time_range(
    field: &str,
    ms: i64,
    shown: impl FnOnce() -> String,
    hint: impl FnOnce() -> String,
) -> Result<i64, DecodeError> {
    if !(time::MIN_TIME..time::MAX_TIME).contains(&ms) {
        return Err(DecodeError::AbsurdTime {
            field: field.into(),
            value: shown(),
            hint: hint(),
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
        self.fill(&mut map, &decoder.entries)
    }
}

/// The value of a key the decoder knows: a scalar for its slot, or an
/// object to look into.
struct EntrySeed<'b, 'd> {
    builder: &'b mut Builder<'d>,
    entry: &'d Entry,
}

impl EntrySeed<'_, '_> {
    fn put(self, value: Scalar<'_>) {
        let Entry {
            slot, reach, name, ..
        } = self.entry;
        if let Err(e) = self.builder.put(*slot, name, *reach, value) {
            self.builder.fail(e);
        }
    }

    /// An object or array where the pipeline reads a value.
    fn nested(&mut self) {
        if self.entry.slot != Slot::Skip {
            self.builder.fail(DecodeError::WrongType {
                field: self.entry.name.to_string(),
                got: "an object or array",
            });
        }
    }
}

impl<'de> DeserializeSeed<'de> for EntrySeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.put(Scalar::Bool(v));
        Ok(())
    }
    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.put(Scalar::Num(v as f64));
        Ok(())
    }
    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.put(Scalar::Num(v as f64));
        Ok(())
    }
    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.put(Scalar::Num(v));
        Ok(())
    }
    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        self.put(Scalar::Str(v));
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        self.put(Scalar::Null);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.nested();
        self.builder.fill(&mut map, &self.entry.inner)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.nested();
        while seq.next_element::<IgnoredAny>()?.is_some() {}
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

    impl Decoder {
        /// A message known by its position only, as in a file.
        fn decode_json(&self, bytes: &[u8], position: u64) -> Result<Event, DecodeError> {
            self.decode_message(bytes, &Envelope::at(position))
        }
    }

    fn decoder() -> (Decoder, FieldId, FieldId) {
        let mut schema = Schema::default();
        let temp = schema.intern_numeric("temperature_c");
        let kind = schema.intern("kind");
        let spec = DecodeSpec {
            key: Some(KeySpec::Field("device".into())),
            time: Some(TimeSpec::Field("ts".into())),
            time_format: TimeFormat::Auto,
            max_message_bytes: 1024,
            trace_header: None,
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
            time_format: TimeFormat::Auto,
            max_message_bytes: 1024,
            trace_header: None,
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

    /// A decoder for `key`, `time` and the named fields (the first numeric).
    fn decoder_for(key: &str, time: &str, fields: &[&str]) -> (Decoder, Vec<FieldId>) {
        let mut schema = Schema::default();
        let ids = (fields.iter().enumerate())
            .map(|(i, f)| match i {
                0 => schema.intern_numeric(f),
                _ => schema.intern(f),
            })
            .collect();
        let spec = DecodeSpec {
            key: Some(KeySpec::Field(key.into())),
            time: Some(TimeSpec::Field(time.into())),
            time_format: TimeFormat::Auto,
            max_message_bytes: 1024,
            trace_header: None,
        };
        (Decoder::new(spec, &schema, 0), ids)
    }

    #[test]
    fn dotted_names_descend_into_objects() {
        let (d, ids) = decoder_for("meta.device", "meta.ts", &["reefer.temp_c", "a.b.c"]);
        let e = d
            .decode_json(
                br#"{"meta":{"device":"t1","ts":1795428000000,"fw":{"v":[1,2]}},"reefer":{"temp_c":5,"door":{"open":true}},"a":{"b":{"c":"deep"}},"other":{"x":{"y":1}}}"#,
                0,
            )
            .unwrap();
        assert_eq!(e.key, "t1");
        assert_eq!(e.time, 1_795_428_000_000);
        assert_eq!(e.num(ids[0]), Some(5.0));
        assert_eq!(e.get(ids[1]), Some(&Value::Str("deep".into())));
        assert_eq!(e.fields.len(), 2);
    }

    #[test]
    fn a_top_level_key_spelled_with_dots_wins_over_the_nested_path() {
        let (d, ids) = decoder_for("device", "ts", &["reefer.temp_c"]);
        for record in [
            br#"{"device":"t1","ts":1795428000000,"reefer.temp_c":1,"reefer":{"temp_c":2}}"#,
            br#"{"device":"t1","ts":1795428000000,"reefer":{"temp_c":2},"reefer.temp_c":1}"#,
        ] {
            let e = d.decode_json(record, 0).unwrap();
            assert_eq!(e.fields.as_slice(), [(ids[0], Value::Num(1.0))]);
        }
        let (d, _) = decoder_for("meta.device", "ts", &["x"]);
        let e = d
            .decode_json(
                br#"{"meta.device":"top","meta":{"device":"inner"},"ts":1795428000000}"#,
                0,
            )
            .unwrap();
        assert_eq!(e.key, "top");
    }

    #[test]
    fn nesting_that_does_not_lead_to_a_value_is_a_missing_or_wrong_field() {
        let (d, ids) = decoder_for("device", "ts", &["reefer.temp_c"]);
        let missing = d
            .decode_json(br#"{"device":"t1","ts":1795428000000,"reefer":5}"#, 0)
            .unwrap();
        assert_eq!(missing.num(ids[0]), None);
        let err = d
            .decode_json(
                br#"{"device":"t1","ts":1795428000000,"reefer":{"temp_c":{"v":1}}}"#,
                0,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `reefer.temp_c` must be a number, got an object or array"
        );
        let err = d
            .decode_json(
                br#"{"device":"t1","ts":1795428000000,"reefer":{"temp_c":"hot"}}"#,
                0,
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field `reefer.temp_c` must be a number, got a string"
        );
        let err = d.decode_json(
            br#"{"device":"t1","ts":1795428000000,"reefer":{"temp_c":1}"#,
            0,
        );
        assert_eq!(err.unwrap_err().kind(), "bad_json");
    }

    #[test]
    fn a_csv_column_with_dots_is_just_a_name() {
        let (d, ids) = decoder_for("device", "ts", &["reefer.temp_c"]);
        let header = d.csv_header(b"device,ts,reefer.temp_c,reefer").unwrap();
        let e = d.decode_csv(&header, b"t1,1795428000000,4.5,x", 1).unwrap();
        assert_eq!(e.fields.as_slice(), [(ids[0], Value::Num(4.5))]);
    }

    fn decoder_with(time_format: &str) -> Decoder {
        let spec = DecodeSpec {
            key: Some(KeySpec::Field("device".into())),
            time: Some(TimeSpec::Field("ts".into())),
            time_format: TimeFormat::parse(time_format).unwrap(),
            max_message_bytes: 1024,
            trace_header: None,
        };
        Decoder::new(spec, &Schema::default(), 0)
    }

    #[test]
    fn times_are_read_as_the_time_format_says() {
        let utc = 1_795_428_000_000;
        let seconds = decoder_with("epoch_s");
        for record in [
            br#"{"device":"t1","ts":1795428000}"#.as_slice(),
            br#"{"device":"t1","ts":"1795428000"}"#,
        ] {
            assert_eq!(seconds.decode_json(record, 0).unwrap().time, utc);
        }
        let err = seconds
            .decode_json(br#"{"device":"t1","ts":"2026-11-23T10:00:00Z"}"#, 0)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "time field `ts`: `2026-11-23T10:00:00Z` does not match time_format `epoch_s`"
        );
        let local = decoder_with("%Y-%m-%d %H:%M:%S");
        let e = local
            .decode_json(br#"{"device":"t1","ts":"2026-11-23 10:00:00"}"#, 0)
            .unwrap();
        assert_eq!(e.time, utc);
        let err = local
            .decode_json(br#"{"device":"t1","ts":"23.11.2026 10:00"}"#, 0)
            .unwrap_err();
        assert_eq!(err.kind(), "bad_time");
        assert_eq!(
            err.to_string(),
            "time field `ts`: `23.11.2026 10:00` does not match time_format `%Y-%m-%d %H:%M:%S`"
        );
        let err = local
            .decode_json(br#"{"device":"t1","ts":1795428000000}"#, 0)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "time field `ts`: 1795428000000 does not match time_format `%Y-%m-%d %H:%M:%S`"
        );
    }

    #[test]
    fn an_epoch_number_plausible_in_another_unit_says_which_time_format_reads_it() {
        let d = decoder_with("auto");
        let reason = |ts: &str| {
            let record = format!(r#"{{"device":"t1","ts":{ts}}}"#);
            let err = d.decode_json(record.as_bytes(), 0).unwrap_err();
            assert_eq!(err.kind(), "absurd_time", "{ts}");
            err.to_string()
        };
        assert_eq!(
            reason("1795428000"),
            "time field `ts`: 1795428000 is outside 2000-01-01..2100-01-01 as epoch milliseconds; if it is epoch seconds, set `time_format: epoch_s`"
        );
        assert!(reason("1795428000.5").ends_with("set `time_format: epoch_s`"));
        assert!(reason("1795428000123456").ends_with("set `time_format: epoch_us`"));
        assert!(reason("1795428000123456789").ends_with("set `time_format: epoch_ns`"));
        assert_eq!(
            reason("12"),
            "time field `ts`: 12 is outside 2000-01-01..2100-01-01"
        );
        let err = decoder_with("epoch_ms")
            .decode_json(br#"{"device":"t1","ts":1795428000}"#, 0)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "time field `ts`: 1795428000 is outside 2000-01-01..2100-01-01"
        );
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
