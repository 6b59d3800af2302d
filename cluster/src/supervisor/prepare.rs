//! Getting a worker ready to start: its binary hashed again, its topology's resources
//! unpacked into the work directory, the virtualenv of its requirements built, and the
//! archives and virtualenvs no worker uses collected.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use topo_engine::launcher::venv;
use tracing::info;

use crate::artifacts::{ArtifactStore, Sha256Hex};
use crate::proto::Assignment;

/// What a worker starts with, once its binary is verified and its work directory ready.
pub(super) struct Prepared {
    pub(super) exe: PathBuf,
    /// Its virtualenv, when the topology has `python_requirements`.
    pub(super) venv: Option<venv::Venv>,
}

/// The folder a topology's workers start in: `DIR/work/<topology id>/`.
pub(super) fn work_dir(dir: &Path, topology: &str) -> PathBuf {
    dir.join("work").join(topology)
}

/// Archives kept beyond those in use, and virtualenvs likewise.
const KEEP_UNUSED: usize = 3;

/// What a verify thread needs to get a worker ready to start.
pub(super) struct Preparation {
    pub(super) store: Arc<ArtifactStore>,
    pub(super) archives: Arc<ArtifactStore>,
    pub(super) unpacking: Arc<Mutex<()>>,
    pub(super) dir: PathBuf,
    pub(super) max_archive: u64,
    pub(super) venv_timeout: Duration,
    pub(super) in_use: (HashSet<Sha256Hex>, HashSet<String>),
}

impl Preparation {
    /// Hashes the binary again (a file changed on disk is never run), unpacks the
    /// resource archive into the work directory (verified, once per topology), builds
    /// the virtualenv of its requirements (once per requirements hash), then collects
    /// the archives and virtualenvs no worker uses.
    pub(super) fn run(&self, a: &Assignment) -> Result<Prepared, String> {
        let exe = a
            .binary
            .parse::<Sha256Hex>()
            .map_err(|e| e.to_string())
            .and_then(|h| self.store.verified_path(&h).map_err(|e| e.to_string()))?;
        let Some(archive) = &a.resources else {
            return Ok(Prepared { exe, venv: None });
        };
        let hash = archive
            .parse::<Sha256Hex>()
            .map_err(|e| format!("resource archive: {e}"))?;
        let work = work_dir(&self.dir, &a.topology);
        let marker = self
            .dir
            .join("work")
            .join(format!("{}.resources", a.topology));
        {
            let _one = self.unpacking.lock().unwrap_or_else(|e| e.into_inner());
            let done = std::fs::read_to_string(&marker).is_ok_and(|m| m == hash.as_str());
            if !done {
                let path = self
                    .archives
                    .verified_path(&hash)
                    .map_err(|e| format!("resource archive: {e}"))?;
                crate::archive::unpack(&path, &work, self.max_archive)
                    .map_err(|e| format!("resource archive {}: {e}", hash.short()))?;
                std::fs::write(&marker, hash.as_str())
                    .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
                info!(topology = %a.topology, archive = %hash, dir = %work.display(), "Resources unpacked.");
            }
        }
        let (spec, _) = topo_dsl::parse(&a.text);
        let venv = match &spec.python_requirements {
            Some(req) => {
                let file = work.join(req);
                let v = venv::ensure(&self.dir.join("venvs"), &file, self.venv_timeout)
                    .map_err(|e| format!("python_requirements {req}: {e}"))?;
                Some(v)
            }
            None => None,
        };
        let (mut archives, mut venvs) = self.in_use.clone();
        archives.insert(hash);
        venvs.extend(venv.as_ref().map(|v| v.hash.clone()));
        for gone in self.archives.collect_garbage(&archives, KEEP_UNUSED) {
            info!(archive = %gone, "Removed a resource archive no worker uses.");
        }
        for gone in venv::collect_garbage(&self.dir.join("venvs"), &venvs, KEEP_UNUSED) {
            info!(venv = %gone, "Removed a virtualenv no worker uses.");
        }
        Ok(Prepared { exe, venv })
    }
}
