//! `topo validate FILE...`: check topology files, print a one-line summary of each.

use std::path::PathBuf;

use topo_dsl::{Kind, Topology};
use topo_engine::Registry;

use super::{load_file, EXIT_OK};

/// Arguments of `topo validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `*.topo.toml` files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Validates every file (each is checked even when an earlier one fails); the exit code is
/// the worst one: 2 over 1 over 0.
pub fn run(registry: &Registry, args: &Args) -> i32 {
    let mut code = EXIT_OK;
    for file in &args.files {
        match load_file(file, registry) {
            Ok(t) => println!("{}: {}", file.display(), summary(&t)),
            Err(c) => code = code.max(c),
        }
    }
    code
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `ok: "wordcount", 4 components (1 spout, 3 bolts), 6 tasks, 3 edges, 1 worker, 1 acker`.
pub fn summary(t: &Topology) -> String {
    let spouts = t
        .components()
        .iter()
        .filter(|c| c.kind == Kind::Spout)
        .count();
    let bolts = t.components().len() - spouts;
    let s = t.settings();
    format!(
        "ok: \"{}\", {} ({}, {}), {}, {}, {}, {}",
        t.name(),
        plural(t.components().len(), "component", "components"),
        plural(spouts, "spout", "spouts"),
        plural(bolts, "bolt", "bolts"),
        plural(t.task_count(), "task", "tasks"),
        plural(t.edge_count(), "edge", "edges"),
        plural(s.workers, "worker", "workers"),
        plural(s.ackers, "acker", "ackers"),
    )
}
