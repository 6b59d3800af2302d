//! [`RunningTopology`]: the handle to a started topology's tasks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use topo_dsl::Topology;

use super::{Acker, Inboxes, StopHandle, ACKER};
use crate::load::Loads;
use crate::metrics::{TaskSnapshot, TaskStats, WorkerSnapshot};
use crate::plan::{PhysicalPlan, TaskRole};
use crate::route::SpoutMsg;
use crate::route::{AckerIn, Inbound, RemoteBatch};
use crate::state::Confirm;
use crate::summary::{CheckpointFigures, CheckpointSummary};
use crate::summary::{ComponentSummary, Counts, Histogram, RunSummary, SharedCounts, TaskSummary};
use crate::tap::{Tap, TapError, TapPoint, Taps};
use crate::tuple::TaskId;

/// A topology whose tasks are running.
pub struct RunningTopology {
    pub(super) topology: Arc<Topology>,
    pub(super) plan: PhysicalPlan,
    pub(super) tasks: Vec<(TaskId, JoinHandle<Counts>)>,
    pub(super) ackers: Vec<Acker>,
    pub(super) shared: Vec<(TaskId, Arc<SharedCounts>)>,
    pub(super) queues: Vec<(TaskId, Sender<Inbound>)>,
    pub(super) inboxes: Inboxes,
    /// Bolt tasks' inboxes for batches from other workers (with peers only).
    pub(super) remote_in: Vec<(TaskId, Sender<RemoteBatch>)>,
    pub(super) latencies: Vec<(TaskId, Arc<Mutex<Histogram>>)>,
    pub(super) stats: Vec<(TaskId, Arc<Mutex<TaskStats>>)>,
    pub(super) incarnation: u64,
    pub(super) worker: usize,
    pub(super) held: Vec<Arc<AtomicBool>>,
    /// Rung when a spout's `held` flag changes; the sender kept here keeps it from
    /// disconnecting when the spouts end.
    pub(super) held_changed: Receiver<()>,
    pub(super) _held_tx: Sender<()>,
    pub(super) stop: StopHandle,
    pub(super) done: Receiver<()>,
    pub(super) errors: Arc<Mutex<Vec<String>>>,
    pub(super) started: Instant,
    pub(super) loads: Arc<Loads>,
    pub(super) taps: Arc<Taps>,
    /// Confirmations of this process's checkpoint parts (checkpointed, in a worker).
    pub(super) confirms: Option<Receiver<Confirm>>,
    /// The in-process checkpoint coordinator (checkpointed, in one process), and its
    /// figures as of its last checkpoint.
    pub(super) coordinator: Option<JoinHandle<CheckpointSummary>>,
    pub(super) figures: Option<Arc<Mutex<CheckpointFigures>>>,
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

    /// Taps `component`'s tasks in this process (only `stream` when given) until the
    /// returned [`Tap`] is dropped.
    pub fn tap(&self, component: &str, stream: Option<&str>) -> Result<Tap, TapError> {
        self.tap_point().attach(component, stream)
    }

    /// A handle that attaches taps from another thread (the HTTP server).
    pub fn tap_point(&self) -> TapPoint {
        TapPoint::new(Arc::clone(&self.topology), Arc::clone(&self.taps))
    }

    /// A handle that stops it from another thread (a signal handler, a timer).
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Starts stopping; see [`StopHandle::stop`].
    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Starts checkpoint `id` in this process's spout tasks (each records its position
    /// and emits the barrier); false when a spout task has ended.
    pub fn checkpoint(&self, id: u64) -> bool {
        let mut all = true;
        for (_, s) in self.stop.spouts() {
            all &= s.send(SpoutMsg::Checkpoint(id)).is_ok();
        }
        all
    }

    /// Confirmations of the checkpoint parts this process's tasks wrote, for a
    /// coordinator elsewhere (a worker's supervisor); `None` when the topology does not
    /// checkpoint or coordinates itself (one process).
    pub fn confirmations(&self) -> Option<&Receiver<Confirm>> {
        self.confirms.as_ref()
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
            process: crate::metrics::ProcessStats::current(),
            checkpoints: self
                .figures
                .as_ref()
                .and_then(|f| f.lock().ok().map(|f| Box::new(f.clone()))),
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
        let checkpoints = self
            .coordinator
            .take()
            .and_then(|h| h.join().ok())
            .map(Box::new);
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
            checkpoints,
        };
        crate::metrics::fill_summary(&mut summary, std::slice::from_ref(&snapshot));
        (summary, snapshot)
    }
}
