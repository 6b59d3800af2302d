//! The content-addressed artifact store: executables and topology files named by SHA-256.
//!
//! ```text
//! DIR/
//!   artifacts/<64 hex>            complete, verified, mode 0755
//!   artifacts/<64 hex>.part-N-M   an upload in progress (removed on failure and at open)
//!   transfers.json                {"fetched": 2, "bytes_fetched": 8123456}
//! ```
//!
//! An upload is written to a `.part` file while its hash is computed; [`Upload::finish`]
//! compares the hash with the announced one and only then fsyncs, marks the file
//! executable and renames it into place. So a name in the store always holds the bytes
//! that hash to it, unless someone changed the file afterwards — which is why
//! [`ArtifactStore::verified_path`] hashes it again right before it is run.
//!
//! Everything here is blocking file I/O; async code calls it from `spawn_blocking`.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::state::{self, StateError};

/// Bytes per chunk of an artifact transfer: 1 MiB.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Hex digits shown of a hash in messages.
const SHORT: usize = 12;

/// A SHA-256 hash as 64 lowercase hex digits; parsing checks the form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    /// The hex form of a digest.
    pub fn from_digest(digest: &[u8; 32]) -> Sha256Hex {
        let mut s = String::with_capacity(64);
        for b in digest {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        Sha256Hex(s)
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256Hex {
        Sha256Hex::from_digest(&Sha256::digest(bytes).into())
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 digits and an ellipsis, for messages.
    pub fn short(&self) -> String {
        format!("{}…", &self.0[..SHORT])
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Sha256Hex {
    type Err = ArtifactError;

    fn from_str(s: &str) -> Result<Sha256Hex, ArtifactError> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Sha256Hex(s.to_string()))
        } else {
            Err(ArtifactError::BadHash(s.chars().take(80).collect()))
        }
    }
}

impl TryFrom<String> for Sha256Hex {
    type Error = ArtifactError;

    fn try_from(s: String) -> Result<Sha256Hex, ArtifactError> {
        s.parse()
    }
}

impl From<Sha256Hex> for String {
    fn from(h: Sha256Hex) -> String {
        h.0
    }
}

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Not 64 lowercase hex digits.
    #[error("not a SHA-256 hash: {0:?} (expected 64 lowercase hex digits)")]
    BadHash(String),
    /// The store has no artifact with this hash.
    #[error("artifact {0} is not in the store")]
    NotFound(Sha256Hex),
    /// More bytes arrived than the upload announced.
    #[error("artifact {}: upload exceeds its announced {len} bytes; discarded", hash.short())]
    TooLong {
        /// The announced hash.
        hash: Sha256Hex,
        /// The announced length.
        len: u64,
    },
    /// The upload ended early.
    #[error("artifact {}: upload ended after {got} of {len} bytes; discarded", hash.short())]
    TooShort {
        /// The announced hash.
        hash: Sha256Hex,
        /// The announced length.
        len: u64,
        /// The bytes received.
        got: u64,
    },
    /// The uploaded bytes are not the announced artifact.
    #[error("artifact {}: uploaded bytes hash to {}; discarded", expected.short(), actual.short())]
    Mismatch {
        /// The announced hash.
        expected: Sha256Hex,
        /// The hash of what arrived.
        actual: Sha256Hex,
    },
    /// The stored file changed since it was verified.
    #[error("artifact {}: stored file hashes to {}; refusing to run it", expected.short(), actual.short())]
    Tampered {
        /// Its name.
        expected: Sha256Hex,
        /// What it hashes to now.
        actual: Sha256Hex,
    },
    /// The stored name is not a regular file (a symlink, say).
    #[error("artifact {}: {} is not a regular file; refusing to run it", .0.short(), .1.display())]
    NotRegular(Sha256Hex, PathBuf),
    /// A file operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done: `cannot read`, `cannot write`, ...
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The transfer counters could not be saved or loaded.
    #[error(transparent)]
    State(#[from] StateError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ArtifactError + 'a {
    move |source| ArtifactError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Artifacts received, persisted in `transfers.json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfers {
    /// Uploads completed and verified.
    pub fetched: u64,
    /// Their bytes.
    pub bytes_fetched: u64,
}

#[derive(Debug)]
struct Counters {
    path: PathBuf,
    value: Mutex<Transfers>,
}

impl Counters {
    fn add(&self, bytes: u64) -> Result<(), ArtifactError> {
        let mut value = self.value.lock().unwrap_or_else(|e| e.into_inner());
        let next = Transfers {
            fetched: value.fetched + 1,
            bytes_fetched: value.bytes_fetched + bytes,
        };
        state::save_atomic(&self.path, &next)?;
        *value = next;
        Ok(())
    }

    fn get(&self) -> Transfers {
        *self.value.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The store under `DIR/artifacts/`.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    dir: PathBuf,
    counters: Arc<Counters>,
}

/// Tells concurrent uploads of one hash apart.
static UPLOADS: AtomicU64 = AtomicU64::new(0);

impl ArtifactStore {
    /// Opens (creating) the store under `dir`; removes partial uploads a crash left.
    /// Every path it returns is absolute, even when `dir` is relative.
    pub fn open(dir: &Path) -> Result<ArtifactStore, ArtifactError> {
        ArtifactStore::open_in(dir, "artifacts", "transfers.json")
    }

    /// Opens (creating) a store in `dir/folder`, counting its transfers in
    /// `dir/counters`: the resource archives live in `archives/` and count in
    /// `archive-transfers.json`, apart from the binaries.
    pub fn open_in(
        dir: &Path,
        folder: &str,
        counters: &str,
    ) -> Result<ArtifactStore, ArtifactError> {
        let artifacts = dir.join(folder);
        std::fs::create_dir_all(&artifacts).map_err(io("cannot create", &artifacts))?;
        // Absolute, so a returned path still names the file from a worker's own folder.
        let artifacts =
            std::fs::canonicalize(&artifacts).map_err(io("cannot resolve", &artifacts))?;
        let entries = std::fs::read_dir(&artifacts).map_err(io("cannot read", &artifacts))?;
        for entry in entries {
            let entry = entry.map_err(io("cannot read", &artifacts))?;
            if entry.file_name().to_string_lossy().contains(".part-") {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
            }
        }
        let path = dir.join(counters);
        let value = state::load(&path)?.unwrap_or_default();
        Ok(ArtifactStore {
            dir: artifacts,
            counters: Arc::new(Counters {
                path,
                value: Mutex::new(value),
            }),
        })
    }

    /// Where the artifact `hash` is (or would be) stored.
    pub fn path(&self, hash: &Sha256Hex) -> PathBuf {
        self.dir.join(hash.as_str())
    }

    /// True when the store has `hash` (not re-verified; see [`verified_path`](Self::verified_path)).
    pub fn contains(&self, hash: &Sha256Hex) -> bool {
        self.path(hash).is_file()
    }

    /// Starts receiving the artifact `hash` of `len` bytes.
    pub fn begin(&self, hash: &Sha256Hex, len: u64) -> Result<Upload, ArtifactError> {
        let n = UPLOADS.fetch_add(1, Ordering::Relaxed);
        let part = self
            .dir
            .join(format!("{hash}.part-{}-{n}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .map_err(io("cannot create", &part))?;
        Ok(Upload {
            hash: hash.clone(),
            len,
            written: 0,
            hasher: Sha256::new(),
            file: Some(file),
            part,
            dest: self.path(hash),
            counters: self.counters.clone(),
        })
    }

    /// Stores `bytes` as an artifact (small artifacts, tests); returns its hash.
    pub fn insert(&self, bytes: &[u8]) -> Result<Sha256Hex, ArtifactError> {
        let hash = Sha256Hex::of(bytes);
        let mut upload = self.begin(&hash, bytes.len() as u64)?;
        for chunk in bytes.chunks(CHUNK_SIZE) {
            upload.write(chunk)?;
        }
        upload.finish()?;
        Ok(hash)
    }

    /// The path of `hash` after hashing the stored file again: call it right before the
    /// file is executed or served, so a file changed on disk is refused, not run.
    pub fn verified_path(&self, hash: &Sha256Hex) -> Result<PathBuf, ArtifactError> {
        let path = self.path(hash);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(hash.clone()))
            }
            Err(source) => {
                return Err(ArtifactError::Io {
                    what: "cannot read",
                    path,
                    source,
                })
            }
        };
        if !meta.is_file() {
            return Err(ArtifactError::NotRegular(hash.clone(), path));
        }
        let actual = file_hash(&path)?;
        if &actual != hash {
            return Err(ArtifactError::Tampered {
                expected: hash.clone(),
                actual,
            });
        }
        Ok(path)
    }

    /// Up to `max` bytes of the stored artifact `hash` from `offset` (for serving chunks).
    pub fn read_chunk(
        &self,
        hash: &Sha256Hex,
        offset: u64,
        max: usize,
    ) -> Result<Vec<u8>, ArtifactError> {
        let path = self.path(hash);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::NotFound(hash.clone()))
            }
            Err(source) => {
                return Err(ArtifactError::Io {
                    what: "cannot read",
                    path,
                    source,
                })
            }
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(io("cannot read", &path))?;
        let mut buf = Vec::with_capacity(max.min(CHUNK_SIZE));
        file.take(max as u64)
            .read_to_end(&mut buf)
            .map_err(io("cannot read", &path))?;
        Ok(buf)
    }

    /// Removes every stored artifact that is not in `keep`, except the `newest` most
    /// recently stored of them; returns what it removed. For archives, whose topologies
    /// come and go (a binary is kept: it is what runs).
    pub fn collect_garbage(
        &self,
        keep: &std::collections::HashSet<Sha256Hex>,
        newest: usize,
    ) -> Vec<Sha256Hex> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut unused: Vec<(std::time::SystemTime, Sha256Hex)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let hash = e.file_name().to_str()?.parse::<Sha256Hex>().ok()?;
                let modified = e.metadata().ok()?.modified().ok()?;
                (!keep.contains(&hash)).then_some((modified, hash))
            })
            .collect();
        unused.sort();
        let drop = unused.len().saturating_sub(newest);
        unused
            .into_iter()
            .take(drop)
            .filter_map(|(_, hash)| std::fs::remove_file(self.path(&hash)).ok().map(|()| hash))
            .collect()
    }

    /// Uploads completed since the store was first created.
    pub fn fetched(&self) -> u64 {
        self.counters.get().fetched
    }

    /// Their bytes.
    pub fn bytes_fetched(&self) -> u64 {
        self.counters.get().bytes_fetched
    }

    /// Both counters.
    pub fn transfers(&self) -> Transfers {
        self.counters.get()
    }
}

/// An artifact being received in chunks. Dropped unfinished, it leaves nothing behind.
#[derive(Debug)]
pub struct Upload {
    hash: Sha256Hex,
    len: u64,
    written: u64,
    hasher: Sha256,
    file: Option<File>,
    part: PathBuf,
    dest: PathBuf,
    counters: Arc<Counters>,
}

impl Upload {
    /// The announced hash.
    pub fn hash(&self) -> &Sha256Hex {
        &self.hash
    }

    /// Bytes received so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends the next chunk. More bytes than announced fail the upload.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ArtifactError> {
        let end = self.written + chunk.len() as u64;
        if end > self.len {
            return Err(ArtifactError::TooLong {
                hash: self.hash.clone(),
                len: self.len,
            });
        }
        let Some(file) = self.file.as_mut() else {
            return Err(ArtifactError::TooLong {
                hash: self.hash.clone(),
                len: self.len,
            });
        };
        file.write_all(chunk)
            .map_err(io("cannot write", &self.part))?;
        self.hasher.update(chunk);
        self.written = end;
        Ok(())
    }

    /// Verifies length and hash, then makes the artifact appear under its name (fsynced,
    /// mode 0755) and counts the transfer. On any failure the partial file is removed.
    pub fn finish(mut self) -> Result<PathBuf, ArtifactError> {
        if self.written != self.len {
            return Err(ArtifactError::TooShort {
                hash: self.hash.clone(),
                len: self.len,
                got: self.written,
            });
        }
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        let actual = Sha256Hex::from_digest(&digest);
        if actual != self.hash {
            return Err(ArtifactError::Mismatch {
                expected: self.hash.clone(),
                actual,
            });
        }
        let Some(file) = self.file.take() else {
            return Err(ArtifactError::NotFound(self.hash.clone()));
        };
        file.sync_all().map_err(io("cannot write", &self.part))?;
        set_executable(&file).map_err(io("cannot chmod", &self.part))?;
        drop(file);
        std::fs::rename(&self.part, &self.dest).map_err(io("cannot rename", &self.part))?;
        state::sync_dir(&self.dest).map_err(io("cannot sync", &self.dest))?;
        self.counters.add(self.len)?;
        Ok(self.dest.clone())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // After a successful finish the part file was renamed away; otherwise discard it.
        let _ = std::fs::remove_file(&self.part);
    }
}

#[cfg(unix)]
fn set_executable(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn set_executable(_file: &File) -> std::io::Result<()> {
    Ok(())
}

/// The SHA-256 of a file, read in [`CHUNK_SIZE`] pieces.
pub fn file_hash(path: &Path) -> Result<Sha256Hex, ArtifactError> {
    let mut file = File::open(path).map_err(io("cannot read", path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let n = file.read(&mut buf).map_err(io("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(Sha256Hex::from_digest(&hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    fn names(store: &ArtifactStore) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&store.dir)
            .expect("read dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn hashes_are_64_lowercase_hex_digits() {
        let empty = Sha256Hex::of(b"");
        assert_eq!(
            empty.as_str(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(empty.short(), "e3b0c44298fc…");
        assert_eq!(empty.as_str().parse::<Sha256Hex>().expect("parse"), empty);
        for bad in [
            "",
            "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "../etc/passwd",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<Sha256Hex>().is_err(), "{bad:?}");
        }
        let err = "xyz".parse::<Sha256Hex>().expect_err("bad");
        assert_eq!(
            err.to_string(),
            "not a SHA-256 hash: \"xyz\" (expected 64 lowercase hex digits)"
        );
        // Deserializing validates too, so a peer cannot name a path.
        let json = serde_json::to_string(&empty).expect("json");
        assert_eq!(
            serde_json::from_str::<Sha256Hex>(&json).expect("back"),
            empty
        );
        assert!(serde_json::from_str::<Sha256Hex>("\"../../bin/sh\"").is_err());
    }

    #[test]
    fn an_upload_in_chunks_verifies_and_appears_at_once() {
        let dir = tempfile::tempdir().expect("dir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let bytes = blob(2 * CHUNK_SIZE + 123);
        let hash = Sha256Hex::of(&bytes);
        let mut upload = store.begin(&hash, bytes.len() as u64).expect("begin");
        for chunk in bytes.chunks(CHUNK_SIZE) {
            upload.write(chunk).expect("chunk");
            // Nothing under its name until finish.
            assert!(!store.contains(&hash));
        }
        assert_eq!(upload.written(), bytes.len() as u64);
        let path = upload.finish().expect("finish");
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(path, canonical.join("artifacts").join(hash.as_str()));
        assert!(store.contains(&hash));
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
        assert_eq!(store.verified_path(&hash).expect("verified"), path);
        assert_eq!(file_hash(&path).expect("hash"), hash);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o755);
        }
        assert_eq!(names(&store), vec![hash.to_string()]);
        assert_eq!(store.fetched(), 1);
        assert_eq!(store.bytes_fetched(), bytes.len() as u64);
        assert_eq!(
            store
                .read_chunk(&hash, CHUNK_SIZE as u64 * 2, CHUNK_SIZE)
                .expect("chunk"),
            bytes[2 * CHUNK_SIZE..].to_vec()
        );
    }

    #[test]
    fn paths_are_absolute_even_from_a_roundabout_dir() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let roundabout = dir.path().join("sub").join("..").join("store");
        let store = ArtifactStore::open(&roundabout).expect("open");
        let hash = store.insert(b"x").expect("insert");
        let path = store.verified_path(&hash).expect("verified");
        let expected = std::fs::canonicalize(dir.path())
            .expect("canonical")
            .join("store/artifacts")
            .join(hash.as_str());
        assert_eq!(path, expected);
        assert!(path.is_absolute());
    }

    #[test]
    fn a_wrong_hash_never_appears_under_its_name() {
        let dir = tempfile::tempdir().expect("dir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let claimed = Sha256Hex::of(b"the real binary");
        let mut upload = store.begin(&claimed, 15).expect("begin");
        upload.write(b"a fake binary!!").expect("write");
        let err = upload.finish().expect_err("mismatch");
        let actual = Sha256Hex::of(b"a fake binary!!");
        assert_eq!(
            err.to_string(),
            format!(
                "artifact {}: uploaded bytes hash to {}; discarded",
                claimed.short(),
                actual.short()
            )
        );
        assert!(!store.contains(&claimed));
        assert!(names(&store).is_empty(), "{:?}", names(&store));
        assert_eq!(store.fetched(), 0);
    }

    #[test]
    fn too_many_or_too_few_bytes_fail_and_an_abandoned_upload_leaves_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let hash = Sha256Hex::of(b"abc");
        let mut long = store.begin(&hash, 3).expect("begin");
        long.write(b"ab").expect("write");
        let err = long.write(b"cd").expect_err("too long");
        assert_eq!(
            err.to_string(),
            format!(
                "artifact {}: upload exceeds its announced 3 bytes; discarded",
                hash.short()
            )
        );
        drop(long);
        let mut short = store.begin(&hash, 3).expect("begin");
        short.write(b"ab").expect("write");
        let err = short.finish().expect_err("too short");
        assert_eq!(
            err.to_string(),
            format!(
                "artifact {}: upload ended after 2 of 3 bytes; discarded",
                hash.short()
            )
        );
        let mut abandoned = store.begin(&hash, 3).expect("begin");
        abandoned.write(b"a").expect("write");
        drop(abandoned);
        assert!(names(&store).is_empty(), "{:?}", names(&store));
    }

    #[test]
    fn a_tampered_stored_file_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let hash = store.insert(b"#!/bin/sh\necho good\n").expect("insert");
        let path = store.verified_path(&hash).expect("intact");
        std::fs::write(&path, b"#!/bin/sh\necho evil\n").expect("tamper");
        let actual = Sha256Hex::of(b"#!/bin/sh\necho evil\n");
        let err = store.verified_path(&hash).expect_err("tampered");
        assert_eq!(
            err.to_string(),
            format!(
                "artifact {}: stored file hashes to {}; refusing to run it",
                hash.short(),
                actual.short()
            )
        );
        let missing = Sha256Hex::of(b"never stored");
        assert_eq!(
            store
                .verified_path(&missing)
                .expect_err("missing")
                .to_string(),
            format!("artifact {missing} is not in the store")
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_in_the_store_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let store = ArtifactStore::open(dir.path()).expect("open");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, b"x").expect("write");
        let hash = Sha256Hex::of(b"x");
        std::os::unix::fs::symlink(&target, store.path(&hash)).expect("symlink");
        let err = store.verified_path(&hash).expect_err("symlink");
        assert!(
            err.to_string()
                .ends_with("is not a regular file; refusing to run it"),
            "{err}"
        );
    }

    #[test]
    fn garbage_collection_keeps_what_is_used_and_the_newest_unused() {
        let dir = tempfile::tempdir().expect("dir");
        let store =
            ArtifactStore::open_in(dir.path(), "archives", "archive-transfers.json").expect("open");
        let hashes: Vec<Sha256Hex> = (0..5u8)
            .map(|i| {
                let h = store.insert(&[i]).expect("insert");
                // Stored one after the other: distinct times, oldest first.
                let t = std::time::SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_secs(u64::from(i) + 1);
                let f = File::options()
                    .append(true)
                    .open(store.path(&h))
                    .expect("open");
                f.set_modified(t).expect("set time");
                h
            })
            .collect();
        let keep: std::collections::HashSet<Sha256Hex> = [hashes[0].clone()].into();
        let mut removed = store.collect_garbage(&keep, 2);
        removed.sort();
        let mut want = vec![hashes[1].clone(), hashes[2].clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(store.contains(&hashes[0]), "in use");
        assert!(
            store.contains(&hashes[3]) && store.contains(&hashes[4]),
            "the newest two"
        );
        assert!(dir.path().join("archive-transfers.json").is_file());
    }

    #[test]
    fn counters_persist_across_reopen_and_stale_parts_are_cleared() {
        let dir = tempfile::tempdir().expect("dir");
        {
            let store = ArtifactStore::open(dir.path()).expect("open");
            store.insert(b"one").expect("insert");
            store.insert(b"two!").expect("insert");
            // A crash mid-upload leaves a part file.
            let upload = store.begin(&Sha256Hex::of(b"three"), 5).expect("begin");
            std::mem::forget(upload);
        }
        let store = ArtifactStore::open(dir.path()).expect("reopen");
        assert_eq!(
            store.transfers(),
            Transfers {
                fetched: 2,
                bytes_fetched: 7
            }
        );
        assert_eq!(names(&store).len(), 2, "{:?}", names(&store));
        let json = std::fs::read_to_string(dir.path().join("transfers.json")).expect("read");
        assert!(json.contains("\"fetched\": 2"), "{json}");
    }
}
