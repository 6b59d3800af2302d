//! The runtime: starts the tasks of a topology's plan on executor threads, stops them,
//! and collects what they did.
//!
//! ```
//! use std::sync::Arc;
//! use topo_dsl::{StreamDecl, Topology};
//! use topo_engine::{runtime, Poll, Registry, Spout, SpoutOutput, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct NoConfig {}
//! struct Three(u64);
//! impl Spout for Three {
//!     fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
//!         if self.0 == 3 { return Ok(Poll::Done) }
//!         self.0 += 1;
//!         out.emit_id(self.0, [self.0]);
//!         Ok(Poll::Ready)
//!     }
//! }
//! let mut registry = Registry::new();
//! registry.spout("three", "Emits 1, 2, 3.", |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
//!     |_| Ok(Three(0)));
//! let topology = Topology::builder("t").spout("numbers", "three").build(&registry).unwrap();
//! let running = runtime::start(Arc::new(topology), &registry, Default::default()).unwrap();
//! let summary = running.wait();
//! assert_eq!(summary.counts("numbers").acked, 3);
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use rand::Rng;
use topo_dsl::{Kind, Topology};

use crate::component::{Bolt, Notifier, Spout, TaskContext};
use crate::executor::acker::AckerExecutor;
use crate::executor::bolt::{BoltCore, BoltExecutor};
use crate::executor::remote::RemoteIn;
use crate::executor::spout::{Hold, SpoutCore, SpoutExecutor};
use crate::executor::{Output, OutputSpec, Pool, StreamOut};
use crate::grouping::Router;
use crate::load::Loads;
use crate::metrics::{TaskSnapshot, TaskStats, WorkerSnapshot};
use crate::plan::{PhysicalPlan, TaskRole};
use crate::registry::Registry;
use crate::route::{AckerIn, Inbound, RemoteBatch, RemoteSender, Route, SpoutMsg};
use crate::summary::{ComponentSummary, Counts, Histogram, RunSummary, SharedCounts, TaskSummary};
use crate::tuple::{StreamInfo, TaskId};
use crate::wire;

/// How to run a topology.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Folder that relative paths in component configs resolve against.
    pub base_dir: PathBuf,
    /// Most tuples in one batch between two tasks.
    pub batch_size: usize,
    /// Capacity of a bolt task's input queue, in batches.
    pub queue_batches: usize,
    /// A task sends what it buffered at least this often.
    pub flush_interval: Duration,
    /// Run only the tasks of this worker of the plan; `None` runs every worker's tasks
    /// in this process (all routes local).
    pub worker: Option<usize>,
    /// How to reach tasks of other workers; needed when `worker` is set and the plan has
    /// more than one worker.
    pub remote: Option<Remotes>,
    /// A spout task that is done with no pending trees waits for a stop instead of ending
    /// its stream (see [`RunningTopology::spouts_done`]): with several workers the
    /// supervisor decides the end, because a restarted worker replays.
    pub hold_done: bool,
}

/// Senders to the tasks of other workers, provided by the transport.
#[derive(Clone)]
pub struct Remotes {
    /// Data batches and end-of-stream markers to bolt tasks (may block for credits).
    pub data: Arc<dyn RemoteSender<Inbound>>,
    /// Acker messages (must not block).
    pub acker: Arc<dyn RemoteSender<AckerIn>>,
    /// Acks, fails and control messages to spout tasks (must not block).
    pub spout: Arc<dyn RemoteSender<SpoutMsg>>,
}

impl std::fmt::Debug for Remotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remotes")
    }
}

/// The inboxes of a worker's local tasks, for the transport to deliver what other
/// workers send them.
#[derive(Clone, Debug, Default)]
pub struct Inboxes {
    /// Bolt tasks' data inboxes (bounded: a full one is backpressure).
    pub data: Vec<(TaskId, Sender<Inbound>)>,
    /// Acker tasks' inboxes.
    pub ackers: Vec<(TaskId, Sender<AckerIn>)>,
    /// Spout tasks' control inboxes.
    pub spouts: Vec<(TaskId, Sender<SpoutMsg>)>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            base_dir: PathBuf::from("."),
            batch_size: 512,
            queue_batches: 8,
            flush_interval: Duration::from_millis(1),
            worker: None,
            remote: None,
            hold_done: false,
        }
    }
}

/// Why a topology could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A component's factory refused its config.
    #[error("cannot make `{component}` (type `{type_name}`): {message}")]
    Component {
        /// The component id.
        component: String,
        /// Its type.
        type_name: String,
        /// What the factory said.
        message: String,
    },
    /// A task of another worker must be reached but no transport was given.
    #[error("task {task} runs in worker {worker}, and no transport reaches other workers")]
    NoTransport {
        /// The remote task.
        task: TaskId,
        /// Its worker.
        worker: usize,
    },
    /// An executor thread could not be started.
    #[error("cannot start a thread for task {task}: {source}")]
    Thread {
        /// The task.
        task: TaskId,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Stops a running topology from any thread: spouts are deactivated, pending trees drain
/// (bounded by the message timeout), then the streams end.
#[derive(Clone, Debug)]
pub struct StopHandle {
    spouts: Arc<Vec<(TaskId, Sender<SpoutMsg>)>>,
    stopped: Arc<AtomicBool>,
}

impl StopHandle {
    /// Starts stopping; returns at once. Calling it again does nothing.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        for (_, s) in self.spouts.iter() {
            let _ = s.send(SpoutMsg::Stop);
        }
    }

    /// True once [`StopHandle::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Deactivates every spout: `next_tuple` is not called until [`StopHandle::activate`].
    pub fn deactivate(&self) {
        for (_, s) in self.spouts.iter() {
            let _ = s.send(SpoutMsg::Deactivate);
        }
    }

    /// Activates every spout again.
    pub fn activate(&self) {
        for (_, s) in self.spouts.iter() {
            let _ = s.send(SpoutMsg::Activate);
        }
    }
}

/// A topology whose tasks are running.
pub struct RunningTopology {
    topology: Arc<Topology>,
    plan: PhysicalPlan,
    tasks: Vec<(TaskId, JoinHandle<Counts>)>,
    ackers: Vec<(TaskId, Sender<AckerIn>, JoinHandle<Counts>)>,
    shared: Vec<(TaskId, Arc<SharedCounts>)>,
    queues: Vec<(TaskId, Sender<Inbound>)>,
    inboxes: Inboxes,
    /// Bolt tasks' inboxes for batches from other workers (with peers only).
    remote_in: Vec<(TaskId, Sender<RemoteBatch>)>,
    latencies: Vec<(TaskId, Arc<Mutex<Histogram>>)>,
    stats: Vec<(TaskId, Arc<Mutex<TaskStats>>)>,
    incarnation: u64,
    worker: usize,
    held: Vec<Arc<AtomicBool>>,
    /// Rung when a spout's `held` flag changes; the sender kept here keeps it from
    /// disconnecting when the spouts end.
    held_changed: Receiver<()>,
    _held_tx: Sender<()>,
    stop: StopHandle,
    done: Receiver<()>,
    errors: Arc<Mutex<Vec<String>>>,
    started: Instant,
    loads: Arc<Loads>,
}

impl std::fmt::Debug for RunningTopology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningTopology")
            .field("topology", &self.topology.name())
            .field("tasks", &self.tasks.len())
            .field("ackers", &self.ackers.len())
            .finish()
    }
}

impl RunningTopology {
    /// The plan it runs.
    pub fn plan(&self) -> &PhysicalPlan {
        &self.plan
    }

    /// A handle that stops it from another thread (a signal handler, a timer).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Starts stopping; see [`StopHandle::stop`].
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// The inboxes of the tasks running here, for a transport to deliver into.
    pub fn inboxes(&self) -> &Inboxes {
        &self.inboxes
    }

    /// Bolt tasks' inboxes for encoded batches from other workers.
    pub(crate) fn remote_inboxes(&self) -> &[(TaskId, Sender<RemoteBatch>)] {
        &self.remote_in
    }

    /// The loads of every task as this worker knows them (its own bolt tasks' inboxes,
    /// what peers reported of theirs).
    pub(crate) fn loads(&self) -> &Arc<Loads> {
        &self.loads
    }

    /// Number of acker tasks running.
    pub fn acker_count(&self) -> usize {
        self.ackers.len()
    }

    /// With [`RunOptions::hold_done`]: true while every spout task here is done with no
    /// pending trees and waits for a stop (true when there are none).
    pub fn spouts_done(&self) -> bool {
        self.held.iter().all(|h| h.load(Ordering::Acquire))
    }

    /// Receives (or is disconnected) whenever [`spouts_done`](Self::spouts_done) may
    /// have changed.
    pub(crate) fn spouts_done_changed(&self) -> &Receiver<()> {
        &self.held_changed
    }

    /// Is disconnected once every component task has ended (see
    /// [`wait_timeout`](Self::wait_timeout)): for a `select!` with other channels.
    pub(crate) fn ended_signal(&self) -> &Receiver<()> {
        &self.done
    }

    /// Waits until every component task has ended or `timeout` passed; true if they
    /// ended.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        matches!(
            self.done.recv_timeout(timeout),
            Err(RecvTimeoutError::Disconnected)
        )
    }

    /// The counts every task published so far (executors publish at each flush, so these
    /// lag by at most a batch and a flush interval).
    pub fn counts(&self) -> Vec<(TaskId, Counts)> {
        self.shared.iter().map(|(t, s)| (*t, s.load())).collect()
    }

    /// The counts of component `id` so far, summed over its tasks.
    pub fn component_counts(&self, id: &str) -> Counts {
        let mut total = Counts::default();
        if let Some((c, _)) = self.topology.component(id) {
            let tasks = self.plan.component_tasks(c);
            for (t, s) in &self.shared {
                if tasks.contains(t) {
                    total.add(&s.load());
                }
            }
        }
        total
    }

    /// Batches waiting for each bolt task: in its input queue (at most the queue
    /// capacity) and, with other workers, in its queue of their batches (at most their
    /// windows).
    pub fn queue_lengths(&self) -> Vec<(TaskId, usize)> {
        self.queues
            .iter()
            .map(|(t, s)| (*t, s.len() + self.remote_waiting(*t)))
            .collect()
    }

    /// Batches from other workers waiting for `task`.
    fn remote_waiting(&self, task: TaskId) -> usize {
        self.remote_in
            .iter()
            .find(|(id, _)| *id == task)
            .map_or(0, |(_, s)| s.len())
    }

    /// The figures of this worker's tasks now (exact counts as of each task's last flush,
    /// latencies and busy time as of its last hand-over, at most
    /// [`PUBLISH_EVERY`](crate::metrics::PUBLISH_EVERY) old), for a
    /// [`Publisher`](crate::metrics::Publisher).
    pub fn snapshot(&self) -> WorkerSnapshot {
        let running = !self.wait_timeout(Duration::ZERO);
        self.snapshot_with(running, self.started.elapsed())
    }

    fn snapshot_with(&self, running: bool, uptime: Duration) -> WorkerSnapshot {
        let tasks = self
            .shared
            .iter()
            .map(|(task, counts)| {
                let (component, kind) = self.task_name(*task);
                let mut t = TaskSnapshot {
                    task: *task,
                    component,
                    kind,
                    counts: counts.load(),
                    ..TaskSnapshot::default()
                };
                if let Some((_, s)) = self.stats.iter().find(|(id, _)| id == task) {
                    if let Ok(s) = s.lock() {
                        t.busy_secs = s.busy_ns as f64 / 1e9;
                        t.execute.clone_from(&s.execute);
                        t.complete.clone_from(&s.complete);
                        t.pending = s.pending;
                        t.last_fail = s.last_fail;
                    }
                }
                if let Some((_, q)) = self.queues.iter().find(|(id, _)| id == task) {
                    t.queue_depth = (q.len() + self.remote_waiting(*task)) as u64;
                }
                t
            })
            .collect();
        WorkerSnapshot {
            topology: self.topology.name().to_string(),
            worker: self.worker,
            incarnation: self.incarnation,
            uptime_secs: uptime.as_secs_f64(),
            running,
            tasks,
            transport: None,
        }
    }

    /// (component id, kind) of task `t`.
    fn task_name(&self, t: TaskId) -> (String, String) {
        match self.plan.task(t).map(|s| s.role) {
            Some(TaskRole::Component(c)) => {
                let comp = &self.topology.components()[c];
                (comp.id.clone(), comp.kind.to_string())
            }
            _ => (ACKER.to_string(), "acker".to_string()),
        }
    }

    /// Waits for every task to end and returns what they did.
    pub fn wait(self) -> RunSummary {
        self.wait_snapshot().0
    }

    /// Waits for every task to end; returns what they did, and the final snapshot of
    /// their figures (every counter exact, ackers included).
    pub fn wait_snapshot(mut self) -> (RunSummary, WorkerSnapshot) {
        let mut by_task: Vec<(TaskId, Counts)> = Vec::new();
        let mut errors = Vec::new();
        let tasks = std::mem::take(&mut self.tasks);
        for (task, h) in tasks {
            match h.join() {
                Ok(c) => by_task.push((task, c)),
                Err(p) => {
                    errors.push(format!(
                        "task {task} stopped abnormally: {}",
                        crate::executor::panic_text(&*p)
                    ));
                    by_task.push((task, Counts::default()));
                }
            }
        }
        let elapsed = self.started.elapsed();
        for (_, tx, _) in &self.ackers {
            let _ = tx.send(AckerIn::Stop);
        }
        let ackers = std::mem::take(&mut self.ackers);
        for (task, _, h) in ackers {
            by_task.push((task, h.join().unwrap_or_default()));
        }
        let snapshot = self.snapshot_with(false, elapsed);
        if let Ok(e) = self.errors.lock() {
            errors.splice(0..0, e.iter().cloned());
        }
        let counts_of = |t: TaskId| {
            by_task
                .iter()
                .find(|(id, _)| *id == t)
                .map(|(_, c)| *c)
                .unwrap_or_default()
        };
        // Only the tasks that ran here (all of them unless one worker was started).
        let ran_here = |t: &&TaskId| by_task.iter().any(|(id, _)| id == *t);
        let summarize = |id: String, kind: &str, tasks: &[TaskId]| {
            let tasks: Vec<TaskSummary> = tasks
                .iter()
                .filter(ran_here)
                .map(|&t| TaskSummary {
                    task: t,
                    worker: self.plan.worker_of(t).unwrap_or(0),
                    counts: counts_of(t),
                })
                .collect();
            let mut total = Counts::default();
            let mut latency = Histogram::default();
            for t in &tasks {
                total.add(&t.counts);
                for (_, h) in self.latencies.iter().filter(|(id, _)| *id == t.task) {
                    if let Ok(h) = h.lock() {
                        latency.merge(&h);
                    }
                }
            }
            ComponentSummary {
                id,
                kind: kind.to_string(),
                total,
                complete_latency: latency.latency(),
                execute_latency: None,
                capacity: None,
                tasks,
            }
        };
        let mut components: Vec<ComponentSummary> = self
            .topology
            .components()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                summarize(
                    c.id.clone(),
                    &c.kind.to_string(),
                    self.plan.component_tasks(i),
                )
            })
            .collect();
        if !self.plan.ackers().is_empty() {
            components.push(summarize(ACKER.to_string(), "acker", self.plan.ackers()));
        }
        let mut summary = RunSummary {
            topology: self.topology.name().to_string(),
            elapsed_secs: elapsed.as_secs_f64(),
            components,
            errors,
        };
        crate::metrics::fill_summary(&mut summary, std::slice::from_ref(&snapshot));
        (summary, snapshot)
    }
}

/// The component id of the acker tasks in summaries.
pub const ACKER: &str = "__acker";

enum Instance {
    Spout(Box<dyn Spout>),
    Bolt(Box<dyn Bolt>),
}

/// Starts the tasks of `topology` in this process: every task of the plan (placement
/// then only decides `local_or_shuffle` and where ackers sit; every route is a local
/// queue), or with [`RunOptions::worker`] only that worker's tasks, reaching the others
/// through [`RunOptions::remote`].
pub fn start(
    topology: Arc<Topology>,
    registry: &Registry,
    options: RunOptions,
) -> Result<RunningTopology, StartError> {
    let started = Instant::now();
    let plan = PhysicalPlan::new(&topology);
    let settings = topology.settings().clone();
    let n = plan.tasks().len() + 1;
    let here = |t: TaskId| options.worker.is_none_or(|w| plan.worker_of(t) == Some(w));

    // Make every instance first, so a config the factory refuses starts nothing.
    let mut instances: Vec<Option<Instance>> = (0..n).map(|_| None).collect();
    for slot in plan.tasks().iter().filter(|s| here(s.id)) {
        let TaskRole::Component(c) = slot.role else {
            continue;
        };
        let comp = &topology.components()[c];
        let made = match comp.kind {
            Kind::Spout => registry
                .make_spout(&comp.type_name, &comp.config)
                .map(Instance::Spout),
            Kind::Bolt => registry
                .make_bolt(&comp.type_name, &comp.config)
                .map(Instance::Bolt),
        };
        instances[slot.id as usize] = Some(made.map_err(|e| StartError::Component {
            component: comp.id.clone(),
            type_name: comp.type_name.clone(),
            message: e.to_string(),
        })?);
    }

    // Inboxes.
    let mut data_tx: Vec<Option<Sender<Inbound>>> = vec![None; n];
    let mut data_rx: Vec<Option<Receiver<Inbound>>> = vec![None; n];
    let mut ctl_tx: Vec<Option<Sender<SpoutMsg>>> = vec![None; n];
    let mut ctl_rx: Vec<Option<Receiver<SpoutMsg>>> = vec![None; n];
    for slot in plan.tasks().iter().filter(|s| here(s.id)) {
        let TaskRole::Component(c) = slot.role else {
            continue;
        };
        let i = slot.id as usize;
        match topology.components()[c].kind {
            Kind::Bolt => {
                let (tx, rx) = crossbeam_channel::bounded(options.queue_batches.max(1));
                data_tx[i] = Some(tx);
                data_rx[i] = Some(rx);
            }
            Kind::Spout => {
                let (tx, rx) = crossbeam_channel::unbounded();
                ctl_tx[i] = Some(tx);
                ctl_rx[i] = Some(rx);
            }
        }
    }
    let acker_chans: Vec<(TaskId, Sender<AckerIn>, Receiver<AckerIn>)> = plan
        .ackers()
        .iter()
        .filter(|&&t| here(t))
        .map(|&t| {
            let (tx, rx) = crossbeam_channel::unbounded();
            (t, tx, rx)
        })
        .collect();
    // Routes to every task, local or remote.
    let remote = |t: TaskId| -> Result<&Remotes, StartError> {
        options.remote.as_ref().ok_or(StartError::NoTransport {
            task: t,
            worker: plan.worker_of(t).unwrap_or(0),
        })
    };
    let data_route = |t: TaskId| -> Result<Route<Inbound>, StartError> {
        Ok(match &data_tx[t as usize] {
            Some(tx) => Route::Local(tx.clone()),
            None => Route::Remote(Arc::clone(&remote(t)?.data)),
        })
    };
    let mut acker_routes: Vec<(TaskId, Route<AckerIn>)> = Vec::new();
    for &t in plan.ackers() {
        let route = match acker_chans.iter().find(|a| a.0 == t) {
            Some((_, tx, _)) => Route::Local(tx.clone()),
            None => Route::Remote(Arc::clone(&remote(t)?.acker)),
        };
        acker_routes.push((t, route));
    }
    let mut spout_routes: Vec<Option<Route<SpoutMsg>>> = vec![None; n];
    for slot in plan.tasks() {
        let TaskRole::Component(c) = slot.role else {
            continue;
        };
        if topology.components()[c].kind == Kind::Spout {
            spout_routes[slot.id as usize] = Some(match &ctl_tx[slot.id as usize] {
                Some(tx) => Route::Local(tx.clone()),
                None => Route::Remote(Arc::clone(&remote(slot.id)?.spout)),
            });
        }
    }

    let stop = StopHandle {
        spouts: Arc::new(
            ctl_tx
                .iter()
                .enumerate()
                .filter_map(|(t, s)| s.clone().map(|s| (t as TaskId, s)))
                .collect(),
        ),
        stopped: Arc::new(AtomicBool::new(false)),
    };
    let errors = Arc::new(Mutex::new(Vec::new()));
    let component_tasks = Arc::new(plan.all_component_tasks().to_vec());
    // Spare batch vectors kept for reuse: a few per task is plenty (each holds up to a
    // batch of tuples, so this also bounds what the pool retains).
    let pool = Pool::new(64);
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let (held_tx, held_changed) = crossbeam_channel::bounded::<()>(1);
    let mut rng = rand::rng();
    let local_inboxes = data_tx
        .iter()
        .enumerate()
        .filter_map(|(t, tx)| tx.clone().map(|tx| (t as TaskId, tx)))
        .collect();
    let loads = Arc::new(Loads::new(n, local_inboxes));
    // Load-aware shuffles only where some tasks are elsewhere: one worker of several.
    let aware = (settings.load_aware && options.worker.is_some()).then_some(&loads);

    let mut tasks = Vec::new();
    let mut shared = Vec::new();
    let mut queues = Vec::new();
    let mut remote_in = Vec::new();
    let mut latencies = Vec::new();
    let mut stats = Vec::new();
    let mut held = Vec::new();
    for slot in plan.tasks().iter().filter(|s| here(s.id)) {
        let TaskRole::Component(c) = slot.role else {
            continue;
        };
        let comp = &topology.components()[c];
        let task = slot.id;
        let me = slot.worker;
        let streams: Vec<StreamOut> = comp
            .outputs
            .iter()
            .map(|decl| StreamOut {
                name: decl.name.clone(),
                info: StreamInfo::intern(&comp.id, &decl.name, &decl.fields),
                direct: decl.direct,
                routers: topology
                    .subscribers(c, &decl.name)
                    .map(|(sub, input)| {
                        Router::new(
                            &input.grouping,
                            plan.component_tasks(sub),
                            &decl.fields,
                            |t| plan.worker_of(t) == Some(me),
                            rng.next_u64() as usize,
                            aware,
                        )
                    })
                    .collect(),
            })
            .collect();
        // Every task of every subscriber: each gets the end of this task's stream.
        let downstream: BTreeSet<TaskId> = comp
            .outputs
            .iter()
            .flat_map(|decl| topology.subscribers(c, &decl.name))
            .flat_map(|(sub, _)| plan.component_tasks(sub).iter().copied())
            .collect();
        let dests = downstream
            .iter()
            .map(|&t| data_route(t).map(|r| (t, r)))
            .collect::<Result<Vec<_>, _>>()?;
        let counts = Arc::new(SharedCounts::default());
        shared.push((task, Arc::clone(&counts)));
        let task_stats = Arc::new(Mutex::new(TaskStats::default()));
        stats.push((task, Arc::clone(&task_stats)));
        let out = Output::new(OutputSpec {
            task,
            component: comp.id.clone(),
            streams,
            dests,
            ackers: acker_routes.clone(),
            tracking: settings.acking,
            batch: options.batch_size,
            flush_interval: options.flush_interval,
            pool: pool.clone(),
            shared: counts,
            stats: task_stats,
        });
        let wake = Arc::new(AtomicBool::new(false));
        let notifier = match comp.kind {
            Kind::Spout => {
                let tx = ctl_tx[task as usize].clone();
                Notifier(Arc::new(move || {
                    if let Some(tx) = &tx {
                        let _ = tx.send(SpoutMsg::Wake);
                    }
                }))
            }
            Kind::Bolt => {
                let tx = data_tx[task as usize].clone();
                let flag = Arc::clone(&wake);
                Notifier(Arc::new(move || {
                    if !flag.swap(true, Ordering::AcqRel) {
                        if let Some(tx) = &tx {
                            let _ = tx.try_send(Inbound::Wake);
                        }
                    }
                }))
            }
        };
        let ctx = TaskContext {
            topology: Arc::clone(&topology),
            component: comp.id.clone(),
            task,
            task_index: slot.index,
            component_tasks: Arc::clone(&component_tasks),
            worker: me,
            base_dir: options.base_dir.clone(),
            notifier,
        };
        let done_tx = done_tx.clone();
        let run: Box<dyn FnOnce() -> Counts + Send> = match instances[task as usize].take() {
            Some(Instance::Spout(spout)) => {
                let Some(ctl) = ctl_rx[task as usize].take() else {
                    continue;
                };
                let exec = SpoutExecutor {
                    spout,
                    core: SpoutCore::new(out, settings.message_timeout),
                    ctl,
                    ctx,
                    max_pending: settings.max_spout_pending.filter(|_| settings.acking),
                    stop: stop.clone(),
                    errors: Arc::clone(&errors),
                    latency_out: Arc::default(),
                    hold: options.hold_done.then(|| Hold {
                        flag: Arc::default(),
                        changed: held_tx.clone(),
                    }),
                };
                held.extend(exec.hold.as_ref().map(|h| Arc::clone(&h.flag)));
                latencies.push((task, Arc::clone(&exec.latency_out)));
                Box::new(move || exec.run())
            }
            Some(Instance::Bolt(bolt)) => {
                let Some(inbox) = data_rx[task as usize].take() else {
                    continue;
                };
                if let Some(tx) = &data_tx[task as usize] {
                    queues.push((task, tx.clone()));
                }
                let upstream = comp
                    .inputs
                    .iter()
                    .map(|i| i.from)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|from| plan.component_tasks(from).len())
                    .sum();
                // With peers: a second inbox for their batches, decoded on this thread.
                let remote = options.remote.as_ref().map(|_| {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    remote_in.push((task, tx));
                    RemoteIn::new(
                        rx,
                        wire::DataDecoder::new(Arc::clone(&topology)),
                        task,
                        comp.id.clone(),
                    )
                });
                let exec = BoltExecutor {
                    bolt,
                    core: BoltCore::new(out),
                    inbox,
                    remote,
                    remote_turn: false,
                    ctx,
                    upstream,
                    tick: comp.tick,
                    wake,
                    stop: stop.clone(),
                    errors: Arc::clone(&errors),
                };
                Box::new(move || exec.run())
            }
            None => continue,
        };
        let handle = std::thread::Builder::new()
            .name(format!("{}-{task}", comp.id))
            .spawn(move || {
                let counts = run();
                drop(done_tx);
                counts
            })
            .map_err(|source| StartError::Thread { task, source })?;
        tasks.push((task, handle));
    }
    drop(done_tx);

    let mut ackers = Vec::new();
    for (task, tx, rx) in acker_chans {
        let counts = Arc::new(SharedCounts::default());
        shared.push((task, Arc::clone(&counts)));
        let exec = AckerExecutor {
            task,
            inbox: rx,
            spouts: spout_routes.clone(),
            rotate_every: settings.message_timeout,
            shared: counts,
        };
        let handle = std::thread::Builder::new()
            .name(format!("{ACKER}-{task}"))
            .spawn(move || exec.run())
            .map_err(|source| StartError::Thread { task, source })?;
        ackers.push((task, tx, handle));
    }
    let inboxes = Inboxes {
        data: queues.clone(),
        ackers: ackers.iter().map(|(t, tx, _)| (*t, tx.clone())).collect(),
        spouts: stop.spouts.iter().cloned().collect(),
    };
    tracing::info!(
        topology = topology.name(),
        tasks = tasks.len(),
        ackers = ackers.len(),
        "Topology started."
    );
    loads.set_remote(&remote_in);
    Ok(RunningTopology {
        topology,
        plan,
        tasks,
        ackers,
        shared,
        queues,
        inboxes,
        remote_in,
        latencies,
        stats,
        incarnation: rng.next_u64() | 1,
        worker: options.worker.unwrap_or(0),
        held,
        held_changed,
        _held_tx: held_tx,
        stop,
        done,
        errors,
        started,
        loads,
    })
}
