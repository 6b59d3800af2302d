//! Checkpoints over a [`Backend`]: parts with checksums, atomic manifests, and the
//! choice of the newest checkpoint whose every checksum holds.
//!
//! A manifest is JSON followed by a line `sha256 HEX` of the JSON, and lists each part
//! with its length and SHA-256. A checkpoint whose manifest or any part does not match
//! is skipped (and logged): the previous committed one is restored instead.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use topo_dsl::{Kind, Topology};

use super::backend::Backend;
use super::{StateError, TaskState, TaskStateReader};

/// Failed checkpoints a commit removes at most (those just before it).
const MAX_SWEPT: u64 = 64;

/// Committed checkpoints kept besides the newest one (older ones are removed).
const KEEP: usize = 2;

/// One task's part of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEntry {
    /// The component.
    pub component: String,
    /// The task's index among the component's tasks.
    pub task: usize,
    /// The component's task count when the part was written.
    pub tasks: usize,
    /// Length of the part in bytes.
    pub bytes: u64,
    /// SHA-256 of the part, lowercase hex.
    pub sha256: String,
}

impl PartEntry {
    fn name(&self) -> String {
        format!("{}.{}", self.component, self.task)
    }
}

/// What a committed checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The checkpoint's id (increasing over a topology's life).
    pub id: u64,
    /// The topology's name.
    pub topology: String,
    /// Every task's part.
    pub parts: Vec<PartEntry>,
}

impl Manifest {
    /// Total bytes of the checkpoint's parts.
    pub fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }
}

/// A checkpoint read back, every checksum checked.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Its manifest.
    pub manifest: Manifest,
    parts: BTreeMap<(String, usize), TaskState>,
}

impl Restored {
    /// The state task `index` of `tasks` of `component` restores
    /// ([`TaskStateReader::rescaled`]).
    pub fn reader(&self, component: &str, index: usize, tasks: usize) -> TaskStateReader {
        let parts: Vec<&TaskState> = self
            .parts
            .range((component.to_string(), 0)..)
            .take_while(|((c, _), _)| c == component)
            .map(|(_, s)| s)
            .collect();
        TaskStateReader::rescaled(&parts, index, tasks)
    }

    /// Checks that every spout of `topology` has the task count it had in this checkpoint,
    /// as a resume needs: a spout task's position belongs to its index.
    pub fn check_spouts(&self, topology: &Topology) -> Result<(), StateError> {
        for c in topology.components() {
            if c.kind != Kind::Spout {
                continue;
            }
            match self.tasks_of(&c.id) {
                Some(was) if was != c.parallelism => {
                    return Err(StateError::SpoutRescaled {
                        id: self.manifest.id,
                        component: c.id.clone(),
                        was,
                        now: c.parallelism,
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The task count `component` had when the checkpoint was written.
    pub fn tasks_of(&self, component: &str) -> Option<usize> {
        self.manifest
            .parts
            .iter()
            .find(|p| p.component == component)
            .map(|p| p.tasks)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Checkpoints of one topology.
#[derive(Clone)]
pub struct CheckpointStore {
    backend: Arc<dyn Backend>,
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckpointStore")
    }
}

impl CheckpointStore {
    /// A store over `backend`.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        CheckpointStore { backend }
    }

    /// Writes task `task` of `tasks` of `component`'s part of checkpoint `id`.
    pub fn write_part(
        &self,
        id: u64,
        component: &str,
        task: usize,
        tasks: usize,
        state: &TaskState,
    ) -> Result<PartEntry, StateError> {
        let bytes = state.to_bytes()?;
        let entry = PartEntry {
            component: component.to_string(),
            task,
            tasks,
            bytes: bytes.len() as u64,
            sha256: sha256(&bytes),
        };
        self.backend.put_part(id, &entry.name(), &bytes)?;
        Ok(entry)
    }

    /// Commits `manifest` (every part is written), then removes checkpoints older than
    /// the last few.
    pub fn commit(&self, manifest: &Manifest) -> Result<(), StateError> {
        let body =
            serde_json::to_string(manifest).map_err(|e| StateError::Encoding(e.to_string()))?;
        let text = format!("{body}\nsha256 {}\n", sha256(body.as_bytes()));
        self.backend.put_manifest(manifest.id, text.as_bytes())?;
        let mut ids = self.backend.committed()?;
        ids.sort_unstable();
        // The failed checkpoints since the previous commit: a task may have written its
        // part after the failure removed the others (a late or declined part).
        let previous = ids.iter().rev().find(|&&id| id < manifest.id).copied();
        let first_failed = previous
            .map_or(1, |p| p + 1)
            .max(manifest.id.saturating_sub(MAX_SWEPT));
        for failed in first_failed..manifest.id {
            self.backend.remove(failed)?;
        }
        for &old in ids.iter().rev().skip(KEEP + 1) {
            self.backend.remove(old)?;
        }
        Ok(())
    }

    /// The id of the newest committed checkpoint, verified or not.
    pub fn newest_id(&self) -> Result<Option<u64>, StateError> {
        Ok(self.backend.committed()?.into_iter().max())
    }

    /// Removes a checkpoint that will not commit (it failed or timed out).
    pub fn abort(&self, id: u64) -> Result<(), StateError> {
        self.backend.remove(id)
    }

    /// The newest committed checkpoint whose manifest and parts all match their checksums;
    /// `None` when there is none. Corrupt ones are logged and skipped.
    pub fn latest(&self) -> Result<Option<Restored>, StateError> {
        let mut ids = self.backend.committed()?;
        ids.sort_unstable();
        for &id in ids.iter().rev() {
            match self.read(id) {
                Ok(r) => return Ok(Some(r)),
                Err(e) => {
                    tracing::warn!(checkpoint = id, error = %e, "Skipped a checkpoint that does not verify.");
                }
            }
        }
        Ok(None)
    }

    /// Reads and verifies checkpoint `id`.
    pub fn read(&self, id: u64) -> Result<Restored, StateError> {
        let corrupt = |what: String| StateError::Corrupt { id, what };
        let text = self.backend.get_manifest(id)?;
        let text = String::from_utf8(text).map_err(|_| corrupt("manifest is not text".into()))?;
        let (body, sum) = text
            .trim_end()
            .rsplit_once("\nsha256 ")
            .ok_or_else(|| corrupt("manifest has no checksum".into()))?;
        if sha256(body.as_bytes()) != sum {
            return Err(corrupt("manifest checksum does not match".into()));
        }
        let manifest: Manifest =
            serde_json::from_str(body).map_err(|e| corrupt(format!("manifest: {e}")))?;
        if manifest.id != id {
            return Err(corrupt(format!(
                "manifest names checkpoint {}",
                manifest.id
            )));
        }
        let mut parts = BTreeMap::new();
        for p in &manifest.parts {
            let bytes = self.backend.get_part(id, &p.name())?;
            if bytes.len() as u64 != p.bytes || sha256(&bytes) != p.sha256 {
                return Err(corrupt(format!(
                    "part `{}` checksum does not match",
                    p.name()
                )));
            }
            let state = TaskState::from_bytes(&bytes)
                .map_err(|e| corrupt(format!("part `{}`: {e}", p.name())))?;
            parts.insert((p.component.clone(), p.task), state);
        }
        Ok(Restored { manifest, parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LocalBackend;
    use crate::value::Value;

    fn checkpoint(store: &CheckpointStore, id: u64, n: u64) -> Manifest {
        let mut s = TaskState::default();
        let counts = [(Value::from("ka"), n)];
        s.put_map(counts.iter().map(|(k, v)| (k, v)))
            .expect("encode");
        let part = store.write_part(id, "count", 0, 1, &s).expect("part");
        let m = Manifest {
            id,
            topology: "t".into(),
            parts: vec![part],
        };
        store.commit(&m).expect("commit");
        m
    }

    fn count(r: &Restored) -> u64 {
        r.reader("count", 0, 1).map::<Value, u64>().expect("decode")[0].1
    }

    #[test]
    fn a_flipped_byte_is_detected_and_the_previous_checkpoint_is_used() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = LocalBackend::open(dir.path()).expect("open");
        let store = CheckpointStore::new(Arc::new(backend.clone()));
        checkpoint(&store, 1, 10);
        checkpoint(&store, 2, 20);
        assert_eq!(count(&store.latest().expect("read").expect("some")), 20);

        let part = backend.checkpoint_dir(2).join("count.0");
        let mut bytes = std::fs::read(&part).expect("read part");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        std::fs::write(&part, bytes).expect("write part");
        let err = store.read(2).expect_err("corrupt");
        assert_eq!(
            err.to_string(),
            "checkpoint 2 is corrupt: part `count.0` checksum does not match"
        );
        let r = store.latest().expect("read").expect("some");
        assert_eq!((r.manifest.id, count(&r)), (1, 10));
    }

    #[test]
    fn an_uncommitted_checkpoint_is_never_restored_and_old_ones_are_removed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = LocalBackend::open(dir.path()).expect("open");
        let store = CheckpointStore::new(Arc::new(backend.clone()));
        for id in 1..=5 {
            checkpoint(&store, id, id * 10);
        }
        store
            .write_part(6, "count", 0, 1, &TaskState::default())
            .expect("part");
        let mut ids = backend.committed().expect("list");
        ids.sort_unstable();
        assert_eq!(ids, [3, 4, 5]);
        assert_eq!(store.latest().expect("read").expect("some").manifest.id, 5);
    }

    #[test]
    fn a_part_written_after_its_checkpoint_failed_goes_with_the_next_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let backend = LocalBackend::open(dir.path()).expect("open");
        let store = CheckpointStore::new(Arc::new(backend.clone()));
        checkpoint(&store, 1, 10);
        store.abort(2).expect("fail 2");
        // A task that was late writes its part of the failed checkpoint 2.
        store
            .write_part(2, "count", 0, 1, &TaskState::default())
            .expect("late part");
        assert!(backend.checkpoint_dir(2).exists());
        checkpoint(&store, 3, 30);
        assert!(!backend.checkpoint_dir(2).exists(), "the late part stays");
        assert!(backend.checkpoint_dir(1).exists() && backend.checkpoint_dir(3).exists());
    }
}
