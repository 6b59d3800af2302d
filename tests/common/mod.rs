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

/// Copies `examples/multilang/<name>` into `dir`, so that what a script writes to its
/// working directory stays out of the source tree.
pub fn copy_script(name: &str, dir: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/multilang")
        .join(name);
    std::fs::copy(&from, dir.join(name)).expect("copy script");
}

/// A TOML array of strings.
pub fn strings(v: &[&str]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::from(*s)).collect())
}

/// The last count `word_count` reported for every word.
pub fn final_counts(seen: &Seen) -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, v) in seen.lock().expect("lock").iter() {
        let word = v[0].as_str().expect("word").to_string();
        let n = v[1].as_int().expect("count");
        let e = counts.entry(word).or_insert(0);
        *e = n.max(*e);
    }
    counts
}

/// How often each word occurs in `text`.
pub fn word_counts(text: &str) -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}
