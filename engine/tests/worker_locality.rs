//! Load- and locality-aware shuffle between two workers over the real transport: a spout
//! in worker 0 and a bolt with one task in each worker. Unloaded, every tuple stays in
//! the spout's worker; with the local task slow (it takes time per tuple, a real load)
//! some spill to the other worker's task; with `disable_loadaware_messaging` both get an
//! equal share.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{numbers, run_workers, Log};
use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::{Bolt, BoltOutput, Registry, RunOptions, TaskContext, TaskId, Tuple};

/// Task ids that executed each tuple, in order.
type Executed = Arc<Mutex<Vec<TaskId>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkConfig {
    /// Milliseconds each tuple takes.
    #[serde(default)]
    millis: u64,
}

struct Work {
    executed: Executed,
    task: TaskId,
    per_tuple: Duration,
}

impl Bolt for Work {
    fn prepare(&mut self, ctx: &TaskContext) -> topo_engine::Result<()> {
        self.task = ctx.task;
        Ok(())
    }

    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> topo_engine::Result<()> {
        // The work a tuple takes: this task cannot go faster than this.
        std::thread::sleep(self.per_tuple);
        self.executed.lock().unwrap().push(self.task);
        Ok(())
    }
}

fn registry(log: &Log, executed: &Executed) -> Registry {
    let mut r = Registry::new();
    numbers(&mut r, log);
    let executed = Arc::clone(executed);
    r.bolt(
        "work",
        "Takes `millis` per tuple and records which task executed it.",
        |_: &WorkConfig| vec![StreamDecl::default_stream(Vec::<String>::new())],
        move |c: WorkConfig| {
            Ok(Work {
                executed: Arc::clone(&executed),
                task: 0,
                per_tuple: Duration::from_millis(c.millis),
            })
        },
    );
    r
}

/// Runs `count` numbers from one spout task (1, worker 0) through bolt `work` (task 2 in
/// worker 1, task 3 in worker 0) on two workers; returns how many tuples each bolt task
/// executed: (worker 0's task 3, worker 1's task 2).
fn run(count: i64, millis: i64, disable: bool, options: RunOptions) -> (usize, usize) {
    let log = Log::default();
    let executed = Executed::default();
    let r = registry(&log, &executed);
    let topology = Arc::new(
        Topology::builder("locality")
            .workers(2)
            .disable_loadaware_messaging(disable)
            .spout("numbers", "numbers")
            .set("count", count)
            .bolt("work", "work")
            .parallelism(2)
            .set("millis", millis)
            .shuffle("numbers")
            .build(&r)
            .unwrap(),
    );
    let summaries: Vec<_> = run_workers(&topology, &r, options)
        .into_iter()
        .map(|f| f.summary)
        .collect();
    let acked: u64 = summaries.iter().map(|s| s.counts("numbers").acked).sum();
    let failed: u64 = summaries.iter().map(|s| s.counts("numbers").failed).sum();
    assert_eq!((acked, failed), (count as u64, 0));
    let executed = executed.lock().unwrap();
    assert_eq!(executed.len(), count as usize, "each tuple executed once");
    let on = |t: TaskId| executed.iter().filter(|&&x| x == t).count();
    (on(3), on(2))
}

#[test]
fn unloaded_every_tuple_is_executed_in_the_spouts_worker() {
    assert_eq!(run(300, 0, false, RunOptions::default()), (300, 0));
}

#[test]
fn with_the_local_task_overloaded_some_tuples_go_to_the_other_worker() {
    // Inboxes of two 4-tuple batches: the local task, at 2 ms a tuple, is full at once.
    let options = RunOptions {
        batch_size: 4,
        queue_batches: 2,
        ..RunOptions::default()
    };
    let (local, remote) = run(600, 2, false, options);
    assert!(
        remote > 0 && local > 0,
        "both tasks worked: {local} here, {remote} in the other worker"
    );
}

#[test]
fn with_load_aware_messaging_disabled_shuffle_is_a_plain_round_robin() {
    assert_eq!(run(300, 0, true, RunOptions::default()), (150, 150));
}
