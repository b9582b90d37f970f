//! Warns, once, about fields the pipeline reads that a source's events
//! never carry.
//!
//! A source declares no fields, so `floe validate` cannot tell that
//! `mean(temperatur_c)` names nothing the devices send; the operator then
//! quietly does nothing. The decoder already knows which of the pipeline's
//! fields each event filled, so noting them costs a bit-set update per
//! event, and after [`REPORT_AFTER`] events (or at the end of a shorter
//! input) every field still unseen is named in the log, with what the
//! records do hold.

use crate::config::closest;
use crate::event::{Event, FieldId, Schema};

/// How many events a source decodes before it names the fields it never
/// saw: enough for every kind of record a fleet sends to have come by.
pub const REPORT_AFTER: u64 = 1000;

/// At most this many of the records' field names are listed in a warning.
const LISTED: usize = 20;

/// What one source's events have carried so far.
#[derive(Debug, Default)]
pub struct FieldWatch {
    source: String,
    /// Fields not reported on yet; emptied by the report, which makes
    /// every later event cost one check.
    pending: Vec<Pending>,
    /// Bit `id` is set once an event carried field `id`.
    seen: Vec<u64>,
    decoded: u64,
    /// The field names of the first record, to say what the data holds.
    sample: Option<Vec<String>>,
}

/// A field some operators read from the source's events.
#[derive(Debug)]
struct Pending {
    id: FieldId,
    name: String,
    /// Ids of the operators that read it.
    readers: Vec<String>,
}

impl FieldWatch {
    /// Watches `reads` (field name, operators reading it) in the events of
    /// `source`; names the schema does not know are left out.
    pub fn new(source: &str, reads: Vec<(String, Vec<String>)>, schema: &Schema) -> Self {
        let pending: Vec<Pending> = reads
            .into_iter()
            .filter_map(|(name, readers)| {
                let id = schema.id(&name)?;
                Some(Pending { id, name, readers })
            })
            .collect();
        FieldWatch {
            source: source.to_string(),
            pending,
            seen: vec![0; schema.len().div_ceil(64)],
            decoded: 0,
            sample: None,
        }
    }

    /// Notes the fields of a decoded event; `names` lists every field of
    /// its record, and is asked for once.
    pub fn saw(&mut self, event: &Event, names: impl FnOnce() -> Vec<String>) {
        if self.pending.is_empty() {
            return;
        }
        self.sample.get_or_insert_with(names);
        for (id, _) in &event.fields {
            let id = *id as usize;
            if let Some(word) = self.seen.get_mut(id / 64) {
                *word |= 1 << (id % 64);
            }
        }
        self.decoded += 1;
        if self.decoded == REPORT_AFTER {
            self.report();
        }
    }

    /// The input ended: reports on what it had, if it was short.
    pub fn finish(&mut self) {
        if self.decoded > 0 {
            self.report();
        }
    }

    fn report(&mut self) {
        let seen = |id: FieldId| self.seen[id as usize / 64] & (1 << (id % 64)) != 0;
        let names = self.sample.as_deref().unwrap_or_default();
        for field in self.pending.iter().filter(|f| !seen(f.id)) {
            tracing::warn!("{}", self.warning(field, names));
        }
        self.pending.clear();
    }

    fn warning(&self, field: &Pending, names: &[String]) -> String {
        let events = match self.decoded {
            1 => "1 event".to_string(),
            n => format!("{n} events"),
        };
        let readers: Vec<String> = field.readers.iter().map(|r| format!("\"{r}\"")).collect();
        let operators = if readers.len() == 1 {
            "operator"
        } else {
            "operators"
        };
        let mut listed = names
            .iter()
            .take(LISTED)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if names.len() > LISTED {
            listed.push_str(", ...");
        }
        let hint = closest(&field.name, names.iter().map(String::as_str))
            .map(|c| format!(", did you mean \"{c}\"?"))
            .unwrap_or_default();
        format!(
            "source \"{}\": no event has field \"{}\" after {events} (read by {operators} {}; fields seen: {listed}){hint}",
            self.source,
            field.name,
            readers.join(", "),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Value;

    fn watch() -> (FieldWatch, Schema) {
        let mut schema = Schema::default();
        schema.intern("temperatur_c");
        schema.intern("door_open");
        let reads = vec![
            (
                "temperatur_c".into(),
                vec!["temp_5m".into(), "too_warm".into()],
            ),
            ("door_open".into(), vec!["door".into()]),
            ("never_interned".into(), vec!["x".into()]),
        ];
        (FieldWatch::new("trucks", reads, &schema), schema)
    }

    fn record() -> Vec<String> {
        ["device", "ts", "temperature_c", "door_open"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn names_each_unseen_field_once_with_its_readers_and_the_closest_field_seen() {
        let (mut watch, schema) = watch();
        let door = schema.id("door_open").unwrap();
        let mut event = Event::new("t1".into(), 0);
        event.set(door, Value::Bool(true));
        for _ in 0..3 {
            watch.saw(&event, record);
        }
        let unseen: Vec<String> = (watch.pending.iter())
            .filter(|f| watch.seen[0] & (1 << f.id) == 0)
            .map(|f| watch.warning(f, &record()))
            .collect();
        assert_eq!(
            unseen,
            [
                "source \"trucks\": no event has field \"temperatur_c\" after 3 events (read by operators \"temp_5m\", \"too_warm\"; fields seen: device, ts, temperature_c, door_open), did you mean \"temperature_c\"?"
            ]
        );
        watch.finish();
        assert!(watch.pending.is_empty(), "reported once, then done");
    }

    #[test]
    fn reports_after_enough_events_and_not_for_an_empty_input() {
        let (mut watch, _) = watch();
        watch.finish();
        assert_eq!(watch.pending.len(), 2, "nothing decoded, nothing to say");
        let event = Event::new("t1".into(), 0);
        for _ in 0..REPORT_AFTER {
            watch.saw(&event, record);
        }
        assert!(watch.pending.is_empty());
        assert_eq!(watch.decoded, REPORT_AFTER);
        watch.saw(&event, || unreachable!("no longer sampled"));
        assert_eq!(watch.decoded, REPORT_AFTER);
    }
}
