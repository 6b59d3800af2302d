//! Per-task counters and the run summary `topo run` prints.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::Serialize;

use crate::tuple::TaskId;

/// Failures by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FailReasons {
    /// A bolt failed the tuple (`fail`, or `execute` returned `Err`); for a spout, a bolt
    /// failed a tuple of the tree.
    pub explicit: u64,
    /// The tree was not complete within the message timeout (spouts only).
    pub timeout: u64,
    /// User code panicked while executing the tuple (bolts only).
    pub panic: u64,
}

/// What one task (or a component's tasks together) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Tuples emitted (one per emit call, whatever the number of receivers).
    pub emitted: u64,
    /// Tuples sent to tasks (an emit to three tasks counts three).
    pub transferred: u64,
    /// Tuples executed (bolts) or acker messages processed (ackers).
    pub executed: u64,
    /// Spouts: trees acked; bolts: inputs acked; ackers: trees completed.
    pub acked: u64,
    /// Spouts: trees failed; bolts: inputs failed; ackers: trees failed.
    pub failed: u64,
    /// `failed` by reason.
    pub failed_by: FailReasons,
    /// Errors and panics of user code outside a tuple (`open`, `next_tuple`, `tick`, ...).
    pub errors: u64,
}

impl Counts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Counts) {
        self.emitted += other.emitted;
        self.transferred += other.transferred;
        self.executed += other.executed;
        self.acked += other.acked;
        self.failed += other.failed;
        self.failed_by.explicit += other.failed_by.explicit;
        self.failed_by.timeout += other.failed_by.timeout;
        self.failed_by.panic += other.failed_by.panic;
        self.errors += other.errors;
    }
}

/// Counters an executor publishes for others to read while it runs.
#[derive(Debug, Default)]
pub(crate) struct SharedCounts {
    fields: [AtomicU64; 9],
}

impl SharedCounts {
    pub(crate) fn publish(&self, c: &Counts) {
        let values = [
            c.emitted,
            c.transferred,
            c.executed,
            c.acked,
            c.failed,
            c.failed_by.explicit,
            c.failed_by.timeout,
            c.failed_by.panic,
            c.errors,
        ];
        for (f, v) in self.fields.iter().zip(values) {
            f.store(v, Relaxed);
        }
    }

    pub(crate) fn load(&self) -> Counts {
        let v: Vec<u64> = self.fields.iter().map(|f| f.load(Relaxed)).collect();
        Counts {
            emitted: v[0],
            transferred: v[1],
            executed: v[2],
            acked: v[3],
            failed: v[4],
            failed_by: FailReasons {
                explicit: v[5],
                timeout: v[6],
                panic: v[7],
            },
            errors: v[8],
        }
    }
}

/// One task's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSummary {
    /// The task id.
    pub task: TaskId,
    /// The worker it ran in.
    pub worker: usize,
    /// What it did.
    #[serde(flatten)]
    pub counts: Counts,
}

/// One component's counts, in all and per task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentSummary {
    /// The component id (`__acker` for the ackers).
    pub id: String,
    /// `spout`, `bolt` or `acker`.
    pub kind: String,
    /// Sum over its tasks.
    #[serde(flatten)]
    pub total: Counts,
    /// Each task.
    pub tasks: Vec<TaskSummary>,
}

/// What a run did: `topo run` prints it at exit, as a table or as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    /// The topology's name.
    pub topology: String,
    /// Seconds from start to the last task's end.
    pub elapsed_secs: f64,
    /// Every component in topology order, then the ackers.
    pub components: Vec<ComponentSummary>,
    /// Errors that stopped a task's user code from starting (`open`/`prepare`).
    pub errors: Vec<String>,
}

impl RunSummary {
    /// The summary of component `id`.
    pub fn component(&self, id: &str) -> Option<&ComponentSummary> {
        self.components.iter().find(|c| c.id == id)
    }

    /// The counts of component `id`, zero when there is none.
    pub fn counts(&self, id: &str) -> Counts {
        self.component(id).map(|c| c.total).unwrap_or_default()
    }
}

impl fmt::Display for RunSummary {
    /// The table `topo run` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .components
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(0)
            .max("component".len());
        writeln!(
            f,
            "{:<width$}  {:<5}  {:>5}  {:>12}  {:>12}  {:>12}  {:>12}  {:>8}  {:>8}  {:>8}",
            "component",
            "kind",
            "tasks",
            "emitted",
            "executed",
            "acked",
            "failed",
            "explicit",
            "timeout",
            "panic",
        )?;
        for c in &self.components {
            let t = &c.total;
            writeln!(
                f,
                "{:<width$}  {:<5}  {:>5}  {:>12}  {:>12}  {:>12}  {:>12}  {:>8}  {:>8}  {:>8}",
                c.id,
                c.kind,
                c.tasks.len(),
                t.emitted,
                t.executed,
                t.acked,
                t.failed,
                t.failed_by.explicit,
                t.failed_by.timeout,
                t.failed_by.panic,
            )?;
        }
        write!(f, "{} in {:.3}s", self.topology, self.elapsed_secs)?;
        for e in &self.errors {
            write!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}
