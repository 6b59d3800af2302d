//! The JSON API's documents (`/api/v1/…`): what the web UI draws and what scripts read.
//!
//! Every type serializes and deserializes, so a client (`topo top`, a script in Rust) reads
//! the documents with the same types the server writes. Rates are per second over the
//! last report interval (about a second); latencies are the 99th percentile in
//! milliseconds (upper bound of its bucket, within 12.5 %).

use serde::{Deserialize, Serialize};
use topo_engine::summary::CheckpointSummary;

/// `GET /api/v1/topologies`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologyList {
    /// `run` (a `topo run`) or `cluster` (a coordinator).
    pub mode: String,
    /// True when the cluster actions (activate, deactivate, rebalance, kill) are served.
    pub actions: bool,
    /// Every topology, newest first.
    pub topologies: Vec<TopologyBrief>,
}

/// One line of the topology list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologyBrief {
    /// The id the other endpoints take (a run's topology name; a cluster topology's id).
    pub id: String,
    /// The topology's name.
    pub name: String,
    /// `running`/`ended` (a run), or the cluster status (`active`, `inactive`, `killing`, …).
    pub status: String,
    /// Seconds since it started.
    pub uptime_secs: f64,
    /// Workers whose tasks run.
    pub workers_running: usize,
    /// Tasks, ackers included.
    pub tasks: usize,
    /// Spout tuples emitted per second.
    pub emitted_per_sec: f64,
    /// Spout trees acked per second.
    pub acked_per_sec: f64,
    /// Spout trees failed per second (any reason).
    pub failed_per_sec: f64,
    /// Trees pending over all spout tasks.
    pub pending: u64,
    /// A checkpointed topology's checkpoint figures (the last committed id, its duration
    /// and size, failures, rollbacks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoints: Option<CheckpointSummary>,
}

/// `GET /api/v1/topologies/{id}`: everything about one topology.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologyDetail {
    /// As in the list.
    #[serde(flatten)]
    pub brief: TopologyBrief,
    /// The last error (cluster topologies that failed).
    pub error: Option<String>,
    /// The DAG: components with their layer, edges with their rates.
    pub graph: Graph,
    /// Each component live: rates, totals, capacity, latencies, queues (ackers last).
    pub components: Vec<ComponentLive>,
    /// The component table over the last minute, the last ten minutes and the whole run.
    pub windows: Vec<Window>,
    /// The worker processes.
    pub workers: Vec<WorkerView>,
    /// Failures by component and reason, with sample message ids.
    pub failures: Vec<Failure>,
    /// The plan: which worker runs each task.
    pub plan: Vec<Placement>,
}

/// The topology's graph, laid out in layers from the spouts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// Spouts and bolts in declaration order.
    pub nodes: Vec<Node>,
    /// One per input declaration.
    pub edges: Vec<Edge>,
}

/// A component in the graph.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Its id.
    pub id: String,
    /// `spout` or `bolt`.
    pub kind: String,
    /// Its registered type.
    #[serde(rename = "type")]
    pub type_name: String,
    /// Its tasks.
    pub parallelism: usize,
    /// Longest path from a spout (spouts are 0): the column it is drawn in.
    pub layer: usize,
    /// Capacity over the last interval, 0 to 1 (none before the first report).
    pub capacity: Option<f64>,
}

/// A subscription: tuples of `from`'s `stream` to `to`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Edge {
    /// The upstream component.
    pub from: String,
    /// The subscriber.
    pub to: String,
    /// The stream.
    pub stream: String,
    /// `shuffle`, `fields(word)`, …
    pub grouping: String,
    /// Tuples per second along it.
    pub per_sec: f64,
    /// True when `per_sec` is exact: the subscriber's executed rate when this is its only
    /// input, or the upstream's transferred rate when this is its only subscriber; else
    /// the smaller of the two.
    pub exact: bool,
}

/// Counts per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    /// Emit calls.
    pub emitted: f64,
    /// Tuples sent to tasks.
    pub transferred: f64,
    /// Inputs executed (bolts), acker messages (ackers).
    pub executed: f64,
    /// Trees acked (spouts), inputs acked (bolts).
    pub acked: f64,
    /// Failures, any reason.
    pub failed: f64,
}

/// Exact counts since the start (across worker restarts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Emit calls.
    pub emitted: u64,
    /// Tuples sent to tasks.
    pub transferred: u64,
    /// Inputs executed (bolts), acker messages (ackers).
    pub executed: u64,
    /// Trees acked (spouts), inputs acked (bolts).
    pub acked: u64,
    /// Failures, any reason (`worker_lost` included).
    pub failed: u64,
    /// Errors and panics of user code outside a tuple.
    pub errors: u64,
}

/// Failures by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct FailedBy {
    /// A bolt failed the tuple.
    pub explicit: u64,
    /// The tree timed out.
    pub timeout: u64,
    /// User code panicked.
    pub panic: u64,
    /// The spout's worker died with the tree pending.
    pub worker_lost: u64,
}

/// One component now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ComponentLive {
    /// Its id (`__acker` for the ackers).
    pub id: String,
    /// `spout`, `bolt` or `acker`.
    pub kind: String,
    /// Its task ids.
    pub tasks: Vec<u32>,
    /// Per second over the last interval.
    pub rates: Rates,
    /// Since the start.
    pub totals: Totals,
    /// Failures by reason, since the start.
    pub failed_by: FailedBy,
    /// Busy fraction of its busiest task over the last interval, 0 to 1.
    pub capacity: Option<f64>,
    /// p99 time in `execute` over the last interval (bolts), ms.
    pub execute_p99_ms: Option<f64>,
    /// p99 emit-to-ack time over the last interval (spouts with acking), ms.
    pub complete_p99_ms: Option<f64>,
    /// Batches waiting in its tasks' input queues (bolts).
    pub queue_depth: u64,
    /// Trees pending (spouts).
    pub pending: u64,
}

/// The component table over one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// `1m`, `10m` or `all`.
    pub window: String,
    /// Seconds the figures cover (less than the window while the run is younger).
    pub secs: f64,
    /// One row per component.
    pub rows: Vec<WindowRow>,
}

/// One component over a window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowRow {
    /// Its id.
    pub id: String,
    /// `spout`, `bolt` or `acker`.
    pub kind: String,
    /// Counts within the window.
    pub totals: Totals,
    /// Busy fraction of its busiest task over the window.
    pub capacity: Option<f64>,
    /// p99 execute latency within the window, ms.
    pub execute_p99_ms: Option<f64>,
    /// p99 complete latency within the window, ms.
    pub complete_p99_ms: Option<f64>,
}

/// One worker process.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerView {
    /// Its index in the plan.
    pub worker: usize,
    /// The host it runs on.
    pub host: Option<String>,
    /// Its process id.
    pub pid: Option<u32>,
    /// Resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// CPU use over the last interval, percent of one core.
    pub cpu_percent: Option<f64>,
    /// Times it was restarted.
    pub restarts: u64,
    /// False once its tasks ended (or it is gone).
    pub running: bool,
    /// Seconds since its tasks started (this life).
    pub uptime_secs: f64,
    /// Its tasks, ackers included.
    pub tasks: Vec<u32>,
}

/// Failures of one component for one reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Failure {
    /// The component.
    pub component: String,
    /// `explicit`, `timeout`, `panic` or `worker_lost`.
    pub reason: String,
    /// How many, since the start.
    pub count: u64,
    /// The latest failures seen (at most 10), newest first.
    pub samples: Vec<FailureSample>,
}

/// One failed tuple or tree.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FailureSample {
    /// The task that saw it.
    pub task: u32,
    /// The spout's message id (failures a spout saw).
    pub msg_id: Option<u64>,
    /// The tree's root id, hex (failures a bolt saw).
    pub root: Option<String>,
}

/// Where one task runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    /// The task id.
    pub task: u32,
    /// Its component.
    pub component: String,
    /// The worker running it.
    pub worker: usize,
}

/// The answer to a cluster action, and every error: `{"message": "…"}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// What happened.
    pub message: String,
}
