//! Backpressure: a slow bolt slows an unbounded spout, so what is in flight between them
//! stays within the queues' capacity however fast the spout could go.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{numbers, Log};
use serde::Deserialize;
use topo_dsl::Topology;
use topo_engine::{Bolt, BoltOutput, Registry, Result, RunOptions, Tuple};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// Takes 50 µs per tuple: about 20,000 tuples a second.
struct Slow;

impl Bolt for Slow {
    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        std::thread::sleep(Duration::from_micros(50));
        Ok(())
    }
}

fn in_flight_stays_bounded(acking: bool) {
    let log = Log::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    r.bolt(
        "slow",
        "50 µs per tuple",
        |_: &NoConfig| Vec::new(),
        |_| Ok(Slow),
    );
    let mut b = Topology::builder("backpressure").acking(acking);
    if acking {
        b = b.max_spout_pending(0); // 0: unbounded, so only the queues hold the spout
    }
    let t = b
        .spout("numbers", "numbers")
        .bolt("slow", "slow")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    let options = RunOptions {
        batch_size: 64,
        queue_batches: 4,
        ..RunOptions::default()
    };
    // In flight at most: the queue (4 batches), the batch being executed, the batch the
    // spout is blocked sending, and the spout's partial buffer.
    let bound = (4 + 3) * 64;
    let running = topo_engine::start(Arc::new(t), &r, options).unwrap();
    let mut most = 0;
    loop {
        let emitted = running.component_counts("numbers").emitted;
        let executed = running.component_counts("slow").executed;
        let in_flight = emitted.saturating_sub(executed);
        most = most.max(in_flight);
        assert!(
            in_flight <= bound,
            "{in_flight} tuples in flight, bound {bound}"
        );
        for (task, len) in running.queue_lengths() {
            assert!(len <= 4, "task {task} queue holds {len} batches");
        }
        if executed >= 3000 {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    running.stop();
    let summary = running.wait();
    let emitted = summary.counts("numbers").emitted;
    let executed = summary.counts("slow").executed;
    assert_eq!(emitted, executed, "stopping drains what was in flight");
    assert_eq!(summary.counts("numbers").failed, 0);
}

#[test]
fn a_slow_bolt_holds_back_an_unbounded_spout_with_acking_off() {
    in_flight_stays_bounded(false);
}

#[test]
fn a_slow_bolt_holds_back_an_unbounded_spout_with_acking_on_and_no_pending_limit() {
    in_flight_stays_bounded(true);
}
