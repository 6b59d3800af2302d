//! `topo run FILE`: runs a topology in this process until it ends, is stopped, or its
//! time is up, then prints a per-component summary.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use topo_dsl::Topology;
use topo_engine::launcher::{self, LaunchError, LaunchOptions};
use topo_engine::metrics::WorkerSnapshot;
use topo_engine::{Registry, RunOptions, RunSummary, StopHandle};

use topo_engine::launcher::relay::Relay;
use topo_web::board::Shape;
use topo_web::tap::Workers;

use super::status::Watch;
use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Arguments of `topo run`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("http").multiple(true).args(["ui", "metrics_addr"])))]
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
    /// Serve the web UI at http://ADDR/, its JSON API at /api/v1 and Prometheus metrics
    /// at /metrics while it runs (`127.0.0.1:8080`; port 0 picks a free port, printed on
    /// stderr).
    #[arg(long, value_name = "ADDR")]
    ui: Option<std::net::SocketAddr>,
    /// Serve Prometheus metrics at http://ADDR/metrics while it runs (`127.0.0.1:9464`;
    /// port 0 picks a free port, printed on stderr). The same server as `--ui`.
    #[arg(long, value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// Keep serving this long after the topology ended (Ctrl-C ends it sooner), so a
    /// scraper sees the final figures.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "http")]
    linger: Option<Duration>,
    /// With `workers > 1`: keep a JSON file of the worker processes (pid, address,
    /// restarts) up to date.
    #[arg(long, value_name = "PATH")]
    status_file: Option<PathBuf>,
    /// A checkpointed topology resumes from its last committed checkpoint (state
    /// restored, spouts back at their checkpointed positions) instead of starting afresh.
    #[arg(long)]
    resume: bool,
}

/// Arguments of `topo plan`.
#[derive(Debug, Args)]
pub(crate) struct PlanArgs {
    /// The `*.topo.toml` file.
    file: PathBuf,
}

/// The log filter when `RUST_LOG` is not set: warnings, and the supervisor's and the
/// workers' info lines (ports, plan, restarts).
pub(crate) const DEFAULT_LOG: &str = "warn,topo_engine::launcher=info";

/// Runs `topo plan`; returns the exit code.
pub(crate) fn plan(registry: &Registry, args: &PlanArgs) -> i32 {
    match super::load_file(&args.file, registry) {
        Ok(t) => {
            print!("{}", topo_engine::PhysicalPlan::new(&t).render(&t));
            EXIT_OK
        }
        Err(code) => code,
    }
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
    super::init_log(DEFAULT_LOG);
    let topology = match super::load_file(&args.file, registry) {
        Ok(t) => Arc::new(t),
        Err(code) => return code,
    };
    if args.plan {
        print!(
            "{}",
            topo_engine::PhysicalPlan::new(&topology).render(&topology)
        );
        return EXIT_OK;
    }
    if let Err(code) = super::resources::prepare_run(&topology, &args.file) {
        return code;
    }
    let base_dir = super::resources::base_dir(&args.file);
    let mut options = RunOptions {
        base_dir,
        ..RunOptions::default()
    };
    if args.resume && topology.settings().workers <= 1 {
        match resume_from(&topology, &options.base_dir) {
            Ok(id) => options.restore = id,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        }
    }
    // Handlers go in before the start, so a signal at any moment stops the run.
    let requested = Arc::new(AtomicBool::new(false));
    let handle: Arc<Mutex<Option<StopHandle>>> = Arc::default();
    let (r, h) = (Arc::clone(&requested), Arc::clone(&handle));
    let installed = topo_engine::signal::on_shutdown_signal(move |n| {
        if n == 1 {
            eprintln!("Stopping: draining in-flight tuples (press Ctrl-C again to quit now).");
            r.store(true, Ordering::SeqCst);
            if let Some(stop) = h.lock().ok().and_then(|h| h.clone()) {
                stop.stop();
            }
        } else {
            std::process::exit(130);
        }
    });
    if let Err(e) = installed {
        tracing::warn!(error = %e, "Cannot handle Ctrl-C; stop with --for.");
    }
    let shape = Shape::of_topology(&topology);
    let mut watch = match Watch::start(topology.name(), shape, args.ui, args.metrics_addr) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if topology.settings().workers > 1 {
        return run_workers(&topology, &args, options.base_dir, requested, watch);
    }
    let running = match topo_engine::start(Arc::clone(&topology), registry, options) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_INVALID;
        }
    };
    if let Ok(mut h) = handle.lock() {
        *h = Some(running.stop_handle());
    }
    if requested.load(Ordering::SeqCst) {
        running.stop();
    }
    watch.wait(&running, args.run_for);
    let (summary, last) = running.wait_snapshot();
    watch.finish(&[last], 0);
    let code = report(&summary, args.json);
    watch.linger(args.linger, &requested);
    code
}

/// The committed checkpoint `topo run --resume` resumes from: the newest that verifies.
fn resume_from(topology: &Topology, base_dir: &Path) -> Result<Option<u64>, String> {
    let Some(store) =
        topo_engine::state::open_store(topology, base_dir).map_err(|e| e.to_string())?
    else {
        return Err(format!(
            "--resume: topology `{}` does not checkpoint (set checkpoint_interval_secs)",
            topology.name()
        ));
    };
    let latest = store.latest().map_err(|e| e.to_string())?;
    if let Some(r) = &latest {
        r.check_spouts(topology)
            .map_err(|e| format!("--resume: {e}"))?;
    }
    match &latest {
        Some(r) => tracing::info!(checkpoint = r.manifest.id, "Resuming from a checkpoint."),
        None => tracing::warn!("No committed checkpoint to resume from; starting afresh."),
    }
    Ok(latest.map(|r| r.manifest.id))
}

/// The spouts of `topology` that read standard input.
pub(crate) fn stdin_readers(topology: &Topology) -> Vec<String> {
    topology
        .components()
        .iter()
        .filter(|c| c.type_name == topo_spouts::stdin::KIND)
        .map(|c| c.id.clone())
        .collect()
}

/// `topo run` of a topology with `workers > 1`: this process supervises worker processes.
fn run_workers(
    topology: &Arc<Topology>,
    args: &RunArgs,
    base_dir: PathBuf,
    stop: Arc<AtomicBool>,
    mut watch: Watch,
) -> i32 {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return EXIT_USAGE;
        }
    };
    let stdin_readers = stdin_readers(topology);
    if let Some(id) = stdin_readers.first() {
        if std::io::stdin().is_terminal() {
            eprintln!(
                "error: spout `{id}` reads standard input, which is a terminal: with \
                 workers = {} it runs in a worker process, which cannot read a terminal\n\
                 hint: pipe the input in (`... | topo run FILE`), or set workers = 1",
                topology.settings().workers
            );
            return EXIT_USAGE;
        }
    }
    let base_dir = std::fs::canonicalize(&base_dir).unwrap_or(base_dir);
    let mut opts = LaunchOptions::new(text, base_dir);
    opts.stdin_readers = stdin_readers;
    opts.run_for = args.run_for;
    opts.stop = Arc::clone(&stop);
    opts.status_file = args.status_file.clone();
    opts.resume = args.resume;
    if args.resume && topology.settings().checkpoints.is_none() {
        eprintln!(
            "error: --resume: topology `{}` does not checkpoint (set checkpoint_interval_secs)",
            topology.name()
        );
        return EXIT_USAGE;
    }
    let (tx, rx) = std::sync::mpsc::channel::<(Vec<WorkerSnapshot>, u64)>();
    opts.metrics = Some(tx);
    let relay = Arc::new(Relay::default());
    opts.taps = Some(Arc::clone(&relay));
    watch.tap_through(Arc::new(Workers {
        topology: Arc::clone(topology),
        relay,
    }));
    // The workers' snapshots arrive about once a second; the last ones are final.
    let watcher = std::thread::spawn(move || {
        let mut last = (Vec::new(), 0);
        for update in rx {
            watch.tick(&update.0, update.1);
            last = update;
        }
        watch.finish(&last.0, last.1);
        watch
    });
    let result = launcher::launch(topology, &opts);
    drop(opts);
    let watch = watcher.join().ok();
    match result {
        Ok(summary) => {
            let code = report(&summary, args.json);
            if let Some(w) = watch {
                w.linger(args.linger, &stop);
            }
            code
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                LaunchError::Worker { invalid: true, .. } => EXIT_INVALID,
                _ => EXIT_USAGE,
            }
        }
    }
}

/// Prints the summary; returns the exit code.
fn report(summary: &RunSummary, json: bool) -> i32 {
    if json {
        match serde_json::to_string(summary) {
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
