//! Where checkpoints are kept: the [`Backend`] trait and its local-files implementation.
//!
//! A backend stores opaque blobs: each task's part of a checkpoint and each
//! checkpoint's manifest. Writing a manifest is the commit, and it is atomic: a reader
//! sees the whole manifest or none. Checksums and the choice of a checkpoint to restore
//! are [`super::store::CheckpointStore`]'s.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::StateError;

/// A store of checkpoint parts and manifests.
pub trait Backend: Send + Sync {
    /// Stores part `name` of checkpoint `id` (not yet committed).
    fn put_part(&self, id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError>;
    /// Reads part `name` of checkpoint `id`.
    fn get_part(&self, id: u64, name: &str) -> Result<Vec<u8>, StateError>;
    /// Commits checkpoint `id` by storing its manifest, atomically.
    fn put_manifest(&self, id: u64, bytes: &[u8]) -> Result<(), StateError>;
    /// The ids of every committed checkpoint (every stored manifest), in any order.
    fn committed(&self) -> Result<Vec<u64>, StateError>;
    /// Reads the manifest of checkpoint `id`.
    fn get_manifest(&self, id: u64) -> Result<Vec<u8>, StateError>;
    /// Removes checkpoint `id`, committed or not.
    fn remove(&self, id: u64) -> Result<(), StateError>;
}

/// Checkpoints as files: `DIR/chk-N/` holds one file per part and, once committed,
/// `MANIFEST`. Every file is written to a temporary name, synced, then renamed, and the
/// folder synced, so a crash leaves a whole file or none.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    dir: PathBuf,
}

const MANIFEST: &str = "MANIFEST";

fn io(what: &str, path: &Path, e: std::io::Error) -> StateError {
    StateError::Backend(format!("{what} `{}`: {e}", path.display()))
}

impl LocalBackend {
    /// A backend under `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StateError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        Ok(LocalBackend { dir })
    }

    /// The folder of checkpoint `id`.
    pub fn checkpoint_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("chk-{id}"))
    }

    fn write_atomic(&self, id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let dir = self.checkpoint_dir(id);
        fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        let path = dir.join(name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = fs::File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        f.write_all(bytes)
            .map_err(|e| io("cannot write", &tmp, e))?;
        f.sync_all().map_err(|e| io("cannot sync", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io("cannot rename", &tmp, e))?;
        fs::File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync", &dir, e))
    }
}

impl Backend for LocalBackend {
    fn put_part(&self, id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        self.write_atomic(id, name, bytes)
    }

    fn get_part(&self, id: u64, name: &str) -> Result<Vec<u8>, StateError> {
        let path = self.checkpoint_dir(id).join(name);
        fs::read(&path).map_err(|e| io("cannot read", &path, e))
    }

    fn put_manifest(&self, id: u64, bytes: &[u8]) -> Result<(), StateError> {
        self.write_atomic(id, MANIFEST, bytes)
    }

    fn committed(&self) -> Result<Vec<u64>, StateError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io("cannot list", &self.dir, e))?;
        let mut ids = Vec::new();
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(id) = name
                .to_str()
                .and_then(|n| n.strip_prefix("chk-"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if e.path().join(MANIFEST).is_file() {
                ids.push(id);
            }
        }
        Ok(ids)
    }

    fn get_manifest(&self, id: u64) -> Result<Vec<u8>, StateError> {
        let path = self.checkpoint_dir(id).join(MANIFEST);
        fs::read(&path).map_err(|e| io("cannot read", &path, e))
    }

    fn remove(&self, id: u64) -> Result<(), StateError> {
        let dir = self.checkpoint_dir(id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("cannot remove", &dir, e)),
        }
    }
}
