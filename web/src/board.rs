//! The [`Board`]: what the JSON API serves, built from the worker snapshots a supervising
//! process receives about once a second.
//!
//! Per topology it keeps each task's counts across worker restarts (a restarted worker
//! starts from zero; the board adds its earlier lives, as the Prometheus publisher does),
//! a history of ten minutes of cumulative figures per component (for the 1 min and 10 min
//! tables and the rates), the workers' process figures and the latest failure samples.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use topo_dsl::catalog::Kind;
use topo_dsl::graph::grouping_label;
use topo_dsl::{Topology, TopologySpec};
use topo_engine::metrics::{FailSample, WorkerSnapshot};
use topo_engine::summary::{CheckpointFigures, CheckpointSummary, Counts, Histogram};
use topo_engine::TaskId;

use crate::api::{
    ComponentLive, Edge, FailedBy, Failure, FailureSample, Graph, Node, Placement, Rates,
    TopologyBrief, TopologyDetail, TopologyList, Totals, Window, WindowRow, WorkerView,
};

/// How far back the history goes: the longest window.
const HISTORY_SECS: f64 = 600.0;

/// Failure samples kept per component and reason.
const SAMPLES: usize = 10;

/// The windows of the component table, by name and length (`None`: the whole run).
const WINDOWS: [(&str, Option<f64>); 3] = [("1m", Some(60.0)), ("10m", Some(600.0)), ("all", None)];

/// A topology's shape, as the graph shows it: components and their inputs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// (id, kind, type, parallelism) in declaration order.
    pub components: Vec<(String, String, String, usize)>,
    /// (from, to, stream, grouping label).
    pub edges: Vec<(String, String, String, String)>,
}

impl Shape {
    /// The shape of a checked topology.
    pub fn of_topology(t: &Topology) -> Shape {
        let cs = t.components();
        Shape {
            components: cs
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.kind.to_string(),
                        c.type_name.clone(),
                        c.parallelism,
                    )
                })
                .collect(),
            edges: cs
                .iter()
                .flat_map(|c| {
                    c.inputs.iter().map(|i| {
                        (
                            cs[i.from].id.clone(),
                            c.id.clone(),
                            i.stream.clone(),
                            grouping_label(&i.grouping),
                        )
                    })
                })
                .collect(),
        }
    }

    /// The shape of a parsed (unchecked) topology file, as a coordinator holds it: it may
    /// not know the component types of a user's binary, so it cannot check the file.
    pub fn of_spec(spec: &TopologySpec) -> Shape {
        Shape {
            components: spec
                .components
                .iter()
                .map(|c| {
                    (
                        c.id.clone(),
                        c.kind.to_string(),
                        c.type_name.clone().unwrap_or_default(),
                        c.parallelism.unwrap_or(1).max(1) as usize,
                    )
                })
                .collect(),
            edges: spec
                .components
                .iter()
                .filter(|c| c.kind == Kind::Bolt)
                .flat_map(|c| {
                    c.inputs.iter().flatten().map(|i| {
                        let grouping = match (&i.grouping, &i.fields) {
                            (Some(g), Some(f)) => format!("{g}({})", f.join(", ")),
                            (Some(g), None) => g.clone(),
                            (None, Some(f)) => format!("fields({})", f.join(", ")),
                            (None, None) => "shuffle".to_string(),
                        };
                        (
                            i.from.clone(),
                            c.id.clone(),
                            i.stream.clone().unwrap_or_else(|| "default".into()),
                            grouping,
                        )
                    })
                })
                .collect(),
        }
    }

    /// Each component's layer: the longest path to it from a component with no inputs.
    fn layers(&self) -> HashMap<&str, usize> {
        let mut layer: HashMap<&str, usize> =
            self.components.iter().map(|c| (c.0.as_str(), 0)).collect();
        // A DAG settles within as many rounds as it has components; a cycle (an unchecked
        // file) is cut off there.
        for _ in 0..self.components.len() {
            let mut changed = false;
            for (from, to, _, _) in &self.edges {
                let want = layer.get(from.as_str()).copied().unwrap_or(0) + 1;
                if let Some(l) = layer.get_mut(to.as_str()) {
                    if *l < want {
                        *l = want;
                        changed = true;
                    }
                }
            }
            if !changed {
                break;
            }
        }
        layer
    }
}

/// Cumulative figures of one component at one moment.
#[derive(Debug, Clone, Default)]
struct Cum {
    kind: String,
    counts: Counts,
    worker_lost: u64,
    execute: Histogram,
    complete: Histogram,
    /// Cumulative busy seconds per task.
    busy: BTreeMap<TaskId, f64>,
}

/// The figures at one report.
#[derive(Debug, Clone)]
struct Sample {
    /// Seconds since the board first saw the topology.
    at: f64,
    components: BTreeMap<String, Cum>,
}

#[derive(Debug, Default)]
struct TaskTrack {
    incarnation: u64,
    base: Counts,
    base_execute: Histogram,
    base_complete: Histogram,
    base_busy: f64,
    worker_lost: u64,
    worker: usize,
    last: topo_engine::metrics::TaskSnapshot,
    /// The last failure sample already recorded.
    seen_fail: Option<FailSample>,
}

#[derive(Debug, Default)]
struct WorkerTrack {
    incarnation: Option<u64>,
    restarts: u64,
    last: WorkerSnapshot,
    cpu_percent: Option<f64>,
}

#[derive(Debug)]
struct Track {
    name: String,
    status: String,
    error: Option<String>,
    shape: Shape,
    first: Instant,
    /// Seconds since the start when it was submitted or started (cluster: the
    /// coordinator's uptime; run: the first report).
    uptime_offset: f64,
    tasks: BTreeMap<TaskId, TaskTrack>,
    workers: BTreeMap<usize, WorkerTrack>,
    history: VecDeque<Sample>,
    samples: BTreeMap<(String, &'static str), VecDeque<FailureSample>>,
    /// Order of the list: when it was added.
    added: u64,
    /// The latest checkpoint figures.
    checkpoints: Option<CheckpointSummary>,
}

/// What the API serves: every topology's figures, updated by whoever receives the
/// snapshots (the `topo run` loop, the coordinator's poller).
#[derive(Debug, Default)]
pub struct Board {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    mode: String,
    actions: bool,
    tracks: BTreeMap<String, Track>,
    added: u64,
}

/// One report about one topology.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The id the API uses.
    pub id: &'a str,
    /// The topology's name.
    pub name: &'a str,
    /// `running`, `ended`, or the cluster status.
    pub status: &'a str,
    /// Its last error, if any.
    pub error: Option<&'a str>,
    /// Seconds it has run, when the reporter knows better than the board (a cluster
    /// topology submitted before the coordinator's UI started).
    pub uptime_secs: Option<f64>,
    /// The latest snapshot of each worker (each task in exactly one).
    pub snapshots: &'a [WorkerSnapshot],
    /// Checkpoint figures from the reporter (a cluster coordinator); else those a
    /// snapshot carries (`topo run`).
    pub checkpoints: Option<&'a CheckpointSummary>,
}

impl Board {
    /// An empty board for `mode` (`run` or `cluster`); `actions` says whether cluster
    /// actions are served.
    pub fn new(mode: &str, actions: bool) -> Board {
        Board {
            inner: Mutex::new(Inner {
                mode: mode.to_string(),
                actions,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a report; `shape` is the topology's graph, needed the first time.
    pub fn update(&self, report: Report<'_>, shape: impl FnOnce() -> Shape) {
        let mut guard = self.lock();
        let Inner { tracks, added, .. } = &mut *guard;
        let track = match tracks.entry(report.id.to_string()) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                let t = v.insert(Track {
                    name: report.name.to_string(),
                    status: String::new(),
                    error: None,
                    shape: shape(),
                    first: Instant::now(),
                    uptime_offset: 0.0,
                    tasks: BTreeMap::new(),
                    workers: BTreeMap::new(),
                    history: VecDeque::new(),
                    samples: BTreeMap::new(),
                    added: *added,
                    checkpoints: None,
                });
                *added += 1;
                t
            }
        };
        track.update(&report);
    }

    /// Forgets topologies whose id is not in `keep` (a coordinator's killed topologies
    /// that it no longer lists).
    pub fn retain(&self, keep: &[&str]) {
        self.lock()
            .tracks
            .retain(|id, _| keep.contains(&id.as_str()));
    }

    /// `GET /api/v1/topologies`.
    pub fn list(&self) -> TopologyList {
        let inner = self.lock();
        let mut tracks: Vec<(&String, &Track)> = inner.tracks.iter().collect();
        tracks.sort_by_key(|(_, t)| std::cmp::Reverse(t.added));
        TopologyList {
            mode: inner.mode.clone(),
            actions: inner.actions,
            topologies: tracks.into_iter().map(|(id, t)| t.brief(id)).collect(),
        }
    }

    /// `GET /api/v1/topologies/{id}`; `None` for an unknown id.
    pub fn detail(&self, id: &str) -> Option<TopologyDetail> {
        let inner = self.lock();
        inner.tracks.get(id).map(|t| t.detail(id))
    }
}

impl Track {
    fn update(&mut self, r: &Report<'_>) {
        self.status = r.status.to_string();
        self.error = r.error.map(str::to_string);
        let carried = r.snapshots.iter().find_map(|s| s.checkpoints.as_deref());
        if let Some(k) = r
            .checkpoints
            .cloned()
            .or_else(|| carried.map(CheckpointFigures::to_summary))
        {
            self.checkpoints = Some(k);
        }
        let at = self.first.elapsed().as_secs_f64();
        if let Some(u) = r.uptime_secs {
            self.uptime_offset = u - at;
        }
        for w in r.snapshots {
            let wt = self.workers.entry(w.worker).or_default();
            let restarted = wt.incarnation.is_some_and(|i| i != w.incarnation);
            if restarted {
                wt.restarts += 1;
                wt.cpu_percent = None;
            } else if let (Some(now), Some(before)) = (&w.process, &wt.last.process) {
                let span = w.uptime_secs - wt.last.uptime_secs;
                if span > 0.0 {
                    wt.cpu_percent =
                        Some(((now.cpu_secs - before.cpu_secs) / span * 100.0).max(0.0));
                }
            }
            wt.incarnation = Some(w.incarnation);
            wt.last = WorkerSnapshot {
                tasks: Vec::new(),
                transport: None,
                ..w.clone()
            };
            for t in &w.tasks {
                let tt = self.tasks.entry(t.task).or_default();
                if tt.incarnation != w.incarnation
                    && tt.last != topo_engine::metrics::TaskSnapshot::default()
                {
                    tt.base.add(&tt.last.counts);
                    tt.base_execute.merge(&tt.last.execute);
                    tt.base_complete.merge(&tt.last.complete);
                    tt.base_busy += tt.last.busy_secs;
                    tt.worker_lost += tt.last.pending;
                    tt.seen_fail = None;
                }
                tt.incarnation = w.incarnation;
                tt.worker = w.worker;
                tt.last = t.clone();
                if let Some(f) = t.last_fail.filter(|f| Some(*f) != tt.seen_fail) {
                    tt.seen_fail = Some(f);
                    let q = self
                        .samples
                        .entry((t.component.clone(), f.reason.as_str()))
                        .or_default();
                    q.push_front(FailureSample {
                        task: t.task,
                        msg_id: f.msg_id,
                        root: f.root.map(|r| format!("{r:#018x}")),
                    });
                    q.truncate(SAMPLES);
                }
            }
        }
        let mut components: BTreeMap<String, Cum> = BTreeMap::new();
        for (task, tt) in &self.tasks {
            let t = &tt.last;
            let c = components.entry(t.component.clone()).or_default();
            c.kind.clone_from(&t.kind);
            c.counts.add(&tt.base);
            c.counts.add(&t.counts);
            c.worker_lost += tt.worker_lost;
            c.execute.merge(&tt.base_execute);
            c.execute.merge(&t.execute);
            c.complete.merge(&tt.base_complete);
            c.complete.merge(&t.complete);
            c.busy.insert(*task, tt.base_busy + t.busy_secs);
        }
        self.history.push_back(Sample { at, components });
        // Keep one sample at least as old as the longest window.
        while self.history.len() > 2 && self.history[1].at <= at - HISTORY_SECS {
            self.history.pop_front();
        }
    }

    fn uptime(&self) -> f64 {
        (self.first.elapsed().as_secs_f64() + self.uptime_offset).max(0.0)
    }

    /// The latest sample and the one before it.
    fn last_two(&self) -> (Option<&Sample>, Option<&Sample>) {
        let n = self.history.len();
        (
            self.history.back(),
            n.checked_sub(2).and_then(|i| self.history.get(i)),
        )
    }

    /// The oldest sample within `secs` of the latest (the first one for the whole run).
    fn since(&self, secs: Option<f64>) -> Option<&Sample> {
        let last = self.history.back()?;
        match secs {
            None => None,
            Some(s) => self
                .history
                .iter()
                .find(|x| x.at >= last.at - s - 0.5)
                .filter(|x| x.at < last.at),
        }
    }

    fn rates(&self) -> BTreeMap<String, Rates> {
        let (Some(now), Some(before)) = self.last_two() else {
            return BTreeMap::new();
        };
        let span = (now.at - before.at).max(1e-3);
        now.components
            .iter()
            .map(|(id, c)| {
                let b = before.components.get(id).cloned().unwrap_or_default();
                let d = diff(c, &b);
                let r = |x: u64| x as f64 / span;
                (
                    id.clone(),
                    Rates {
                        emitted: r(d.emitted),
                        transferred: r(d.transferred),
                        executed: r(d.executed),
                        acked: r(d.acked),
                        failed: r(d.failed),
                    },
                )
            })
            .collect()
    }

    fn brief(&self, id: &str) -> TopologyBrief {
        let rates = self.rates();
        let mut b = TopologyBrief {
            id: id.to_string(),
            name: self.name.clone(),
            status: self.status.clone(),
            uptime_secs: self.uptime(),
            workers_running: self.workers.values().filter(|w| w.last.running).count(),
            tasks: self.tasks.len(),
            checkpoints: self.checkpoints.clone(),
            ..TopologyBrief::default()
        };
        for t in self.tasks.values().filter(|t| t.last.kind == "spout") {
            b.pending += t.last.pending;
        }
        for (cid, r) in &rates {
            if self.kind_of(cid) == "spout" {
                b.emitted_per_sec += r.emitted;
                b.acked_per_sec += r.acked;
                b.failed_per_sec += r.failed;
            }
        }
        b
    }

    fn kind_of(&self, component: &str) -> &str {
        self.history
            .back()
            .and_then(|s| s.components.get(component))
            .map_or("", |c| c.kind.as_str())
    }

    fn detail(&self, id: &str) -> TopologyDetail {
        let rates = self.rates();
        let (now, before) = self.last_two();
        let live: Vec<ComponentLive> = self
            .component_order()
            .into_iter()
            .map(|cid| {
                let c = cum(now, &cid);
                let b = before.and_then(|s| s.components.get(&cid));
                let span = match (now, before) {
                    (Some(n), Some(b)) => Some(n.at - b.at),
                    _ => None,
                };
                let row = window_row(&cid, &c, b, span);
                let tasks: Vec<&TaskTrack> = self
                    .tasks
                    .values()
                    .filter(|t| t.last.component == cid)
                    .collect();
                ComponentLive {
                    id: cid.clone(),
                    kind: c.kind.clone(),
                    tasks: self
                        .tasks
                        .iter()
                        .filter(|(_, t)| t.last.component == cid)
                        .map(|(k, _)| *k)
                        .collect(),
                    rates: rates.get(&cid).copied().unwrap_or_default(),
                    totals: totals(&c.counts, c.worker_lost),
                    failed_by: FailedBy {
                        explicit: c.counts.failed_by.explicit,
                        timeout: c.counts.failed_by.timeout,
                        panic: c.counts.failed_by.panic,
                        worker_lost: c.worker_lost + c.counts.failed_by.worker_lost,
                    },
                    capacity: row.capacity,
                    execute_p99_ms: row.execute_p99_ms,
                    complete_p99_ms: row.complete_p99_ms,
                    queue_depth: tasks.iter().map(|t| t.last.queue_depth).sum(),
                    pending: tasks.iter().map(|t| t.last.pending).sum(),
                }
            })
            .collect();
        let layers = self.shape.layers();
        let capacity = |cid: &str| live.iter().find(|c| c.id == cid).and_then(|c| c.capacity);
        let nodes = self
            .shape
            .components
            .iter()
            .map(|(cid, kind, ty, par)| Node {
                id: cid.clone(),
                kind: kind.clone(),
                type_name: ty.clone(),
                parallelism: *par,
                layer: layers.get(cid.as_str()).copied().unwrap_or(0),
                capacity: capacity(cid),
            })
            .collect();
        let edges = self
            .shape
            .edges
            .iter()
            .map(|(from, to, stream, grouping)| {
                let ins = self.shape.edges.iter().filter(|e| &e.1 == to).count();
                let outs = self.shape.edges.iter().filter(|e| &e.0 == from).count();
                let executed = rates.get(to).map_or(0.0, |r| r.executed);
                let transferred = rates.get(from).map_or(0.0, |r| r.transferred);
                let (per_sec, exact) = if ins == 1 {
                    (executed, true)
                } else if outs == 1 {
                    (transferred, true)
                } else {
                    (executed.min(transferred), false)
                };
                Edge {
                    from: from.clone(),
                    to: to.clone(),
                    stream: stream.clone(),
                    grouping: grouping.clone(),
                    per_sec,
                    exact,
                }
            })
            .collect();
        let windows = WINDOWS
            .iter()
            .map(|(name, secs)| {
                let from = self.since(*secs);
                let span = match (now, from) {
                    (Some(n), Some(f)) => n.at - f.at,
                    _ => self.uptime(),
                };
                Window {
                    window: name.to_string(),
                    secs: span,
                    rows: self
                        .component_order()
                        .into_iter()
                        .map(|cid| {
                            let c = cum(now, &cid);
                            match from {
                                Some(f) => window_row(&cid, &c, f.components.get(&cid), Some(span)),
                                None => window_row(&cid, &c, None, self.run_secs()),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let workers = self
            .workers
            .iter()
            .map(|(w, t)| WorkerView {
                worker: *w,
                host: t.last.process.as_ref().map(|p| p.host.clone()),
                pid: t.last.process.as_ref().map(|p| p.pid),
                rss_bytes: t.last.process.as_ref().map(|p| p.rss_bytes),
                cpu_percent: t.cpu_percent,
                restarts: t.restarts,
                running: t.last.running,
                uptime_secs: t.last.uptime_secs,
                tasks: self
                    .tasks
                    .iter()
                    .filter(|(_, x)| x.worker == *w)
                    .map(|(k, _)| *k)
                    .collect(),
            })
            .collect();
        let mut failures = Vec::new();
        for c in &live {
            for (reason, count) in [
                ("explicit", c.failed_by.explicit),
                ("timeout", c.failed_by.timeout),
                ("panic", c.failed_by.panic),
                ("worker_lost", c.failed_by.worker_lost),
            ] {
                if count == 0 {
                    continue;
                }
                failures.push(Failure {
                    component: c.id.clone(),
                    reason: reason.to_string(),
                    count,
                    samples: self
                        .samples
                        .get(&(c.id.clone(), reason))
                        .map(|q| q.iter().cloned().collect())
                        .unwrap_or_default(),
                });
            }
        }
        let plan = self
            .tasks
            .iter()
            .map(|(task, t)| Placement {
                task: *task,
                component: t.last.component.clone(),
                worker: t.worker,
            })
            .collect();
        TopologyDetail {
            brief: self.brief(id),
            error: self.error.clone(),
            graph: Graph { nodes, edges },
            components: live,
            windows,
            workers,
            failures,
            plan,
        }
    }

    /// Seconds the tasks have run: the longest uptime of a worker's current life, or the
    /// board's own time when no worker said.
    fn run_secs(&self) -> Option<f64> {
        self.workers
            .values()
            .map(|w| w.last.uptime_secs)
            .reduce(f64::max)
    }

    /// Components in graph order, then the ones only the snapshots name (ackers).
    fn component_order(&self) -> Vec<String> {
        let mut out: Vec<String> = self.shape.components.iter().map(|c| c.0.clone()).collect();
        if let Some(s) = self.history.back() {
            for id in s.components.keys() {
                if !out.contains(id) {
                    out.push(id.clone());
                }
            }
        }
        out
    }
}

/// Component `id`'s figures in `sample`, zero when it has none.
fn cum(sample: Option<&Sample>, id: &str) -> Cum {
    sample
        .and_then(|s| s.components.get(id))
        .cloned()
        .unwrap_or_default()
}

fn totals(c: &Counts, worker_lost: u64) -> Totals {
    Totals {
        emitted: c.emitted,
        transferred: c.transferred,
        executed: c.executed,
        acked: c.acked,
        failed: c.failed + worker_lost,
        errors: c.errors,
    }
}

/// `now - before`, counts only (a task new since `before` counts from zero).
fn diff(now: &Cum, before: &Cum) -> Totals {
    let a = totals(&now.counts, now.worker_lost);
    let b = totals(&before.counts, before.worker_lost);
    Totals {
        emitted: a.emitted.saturating_sub(b.emitted),
        transferred: a.transferred.saturating_sub(b.transferred),
        executed: a.executed.saturating_sub(b.executed),
        acked: a.acked.saturating_sub(b.acked),
        failed: a.failed.saturating_sub(b.failed),
        errors: a.errors.saturating_sub(b.errors),
    }
}

/// A component's row between `before` (none: the start) and `now`, over `span` seconds.
fn window_row(id: &str, now: &Cum, before: Option<&Cum>, span: Option<f64>) -> WindowRow {
    let empty = Cum::default();
    let b = before.unwrap_or(&empty);
    let capacity = span
        .filter(|s| *s > 0.0 && now.kind != "acker")
        .and_then(|s| {
            now.busy
                .iter()
                .map(|(t, busy)| (busy - b.busy.get(t).copied().unwrap_or(0.0)) / s)
                .reduce(f64::max)
                .map(|x| x.clamp(0.0, 1.0))
        });
    WindowRow {
        id: id.to_string(),
        kind: now.kind.clone(),
        totals: diff(now, b),
        capacity,
        execute_p99_ms: p99_ms(now.execute.since(&b.execute)),
        complete_p99_ms: p99_ms(now.complete.since(&b.complete)),
    }
}

/// The 99th percentile of (bucket upper bound in seconds, count) pairs, in milliseconds.
fn p99_ms(buckets: impl Iterator<Item = (f64, u64)>) -> Option<f64> {
    let buckets: Vec<(f64, u64)> = buckets.collect();
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * 0.99).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (upper, n) in &buckets {
        seen += n;
        if seen >= rank {
            return Some(upper * 1000.0);
        }
    }
    buckets.last().map(|b| b.0 * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use topo_engine::metrics::TaskSnapshot;

    fn task(task: TaskId, component: &str, kind: &str, executed: u64, busy: f64) -> TaskSnapshot {
        TaskSnapshot {
            task,
            component: component.into(),
            kind: kind.into(),
            counts: Counts {
                emitted: executed,
                transferred: executed,
                executed,
                ..Counts::default()
            },
            busy_secs: busy,
            ..TaskSnapshot::default()
        }
    }

    fn worker(incarnation: u64, uptime: f64, tasks: Vec<TaskSnapshot>) -> WorkerSnapshot {
        WorkerSnapshot {
            topology: "t".into(),
            worker: 0,
            incarnation,
            uptime_secs: uptime,
            running: true,
            tasks,
            transport: None,
            process: None,
            checkpoints: None,
        }
    }

    fn shape() -> Shape {
        Shape {
            components: vec![
                ("s".into(), "spout".into(), "sequence".into(), 1),
                ("b".into(), "bolt".into(), "map".into(), 1),
                ("c".into(), "bolt".into(), "map".into(), 1),
            ],
            edges: vec![
                ("s".into(), "b".into(), "default".into(), "shuffle".into()),
                ("b".into(), "c".into(), "default".into(), "shuffle".into()),
                ("s".into(), "c".into(), "default".into(), "shuffle".into()),
            ],
        }
    }

    fn report<'a>(snapshots: &'a [WorkerSnapshot]) -> Report<'a> {
        Report {
            id: "t",
            name: "t",
            status: "running",
            error: None,
            uptime_secs: None,
            snapshots,
            checkpoints: None,
        }
    }

    #[test]
    fn the_brief_shows_the_reporters_checkpoint_figures_else_a_snapshots() {
        let board = Board::new("cluster", false);
        let k = CheckpointSummary {
            completed: 3,
            last_completed: Some(7),
            last_duration_ms: Some(12.5),
            size_bytes: 900,
            ..CheckpointSummary::default()
        };
        let snaps = [worker(1, 1.0, vec![task(1, "s", "spout", 10, 0.0)])];
        board.update(
            Report {
                checkpoints: Some(&k),
                ..report(&snaps)
            },
            shape,
        );
        assert_eq!(board.list().topologies[0].checkpoints.as_ref(), Some(&k));
        // `topo run`: the figures ride on a worker's snapshot.
        let run = Board::new("run", false);
        let mut carried = worker(1, 1.0, vec![task(1, "s", "spout", 10, 0.0)]);
        carried.checkpoints = Some(Box::new(CheckpointFigures {
            summary: k.clone(),
            ..CheckpointFigures::default()
        }));
        run.update(report(std::slice::from_ref(&carried)), shape);
        assert_eq!(run.list().topologies[0].checkpoints.as_ref(), Some(&k));
        let plain = Board::new("run", false);
        plain.update(report(&snaps), shape);
        assert_eq!(plain.list().topologies[0].checkpoints, None);
    }

    #[test]
    fn layers_are_the_longest_path_from_a_spout() {
        let s = shape();
        let l = s.layers();
        assert_eq!((l["s"], l["b"], l["c"]), (0, 1, 2));
    }

    #[test]
    fn a_restarted_worker_keeps_totals_monotonic_and_counts_the_restart() {
        let board = Board::new("run", false);
        board.update(
            report(&[worker(1, 1.0, vec![task(2, "b", "bolt", 100, 0.5)])]),
            shape,
        );
        board.update(
            report(&[worker(1, 2.0, vec![task(2, "b", "bolt", 300, 1.0)])]),
            shape,
        );
        board.update(
            report(&[worker(2, 0.5, vec![task(2, "b", "bolt", 50, 0.1)])]),
            shape,
        );
        let d = board.detail("t").unwrap();
        let b = d.components.iter().find(|c| c.id == "b").unwrap();
        assert_eq!(b.totals.executed, 350);
        assert_eq!(d.workers[0].restarts, 1);
        let all = d.windows.iter().find(|w| w.window == "all").unwrap();
        assert_eq!(
            all.rows
                .iter()
                .find(|r| r.id == "b")
                .unwrap()
                .totals
                .executed,
            350
        );
        assert_eq!(
            d.plan,
            vec![Placement {
                task: 2,
                component: "b".into(),
                worker: 0
            }]
        );
    }

    #[test]
    fn an_edge_rate_is_exact_when_it_is_the_only_input_or_the_only_output() {
        let board = Board::new("run", false);
        let snap = |n: u64| {
            vec![worker(
                1,
                n as f64,
                vec![
                    task(1, "s", "spout", 10 * n, 0.0),
                    task(2, "b", "bolt", 4 * n, 0.0),
                    task(3, "c", "bolt", 7 * n, 0.0),
                ],
            )]
        };
        board.update(report(&snap(1)), shape);
        board.update(report(&snap(2)), shape);
        let d = board.detail("t").unwrap();
        let e = |from: &str, to: &str| {
            d.graph
                .edges
                .iter()
                .find(|e| e.from == from && e.to == to)
                .unwrap()
                .clone()
        };
        // b has one input: its executed rate; b -> c: b's only output.
        assert!(e("s", "b").exact && e("b", "c").exact);
        assert!(!e("s", "c").exact);
        let ratio = e("s", "b").per_sec / e("b", "c").per_sec;
        assert!((ratio - 1.0).abs() < 1e-9, "{ratio}");
    }

    #[test]
    fn p99_takes_the_bucket_holding_the_99th_percent() {
        let b = [(0.001, 98), (0.002, 1), (0.1, 1)];
        assert_eq!(p99_ms(b.into_iter()), Some(2.0));
        assert_eq!(p99_ms(std::iter::empty()), None);
    }
}
