//! Exactly-once state: key groups, what a task writes into a checkpoint, and where
//! checkpoints are kept.
//!
//! A checkpointed topology (`checkpoint_interval_secs` in `[topology]`) snapshots every
//! task's state and every spout's position together, and rolls all of them back to the
//! last committed checkpoint after a failure.
//!
//! # Layout
//! - here: key groups, [`TaskState`] and [`TaskStateReader`], [`open_store`];
//! - [`store`]: parts with checksums, manifests, the newest checkpoint that verifies;
//! - [`backend`]: the [`Backend`] trait and local files; [`redis`]: a Redis server;
//! - [`coordinator`]: starts checkpoints, collects confirmations, commits;
//! - `task`: a task's side, the state it restores and the thread that writes its parts.
//!
//! **Keyed state** is split into [`KEY_GROUPS`] key groups (Flink's "max parallelism"):
//! the key group of a key is the fields grouping's hash of the key's values modulo
//! [`KEY_GROUPS`], and in a checkpointed topology a fields grouping sends key group `g`
//! to task `g * tasks / KEY_GROUPS` ([`key_group_task`]), so each task owns a contiguous
//! range of key groups ([`key_group_range`]). A bolt writes its keyed state with
//! [`TaskState::put_map`], one blob per key group; a task restored with another
//! parallelism reads back exactly the groups it now owns ([`TaskStateReader::map`]).
//! State that belongs to the task rather than to keys (a sink's committed length) goes
//! through [`TaskState::put_task`] and comes back to the task with the same index; a
//! rescaled task that needs what the old tasks knew about the keys it takes now (a
//! window's watermark, the windows already fired) reads every old task's own state with
//! the key groups that task owned ([`TaskStateReader::every_task`], Flink's union state).
//!
//! ```
//! use topo_engine::state::{TaskState, TaskStateReader, key_group_range};
//! use topo_engine::Value;
//!
//! let counts = vec![(Value::from("ka"), 3u64), (Value::from("lo"), 5)];
//! let mut state = TaskState::default();
//! state.put_map(counts.iter().map(|(k, v)| (k, v))).unwrap();
//! // Rescaled to two tasks: each reads back the keys of its own key groups.
//! let mut all: Vec<(Value, u64)> = (0..2)
//!     .flat_map(|i| {
//!         let r = TaskStateReader::from_state(&state, key_group_range(i, 2));
//!         r.map::<Value, u64>().unwrap()
//!     })
//!     .collect();
//! all.sort_by(|a, b| a.1.cmp(&b.1));
//! assert_eq!(all, counts);
//! ```

pub mod backend;
pub mod coordinator;
pub mod redis;
pub mod store;
pub(crate) mod task;

use std::collections::BTreeMap;
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::value::{StableHasher, Value};

pub use backend::{Backend, LocalBackend};
pub use coordinator::{Confirm, Coordinator};
pub use redis::RedisBackend;
pub use store::{CheckpointStore, Manifest, PartEntry, Restored};

use std::path::{Path, PathBuf};
use std::sync::Arc;

use topo_dsl::{StateBackend, Topology};

/// The folder of a checkpointed topology's local checkpoints: `state_dir` (relative to
/// `base_dir`, the topology file's folder), by default `NAME.state` beside the file.
pub fn state_dir(topology: &Topology, base_dir: &Path) -> Option<PathBuf> {
    match &topology.settings().checkpoints.as_ref()?.backend {
        StateBackend::Local { dir: Some(d) } => Some(base_dir.join(d)),
        StateBackend::Local { dir: None } => {
            Some(base_dir.join(format!("{}.state", topology.name())))
        }
        StateBackend::Redis { .. } => None,
    }
}

/// The checkpoint store of a checkpointed topology (`None` when it does not checkpoint).
pub fn open_store(
    topology: &Topology,
    base_dir: &Path,
) -> Result<Option<CheckpointStore>, StateError> {
    let Some(c) = &topology.settings().checkpoints else {
        return Ok(None);
    };
    match &c.backend {
        StateBackend::Local { .. } => {
            let dir = state_dir(topology, base_dir).unwrap_or_else(|| base_dir.to_path_buf());
            let backend = LocalBackend::open(dir)?;
            Ok(Some(CheckpointStore::new(Arc::new(backend))))
        }
        StateBackend::Redis { url } => {
            let backend = redis::RedisBackend::open(url, topology.name())?;
            Ok(Some(CheckpointStore::new(Arc::new(backend))))
        }
    }
}

/// Key groups of keyed state: the most tasks a keyed component can be rescaled to.
pub const KEY_GROUPS: u32 = 128;

/// Why state could not be written, read or committed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend failed (a file, a connection).
    #[error("state backend: {0}")]
    Backend(String),
    /// A value did not serialise or deserialise.
    #[error("state encoding: {0}")]
    Encoding(String),
    /// A spout's parallelism differs from the one its checkpointed positions were taken
    /// with: the run cannot resume from it.
    #[error(
        "checkpoint {id} was taken with {was} tasks of spout `{component}`, which has {now} now: \
         a spout resumes with the parallelism it was checkpointed with (each task's \
         position belongs to its index)"
    )]
    SpoutRescaled {
        /// The checkpoint.
        id: u64,
        /// The spout.
        component: String,
        /// Its task count in the checkpoint.
        was: usize,
        /// Its task count now.
        now: usize,
    },
    /// A checkpoint failed its checksums.
    #[error("checkpoint {id} is corrupt: {what}")]
    Corrupt {
        /// The checkpoint.
        id: u64,
        /// What did not match.
        what: String,
    },
}

/// The key group of a key whose fields grouping hash is `hash`.
#[inline]
pub fn key_group(hash: u64) -> u32 {
    (hash % u64::from(KEY_GROUPS)) as u32
}

/// The key group of the key made of `values` (the grouping fields' values, in the
/// grouping's order): the same hash as the fields grouping.
pub fn key_group_of<'a>(values: impl IntoIterator<Item = &'a Value>) -> u32 {
    let mut h = StableHasher::default();
    for v in values {
        v.stable_hash(&mut h);
    }
    key_group(h.finish())
}

/// The index (among `tasks`) of the task that owns key group `group`.
#[inline]
pub fn key_group_task(group: u32, tasks: usize) -> usize {
    (group as usize * tasks.max(1)) / KEY_GROUPS as usize
}

/// The key groups task `index` of `tasks` owns: those [`key_group_task`] maps to it.
pub fn key_group_range(index: usize, tasks: usize) -> Range<u32> {
    let tasks = tasks.max(1);
    let g = KEY_GROUPS as usize;
    let start = (index * g).div_ceil(tasks);
    let end = ((index + 1) * g).div_ceil(tasks);
    start.min(g) as u32..end.min(g) as u32
}

/// A key of keyed state: hashed like the fields grouping hashes the key's values.
pub trait StateKey {
    /// The key group of this key.
    fn key_group(&self) -> u32;
}

impl StateKey for Value {
    fn key_group(&self) -> u32 {
        key_group_of([self])
    }
}

impl StateKey for Vec<Value> {
    fn key_group(&self) -> u32 {
        key_group_of(self)
    }
}

impl StateKey for smol_str::SmolStr {
    fn key_group(&self) -> u32 {
        key_group_of([&Value::Str(self.clone())])
    }
}

impl StateKey for String {
    fn key_group(&self) -> u32 {
        key_group_of([&Value::from(self.as_str())])
    }
}

impl StateKey for i64 {
    fn key_group(&self) -> u32 {
        key_group_of([&Value::Int(*self)])
    }
}

fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StateError> {
    rmp_serde::to_vec(value).map_err(|e| StateError::Encoding(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StateError> {
    rmp_serde::from_slice(bytes).map_err(|e| StateError::Encoding(e.to_string()))
}

/// What one task writes into a checkpoint: keyed state by key group, its own state, and
/// (a spout) its position.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    /// Key group → the encoded entries of that group.
    pub(crate) keyed: BTreeMap<u32, Vec<u8>>,
    /// The task's own state.
    pub(crate) task: Option<Vec<u8>>,
    /// A spout's position.
    pub(crate) position: Option<Vec<u8>>,
}

impl TaskState {
    /// Writes keyed state: every `(key, value)`, grouped by the key's key group. Call it
    /// once per snapshot with every entry.
    pub fn put_map<'a, K, V>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a K, &'a V)>,
    ) -> Result<(), StateError>
    where
        K: StateKey + Serialize + 'a,
        V: Serialize + 'a,
    {
        let mut groups: BTreeMap<u32, Vec<(&K, &V)>> = BTreeMap::new();
        for (k, v) in entries {
            groups.entry(k.key_group()).or_default().push((k, v));
        }
        for (g, entries) in groups {
            self.keyed.insert(g, encode(&entries)?);
        }
        Ok(())
    }

    /// Writes the task's own (not keyed) state.
    pub fn put_task<T: Serialize>(&mut self, value: &T) -> Result<(), StateError> {
        self.task = Some(encode(value)?);
        Ok(())
    }

    /// Encoded size in bytes (what the checkpoint stores for this task).
    pub fn size(&self) -> usize {
        self.keyed.values().map(Vec::len).sum::<usize>()
            + self.task.as_ref().map_or(0, Vec::len)
            + self.position.as_ref().map_or(0, Vec::len)
    }

    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>, StateError> {
        encode(self)
    }

    pub(crate) fn from_bytes(bytes: &[u8]) -> Result<TaskState, StateError> {
        decode(bytes)
    }
}

/// A task's state as restored from a checkpoint: the key groups it owns now, and the
/// state the task with its index wrote.
#[derive(Debug, Clone, Default)]
pub struct TaskStateReader {
    keyed: BTreeMap<u32, Vec<u8>>,
    task: Option<Vec<u8>>,
    position: Option<Vec<u8>>,
    /// Every old task's own state, with the key groups that task owned.
    every: Vec<(Range<u32>, Vec<u8>)>,
}

impl TaskStateReader {
    /// The part of `state` a task owning `groups` reads (and `state`'s own task state).
    pub fn from_state(state: &TaskState, groups: Range<u32>) -> Self {
        let mut r = TaskStateReader {
            task: state.task.clone(),
            position: state.position.clone(),
            ..TaskStateReader::default()
        };
        r.add_groups(state, groups);
        r
    }

    /// What task `index` of `tasks` restores from `parts`, the parts every task of the
    /// component wrote (by old index, however many there were): the key groups it owns
    /// now, the own state of the old task with its index, and every old task's own state.
    pub fn rescaled(parts: &[&TaskState], index: usize, tasks: usize) -> Self {
        let mut r = match parts.get(index) {
            Some(s) => TaskStateReader::from_state(s, 0..0),
            None => TaskStateReader::default(),
        };
        let groups = key_group_range(index, tasks);
        for (old, s) in parts.iter().enumerate() {
            r.add_groups(s, groups.clone());
            if let Some(t) = &s.task {
                r.every.push((key_group_range(old, parts.len()), t.clone()));
            }
        }
        r
    }

    /// Adds the key groups in `groups` that `state` holds.
    pub(crate) fn add_groups(&mut self, state: &TaskState, groups: Range<u32>) {
        for (g, bytes) in state.keyed.range(groups) {
            self.keyed.insert(*g, bytes.clone());
        }
    }

    /// Every keyed entry of the key groups this task owns.
    pub fn map<K: DeserializeOwned, V: DeserializeOwned>(&self) -> Result<Vec<(K, V)>, StateError> {
        let mut all = Vec::new();
        for bytes in self.keyed.values() {
            all.extend(decode::<Vec<(K, V)>>(bytes)?);
        }
        Ok(all)
    }

    /// The task's own state, if it wrote any.
    pub fn task<T: DeserializeOwned>(&self) -> Result<Option<T>, StateError> {
        self.task.as_deref().map(decode).transpose()
    }

    /// The own state of every task of the component when the checkpoint was taken (that
    /// wrote one), each with the key groups that task owned then: on a rescaled resume,
    /// what the old owners of this task's keys knew. (A task restored from a
    /// checkpoint it wrote alone gets its own state and range.)
    pub fn every_task<T: DeserializeOwned>(&self) -> Result<Vec<(Range<u32>, T)>, StateError> {
        self.every
            .iter()
            .map(|(groups, bytes)| Ok((groups.clone(), decode(bytes)?)))
            .collect()
    }

    /// A spout's recorded position.
    pub fn position(&self) -> Option<&[u8]> {
        self.position.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_group_ranges_cover_every_group_once() {
        for tasks in [1usize, 2, 3, 4, 5, 7, 128, 200] {
            let mut next = 0;
            for i in 0..tasks {
                let r = key_group_range(i, tasks);
                assert_eq!(r.start, next.min(KEY_GROUPS), "tasks {tasks} i {i}");
                for g in r.clone() {
                    assert_eq!(key_group_task(g, tasks), i, "tasks {tasks} g {g}");
                }
                next = r.end.max(next);
            }
            assert_eq!(next, KEY_GROUPS, "tasks {tasks}");
        }
    }

    #[test]
    fn task_state_survives_a_rescale_from_two_tasks_to_three() {
        let keys: Vec<(Value, u64)> = (0..500).map(|i| (Value::Int(i), i as u64)).collect();
        let old: Vec<TaskState> = (0..2)
            .map(|i| {
                let r = key_group_range(i, 2);
                let mut s = TaskState::default();
                s.put_map(
                    keys.iter()
                        .filter(|(k, _)| r.contains(&k.key_group()))
                        .map(|(k, v)| (k, v)),
                )
                .expect("encode");
                s
            })
            .collect();
        let mut back: Vec<(Value, u64)> = Vec::new();
        for i in 0..3 {
            let mut r = TaskStateReader::default();
            for s in &old {
                r.add_groups(s, key_group_range(i, 3));
            }
            let got = r.map::<Value, u64>().expect("decode");
            assert!(got
                .iter()
                .all(|(k, _)| key_group_task(k.key_group(), 3) == i));
            back.extend(got);
        }
        back.sort_by_key(|(_, v)| *v);
        assert_eq!(back, keys);
    }
}
