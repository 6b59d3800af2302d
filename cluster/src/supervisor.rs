//! The supervisor daemon (`topo supervisor`): runs the workers the coordinator assigns to
//! this host.
//!
//! It registers with the coordinator (its id is its listen address; it reports its slots
//! and the workers it runs, so a restarted coordinator rebuilds its view), heartbeats
//! every second and dials again with backoff when the coordinator goes away; its workers
//! keep running meanwhile.
//!
//! On an assignment it fetches the binary if its [`ArtifactStore`] lacks it (once per
//! hash: the store verifies the hash before the file appears under its name), re-verifies
//! the stored file, and starts `BINARY worker --index I` with the launcher's JSON-lines
//! control protocol on stdin and stdout, relaying those lines to and from the coordinator.
//! Workers listen on this supervisor's IP address; what they print on stdout that is not
//! a control line (a `console` bolt) goes to the supervisor's stdout. A worker that exits before its
//! summary, or is silent for the worker timeout, is started again (and the coordinator is
//! told, so its peers learn the new address). Workers die with their supervisor
//! (`PR_SET_PDEATHSIG`, and EOF on their stdin).
//!
//! Everything runs on the thread that calls [`run`] (a current-thread runtime): the
//! parent-death signal is tied to the thread that forked, so the workers are forked from
//! one that lives as long as the supervisor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use topo_engine::launcher::worker::{FromWorker, ToWorker};
use topo_engine::summary::RunSummary;
use tracing::{error, info, warn};

use crate::artifacts::{ArtifactStore, Sha256Hex, Upload};
use crate::control::{self, Listener, Role};
use crate::proto::{Assignment, FromSupervisor, Json, ToSupervisor, WorkerReport};
use crate::secret::Secret;

/// How the supervisor runs.
#[derive(Debug, Clone)]
pub struct SupervisorOptions {
    /// Its address: its id, and the IP its workers listen on.
    pub listen: SocketAddr,
    /// Where its artifacts (and `transfers.json`) and the workers' folders live.
    pub dir: PathBuf,
    /// The coordinator's address.
    pub coordinator: SocketAddr,
    /// Workers it may run at once.
    pub slots: usize,
    /// The cluster secret.
    pub secret: Secret,
    /// A worker silent this long is killed and started again.
    pub worker_timeout: Duration,
    /// Restarts allowed per worker before it is reported as unable to run.
    pub max_restarts: u32,
}

impl SupervisorOptions {
    /// Options with the defaults: 4 slots, a 10 s worker timeout, 10 restarts per worker.
    pub fn new(listen: SocketAddr, dir: PathBuf, coordinator: SocketAddr, secret: Secret) -> Self {
        SupervisorOptions {
            listen,
            dir,
            coordinator,
            slots: 4,
            secret,
            worker_timeout: Duration::from_secs(10),
            max_restarts: 10,
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
        result: Result<(), String>,
    },
    /// The stored binary of an assignment was hashed again before its start.
    Verified {
        assignment: Assignment,
        restarts: u32,
        result: Result<PathBuf, String>,
    },
}

struct Worker {
    assignment: Assignment,
    child: Child,
    stdin: Option<ChildStdin>,
    incarnation: u64,
    addr: Option<SocketAddr>,
    running: bool,
    summary: Option<RunSummary>,
    last_seen: Instant,
    restarts: u32,
}

impl Worker {
    fn send(&mut self, msg: &ToWorker) {
        let Some(stdin) = self.stdin.as_mut() else {
            return;
        };
        let Ok(line) = serde_json::to_string(msg) else {
            return;
        };
        // A dead worker's pipe is closed; its exit is noticed separately.
        let _ = writeln!(stdin, "{line}").and_then(|_| stdin.flush());
    }
}

struct Sup {
    opts: SupervisorOptions,
    id: String,
    store: Arc<ArtifactStore>,
    workers: BTreeMap<Key, Worker>,
    /// Workers whose binary is being verified before their start.
    starting: HashSet<Key>,
    /// Assignments waiting for their binary, by hash.
    pending: HashMap<String, Vec<Assignment>>,
    /// Downloads in progress: chunks go to a thread that writes them (`None`: the end).
    downloads: HashMap<String, std::sync::mpsc::Sender<Option<Vec<u8>>>>,
    events: mpsc::UnboundedSender<Event>,
    next_incarnation: u64,
    /// Sends to the coordinator while connected.
    link: Option<mpsc::UnboundedSender<FromSupervisor>>,
}

/// Runs the supervisor on this thread until the process is killed; an error means it
/// could not start.
pub fn run(opts: SupervisorOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts))
}

async fn serve(opts: SupervisorOptions) -> anyhow::Result<()> {
    let listener = Listener::bind(opts.listen, &opts.secret).await?;
    if !opts.secret.is_set() {
        warn!("No cluster secret configured: loopback only, connections are authenticated with an empty key.");
    }
    let id = listener.local_addr().to_string();
    std::fs::create_dir_all(&opts.dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", opts.dir.display()))?;
    let store = ArtifactStore::open(&opts.dir)?;
    // Nothing talks to the supervisor's own address yet; accepting keeps it reserved.
    tokio::spawn(async move {
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
        store: Arc::new(store),
        workers: BTreeMap::new(),
        starting: HashSet::new(),
        pending: HashMap::new(),
        downloads: HashMap::new(),
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
    loop {
        if sup.link.is_none() && !connecting {
            connecting = true;
            tokio::spawn(dial(
                sup.opts.coordinator,
                sup.opts.secret.clone(),
                conn_tx.clone(),
            ));
        }
        tokio::select! {
            Some(conn) = conn_rx.recv() => {
                connecting = false;
                generation += 1;
                let gen = generation;
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
                info!(coordinator = %sup.opts.coordinator, "Connected to the coordinator.");
            }
            Some((gen, msg)) = coord_rx.recv() => {
                if gen != generation {
                    continue;
                }
                match msg {
                    Some(m) => sup.on_coordinator(m),
                    None => {
                        warn!("The coordinator is gone; its workers keep running. Reconnecting.");
                        sup.link = None;
                        // Assigned again after the next registration, fetched again then.
                        sup.downloads.clear();
                        sup.pending.clear();
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
            }
        }
    }
}

/// Dials the coordinator until it answers (backoff 100 ms to 2 s).
async fn dial(addr: SocketAddr, secret: Secret, out: mpsc::Sender<control::Conn>) {
    let mut backoff = Duration::from_millis(100);
    let mut logged = false;
    loop {
        match control::connect(addr, &secret, Role::Supervisor).await {
            Ok(conn) => {
                let _ = out.send(conn).await;
                return;
            }
            Err(e) => {
                if !logged {
                    warn!(coordinator = %addr, error = %e, "Cannot reach the coordinator; retrying.");
                    logged = true;
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

impl Sup {
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
            ToSupervisor::Assign { assignment } => self.assign(assignment),
            ToSupervisor::Stop { topology, worker } => {
                if let Some(mut w) = self.workers.remove(&(topology.clone(), worker)) {
                    info!(topology = %topology, worker, pid = w.child.id(), "Stopping a worker.");
                    let _ = w.child.kill();
                    let _ = w.child.wait();
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
                    w.send(&msg.0);
                }
            }
            ToSupervisor::ArtifactBegin { hash, len } => {
                let upload = hash
                    .parse::<Sha256Hex>()
                    .map_err(|e| e.to_string())
                    .and_then(|h| self.store.begin(&h, len).map_err(|e| e.to_string()));
                match upload {
                    Ok(u) => {
                        info!(hash = %hash, len, "Fetching a binary.");
                        match self.write_in_thread(hash.clone(), u) {
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
        }
    }

    /// A thread that writes a download's chunks (hashing and writing 100 MB must not hold
    /// up the heartbeats) and reports the result as [`Event::Fetched`].
    fn write_in_thread(
        &self,
        hash: String,
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
                let _ = events.send(Event::Fetched { hash, result });
            })
            .map(|_| tx)
            .map_err(|e| format!("cannot start a thread: {e}"))
    }

    fn refuse_pending(&mut self, hash: &str, message: &str) {
        for a in self.pending.remove(hash).unwrap_or_default() {
            error!(topology = %a.topology, worker = a.worker, "Cannot run the worker: {message}");
            self.tell(FromSupervisor::Refused {
                topology: a.topology,
                worker: a.worker,
                message: format!("binary {hash}: {message}"),
            });
        }
    }

    fn assign(&mut self, a: Assignment) {
        let key = (a.topology.clone(), a.worker);
        if self.workers.contains_key(&key) || self.starting.contains(&key) {
            return;
        }
        let stored = a
            .binary
            .parse::<Sha256Hex>()
            .is_ok_and(|h| self.store.contains(&h));
        if stored {
            self.start(a, 0);
            return;
        }
        let waiting = self.pending.entry(a.binary.clone()).or_default();
        let first = waiting.is_empty();
        if !waiting
            .iter()
            .any(|p| p.topology == a.topology && p.worker == a.worker)
        {
            waiting.push(a.clone());
        }
        if first {
            self.tell(FromSupervisor::Fetch { hash: a.binary });
        }
    }

    /// Starts (again) the worker of `a`; `restarts` so far. Its binary is hashed again
    /// on a thread first ([`Event::Verified`] continues).
    fn start(&mut self, a: Assignment, restarts: u32) {
        let key = (a.topology.clone(), a.worker);
        if !self.starting.insert(key) {
            return;
        }
        let store = Arc::clone(&self.store);
        let events = self.events.clone();
        let spawned = std::thread::Builder::new()
            .name("verify".into())
            .spawn(move || {
                // Re-hashed before every start: a file changed on disk is never run.
                let result = a
                    .binary
                    .parse::<Sha256Hex>()
                    .map_err(|e| e.to_string())
                    .and_then(|h| store.verified_path(&h).map_err(|e| e.to_string()));
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

    /// The binary of `a` verified (or not): start the process.
    fn verified(&mut self, a: Assignment, restarts: u32, result: Result<PathBuf, String>) {
        let key = (a.topology.clone(), a.worker);
        if !self.starting.remove(&key) {
            return; // Stopped meanwhile.
        }
        match result.and_then(|exe| self.spawn(&a, &exe, restarts)) {
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

    fn spawn(&mut self, a: &Assignment, exe: &Path, restarts: u32) -> Result<Worker, String> {
        let base_dir = self.opts.dir.join("work").join(&a.topology);
        std::fs::create_dir_all(&base_dir)
            .map_err(|e| format!("cannot create {}: {e}", base_dir.display()))?;
        let mut cmd = Command::new(exe);
        cmd.arg("worker")
            .arg("--index")
            .arg(a.worker.to_string())
            .env("TOPO_RUN_ID", &a.topology)
            .current_dir(&base_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc_die_with_parent()?;
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        self.next_incarnation += 1;
        let incarnation = self.next_incarnation;
        let key = (a.topology.clone(), a.worker);
        if let Some(stdout) = child.stdout.take() {
            let tx = self.events.clone();
            let k = key.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("worker-{}-out", a.worker))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        match serde_json::from_str::<FromWorker>(&line) {
                            Ok(msg) => {
                                let ev = Event::Line {
                                    key: k.clone(),
                                    incarnation,
                                    line: Some(msg),
                                };
                                if tx.send(ev).is_err() {
                                    return;
                                }
                            }
                            // Not a control line: the worker's own output (a `console`
                            // bolt), passed on to the supervisor's stdout.
                            Err(_) => {
                                use std::io::Write as _;
                                let mut out = std::io::stdout().lock();
                                let _ = writeln!(out, "{line}");
                            }
                        }
                    }
                    let _ = tx.send(Event::Line {
                        key: k,
                        incarnation,
                        line: None,
                    });
                });
            if let Err(e) = spawned {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot start a thread: {e}"));
            }
        }
        info!(topology = %a.topology, worker = a.worker, pid = child.id(), restarts, "Worker started.");
        let stdin = child.stdin.take();
        let mut w = Worker {
            assignment: a.clone(),
            child,
            stdin,
            incarnation,
            addr: None,
            running: false,
            summary: None,
            last_seen: Instant::now(),
            restarts,
        };
        w.send(&ToWorker::Start {
            topology: a.text.clone(),
            base_dir,
            worker: a.worker,
            secret: a.secret.clone(),
            fingerprint: a.fingerprint,
            bind: Some(self.opts.listen.ip()),
        });
        if a.inactive {
            w.send(&ToWorker::Deactivate);
        }
        Ok(w)
    }

    fn on_event(&mut self, ev: Event) {
        let (key, incarnation, line) = match ev {
            Event::Line {
                key,
                incarnation,
                line,
            } => (key, incarnation, line),
            Event::Fetched { hash, result } => {
                match result {
                    Ok(()) => {
                        info!(hash = %hash, "Binary stored.");
                        for a in self.pending.remove(&hash).unwrap_or_default() {
                            self.start(a, 0);
                        }
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
        w.last_seen = Instant::now();
        let Some(msg) = line else {
            let done = w.summary.is_some();
            let status = w
                .child
                .wait()
                .map_or_else(|e| e.to_string(), |s| s.to_string());
            if done {
                info!(topology = %key.0, worker = key.1, "Worker exited after its summary.");
                self.workers.remove(&key);
            } else {
                self.restart(&key, &format!("exited ({status})"));
            }
            return;
        };
        match &msg {
            FromWorker::Listening { addr } => {
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
        let _ = old.child.kill();
        let _ = old.child.wait();
        let restarts = old.restarts + 1;
        warn!(topology = %key.0, worker = key.1, restarts, "Worker {why}; restarting it.");
        if restarts > self.opts.max_restarts {
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
            .filter(|(_, w)| {
                w.summary.is_none() && w.last_seen.elapsed() > self.opts.worker_timeout
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in silent {
            self.restart(&key, "stopped heartbeating");
        }
    }
}

/// In a forked child: die when the supervisor dies; leave its process group (a terminal's
/// Ctrl-C reaches the supervisor, which ends its workers itself).
fn libc_die_with_parent() -> std::io::Result<()> {
    // SAFETY: prctl, getppid and setpgid are async-signal-safe.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() == 1 {
            return Err(std::io::Error::other("the supervisor is gone"));
        }
        libc::setpgid(0, 0);
    }
    Ok(())
}
