//! Exact metrics of a running topology: what executors record on their own (no lock and
//! no allocation per tuple), the serializable snapshots a worker reports, and the
//! [`Publisher`] that turns snapshots of every worker into `metrics` series.
//!
//! Executors keep exact counts ([`Counts`]) and per-task latency histograms, and hand a
//! copy to a shared cell at most every [`PUBLISH_EVERY`]. A reporter (the `topo run`
//! loop, or a worker's supervisor) reads them about once a second as a
//! [`WorkerSnapshot`], and [`Publisher::publish`] records them into whatever `metrics`
//! recorder is current — a [`crate::prometheus::Exporter`] for `--metrics-addr`.
//!
//! Every series carries the labels `topology`, `component` and `task` (the transport's
//! carry `worker` and `peer`). The names, in README's table:
//!
//! | name | type | what |
//! |---|---|---|
//! | `topo_tuples_emitted_total` | counter | emit calls |
//! | `topo_tuples_transferred_total` | counter | tuples sent to tasks |
//! | `topo_tuples_executed_total` | counter | inputs executed (bolts), acker messages (ackers) |
//! | `topo_tuples_acked_total` | counter | trees acked (spouts), inputs acked (bolts) |
//! | `topo_tuples_failed_total{reason}` | counter | failures by reason |
//! | `topo_user_errors_total` | counter | errors and panics of user code outside a tuple |
//! | `topo_capacity` | gauge | busy fraction over the last report |
//! | `topo_execute_latency_seconds` | histogram | time in `execute` (sampled) |
//! | `topo_complete_latency_seconds` | histogram | spout emit to tree acked |
//! | `topo_queue_depth_batches` | gauge | batches waiting in a bolt's queue |
//! | `topo_pending_trees` | gauge | trees a spout task waits for |

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};
use metrics::{Label, Unit};
use serde::{Deserialize, Serialize};

use crate::summary::{CheckpointFigures, Counts, Histogram, RunSummary};
use crate::tuple::{MsgId, TaskId};
use topo_transport::{CloseReason, Transport};

/// A bolt measures the time of one `execute` call in this many (the first of each run of
/// this many); counts and busy time stay exact.
pub const EXECUTE_SAMPLE: u64 = 64;

/// An executor hands its figures over at most this often (and when it ends).
pub const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Why a tuple or a tree failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailReason {
    /// A bolt failed it (`fail`, or `execute` returned `Err`).
    Explicit,
    /// The tree was not complete within the message timeout.
    Timeout,
    /// User code panicked executing it.
    Panic,
    /// The worker of the spout task died while the tree was pending, or a worker the tree
    /// may have gone through was lost.
    WorkerLost,
}

impl FailReason {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailReason::Explicit => "explicit",
            FailReason::Timeout => "timeout",
            FailReason::Panic => "panic",
            FailReason::WorkerLost => "worker_lost",
        }
    }
}

/// The last failure a task saw, named in the log line about its component's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailSample {
    /// The spout's message id (failures seen by a spout).
    pub msg_id: Option<MsgId>,
    /// The tree's root id (failures seen by a bolt, which does not know message ids).
    pub root: Option<u64>,
    /// Why.
    pub reason: FailReason,
}

/// What an executor measures besides its counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskStats {
    /// Sampled `execute` times (bolts).
    pub(crate) execute: Histogram,
    /// Complete latencies (spouts).
    pub(crate) complete: Histogram,
    /// Nanoseconds in user code (bolts), or not waiting (spouts, see `waited_ns`).
    pub(crate) busy_ns: u64,
    /// Spouts: nanoseconds spent waiting (idle, or held by `max_spout_pending`).
    pub(crate) waited_ns: u64,
    /// Spouts: pending trees.
    pub(crate) pending: u64,
    /// The last failure.
    pub(crate) last_fail: Option<FailSample>,
}

/// One task's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskSnapshot {
    /// The task id.
    pub task: TaskId,
    /// Its component (`__acker` for ackers).
    pub component: String,
    /// `spout`, `bolt` or `acker`.
    pub kind: String,
    /// Exact counts.
    pub counts: Counts,
    /// Seconds spent in user code (spouts: not waiting).
    pub busy_secs: f64,
    /// Sampled `execute` times (bolts).
    pub execute: Histogram,
    /// Complete latencies (spouts).
    pub complete: Histogram,
    /// Batches waiting in its input queue (bolts).
    pub queue_depth: u64,
    /// Trees pending (spouts).
    pub pending: u64,
    /// The last failure it saw.
    pub last_fail: Option<FailSample>,
}

/// Traffic with one peer worker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSnapshot {
    /// The peer's worker index.
    pub peer: u32,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames sent.
    pub frames_out: u64,
    /// Connections that came up.
    pub connects: u64,
    /// Connections that went down (dropped connections).
    pub disconnects: u64,
    /// Connections closed for a protocol fault.
    pub faults: u64,
    /// Frames dropped (undecodable, or for nobody).
    pub dropped_frames: u64,
}

/// A worker's transport figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransportSnapshot {
    /// Connections closed, by reason (`CloseReason::as_str`), zeros left out.
    pub closed: Vec<(String, u64)>,
    /// Per peer worker.
    pub peers: Vec<PeerSnapshot>,
}

impl TransportSnapshot {
    /// Reads `transport`'s counters; `workers` is the number of workers of the plan.
    pub fn of(transport: &Transport, workers: u32) -> TransportSnapshot {
        let c = transport.counters();
        let closed = CloseReason::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), c.closed(*r)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let peers = (0..workers)
            .filter_map(|w| transport.peer_counters(w).map(|p| (w, p)))
            .map(|(peer, p)| PeerSnapshot {
                peer,
                bytes_in: p.bytes_in(),
                bytes_out: p.bytes_out(),
                frames_in: p.frames_in(),
                frames_out: p.frames_out(),
                connects: p.connects(),
                disconnects: p.disconnects(),
                faults: p.faults(),
                dropped_frames: p.dropped_frames(),
            })
            .collect();
        TransportSnapshot { closed, peers }
    }
}

/// One worker's figures at one moment: what a worker reports to its supervisor.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerSnapshot {
    /// The topology's name.
    pub topology: String,
    /// The worker's index in the plan.
    pub worker: usize,
    /// Differs between two lives of a worker (a restart starts its counts from zero).
    pub incarnation: u64,
    /// Seconds since its tasks started.
    pub uptime_secs: f64,
    /// False once every component task of it ended.
    pub running: bool,
    /// Its tasks, ackers included.
    pub tasks: Vec<TaskSnapshot>,
    /// Its transport, when it has one.
    pub transport: Option<TransportSnapshot>,
    /// The process it runs in (host, pid, memory, CPU), where that can be read.
    #[serde(default)]
    pub process: Option<ProcessStats>,
    /// The run's checkpoint figures, in the snapshot of the process that coordinates
    /// them (`topo run`'s supervisor adds them to its first worker's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<Box<CheckpointFigures>>,
}

/// The operating-system process a worker runs in, as the web UI's worker table shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// The host name.
    pub host: String,
    /// The process id.
    pub pid: u32,
    /// Resident memory, in bytes.
    pub rss_bytes: u64,
    /// CPU time used so far (user and system), in seconds.
    pub cpu_secs: f64,
}

impl ProcessStats {
    /// This process's figures, read from `/proc/self` (Linux); `None` elsewhere.
    pub fn current() -> Option<ProcessStats> {
        static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        let host = HOST.get_or_init(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_default()
        });
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The command name (field 2) may hold spaces: fields are counted after its `)`.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15, the 12th and 13th after the name; rss is 24.
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
        // SAFETY: sysconf has no preconditions.
        let (hz, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let hz = if hz > 0 { hz as f64 } else { 100.0 };
        let page = if page > 0 { page as u64 } else { 4096 };
        Some(ProcessStats {
            host: host.clone(),
            pid: std::process::id(),
            rss_bytes: ticks(21)? * page,
            cpu_secs: (ticks(11)? + ticks(12)?) as f64 / hz,
        })
    }
}

impl WorkerSnapshot {
    /// Encodes it for a control channel (MessagePack).
    pub fn to_bytes(&self) -> Result<Vec<u8>, rmp_serde::encode::Error> {
        rmp_serde::to_vec_named(self)
    }

    /// Decodes what [`WorkerSnapshot::to_bytes`] made.
    pub fn from_bytes(bytes: &[u8]) -> Result<WorkerSnapshot, rmp_serde::decode::Error> {
        rmp_serde::from_slice(bytes)
    }
}

/// Fills each component's complete latency, execute latency and capacity in `summary`
/// from the final snapshots of every worker that ran its tasks: histograms merge exactly;
/// capacity is its busiest task's busy time over its worker's uptime.
pub fn fill_summary(summary: &mut RunSummary, snapshots: &[WorkerSnapshot]) {
    for c in &mut summary.components {
        let mut complete = Histogram::default();
        let mut execute = Histogram::default();
        let mut capacity: Option<f64> = None;
        for w in snapshots {
            for t in w.tasks.iter().filter(|t| t.component == c.id) {
                complete.merge(&t.complete);
                execute.merge(&t.execute);
                if t.kind != "acker" && w.uptime_secs > 0.0 {
                    let x = (t.busy_secs / w.uptime_secs).clamp(0.0, 1.0);
                    capacity = Some(capacity.map_or(x, |m| m.max(x)));
                }
            }
        }
        c.complete_latency = complete.latency();
        c.execute_latency = execute.latency();
        c.capacity = capacity;
    }
}

/// Sums over a component's tasks, across workers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ComponentTotals {
    /// Exact counts (failures of dead workers' pending trees in `worker_lost`).
    pub counts: Counts,
    /// Trees pending of a spout task whose worker died (`reason="worker_lost"`).
    pub worker_lost: u64,
    /// Trees pending now.
    pub pending: u64,
}

/// What [`Publisher::publish`] saw, summed: for a status line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Per component id, sorted.
    pub components: BTreeMap<String, (String, ComponentTotals)>,
    /// Workers whose tasks run.
    pub workers: usize,
}

impl Totals {
    /// Sum over the components of kind `kind` (`spout`, `bolt`, `acker`).
    pub fn of_kind(&self, kind: &str) -> ComponentTotals {
        let mut t = ComponentTotals::default();
        for (k, c) in self.components.values() {
            if k == kind {
                t.counts.add(&c.counts);
                t.worker_lost += c.worker_lost;
                t.pending += c.pending;
            }
        }
        t
    }
}

#[derive(Default)]
struct TaskState {
    /// Counts of earlier lives of the task's worker.
    base: Counts,
    worker_lost: u64,
    /// The last snapshot of this life.
    last: TaskSnapshot,
    last_uptime: f64,
}

#[derive(Default)]
struct WorkerState {
    incarnation: u64,
    /// Transport series of earlier lives, by (name, peer or reason).
    base: HashMap<(&'static str, String), u64>,
    last: HashMap<(&'static str, String), u64>,
}

/// Turns worker snapshots into `metrics` series, keeping counters monotonic across
/// worker restarts, and logs failures at most once a second per component.
pub struct Publisher {
    topology: String,
    tasks: HashMap<TaskId, TaskState>,
    workers: HashMap<usize, WorkerState>,
    described: bool,
    /// Per component: failed total when last logged, and when.
    logged: HashMap<String, (u64, Option<Instant>)>,
    /// The checkpoint figures last published.
    checkpoints: CheckpointFigures,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topology", &self.topology)
            .finish()
    }
}

impl Publisher {
    /// A publisher for topology `topology`.
    pub fn new(topology: &str) -> Publisher {
        Publisher {
            topology: topology.to_string(),
            tasks: HashMap::new(),
            workers: HashMap::new(),
            described: false,
            logged: HashMap::new(),
            checkpoints: CheckpointFigures::default(),
        }
    }

    /// Records the snapshots of every worker (each task in exactly one) into the current
    /// `metrics` recorder, with `restarts` worker restarts so far; returns the totals.
    /// Call it about once a second, and once more with the final snapshots.
    pub fn publish(&mut self, snapshots: &[WorkerSnapshot], restarts: u64) -> Totals {
        if !self.described {
            describe();
            self.described = true;
        }
        let topology = self.topology.clone();
        let mut totals = Totals {
            workers: snapshots.iter().filter(|s| s.running).count(),
            ..Totals::default()
        };
        for w in snapshots {
            let ws = self.workers.entry(w.worker).or_default();
            let restarted = ws.incarnation != w.incarnation;
            if restarted {
                for (k, v) in ws.last.drain() {
                    *ws.base.entry(k).or_default() += v;
                }
                ws.incarnation = w.incarnation;
            }
            if let Some(t) = &w.transport {
                publish_transport(&topology, w.worker, t, ws);
            }
            for t in &w.tasks {
                let st = self.tasks.entry(t.task).or_default();
                if restarted && st.last != TaskSnapshot::default() {
                    st.base.add(&st.last.counts);
                    st.worker_lost += st.last.pending;
                    st.last = TaskSnapshot::default();
                    st.last_uptime = 0.0;
                }
                publish_task(&topology, t, st, w.uptime_secs);
                let mut counts = st.base;
                counts.add(&t.counts);
                let entry = totals
                    .components
                    .entry(t.component.clone())
                    .or_insert_with(|| (t.kind.clone(), ComponentTotals::default()));
                entry.1.counts.add(&counts);
                entry.1.worker_lost += st.worker_lost;
                entry.1.pending += t.pending;
                st.last = t.clone();
                st.last_uptime = w.uptime_secs;
            }
        }
        gauge!("topo_workers", "topology" => topology.clone()).set(totals.workers as f64);
        gauge!("topo_running", "topology" => topology.clone()).set(
            if snapshots.iter().any(|s| s.running) {
                1.0
            } else {
                0.0
            },
        );
        counter!("topo_worker_restarts_total", "topology" => topology.clone()).absolute(restarts);
        if let Some(k) = snapshots.iter().find_map(|s| s.checkpoints.as_deref()) {
            publish_checkpoints(&topology, k, &self.checkpoints);
            self.checkpoints = k.clone();
        }
        self.log_failures(snapshots, &totals);
        totals
    }

    /// One line per component whose failures grew, at most once a second each, naming
    /// a sample failure.
    fn log_failures(&mut self, snapshots: &[WorkerSnapshot], totals: &Totals) {
        let now = Instant::now();
        for (id, (kind, c)) in &totals.components {
            if kind == "acker" {
                // The spouts' lines name the same trees, with their message ids.
                continue;
            }
            let failed = c.counts.failed + c.worker_lost;
            let (seen, at) = self.logged.entry(id.clone()).or_default();
            if failed <= *seen || at.is_some_and(|a| now.duration_since(a) < Duration::from_secs(1))
            {
                continue;
            }
            let sample = snapshots
                .iter()
                .flat_map(|s| &s.tasks)
                .filter(|t| &t.component == id)
                .find_map(|t| t.last_fail.map(|f| (t.task, f)));
            if sample.is_none() && c.counts.failed > 0 {
                // The counts run ahead of the sample (handed over every 100 ms): log when
                // it arrives, so the line can name a failed message.
                continue;
            }
            let new = failed - *seen;
            match sample {
                Some((task, f)) => {
                    let which = match (f.msg_id, f.root) {
                        (Some(m), _) => format!("message id {m}"),
                        (None, Some(r)) => format!("tree {r:#018x}"),
                        (None, None) => "a tuple".to_string(),
                    };
                    tracing::warn!(
                        component = %id,
                        task,
                        failed = new,
                        reason = f.reason.as_str(),
                        "Tuples failed; e.g. {which}: {}.",
                        f.reason.as_str()
                    );
                }
                None => tracing::warn!(component = %id, failed = new, "Tuples failed."),
            }
            *seen = failed;
            *at = Some(now);
        }
    }
}

fn describe() {
    describe_counter!("topo_tuples_emitted_total", "Tuples emitted (emit calls).");
    describe_counter!(
        "topo_tuples_transferred_total",
        "Tuples sent to tasks (an emit to three tasks counts three)."
    );
    describe_counter!(
        "topo_tuples_executed_total",
        "Inputs executed (bolts) or acker messages processed (ackers)."
    );
    describe_counter!(
        "topo_tuples_acked_total",
        "Spouts: trees acked; bolts: inputs acked; ackers: trees completed."
    );
    describe_counter!(
        "topo_tuples_failed_total",
        "Spouts: trees failed; bolts: inputs failed; by reason."
    );
    describe_counter!(
        "topo_user_errors_total",
        "Errors and panics of user code outside a tuple (open, next_tuple, tick, ...)."
    );
    describe_gauge!(
        "topo_capacity",
        "Fraction of the last report interval the task spent in user code."
    );
    describe_histogram!(
        "topo_execute_latency_seconds",
        Unit::Seconds,
        "Time in execute, one input in 64 measured."
    );
    describe_histogram!(
        "topo_complete_latency_seconds",
        Unit::Seconds,
        "From a spout's emit to its tree's ack."
    );
    describe_gauge!(
        "topo_queue_depth_batches",
        "Batches waiting in a bolt task's input queue."
    );
    describe_gauge!("topo_pending_trees", "Trees a spout task waits for.");
    describe_gauge!("topo_workers", "Workers running tasks.");
    describe_gauge!(
        "topo_running",
        "1 while the topology runs, 0 once it ended."
    );
    describe_counter!(
        "topo_worker_restarts_total",
        "Workers restarted after dying."
    );
    describe_counter!(
        "topo_transport_bytes_total",
        Unit::Bytes,
        "Bytes to or from a peer worker."
    );
    describe_counter!(
        "topo_transport_frames_total",
        "Frames to or from a peer worker."
    );
    describe_counter!(
        "topo_transport_disconnects_total",
        "Connections to a peer worker that went down."
    );
    describe_counter!(
        "topo_transport_dropped_frames_total",
        "Frames from a peer dropped (undecodable, or for nobody)."
    );
    describe_histogram!(
        "topo_checkpoint_duration_seconds",
        Unit::Seconds,
        "From a checkpoint's start to its commit, per committed checkpoint."
    );
    describe_histogram!(
        "topo_checkpoint_alignment_seconds",
        Unit::Seconds,
        "The longest time any task held inputs aligning a checkpoint's barriers."
    );
    describe_gauge!(
        "topo_checkpoint_size_bytes",
        Unit::Bytes,
        "Bytes of the last committed checkpoint's parts."
    );
    describe_gauge!(
        "topo_checkpoint_last_completed_id",
        "The id of the last committed checkpoint."
    );
    describe_counter!("topo_checkpoints_completed_total", "Checkpoints committed.");
    describe_counter!(
        "topo_checkpoints_failed_total",
        "Checkpoints that failed (a part not written, a timeout, a rollback meanwhile)."
    );
    describe_counter!(
        "topo_checkpoint_rollbacks_total",
        "Rollbacks of every worker to the last committed checkpoint."
    );
    describe_counter!(
        "topo_transport_connections_closed_total",
        "Connections the transport closed, by reason."
    );
}

fn publish_task(topology: &str, t: &TaskSnapshot, st: &TaskState, uptime: f64) {
    let labels = vec![
        Label::new("topology", topology.to_string()),
        Label::new("component", t.component.clone()),
        Label::new("task", t.task.to_string()),
    ];
    let mut c = st.base;
    c.add(&t.counts);
    counter!("topo_tuples_emitted_total", labels.clone()).absolute(c.emitted);
    counter!("topo_tuples_transferred_total", labels.clone()).absolute(c.transferred);
    counter!("topo_tuples_executed_total", labels.clone()).absolute(c.executed);
    counter!("topo_tuples_acked_total", labels.clone()).absolute(c.acked);
    for (reason, n) in [
        (FailReason::Explicit, c.failed_by.explicit),
        (FailReason::Timeout, c.failed_by.timeout),
        (FailReason::Panic, c.failed_by.panic),
        (
            FailReason::WorkerLost,
            st.worker_lost + c.failed_by.worker_lost,
        ),
    ] {
        let mut l = labels.clone();
        l.push(Label::new("reason", reason.as_str()));
        counter!("topo_tuples_failed_total", l).absolute(n);
    }
    counter!("topo_user_errors_total", labels.clone()).absolute(c.errors);
    if t.kind == "acker" {
        return;
    }
    let span = uptime - st.last_uptime;
    if span > 0.0 {
        let frac = (t.busy_secs - st.last.busy_secs) / span;
        gauge!("topo_capacity", labels.clone()).set(frac.clamp(0.0, 1.0));
    }
    if t.kind == "bolt" {
        let h = histogram!("topo_execute_latency_seconds", labels.clone());
        for (le, n) in t.execute.since(&st.last.execute) {
            h.record_many(le, n as usize);
        }
        gauge!("topo_queue_depth_batches", labels).set(t.queue_depth as f64);
    } else {
        let h = histogram!("topo_complete_latency_seconds", labels.clone());
        for (le, n) in t.complete.since(&st.last.complete) {
            h.record_many(le, n as usize);
        }
        gauge!("topo_pending_trees", labels).set(t.pending as f64);
    }
}

fn publish_checkpoints(topology: &str, k: &CheckpointFigures, last: &CheckpointFigures) {
    let l = || vec![Label::new("topology", topology.to_string())];
    let h = histogram!("topo_checkpoint_duration_seconds", l());
    for (le, n) in k.durations.since(&last.durations) {
        h.record_many(le, n as usize);
    }
    let h = histogram!("topo_checkpoint_alignment_seconds", l());
    for (le, n) in k.alignments.since(&last.alignments) {
        h.record_many(le, n as usize);
    }
    let s = &k.summary;
    gauge!("topo_checkpoint_size_bytes", l()).set(s.size_bytes as f64);
    if let Some(id) = s.last_completed {
        gauge!("topo_checkpoint_last_completed_id", l()).set(id as f64);
    }
    counter!("topo_checkpoints_completed_total", l()).absolute(s.completed);
    counter!("topo_checkpoints_failed_total", l()).absolute(s.failed);
    counter!("topo_checkpoint_rollbacks_total", l()).absolute(s.rollbacks);
}

fn publish_transport(topology: &str, worker: usize, t: &TransportSnapshot, ws: &mut WorkerState) {
    let mut put = |name: &'static str, key: String, labels: Vec<Label>, v: u64| {
        let base = ws.base.get(&(name, key.clone())).copied().unwrap_or(0);
        ws.last.insert((name, key), v);
        counter!(name, labels).absolute(base + v);
    };
    let labels = |extra: &[(&'static str, String)]| {
        let mut l = vec![
            Label::new("topology", topology.to_string()),
            Label::new("worker", worker.to_string()),
        ];
        l.extend(extra.iter().map(|(k, v)| Label::new(*k, v.clone())));
        l
    };
    for p in &t.peers {
        let peer = p.peer.to_string();
        for (name, dir, v) in [
            ("topo_transport_bytes_total", "in", p.bytes_in),
            ("topo_transport_bytes_total", "out", p.bytes_out),
            ("topo_transport_frames_total", "in", p.frames_in),
            ("topo_transport_frames_total", "out", p.frames_out),
        ] {
            let l = labels(&[("peer", peer.clone()), ("direction", dir.to_string())]);
            put(name, format!("{peer}/{dir}"), l, v);
        }
        for (name, v) in [
            ("topo_transport_disconnects_total", p.disconnects),
            ("topo_transport_dropped_frames_total", p.dropped_frames),
        ] {
            put(name, peer.clone(), labels(&[("peer", peer.clone())]), v);
        }
    }
    for (reason, v) in &t.closed {
        let l = labels(&[("reason", reason.clone())]);
        put(
            "topo_transport_connections_closed_total",
            reason.clone(),
            l,
            *v,
        );
    }
}
/// Whether to log the n-th occurrence of a recurring problem: the first ten, then every
/// power of two, so a failing bolt does not flood the log.
pub(crate) fn worth_logging(n: u64) -> bool {
    n <= 10 || n.is_power_of_two()
}
