//! Storm's at-least-once guarantee, seen from the spout: failed trees are replayed until
//! acked, stuck trees time out, `max_spout_pending` bounds what is in flight, a panicking
//! bolt fails its tuple, and with acking off nothing is tracked.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use common::{numbers, recorder, run, Log, Seen};
use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::{Bolt, BoltOutput, Registry, Result, Tuple, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

fn n_of(t: &Tuple) -> i64 {
    t.get(0).and_then(Value::as_int).unwrap_or(-1)
}

/// Fails the first delivery of every 10th number, passes everything else on.
#[derive(Default)]
struct FailTenth {
    failed: HashSet<i64>,
}

impl Bolt for FailTenth {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let n = n_of(input);
        if n % 10 == 0 && self.failed.insert(n) {
            return Err(format!("failing {n} once").into());
        }
        out.emit([n]);
        Ok(())
    }
}

#[test]
fn a_bolt_failing_every_tenth_tuple_gets_exactly_those_replayed_until_acked() {
    let log = Log::default();
    let seen = Seen::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    recorder(&mut r, "record", &seen);
    r.bolt(
        "fail_tenth",
        "fails every 10th once",
        |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
        |_| Ok(FailTenth::default()),
    );
    let t = Topology::builder("replay")
        .spout("numbers", "numbers")
        .set("count", 100)
        .bolt("check", "fail_tenth")
        .fields("numbers", ["n"])
        .parallelism(2)
        .bolt("sink", "record")
        .shuffle("check")
        .parallelism(2)
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let log = log.lock().unwrap();
    let failed: BTreeSet<u64> = log.failed.iter().copied().collect();
    assert_eq!(failed, (0..100).step_by(10).collect());
    assert_eq!(log.failed.len(), 10, "each failed exactly once");
    let mut acked = log.acked.clone();
    acked.sort();
    assert_eq!(
        acked,
        (0..100).collect::<Vec<_>>(),
        "every message acked once"
    );
    assert_eq!(log.pending, 0);
    let spout = summary.counts("numbers");
    assert_eq!(
        (spout.acked, spout.failed, spout.failed_by.explicit),
        (100, 10, 10)
    );
    assert_eq!(summary.counts("check").failed_by.explicit, 10);
    assert_eq!(seen.lock().unwrap().len(), 100);
}

/// Defers every input and never acks it.
struct BlackHole;

impl Bolt for BlackHole {
    fn execute(&mut self, _input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        out.defer();
        Ok(())
    }
}

#[test]
fn a_tree_nobody_acks_times_out_and_the_spout_gets_fail() {
    let log = Log::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    r.bolt(
        "black_hole",
        "never acks",
        |_: &NoConfig| Vec::new(),
        |_| Ok(BlackHole),
    );
    let t = Topology::builder("timeout")
        .message_timeout_secs(0.2)
        .spout("numbers", "numbers")
        .set("count", 5)
        .set("replay", false)
        .bolt("hole", "black_hole")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let log = log.lock().unwrap();
    let mut failed = log.failed.clone();
    failed.sort();
    assert_eq!(failed, [0, 1, 2, 3, 4]);
    assert!(log.acked.is_empty());
    let spout = summary.counts("numbers");
    assert_eq!((spout.failed_by.timeout, spout.failed_by.explicit), (5, 0));
}

/// Holds inputs until it has `n`, then acks them all.
struct AckInGroups {
    n: usize,
    held: Vec<Tuple>,
}

impl Bolt for AckInGroups {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        out.defer();
        self.held.push(input.clone());
        if self.held.len() == self.n {
            for t in self.held.drain(..) {
                out.ack(&t);
            }
        }
        Ok(())
    }
}

#[test]
fn max_spout_pending_never_lets_more_trees_be_pending() {
    let log = Log::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    r.bolt(
        "groups",
        "acks in groups of 7",
        |_: &NoConfig| Vec::new(),
        |_| {
            Ok(AckInGroups {
                n: 7,
                held: Vec::new(),
            })
        },
    );
    let t = Topology::builder("pending")
        .max_spout_pending(7)
        .spout("numbers", "numbers")
        .set("count", 700)
        .bolt("groups", "groups")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let log = log.lock().unwrap();
    // The bolt acks only when it holds 7: had the spout stopped below 7 the run would
    // never end; had it gone above, the spout would have seen more pending.
    assert_eq!(log.max_pending, 7);
    assert_eq!(log.acked.len(), 700);
    assert_eq!(summary.counts("numbers").acked, 700);
}

/// Panics on the first delivery of 7.
#[derive(Default)]
struct PanicOnSeven {
    panicked: bool,
}

impl Bolt for PanicOnSeven {
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        if n_of(input) == 7 && !self.panicked {
            self.panicked = true;
            panic!("seven is unlucky");
        }
        Ok(())
    }
}

#[test]
fn a_panicking_bolt_fails_its_tuple_and_the_run_completes() {
    let log = Log::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    r.bolt(
        "panic_on_seven",
        "panics once",
        |_: &NoConfig| Vec::new(),
        |_| Ok(PanicOnSeven::default()),
    );
    let t = Topology::builder("panic")
        .spout("numbers", "numbers")
        .set("count", 20)
        .bolt("fragile", "panic_on_seven")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let log = log.lock().unwrap();
    assert_eq!(log.failed, [7]);
    assert_eq!(log.acked.len(), 20, "7 was replayed and acked");
    let fragile = summary.counts("fragile");
    assert_eq!((fragile.failed_by.panic, fragile.executed), (1, 21));
}

/// Records whether its inputs are tracked.
struct Tracked(Arc<Mutex<Vec<bool>>>);

impl Bolt for Tracked {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        self.0.lock().unwrap().push(input.is_tracked());
        out.emit([n_of(input)]);
        Ok(())
    }
}

fn tracked_topology(acking: bool) -> (Vec<bool>, topo_engine::RunSummary, usize) {
    let log = Log::default();
    let seen = Seen::default();
    let tracked = Arc::new(Mutex::new(Vec::new()));
    let mut r = Registry::new();
    numbers(&mut r, &log);
    recorder(&mut r, "record", &seen);
    let t2 = Arc::clone(&tracked);
    r.bolt(
        "tracked",
        "records is_tracked",
        |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
        move |_| Ok(Tracked(Arc::clone(&t2))),
    );
    let t = Topology::builder("acking")
        .acking(acking)
        .spout("numbers", "numbers")
        .set("count", 50)
        .bolt("tracked", "tracked")
        .shuffle("numbers")
        .bolt("sink", "record")
        .shuffle("tracked")
        .build(&r)
        .unwrap();
    let running = topo_engine::start(Arc::new(t), &r, Default::default()).unwrap();
    let ackers = running.acker_count();
    let summary = running.wait();
    let out = tracked.lock().unwrap().clone();
    (out, summary, ackers)
}

#[test]
fn with_acking_off_no_acker_runs_and_nothing_is_tracked() {
    let (tracked, summary, ackers) = tracked_topology(false);
    assert_eq!(ackers, 0);
    assert!(summary.component("__acker").is_none());
    assert_eq!(tracked.len(), 50);
    assert!(tracked.iter().all(|t| !t), "no tuple carries an id");
    // At most once: the spout is told `ack` right after each emit, as Storm does.
    assert_eq!(summary.counts("numbers").acked, 50);
    assert_eq!(summary.counts("sink").executed, 50);

    let (tracked, summary, ackers) = tracked_topology(true);
    assert_eq!(ackers, 1);
    assert!(tracked.iter().all(|t| *t));
    let acker = summary.counts("__acker");
    assert_eq!(acker.acked, 50, "the acker completed every tree");
}

/// Joins: emits one tuple anchored to two inputs once it has two.
#[derive(Default)]
struct Pairs {
    held: Vec<Tuple>,
}

impl Bolt for Pairs {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        out.defer();
        self.held.push(input.clone());
        if self.held.len() == 2 {
            let (a, b) = (&self.held[0], &self.held[1]);
            out.emit_anchored(&[a, b], "default", [n_of(a) + n_of(b)]);
            for t in std::mem::take(&mut self.held) {
                out.ack(&t);
            }
        }
        Ok(())
    }
}

#[test]
fn a_tuple_anchored_to_two_inputs_completes_both_trees_only_when_acked() {
    let log = Log::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    r.bolt(
        "pairs",
        "sums pairs",
        |_: &NoConfig| vec![StreamDecl::default_stream(["sum"])],
        |_| Ok(Pairs::default()),
    );
    // The sink fails sums that are multiples of 3 the first time: both inputs replay.
    #[derive(Default)]
    struct FailThirds(HashSet<i64>);
    impl Bolt for FailThirds {
        fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
            let n = n_of(input);
            if n % 3 == 0 && self.0.insert(n) {
                out.fail(input);
            }
            Ok(())
        }
    }
    r.bolt(
        "fail_thirds",
        "fails multiples of 3 once",
        |_: &NoConfig| Vec::new(),
        |_| Ok(FailThirds::default()),
    );
    let t = Topology::builder("dag")
        .max_spout_pending(2)
        .spout("numbers", "numbers")
        .set("count", 40)
        .bolt("pairs", "pairs")
        .shuffle("numbers")
        .bolt("sink", "fail_thirds")
        .shuffle("pairs")
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let log = log.lock().unwrap();
    let mut acked = log.acked.clone();
    acked.sort();
    assert_eq!(acked, (0..40).collect::<Vec<_>>());
    assert!(
        !log.failed.is_empty() && log.failed.len() % 2 == 0,
        "{:?}",
        log.failed
    );
    assert_eq!(summary.counts("numbers").failed_by.timeout, 0);
}

/// Emits every input three times, anchored.
struct Fan;

impl Bolt for Fan {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        for _ in 0..3 {
            out.emit([n_of(input)]);
        }
        Ok(())
    }
}

#[test]
fn a_failure_deep_in_the_tree_fails_the_spout_message_not_acks_it() {
    let log = Log::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    r.bolt(
        "fan",
        "emits three copies",
        |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
        |_| Ok(Fan),
    );
    r.bolt(
        "fail_tenth",
        "fails every 10th once",
        |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
        |_| Ok(FailTenth::default()),
    );
    let t = Topology::builder("deep")
        .spout("numbers", "numbers")
        .set("count", 2000)
        .bolt("fan", "fan")
        .parallelism(2)
        .shuffle("numbers")
        .bolt("pass", "fan")
        .parallelism(2)
        .shuffle("fan")
        .bolt("check", "fail_tenth")
        .parallelism(3)
        .fields("pass", ["n"])
        .build(&r)
        .unwrap();
    let summary = run(t, &r);
    let log = log.lock().unwrap();
    let failed: BTreeSet<u64> = log.failed.iter().copied().collect();
    assert_eq!(
        failed,
        (0..2000).step_by(10).collect(),
        "no tree completed early"
    );
    let acked: BTreeSet<u64> = log.acked.iter().copied().collect();
    assert_eq!((acked.len(), log.acked.len()), (2000, 2000));
    assert_eq!(summary.counts("check").executed, 2000 * 9 + 200 * 9);
}
