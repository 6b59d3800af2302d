//! Storm's acker: per tuple tree, the XOR of every id created and acked in it.
//!
//! A spout's `Init` brings the XOR of the ids it sent and the spout task to tell; every
//! bolt's ack XORs in the input's id and the ids of the children it anchored. When the
//! value returns to 0 after the `Init` was seen, the tree is complete. Entries live in
//! rotating buckets: one that sees no completion for two rotations (rotating every
//! message timeout) is dropped, so memory stays bounded however many trees time out.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::route::AckerMsg;
use crate::tuple::TaskId;

/// Hashes a random 64-bit id as itself (ids are already uniformly random).
#[derive(Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A map keyed by random 64-bit ids.
pub(crate) type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    xor: u64,
    /// The spout task, once the `Init` arrived (task ids start at 1).
    spout: TaskId,
    failed: bool,
}

/// What happened to a tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Complete: tell `spout` to ack.
    Acked { spout: TaskId, root: u64 },
    /// Failed: tell `spout` to fail.
    Failed { spout: TaskId, root: u64 },
}

/// Number of rotating buckets.
const BUCKETS: usize = 3;

/// The acker's state.
#[derive(Debug)]
pub(crate) struct Acker {
    buckets: VecDeque<IdMap<Entry>>,
}

impl Default for Acker {
    fn default() -> Self {
        Acker {
            buckets: (0..BUCKETS).map(|_| IdMap::default()).collect(),
        }
    }
}

impl Acker {
    /// Applies one message; returns the tree's outcome if it completed or failed.
    pub(crate) fn apply(&mut self, msg: AckerMsg) -> Option<Outcome> {
        let (root, update) = match msg {
            AckerMsg::Init { root, xor, spout } => (
                root,
                Entry {
                    xor,
                    spout,
                    failed: false,
                },
            ),
            AckerMsg::Xor { root, xor } => (
                root,
                Entry {
                    xor,
                    ..Entry::default()
                },
            ),
            AckerMsg::Fail { root } => (
                root,
                Entry {
                    failed: true,
                    ..Entry::default()
                },
            ),
        };
        let merge = |e: &mut Entry| {
            e.xor ^= update.xor;
            e.failed |= update.failed;
            if update.spout != 0 {
                e.spout = update.spout;
            }
        };
        // Most messages find their tree in the newest bucket: one lookup.
        let mut found = None;
        for (i, bucket) in self.buckets.iter_mut().enumerate() {
            if let Some(e) = bucket.get_mut(&root) {
                merge(e);
                found = Some((i, *e));
                break;
            }
        }
        let (bucket, e) = match found {
            Some(f) => f,
            None => {
                let mut e = Entry::default();
                merge(&mut e);
                if e.spout == 0 || (!e.failed && e.xor != 0) {
                    self.buckets[0].insert(root, e);
                    return None;
                }
                (usize::MAX, e)
            }
        };
        if e.spout == 0 {
            return None;
        }
        let outcome = if e.failed {
            Outcome::Failed {
                spout: e.spout,
                root,
            }
        } else if e.xor == 0 {
            Outcome::Acked {
                spout: e.spout,
                root,
            }
        } else {
            return None;
        };
        if let Some(b) = self.buckets.get_mut(bucket) {
            b.remove(&root);
        }
        Some(outcome)
    }

    /// Drops the oldest bucket and starts a new one; returns how many trees it dropped.
    pub(crate) fn rotate(&mut self) -> usize {
        let dropped = self.buckets.pop_back().map_or(0, |b| b.len());
        self.buckets.push_front(IdMap::default());
        dropped
    }

    /// Trees being tracked.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.iter().map(HashMap::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_completes_when_every_id_was_acked_whatever_the_order() {
        let mut a = Acker::default();
        // spout sends e1 to bolt A; A emits c1, c2 and acks e1; c1 and c2 are acked.
        let (e1, c1, c2) = (0x1111, 0x2222, 0x4444);
        assert_eq!(a.apply(AckerMsg::Xor { root: 9, xor: c1 }), None);
        assert_eq!(
            a.apply(AckerMsg::Xor {
                root: 9,
                xor: e1 ^ c1 ^ c2
            }),
            None
        );
        assert_eq!(
            a.apply(AckerMsg::Init {
                root: 9,
                xor: e1,
                spout: 3
            }),
            None
        );
        assert_eq!(
            a.apply(AckerMsg::Xor { root: 9, xor: c2 }),
            Some(Outcome::Acked { spout: 3, root: 9 })
        );
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn a_fail_before_the_init_fails_the_tree_when_the_init_arrives() {
        let mut a = Acker::default();
        assert_eq!(a.apply(AckerMsg::Fail { root: 5 }), None);
        assert_eq!(
            a.apply(AckerMsg::Init {
                root: 5,
                xor: 1,
                spout: 2
            }),
            Some(Outcome::Failed { spout: 2, root: 5 })
        );
    }

    #[test]
    fn rotation_bounds_memory() {
        let mut a = Acker::default();
        a.apply(AckerMsg::Xor { root: 1, xor: 1 });
        assert_eq!(a.rotate(), 0);
        assert_eq!(a.rotate(), 0);
        assert_eq!(a.rotate(), 1);
        assert_eq!(a.len(), 0);
    }
}
