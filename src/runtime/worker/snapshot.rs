//! A worker's part of a checkpoint: the keys that changed, as a segment;
//! and the keys a restored checkpoint gives it back.

use super::Core;
use crate::event::time;
use crate::runtime::checkpoint::Restore;
use crate::runtime::dataflow::Dataflow;
use crate::runtime::reorder::{Reorder, Saved};
use crate::state::codec::{self, CodecError};
use crate::state::store::{SavedKey, SegmentWriter, WorkerClock};
use xxhash_rust::xxh3::xxh3_64;

impl Core {
    /// The worker's timer clock, as a checkpoint keeps it.
    pub fn timer_clock(&self) -> WorkerClock {
        WorkerClock {
            clock: self.clock,
            next_tick: self.next_tick,
        }
    }

    /// The keys whose state changed since the last snapshot (all of them
    /// when `full`), as a checkpoint segment, with tombstones for the keys
    /// forgotten; `None` when there is nothing to write.
    pub fn snapshot(&mut self, flow: &Dataflow, full: bool) -> Result<Option<Vec<u8>>, CodecError> {
        let mut segment = SegmentWriter::new(&flow.components)?;
        // Tombstones first: a key forgotten and heard from again since is
        // written after its tombstone, and the later record wins.
        for key in self.keys.take_dropped() {
            // A full set replaces every segment before it: nothing to erase.
            if !full {
                segment.removed(&key)?;
            }
        }
        let mut scratch = Vec::new();
        for slot in 0..self.keys.len() {
            let ticked = self.ticked(slot, &mut scratch)?;
            if !(full || ticked || self.keys.is_dirty(slot)) {
                continue;
            }
            for source in 0..flow.sources {
                let clock = &self.clocks[source][slot];
                if !clock.is_new() {
                    let saved = clock.save(&flow.schema);
                    segment.part(source as u16, |buf| codec::encode_into(&saved, buf))?;
                }
            }
            for (i, op) in self.operators.iter().enumerate() {
                segment.part((flow.sources + i) as u16, |buf| op.save(slot, buf))?;
            }
            segment.end_key(self.keys.key(slot))?;
            self.keys.clean(slot);
        }
        Ok((segment.entries() > 0).then(|| segment.finish()))
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
            // The key counts against the first source that knew it.
            let owner = (parts.iter().filter_map(|(c, _)| component(*c)))
                .find(|&c| c < flow.sources)
                .unwrap_or(0);
            let Ok(slot) = self.new_slot(flow, &key, owner) else {
                continue;
            };
            for (c, bytes) in parts {
                let Some(component) = component(c) else {
                    continue;
                };
                let restored = match component.checked_sub(flow.sources) {
                    None => codec::decode::<Saved>(&bytes).map(|saved| {
                        self.clocks[component][slot] =
                            Reorder::restore(saved, &key, component as u16, &flow.schema);
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
        }
    }
}
