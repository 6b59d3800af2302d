//! A Rust program with its own bolt: the built-in registry plus a `running_total` bolt,
//! a topology written with the builder API, run in this process.
//!
//! `cargo run --example custom_bolt` prints the JSON Lines its `file_sink` wrote:
//! the numbers 1 to 10 with their running total.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use topo::prelude::*;

/// Config of `running_total`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotalConfig {
    /// The integer field to add up (default `n`).
    #[serde(default = "default_field")]
    pub field: String,
}

fn default_field() -> String {
    "n".into()
}

/// Emits every input number with the total of all numbers so far.
pub struct RunningTotal {
    field: String,
    total: i64,
}

impl Bolt for RunningTotal {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let n = input
            .field(&self.field)
            .and_then(Value::as_int)
            .ok_or_else(|| format!("`running_total` needs an integer field `{}`", self.field))?;
        self.total += n;
        out.emit(values![n, self.total]);
        Ok(())
    }
}

/// The built-in components plus `running_total`.
pub fn registry() -> Registry {
    let mut registry = topo::default_registry();
    registry.bolt(
        "running_total",
        "Emits every number with the running total so far.",
        |_: &TotalConfig| vec![StreamDecl::default_stream(["n", "total"])],
        |c: TotalConfig| {
            Ok(RunningTotal {
                field: c.field,
                total: 0,
            })
        },
    );
    registry
}

/// Runs numbers 1..=10 through `running_total` into `dir/totals.jsonl`; returns its text.
pub fn run_in(dir: &Path) -> std::result::Result<String, Box<dyn std::error::Error>> {
    let registry = registry();
    let topology = Topology::builder("totals")
        .spout("numbers", "sequence")
        .set("count", 10)
        .set("start", 1)
        .bolt("total", "running_total")
        .global("numbers")
        .bolt("out", "file_sink")
        .set("path", "totals.jsonl")
        .global("total")
        .build(&registry)?;
    let options = topo_engine::RunOptions {
        base_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let summary = topo_engine::start(Arc::new(topology), &registry, options)?.wait();
    if let Some(e) = summary.errors.first() {
        return Err(e.clone().into());
    }
    Ok(std::fs::read_to_string(dir.join("totals.jsonl"))?)
}

#[allow(dead_code)]
fn main() {
    let dir = std::env::temp_dir().join(format!("topo-custom-bolt-{}", std::process::id()));
    let result = std::fs::create_dir_all(&dir)
        .map_err(Into::into)
        .and_then(|()| run_in(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
