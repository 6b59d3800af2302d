//! Groupings as a Storm user expects them: where each tuple lands, seen by the bolts.

mod common;

use common::{numbers, recorder, run, tasks_by_value, Log, Seen};
use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::grouping::fields_index;
use topo_engine::{Bolt, BoltOutput, Registry, Result, TaskContext, TaskId, Tuple, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// Emits `key = "k" + n % 10` for every `n`.
struct Keys;

impl Bolt for Keys {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let n = input.get(0).and_then(Value::as_int).unwrap_or(0);
        out.emit([format!("k{}", n % 10)]);
        Ok(())
    }
}

/// Sends `n` to task `tasks_of("sink")[n % 3]` on direct stream `to`.
struct Director {
    sinks: Vec<TaskId>,
}

impl Bolt for Director {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.sinks = ctx.tasks_of("sink").to_vec();
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let n = input.get(0).and_then(Value::as_int).unwrap_or(0);
        let task = self.sinks[(n % 3) as usize];
        out.emit_direct(task, "to", None, [n]);
        Ok(())
    }
}

fn registry(log: &Log, seen: &Seen) -> Registry {
    let mut r = Registry::new();
    numbers(&mut r, log);
    recorder(&mut r, "record", seen);
    r.bolt(
        "keys",
        "n -> key",
        |_: &NoConfig| vec![StreamDecl::default_stream(["key"])],
        |_| Ok(Keys),
    );
    r.bolt(
        "director",
        "n -> direct to a sink task",
        |_: &NoConfig| vec![StreamDecl::named("to", ["n"]).direct()],
        |_| Ok(Director { sinks: Vec::new() }),
    );
    r
}

fn setup() -> (Log, Seen, Registry) {
    let log = Log::default();
    let seen = Seen::default();
    let r = registry(&log, &seen);
    (log, seen, r)
}

#[test]
fn fields_grouping_sends_every_key_to_exactly_one_task_chosen_by_stable_hash() {
    let (_, seen, r) = setup();
    let t = Topology::builder("fields")
        .spout("numbers", "numbers")
        .set("count", 2000)
        .bolt("keys", "keys")
        .parallelism(3)
        .shuffle("numbers")
        .bolt("sink", "record")
        .parallelism(4)
        .fields("keys", ["key"])
        .build(&r)
        .unwrap();
    let sink_tasks = [5, 6, 7, 8]; // numbers 1, keys 2..=4
    let summary = run(t, &r);
    assert_eq!(summary.counts("sink").executed, 2000);
    let by_key = tasks_by_value(&seen);
    assert_eq!(by_key.len(), 10);
    for (key, tasks) in &by_key {
        let expect = sink_tasks[fields_index([&Value::from(key.as_str())], 4)];
        assert_eq!(tasks, &[expect], "key {key}");
    }
}

#[test]
fn shuffle_grouping_spreads_evenly_over_the_tasks() {
    let (_, seen, r) = setup();
    let t = Topology::builder("shuffle")
        .spout("numbers", "numbers")
        .set("count", 1000)
        .bolt("sink", "record")
        .parallelism(4)
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    run(t, &r);
    let mut per_task = std::collections::BTreeMap::new();
    for (task, _) in seen.lock().unwrap().iter() {
        *per_task.entry(*task).or_insert(0) += 1;
    }
    assert_eq!(per_task.into_values().collect::<Vec<_>>(), [250; 4]);
}

#[test]
fn all_grouping_reaches_every_task() {
    let (log, seen, r) = setup();
    let t = Topology::builder("all")
        .spout("numbers", "numbers")
        .set("count", 50)
        .bolt("sink", "record")
        .parallelism(3)
        .all("numbers")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let by_value = tasks_by_value(&seen);
    assert_eq!(by_value.len(), 50);
    for tasks in by_value.values() {
        let mut tasks = tasks.clone();
        tasks.sort();
        assert_eq!(tasks, [2, 3, 4]);
    }
    assert_eq!(summary.counts("sink").executed, 150);
    // Every copy belongs to the tree: the message is acked once all three acked.
    assert_eq!(log.lock().unwrap().acked.len(), 50);
}

#[test]
fn global_grouping_sends_everything_to_the_lowest_task() {
    let (_, seen, r) = setup();
    let t = Topology::builder("global")
        .spout("numbers", "numbers")
        .parallelism(2)
        .set("count", 100)
        .bolt("sink", "record")
        .parallelism(3)
        .global("numbers")
        .build(&r)
        .unwrap();
    run(t, &r);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 100);
    assert!(
        seen.iter().all(|(task, _)| *task == 3),
        "tasks 3, 4, 5: only 3"
    );
}

#[test]
fn direct_grouping_delivers_to_the_task_the_emitter_chose() {
    let (log, seen, r) = setup();
    let t = Topology::builder("direct")
        .spout("numbers", "numbers")
        .set("count", 90)
        .bolt("director", "director")
        .shuffle("numbers")
        .bolt("sink", "record")
        .parallelism(3)
        .direct("director", "to")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 90);
    for (task, values) in seen.iter() {
        let n = values[0].as_int().unwrap();
        assert_eq!(*task, [3, 4, 5][(n % 3) as usize], "n = {n}");
    }
    assert_eq!(summary.counts("director").failed, 0);
    assert_eq!(log.lock().unwrap().acked.len(), 90);
}

#[test]
fn emit_direct_to_a_task_that_does_not_subscribe_fails_the_input() {
    let log = Log::default();
    let seen = Seen::default();
    let mut r = registry(&log, &seen);
    // Sends to the spout's task 1, which subscribes to nothing.
    struct Stray;
    impl Bolt for Stray {
        fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
            out.emit_direct(1, "to", None, [input.get(0).cloned().unwrap_or_default()]);
            Ok(())
        }
    }
    r.bolt(
        "stray",
        "emit_direct to a wrong task",
        |_: &NoConfig| vec![StreamDecl::named("to", ["n"]).direct()],
        |_| Ok(Stray),
    );
    let t = Topology::builder("stray")
        .spout("numbers", "numbers")
        .set("count", 5)
        .set("replay", false)
        .bolt("stray", "stray")
        .shuffle("numbers")
        .bolt("sink", "record")
        .direct("stray", "to")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    assert_eq!(summary.counts("stray").failed_by.panic, 5);
    assert_eq!(log.lock().unwrap().failed.len(), 5);
    assert!(seen.lock().unwrap().is_empty());
}

#[test]
fn local_or_shuffle_keeps_tuples_in_the_emitters_worker() {
    let (_, seen, r) = setup();
    // Tasks: numbers 1, 2; sink 3, 4, 5, 6. Round-robin over two workers: 1, 3, 5 in
    // worker 0; 2, 4, 6 in worker 1.
    let t = Topology::builder("local")
        .workers(2)
        .spout("numbers", "numbers")
        .parallelism(2)
        .set("count", 400)
        .bolt("sink", "record")
        .parallelism(4)
        .local_or_shuffle("numbers")
        .build(&r)
        .unwrap();
    let plan = topo_engine::PhysicalPlan::new(&t);
    run(t, &r);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 400);
    for (task, values) in seen.iter() {
        // Spout task 1 (worker 0) emits the even numbers, task 2 (worker 1) the odd ones.
        let from_worker = (values[0].as_int().unwrap() % 2) as usize;
        assert_eq!(plan.worker_of(*task), Some(from_worker), "task {task}");
    }
    let tasks: std::collections::BTreeSet<TaskId> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(tasks.len(), 4, "both local tasks of each worker get tuples");
}
