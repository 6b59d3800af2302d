//! The coordinator daemon (`topo coordinator`): the cluster's state, the placement of
//! workers onto supervisors, and the launcher's part for every topology.
//!
//! # State
//! Supervisors (id, slots) and topologies (status, text, binary, assignments, each
//! worker's last known address) live in `STATE_DIR/state.json`, written with
//! [`crate::state::save_keeping_previous`] after every change (the state before it stays in
//! `state.json.prev`); binaries in `STATE_DIR/artifacts/`. A save that fails is logged and
//! retried every tick until one succeeds.
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
//!
//! # Layout
//! - this module: the options, [`serve`] (a listener and a shutdown signal) and [`run`].
//! - `persist`: what `state.json` holds, loading it (with how to recover from a bad one)
//!   and saving it.
//! - `machine`: the state machine: supervisors, placements, sessions, ends of runs.
//! - `requests`: the client requests (submit, list, kill, activate).
//! - `rebalance`: `topo rebalance`: its checks, the rewritten file, the restart (a
//!   checkpointed topology's state carried over from a committed checkpoint).
//! - `conn`: the connection tasks of supervisors and clients, artifact streaming.
//! - `checkpoints`: the checkpoints of checkpointed topologies, and their rollbacks.
//! - `etcd`: the state and the leader's election in etcd (`--etcd`).
//! - `replica`: standbys copying the leader's artifacts, and the leader serving them.
//! - `handle`: the [`Handle`] an in-process observer (the web UI) reads and drives the
//!   coordinator with, and the taps relayed to the workers.

mod checkpoints;
mod conn;
mod etcd;
mod handle;
mod machine;
mod persist;
mod rebalance;
mod replica;
mod requests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::{JoinError, JoinSet};
use topo_engine::launcher::session::{merge, Outbox, Session};
use topo_engine::launcher::worker::{fingerprint, FromWorker, ToWorker};
use tracing::{error, info, warn};

use conn::{client_conn, supervisor_conn};
pub use etcd::{EtcdOptions, LeaderInfo, Leadership};
pub use handle::{Handle, TopologyView};
use machine::components_of;
use persist::{Rebalance, Record, Saved};
pub use replica::stand_by;

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
    /// The largest resource archive it takes, packed or unpacked.
    pub max_archive_bytes: u64,
}

/// How often the coordinator checks timeouts, placements and ends of runs.
const TICK: Duration = Duration::from_millis(100);

/// After a kill's drain, how long the workers get to send their summaries before they are
/// stopped anyway.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// While saves fail, how often the failure is logged again.
const SAVE_RETRY_LOG: Duration = Duration::from_secs(10);

struct Topology {
    record: Record,
    session: Session,
    /// A checkpointed topology's checkpoints, once opened.
    checkpoints: Option<checkpoints::Checkpoints>,
    /// Its file takes checkpoints.
    checkpointed: bool,
    /// Its checkpoints could not be opened: the next try is not before then.
    checkpoints_retry: Option<Instant>,
    /// Worker index -> it was assigned (again) and has not started yet: what its
    /// supervisor relays of an older incarnation meanwhile is dropped.
    awaiting: Vec<bool>,
}

impl Topology {
    fn new(record: Record) -> Topology {
        let workers = record.workers;
        let mut session = Session::new(workers);
        if record.finishing {
            session.set_finishing();
        }
        Topology {
            session,
            checkpoints: None,
            checkpoints_retry: None,
            checkpointed: topo_dsl::parse(&record.text)
                .0
                .checkpoint_interval_secs
                .is_some(),
            awaiting: vec![false; workers],
            record,
        }
    }
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
    store: Arc<ArtifactStore>,
    /// Resource archives, apart from the binaries (`STATE_DIR/archives/`).
    archives: Arc<ArtifactStore>,
    max_archive: u64,
    timeout: Duration,
    supervisors: BTreeMap<String, SupervisorEntry>,
    topologies: BTreeMap<String, Topology>,
    next_conn: u64,
    dirty: bool,
    /// When a failed save was last logged: failures are logged at most every
    /// [`SAVE_RETRY_LOG`] while they last.
    save_failed_logged: Option<Instant>,
    /// When [`Coord::tick`] last ran: a coordinator that could not run (a stopped
    /// process, a starved machine) does not blame the supervisors for its own silence.
    last_tick: Instant,
    /// The taps attached to each topology, relayed to its workers.
    relays: handle::Relays,
    /// With `--etcd`: where [`Coord::save`] hands the state to the writer task.
    etcd: Option<StateSink>,
    /// When the supervisors were last told [`ToSupervisor::Alive`].
    last_alive: Instant,
}

/// The latest state for the etcd writer task (`None`: nothing to write yet).
type StateSink = tokio::sync::watch::Sender<Option<Arc<Vec<u8>>>>;

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
/// Binds the coordinator's address (`opts.listen`); without a secret only loopback.
pub async fn bind(opts: &CoordinatorOptions) -> anyhow::Result<Listener> {
    Ok(Listener::bind(opts.listen, &opts.secret).await?)
}

/// Binds `opts.listen` and serves until the process is killed: `topo coordinator`.
pub async fn run(opts: CoordinatorOptions) -> anyhow::Result<()> {
    let listener = bind(&opts).await?;
    serve(listener, opts, std::future::pending()).await
}

/// Serves `listener` until `shutdown` completes (`Ok`) or a background task fails (`Err`);
/// an error before that means it could not start (state unreadable). `opts.listen` is not
/// used: the listener is already bound. Connection tasks end with it.
pub async fn serve(
    listener: Listener,
    opts: CoordinatorOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    serve_with(listener, opts, shutdown, |_| {}).await
}

/// [`serve_with`], the state kept in etcd by the leader `lead` instead of
/// `STATE_DIR/state.json`: it ends with an error once the lead is lost (its lease lapsed,
/// etcd unreachable for a lease period, or a write refused), so that a restart rejoins
/// as a standby. Its lease is left to lapse, whether it stops or is killed.
pub async fn serve_led(
    listener: Listener,
    opts: CoordinatorOptions,
    lead: Leadership,
    shutdown: impl Future<Output = ()>,
    observe: impl FnOnce(Handle),
) -> anyhow::Result<()> {
    serve_inner(listener, opts, Some(lead), shutdown, observe).await
}

/// [`serve`], handing `observe` a [`Handle`] on the coordinator once its state is loaded
/// (the web UI of `topo coordinator --ui` starts there).
pub async fn serve_with(
    listener: Listener,
    opts: CoordinatorOptions,
    shutdown: impl Future<Output = ()>,
    observe: impl FnOnce(Handle),
) -> anyhow::Result<()> {
    serve_inner(listener, opts, None, shutdown, observe).await
}

async fn serve_inner(
    listener: Listener,
    opts: CoordinatorOptions,
    mut lead: Option<Leadership>,
    shutdown: impl Future<Output = ()>,
    observe: impl FnOnce(Handle),
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", opts.state_dir.display()))?;
    let store = ArtifactStore::open(&opts.state_dir)?;
    let archives = ArtifactStore::open_in(&opts.state_dir, "archives", "archive-transfers.json")?;
    let path = opts.state_dir.join("state.json");
    let saved = match lead.as_mut() {
        None => persist::load(&path)?,
        Some(l) => {
            let bytes = l.load().await?;
            persist::parse_etcd(l.state_key(), bytes.as_deref())?
        }
    };
    if !opts.secret.is_set() {
        warn!("No cluster secret configured: listening on loopback only, connections are authenticated with an empty key.");
    }
    let mut coord = Coord::new(path, Arc::new(store), opts.supervisor_timeout);
    coord.archives = Arc::new(archives);
    coord.max_archive = opts.max_archive_bytes;
    coord.restore(saved);
    coord.collect_archives();
    let (sink, latest) = tokio::sync::watch::channel(None);
    let clock = lead.as_ref().map(Leadership::clock);
    let coord_is_led = lead.is_some();
    if lead.is_some() {
        coord.etcd = Some(sink);
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
    observe(Handle(Arc::clone(&coord)));
    let ticker = Arc::clone(&coord);
    let mut ticker = tokio::spawn(async move {
        let mut every = tokio::time::interval(TICK);
        loop {
            every.tick().await;
            // A leader that may have lost its lease does nothing more.
            if clock.as_ref().is_none_or(etcd::LeaseClock::held) {
                lock(&ticker).tick();
            }
        }
    });
    let (mut kept, mut writer) = match lead {
        Some(l) => (
            tokio::spawn(l.keep_alive()),
            tokio::spawn(etcd_writer(l, latest)),
        ),
        None => (
            tokio::spawn(std::future::pending::<String>()),
            tokio::spawn(std::future::pending::<String>()),
        ),
    };
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        while conns.try_join_next().is_some() {}
        let accepted = tokio::select! {
            ended = &mut ticker => return Err(background_failed("ticker", ended)),
            why = &mut kept => {
                ticker.abort();
                writer.abort();
                let why = why.unwrap_or_else(|e| format!("its keep-alive task stopped: {e}"));
                error!(why = %why, "Lost the lead; stopping (a restart rejoins as a standby).");
                anyhow::bail!("lost the lead: {why}");
            }
            why = &mut writer => {
                ticker.abort();
                kept.abort();
                let why = why.unwrap_or_else(|e| format!("its writer task stopped: {e}"));
                error!(why = %why, "Lost the lead; stopping (a restart rejoins as a standby).");
                anyhow::bail!("lost the lead: {why}");
            }
            () = &mut shutdown => {
                ticker.abort();
                kept.abort();
                writer.abort();
                info!("Coordinator stopped.");
                return Ok(());
            }
            accepted = listener.accept() => accepted,
        };
        let (conn, role, peer) = match accepted {
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
                conns.spawn(supervisor_conn(coord, reader, writer, peer));
            }
            Role::Client => {
                conns.spawn(client_conn(coord, reader, writer, peer));
            }
            // A standby copying the artifacts.
            Role::Coordinator if coord_is_led => {
                conns.spawn(replica::standby_conn(coord, reader, writer, peer));
            }
            Role::Coordinator => warn!(%peer, "Refused a connection from another coordinator."),
        }
    }
}

/// Writes each latest state to etcd, retrying what etcd did not answer; returns why it
/// stopped: a write refused because this coordinator is no longer the leader.
async fn etcd_writer(
    mut lead: Leadership,
    mut latest: tokio::sync::watch::Receiver<Option<Arc<Vec<u8>>>>,
) -> String {
    let mut failing = false;
    loop {
        if latest.changed().await.is_err() {
            lead.resign().await;
            return "the coordinator stopped".to_string();
        }
        loop {
            let Some(state) = latest.borrow_and_update().clone() else {
                break;
            };
            match lead.save(&state).await {
                Ok(()) => {
                    if std::mem::take(&mut failing) {
                        info!("Saved the state in etcd again.");
                    }
                    break;
                }
                Err(e @ etcd::WriteError::Deposed) => return e.to_string(),
                Err(e) => {
                    if !std::mem::replace(&mut failing, true) {
                        error!(error = %e, "Cannot save the state in etcd; retrying.");
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// The error that ends the coordinator when background task `name` stopped: it never
/// returns on its own, so it panicked (or was cancelled).
fn background_failed(name: &str, ended: Result<(), JoinError>) -> anyhow::Error {
    let why = match ended {
        Ok(()) => "it returned".to_string(),
        Err(e) if e.is_panic() => {
            let payload = e.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-text panic".into());
            format!("it panicked: {text}")
        }
        Err(e) => format!("it was cancelled: {e}"),
    };
    error!(task = name, why = %why, "A background task of the coordinator stopped.");
    anyhow::anyhow!("the coordinator's {name} task stopped ({why}); the coordinator cannot go on")
}

/// Loads `data` as `DIR/state.json` in `dir` as a starting coordinator does; a state
/// that loads is taken over, ticked, and each of its supervisors dropped (which moves
/// their workers). For [`crate::fuzzing::state_json`].
pub(crate) fn fuzz_state(dir: &Path, data: &[u8]) {
    let path = dir.join("state.json");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(saved) = persist::load(&path) else {
        return;
    };
    let Ok(store) = ArtifactStore::open(dir) else {
        return;
    };
    let mut c = Coord::new(path, Arc::new(store), Duration::from_secs(10));
    c.restore(saved);
    c.tick();
    let ids: Vec<String> = c.supervisors.keys().cloned().collect();
    for id in ids {
        c.drop_supervisor(&id);
    }
    c.tick();
    let _ = c.list();
}

impl Coord {
    fn new(path: PathBuf, store: Arc<ArtifactStore>, timeout: Duration) -> Coord {
        Coord {
            path,
            archives: Arc::clone(&store),
            max_archive: crate::archive::DEFAULT_MAX_BYTES,
            store,
            timeout,
            supervisors: BTreeMap::new(),
            topologies: BTreeMap::new(),
            next_conn: 0,
            dirty: false,
            save_failed_logged: None,
            last_tick: Instant::now(),
            relays: handle::Relays::new(),
            etcd: None,
            last_alive: Instant::now(),
        }
    }

    /// Takes over a loaded state: supervisors wait to register again.
    fn restore(&mut self, saved: Saved) {
        for s in saved.supervisors {
            self.supervisors.insert(
                s.id,
                SupervisorEntry {
                    slots: s.slots,
                    link: None,
                    last_seen: Instant::now(),
                },
            );
        }
        for record in saved.topologies {
            self.topologies
                .insert(record.id.clone(), Topology::new(record));
        }
    }
}
