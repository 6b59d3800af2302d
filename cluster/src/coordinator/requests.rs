//! The coordinator's answers to client requests: submit, list, kill, activate (rebalance
//! is in `rebalance`).

use super::*;

impl Coord {
    pub(super) fn submit(
        &mut self,
        name: String,
        text: String,
        binary: String,
        resources: Option<String>,
        requirements: Option<String>,
    ) -> Reply {
        // The name becomes part of the id, and the id part of paths on every supervisor.
        if let Err(e) = topo_dsl::check_name(&name) {
            return Reply::Error {
                message: e.to_string(),
            };
        }
        let Ok(hash) = binary.parse::<Sha256Hex>() else {
            return Reply::Error {
                message: format!("`{binary}` is not a SHA-256 hash"),
            };
        };
        if !self.store.contains(&hash) {
            return Reply::Error {
                message: format!("the coordinator does not hold binary {binary}; upload it first"),
            };
        }
        if let Some(t) = self
            .topologies
            .values()
            .find(|t| t.record.name == name && t.record.status.is_live())
        {
            return Reply::Error {
                message: format!(
                    "topology {name} is already running as {}; kill it first or pick another --name",
                    t.record.id
                ),
            };
        }
        let (spec, diags) = topo_dsl::parse(&text);
        if !diags.is_empty() {
            return Reply::Error {
                message: format!("invalid topology ({} errors)", diags.len()),
            };
        }
        if let Some(Err(message)) = checkpoints::redis_url(&spec) {
            return Reply::Error { message };
        }
        let workers = spec.workers.unwrap_or(1).max(1) as usize;
        let mut id = format!("{name}-{}", now_secs() as u64);
        let mut n = 1;
        while self.topologies.contains_key(&id) {
            n += 1;
            id = format!("{name}-{}-{n}", now_secs() as u64);
        }
        let record = Record {
            id: id.clone(),
            name,
            status: Status::Active,
            workers,
            binary,
            resources,
            requirements,
            fingerprint: fingerprint(&text, workers),
            text,
            submitted: now_secs(),
            ended: None,
            assignments: vec![None; workers],
            addrs: vec![None; workers],
            starts: vec![0; workers],
            finishing: false,
            kill_at: None,
            message_timeout_secs: spec.message_timeout_secs.unwrap_or(30.0),
            components: Vec::new(),
            error: None,
            rebalance: None,
            restore: None,
            checkpoints: None,
        };
        info!(topology = %id, workers, "Topology submitted.");
        self.topologies.insert(id.clone(), Topology::new(record));
        self.dirty = true;
        self.place();
        self.collect_archives();
        Reply::Submitted { id }
    }

    pub(super) fn set_active(&mut self, name: &str, active: bool) -> Reply {
        let Some(id) = self.find(name) else {
            return not_found(name);
        };
        let t = &mut self.topologies.get_mut(&id).expect("found");
        let want = if active {
            Status::Active
        } else {
            Status::Inactive
        };
        if !matches!(t.record.status, Status::Active | Status::Inactive) {
            return Reply::Error {
                message: format!("topology {id} is {}", t.record.status.name()),
            };
        }
        t.record.status = want;
        self.dirty = true;
        let msg = if active {
            ToWorker::Activate
        } else {
            ToWorker::Deactivate
        };
        let out: Outbox = (0..t.record.workers).map(|w| (w, msg.clone())).collect();
        self.deliver(&id, out);
        info!(topology = %id, status = want.name(), "Topology {}.", want.name());
        Reply::Done {
            message: format!("topology {id} is {}", want.name()),
        }
    }

    pub(super) fn kill(&mut self, name: &str, wait_secs: Option<f64>) -> Reply {
        let Some(id) = self.find(name) else {
            return not_found(name);
        };
        let t = self.topologies.get_mut(&id).expect("found");
        if !t.record.status.is_live() {
            return Reply::Error {
                message: format!("topology {id} is {}", t.record.status.name()),
            };
        }
        let wait = wait_secs.unwrap_or(t.record.message_timeout_secs).max(0.0);
        t.record.status = Status::Killing;
        t.record.kill_at = Some(now_secs() + wait);
        let out: Outbox = (0..t.record.workers)
            .map(|w| (w, ToWorker::Deactivate))
            .collect();
        self.dirty = true;
        self.deliver(&id, out);
        info!(topology = %id, wait_secs = wait, "Killing the topology: spouts deactivated, draining.");
        Reply::Done {
            message: format!("killing {id}: spouts deactivated, stopping in {wait} s"),
        }
    }

    pub(super) fn list(&self) -> Vec<TopologyInfo> {
        let now = now_secs();
        let mut out: Vec<TopologyInfo> = self
            .topologies
            .values()
            .map(|t| {
                let r = &t.record;
                let live = r.status.is_live();
                TopologyInfo {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    status: r.status,
                    workers: r.workers,
                    uptime_secs: (r.ended.unwrap_or(now) - r.submitted).max(0.0),
                    binary: r.binary.clone(),
                    resources: r.resources.clone(),
                    requirements: r.requirements.clone(),
                    assignments: (0..r.workers)
                        .map(|w| WorkerInfo {
                            worker: w,
                            supervisor: r.assignments[w].clone(),
                            addr: t.session.worker(w).addr.or(r.addrs[w]),
                            running: live && t.session.worker(w).running,
                            restarts: r.starts[w].saturating_sub(1),
                        })
                        .collect(),
                    components: if live {
                        components_of(&t.session)
                    } else {
                        r.components.clone()
                    },
                    parallelism: parallelism_of(&r.text),
                    checkpoints: r.checkpoints.clone(),
                    error: r.error.clone(),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            a.uptime_secs
                .partial_cmp(&b.uptime_secs)
                .unwrap_or(std::cmp::Ordering::Equal)
                .reverse()
        });
        out
    }
}

/// Archives kept beyond those a topology uses.
const KEEP_ARCHIVES: usize = 3;

/// A submitted topology's resources: the archive the coordinator must hold when the file
/// (`text`) lists resources (and none when it does not), every entry allowed, the
/// requirements file in it. Returns the archive's hash and the requirements' hash. Reads
/// and unzips the archive: called outside the coordinator's lock.
pub(super) fn check_resources(
    archives: &ArtifactStore,
    max: u64,
    text: &str,
    archive: Option<String>,
) -> Result<(Option<String>, Option<String>), String> {
    let (spec, _) = topo_dsl::parse(text);
    {
        let spec = &spec;
        let listed = spec.resources.as_ref().is_some_and(|r| !r.is_empty());
        let Some(archive) = archive else {
            if listed {
                return Err("the topology lists resources but no archive came with it".into());
            }
            return Ok((None, None));
        };
        if !listed {
            return Err("a resource archive came with a topology that lists no resources".into());
        }
        let hash = archive
            .parse::<Sha256Hex>()
            .map_err(|_| format!("`{archive}` is not a SHA-256 hash"))?;
        let path = archives
            .verified_path(&hash)
            .map_err(|e| format!("resource archive: {e}"))?;
        crate::archive::check(&path, max)
            .map_err(|e| format!("resource archive {}: {e}", hash.short()))?;
        let requirements = match &spec.python_requirements {
            Some(req) => {
                let bytes = crate::archive::read_file(&path, req, max)
                    .map_err(|e| format!("resource archive {}: {e}", hash.short()))?
                    .ok_or_else(|| {
                        format!("python_requirements {req:?} is not in the resource archive")
                    })?;
                Some(Sha256Hex::of(&bytes).to_string())
            }
            None => None,
        };
        Ok((Some(archive), requirements))
    }
}

impl Coord {
    /// Removes resource archives no topology that may run again uses, keeping the
    /// newest few.
    pub(super) fn collect_archives(&self) {
        let keep: std::collections::HashSet<Sha256Hex> = self
            .topologies
            .values()
            .filter(|t| t.record.status.is_live())
            .filter_map(|t| t.record.resources.as_ref()?.parse().ok())
            .collect();
        for hash in self.archives.collect_garbage(&keep, KEEP_ARCHIVES) {
            info!(hash = %hash, "Removed a resource archive no topology uses.");
        }
    }
}

/// Each component's parallelism in the topology file `text`.
fn parallelism_of(text: &str) -> BTreeMap<String, usize> {
    topo_dsl::parse(text)
        .0
        .components
        .iter()
        .map(|c| (c.id.clone(), c.parallelism.unwrap_or(1).max(1) as usize))
        .collect()
}

pub(super) fn not_found(name: &str) -> Reply {
    Reply::Error {
        message: format!("no topology named {name}"),
    }
}
