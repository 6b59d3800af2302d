//! Two workers of one topology in one process, connected by the real transport over
//! loopback TCP (through `launcher::worker::start`, the bridge worker processes use):
//! tuples, acks and end-of-stream cross between them, and the word count
//! comes out right.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{numbers, recorder, run_workers, Log, Seen};
use topo_dsl::Topology;
use topo_engine::{RunOptions, TaskId};

#[test]
fn a_topology_split_over_two_workers_runs_through_the_transport() {
    two_workers(3000, RunOptions::default());
}

#[test]
fn tiny_queues_hold_remote_batches_back_without_losing_or_reordering_any() {
    let options = RunOptions {
        batch_size: 16,
        queue_batches: 1,
        ..RunOptions::default()
    };
    two_workers(20_000, options);
}

fn two_workers(count: i64, base: RunOptions) {
    let log = Log::default();
    let seen = Seen::default();
    let mut r = topo_engine::Registry::new();
    numbers(&mut r, &log);
    recorder(&mut r, "record", &seen);
    // numbers 1, 2 and sink 3..=6 alternate between the workers; ackers 7 (w0), 8 (w1).
    let topology = Arc::new(
        Topology::builder("tcp")
            .workers(2)
            .spout("numbers", "numbers")
            .parallelism(2)
            .set("count", count)
            .bolt("sink", "record")
            .parallelism(4)
            .fields("numbers", ["n"])
            .build(&r)
            .unwrap(),
    );
    let summaries: Vec<_> = run_workers(&topology, &r, base)
        .into_iter()
        .map(|f| f.summary)
        .collect();

    let acked: u64 = summaries.iter().map(|s| s.counts("numbers").acked).sum();
    let failed: u64 = summaries.iter().map(|s| s.counts("numbers").failed).sum();
    assert_eq!((acked, failed), (count as u64, 0));
    let seen = seen.lock().unwrap();
    let values: BTreeSet<i64> = seen.iter().map(|(_, v)| v[0].as_int().unwrap()).collect();
    assert_eq!(seen.len(), count as usize);
    assert_eq!(values.len(), count as usize);
    // Fields grouping and one connection per pair keep each key's order.
    let mut last = std::collections::HashMap::new();
    for (task, v) in seen.iter() {
        let n = v[0].as_int().unwrap();
        let spout_task = n % 2;
        if let Some(prev) = last.insert((*task, spout_task), n) {
            assert!(prev < n, "task {task} got {n} after {prev}");
        }
    }
    let tasks: BTreeSet<TaskId> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(tasks, BTreeSet::from([3, 4, 5, 6]));
    for (w, s) in summaries.iter().enumerate() {
        let sink = s.component("sink").unwrap();
        let tasks: Vec<TaskId> = sink.tasks.iter().map(|t| t.task).collect();
        assert_eq!(
            tasks,
            [[3, 5], [4, 6]][w],
            "a worker's summary has its own tasks"
        );
        assert!(
            s.counts("__acker").acked > 0,
            "worker {w}'s acker tracked trees"
        );
    }
}
