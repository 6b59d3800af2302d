//! `topo validate FILE...`: check topology files, print a one-line summary of each, or
//! with `--format json` one JSON object per file (for editors and CI).

use std::path::PathBuf;

use serde_json::json;
use topo_dsl::{Diagnostics, Kind, Topology};
use topo_engine::Registry;

use super::{load_file, resources, Source, EXIT_INVALID, EXIT_OK};

/// Arguments of `topo validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `*.topo.toml` files; `-` reads one from standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// `human`: rustc-style errors on stderr and a summary per valid file on stdout;
    /// `json`: one JSON object per file on stdout (`file`, `ok`, `errors` with `message`,
    /// `line`, `column`, `end_line`, `end_column`, `hint`; `warnings`; `summary` when
    /// valid). Resources are checked against the file's folder.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
}

/// How `topo validate` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people.
    Human,
    /// For programs: JSON lines.
    Json,
}

/// Validates every file (each is checked even when an earlier one fails); the exit code is
/// the worst one: 2 over 1 over 0.
pub fn run(registry: &Registry, args: &Args) -> i32 {
    let mut code = EXIT_OK;
    for file in &args.files {
        let c = match args.format {
            Format::Human => match load_file(file, registry) {
                Ok(t) => {
                    let found = resources::check(&t, &resources::base_dir(file));
                    match resources::report(&file_name(file), &found) {
                        Ok(()) => {
                            println!("{}: {}", file_name(file), summary(&t));
                            EXIT_OK
                        }
                        Err(c) => c,
                    }
                }
                Err(c) => c,
            },
            Format::Json => match Source::read(file) {
                Ok(source) => {
                    let result = source.load(registry);
                    let found = result
                        .as_ref()
                        .ok()
                        .map(|t| resources::check(t, &resources::base_dir(file)))
                        .unwrap_or_default();
                    println!("{}", report(&source, &result, &found));
                    if result.is_ok() && found.errors.is_empty() {
                        EXIT_OK
                    } else {
                        EXIT_INVALID
                    }
                }
                Err(c) => c,
            },
        };
        code = code.max(c);
    }
    code
}

fn file_name(file: &std::path::Path) -> String {
    if file.as_os_str() == "-" {
        "<stdin>".to_owned()
    } else {
        file.display().to_string()
    }
}

/// The JSON report of one file.
fn report(
    source: &Source,
    result: &Result<Topology, Diagnostics>,
    found: &resources::Findings,
) -> serde_json::Value {
    let plain = |m: &String| json!({"message": m, "line": null, "column": null, "end_line": null, "end_column": null, "hint": null});
    match result {
        Ok(_) if !found.errors.is_empty() => json!({
            "file": source.shown,
            "ok": false,
            "errors": found.errors.iter().map(plain).collect::<Vec<_>>(),
            "warnings": found.warnings,
        }),
        Ok(t) => json!({
            "file": source.shown,
            "ok": true,
            "errors": [],
            "warnings": found.warnings,
            "summary": {
                "name": t.name(),
                "components": t.components().len(),
                "tasks": t.task_count(),
                "edges": t.edge_count(),
                "workers": t.settings().workers,
                "ackers": t.settings().ackers,
            },
        }),
        Err(diags) => {
            let errors: Vec<serde_json::Value> = diags
                .items
                .iter()
                .map(|d| {
                    let at = d.location(&source.text);
                    json!({
                        "message": d.message,
                        "line": at.map(|l| l.line),
                        "column": at.map(|l| l.column),
                        "end_line": at.map(|l| l.end_line),
                        "end_column": at.map(|l| l.end_column),
                        "hint": d.hint,
                    })
                })
                .collect();
            json!({ "file": source.shown, "ok": false, "errors": errors })
        }
    }
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
