//! Per-task counters and the run summary `topo run` prints.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

use crate::tuple::TaskId;

/// Failures by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailReasons {
    /// A bolt failed the tuple (`fail`, or `execute` returned `Err`); for a spout, a bolt
    /// failed a tuple of the tree.
    pub explicit: u64,
    /// The tree was not complete within the message timeout (spouts only).
    pub timeout: u64,
    /// User code panicked while executing the tuple (bolts only).
    pub panic: u64,
    /// A worker the tree may have gone through was lost (its connection dropped), so
    /// the spout failed the tree at once rather than at its timeout (spouts only).
    #[serde(default)]
    pub worker_lost: u64,
}

/// What one task (or a component's tasks together) did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
        self.failed_by.worker_lost += other.failed_by.worker_lost;
        self.errors += other.errors;
    }
}

/// Counters an executor publishes for others to read while it runs.
#[derive(Debug, Default)]
pub(crate) struct SharedCounts {
    fields: [AtomicU64; 10],
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
            c.failed_by.worker_lost,
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
                worker_lost: v[9],
            },
            errors: v[8],
        }
    }
}

/// Latencies in log-linear buckets of microseconds: exact below 8 µs, then 8 buckets per
/// power of two (within 12.5 %). Recording is an add, never an allocation once the
/// buckets cover the range seen; histograms of several tasks or workers merge exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum_us: u64,
    max_us: u64,
}

impl Histogram {
    fn index(us: u64) -> usize {
        if us < 8 {
            us as usize
        } else {
            let exp = 63 - us.leading_zeros() as usize;
            (exp - 2) * 8 + ((us >> (exp - 3)) & 7) as usize
        }
    }

    /// The largest value of bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 8 {
            i as u64
        } else {
            let exp = i / 8 + 2;
            let sub = (i % 8) as u64;
            ((8 + sub + 1) << (exp - 3)) - 1
        }
    }

    /// Records one latency.
    pub fn record(&mut self, d: std::time::Duration) {
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        let i = Self::index(us);
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += 1;
        self.count += 1;
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    fn quantile_us(&self, q: f64) -> u64 {
        let rank = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(i).min(self.max_us);
            }
        }
        self.max_us
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the values recorded, in seconds.
    pub fn sum_secs(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// The non-empty buckets as (upper bound in seconds, values in it), in order.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(i, n)| (Self::upper(i) as f64 / 1e6, *n))
    }

    /// What `self` holds beyond `earlier` (an earlier state of the same histogram), as
    /// (upper bound in seconds, new values) per bucket.
    pub fn since<'a>(&'a self, earlier: &'a Histogram) -> impl Iterator<Item = (f64, u64)> + 'a {
        self.buckets.iter().enumerate().filter_map(move |(i, n)| {
            let before = earlier.buckets.get(i).copied().unwrap_or(0);
            (*n > before).then(|| (Self::upper(i) as f64 / 1e6, n - before))
        })
    }

    /// The summary of what was recorded, `None` when nothing was.
    pub fn latency(&self) -> Option<Latency> {
        let ms = |us: u64| us as f64 / 1000.0;
        (self.count > 0).then(|| Latency {
            samples: self.count,
            mean_ms: self.sum_us as f64 / self.count as f64 / 1000.0,
            p50_ms: ms(self.quantile_us(0.50)),
            p99_ms: ms(self.quantile_us(0.99)),
            max_ms: ms(self.max_us),
        })
    }
}

/// A latency distribution: complete latency of a spout's trees (emit to ack), or execute
/// latency of a bolt's inputs (time in `execute`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Trees measured.
    pub samples: u64,
    /// Mean, in milliseconds.
    pub mean_ms: f64,
    /// Median (upper bound of its bucket, within 12.5 %).
    pub p50_ms: f64,
    /// 99th percentile (upper bound of its bucket, within 12.5 %).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// The figures of a run's checkpoints, in its summary.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    /// Checkpoints committed.
    pub completed: u64,
    /// Checkpoints that failed (a part not written, a timeout, a rollback meanwhile).
    pub failed: u64,
    /// The id of the last committed checkpoint.
    pub last_completed: Option<u64>,
    /// Start to commit of each committed checkpoint.
    pub duration: Option<Latency>,
    /// The longest alignment of any task, per committed checkpoint.
    pub alignment: Option<Latency>,
    /// Bytes of the last committed checkpoint's parts.
    pub size_bytes: u64,
    /// Start to commit of the last committed checkpoint, in milliseconds.
    #[serde(default)]
    pub last_duration_ms: Option<f64>,
    /// Rollbacks to a committed checkpoint after a worker died.
    pub rollbacks: u64,
}

/// A coordinator's checkpoint figures as they go to the metrics: the summary's counts
/// with the whole duration and alignment histograms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckpointFigures {
    /// Counts, last id, size, rollbacks (`duration` and `alignment` unset: see below).
    pub summary: CheckpointSummary,
    /// Start to commit of each committed checkpoint.
    pub durations: Histogram,
    /// The longest alignment of any task, per committed checkpoint.
    pub alignments: Histogram,
}

impl CheckpointFigures {
    /// The summary with its latencies.
    pub fn to_summary(&self) -> CheckpointSummary {
        CheckpointSummary {
            duration: self.durations.latency(),
            alignment: self.alignments.latency(),
            ..self.summary.clone()
        }
    }
}

/// One task's counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentSummary {
    /// The component id (`__acker` for the ackers).
    pub id: String,
    /// `spout`, `bolt` or `acker`.
    pub kind: String,
    /// Sum over its tasks.
    #[serde(flatten)]
    pub total: Counts,
    /// Complete latency of its acked trees (spouts with acking on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_latency: Option<Latency>,
    /// Time in `execute` per input (bolts; sampled, one input in
    /// [`EXECUTE_SAMPLE`](crate::metrics::EXECUTE_SAMPLE)).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execute_latency: Option<Latency>,
    /// Fraction of the run its busiest task spent in user code (bolts: `execute` and
    /// `tick`; spouts: everything but waiting), 0 to 1; near 1 it is the bottleneck.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<f64>,
    /// Each task.
    pub tasks: Vec<TaskSummary>,
}

/// What a run did: `topo run` prints it at exit, as a table or as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    /// The topology's name.
    pub topology: String,
    /// Seconds from start to the last task's end.
    pub elapsed_secs: f64,
    /// Every component in topology order, then the ackers.
    pub components: Vec<ComponentSummary>,
    /// Errors that stopped a task's user code from starting (`open`/`prepare`).
    pub errors: Vec<String>,
    /// The run's checkpoints (a checkpointed topology).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Box<CheckpointSummary>>,
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
            "{:<width$}  {:<5}  {:>5}  {:>12}  {:>12}  {:>12}  {:>12}  {:>8}  {:>8}  {:>8}  \
             {:>9}  {:>11}  {:>8}",
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
            "exec_ms",
            "complete_ms",
            "capacity",
        )?;
        let ms = |l: &Option<Latency>| {
            l.map_or_else(|| "-".to_string(), |l| format!("{:.3}", l.mean_ms))
        };
        for c in &self.components {
            let t = &c.total;
            writeln!(
                f,
                "{:<width$}  {:<5}  {:>5}  {:>12}  {:>12}  {:>12}  {:>12}  {:>8}  {:>8}  {:>8}  \
                 {:>9}  {:>11}  {:>8}",
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
                ms(&c.execute_latency),
                ms(&c.complete_latency),
                c.capacity
                    .map_or_else(|| "-".to_string(), |x| format!("{x:.3}")),
            )?;
        }
        for c in &self.components {
            if let Some(l) = &c.complete_latency {
                writeln!(
                    f,
                    "complete latency of `{}`: mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms, \
                     max {:.3} ms",
                    c.id, l.mean_ms, l.p50_ms, l.p99_ms, l.max_ms
                )?;
            }
        }
        if let Some(k) = &self.checkpoints {
            write!(
                f,
                "checkpoints: {} completed, {} failed, last {}, {} bytes, {} rollbacks",
                k.completed,
                k.failed,
                k.last_completed
                    .map_or_else(|| "-".to_string(), |id| id.to_string()),
                k.size_bytes,
                k.rollbacks
            )?;
            if let Some(d) = &k.duration {
                write!(
                    f,
                    "; duration p50 {:.3} ms, p99 {:.3} ms",
                    d.p50_ms, d.p99_ms
                )?;
            }
            if let Some(a) = &k.alignment {
                write!(
                    f,
                    "; alignment p99 {:.3} ms, max {:.3} ms",
                    a.p99_ms, a.max_ms
                )?;
            }
            writeln!(f)?;
        }
        write!(f, "{} in {:.3}s", self.topology, self.elapsed_secs)?;
        for e in &self.errors {
            write!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_bound_their_values_within_an_eighth() {
        for us in [
            0, 1, 7, 8, 9, 15, 16, 17, 100, 1000, 4999, 123_456, 10_000_000,
        ] {
            let i = Histogram::index(us);
            assert!(Histogram::upper(i) >= us, "{us}");
            assert!(i == 0 || Histogram::upper(i - 1) < us, "{us}");
            assert!(
                Histogram::upper(i) as f64 <= us as f64 * 1.125 + 1.0,
                "{us}"
            );
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record(Duration::from_millis(ms));
        }
        let l = h.latency().unwrap();
        assert_eq!(l.samples, 100);
        assert!((50.0..=50.0 * 1.125).contains(&l.p50_ms), "{l:?}");
        assert!((99.0..=100.0).contains(&l.p99_ms), "{l:?}");
        assert_eq!(l.max_ms, 100.0);
    }
}
