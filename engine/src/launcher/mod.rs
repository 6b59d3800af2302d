//! The supervisor side of `topo run` with `workers = N > 1`: starts N worker processes
//! (this same executable, `worker` verb), wires them together, restarts one that dies,
//! decides when a bounded run ends, and merges their summaries.
//!
//! # The end of a run
//! Workers run with [`RunOptions::hold_done`](crate::RunOptions::hold_done): a spout task
//! that is done with no pending trees does not end its stream on its own, it waits. The
//! supervisor ends the run (sends `Finish` to every worker) once every worker's latest
//! status says all its spouts are done (with acking on: every tree they emitted is
//! complete, so nothing is left to replay), or when `--for` is up or on Ctrl-C. Only then
//! do the spouts end their streams, and the ends flow through the DAG as in one process.
//! A worker restarted before that starts over (its spouts replay from their start and its
//! status is "not done" until they are done again); one restarted after that is told to
//! finish at once, and its peers send its new tasks the ends of streams they had already
//! sent to the old ones.
//!
//! # Restarts
//! A worker that exits before it has sent its summary, or sends nothing for the
//! [`RestartPolicy`]'s heartbeat timeout (then it is killed), is started again with the
//! same index and tasks, on a new port; its peers are told the new address and redial.
//! Tuple trees through it fail (by timeout) and their spouts replay them. More than
//! `max_restarts` restarts of one worker end the run with an error.
//! The summary counts what the last incarnation of each worker did.
//!
//! # Layout
//! - this module: the supervisor of `topo run`, [`launch`].
//! - [`process`]: one worker process — spawned, watched over its control channel,
//!   restarted by one [`RestartPolicy`], stopped — as both this supervisor and the
//!   cluster's (`topo supervisor`) run it.
//! - [`worker`]: the worker process and the control protocol between the two;
//!   [`worker::start`], what a worker process runs, also runs one worker in-process.
//! - the bridge between a worker's runtime and the transport is [`crate::bridge`].
//! - [`relay`]: taps of tasks in the workers, relayed over their control channels.
//! - [`venv`]: the Python virtualenv of a topology's `python_requirements`, built once
//!   per requirements hash, for `topo run` and the cluster's supervisors alike.
//! - [`session`]: the per-run state machine (who listens where, who gets `Peers`,
//!   `PeerMoved`, `Finish`), shared with the cluster coordinator.

pub mod process;
pub mod relay;
pub mod session;
pub mod venv;
pub mod worker;

pub use process::{
    Output, RestartPolicy, WorkerCommand, WorkerEvent, WorkerProcess, CONTROL_FD, KEPT_ENV,
};
pub use worker::{FromWorker, ToWorker};

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use serde::Serialize;
use topo_dsl::Topology;
use tracing::{info, warn};

use crate::metrics::WorkerSnapshot;
use crate::plan::{PhysicalPlan, TaskRole};
use crate::state::Coordinator;
use crate::summary::RunSummary;
use session::{merge, Outbox, Session};
use worker::{fingerprint, hex, METRICS_INTERVAL};

/// How to launch the workers.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The topology file's text, sent to every worker.
    pub text: String,
    /// Folder that relative paths in component configs resolve against.
    pub base_dir: PathBuf,
    /// The executable to start as `EXE worker --index I` (default: this one).
    pub exe: Option<PathBuf>,
    /// End the run after this long.
    pub run_for: Option<Duration>,
    /// Set from another thread (Ctrl-C) to end the run.
    pub stop: Arc<AtomicBool>,
    /// Write the workers' pids, addresses and restarts here as JSON whenever they change.
    pub status_file: Option<PathBuf>,
    /// When a worker that died or hangs is started again.
    pub restart: RestartPolicy,
    /// Gets the latest snapshot of every worker and the restarts so far, about once a
    /// second, and the final snapshots once more when the run ended.
    pub metrics: Option<std::sync::mpsc::Sender<(Vec<WorkerSnapshot>, u64)>>,
    /// Components whose first task reads standard input (`stdin_lines`): the worker that
    /// runs that task gets this process's; every other worker gets none.
    pub stdin_readers: Vec<String>,
    /// The taps to relay to the workers (`topo tap` of a run's UI).
    pub taps: Option<Arc<relay::Relay>>,
    /// A checkpointed topology resumes from its last committed checkpoint (`topo run
    /// --resume`) instead of starting afresh.
    pub resume: bool,
}

impl LaunchOptions {
    /// Options with the defaults: 10 restarts per worker, a 10 s heartbeat timeout.
    pub fn new(text: String, base_dir: PathBuf) -> Self {
        LaunchOptions {
            text,
            base_dir,
            exe: None,
            run_for: None,
            stop: Arc::default(),
            status_file: None,
            restart: RestartPolicy::default(),
            stdin_readers: Vec::new(),
            metrics: None,
            taps: None,
            resume: false,
        }
    }
}

/// Why a run with worker processes failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A worker process could not be started.
    #[error("cannot start worker {worker}: {source}")]
    Spawn {
        /// Its index.
        worker: usize,
        /// The OS error.
        source: std::io::Error,
    },
    /// A worker reported that it cannot run.
    #[error("worker {worker} cannot run: {message}")]
    Worker {
        /// Its index.
        worker: usize,
        /// What it said.
        message: String,
        /// The topology or a component config is at fault.
        invalid: bool,
    },
    /// The checkpoint store could not be opened or read.
    #[error("checkpoints: {0}")]
    State(#[from] crate::state::StateError),
    /// A worker kept dying.
    #[error("worker {worker} died {restarts} times; giving up")]
    Restarts {
        /// Its index.
        worker: usize,
        /// Restarts so far.
        restarts: u32,
    },
}

struct Slot {
    process: WorkerProcess,
    incarnation: u32,
    restarts: u32,
}

#[derive(Serialize)]
struct StatusWorker {
    worker: usize,
    pid: u32,
    addr: Option<SocketAddr>,
    restarts: u32,
    running: bool,
}

#[derive(Serialize)]
struct Status {
    supervisor: u32,
    finishing: bool,
    workers: Vec<StatusWorker>,
}

struct Supervisor<'a> {
    plan: PhysicalPlan,
    opts: &'a LaunchOptions,
    exe: PathBuf,
    secret: String,
    fingerprint: u64,
    run_id: String,
    events: Sender<(usize, u32, WorkerEvent)>,
    slots: Vec<Slot>,
    session: Session,
    reported: Instant,
    /// The workers that get this process's standard input.
    stdin: Vec<usize>,
    /// A checkpointed topology's coordinator, and when its next checkpoint starts.
    checkpoints: Option<(Coordinator, Duration, Instant)>,
    /// The committed checkpoint workers resume from when they start.
    restore: Option<u64>,
}

/// Runs `topology` (whose file text is `opts.text`) in worker processes until it ends;
/// returns the merged summary.
pub fn launch(topology: &Topology, opts: &LaunchOptions) -> Result<RunSummary, LaunchError> {
    let started = Instant::now();
    let plan = PhysicalPlan::new(topology);
    let exe = match &opts.exe {
        Some(e) => e.clone(),
        None => {
            std::env::current_exe().map_err(|source| LaunchError::Spawn { worker: 0, source })?
        }
    };
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    let (tx, rx) = crossbeam_channel::unbounded();
    let stdin = plan
        .tasks()
        .iter()
        .filter(|t| {
            t.index == 0
                && matches!(t.role, TaskRole::Component(c)
                    if opts.stdin_readers.contains(&topology.components()[c].id))
        })
        .map(|t| t.worker)
        .collect();
    let mut restore = None;
    let checkpoints = match crate::state::open_store(topology, &opts.base_dir)? {
        Some(store) => {
            if opts.resume {
                let latest = store.latest()?;
                if let Some(r) = &latest {
                    r.check_spouts(topology)?;
                }
                restore = latest.map(|r| r.manifest.id);
                match restore {
                    Some(id) => info!(checkpoint = id, "Resuming from a checkpoint."),
                    None => info!("No committed checkpoint to resume from; starting afresh."),
                }
            }
            let interval = topology
                .settings()
                .checkpoints
                .as_ref()
                .map_or(Duration::from_secs(1), |c| c.interval);
            Some((
                Coordinator::new(store, topology)?,
                interval,
                Instant::now() + interval,
            ))
        }
        None => None,
    };
    let mut sup = Supervisor {
        checkpoints,
        restore,
        stdin,
        session: Session::new(plan.workers()),
        fingerprint: fingerprint(&opts.text, plan.workers()),
        plan,
        opts,
        exe,
        secret: hex(&secret),
        run_id: format!(
            "{}-{}",
            std::process::id(),
            hex(&rand::rng().next_u64().to_be_bytes())
        ),
        events: tx,
        slots: Vec::new(),
        reported: Instant::now(),
    };
    info!(
        topology = topology.name(),
        workers = sup.plan.workers(),
        "Starting workers."
    );
    for line in sup.plan.render(topology).lines() {
        info!("Plan: {line}");
    }
    for w in 0..sup.plan.workers() {
        let slot = sup.spawn(w, 0, 0)?;
        sup.slots.push(slot);
    }
    let result = sup.supervise(&rx);
    if result.is_err() {
        sup.kill_all();
    }
    let summaries = result?;
    let mut summary = merge(summaries);
    if let Some((c, _, _)) = &mut sup.checkpoints {
        c.abandon();
        summary.checkpoints = Some(Box::new(c.summary()));
    }
    let finals: Vec<WorkerSnapshot> = sup.session.snapshots().iter().flatten().cloned().collect();
    crate::metrics::fill_summary(&mut summary, &finals);
    sup.report();
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

impl Supervisor<'_> {
    fn spawn(&mut self, w: usize, incarnation: u32, restarts: u32) -> Result<Slot, LaunchError> {
        self.session.started(w);
        let command = WorkerCommand {
            exe: self.exe.clone(),
            index: w,
            run_id: self.run_id.clone(),
            dir: None,
            output: Output::Prefixed(format!("[worker {w}] ")),
            stdin: self.stdin.contains(&w),
            // `topo run`'s virtualenv reaches the workers through `process::kept_env`.
            path_prefix: None,
        };
        let tx = self.events.clone();
        let mut process =
            WorkerProcess::spawn(&command, move |ev| tx.send((w, incarnation, ev)).is_ok())
                .map_err(|source| LaunchError::Spawn { worker: w, source })?;
        info!(
            worker = w,
            pid = process.pid(),
            incarnation,
            "Worker started."
        );
        process.send(&ToWorker::Start {
            topology: self.opts.text.clone(),
            base_dir: self.opts.base_dir.clone(),
            worker: w,
            secret: self.secret.clone(),
            fingerprint: self.fingerprint,
            bind: None,
            restore: self.restore,
        });
        Ok(Slot {
            process,
            incarnation,
            restarts,
        })
    }

    fn broadcast(&mut self, msg: &ToWorker) {
        for s in &mut self.slots {
            s.process.send(msg);
        }
    }

    fn deliver(&mut self, out: Outbox) {
        for (w, msg) in out {
            if let Some(s) = self.slots.get_mut(w) {
                s.process.send(&msg);
            }
        }
    }

    fn kill_all(&mut self) {
        for s in &mut self.slots {
            s.process.kill();
        }
    }

    fn write_status(&self) {
        let Some(path) = &self.opts.status_file else {
            return;
        };
        let status = Status {
            supervisor: std::process::id(),
            finishing: self.session.finishing(),
            workers: self
                .slots
                .iter()
                .enumerate()
                .map(|(w, s)| StatusWorker {
                    worker: w,
                    pid: s.process.pid(),
                    addr: self.session.worker(w).addr,
                    restarts: s.restarts,
                    running: self.session.worker(w).running,
                })
                .collect(),
        };
        let Ok(json) = serde_json::to_string_pretty(&status) else {
            return;
        };
        let tmp = path.with_extension("tmp");
        if let Err(e) = std::fs::write(&tmp, json).and_then(|_| std::fs::rename(&tmp, path)) {
            warn!(path = %path.display(), error = %e, "Cannot write the status file.");
        }
    }

    fn restart(&mut self, w: usize, why: &str) -> Result<(), LaunchError> {
        if self.checkpoints.is_some() {
            return self.rollback(w, why);
        }
        let old = &mut self.slots[w];
        let status = old.process.kill();
        let restarts = old.restarts + 1;
        let incarnation = old.incarnation + 1;
        warn!(
            worker = w,
            pid = old.process.pid(),
            %status,
            restarts,
            "Worker {why}; restarting it."
        );
        if !self.opts.restart.allows(old.restarts) {
            return Err(LaunchError::Restarts {
                worker: w,
                restarts: old.restarts,
            });
        }
        let slot = self.spawn(w, incarnation, restarts)?;
        self.slots[w] = slot;
        self.write_status();
        Ok(())
    }

    /// Worker `w` died in a checkpointed run: every worker is started again from the
    /// last committed checkpoint (each task restores its state, each spout seeks back).
    fn rollback(&mut self, w: usize, why: &str) -> Result<(), LaunchError> {
        let restarts = self.slots[w].restarts;
        if !self.opts.restart.allows(restarts) {
            let status = self.slots[w].process.kill();
            warn!(worker = w, %status, "Worker {why}; giving up.");
            return Err(LaunchError::Restarts {
                worker: w,
                restarts,
            });
        }
        if let Some((c, interval, next)) = &mut self.checkpoints {
            c.rollback();
            match c.store().latest() {
                Ok(latest) => self.restore = latest.map(|r| r.manifest.id).or(self.restore),
                Err(e) => {
                    warn!(error = %e, "Cannot read the checkpoints; rolling back to the last one known.")
                }
            }
            *next = Instant::now() + *interval;
        }
        let status = self.slots[w].process.kill();
        warn!(
            worker = w,
            pid = self.slots[w].process.pid(),
            %status,
            checkpoint = self.restore,
            "Worker {why}; rolling every worker back to the last committed checkpoint."
        );
        for s in &mut self.slots {
            s.process.kill();
        }
        self.session.rollback();
        for i in 0..self.slots.len() {
            let restarts = self.slots[i].restarts + u32::from(i == w);
            let incarnation = self.slots[i].incarnation + 1;
            let slot = self.spawn(i, incarnation, restarts)?;
            self.slots[i] = slot;
        }
        self.write_status();
        Ok(())
    }

    fn finish(&mut self, why: &str) {
        if self.session.finishing() {
            return;
        }
        info!("{why}; finishing the run.");
        let mut out = Outbox::new();
        self.session.finish(&mut out);
        self.deliver(out);
        self.write_status();
    }

    /// Sends the latest snapshots to [`LaunchOptions::metrics`]; a worker that is not
    /// running (it died, or restarts) does not count as running.
    fn report(&mut self) {
        self.reported = Instant::now();
        let Some(tx) = &self.opts.metrics else {
            return;
        };
        let mut snapshots = self.session.live_snapshots();
        if let (Some((c, _, _)), Some(first)) = (&self.checkpoints, snapshots.first_mut()) {
            first.checkpoints = Some(Box::new(c.figures()));
        }
        let restarts = self.slots.iter().map(|s| u64::from(s.restarts)).sum();
        let _ = tx.send((snapshots, restarts));
    }

    fn supervise(
        &mut self,
        rx: &Receiver<(usize, u32, WorkerEvent)>,
    ) -> Result<Vec<RunSummary>, LaunchError> {
        let started = Instant::now();
        self.write_status();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok((w, inc, ev)) if self.slots.get(w).is_some_and(|s| s.incarnation == inc) => {
                    self.slots[w].process.heard();
                    match ev {
                        WorkerEvent::Message(msg) => self.on_message(w, msg)?,
                        WorkerEvent::Closed if self.session.worker(w).summary.is_some() => {}
                        WorkerEvent::Closed => self.restart(w, "exited")?,
                    }
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            let opts = self.opts;
            if let Some(relay) = &opts.taps {
                for msg in relay.take_outbox() {
                    self.broadcast(&msg);
                }
            }
            if self.reported.elapsed() >= METRICS_INTERVAL {
                self.report();
            }
            self.maybe_checkpoint();
            if !self.session.finishing() {
                if self.session.spouts_done() {
                    self.finish("Every spout is done");
                } else if self.opts.stop.load(Ordering::Acquire) {
                    self.finish("Stop requested");
                } else if self.opts.run_for.is_some_and(|d| started.elapsed() >= d) {
                    self.finish("Time is up");
                }
            }
            if self.session.ended() {
                self.broadcast(&ToWorker::Exit);
                for s in &mut self.slots {
                    s.process.close();
                    s.process.wait();
                }
                return Ok(self.session.take_summaries());
            }
            // An exit shows as the end of the worker's control channel (after its last
            // lines); silence past the heartbeat timeout means it hangs.
            for w in 0..self.slots.len() {
                if self.session.worker(w).summary.is_none()
                    && self.opts.restart.hangs(&self.slots[w].process)
                {
                    self.restart(w, "stopped heartbeating")?;
                }
            }
        }
    }

    /// Starts the next checkpoint when it is due, every worker runs and the run is not
    /// finishing.
    fn maybe_checkpoint(&mut self) {
        let ready = self.session.all_running() && !self.session.finishing();
        let Some((c, interval, next)) = &mut self.checkpoints else {
            return;
        };
        let now = Instant::now();
        if now < *next || !ready {
            return;
        }
        *next = now + *interval;
        if let Some(id) = c.start(now) {
            self.broadcast(&ToWorker::Checkpoint { id });
        }
    }

    fn on_message(&mut self, w: usize, msg: FromWorker) -> Result<(), LaunchError> {
        if let FromWorker::Checkpointed { confirm } = msg {
            if let Some((c, _, _)) = &mut self.checkpoints {
                c.confirm(*confirm);
            }
            return Ok(());
        }
        let opts = self.opts;
        let msg = match &opts.taps {
            Some(relay) => match relay.on_message(w, msg) {
                Some(msg) => msg,
                None => return Ok(()),
            },
            None => msg,
        };
        if let (FromWorker::Running, Some(relay)) = (&msg, &opts.taps) {
            for tap in relay.active() {
                self.slots[w].process.send(&tap);
            }
        }
        let status_changes = matches!(msg, FromWorker::Listening { .. } | FromWorker::Running);
        match &msg {
            FromWorker::Listening { addr } => {
                info!(worker = w, pid = self.slots[w].process.pid(), %addr, "Worker listening.")
            }
            FromWorker::Running => info!(worker = w, "Worker running."),
            _ => {}
        }
        let mut out = Outbox::new();
        self.session.on_message(w, msg, &mut out)?;
        self.deliver(out);
        if status_changes {
            self.write_status();
        }
        Ok(())
    }
}
