//! A worker's part of a checkpoint: the keys that changed, as a segment,
//! and as changelog records for the keys of a changelog source; and the
//! keys a restored checkpoint, or a partition's changelog, gives it back.

use super::Core;
use crate::event::{Key, time};
use crate::runtime::checkpoint::Restore;
use crate::runtime::dataflow::Dataflow;
use crate::runtime::reorder::{Reorder, Saved};
use crate::state::changelog::{Change, StateWriter};
use crate::state::codec::{self, CodecError};
use crate::state::store::{PartWriter, SavedKey, SegmentWriter, WorkerClock};
use xxhash_rust::xxh3::xxh3_64;

/// A worker's part of one checkpoint.
#[derive(Default)]
pub struct Snapshot {
    /// The changed keys for the state dir, if any.
    pub segment: Option<Vec<u8>>,
    /// The changed keys of changelog sources' partitions.
    pub changes: Vec<Change>,
}

impl Core {
    /// The worker's timer clock, as a checkpoint keeps it.
    pub fn timer_clock(&self) -> WorkerClock {
        WorkerClock {
            clock: self.clock,
            next_tick: self.next_tick,
        }
    }

    /// The keys whose state changed since the last snapshot (all of them
    /// when `full`), with tombstones for the keys forgotten: as a segment,
    /// and as changes for the keys a changelog keeps.
    pub fn snapshot(&mut self, flow: &Dataflow, full: bool) -> Result<Snapshot, CodecError> {
        let mut segment = SegmentWriter::new(&flow.components)?;
        let mut changes = Vec::new();
        // Tombstones first: a key forgotten and heard from again since is
        // written after its tombstone, and the later record wins.
        for (key, heard) in self.keys.take_dropped() {
            match heard.changelog {
                // A changelog is not replaced by a full set: erase always.
                Some((source, partition)) => changes.push(Change {
                    source,
                    partition,
                    key,
                    state: None,
                }),
                // A full set replaces every segment before it.
                None if full => {}
                None => segment.removed(&key)?,
            }
        }
        let mut scratch = Vec::new();
        for slot in 0..self.keys.len() {
            let ticked = self.ticked(slot, &mut scratch)?;
            if !(full || ticked || self.keys.is_dirty(slot)) {
                continue;
            }
            let key = self.keys.key(slot);
            match self.keys.heard(slot).changelog {
                Some((source, partition)) => {
                    let mut state = StateWriter::new(&flow.components);
                    self.save_key(flow, slot, &mut state)?;
                    changes.push(Change {
                        source,
                        partition,
                        key: key.clone(),
                        state: Some(state.finish()),
                    });
                }
                None => {
                    self.save_key(flow, slot, &mut segment)?;
                    segment.end_key(key)?;
                }
            }
            self.keys.clean(slot);
        }
        Ok(Snapshot {
            segment: (segment.entries() > 0).then(|| segment.finish()),
            changes,
        })
    }

    /// Writes the state of the key in `slot`, a part per component.
    fn save_key(
        &self,
        flow: &Dataflow,
        slot: usize,
        to: &mut impl PartWriter,
    ) -> Result<(), CodecError> {
        for source in 0..flow.sources {
            let clock = &self.clocks[source][slot];
            if !clock.is_new() {
                let saved = clock.save(&flow.schema);
                to.part(source as u16, |buf| codec::encode_into(&saved, buf))?;
            }
        }
        for (i, op) in self.operators.iter().enumerate() {
            to.part((flow.sources + i) as u16, |buf| op.save(slot, buf))?;
        }
        Ok(())
    }

    /// Whether a timer changed the state of `slot` since the last snapshot.
    fn ticked(&mut self, slot: usize, scratch: &mut Vec<u8>) -> Result<bool, CodecError> {
        let mut changed = false;
        for (i, &op) in self.ticking.iter().enumerate() {
            scratch.clear();
            self.operators[op].save(slot, scratch)?;
            changed |= self.keys.rehash(slot, i, xxh3_64(scratch));
        }
        Ok(changed)
    }

    /// Takes this worker's keys from a restored checkpoint. Their idle
    /// clocks start again now.
    pub fn restore(
        &mut self,
        flow: &Dataflow,
        restore: &Restore,
        keys: Vec<SavedKey>,
        clock: WorkerClock,
    ) {
        (self.clock, self.next_tick) = (clock.clock, clock.next_tick);
        self.now = time::now_ms();
        let mut failed = vec![false; flow.components.len()];
        let component = |c: u16| restore.mapping.get(c as usize).copied().flatten();
        for (key, parts) in keys {
            let parts = (parts.into_iter())
                .filter_map(|(c, bytes)| Some((component(c)?, bytes)))
                .collect();
            self.restore_key(flow, &key, parts, &mut failed);
        }
    }

    /// Takes the keys of partitions of changelog `source` that this
    /// instance was just given, with their state as the changelog kept
    /// it; a key known here already is replaced.
    pub fn adopt(&mut self, flow: &Dataflow, source: u16, keys: Vec<(Key, u32, Vec<u8>)>) {
        self.now = time::now_ms();
        let mut failed = vec![false; flow.components.len()];
        for (key, partition, state) in keys {
            let parts = match crate::state::changelog::read_state(&state) {
                Ok(parts) => parts,
                Err(e) => {
                    tracing::warn!(
                        "key {key}: changelog state unreadable ({e}); it starts with no state"
                    );
                    continue;
                }
            };
            let parts = (parts.into_iter())
                .filter_map(|(c, bytes)| {
                    Some((flow.components.iter().position(|f| *f == c)?, bytes))
                })
                .collect();
            if let Some(slot) = self.keys.get(&key) {
                self.remove(slot, false);
            }
            if let Some(slot) = self.restore_key(flow, &key, parts, &mut failed) {
                self.touch(flow, source as usize, slot, partition);
            }
        }
    }

    /// Lets go of the keys of changelog `source`'s `partitions`, given to
    /// another instance: their state is in the changelog, for it.
    pub fn let_go(&mut self, source: u16, partitions: &[u32]) {
        for slot in (0..self.keys.len()).rev() {
            let owner = self.keys.heard(slot).changelog;
            if owner.is_some_and(|(s, p)| s == source && partitions.contains(&p)) {
                self.remove(slot, false);
            }
        }
    }

    /// Makes a slot for `key` and restores its `parts` (by component
    /// number in `flow`) into it; warns once per component whose saved
    /// state does not decode.
    fn restore_key(
        &mut self,
        flow: &Dataflow,
        key: &Key,
        parts: Vec<(usize, Vec<u8>)>,
        failed: &mut [bool],
    ) -> Option<usize> {
        // The key counts against the first source that knew it.
        let owner = (parts.iter().map(|(c, _)| *c))
            .find(|&c| c < flow.sources)
            .unwrap_or(0);
        let slot = self.new_slot(flow, key, owner).ok()?;
        for (component, bytes) in parts {
            let restored = match component.checked_sub(flow.sources) {
                None => codec::decode::<Saved>(&bytes).map(|saved| {
                    self.clocks[component][slot] =
                        Reorder::restore(saved, key, component as u16, &flow.schema);
                }),
                Some(op) => self.operators[op].restore(slot, &bytes),
            };
            if let Err(e) = restored
                && !std::mem::replace(&mut failed[component], true)
            {
                tracing::warn!(
                    "\"{}\": saved state unreadable ({e}); its keys start with no state",
                    flow.names[component]
                );
            }
        }
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::super::KeyCounts;
    use super::*;
    use crate::config::Pipeline;
    use crate::event::Event;
    use crate::runtime::Plan;
    use crate::state::store::read_segment;

    const PIPELINE: &str = r#"
sources:
  trucks: {type: kafka, brokers: "127.0.0.1:9", topics: [t], key: device, time: ts}
  plant: {type: mqtt, url: "mqtt://127.0.0.1:9", topics: [p], key: device, time: ts}
operators:
  per_min: {type: window, inputs: [trucks, plant], size: 1m, aggregates: {n: count()}}
sinks:
  out: {type: stdout, inputs: [per_min]}
"#;

    fn core() -> (Core, Dataflow) {
        let pipeline = Pipeline::parse(std::path::Path::new("p.yaml"), PIPELINE).unwrap();
        let plan = Plan::new(&pipeline);
        let operators = plan.operators.iter().map(|o| o.fork()).collect();
        let flow = plan.flow;
        let sinks = flow.sinks.iter().flatten().max().map_or(0, |s| s + 1);
        let core = Core::new(&flow, operators, sinks, KeyCounts::new(flow.sources));
        (core, flow)
    }

    fn reading(source: u16, partition: u32, key: &str, t: i64) -> Event {
        let mut e = Event::new(key.into(), t);
        e.origin.source = source;
        e.origin.partition = partition;
        e
    }

    #[test]
    fn a_changelog_sources_keys_go_to_its_partition_and_move_with_it() {
        let (mut core, flow) = core();
        for t in 0..5 {
            core.accept(&flow, reading(0, 3, "t1", t * 1000));
            core.accept(&flow, reading(1, 0, "m1", t * 1000));
        }
        let snapshot = core.snapshot(&flow, false).unwrap();
        // The MQTT key in the segment; the Kafka key as a change of its partition.
        let (_, entries) = read_segment(&snapshot.segment.unwrap()).unwrap();
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["m1"]);
        assert_eq!(snapshot.changes.len(), 1);
        let change = &snapshot.changes[0];
        assert_eq!(
            (change.source, change.partition, change.key.as_str()),
            (0, 3, "t1")
        );
        let state = change.state.clone().unwrap();

        // The partition goes: its key with it, with no tombstone.
        core.let_go(0, &[3]);
        assert!(core.keys.get(&"t1".into()).is_none());
        assert!(core.keys.get(&"m1".into()).is_some());
        let after = core.snapshot(&flow, false).unwrap();
        assert!(after.changes.is_empty());
        // A key forgotten (idle) is erased from its partition's changelog.
        core.accept(&flow, reading(0, 1, "t2", 9_000));
        assert_eq!(core.snapshot(&flow, false).unwrap().changes.len(), 1);
        let slot = core.keys.get(&"t2".into()).unwrap();
        core.remove(slot, true);
        let erased = core.snapshot(&flow, false).unwrap().changes;
        assert_eq!(erased.len(), 1);
        assert_eq!((erased[0].partition, erased[0].key.as_str()), (1, "t2"));
        assert!(erased[0].state.is_none());

        // Another worker is given the partition: the open window goes on
        // counting where the first left it.
        let (mut other, _) = self::core();
        other.adopt(&flow, 0, vec![("t1".into(), 3, state)]);
        for t in 5..7 {
            other.accept(&flow, reading(0, 3, "t1", t * 1000));
        }
        other.accept(&flow, reading(0, 3, "t1", 61_000));
        let counted: Vec<serde_json::Value> = (other.outbox.iter().flatten())
            .filter_map(|r| serde_json::from_str::<serde_json::Value>(&r.line).ok())
            .map(|w| w["n"].clone())
            .collect();
        assert_eq!(counted, [serde_json::json!(7)]);
    }
}
