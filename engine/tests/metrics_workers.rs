//! Metrics add up across workers: a topology run as three workers connected by the real
//! transport publishes, summed over its tasks, exactly the figures of the same topology
//! run as one worker — acks, failures by reason, executes — and the exposition parses.
//! A worker that restarts keeps its counters monotonic and its pending trees show up as
//! `worker_lost`.

mod common;
#[path = "../../tests/prom/mod.rs"]
mod prom;

use std::sync::Arc;
use std::time::Duration;

use common::{numbers, Log};
use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::metrics::{Publisher, TaskSnapshot, WorkerSnapshot};
use topo_engine::prometheus::Exporter;
use topo_engine::{Bolt, BoltOutput, Counts, Registry, Result, RunOptions, Tuple};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// Fails multiples of 7, panics on other multiples of 11, passes the rest on.
struct Judge;

impl Bolt for Judge {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let n = input
            .get(0)
            .and_then(|v| v.as_int())
            .ok_or("not a number")?;
        if n % 7 == 0 {
            return Err(format!("{n} is a multiple of 7").into());
        }
        if n % 11 == 0 {
            panic!("{n} is a multiple of 11");
        }
        out.emit([n]);
        Ok(())
    }
}

/// Acks everything.
struct Sink;

impl Bolt for Sink {
    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }
}

const COUNT: i64 = 3000;

fn registry(log: &Log) -> Registry {
    let mut r = Registry::new();
    numbers(&mut r, log);
    r.bolt(
        "judge",
        "fails or panics on some",
        |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
        |_| Ok(Judge),
    );
    r.bolt("sink", "acks", |_: &NoConfig| Vec::new(), |_| Ok(Sink));
    r
}

fn topology(r: &Registry, workers: i64) -> Arc<Topology> {
    Arc::new(
        Topology::builder("judged")
            .workers(workers)
            // Execute latencies are sampled per task, so their count depends on how many
            // tuples each sink task gets: with the default load-aware shuffle that follows
            // the placement (each judge task feeds the sink task of its own worker), so
            // both runs use the even round-robin to compare every figure.
            .disable_loadaware_messaging(true)
            .spout("numbers", "numbers")
            .parallelism(3)
            .set("count", COUNT)
            .set("replay", false)
            .bolt("judge", "judge")
            .parallelism(3)
            .fields("numbers", ["n"])
            .bolt("sink", "sink")
            .parallelism(3)
            .shuffle("judge")
            .build(r)
            .unwrap(),
    )
}

/// Runs `topology` in this process as its plan's workers over loopback TCP; returns
/// each worker's final snapshot (with its transport's figures).
fn snapshots_of(topology: &Arc<Topology>, r: &Registry) -> Vec<WorkerSnapshot> {
    let plan = topo_engine::PhysicalPlan::new(topology);
    let n = plan.workers();
    if n == 1 {
        let running = topo_engine::start(Arc::clone(topology), r, RunOptions::default()).unwrap();
        if !running.wait_timeout(Duration::from_secs(60)) {
            running.stop();
        }
        return vec![running.wait_snapshot().1];
    }
    common::run_workers(topology, r, RunOptions::default())
        .into_iter()
        .map(|f| f.snapshot)
        .collect()
}

fn scrape(snapshots: &[WorkerSnapshot]) -> prom::Exposition {
    let exporter = Exporter::new();
    let mut publisher = Publisher::new("judged");
    exporter.record(|| publisher.publish(snapshots, 0));
    let text = exporter.render();
    prom::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// (metric, labels) -> value summed over tasks, for the components and metrics that
/// must not depend on how the tasks were placed.
fn figures(e: &prom::Exposition) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for component in ["numbers", "judge", "sink"] {
        for name in [
            "topo_tuples_emitted_total",
            "topo_tuples_transferred_total",
            "topo_tuples_executed_total",
            "topo_tuples_acked_total",
            "topo_user_errors_total",
            "topo_execute_latency_seconds_count",
        ] {
            let v = e.sum(name, &[("component", component)]);
            out.push((format!("{name}{{component={component}}}"), v));
        }
        for reason in ["explicit", "timeout", "panic", "worker_lost"] {
            let v = e.sum(
                "topo_tuples_failed_total",
                &[("component", component), ("reason", reason)],
            );
            out.push((format!("failed{{{component},{reason}}}"), v));
        }
    }
    // Ackers: trees completed and failed (their message counts depend on batching).
    for name in ["topo_tuples_acked_total", "topo_tuples_failed_total"] {
        out.push((name.to_string(), e.sum(name, &[("component", "__acker")])));
    }
    out
}

#[test]
fn three_workers_add_up_to_the_figures_of_one() {
    let log = Log::default();
    let r = registry(&log);
    let one = snapshots_of(&topology(&r, 1), &r);
    let three = snapshots_of(&topology(&r, 3), &r);
    assert_eq!(three.len(), 3);
    assert!(three.iter().all(|s| !s.tasks.is_empty() && !s.running));

    let (e1, e3) = (scrape(&one), scrape(&three));
    assert_eq!(figures(&e3), figures(&e1));

    // And the figures are the right ones.
    let sevens = (0..COUNT).filter(|n| n % 7 == 0).count() as f64;
    let elevens = (0..COUNT).filter(|n| n % 11 == 0 && n % 7 != 0).count() as f64;
    let spout = [("component", "numbers")];
    assert_eq!(e3.sum("topo_tuples_emitted_total", &spout), COUNT as f64);
    assert_eq!(
        e3.sum("topo_tuples_acked_total", &spout),
        COUNT as f64 - sevens - elevens
    );
    let failed = |c: &str, reason: &str| {
        e3.sum(
            "topo_tuples_failed_total",
            &[("component", c), ("reason", reason)],
        )
    };
    assert_eq!(failed("judge", "explicit"), sevens);
    assert_eq!(failed("judge", "panic"), elevens);
    // A spout sees a bolt's failure of its tree, whatever its cause, as explicit.
    assert_eq!(failed("numbers", "explicit"), sevens + elevens);
    assert_eq!(failed("numbers", "timeout"), 0.0);
    assert_eq!(
        e3.matching("topo_tuples_acked_total", &spout).count(),
        3,
        "one series per spout task, each from the worker that ran it"
    );

    // Tuples crossed workers: the transport's figures are there, per peer.
    let out_bytes = e3.sum("topo_transport_bytes_total", &[("direction", "out")]);
    let in_bytes = e3.sum("topo_transport_bytes_total", &[("direction", "in")]);
    // (Heartbeats may be in flight, so in and out need not match to the byte.)
    assert!(out_bytes > 0.0 && in_bytes > 0.0, "{out_bytes} {in_bytes}");
    assert_eq!(
        e3.matching(
            "topo_transport_frames_total",
            &[("worker", "0"), ("direction", "out")]
        )
        .count(),
        2,
        "worker 0 has two peers"
    );
}

fn task(task: u32, kind: &str, acked: u64, pending: u64) -> TaskSnapshot {
    TaskSnapshot {
        task,
        component: "s".into(),
        kind: kind.into(),
        counts: Counts {
            emitted: acked + pending,
            acked,
            ..Counts::default()
        },
        pending,
        ..TaskSnapshot::default()
    }
}

fn worker_life(incarnation: u64, acked: u64, pending: u64) -> WorkerSnapshot {
    WorkerSnapshot {
        topology: "judged".into(),
        worker: 1,
        incarnation,
        uptime_secs: 1.0,
        running: true,
        tasks: vec![task(4, "spout", acked, pending)],
        transport: None,
        process: None,
        checkpoints: None,
    }
}

#[test]
fn a_restarted_worker_keeps_counters_monotonic_and_its_pending_trees_count_as_lost() {
    let exporter = Exporter::new();
    let mut publisher = Publisher::new("judged");
    let acked = |e: &Exporter| {
        let e = prom::parse(&e.render()).unwrap();
        (
            e.sum("topo_tuples_acked_total", &[("task", "4")]),
            e.sum("topo_tuples_failed_total", &[("reason", "worker_lost")]),
        )
    };
    exporter.record(|| publisher.publish(&[worker_life(5, 100, 10)], 0));
    assert_eq!(acked(&exporter), (100.0, 0.0));
    exporter.record(|| publisher.publish(&[worker_life(5, 150, 20)], 0));
    assert_eq!(acked(&exporter), (150.0, 0.0));
    // The worker died with 20 trees pending and came back from zero.
    let totals = exporter.record(|| publisher.publish(&[worker_life(9, 30, 1)], 1));
    assert_eq!(acked(&exporter), (180.0, 20.0));
    assert_eq!(totals.of_kind("spout").counts.acked, 180);
    assert_eq!(totals.of_kind("spout").worker_lost, 20);
    let text = exporter.render();
    assert!(
        text.contains("topo_worker_restarts_total{topology=\"judged\"} 1"),
        "{text}"
    );
    // Snapshots cross a control channel as bytes.
    let s = worker_life(9, 30, 1);
    assert_eq!(
        WorkerSnapshot::from_bytes(&s.to_bytes().unwrap()).unwrap(),
        s
    );
}

#[test]
fn checkpoint_figures_are_published_once_per_commit_and_cross_a_control_channel() {
    use topo_engine::{CheckpointFigures, CheckpointSummary};
    let exporter = Exporter::new();
    let mut publisher = Publisher::new("judged");
    let figures = |completed: u64, ms: &[u64]| {
        let mut f = CheckpointFigures {
            summary: CheckpointSummary {
                completed,
                failed: 1,
                last_completed: Some(completed + 1),
                size_bytes: 4096,
                ..CheckpointSummary::default()
            },
            ..CheckpointFigures::default()
        };
        for &m in ms {
            f.durations.record(Duration::from_millis(m));
            f.alignments.record(Duration::from_millis(m / 10));
        }
        Box::new(f)
    };
    let mut s = worker_life(5, 100, 10);
    s.checkpoints = Some(figures(2, &[40, 60]));
    exporter.record(|| publisher.publish(std::slice::from_ref(&s), 0));
    s.checkpoints = Some(figures(3, &[40, 60, 300]));
    exporter.record(|| publisher.publish(std::slice::from_ref(&s), 0));
    let e = prom::parse(&exporter.render()).unwrap();
    assert_eq!(e.sum("topo_checkpoint_duration_seconds_count", &[]), 3.0);
    assert_eq!(e.sum("topo_checkpoint_alignment_seconds_count", &[]), 3.0);
    assert_eq!(e.sum("topo_checkpoints_completed_total", &[]), 3.0);
    assert_eq!(e.sum("topo_checkpoints_failed_total", &[]), 1.0);
    assert_eq!(e.sum("topo_checkpoint_last_completed_id", &[]), 4.0);
    assert_eq!(e.sum("topo_checkpoint_size_bytes", &[]), 4096.0);
    assert_eq!(
        WorkerSnapshot::from_bytes(&s.to_bytes().unwrap()).unwrap(),
        s
    );
}
