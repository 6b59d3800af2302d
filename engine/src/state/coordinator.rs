//! The checkpoint coordinator: starts checkpoint N, collects every task's confirmation,
//! commits the manifest, and keeps the figures of the run's checkpoints.
//!
//! One checkpoint is in flight at a time: the next one starts once the last committed or
//! failed. A checkpoint fails when a task could not write its part, when it is not
//! complete within its timeout, or when the run rolls back while it is in flight; its
//! parts are removed and the next checkpoint has a new id.
//!
//! `topo run`'s supervisor drives it (with `workers > 1`, over the workers' control
//! channels), so does a thread of a run in one process (`runtime::checkpoint`), and so
//! does the cluster coordinator (through the supervisors, [`Coordinator::for_tasks`]).

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use topo_dsl::Topology;

use super::store::{CheckpointStore, Manifest, PartEntry};
use super::StateError;
use crate::plan::{PhysicalPlan, TaskRole};
use crate::summary::{CheckpointFigures, CheckpointSummary, Histogram};

/// What a task says about its part of a checkpoint once it wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confirm {
    /// The checkpoint.
    pub id: u64,
    /// The part it wrote, or why it could not.
    pub part: Result<PartEntry, String>,
    /// How long the task held inputs whose barrier had arrived, waiting for the others,
    /// in seconds.
    pub alignment_secs: f64,
}

struct InFlight {
    id: u64,
    started: Instant,
    parts: Vec<PartEntry>,
    alignment: f64,
}

/// Starts, completes and commits checkpoints.
pub struct Coordinator {
    store: CheckpointStore,
    topology: String,
    /// Component tasks: each confirms every checkpoint.
    expected: usize,
    next: u64,
    in_flight: Option<InFlight>,
    timeout: Duration,
    durations: Histogram,
    alignments: Histogram,
    summary: CheckpointSummary,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("next", &self.next)
            .field("summary", &self.summary)
            .finish()
    }
}

/// A checkpoint that is not complete this long after its start fails: ten intervals, and
/// at least ten seconds.
pub fn checkpoint_timeout(interval: Duration) -> Duration {
    (interval * 10).max(Duration::from_secs(10))
}

impl Coordinator {
    /// A coordinator of `topology`'s checkpoints in `store`; the first id follows the
    /// newest checkpoint the store holds.
    pub fn new(store: CheckpointStore, topology: &Topology) -> Result<Self, StateError> {
        let plan = PhysicalPlan::new(topology);
        let expected = plan
            .tasks()
            .iter()
            .filter(|t| matches!(t.role, TaskRole::Component(_)))
            .count();
        let interval = topology
            .settings()
            .checkpoints
            .as_ref()
            .map_or(Duration::from_secs(1), |c| c.interval);
        Self::for_tasks(store, topology.name(), expected, interval)
    }

    /// A coordinator of the checkpoints of topology `name`, whose `expected` component
    /// tasks each confirm every checkpoint, taken every `interval`, for a driver that has
    /// the topology's file but not its components (the cluster coordinator).
    pub fn for_tasks(
        store: CheckpointStore,
        name: &str,
        expected: usize,
        interval: Duration,
    ) -> Result<Self, StateError> {
        let next = store.newest_id()?.map_or(1, |n| n + 1);
        Ok(Coordinator {
            store,
            topology: name.to_string(),
            expected,
            next,
            in_flight: None,
            timeout: checkpoint_timeout(interval),
            durations: Histogram::default(),
            alignments: Histogram::default(),
            summary: CheckpointSummary::default(),
        })
    }

    /// The store it commits to.
    pub fn store(&self) -> &CheckpointStore {
        &self.store
    }

    /// Starts the next checkpoint and returns its id, unless one is in flight (one that
    /// timed out fails first, and `None` is returned then too).
    pub fn start(&mut self, now: Instant) -> Option<u64> {
        if let Some(f) = &self.in_flight {
            if now.saturating_duration_since(f.started) >= self.timeout {
                let id = f.id;
                tracing::warn!(checkpoint = id, "A checkpoint timed out.");
                self.fail();
            }
            return None;
        }
        let id = self.next;
        self.next += 1;
        self.in_flight = Some(InFlight {
            id,
            started: now,
            parts: Vec::with_capacity(self.expected),
            alignment: 0.0,
        });
        Some(id)
    }

    /// The checkpoint in flight.
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight.as_ref().map(|f| f.id)
    }

    /// A task confirmed its part; returns the manifest when this completed the
    /// checkpoint and it was committed.
    pub fn confirm(&mut self, c: Confirm) -> Option<Manifest> {
        let f = self.in_flight.as_mut().filter(|f| f.id == c.id)?;
        match c.part {
            Ok(part) => {
                f.alignment = f.alignment.max(c.alignment_secs);
                if !f
                    .parts
                    .iter()
                    .any(|p| p.component == part.component && p.task == part.task)
                {
                    f.parts.push(part);
                }
            }
            Err(e) => {
                tracing::warn!(checkpoint = c.id, error = %e, "A task could not write its part of a checkpoint.");
                self.fail();
                return None;
            }
        }
        if f.parts.len() < self.expected {
            return None;
        }
        let f = self.in_flight.take()?;
        let mut parts = f.parts;
        parts.sort_by(|a, b| (&a.component, a.task).cmp(&(&b.component, b.task)));
        let manifest = Manifest {
            id: f.id,
            topology: self.topology.clone(),
            parts,
        };
        match self.store.commit(&manifest) {
            Ok(()) => {
                let took = f.started.elapsed();
                self.durations.record(took);
                self.alignments
                    .record(Duration::from_secs_f64(f.alignment.max(0.0)));
                self.summary.completed += 1;
                self.summary.last_completed = Some(manifest.id);
                self.summary.size_bytes = manifest.size();
                self.summary.last_duration_ms = Some(took.as_secs_f64() * 1000.0);
                tracing::debug!(
                    checkpoint = manifest.id,
                    ms = took.as_millis() as u64,
                    "Checkpoint committed."
                );
                Some(manifest)
            }
            Err(e) => {
                tracing::warn!(checkpoint = manifest.id, error = %e, "Cannot commit a checkpoint.");
                self.in_flight = Some(InFlight {
                    id: manifest.id,
                    started: f.started,
                    parts: Vec::new(),
                    alignment: 0.0,
                });
                self.fail();
                None
            }
        }
    }

    /// The checkpoint in flight fails (its parts are removed).
    pub fn fail(&mut self) {
        if let Some(f) = self.in_flight.take() {
            self.summary.failed += 1;
            if let Err(e) = self.store.abort(f.id) {
                tracing::warn!(checkpoint = f.id, error = %e, "Cannot remove a failed checkpoint.");
            }
        }
    }

    /// The checkpoint in flight will not complete because the run ends (a spout ended
    /// its stream): its parts are removed, and it does not count as failed.
    pub fn abandon(&mut self) {
        if let Some(f) = self.in_flight.take() {
            if let Err(e) = self.store.abort(f.id) {
                tracing::warn!(checkpoint = f.id, error = %e, "Cannot remove a checkpoint.");
            }
        }
    }

    /// The run rolls back to the last committed checkpoint: what is in flight fails.
    pub fn rollback(&mut self) {
        self.fail();
        self.summary.rollbacks += 1;
    }

    /// Goes on counting from `earlier`, the figures of an earlier coordinator of the same
    /// topology (a restarted cluster coordinator, a rebalanced topology): its counts, last
    /// id, size and rollbacks; the latencies start afresh.
    pub fn continue_from(&mut self, earlier: &CheckpointSummary) {
        self.summary = CheckpointSummary {
            duration: None,
            alignment: None,
            ..earlier.clone()
        };
    }

    /// The figures so far.
    pub fn summary(&self) -> CheckpointSummary {
        self.figures().to_summary()
    }

    /// The figures so far, histograms whole (for the metrics).
    pub fn figures(&self) -> CheckpointFigures {
        CheckpointFigures {
            summary: self.summary.clone(),
            durations: self.durations.clone(),
            alignments: self.alignments.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use topo_dsl::{StreamDecl, Topology};

    use super::*;
    use crate::state::{Backend, LocalBackend, TaskState};
    use crate::{Bolt, BoltOutput, Poll, Registry, Spout, SpoutOutput, Tuple};

    struct Idle;
    impl Spout for Idle {
        fn next_tuple(&mut self, _out: &mut SpoutOutput<'_>) -> crate::Result<Poll> {
            Ok(Poll::Done)
        }
    }
    struct Sink;
    impl Bolt for Sink {
        fn execute(&mut self, _t: &Tuple, _out: &mut BoltOutput<'_>) -> crate::Result<()> {
            Ok(())
        }
    }
    #[derive(serde::Deserialize)]
    struct NoConfig {}

    /// A topology of one spout task and two bolt tasks, and a coordinator over a
    /// temporary folder.
    fn coordinator(dir: &std::path::Path) -> (Coordinator, LocalBackend) {
        let mut registry = Registry::new();
        registry.spout(
            "idle",
            "",
            |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
            |_| Ok(Idle),
        );
        registry.rewinds("idle", |_: &NoConfig| true);
        registry.bolt("sink", "", |_: &NoConfig| Vec::new(), |_| Ok(Sink));
        let topology = Topology::builder("t")
            .checkpoint_interval_secs(1.0)
            .spout("s", "idle")
            .bolt("b", "sink")
            .parallelism(2)
            .shuffle("s")
            .build(&registry)
            .expect("valid");
        let backend = LocalBackend::open(dir).expect("open");
        let store = CheckpointStore::new(Arc::new(backend.clone()));
        (Coordinator::new(store, &topology).expect("new"), backend)
    }

    fn confirm(c: &mut Coordinator, id: u64, component: &str, task: usize) -> Option<Manifest> {
        let part = c
            .store()
            .write_part(id, component, task, 2, &TaskState::default())
            .map_err(|e| e.to_string());
        c.confirm(Confirm {
            id,
            part,
            alignment_secs: 0.5,
        })
    }

    #[test]
    fn a_checkpoint_commits_once_every_task_confirmed_and_only_one_is_in_flight() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut c, backend) = coordinator(dir.path());
        let now = Instant::now();
        assert_eq!(c.start(now), Some(1));
        assert_eq!(c.start(now), None, "one in flight");
        assert!(confirm(&mut c, 1, "s", 0).is_none());
        assert!(confirm(&mut c, 1, "b", 0).is_none());
        // A confirmation of another checkpoint, or the same one twice, changes nothing.
        assert!(confirm(&mut c, 7, "b", 1).is_none());
        assert!(confirm(&mut c, 1, "b", 0).is_none());
        assert!(backend.committed().expect("list").is_empty());
        let m = confirm(&mut c, 1, "b", 1).expect("committed");
        assert_eq!(m.parts.len(), 3);
        assert_eq!(backend.committed().expect("list"), [1]);
        let s = c.summary();
        assert_eq!((s.completed, s.failed, s.last_completed), (1, 0, Some(1)));
        assert_eq!(s.alignment.expect("alignment").samples, 1);
        assert_eq!(c.start(now), Some(2));
    }

    #[test]
    fn a_part_not_written_or_a_timeout_fails_the_checkpoint_and_removes_its_parts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut c, backend) = coordinator(dir.path());
        let now = Instant::now();
        assert_eq!(c.start(now), Some(1));
        confirm(&mut c, 1, "s", 0);
        let failed = c.confirm(Confirm {
            id: 1,
            part: Err("disk full".into()),
            alignment_secs: 0.0,
        });
        assert!(failed.is_none());
        assert!(!backend.checkpoint_dir(1).exists(), "parts removed");
        assert_eq!(c.summary().failed, 1);

        assert_eq!(c.start(now), Some(2));
        confirm(&mut c, 2, "s", 0);
        let late = now + checkpoint_timeout(Duration::from_secs(1));
        assert_eq!(c.start(late), None, "the timed-out one fails first");
        assert!(!backend.checkpoint_dir(2).exists());
        assert_eq!(c.summary().failed, 2);
        assert_eq!(c.start(late), Some(3));
        c.rollback();
        let s = c.summary();
        assert_eq!((s.failed, s.rollbacks, s.completed), (3, 1, 0));
    }

    #[test]
    fn ids_follow_the_newest_committed_checkpoint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut c, _) = coordinator(dir.path());
        c.start(Instant::now());
        for (comp, task) in [("s", 0), ("b", 0), ("b", 1)] {
            confirm(&mut c, 1, comp, task);
        }
        let (mut again, _) = coordinator(dir.path());
        assert_eq!(again.start(Instant::now()), Some(2));
    }
}
