//! When user code cannot start: a factory that refuses its config stops `start`; a bolt
//! whose `prepare` fails stops the run, which still ends and says why.

mod common;

use common::{numbers, Log};
use serde::Deserialize;
use topo_dsl::Topology;
use topo_engine::{Bolt, BoltOutput, Registry, Result, TaskContext, Tuple};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

struct Broken;

impl Bolt for Broken {
    fn prepare(&mut self, _ctx: &TaskContext) -> Result<()> {
        Err("cannot open the database".into())
    }

    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn a_bolt_that_cannot_prepare_stops_the_run_and_the_summary_says_why() {
    let log = Log::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    r.bolt(
        "broken",
        "fails prepare",
        |_: &NoConfig| Vec::new(),
        |_| Ok(Broken),
    );
    let t = Topology::builder("broken")
        .spout("numbers", "numbers")
        .bolt("db", "broken")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    // An unbounded spout: only the stop that the failure triggers ends this run.
    let summary = common::run(t, &r);
    assert_eq!(
        summary.errors,
        ["bolt `db` task 2 failed to prepare: cannot open the database"]
    );
    let db = summary.counts("db");
    assert_eq!(db.errors, 1);
    assert_eq!(db.failed, db.executed, "every input it got was failed");
    assert_eq!(summary.counts("numbers").acked, 0);
}

#[test]
fn a_factory_that_refuses_its_config_starts_nothing() {
    let mut r = Registry::new();
    let log = Log::default();
    numbers(&mut r, &log);
    r.bolt(
        "picky",
        "refuses",
        |_: &NoConfig| Vec::new(),
        |_| -> Result<Broken> { Err("no thanks".into()) },
    );
    let t = Topology::builder("picky")
        .spout("numbers", "numbers")
        .bolt("p", "picky")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    let err = topo_engine::start(std::sync::Arc::new(t), &r, Default::default()).unwrap_err();
    assert_eq!(err.to_string(), "cannot make `p` (type `picky`): no thanks");
    assert_eq!(log.lock().unwrap().emits, 0);
}
