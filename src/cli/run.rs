//! `topo run FILE`: runs a topology in this process until it ends, is stopped, or its
//! time is up, then prints a per-component summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use topo_dsl::{validate, ComponentSpec, InputSpec, Kind, Span, TopologySpec};
use topo_engine::{Registry, RunOptions};

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Arguments of `topo run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The `*.topo.toml` file.
    file: PathBuf,
    /// Stop after this long (`500ms`, `30s`, `2m`, `1h`): spouts are deactivated and
    /// in-flight trees drain, as on Ctrl-C.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    run_for: Option<Duration>,
    /// Print the summary as one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Print the physical plan (which task runs in which worker) and exit.
    #[arg(long)]
    plan: bool,
}

/// Parses `500ms`, `30s`, `2m`, `1h` (a decimal number and a unit).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration `{text}`: use a number and a unit, like 500ms, 30s, 2m or 1h");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Runs `topo run`; returns the exit code.
pub(crate) fn run(registry: &Registry, args: RunArgs) -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read `{}`: {e}", args.file.display());
            return EXIT_USAGE;
        }
    };
    let spec = match load_spec(&text) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: `{}`: {e}", args.file.display());
            return EXIT_INVALID;
        }
    };
    let topology = match validate(&spec, registry) {
        Ok(t) => Arc::new(t),
        Err(diagnostics) => {
            eprint!("{diagnostics}");
            return EXIT_INVALID;
        }
    };
    if args.plan {
        print!(
            "{}",
            topo_engine::PhysicalPlan::new(&topology).render(&topology)
        );
        return EXIT_OK;
    }
    let base_dir = args
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let options = RunOptions {
        base_dir,
        ..RunOptions::default()
    };
    let running = match topo_engine::start(Arc::clone(&topology), registry, options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    let stop = running.stop_handle();
    let installed = topo_engine::signal::on_shutdown_signal(move |n| {
        if n == 1 {
            eprintln!("Stopping: draining in-flight tuples (press Ctrl-C again to quit now).");
            stop.stop();
        } else {
            std::process::exit(130);
        }
    });
    if let Err(e) = installed {
        tracing::warn!(error = %e, "Cannot handle Ctrl-C; stop with --for.");
    }
    if let Some(d) = args.run_for {
        if !running.wait_timeout(d) {
            running.stop();
        }
    }
    let summary = running.wait();
    if args.json {
        match serde_json::to_string(&summary) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                eprintln!("error: cannot write the summary: {e}");
                return EXIT_USAGE;
            }
        }
    } else {
        println!("{summary}");
    }
    if summary.errors.is_empty() {
        EXIT_OK
    } else {
        for e in &summary.errors {
            eprintln!("error: {e}");
        }
        EXIT_USAGE
    }
}

/// Reads a topology file into a spec.
///
/// A stopgap until topo-dsl's loader lands (it owns the file format, spans and
/// diagnostics); it reads the same keys, in declaration order.
fn load_spec(text: &str) -> Result<TopologySpec, String> {
    let doc: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    let mut spec = TopologySpec::default();
    if let Some(t) = doc.get("topology") {
        let t = t.as_table().ok_or("`topology` must be a table")?;
        spec.name = t.get("name").and_then(|v| v.as_str()).map(str::to_string);
        spec.workers = t.get("workers").and_then(toml::Value::as_integer);
        spec.acking = t.get("acking").and_then(toml::Value::as_bool);
        spec.ackers = t.get("ackers").and_then(toml::Value::as_integer);
        spec.message_timeout_secs = t
            .get("message_timeout_secs")
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
        spec.max_spout_pending = t.get("max_spout_pending").and_then(toml::Value::as_integer);
    }
    for (section, kind) in [("spouts", Kind::Spout), ("bolts", Kind::Bolt)] {
        let Some(table) = doc.get(section) else {
            continue;
        };
        let table = table
            .as_table()
            .ok_or_else(|| format!("`{section}` must be a table"))?;
        let mut components = Vec::new();
        for (id, body) in table {
            let body = body
                .as_table()
                .ok_or_else(|| format!("`{section}.{id}` must be a table"))?;
            let mut config = body.clone();
            let type_name = config
                .remove("type")
                .and_then(|v| v.as_str().map(str::to_string));
            let parallelism = config.remove("parallelism").and_then(|v| v.as_integer());
            let tick_secs = config
                .remove("tick_secs")
                .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)));
            let inputs = match config.remove("inputs") {
                None => None,
                Some(v) => Some(inputs(&v).map_err(|e| format!("`{section}.{id}`: {e}"))?),
            };
            let at = text
                .find(&format!("[{section}.{id}]"))
                .unwrap_or(usize::MAX);
            components.push((
                at,
                ComponentSpec {
                    id: id.clone(),
                    kind,
                    type_name,
                    parallelism,
                    tick_secs,
                    inputs,
                    config,
                    span: Span::default(),
                },
            ));
        }
        components.sort_by_key(|c| c.0);
        spec.components.extend(components.into_iter().map(|c| c.1));
    }
    Ok(spec)
}

fn inputs(v: &toml::Value) -> Result<Vec<InputSpec>, String> {
    let list = v.as_array().ok_or("`inputs` must be an array")?;
    list.iter()
        .map(|i| match i {
            toml::Value::String(from) => Ok(InputSpec {
                from: from.clone(),
                ..InputSpec::default()
            }),
            toml::Value::Table(t) => {
                let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
                Ok(InputSpec {
                    from: s("from").ok_or("an input needs `from`")?,
                    stream: s("stream"),
                    grouping: s("grouping"),
                    fields: t.get("fields").and_then(|f| f.as_array()).map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    }),
                    span: Span::default(),
                })
            }
            _ => Err("an input is a component id or a table".to_string()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_a_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(
            parse_duration("30"),
            Err("invalid duration `30`: use a number and a unit, like 500ms, 30s, 2m or 1h".into())
        );
        assert!(parse_duration("5 s").is_err());
        assert!(parse_duration("ms").is_err());
    }
}
