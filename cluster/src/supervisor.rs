//! The supervisor daemon (`topo supervisor`): runs the workers the coordinator assigns to
//! this host.
//!
//! It registers with the coordinator (its id is its advertised address: the IP others
//! reach this host at, with its listen port; see [`advertised`]; it reports its slots
//! and the workers it runs, so a restarted coordinator rebuilds its view), heartbeats
//! every second and dials again with backoff when the coordinator goes away; its workers
//! keep running meanwhile.
//!
//! On an assignment it fetches the binary and the topology's resource archive if its
//! [`ArtifactStore`]s lack them (once per hash: a store verifies the hash before the file
//! appears under its name), re-verifies the stored binary, unpacks the archive into the
//! topology's work directory `DIR/work/<id>/` after checking every entry
//! ([`crate::archive`]), builds the virtualenv of its `python_requirements` once per
//! requirements hash ([`venv`]), and starts `BINARY worker --index I` there, the venv's
//! `bin/` first on its `PATH`, with the launcher's JSON-lines
//! control protocol on its control channel, relaying those lines to and from the
//! coordinator. Workers are the engine's [`WorkerProcess`]es, exactly as `topo run`
//! starts them: a scrubbed environment, a control channel of their own, their stdout and
//! stderr on the supervisor's, death with the supervisor. Workers listen on this
//! supervisor's listen IP, and their addresses reach the coordinator with the advertised
//! IP in its place (a worker bound to `0.0.0.0` is not reachable at `0.0.0.0`). A worker
//! that exits before its summary, or is silent for the worker timeout, is started again
//! by the shared [`RestartPolicy`] (and the coordinator is told, so its peers learn the
//! new address).
//!
//! [`serve`] takes its listener and a shutdown signal (as mini-redis's `server::run`), so
//! a program or a test embeds it; at the shutdown its workers are killed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use topo_engine::launcher::worker::hex;
use topo_engine::launcher::{
    venv, FromWorker, Output, RestartPolicy, ToWorker, WorkerCommand, WorkerEvent, WorkerProcess,
};
use topo_engine::summary::RunSummary;
use tracing::{error, info, warn};

use crate::artifacts::{ArtifactStore, Sha256Hex, Upload};
use crate::control::{self, Listener, Role};
use crate::proto::{
    Assignment, FromSupervisor, Json, ToSupervisor, WorkerReport, COORDINATOR_SILENCE,
};
use crate::secret::Secret;

mod prepare;

use prepare::{work_dir, Preparation, Prepared};

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Where its artifacts (and `transfers.json`) and the workers' folders live.
    pub dir: PathBuf,
    /// The coordinator's address (the first of `coordinators`; the one the advertised
    /// address is probed towards).
    pub coordinator: SocketAddr,
    /// Every coordinator's address, standbys too: dialed in turn until one, the leader,
    /// accepts (only the leader listens).
    pub coordinators: Vec<SocketAddr>,
    /// Workers it may run at once.
    pub slots: usize,
    /// The cluster secret.
    pub secret: Secret,
    /// When a worker that died or hangs is started again, and when it is reported as
    /// unable to run.
    pub restart: RestartPolicy,
    /// The IP the coordinator and other hosts' workers reach this host at (see
    /// [`advertised`]); `None`: the listen IP when it is specific.
    pub advertise: Option<IpAddr>,
    /// The largest resource archive it fetches and unpacks, packed or unpacked.
    pub max_archive_bytes: u64,
    /// How long building one topology's Python virtualenv may take.
    pub venv_timeout: Duration,
}

impl SupervisorOptions {
    /// Options with the defaults: 4 slots, a 10 s worker timeout, 10 restarts per worker.
    pub fn new(dir: PathBuf, coordinator: SocketAddr, secret: Secret) -> Self {
        SupervisorOptions {
            dir,
            coordinator,
            coordinators: vec![coordinator],
            slots: 4,
            secret,
            restart: RestartPolicy::default(),
            advertise: None,
            max_archive_bytes: crate::archive::DEFAULT_MAX_BYTES,
            venv_timeout: venv::DEFAULT_TIMEOUT,
        }
    }
}

/// How often it heartbeats.
const HEARTBEAT: Duration = Duration::from_secs(1);

type Key = (String, usize);

/// What the threads report to the supervisor's loop.
enum Event {
    /// A worker's control line; `None` at EOF (it exited).
    Line {
        key: Key,
        incarnation: u64,
        line: Option<FromWorker>,
    },
    /// A fetched binary is stored (or refused).
    Fetched {
        hash: String,
        /// Which download (a later one for the same hash supersedes it).
        download: u64,
        result: Result<(), String>,
    },
    /// The stored binary of an assignment was hashed again before its start, and its
    /// work directory prepared (resources unpacked, virtualenv built).
    Verified {
        assignment: Assignment,
        restarts: u32,
        result: Result<Prepared, String>,
    },
}

struct Worker {
    assignment: Assignment,
    /// The hash of its virtualenv's requirements.
    venv: Option<String>,
    process: WorkerProcess,
    incarnation: u64,
    addr: Option<SocketAddr>,
    running: bool,
    summary: Option<RunSummary>,
    restarts: u32,
}

struct Sup {
    opts: SupervisorOptions,
    id: String,
    /// The IP its workers listen on.
    ip: IpAddr,
    /// The IP others reach them at.
    advertise: IpAddr,
    store: Arc<ArtifactStore>,
    /// Resource archives (`DIR/archives/`).
    archives: Arc<ArtifactStore>,
    /// Fetches in progress that are resource archives (the rest are binaries).
    fetching_archives: HashSet<String>,
    /// Held while a topology's resources are unpacked.
    unpacking: Arc<std::sync::Mutex<()>>,
    workers: BTreeMap<Key, Worker>,
    /// Workers whose binary is being verified before their start, with the assignment
    /// they start with (a worker stopped and assigned again meanwhile, to restore another
    /// checkpoint, starts with the newer one).
    starting: HashMap<Key, Assignment>,
    /// Assignments waiting for their binary, by hash.
    pending: HashMap<String, Vec<Assignment>>,
    /// Downloads in progress: chunks go to a thread that writes them (`None`: the end).
    downloads: HashMap<String, std::sync::mpsc::Sender<Option<Vec<u8>>>>,
    /// The latest download started per hash: the result of an older one (cut short by a
    /// lost coordinator) must not refuse the assignments waiting for the new one.
    latest_download: HashMap<String, u64>,
    next_download: u64,
    events: mpsc::UnboundedSender<Event>,
    next_incarnation: u64,
    /// Sends to the coordinator while connected.
    link: Option<mpsc::UnboundedSender<FromSupervisor>>,
}

/// The IP others reach a supervisor listening on `listen` at: `advertise` when given, the
/// listen IP when it is specific, and for an unspecified one (`0.0.0.0`, `::`) the
/// address this host reaches `coordinator` from (the kernel's choice of source address for
/// that route; nothing is sent).
pub fn advertised(
    listen: SocketAddr,
    advertise: Option<IpAddr>,
    coordinator: SocketAddr,
) -> std::io::Result<IpAddr> {
    if let Some(ip) = advertise {
        return Ok(ip);
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen.ip());
    }
    let any: SocketAddr = if coordinator.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = std::net::UdpSocket::bind(any)?;
    probe.connect(coordinator)?;
    Ok(probe.local_addr()?.ip())
}

/// Runs the supervisor on `listener` (its workers listen on its IP) until `shutdown`
/// completes, then kills its workers; an error means it could not start. Its id is its
/// [`advertised`] IP with the listener's port.
pub async fn serve(
    listener: Listener,
    opts: SupervisorOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if !opts.secret.is_set() {
        warn!("No cluster secret configured: loopback only, connections are authenticated with an empty key.");
    }
    let local = listener.local_addr();
    let ip = local.ip();
    let advertise = advertised(local, opts.advertise, opts.coordinator).map_err(|e| {
        anyhow::anyhow!("cannot find the address to advertise for {local} (pass --advertise): {e}")
    })?;
    if opts.advertise.is_none() && ip.is_unspecified() {
        info!(%advertise, "Advertising the address this host reaches the coordinator from; --advertise chooses another.");
    }
    let id = SocketAddr::new(advertise, local.port()).to_string();
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", opts.dir.display()))?;
    let store = ArtifactStore::open(&opts.dir)?;
    let archives = ArtifactStore::open_in(&opts.dir, "archives", "archive-transfers.json")?;
    // Nothing talks to the supervisor's own address yet; accepting keeps it reserved.
    let accepting = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((_, role, peer)) => {
                    info!(%peer, %role, "Closed a connection: supervisors take none.")
                }
                Err(e) => warn!(error = %e, "Accept failed."),
            }
        }
    });
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let (coord_tx, mut coord_rx) = mpsc::unbounded_channel::<(u64, Option<ToSupervisor>)>();
    let (conn_tx, mut conn_rx) = mpsc::channel::<control::Conn>(1);
    let mut sup = Sup {
        id: id.clone(),
        ip,
        advertise,
        store: Arc::new(store),
        archives: Arc::new(archives),
        fetching_archives: HashSet::new(),
        unpacking: Arc::new(std::sync::Mutex::new(())),
        workers: BTreeMap::new(),
        starting: HashMap::new(),
        pending: HashMap::new(),
        downloads: HashMap::new(),
        latest_download: HashMap::new(),
        next_download: 0,
        events: ev_tx,
        next_incarnation: 0,
        link: None,
        opts,
    };
    info!(id = %id, coordinator = %sup.opts.coordinator, slots = sup.opts.slots, "Supervisor started.");
    let mut generation = 0u64;
    let mut connecting = false;
    let mut tick = tokio::time::interval(HEARTBEAT / 4);
    let mut beat = Instant::now();
    // When the coordinator was last heard from.
    let mut heard = Instant::now();
    tokio::pin!(shutdown);
    loop {
        if sup.link.is_none() && !connecting {
            connecting = true;
            tokio::spawn(dial(
                sup.opts.coordinators.clone(),
                sup.opts.secret.clone(),
                conn_tx.clone(),
            ));
        }
        tokio::select! {
            () = &mut shutdown => {
                info!(workers = sup.workers.len(), "Supervisor shutting down; stopping its workers.");
                accepting.abort();
                // Dropping a worker process kills it.
                sup.workers.clear();
                return Ok(());
            }
            Some(conn) = conn_rx.recv() => {
                connecting = false;
                generation += 1;
                let gen = generation;
                let coordinator = conn.peer_addr();
                heard = Instant::now();
                let (mut reader, mut writer) = conn.split();
                let (tx, mut rx) = mpsc::unbounded_channel::<FromSupervisor>();
                let _ = tx.send(sup.register());
                sup.link = Some(tx);
                tokio::spawn(async move {
                    while let Some(msg) = rx.recv().await {
                        if writer.send(&msg).await.is_err() {
                            break;
                        }
                    }
                });
                let coord_tx = coord_tx.clone();
                tokio::spawn(async move {
                    loop {
                        match reader.recv::<ToSupervisor>().await {
                            Ok(Some(m)) => {
                                if coord_tx.send((gen, Some(m))).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                warn!(error = %e, "Lost the coordinator.");
                                break;
                            }
                        }
                    }
                    let _ = coord_tx.send((gen, None));
                });
                info!(%coordinator, "Connected to the coordinator.");
            }
            Some((gen, msg)) = coord_rx.recv() => {
                if gen != generation {
                    continue;
                }
                match msg {
                    Some(m) => {
                        heard = Instant::now();
                        sup.on_coordinator(m);
                    }
                    None => {
                        warn!("The coordinator is gone; its workers keep running. Reconnecting.");
                        sup.lost_coordinator();
                    }
                }
            }
            Some(ev) = ev_rx.recv() => sup.on_event(ev),
            _ = tick.tick() => {
                if beat.elapsed() >= HEARTBEAT {
                    beat = Instant::now();
                    sup.tell(FromSupervisor::Heartbeat);
                }
                sup.check_silent();
                if sup.link.is_some() && heard.elapsed() > COORDINATOR_SILENCE {
                    warn!(silent_secs = heard.elapsed().as_secs_f64(), "The coordinator is silent; its workers keep running. Dialing the coordinators again.");
                    // What the old connection still delivers is ignored.
                    generation += 1;
                    sup.lost_coordinator();
                }
            }
        }
    }
}

/// Dials the coordinators in turn until one answers (backoff 100 ms to 2 s between rounds).
async fn dial(addrs: Vec<SocketAddr>, secret: Secret, out: mpsc::Sender<control::Conn>) {
    let mut backoff = Duration::from_millis(100);
    let mut logged = false;
    loop {
        for &addr in &addrs {
            match control::connect(addr, &secret, Role::Supervisor).await {
                Ok(conn) => {
                    let _ = out.send(conn).await;
                    return;
                }
                Err(e) => {
                    if !logged {
                        warn!(coordinator = %addr, error = %e, "Cannot reach the coordinator; retrying.");
                    }
                }
            }
        }
        logged = true;
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

impl Sup {
    /// Forgets the connection to the coordinator (it dials again).
    fn lost_coordinator(&mut self) {
        self.link = None;
        // Assigned again after the next registration, fetched again then.
        self.downloads.clear();
        self.latest_download.clear();
        self.pending.clear();
        self.fetching_archives.clear();
    }

    fn tell(&self, msg: FromSupervisor) {
        if let Some(link) = &self.link {
            let _ = link.send(msg);
        }
    }

    fn register(&self) -> FromSupervisor {
        FromSupervisor::Register {
            id: self.id.clone(),
            slots: self.opts.slots,
            workers: self
                .workers
                .iter()
                .map(|((topology, worker), w)| WorkerReport {
                    topology: topology.clone(),
                    worker: *worker,
                    addr: w.addr,
                    running: w.running,
                    summary: w.summary.clone(),
                })
                .collect(),
        }
    }

    fn on_coordinator(&mut self, msg: ToSupervisor) {
        match msg {
            ToSupervisor::Registered => info!("Registered with the coordinator."),
            ToSupervisor::Alive => {}
            ToSupervisor::Assign { assignment } => self.assign(assignment),
            ToSupervisor::Stop { topology, worker } => {
                if let Some(mut w) = self.workers.remove(&(topology.clone(), worker)) {
                    info!(topology = %topology, worker, pid = w.process.pid(), "Stopping a worker.");
                    w.process.kill();
                }
                self.starting.remove(&(topology.clone(), worker));
                for waiting in self.pending.values_mut() {
                    waiting.retain(|a| !(a.topology == topology && a.worker == worker));
                }
            }
            ToSupervisor::Worker {
                topology,
                worker,
                msg,
            } => {
                if let Some(w) = self.workers.get_mut(&(topology, worker)) {
                    w.process.send(&msg.0);
                }
            }
            ToSupervisor::ArtifactBegin { hash, len } => {
                let archive = self.fetching_archives.contains(&hash);
                let max = self.opts.max_archive_bytes;
                let store = if archive { &self.archives } else { &self.store };
                let upload = hash
                    .parse::<Sha256Hex>()
                    .map_err(|e| e.to_string())
                    .and_then(|h| {
                        if archive && len > max {
                            return Err(format!(
                                "the resource archive is {len} bytes, over this supervisor's limit of {max} bytes"
                            ));
                        }
                        store.begin(&h, len).map_err(|e| e.to_string())
                    });
                match upload {
                    Ok(u) => {
                        if archive {
                            info!(hash = %hash, len, "Fetching a resource archive.");
                        } else {
                            info!(hash = %hash, len, "Fetching a binary.");
                        }
                        self.next_download += 1;
                        let download = self.next_download;
                        self.latest_download.insert(hash.clone(), download);
                        match self.write_in_thread(hash.clone(), download, u) {
                            Ok(tx) => {
                                self.downloads.insert(hash, tx);
                            }
                            Err(e) => self.refuse_pending(&hash, &e),
                        }
                    }
                    Err(e) => self.refuse_pending(&hash, &e),
                }
            }
            ToSupervisor::ArtifactChunk { hash, data } => {
                if let Some(tx) = self.downloads.get(&hash) {
                    let _ = tx.send(Some(data.0));
                }
            }
            ToSupervisor::ArtifactEnd { hash } => {
                if let Some(tx) = self.downloads.remove(&hash) {
                    let _ = tx.send(None);
                }
            }
            ToSupervisor::ArtifactMissing { hash, message } => {
                self.refuse_pending(&hash, &format!("the coordinator cannot send it: {message}"));
            }
            // The coordinator closes the connection next; dialing again may find the id free.
            ToSupervisor::Refused { message } => {
                error!("The coordinator refused this supervisor: {message}");
            }
        }
    }

    /// A thread that writes a download's chunks (hashing and writing 100 MB must not hold
    /// up the heartbeats) and reports the result as [`Event::Fetched`].
    fn write_in_thread(
        &self,
        hash: String,
        download: u64,
        mut upload: Upload,
    ) -> Result<std::sync::mpsc::Sender<Option<Vec<u8>>>, String> {
        let (tx, rx) = std::sync::mpsc::channel::<Option<Vec<u8>>>();
        let events = self.events.clone();
        std::thread::Builder::new()
            .name("fetch".into())
            .spawn(move || {
                let mut failed = None;
                let mut complete = false;
                while let Ok(msg) = rx.recv() {
                    match msg {
                        Some(chunk) if failed.is_none() => {
                            if let Err(e) = upload.write(&chunk) {
                                failed = Some(e.to_string());
                            }
                        }
                        Some(_) => {}
                        None => {
                            complete = true;
                            break;
                        }
                    }
                }
                let result = match failed {
                    Some(e) => Err(e),
                    None if !complete => Err("the download was cut short".to_string()),
                    None => upload.finish().map(|_| ()).map_err(|e| e.to_string()),
                };
                let _ = events.send(Event::Fetched {
                    hash,
                    download,
                    result,
                });
            })
            .map(|_| tx)
            .map_err(|e| format!("cannot start a thread: {e}"))
    }

    fn refuse_pending(&mut self, hash: &str, message: &str) {
        let what = if self.fetching_archives.remove(hash) {
            "resource archive"
        } else {
            "binary"
        };
        for a in self.pending.remove(hash).unwrap_or_default() {
            // Waiting for another artifact too: that one will not start it either.
            for waiting in self.pending.values_mut() {
                waiting.retain(|p| !(p.topology == a.topology && p.worker == a.worker));
            }
            error!(topology = %a.topology, worker = a.worker, "Cannot run the worker: {message}");
            self.tell(FromSupervisor::Refused {
                topology: a.topology,
                worker: a.worker,
                message: format!("{what} {hash}: {message}"),
            });
        }
    }

    /// Starts the worker of `a` once its binary and resource archive are stored,
    /// fetching each that is not (once per hash, whoever waits for it).
    fn assign(&mut self, a: Assignment) {
        let key = (a.topology.clone(), a.worker);
        if self.workers.contains_key(&key) || self.starting.contains_key(&key) {
            return;
        }
        let mut missing = Vec::new();
        if !a
            .binary
            .parse::<Sha256Hex>()
            .is_ok_and(|h| self.store.contains(&h))
        {
            missing.push((a.binary.clone(), false));
        }
        if let Some(r) = &a.resources {
            if !r
                .parse::<Sha256Hex>()
                .is_ok_and(|h| self.archives.contains(&h))
            {
                missing.push((r.clone(), true));
            }
        }
        if missing.is_empty() {
            // A download can land on disk before its event arrives: whatever still waits
            // for it must not start this worker a second time.
            for waiting in self.pending.values_mut() {
                waiting.retain(|p| !(p.topology == a.topology && p.worker == a.worker));
            }
            self.start(a, 0);
            return;
        }
        for (hash, archive) in missing {
            let waiting = self.pending.entry(hash.clone()).or_default();
            let first = waiting.is_empty();
            if !waiting
                .iter()
                .any(|p| p.topology == a.topology && p.worker == a.worker)
            {
                waiting.push(a.clone());
            }
            if first {
                if archive {
                    self.fetching_archives.insert(hash.clone());
                }
                self.tell(FromSupervisor::Fetch { hash });
            }
        }
    }

    /// The archives and virtualenvs its workers (running, starting or waiting) use:
    /// garbage collection keeps them.
    fn in_use(&self) -> (HashSet<Sha256Hex>, HashSet<String>) {
        let assignments = self
            .workers
            .values()
            .map(|w| &w.assignment)
            .chain(self.pending.values().flatten());
        let archives = assignments
            .filter_map(|a| a.resources.as_ref()?.parse().ok())
            .collect();
        let venvs = self
            .workers
            .values()
            .filter_map(|w| w.venv.clone())
            .collect();
        (archives, venvs)
    }

    /// Starts (again) the worker of `a`; `restarts` so far. Its binary is hashed again
    /// on a thread first ([`Event::Verified`] continues).
    fn start(&mut self, a: Assignment, restarts: u32) {
        let key = (a.topology.clone(), a.worker);
        if self.starting.contains_key(&key) {
            return;
        }
        self.starting.insert(key, a.clone());
        let prep = Preparation {
            store: Arc::clone(&self.store),
            archives: Arc::clone(&self.archives),
            unpacking: Arc::clone(&self.unpacking),
            dir: self.opts.dir.clone(),
            max_archive: self.opts.max_archive_bytes,
            venv_timeout: self.opts.venv_timeout,
            in_use: self.in_use(),
        };
        let events = self.events.clone();
        let spawned = std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || {
                let result = prep.run(&a);
                let _ = events.send(Event::Verified {
                    assignment: a,
                    restarts,
                    result,
                });
            });
        if let Err(e) = spawned {
            error!(error = %e, "Cannot start a thread.");
        }
    }

    /// The binary of `a` verified and its work directory prepared (or not): start the
    /// process.
    fn verified(&mut self, a: Assignment, restarts: u32, result: Result<Prepared, String>) {
        let key = (a.topology.clone(), a.worker);
        if self.starting.get(&key) != Some(&a) {
            return; // Stopped meanwhile (and maybe assigned again).
        }
        self.starting.remove(&key);
        match result.and_then(|p| self.spawn(&a, &p, restarts)) {
            Ok(w) => {
                self.workers.insert(key, w);
                self.tell(FromSupervisor::Started {
                    topology: a.topology,
                    worker: a.worker,
                });
            }
            Err(message) => {
                error!(topology = %a.topology, worker = a.worker, "Cannot start the worker: {message}");
                self.tell(FromSupervisor::Refused {
                    topology: a.topology,
                    worker: a.worker,
                    message,
                });
            }
        }
    }

    fn spawn(&mut self, a: &Assignment, p: &Prepared, restarts: u32) -> Result<Worker, String> {
        let exe = p.exe.as_path();
        let base_dir = work_dir(&self.opts.dir, &a.topology);
        std::fs::create_dir_all(&base_dir)
            .map_err(|e| format!("cannot create {}: {e}", base_dir.display()))?;
        self.next_incarnation += 1;
        let incarnation = self.next_incarnation;
        let key = (a.topology.clone(), a.worker);
        let command = WorkerCommand {
            exe: exe.to_path_buf(),
            index: a.worker,
            run_id: a.topology.clone(),
            dir: Some(base_dir.clone()),
            output: Output::Inherit,
            stdin: false,
            path_prefix: p.venv.as_ref().map(venv::Venv::bin),
        };
        let tx = self.events.clone();
        let mut process = WorkerProcess::spawn(&command, move |ev| {
            let line = match ev {
                WorkerEvent::Message(msg) => Some(msg),
                WorkerEvent::Closed => None,
            };
            tx.send(Event::Line {
                key: key.clone(),
                incarnation,
                line,
            })
            .is_ok()
        })
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        info!(topology = %a.topology, worker = a.worker, pid = process.pid(), restarts, "Worker started.");
        process.send(&ToWorker::Start {
            topology: a.text.clone(),
            base_dir,
            worker: a.worker,
            // Derived here, from the cluster secret: the worker key never travels
            // between the coordinator and a supervisor.
            secret: hex(&self.opts.secret.topology_key(&a.topology)),
            fingerprint: a.fingerprint,
            bind: Some(self.ip),
            restore: a.restore,
        });
        if a.inactive {
            process.send(&ToWorker::Deactivate);
        }
        Ok(Worker {
            assignment: a.clone(),
            venv: p.venv.as_ref().map(|v| v.hash.clone()),
            process,
            incarnation,
            addr: None,
            running: false,
            summary: None,
            restarts,
        })
    }

    fn on_event(&mut self, ev: Event) {
        let (key, incarnation, line) = match ev {
            Event::Line {
                key,
                incarnation,
                line,
            } => (key, incarnation, line),
            Event::Fetched {
                hash,
                download,
                result,
            } => {
                match result {
                    Ok(()) => {
                        if self.fetching_archives.remove(&hash) {
                            info!(hash = %hash, "Resource archive stored.");
                        } else {
                            info!(hash = %hash, "Binary stored.");
                        }
                        for a in self.pending.remove(&hash).unwrap_or_default() {
                            self.assign(a);
                        }
                    }
                    Err(e) if self.latest_download.get(&hash) != Some(&download) => {
                        info!(hash = %hash, error = %e, "An earlier download of a binary ended.");
                    }
                    Err(e) => {
                        warn!(hash = %hash, error = %e, "Refused a binary.");
                        self.refuse_pending(&hash, &e);
                    }
                }
                return;
            }
            Event::Verified {
                assignment,
                restarts,
                result,
            } => return self.verified(assignment, restarts, result),
        };
        let Some(w) = self.workers.get_mut(&key) else {
            return;
        };
        if w.incarnation != incarnation {
            return;
        }
        w.process.heard();
        let Some(mut msg) = line else {
            let done = w.summary.is_some();
            let status = w.process.wait();
            if done {
                info!(topology = %key.0, worker = key.1, "Worker exited after its summary.");
                self.workers.remove(&key);
            } else {
                self.restart(&key, &format!("exited ({status})"));
            }
            return;
        };
        match &mut msg {
            FromWorker::Listening { addr } => {
                // It listens on our listen IP; others reach it at the advertised one.
                addr.set_ip(self.advertise);
                w.addr = Some(*addr);
                w.running = false;
            }
            FromWorker::Running => w.running = true,
            FromWorker::Summary { summary } => w.summary = Some(summary.clone()),
            _ => {}
        }
        self.tell(FromSupervisor::Worker {
            topology: key.0,
            worker: key.1,
            msg: Json(msg),
        });
    }

    fn restart(&mut self, key: &Key, why: &str) {
        let Some(mut old) = self.workers.remove(key) else {
            return;
        };
        old.process.kill();
        let restarts = old.restarts + 1;
        warn!(topology = %key.0, worker = key.1, restarts, "Worker {why}; restarting it.");
        if !self.opts.restart.allows(old.restarts) {
            let message = format!("worker {} died {} times; giving up", key.1, old.restarts);
            error!(topology = %key.0, "{message}");
            self.tell(FromSupervisor::Refused {
                topology: key.0.clone(),
                worker: key.1,
                message,
            });
            return;
        }
        self.start(old.assignment, restarts);
    }

    fn check_silent(&mut self) {
        let silent: Vec<Key> = self
            .workers
            .iter()
            .filter(|(_, w)| w.summary.is_none() && self.opts.restart.hangs(&w.process))
            .map(|(k, _)| k.clone())
            .collect();
        for key in silent {
            self.restart(&key, "stopped heartbeating");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serve_runs_embedded_and_returns_at_its_shutdown_signal() {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = Secret::none();
        let listener = Listener::bind("127.0.0.1:0".parse().expect("addr"), &secret)
            .await
            .expect("bind");
        let addr = listener.local_addr();
        // A coordinator address nobody listens on: the supervisor keeps dialing.
        let nobody = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let coordinator = nobody.local_addr().expect("addr");
        drop(nobody);
        let opts = SupervisorOptions::new(dir.path().join("sup"), coordinator, secret);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(serve(listener, opts, async {
            let _ = stopped.await;
        }));
        // It serves: its folder exists and its port accepts.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir.path().join("sup").exists() {
            assert!(Instant::now() < deadline, "the supervisor did not start");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("the supervisor's port accepts");
        stop.send(())
            .expect("the supervisor waits for its shutdown");
        let result = tokio::time::timeout(Duration::from_secs(10), served)
            .await
            .expect("serve returns at the shutdown signal")
            .expect("serve does not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}
