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
//! A worker that exits before it has sent its summary, or sends nothing for
//! [`LaunchOptions::heartbeat_timeout`] (then it is killed), is started again with the
//! same index and tasks, on a new port; its peers are told the new address and redial.
//! Tuple trees through it fail (by timeout) and their spouts replay them. More than
//! [`LaunchOptions::max_restarts`] restarts of one worker end the run with an error.
//! The summary counts what the last incarnation of each worker did.
//!
//! # Layout
//! - this module: the supervisor, [`launch`].
//! - [`worker`]: the worker process and the control protocol between the two;
//!   [`worker::start`], what a worker process runs, also runs one worker in-process.
//! - `remote`: the runtime's senders to tasks of other workers (they wait out a
//!   restarting peer and remember the ends of streams they sent).
//! - `inbound`: [`worker::Dispatcher`], which hands what peers send to the local tasks
//!   on the transport's I/O thread (data batches still encoded: each task decodes its own).
//! - [`session`]: the per-run state machine (who listens where, who gets `Peers`,
//!   `PeerMoved`, `Finish`), shared with the cluster coordinator.

mod inbound;
mod remote;
pub mod session;
pub mod worker;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use serde::Serialize;
use topo_dsl::Topology;
use tracing::{info, warn};

use crate::metrics::WorkerSnapshot;
use crate::plan::PhysicalPlan;
use crate::summary::RunSummary;
use session::{merge, Outbox, Session};
use worker::{fingerprint, hex, FromWorker, ToWorker, METRICS_INTERVAL};

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
    /// Restarts allowed per worker.
    pub max_restarts: u32,
    /// A worker silent this long is killed and restarted.
    pub heartbeat_timeout: Duration,
    /// Gets the latest snapshot of every worker and the restarts so far, about once a
    /// second, and the final snapshots once more when the run ended.
    pub metrics: Option<std::sync::mpsc::Sender<(Vec<WorkerSnapshot>, u64)>>,
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
            max_restarts: 10,
            heartbeat_timeout: Duration::from_secs(10),
            metrics: None,
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
    /// A worker kept dying.
    #[error("worker {worker} died {restarts} times; giving up")]
    Restarts {
        /// Its index.
        worker: usize,
        /// Restarts so far.
        restarts: u32,
    },
}

enum Event {
    Line(FromWorker),
    Eof,
}

struct Slot {
    child: Child,
    stdin: Option<ChildStdin>,
    incarnation: u32,
    pid: u32,
    last_seen: Instant,
    restarts: u32,
}

impl Slot {
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
    events: Sender<(usize, u32, Event)>,
    slots: Vec<Slot>,
    session: Session,
    reported: Instant,
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
    let mut sup = Supervisor {
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
    let finals: Vec<WorkerSnapshot> = sup.session.snapshots().iter().flatten().cloned().collect();
    crate::metrics::fill_summary(&mut summary, &finals);
    sup.report();
    summary.elapsed_secs = started.elapsed().as_secs_f64();
    Ok(summary)
}

impl Supervisor<'_> {
    fn spawn(&mut self, w: usize, incarnation: u32, restarts: u32) -> Result<Slot, LaunchError> {
        self.session.started(w);
        let mut cmd = Command::new(&self.exe);
        cmd.arg("worker")
            .arg("--index")
            .arg(w.to_string())
            .env("TOPO_RUN_ID", &self.run_id)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Die with the supervisor; stay out of its terminal's Ctrl-C (the
                // supervisor drains the workers itself).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the supervisor is gone"));
                }
                libc::setpgid(0, 0);
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| LaunchError::Spawn { worker: w, source })?;
        let pid = child.id();
        let stdin = child.stdin.take();
        if let Some(stdout) = child.stdout.take() {
            let tx = self.events.clone();
            let reader = std::thread::Builder::new()
                .name(format!("worker-{w}-out"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        match serde_json::from_str::<FromWorker>(&line) {
                            Ok(msg) => {
                                if tx.send((w, incarnation, Event::Line(msg))).is_err() {
                                    return;
                                }
                            }
                            Err(_) => warn!(worker = w, line = %line, "Ignored a line a worker wrote to stdout."),
                        }
                    }
                    let _ = tx.send((w, incarnation, Event::Eof));
                });
            if let Err(source) = reader {
                return Err(LaunchError::Spawn { worker: w, source });
            }
        }
        info!(worker = w, pid, incarnation, "Worker started.");
        let mut slot = Slot {
            child,
            stdin,
            incarnation,
            pid,
            last_seen: Instant::now(),
            restarts,
        };
        slot.send(&ToWorker::Start {
            topology: self.opts.text.clone(),
            base_dir: self.opts.base_dir.clone(),
            worker: w,
            secret: self.secret.clone(),
            fingerprint: self.fingerprint,
            bind: None,
        });
        Ok(slot)
    }

    fn broadcast(&mut self, msg: &ToWorker) {
        for s in &mut self.slots {
            s.send(msg);
        }
    }

    fn deliver(&mut self, out: Outbox) {
        for (w, msg) in out {
            if let Some(s) = self.slots.get_mut(w) {
                s.send(&msg);
            }
        }
    }

    fn kill_all(&mut self) {
        for s in &mut self.slots {
            let _ = s.child.kill();
            let _ = s.child.wait();
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
                    pid: s.pid,
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
        let old = &mut self.slots[w];
        let _ = old.child.kill();
        let status = old
            .child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        let restarts = old.restarts + 1;
        let incarnation = old.incarnation + 1;
        warn!(
            worker = w,
            pid = old.pid,
            %status,
            restarts,
            "Worker {why}; restarting it."
        );
        if restarts > self.opts.max_restarts {
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
        let snapshots = self
            .session
            .snapshots()
            .iter()
            .enumerate()
            .filter_map(|(w, s)| {
                let mut s = s.clone()?;
                s.running &= w < self.slots.len() && self.session.worker(w).running;
                Some(s)
            })
            .collect();
        let restarts = self.slots.iter().map(|s| u64::from(s.restarts)).sum();
        let _ = tx.send((snapshots, restarts));
    }

    fn supervise(
        &mut self,
        rx: &Receiver<(usize, u32, Event)>,
    ) -> Result<Vec<RunSummary>, LaunchError> {
        let started = Instant::now();
        self.write_status();
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok((w, inc, ev)) if self.slots.get(w).is_some_and(|s| s.incarnation == inc) => {
                    self.slots[w].last_seen = Instant::now();
                    match ev {
                        Event::Line(msg) => self.on_message(w, msg)?,
                        Event::Eof if self.session.worker(w).summary.is_some() => {}
                        Event::Eof => self.restart(w, "exited")?,
                    }
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {}
            }
            if self.reported.elapsed() >= METRICS_INTERVAL {
                self.report();
            }
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
                    s.stdin = None;
                    let _ = s.child.wait();
                }
                return Ok(self.session.take_summaries());
            }
            // An exit shows as EOF on the worker's stdout (after its last lines); silence
            // past the heartbeat timeout means it hangs.
            for w in 0..self.slots.len() {
                let s = &self.slots[w];
                if self.session.worker(w).summary.is_none()
                    && s.last_seen.elapsed() > self.opts.heartbeat_timeout
                {
                    self.restart(w, "stopped heartbeating")?;
                }
            }
        }
    }

    fn on_message(&mut self, w: usize, msg: FromWorker) -> Result<(), LaunchError> {
        let status_changes = matches!(msg, FromWorker::Listening { .. } | FromWorker::Running);
        match &msg {
            FromWorker::Listening { addr } => {
                info!(worker = w, pid = self.slots[w].pid, %addr, "Worker listening.")
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
