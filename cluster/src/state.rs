//! Crash-safe JSON state files: a reader sees the old file or the new one, never a torn one.
//!
//! [`save_atomic`] writes `PATH.tmp`, fsyncs it, renames it over `PATH` and fsyncs the
//! directory, so after a crash at any point `PATH` holds either the previous complete
//! state or the new one; a leftover `PATH.tmp` is garbage that [`load`] never reads and the
//! next save overwrites. JSON (pretty-printed) so an operator can read and diff it.
//!
//! One writer per path: the daemons save from one task.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A state file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Writing, syncing or renaming failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the JSON expected (edited by hand, or another version's).
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The value cannot be represented as JSON (a map with non-string keys, say).
    #[error("cannot encode the state for {path}: {source}")]
    Encode {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
}

/// The temporary file [`save_atomic`] writes before the rename: `PATH.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Writes `value` as JSON to `path` so that a crash leaves the old file or the new one.
///
/// Blocking; async code calls it from `spawn_blocking` or accepts a short stall.
pub fn save_atomic<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), StateError> {
    let mut json = serde_json::to_vec_pretty(value).map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    json.push(b'\n');
    let tmp = tmp_path(path);
    let write_err = |source| StateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(write_err)?;
    file.write_all(&json).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(write_err)?;
    sync_dir(path).map_err(write_err)
}

/// [`save_atomic`], after copying the current `path` (if any) to `prev` the same crash-safe
/// way: `prev` always holds a complete earlier state, the one before this save.
pub fn save_keeping_previous<T: Serialize + ?Sized>(
    path: &Path,
    prev: &Path,
    value: &T,
) -> Result<(), StateError> {
    if path.exists() {
        let prev_tmp = tmp_path(prev);
        let write_err = |source| StateError::Write {
            path: prev.to_path_buf(),
            source,
        };
        std::fs::copy(path, &prev_tmp).map_err(write_err)?;
        File::open(&prev_tmp)
            .and_then(|f| f.sync_all())
            .map_err(write_err)?;
        std::fs::rename(&prev_tmp, prev).map_err(write_err)?;
    }
    save_atomic(path, value)
}

/// Reads the JSON at `path`; `Ok(None)` when there is no file (a first start).
pub fn load<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StateError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Parse {
            path: path.to_path_buf(),
            source,
        })
}

/// Fsyncs the directory holding `path`, so the rename itself is durable.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct State {
        version: u32,
        topologies: BTreeMap<String, String>,
    }

    fn state(version: u32) -> State {
        State {
            version,
            topologies: BTreeMap::from([("wc-1".to_string(), "active".to_string())]),
        }
    }

    #[test]
    fn a_missing_file_loads_as_none() {
        let dir = tempfile::tempdir().expect("dir");
        let got: Option<State> = load(&dir.path().join("state.json")).expect("load");
        assert_eq!(got, None);
    }

    #[test]
    fn a_save_replaces_the_old_state_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state.json");
        save_atomic(&path, &state(1)).expect("save 1");
        save_atomic(&path, &state(2)).expect("save 2");
        assert_eq!(load::<State>(&path).expect("load"), Some(state(2)));
        assert!(!tmp_path(&path).exists());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            text.contains("\"version\": 2"),
            "operator-readable JSON: {text}"
        );
    }

    #[test]
    fn a_leftover_tmp_from_a_crash_is_ignored_and_then_overwritten() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state.json");
        save_atomic(&path, &state(1)).expect("save");
        // A crash after writing half of the next state, before the rename.
        std::fs::write(tmp_path(&path), b"{\"version\": 2, \"topol").expect("torn tmp");
        assert_eq!(load::<State>(&path).expect("load"), Some(state(1)));
        save_atomic(&path, &state(3)).expect("save over the leftover");
        assert_eq!(load::<State>(&path).expect("load"), Some(state(3)));
        assert!(!tmp_path(&path).exists());
        // A crash before the first save ever finished: no state yet.
        let fresh = dir.path().join("fresh.json");
        std::fs::write(tmp_path(&fresh), b"{").expect("torn tmp");
        assert_eq!(load::<State>(&fresh).expect("load"), None);
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"version\": ").expect("write");
        let err = load::<State>(&path).expect_err("corrupt");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot parse {}: ", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_save_into_a_missing_directory_names_the_file() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("nope").join("state.json");
        let err = save_atomic(&path, &state(1)).expect_err("no dir");
        assert!(
            err.to_string()
                .starts_with(&format!("cannot write {}: ", path.display())),
            "{err}"
        );
    }
}
