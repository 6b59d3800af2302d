//! The coordinator's persisted state: what `state.json` holds, loading and saving it.

use topo_engine::summary::CheckpointSummary;

use super::*;

/// What `state.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Saved {
    pub(super) supervisors: Vec<SavedSupervisor>,
    pub(super) topologies: Vec<Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct SavedSupervisor {
    pub(super) id: String,
    pub(super) slots: usize,
}

/// A topology as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) status: Status,
    pub(super) workers: usize,
    pub(super) binary: String,
    /// The resource archive's hash.
    #[serde(default)]
    pub(super) resources: Option<String>,
    /// The hash of its `python_requirements` file.
    #[serde(default)]
    pub(super) requirements: Option<String>,
    pub(super) text: String,
    pub(super) fingerprint: u64,
    /// Seconds since the epoch.
    pub(super) submitted: f64,
    /// When it ended (seconds since the epoch).
    pub(super) ended: Option<f64>,
    /// Worker index -> supervisor id.
    pub(super) assignments: Vec<Option<String>>,
    /// Worker index -> its last known address.
    pub(super) addrs: Vec<Option<SocketAddr>>,
    /// Worker index -> times it was started.
    pub(super) starts: Vec<u32>,
    /// `Finish` was sent.
    pub(super) finishing: bool,
    /// A kill's drain ends then (seconds since the epoch).
    pub(super) kill_at: Option<f64>,
    /// The message timeout, the default drain of a kill.
    pub(super) message_timeout_secs: f64,
    /// The final counts, once it ended.
    pub(super) components: Vec<ComponentInfo>,
    pub(super) error: Option<String>,
    /// While rebalancing: what it restarts as once drained.
    #[serde(default)]
    pub(super) rebalance: Option<Rebalance>,
    /// A checkpointed topology's workers resume from this committed checkpoint when
    /// they are (re)assigned.
    #[serde(default)]
    pub(super) restore: Option<u64>,
    /// A checkpointed topology's checkpoint figures so far (a coordinator that opens its
    /// checkpoints again goes on from them).
    #[serde(default)]
    pub(super) checkpoints: Option<CheckpointSummary>,
}

/// A rebalance in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Rebalance {
    pub(super) workers: usize,
    /// The topology file's text with the new `workers` and parallelism.
    pub(super) text: String,
    /// The status to go back to (active or inactive).
    pub(super) status: Status,
}

/// Where the previous good state is kept: `state.json.prev` beside `state.json`.
pub(super) fn prev_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".prev");
    PathBuf::from(name)
}

/// How to go on from a bad `path`, for the error that stops the coordinator.
fn recovery(path: &Path) -> String {
    let prev = prev_path(path);
    format!(
        "to recover, move {path} aside and either copy {prev} (the state before the last \
         change) to {path}, or start without it (the coordinator then knows no topologies \
         and supervisors register again)",
        path = path.display(),
        prev = prev.display()
    )
}

/// Reads `path` (the default state when there is none). A file that cannot be read or
/// parsed, or that names a topology with a name or id that is not allowed, is an error
/// naming the file and how to recover.
pub(super) fn load(path: &Path) -> anyhow::Result<Saved> {
    let saved = match crate::state::load::<Saved>(path) {
        Ok(saved) => saved.unwrap_or_default(),
        Err(e) => anyhow::bail!("{e}\n{}", recovery(path)),
    };
    checked(saved, &path.display().to_string(), &recovery(path))
}

/// Parses the state read from etcd key `key` (`None`: the default state), checked as
/// [`load`] checks a file.
pub(super) fn parse_etcd(key: &str, bytes: Option<&[u8]>) -> anyhow::Result<Saved> {
    let recovery = format!(
        "to recover, fix the key {key} with etcdctl, or delete it (the coordinator then knows \
         no topologies and supervisors register again)"
    );
    let saved = match bytes {
        None => Saved::default(),
        Some(b) => serde_json::from_slice(b)
            .map_err(|e| anyhow::anyhow!("cannot parse etcd key {key}: {e}\n{recovery}"))?,
    };
    checked(saved, &format!("etcd key {key}"), &recovery)
}

/// `saved` if every topology in it is well-formed; else an error naming `place`.
fn checked(saved: Saved, place: &str, recovery: &str) -> anyhow::Result<Saved> {
    for r in &saved.topologies {
        let checked = topo_dsl::check_id(&r.id).and_then(|()| topo_dsl::check_name(&r.name));
        if let Err(e) = checked {
            anyhow::bail!("bad state in {place}: {e}\n{recovery}");
        }
        if let Err(e) = r.check() {
            anyhow::bail!("bad state in {place}: topology {}: {e}\n{recovery}", r.id);
        }
    }
    Ok(saved)
}

impl Record {
    /// The invariants the state machine indexes by: a worker count in range, one
    /// assignment, address and start count per worker, a usable message timeout.
    fn check(&self) -> Result<(), String> {
        let max = topo_dsl::validate::MAX_WORKERS as usize;
        let n = self.workers;
        if n == 0 || n > max {
            return Err(format!("{n} workers, expected 1 to {max}"));
        }
        let lens = [self.assignments.len(), self.addrs.len(), self.starts.len()];
        if lens.iter().any(|&l| l != n) {
            return Err(format!(
                "{n} workers but {} assignments, {} addresses and {} start counts",
                lens[0], lens[1], lens[2]
            ));
        }
        if let Some(r) = &self.rebalance {
            if r.workers == 0 || r.workers > max {
                return Err(format!(
                    "a rebalance to {} workers, expected 1 to {max}",
                    r.workers
                ));
            }
        }
        let t = self.message_timeout_secs;
        if !(t.is_finite() && t >= 0.0) {
            return Err(format!("message timeout {t} s"));
        }
        Ok(())
    }
}

impl Coord {
    /// Saves the state, keeping the previous one in `state.json.prev`. On failure the
    /// state stays dirty, so the next tick retries; failures are logged at most every
    /// [`SAVE_RETRY_LOG`], and the first success after them once.
    pub(super) fn save(&mut self) {
        let saved = Saved {
            supervisors: self
                .supervisors
                .iter()
                .map(|(id, s)| SavedSupervisor {
                    id: id.clone(),
                    slots: s.slots,
                })
                .collect(),
            topologies: self.topologies.values().map(|t| t.record.clone()).collect(),
        };
        if let Some(sink) = &self.etcd {
            // The writer task sends the latest state in a transaction guarded by the lease.
            match serde_json::to_vec(&saved) {
                Ok(bytes) => {
                    sink.send_replace(Some(Arc::new(bytes)));
                    self.dirty = false;
                }
                Err(e) => error!(error = %e, "Cannot encode the state."),
            }
            return;
        }
        match crate::state::save_keeping_previous(&self.path, &prev_path(&self.path), &saved) {
            Ok(()) => {
                self.dirty = false;
                if self.save_failed_logged.take().is_some() {
                    info!(path = %self.path.display(), "Saved the state again.");
                }
            }
            Err(e) => {
                if self
                    .save_failed_logged
                    .is_none_or(|at| at.elapsed() >= SAVE_RETRY_LOG)
                {
                    error!(path = %self.path.display(), error = %e, "Cannot save the state; retrying every tick.");
                    self.save_failed_logged = Some(Instant::now());
                }
            }
        }
    }
}
