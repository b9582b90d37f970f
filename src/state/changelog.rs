//! Keyed state as a changelog keeps it: one record per key and input
//! partition, and a position record that closes each checkpoint.
//!
//! Kafka Streams' model: a consumer group's instances keep the state of
//! the keys of the partitions they own in a compacted topic, so the next
//! owner of a partition restores its keys by reading that topic. A
//! checkpoint writes, per input partition, the keys that changed (a null
//! value for a key forgotten), then a position record with the offset the
//! state covers. A reader takes only what a position record closed: a
//! checkpoint cut short leaves records after the last one, and those are
//! not a consistent state. This module is the format; `crate::kafka::changelog`
//! reads and writes the topic.

use super::codec::{self, CodecError};
use super::store::{Component, PartWriter};
use crate::event::Key;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A changelog record's key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RecordKey {
    /// The state of `key`, read from `topic`'s `partition`.
    State {
        topic: String,
        partition: i32,
        key: String,
    },
    /// The offset of `topic`'s `partition` the records before cover.
    Position { topic: String, partition: i32 },
}

impl RecordKey {
    /// The input partition the record is about.
    pub fn input(&self) -> (&str, i32) {
        match self {
            RecordKey::State {
                topic, partition, ..
            }
            | RecordKey::Position { topic, partition } => (topic, *partition),
        }
    }
}

/// A key's state changed at a checkpoint: what a worker gives the source
/// to write. `state` is [`StateWriter`]'s, `None` when the key was
/// forgotten.
#[derive(Debug)]
pub struct Change {
    pub source: u16,
    /// The input partition, by the source's own numbering.
    pub partition: u32,
    pub key: Key,
    pub state: Option<Vec<u8>>,
}

/// Builds one key's state: every part with the component it belongs to,
/// by id and fingerprint, so a pipeline whose components are numbered
/// differently (or changed) reads what is still its own.
pub struct StateWriter<'a> {
    components: &'a [Component],
    buf: Vec<u8>,
}

impl<'a> StateWriter<'a> {
    pub fn new(components: &'a [Component]) -> Self {
        StateWriter {
            components,
            buf: Vec::new(),
        }
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

impl PartWriter for StateWriter<'_> {
    fn part(
        &mut self,
        component: u16,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(), CodecError>,
    ) -> Result<(), CodecError> {
        let mut bytes = Vec::new();
        encode(&mut bytes)?;
        let named = &self.components[component as usize];
        codec::encode_into(&(named, bytes.as_slice()), &mut self.buf)
    }
}

/// The parts [`StateWriter`] wrote.
pub fn read_state(mut data: &[u8]) -> Result<Vec<(Component, Vec<u8>)>, CodecError> {
    let mut parts = Vec::new();
    while !data.is_empty() {
        let (part, rest) = postcard::take_from_bytes(data).map_err(CodecError::Decode)?;
        parts.push(part);
        data = rest;
    }
    Ok(parts)
}

/// What one input partition's records in the changelog say, read in order.
#[derive(Debug, Default)]
pub struct Replay {
    /// Since the last position record: not yet a checkpoint.
    pending: HashMap<String, Option<Vec<u8>>>,
    state: HashMap<String, Vec<u8>>,
    position: Option<i64>,
}

impl Replay {
    pub fn state(&mut self, key: String, state: Option<Vec<u8>>) {
        self.pending.insert(key, state);
    }

    /// A checkpoint ends here: what came since the last one holds.
    pub fn position(&mut self, next: i64) {
        for (key, state) in self.pending.drain() {
            match state {
                Some(state) => self.state.insert(key, state),
                None => self.state.remove(&key),
            };
        }
        self.position = Some(next);
    }

    /// The keys' state at the last checkpoint, and the offset it covers
    /// (`None` when no checkpoint was completed for the partition).
    pub fn finish(self) -> (Vec<(Key, Vec<u8>)>, Option<i64>) {
        let keys = self.state.into_iter().map(|(k, v)| (k.into(), v)).collect();
        (keys, self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_round_trips_with_its_components_named() {
        let components = [
            Component {
                id: "trucks".into(),
                fingerprint: 1,
            },
            Component {
                id: "too_warm".into(),
                fingerprint: 2,
            },
        ];
        let mut writer = StateWriter::new(&components);
        writer
            .part(1, |b| codec::encode_into(&f64::NAN, b))
            .unwrap();
        writer.part(0, |b| codec::encode_into(&7u32, b)).unwrap();
        let parts = read_state(&writer.finish()).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].0, components[1]);
        assert!(codec::decode::<f64>(&parts[0].1).unwrap().is_nan());
        assert_eq!(parts[1].0, components[0]);
        assert!(read_state(&[0xff, 0xff]).is_err());
    }

    #[test]
    fn only_what_a_position_record_closed_is_state() {
        let mut replay = Replay::default();
        replay.state("a".into(), Some(vec![1]));
        replay.state("b".into(), Some(vec![2]));
        replay.position(10);
        replay.state("a".into(), None);
        replay.state("c".into(), Some(vec![3]));
        replay.position(20);
        // A checkpoint cut short: neither counts.
        replay.state("b".into(), None);
        replay.state("d".into(), Some(vec![4]));
        let (mut keys, position) = replay.finish();
        keys.sort();
        assert_eq!(position, Some(20));
        assert_eq!(keys, [("b".into(), vec![2]), ("c".into(), vec![3])]);
        assert_eq!(Replay::default().finish(), (vec![], None));
    }
}
