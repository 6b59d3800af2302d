//! The coordinator daemon (`topo coordinator`): the cluster's state, the placement of
//! workers onto supervisors, and the launcher's part for every topology.
//!
//! # State
//! Supervisors (id, slots) and topologies (status, text, binary, assignments, each
//! worker's last known address) live in `STATE_DIR/state.json`, written with
//! [`crate::state::save_atomic`] after every change; binaries in `STATE_DIR/artifacts/`.
//! A restarted coordinator loads them and waits for the supervisors to register again:
//! each reports the workers it runs, which rebuilds the topology's [`Session`]. Running
//! workers are untouched meanwhile: they talk to each other, not through the coordinator.
//!
//! # The launcher's part
//! Supervisors relay their workers' control lines; the coordinator feeds them to the
//! topology's [`Session`] (the same state machine `topo run` uses) and routes what it
//! answers (`Peers`, `PeerMoved`, `Finish`) to the supervisor of each addressed worker.
//! A bounded topology ends once every worker's status says its spouts are done.
//!
//! # Failover
//! A supervisor silent for the supervisor timeout is dropped: its workers are placed on
//! the others ([`crate::schedule::place`]), started there, and their peers are told the
//! new addresses when they listen.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use topo_engine::launcher::session::{merge, Outbox, Session};
use topo_engine::launcher::worker::{fingerprint, hex, FromWorker, ToWorker};
use tracing::{error, info, warn};

use crate::artifacts::{ArtifactStore, Sha256Hex, Upload};
use crate::control::{ConnReader, ConnWriter, Listener, Role};
use crate::proto::{
    Assignment, Chunk, ComponentInfo, FromSupervisor, Json, Reply, Request, Status, ToSupervisor,
    TopologyInfo, WorkerInfo, WorkerReport, CHUNK_SIZE,
};
use crate::schedule::{self, Host};
use crate::secret::Secret;

/// How the coordinator runs.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// Where supervisors and clients connect.
    pub listen: SocketAddr,
    /// Where `state.json` and `artifacts/` live.
    pub state_dir: PathBuf,
    /// The cluster secret.
    pub secret: Secret,
    /// A supervisor silent this long is dropped and its workers placed elsewhere.
    pub supervisor_timeout: Duration,
}

/// How often the coordinator checks timeouts, placements and ends of runs.
const TICK: Duration = Duration::from_millis(100);

/// After a kill's drain, how long the workers get to send their summaries before they are
/// stopped anyway.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// What `state.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Saved {
    supervisors: Vec<SavedSupervisor>,
    topologies: Vec<Record>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedSupervisor {
    id: String,
    slots: usize,
}

/// A topology as persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    id: String,
    name: String,
    status: Status,
    workers: usize,
    binary: String,
    text: String,
    fingerprint: u64,
    /// Seconds since the epoch.
    submitted: f64,
    /// When it ended (seconds since the epoch).
    ended: Option<f64>,
    /// Worker index -> supervisor id.
    assignments: Vec<Option<String>>,
    /// Worker index -> its last known address.
    addrs: Vec<Option<SocketAddr>>,
    /// Worker index -> times it was started.
    starts: Vec<u32>,
    /// `Finish` was sent.
    finishing: bool,
    /// A kill's drain ends then (seconds since the epoch).
    kill_at: Option<f64>,
    /// The message timeout, the default drain of a kill.
    message_timeout_secs: f64,
    /// The final counts, once it ended.
    components: Vec<ComponentInfo>,
    error: Option<String>,
    /// While rebalancing: what it restarts as once drained.
    #[serde(default)]
    rebalance: Option<Rebalance>,
}

/// A rebalance in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Rebalance {
    workers: usize,
    /// The topology file's text with the new `workers`.
    text: String,
    /// The status to go back to (active or inactive).
    status: Status,
}

/// `text` with `[topology] workers = n` (the file is rewritten: comments and layout are
/// not kept, the values are).
fn with_workers(text: &str, n: usize) -> Result<String, String> {
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e| format!("cannot parse the topology file: {e}"))?;
    let topology = doc
        .entry("topology")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let Some(t) = topology.as_table_mut() else {
        return Err("`topology` is not a table".into());
    };
    t.insert("workers".into(), toml::Value::Integer(n as i64));
    toml::to_string(&doc).map_err(|e| format!("cannot write the topology file: {e}"))
}

struct Topology {
    record: Record,
    session: Session,
}

struct Link {
    conn: u64,
    ctl: mpsc::UnboundedSender<ToSupervisor>,
}

struct SupervisorEntry {
    slots: usize,
    link: Option<Link>,
    last_seen: Instant,
}

struct Coord {
    path: PathBuf,
    secret: Secret,
    store: Arc<ArtifactStore>,
    timeout: Duration,
    supervisors: BTreeMap<String, SupervisorEntry>,
    topologies: BTreeMap<String, Topology>,
    next_conn: u64,
    dirty: bool,
    /// When [`Coord::tick`] last ran: a coordinator that could not run (a stopped
    /// process, a starved machine) does not blame the supervisors for its own silence.
    last_tick: Instant,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

type Shared = Arc<Mutex<Coord>>;

fn lock(c: &Shared) -> MutexGuard<'_, Coord> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs the coordinator until the process is killed; an error means it could not start
/// (state unreadable, address taken).
pub async fn serve(opts: CoordinatorOptions) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", opts.state_dir.display()))?;
    let store = ArtifactStore::open(&opts.state_dir)?;
    let path = opts.state_dir.join("state.json");
    let saved: Saved = crate::state::load(&path)?.unwrap_or_default();
    let listener = Listener::bind(opts.listen, &opts.secret).await?;
    if !opts.secret.is_set() {
        warn!("No cluster secret configured: listening on loopback only, connections are authenticated with an empty key.");
    }
    let mut coord = Coord {
        path,
        secret: opts.secret.clone(),
        store: Arc::new(store),
        timeout: opts.supervisor_timeout,
        supervisors: BTreeMap::new(),
        topologies: BTreeMap::new(),
        next_conn: 0,
        dirty: false,
        last_tick: Instant::now(),
    };
    for s in saved.supervisors {
        coord.supervisors.insert(
            s.id,
            SupervisorEntry {
                slots: s.slots,
                link: None,
                last_seen: Instant::now(),
            },
        );
    }
    for record in saved.topologies {
        let mut session = Session::new(record.workers);
        if record.finishing {
            session.set_finishing();
        }
        coord
            .topologies
            .insert(record.id.clone(), Topology { record, session });
    }
    let live = coord
        .topologies
        .values()
        .filter(|t| t.record.status.is_live())
        .count();
    info!(
        addr = %listener.local_addr(),
        supervisors = coord.supervisors.len(),
        topologies = coord.topologies.len(),
        live,
        "Coordinator listening."
    );
    let coord: Shared = Arc::new(Mutex::new(coord));
    let ticker = Arc::clone(&coord);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            lock(&ticker).tick();
        }
    });
    loop {
        let (conn, role, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "Accept failed.");
                continue;
            }
        };
        let coord = Arc::clone(&coord);
        let (reader, writer) = conn.split();
        match role {
            Role::Supervisor => {
                tokio::spawn(supervisor_conn(coord, reader, writer, peer));
            }
            Role::Client => {
                tokio::spawn(client_conn(coord, reader, writer, peer));
            }
            Role::Coordinator => warn!(%peer, "Refused a connection from another coordinator."),
        }
    }
}

impl Coord {
    fn save(&mut self) {
        self.dirty = false;
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
        if let Err(e) = crate::state::save_atomic(&self.path, &saved) {
            error!(path = %self.path.display(), error = %e, "Cannot save the state.");
        }
    }

    fn send(&self, supervisor: &str, msg: ToSupervisor) -> bool {
        match self
            .supervisors
            .get(supervisor)
            .and_then(|s| s.link.as_ref())
        {
            Some(l) => l.ctl.send(msg).is_ok(),
            None => false,
        }
    }

    /// Tells the supervisor of each assigned worker of `topology` to stop it.
    fn stop_workers(&self, topology: &str, assignments: &[Option<String>]) {
        for (w, sup) in assignments.iter().enumerate() {
            if let Some(sup) = sup {
                self.send(
                    sup,
                    ToSupervisor::Stop {
                        topology: topology.to_string(),
                        worker: w,
                    },
                );
            }
        }
    }

    /// Sends what a session answered to the supervisors of the addressed workers.
    fn deliver(&self, topology: &str, out: Outbox) {
        let Some(t) = self.topologies.get(topology) else {
            return;
        };
        for (w, msg) in out {
            if let Some(Some(sup)) = t.record.assignments.get(w) {
                self.send(
                    sup,
                    ToSupervisor::Worker {
                        topology: topology.to_string(),
                        worker: w,
                        msg: Json(msg),
                    },
                );
            }
        }
    }

    fn assignment(&self, t: &Topology, w: usize) -> Assignment {
        Assignment {
            topology: t.record.id.clone(),
            worker: w,
            binary: t.record.binary.clone(),
            text: t.record.text.clone(),
            secret: hex(&self.secret.derive(&format!("topology:{}", t.record.id))),
            fingerprint: t.record.fingerprint,
            inactive: t.record.status == Status::Inactive,
        }
    }

    /// Connected supervisors with their slots and the workers of live topologies they
    /// hold.
    fn hosts(&self) -> BTreeMap<String, Host> {
        let mut hosts: BTreeMap<String, Host> = self
            .supervisors
            .iter()
            .filter(|(_, s)| s.link.is_some())
            .map(|(id, s)| {
                (
                    id.clone(),
                    Host {
                        slots: s.slots,
                        used: 0,
                    },
                )
            })
            .collect();
        for t in self.topologies.values() {
            if !t.record.status.is_live() {
                continue;
            }
            for a in t.record.assignments.iter().flatten() {
                if let Some(h) = hosts.get_mut(a) {
                    h.used += 1;
                }
            }
        }
        hosts
    }

    /// Places every unassigned worker of the live topologies and sends the assignments.
    fn place(&mut self) {
        let mut hosts = self.hosts();
        let ids: Vec<String> = self.topologies.keys().cloned().collect();
        for id in ids {
            let Some(t) = self.topologies.get_mut(&id) else {
                continue;
            };
            if !t.record.status.is_live() || t.record.assignments.iter().all(Option::is_some) {
                continue;
            }
            let before = t.record.assignments.clone();
            schedule::place(&mut t.record.assignments, &mut hosts);
            let placed: Vec<usize> = (0..before.len())
                .filter(|&w| before[w].is_none() && t.record.assignments[w].is_some())
                .collect();
            if placed.is_empty() {
                continue;
            }
            self.dirty = true;
            let t = &self.topologies[&id];
            for w in placed {
                let sup = t.record.assignments[w].clone().unwrap_or_default();
                info!(topology = %id, worker = w, supervisor = %sup, "Assigned a worker.");
                let a = self.assignment(t, w);
                self.send(&sup, ToSupervisor::Assign { assignment: a });
            }
        }
    }

    /// Timeouts, placements, ends of runs.
    fn tick(&mut self) {
        let gap = self.last_tick.elapsed();
        self.last_tick = Instant::now();
        if gap > TICK * 5 {
            warn!(
                gap_secs = gap.as_secs_f64(),
                "The coordinator did not run for a while; giving the supervisors that time."
            );
            for s in self.supervisors.values_mut() {
                s.last_seen += gap;
            }
        }
        let silent: Vec<String> = self
            .supervisors
            .iter()
            .filter(|(_, s)| s.last_seen.elapsed() > self.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.drop_supervisor(&id);
        }
        self.place();
        let ids: Vec<String> = self.topologies.keys().cloned().collect();
        for id in ids {
            self.check_end(&id);
        }
        if self.dirty {
            self.save();
        }
    }

    fn drop_supervisor(&mut self, id: &str) {
        warn!(
            supervisor = id,
            timeout_secs = self.timeout.as_secs_f64(),
            "Supervisor is silent; dropping it and placing its workers elsewhere."
        );
        self.supervisors.remove(id);
        for t in self.topologies.values_mut() {
            if !t.record.status.is_live() {
                continue;
            }
            for w in 0..t.record.workers {
                if t.record.assignments[w].as_deref() == Some(id) {
                    t.record.assignments[w] = None;
                    t.session.started(w);
                }
            }
        }
        self.dirty = true;
    }

    fn check_end(&mut self, id: &str) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        if !t.record.status.is_live() {
            return;
        }
        let mut out = Outbox::new();
        let now = now_secs();
        match t.record.status {
            Status::Active if !t.session.finishing() && t.session.spouts_done() => {
                info!(
                    topology = id,
                    "Every spout is done; finishing the topology."
                );
                t.session.finish(&mut out);
            }
            Status::Killing
                if !t.session.finishing() && t.record.kill_at.is_some_and(|k| now >= k) =>
            {
                info!(topology = id, "Drained; finishing the killed topology.");
                t.session.finish(&mut out);
            }
            _ => {}
        }
        if t.session.finishing() && !t.record.finishing {
            t.record.finishing = true;
            self.dirty = true;
        }
        if t.record.status == Status::Rebalancing && t.record.kill_at.is_some_and(|k| now >= k) {
            self.restart_rebalanced(id);
            return;
        }
        let ended = t.session.ended();
        let overdue = t.record.status == Status::Killing
            && t.record
                .kill_at
                .is_some_and(|k| now >= k + KILL_GRACE.as_secs_f64());
        if ended || overdue {
            let killed = t.record.status == Status::Killing;
            if ended {
                let summary = merge(t.session.take_summaries());
                t.record.components = summary
                    .components
                    .iter()
                    .filter(|c| c.kind != "acker")
                    .map(|c| ComponentInfo {
                        id: c.id.clone(),
                        kind: c.kind.clone(),
                        emitted: c.total.emitted,
                        acked: c.total.acked,
                        failed: c.total.failed,
                    })
                    .collect();
            } else {
                t.record.components = components_of(&t.session);
            }
            t.record.status = if killed {
                Status::Killed
            } else {
                Status::Finished
            };
            t.record.ended = Some(now);
            info!(
                topology = id,
                status = t.record.status.name(),
                "Topology ended."
            );
            let assignments = t.record.assignments.clone();
            for (w, sup) in assignments.iter().enumerate() {
                if let Some(sup) = sup {
                    let msg = if ended {
                        ToSupervisor::Worker {
                            topology: id.to_string(),
                            worker: w,
                            msg: Json(ToWorker::Exit),
                        }
                    } else {
                        ToSupervisor::Stop {
                            topology: id.to_string(),
                            worker: w,
                        }
                    };
                    self.send(sup, msg);
                }
            }
            self.dirty = true;
        }
        self.deliver(id, out);
    }

    /// A drained rebalance: stop the old workers, start the new plan.
    fn restart_rebalanced(&mut self, id: &str) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        let Some(r) = t.record.rebalance.take() else {
            return;
        };
        let old = std::mem::replace(&mut t.record.assignments, vec![None; r.workers]);
        t.record.workers = r.workers;
        t.record.fingerprint = fingerprint(&r.text, r.workers);
        t.record.text = r.text;
        t.record.addrs = vec![None; r.workers];
        t.record.starts = vec![0; r.workers];
        t.record.finishing = false;
        t.record.kill_at = None;
        t.record.status = r.status;
        t.session = Session::new(r.workers);
        info!(
            topology = id,
            workers = r.workers,
            "Drained; restarting the topology with its new workers."
        );
        self.stop_workers(id, &old);
        self.dirty = true;
        self.place();
    }

    fn rebalance(&mut self, name: &str, workers: usize) -> Reply {
        let Some(id) = self.find(name) else {
            return not_found(name);
        };
        let t = self.topologies.get_mut(&id).expect("found");
        if !matches!(t.record.status, Status::Active | Status::Inactive) {
            return Reply::Error {
                message: format!("topology {id} is {}", t.record.status.name()),
            };
        }
        if workers == 0 {
            return Reply::Error {
                message: "a topology needs at least 1 worker".into(),
            };
        }
        let text = match with_workers(&t.record.text, workers) {
            Ok(text) => text,
            Err(message) => return Reply::Error { message },
        };
        let wait = t.record.message_timeout_secs.max(0.0);
        t.record.rebalance = Some(Rebalance {
            workers,
            text,
            status: t.record.status,
        });
        t.record.status = Status::Rebalancing;
        t.record.kill_at = Some(now_secs() + wait);
        let out: Outbox = (0..t.record.workers)
            .map(|w| (w, ToWorker::Deactivate))
            .collect();
        self.dirty = true;
        self.deliver(&id, out);
        info!(topology = %id, workers, wait_secs = wait, "Rebalancing: spouts deactivated, draining.");
        Reply::Done {
            message: format!(
                "rebalancing {id} to {workers} workers: spouts deactivated, restarting in {wait} s"
            ),
        }
    }

    fn fail(&mut self, id: &str, message: String) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        if !t.record.status.is_live() {
            return;
        }
        error!(topology = id, "{message}");
        t.record.status = Status::Failed;
        t.record.error = Some(message);
        t.record.ended = Some(now_secs());
        t.record.components = components_of(&t.session);
        let assignments = t.record.assignments.clone();
        self.stop_workers(id, &assignments);
        self.dirty = true;
    }

    /// A supervisor (re)registered: rebuild what it runs, stop what is not its own, start
    /// what it lacks.
    fn register(&mut self, id: &str, slots: usize, workers: Vec<WorkerReport>, link: Link) {
        info!(
            supervisor = id,
            slots,
            workers = workers.len(),
            "Supervisor registered."
        );
        let known = self.supervisors.get(id).map(|s| s.slots);
        self.supervisors.insert(
            id.to_string(),
            SupervisorEntry {
                slots,
                link: Some(link),
                last_seen: Instant::now(),
            },
        );
        if known != Some(slots) {
            self.dirty = true;
        }
        self.send(id, ToSupervisor::Registered);
        let mut held = Vec::new();
        for r in workers {
            let mine = self.topologies.get(&r.topology).is_some_and(|t| {
                t.record.status.is_live()
                    && t.record
                        .assignments
                        .get(r.worker)
                        .and_then(|a| a.as_deref())
                        == Some(id)
            });
            if !mine {
                info!(supervisor = id, topology = %r.topology, worker = r.worker, "Stopping a worker that is not assigned there.");
                self.send(
                    id,
                    ToSupervisor::Stop {
                        topology: r.topology,
                        worker: r.worker,
                    },
                );
                continue;
            }
            held.push((r.topology.clone(), r.worker));
            let Some(t) = self.topologies.get_mut(&r.topology) else {
                continue;
            };
            let mut out = Outbox::new();
            let w = r.worker;
            if let Some(addr) = r.addr {
                if t.record.addrs[w] == Some(addr) {
                    t.session.restore(w, addr, r.running, &mut out);
                } else {
                    // It moved while we were away: its peers learn the new address.
                    t.record.addrs[w] = Some(addr);
                    self.dirty = true;
                    let _ = t
                        .session
                        .on_message(w, FromWorker::Listening { addr }, &mut out);
                    if r.running {
                        let _ = t.session.on_message(w, FromWorker::Running, &mut out);
                    }
                }
            }
            if let Some(summary) = r.summary {
                let _ = t
                    .session
                    .on_message(w, FromWorker::Summary { summary }, &mut out);
            }
            let topology = r.topology.clone();
            self.deliver(&topology, out);
        }
        // Workers assigned here that it does not run (it restarted, or never got them).
        let mut missing = Vec::new();
        for t in self.topologies.values() {
            if !t.record.status.is_live() {
                continue;
            }
            for w in 0..t.record.workers {
                if t.record.assignments[w].as_deref() == Some(id)
                    && !held.iter().any(|(tid, hw)| *tid == t.record.id && *hw == w)
                {
                    missing.push((t.record.id.clone(), w));
                }
            }
        }
        for (tid, w) in missing {
            if let Some(t) = self.topologies.get_mut(&tid) {
                t.session.started(w);
            }
            if let Some(t) = self.topologies.get(&tid) {
                let a = self.assignment(t, w);
                self.send(id, ToSupervisor::Assign { assignment: a });
            }
        }
        self.place();
    }

    /// A message from supervisor `sup` (registered).
    fn on_supervisor(&mut self, sup: &str, msg: FromSupervisor) {
        match msg {
            FromSupervisor::Register { .. } | FromSupervisor::Heartbeat => {}
            FromSupervisor::Fetch { .. } => {}
            FromSupervisor::Started { topology, worker } => {
                let Some(t) = self.own(sup, &topology, worker) else {
                    return;
                };
                t.session.started(worker);
                t.record.starts[worker] += 1;
                self.dirty = true;
            }
            FromSupervisor::Refused {
                topology,
                worker,
                message,
            } => {
                if self.own(sup, &topology, worker).is_some() {
                    self.fail(
                        &topology,
                        format!("supervisor {sup} cannot run worker {worker}: {message}"),
                    );
                }
            }
            FromSupervisor::Worker {
                topology,
                worker,
                msg,
            } => {
                let Some(t) = self.own(sup, &topology, worker) else {
                    return;
                };
                let Json(msg) = msg;
                let moved = matches!(msg, FromWorker::Listening { .. });
                if let FromWorker::Listening { addr } = &msg {
                    info!(topology = %topology, worker, supervisor = sup, %addr, "Worker listening.");
                    t.record.addrs[worker] = Some(*addr);
                }
                let mut out = Outbox::new();
                let result = t.session.on_message(worker, msg, &mut out);
                self.dirty |= moved;
                self.deliver(&topology, out);
                if let Err(e) = result {
                    self.fail(&topology, e.to_string());
                }
            }
        }
    }

    /// The live topology `id` if its worker `w` is assigned to `sup`.
    fn own(&mut self, sup: &str, id: &str, w: usize) -> Option<&mut Topology> {
        self.topologies.get_mut(id).filter(|t| {
            t.record.status.is_live()
                && t.record.assignments.get(w).and_then(|a| a.as_deref()) == Some(sup)
        })
    }

    fn find(&self, name: &str) -> Option<String> {
        if self.topologies.contains_key(name) {
            return Some(name.to_string());
        }
        // The live one by that name, else the newest.
        let mut by_name: Vec<&Topology> = self
            .topologies
            .values()
            .filter(|t| t.record.name == name)
            .collect();
        by_name.sort_by(|a, b| {
            (a.record.status.is_live(), a.record.submitted)
                .partial_cmp(&(b.record.status.is_live(), b.record.submitted))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        by_name.last().map(|t| t.record.id.clone())
    }

    fn submit(&mut self, name: String, text: String, binary: String) -> Reply {
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
        };
        info!(topology = %id, workers, "Topology submitted.");
        self.topologies.insert(
            id.clone(),
            Topology {
                record,
                session: Session::new(workers),
            },
        );
        self.dirty = true;
        self.place();
        Reply::Submitted { id }
    }

    fn set_active(&mut self, name: &str, active: bool) -> Reply {
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

    fn kill(&mut self, name: &str, wait_secs: Option<f64>) -> Reply {
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

    fn list(&self) -> Vec<TopologyInfo> {
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

fn not_found(name: &str) -> Reply {
    Reply::Error {
        message: format!("no topology named {name}"),
    }
}

/// Each component's counts over the latest snapshot of every worker, in task order.
fn components_of(session: &Session) -> Vec<ComponentInfo> {
    let mut by: Vec<(u32, ComponentInfo)> = Vec::new();
    for s in session.snapshots().iter().flatten() {
        for task in &s.tasks {
            if task.kind == "acker" {
                continue;
            }
            let c = match by.iter_mut().find(|(_, c)| c.id == task.component) {
                Some((first, c)) => {
                    *first = (*first).min(task.task);
                    c
                }
                None => {
                    by.push((
                        task.task,
                        ComponentInfo {
                            id: task.component.clone(),
                            kind: task.kind.clone(),
                            emitted: 0,
                            acked: 0,
                            failed: 0,
                        },
                    ));
                    &mut by.last_mut().expect("just pushed").1
                }
            };
            c.emitted += task.counts.emitted;
            c.acked += task.counts.acked;
            c.failed += task.counts.failed;
        }
    }
    by.sort_by_key(|(first, _)| *first);
    by.into_iter().map(|(_, c)| c).collect()
}

/// Serves one supervisor connection.
async fn supervisor_conn(
    coord: Shared,
    mut reader: ConnReader,
    mut writer: ConnWriter,
    peer: SocketAddr,
) {
    let (id, slots, workers) = match reader.recv::<FromSupervisor>().await {
        Ok(Some(FromSupervisor::Register { id, slots, workers })) => (id, slots, workers),
        Ok(Some(other)) => {
            warn!(%peer, "A supervisor's first message must be `register`, not {other:?}.");
            return;
        }
        Ok(None) => return,
        Err(e) => {
            warn!(%peer, error = %e, "Lost a supervisor before it registered.");
            return;
        }
    };
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    let (bulk_tx, mut bulk_rx) = mpsc::channel::<ToSupervisor>(4);
    let conn = {
        let mut c = lock(&coord);
        c.next_conn += 1;
        let conn = c.next_conn;
        c.register(&id, slots, workers, Link { conn, ctl: ctl_tx });
        if c.dirty {
            c.save();
        }
        conn
    };
    let sup_id = id.clone();
    let write = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                biased;
                m = ctl_rx.recv() => m,
                m = bulk_rx.recv() => m,
            };
            let Some(msg) = msg else { break };
            if let Err(e) = writer.send(&msg).await {
                warn!(supervisor = %sup_id, error = %e, "Cannot write to a supervisor.");
                break;
            }
        }
    });
    loop {
        let msg = match reader.recv::<FromSupervisor>().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                info!(supervisor = %id, "Supervisor disconnected.");
                break;
            }
            Err(e) => {
                warn!(supervisor = %id, error = %e, "Lost a supervisor.");
                break;
            }
        };
        let mut c = lock(&coord);
        let current = c
            .supervisors
            .get(&id)
            .and_then(|s| s.link.as_ref())
            .is_some_and(|l| l.conn == conn);
        if !current {
            // Dropped for silence meanwhile, or replaced by a newer connection.
            break;
        }
        if let Some(s) = c.supervisors.get_mut(&id) {
            s.last_seen = Instant::now();
        }
        if let FromSupervisor::Fetch { hash } = &msg {
            let store = Arc::clone(&c.store);
            tokio::spawn(send_artifact(store, hash.clone(), bulk_tx.clone()));
        }
        c.on_supervisor(&id, msg);
        if c.dirty {
            c.save();
        }
    }
    {
        let mut c = lock(&coord);
        if let Some(s) = c.supervisors.get_mut(&id) {
            if s.link.as_ref().is_some_and(|l| l.conn == conn) {
                s.link = None;
            }
        }
    }
    write.abort();
}

/// Streams a stored binary to a supervisor in chunks.
async fn send_artifact(store: Arc<ArtifactStore>, hash: String, tx: mpsc::Sender<ToSupervisor>) {
    use tokio::io::AsyncReadExt;
    let missing = |message: String| ToSupervisor::ArtifactMissing {
        hash: hash.clone(),
        message,
    };
    let path = match hash.parse::<Sha256Hex>() {
        Ok(h) if store.contains(&h) => store.path(&h),
        Ok(_) => {
            let _ = tx.send(missing("not stored".into())).await;
            return;
        }
        Err(e) => {
            let _ = tx.send(missing(e.to_string())).await;
            return;
        }
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(missing(e.to_string())).await;
            return;
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            let _ = tx.send(missing(e.to_string())).await;
            return;
        }
    };
    info!(hash = %hash, len, "Sending a binary to a supervisor.");
    let begin = ToSupervisor::ArtifactBegin {
        hash: hash.clone(),
        len,
    };
    if tx.send(begin).await.is_err() {
        return;
    }
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut n = 0;
        while n < CHUNK_SIZE {
            match file.read(&mut buf[n..]).await {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    let _ = tx.send(missing(e.to_string())).await;
                    return;
                }
            }
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let chunk = ToSupervisor::ArtifactChunk {
            hash: hash.clone(),
            data: Chunk(buf),
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
        if n < CHUNK_SIZE {
            break;
        }
    }
    let _ = tx.send(ToSupervisor::ArtifactEnd { hash }).await;
}

/// Serves one client connection: requests until it closes.
async fn client_conn(
    coord: Shared,
    mut reader: ConnReader,
    mut writer: ConnWriter,
    peer: SocketAddr,
) {
    let mut upload: Option<(String, Upload)> = None;
    loop {
        let req = match reader.recv::<Request>().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                warn!(%peer, error = %e, "Lost a client.");
                return;
            }
        };
        let reply = match req {
            Request::HasArtifact { hash } => {
                let c = lock(&coord);
                Some(Reply::Artifact {
                    present: hash
                        .parse::<Sha256Hex>()
                        .is_ok_and(|h| c.store.contains(&h)),
                })
            }
            Request::UploadBegin { hash, len } => {
                let store = Arc::clone(&lock(&coord).store);
                match hash.parse::<Sha256Hex>() {
                    Ok(h) => match store.begin(&h, len) {
                        Ok(u) => {
                            info!(%peer, hash = %hash, len, "Receiving a binary.");
                            upload = Some((hash, u));
                            None
                        }
                        Err(e) => Some(Reply::Error {
                            message: e.to_string(),
                        }),
                    },
                    Err(e) => Some(Reply::Error {
                        message: e.to_string(),
                    }),
                }
            }
            Request::UploadChunk { data } => {
                if let Some((hash, u)) = upload.as_mut() {
                    // Hashing and writing a chunk blocks: let the runtime move the other tasks.
                    if let Err(e) = tokio::task::block_in_place(|| u.write(&data.0)) {
                        let message = format!("upload of {hash} failed: {e}");
                        upload = None;
                        Some(Reply::Error { message })
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            Request::UploadEnd => match upload.take() {
                Some((hash, u)) => match tokio::task::block_in_place(|| u.finish()) {
                    Ok(_) => {
                        info!(%peer, hash = %hash, "Binary stored.");
                        Some(Reply::Uploaded { hash })
                    }
                    Err(e) => {
                        warn!(%peer, hash = %hash, error = %e, "Refused an upload.");
                        Some(Reply::Error {
                            message: e.to_string(),
                        })
                    }
                },
                None => Some(Reply::Error {
                    message: "no upload in progress (or it failed)".into(),
                }),
            },
            Request::Submit {
                name,
                topology,
                binary,
            } => Some(with(&coord, |c| c.submit(name, topology, binary))),
            Request::List => Some(Reply::Topologies {
                topologies: lock(&coord).list(),
            }),
            Request::Kill { name, wait_secs } => Some(with(&coord, |c| c.kill(&name, wait_secs))),
            Request::Activate { name } => Some(with(&coord, |c| c.set_active(&name, true))),
            Request::Deactivate { name } => Some(with(&coord, |c| c.set_active(&name, false))),
            Request::Rebalance { name, workers } => {
                Some(with(&coord, |c| c.rebalance(&name, workers)))
            }
        };
        if let Some(reply) = reply {
            if let Err(e) = writer.send(&reply).await {
                warn!(%peer, error = %e, "Cannot answer a client.");
                return;
            }
        }
    }
}

/// Runs `f` on the state and saves it if it changed.
fn with(coord: &Shared, f: impl FnOnce(&mut Coord) -> Reply) -> Reply {
    let mut c = lock(coord);
    let reply = f(&mut c);
    if c.dirty {
        c.save();
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[topology]\nname = \"t\"\nworkers = 2\n\n[spouts.s]\ntype = \"sequence\"\n";

    /// A coordinator with supervisors `ids` registered, each with its channel.
    fn coord(
        dir: &std::path::Path,
        ids: &[&str],
    ) -> (Coord, Vec<mpsc::UnboundedReceiver<ToSupervisor>>) {
        let mut c = Coord {
            path: dir.join("state.json"),
            secret: Secret::none(),
            store: Arc::new(ArtifactStore::open(dir).unwrap()),
            timeout: Duration::from_secs(60),
            supervisors: BTreeMap::new(),
            topologies: BTreeMap::new(),
            next_conn: 0,
            dirty: false,
            last_tick: Instant::now(),
        };
        let rx = ids
            .iter()
            .map(|id| connect(&mut c, id, Vec::new()))
            .collect();
        (c, rx)
    }

    fn connect(
        c: &mut Coord,
        id: &str,
        workers: Vec<WorkerReport>,
    ) -> mpsc::UnboundedReceiver<ToSupervisor> {
        let (tx, rx) = mpsc::unbounded_channel();
        c.next_conn += 1;
        let conn = c.next_conn;
        c.register(id, 4, workers, Link { conn, ctl: tx });
        rx
    }

    fn drain(rx: &mut mpsc::UnboundedReceiver<ToSupervisor>) -> Vec<ToSupervisor> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    fn assigned(msgs: &[ToSupervisor]) -> Vec<usize> {
        msgs.iter()
            .filter_map(|m| match m {
                ToSupervisor::Assign { assignment } => Some(assignment.worker),
                _ => None,
            })
            .collect()
    }

    fn said(c: &mut Coord, sup: &str, id: &str, worker: usize, msg: FromWorker) {
        c.on_supervisor(
            sup,
            FromSupervisor::Worker {
                topology: id.into(),
                worker,
                msg: Json(msg),
            },
        );
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 2], port))
    }

    fn submitted(c: &mut Coord) -> String {
        let hash = c.store.insert(b"a binary").unwrap().to_string();
        match c.submit("t".into(), TEXT.into(), hash) {
            Reply::Submitted { id } => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_supervisors_worker_moves_and_its_peer_learns_the_new_address() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, mut rx) = coord(dir.path(), &["a", "b", "c"]);
        let id = submitted(&mut c);
        let mut on: Vec<Vec<ToSupervisor>> = rx.iter_mut().map(drain).collect();
        assert_eq!(assigned(&on[0]), [0]);
        assert_eq!(assigned(&on[1]), [1]);
        assert!(assigned(&on[2]).is_empty());
        said(&mut c, "a", &id, 0, FromWorker::Listening { addr: addr(1) });
        said(&mut c, "b", &id, 1, FromWorker::Listening { addr: addr(2) });
        said(&mut c, "a", &id, 0, FromWorker::Running);
        said(&mut c, "b", &id, 1, FromWorker::Running);
        on = rx.iter_mut().map(drain).collect();
        assert!(matches!(
            &on[0][..],
            [ToSupervisor::Worker { worker: 0, .. }]
        ));

        // b goes silent: its worker 1 goes to c (it runs none of t), a hears of the move.
        c.supervisors.get_mut("b").unwrap().last_seen -= Duration::from_secs(61);
        c.tick();
        on = rx.iter_mut().map(drain).collect();
        assert_eq!(assigned(&on[2]), [1]);
        assert!(!c.supervisors.contains_key("b"));
        // A line from b's old worker is not its own any more.
        said(&mut c, "b", &id, 1, FromWorker::Listening { addr: addr(9) });
        assert!(rx.iter_mut().map(drain).all(|m| m.is_empty()));
        c.on_supervisor(
            "c",
            FromSupervisor::Started {
                topology: id.clone(),
                worker: 1,
            },
        );
        said(&mut c, "c", &id, 1, FromWorker::Listening { addr: addr(3) });
        on = rx.iter_mut().map(drain).collect();
        let moved = ToWorker::PeerMoved {
            worker: 1,
            addr: addr(3),
        };
        assert!(
            on[0].iter().any(
                |m| matches!(m, ToSupervisor::Worker { worker: 0, msg, .. } if msg.0 == moved)
            ),
            "{:?}",
            on[0]
        );
        assert!(on[2].iter().any(|m| matches!(
            m,
            ToSupervisor::Worker {
                worker: 1,
                msg: Json(ToWorker::Peers { .. }),
                ..
            }
        )));
        let t = &c.list()[0];
        assert_eq!(t.assignments[1].supervisor.as_deref(), Some("c"));
    }

    #[test]
    fn a_restarted_coordinator_rebuilds_a_topology_from_the_registrations() {
        let dir = tempfile::tempdir().unwrap();
        let (mut c, _rx) = coord(dir.path(), &["a", "b"]);
        let id = submitted(&mut c);
        said(&mut c, "a", &id, 0, FromWorker::Listening { addr: addr(1) });
        said(&mut c, "b", &id, 1, FromWorker::Listening { addr: addr(2) });
        c.save();

        // A new coordinator from the saved state: nothing is sent until both report.
        let saved: Saved = crate::state::load(&dir.path().join("state.json"))
            .unwrap()
            .unwrap();
        let (mut c2, _) = coord(dir.path(), &[]);
        for r in saved.topologies {
            c2.topologies.insert(
                r.id.clone(),
                Topology {
                    session: Session::new(r.workers),
                    record: r,
                },
            );
        }
        let report = |w: usize, port: u16| WorkerReport {
            topology: id.clone(),
            worker: w,
            addr: Some(addr(port)),
            running: true,
            summary: None,
        };
        let mut a = connect(&mut c2, "a", vec![report(0, 1)]);
        let mut b = connect(&mut c2, "b", vec![report(1, 2)]);
        let (a, b) = (drain(&mut a), drain(&mut b));
        assert!(
            assigned(&a).is_empty() && assigned(&b).is_empty(),
            "{a:?} {b:?}"
        );
        assert!(!a
            .iter()
            .chain(&b)
            .any(|m| matches!(m, ToSupervisor::Stop { .. })));
        let t = &c2.list()[0];
        assert_eq!(t.status, Status::Active);
        assert!(t.assignments.iter().all(|w| w.running));
        // Both spouts report done: the new coordinator ends the run.
        said(
            &mut c2,
            "a",
            &id,
            0,
            FromWorker::Status { spouts_done: true },
        );
        said(
            &mut c2,
            "b",
            &id,
            1,
            FromWorker::Status { spouts_done: true },
        );
        c2.tick();
        assert!(c2.topologies[&id].session.finishing());
    }

    #[test]
    fn a_rebalanced_file_keeps_its_values_with_the_new_workers() {
        let text =
            "# comment\n[topology]\nname = \"t\"\nworkers = 3\n\n[spouts.s]\ntype = \"sequence\"\n";
        let out = with_workers(text, 2).unwrap();
        let (spec, diags) = topo_dsl::parse(&out);
        assert!(diags.is_empty(), "{out}");
        assert_eq!(spec.workers, Some(2));
        assert_eq!(spec.name.as_deref(), Some("t"));
        assert_eq!(spec.components.len(), 1);
    }
}
