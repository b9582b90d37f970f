//! The keys a worker owns, numbered, with what checkpoints and key expiry
//! need to know of each.
//!
//! Operators keep one state per key in a vector indexed by the key's slot,
//! so an event costs one hash lookup per worker rather than one per
//! operator. Removing a key moves the last slot into its place (the
//! operators and clocks do the same), so slots stay dense.

use crate::event::Key;
use rustc_hash::FxHashMap;

#[derive(Default)]
pub struct Keys {
    slots: FxHashMap<Key, usize>,
    keys: Vec<Key>,
    /// Per slot: its state changed since the last checkpoint.
    dirty: Vec<bool>,
    heard: Vec<Heard>,
    /// Per slot, `stride` hashes: the state of each operator that keeps
    /// time, as last checkpointed. Ticks change state without an event, so
    /// a checkpoint compares these to find the keys a tick changed.
    hashes: Vec<u64>,
    stride: usize,
    /// Keys dropped since the last checkpoint: its tombstones.
    dropped: Vec<(Key, Heard)>,
}

/// When a key was last heard from, and through which source.
#[derive(Clone, Copy, Debug, Default)]
pub struct Heard {
    /// On the timer clock: the wall clock when live, event time in replays.
    pub at: i64,
    pub source: u16,
    /// The source whose event made the key: its `max_keys` counts it.
    pub owner: u16,
    /// The source and input partition whose changelog keeps the key's
    /// state (see [`crate::kafka::changelog`]): the last partition of a
    /// changelog source the key was heard through.
    pub changelog: Option<(u16, u32)>,
}

impl Keys {
    /// `stride`: the operators that keep time.
    pub fn new(stride: usize) -> Keys {
        Keys {
            stride,
            ..Keys::default()
        }
    }

    pub fn get(&self, key: &Key) -> Option<usize> {
        self.slots.get(key).copied()
    }

    /// Numbers a new key; the caller makes room for it in the operators.
    pub fn insert(&mut self, key: Key, heard: Heard) -> usize {
        let slot = self.keys.len();
        self.slots.insert(key.clone(), slot);
        self.keys.push(key);
        self.dirty.push(true);
        self.heard.push(heard);
        self.hashes.extend(std::iter::repeat_n(0, self.stride));
        slot
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn key(&self, slot: usize) -> &Key {
        &self.keys[slot]
    }

    pub fn heard(&self, slot: usize) -> Heard {
        self.heard[slot]
    }

    /// An event of the key came at `at` through `source`; `changelog`
    /// when that source keeps its keys' state in a changelog, with the
    /// event's partition.
    pub fn touch(&mut self, slot: usize, at: i64, source: u16, changelog: Option<u32>) {
        self.dirty[slot] = true;
        let heard = &mut self.heard[slot];
        heard.at = at;
        heard.source = source;
        if let Some(partition) = changelog {
            heard.changelog = Some((source, partition));
        }
    }

    pub fn mark_dirty(&mut self, slot: usize) {
        self.dirty[slot] = true;
    }

    pub fn is_dirty(&self, slot: usize) -> bool {
        self.dirty[slot]
    }

    /// The key's state is in a checkpoint now.
    pub fn clean(&mut self, slot: usize) {
        self.dirty[slot] = false;
    }

    /// Records the hash of ticking operator `i`'s state; true if it
    /// differs from the one recorded before.
    pub fn rehash(&mut self, slot: usize, i: usize, hash: u64) -> bool {
        let old = &mut self.hashes[slot * self.stride + i];
        std::mem::replace(old, hash) != hash
    }

    /// Forgets the key in `slot`; the last key moves into it. Returns what
    /// was known of the removed key. With `tombstone`, the next checkpoint
    /// erases its state; without (its partition went to another instance),
    /// the state saved stays for the next owner.
    pub fn remove(&mut self, slot: usize, tombstone: bool) -> Heard {
        let key = self.keys.swap_remove(slot);
        self.slots.remove(&key);
        if let Some(moved) = self.keys.get(slot) {
            self.slots.insert(moved.clone(), slot);
        }
        self.dirty.swap_remove(slot);
        let heard = self.heard.swap_remove(slot);
        let last = self.keys.len();
        for i in 0..self.stride {
            self.hashes
                .swap(slot * self.stride + i, last * self.stride + i);
        }
        self.hashes.truncate(last * self.stride);
        if tombstone {
            self.dropped.push((key, heard));
        }
        heard
    }

    /// The keys dropped since the last call.
    pub fn take_dropped(&mut self) -> Vec<(Key, Heard)> {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_moves_the_last_key_into_the_gap() {
        let mut keys = Keys::new(1);
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            assert_eq!(keys.insert(name.into(), Heard::default()), i);
            keys.rehash(i, 0, i as u64 + 10);
        }
        keys.clean(2);
        keys.remove(0, true);
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get(&"c".into()), Some(0));
        assert_eq!(keys.get(&"a".into()), None);
        assert!(!keys.is_dirty(0), "c's flags moved with it");
        assert!(!keys.rehash(0, 0, 12), "c's hash moved with it");
        let dropped: Vec<Key> = keys.take_dropped().into_iter().map(|(k, _)| k).collect();
        assert_eq!(dropped, ["a"]);
    }
}
