//! Shared by the built-in and multilang integration tests: a recording sink and `run`.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use topo::prelude::*;
use topo_engine::{RunOptions, RunSummary};

/// Every tuple a recorder got: its field names and values.
pub type Seen = Arc<Mutex<Vec<(Vec<String>, Vec<Value>)>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

struct Record {
    seen: Seen,
}

impl Bolt for Record {
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        self.seen
            .lock()
            .map_err(|_| "poisoned")?
            .push((input.fields().to_vec(), input.values().to_vec()));
        Ok(())
    }
}

/// The default registry plus a `record` bolt that keeps every input in the returned list.
pub fn registry() -> (Registry, Seen) {
    let mut registry = topo::default_registry();
    let seen: Seen = Arc::default();
    let keep = Arc::clone(&seen);
    registry.bolt(
        "record",
        "Records every input (tests).",
        |_: &NoConfig| Vec::new(),
        move |_: NoConfig| {
            Ok(Record {
                seen: Arc::clone(&keep),
            })
        },
    );
    (registry, seen)
}

/// The first value of every recorded tuple, as text, sorted.
pub fn firsts(seen: &Seen) -> Vec<String> {
    let mut v: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, vals)| match &vals[0] {
            Value::Str(s) => s.to_string(),
            other => other.to_string(),
        })
        .collect();
    v.sort();
    v
}

/// Runs `topology` with `dir` as the topology folder until it ends by itself; a guard
/// stops it after two minutes so a hang fails the assertions instead of the run.
pub fn run(topology: Topology, registry: &Registry, dir: &Path) -> RunSummary {
    let options = RunOptions {
        base_dir: dir.to_path_buf(),
        ..RunOptions::default()
    };
    let running = topo_engine::start(Arc::new(topology), registry, options).expect("start");
    if !running.wait_timeout(Duration::from_secs(120)) {
        running.stop();
    }
    running.wait()
}
