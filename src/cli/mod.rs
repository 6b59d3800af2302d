//! The `topo` command line: one binary, every role.
//!
//! Each verb lives in its own module with its clap `Args` and a `run` function returning the
//! exit code; adding a verb is one module, one `Command` variant and one match arm.
//!
//! # Layout
//! - [`validate`](mod@validate): `topo validate FILE...`
//! - [`graph`]: `topo graph FILE --format text|dot|mermaid`
//! - [`components`]: `topo components`
//! - [`run`]: `topo run FILE`, `topo plan FILE`; [`status`]: its live status line and `/metrics`
//! - [`worker`]: the hidden `topo worker`, a worker process of `topo run`
//! - [`daemons`]: `topo coordinator`, `topo supervisor`; [`cluster`]: the client verbs
//!   `topo submit|list|kill|activate|deactivate|rebalance`; `ui` (private): the
//!   coordinator's web UI (`topo coordinator --ui`) and `topo ui-token`
//! - `resources` (private): a topology's `resources` and `python_requirements`, as
//!   `validate` checks them, `submit` packs them and `run` resolves them
//! - [`top`]: `topo top`, a terminal dashboard; [`tap`](mod@tap): `topo tap`, a sample of
//!   live tuples; `http` (private): the HTTP client both read the server with

use std::ffi::OsString;
use std::path::Path;

use clap::{Parser, Subcommand};
use topo_dsl::{Catalog, Diagnostic, Diagnostics, Span, Topology};
use topo_engine::Registry;

pub mod cluster;
pub mod components;
pub mod daemons;
pub mod graph;
pub(crate) mod http;
pub(crate) mod resources;
pub mod run;
pub mod status;
pub mod tap;
pub mod top;
pub(crate) mod ui;
pub mod validate;
pub mod worker;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the topology is invalid.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: an I/O or usage error.
pub const EXIT_USAGE: i32 = 2;

/// The exit codes, as shown under every verb's `--help`.
const EXIT_HELP: &str = "\
Exit status:
  0  success
  1  invalid topology (each problem is printed as FILE:LINE:COL: error: ...)
  2  I/O or usage error (unreadable file, bad arguments)";

/// The exit codes of the cluster's client verbs.
const CLUSTER_EXIT_HELP: &str = "\
Exit status:
  0  success
  1  refused (wrong cluster secret, unknown topology) or invalid topology file
  2  I/O or usage error (coordinator unreachable, unreadable file, bad arguments)

The cluster secret is read from --secret-file or TOPO_CLUSTER_SECRET, never from the
command line.";

/// The keys and exit codes of `topo top`.
const TOP_HELP: &str = "\
Keys: q (or Esc, Ctrl-C) quits.

Exit status:
  0  quit with q
  2  the server cannot be reached, has no such topology, or the terminal failed";

/// The exit codes of `topo tap`.
const TAP_HELP: &str = "\
Exit status:
  0  printed --limit tuples, or the topology ended
  2  the server cannot be reached or has no such topology, component or stream";

/// topo: run streaming topologies of spouts and bolts, with Storm's guarantees.
#[derive(Debug, Parser)]
#[command(
    name = "topo",
    version,
    about,
    propagate_version = true,
    after_help = EXIT_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The verbs.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check topology files and print a one-line summary of each.
    #[command(after_help = EXIT_HELP)]
    Validate(validate::Args),
    /// Draw a topology's graph as text, Graphviz DOT or Mermaid.
    #[command(after_help = EXIT_HELP)]
    Graph(graph::Args),
    /// List every registered component type with its description and outputs.
    #[command(after_help = EXIT_HELP)]
    Components(components::Args),
    /// Run a topology until it ends, is stopped, or `--for` is up.
    #[command(after_help = EXIT_HELP)]
    Run(run::RunArgs),
    /// Print the physical plan: which task runs in which worker (as `run --plan`).
    #[command(after_help = EXIT_HELP)]
    Plan(run::PlanArgs),
    /// A live dashboard of a running topology: rates, latencies, queues, workers.
    #[command(after_help = TOP_HELP)]
    Top(top::TopArgs),
    /// Print a sample of the tuples a component emits, one JSON object per line.
    #[command(after_help = TAP_HELP)]
    Tap(tap::TapArgs),
    /// A worker process of `topo run` (started by it; reads its work on stdin).
    #[command(hide = true)]
    Worker(worker::Args),
    /// Run the cluster's coordinator: its state, placement, failover.
    #[command(after_help = EXIT_HELP)]
    Coordinator(daemons::CoordinatorArgs),
    /// Run a cluster supervisor: the worker processes of this host.
    #[command(after_help = EXIT_HELP)]
    Supervisor(daemons::SupervisorArgs),
    /// Submit a topology to a cluster; prints its id.
    #[command(after_help = CLUSTER_EXIT_HELP)]
    Submit(cluster::SubmitArgs),
    /// List a cluster's topologies: status, workers, uptime, each component's counts.
    #[command(after_help = CLUSTER_EXIT_HELP)]
    List(cluster::ListArgs),
    /// Stop a topology: deactivate its spouts, let messages drain, stop its workers.
    #[command(after_help = CLUSTER_EXIT_HELP)]
    Kill(cluster::KillArgs),
    /// Resume a deactivated topology's spouts.
    #[command(after_help = CLUSTER_EXIT_HELP)]
    Activate(cluster::NameArgs),
    /// Pause a topology's spouts; in-flight messages still finish.
    #[command(after_help = CLUSTER_EXIT_HELP)]
    Deactivate(cluster::NameArgs),
    /// Restart a topology with another number of workers or other components' parallelism.
    #[command(after_help = CLUSTER_EXIT_HELP)]
    Rebalance(cluster::RebalanceArgs),
    /// Print the token the coordinator's web UI (`--ui`) takes for actions, derived from
    /// the cluster secret.
    #[command(after_help = CLUSTER_EXIT_HELP)]
    UiToken(ui::TokenArgs),
}

/// Logs to stderr in one format for every role (`run`, its workers, the daemons): colour
/// only when stderr is a terminal, so a file or a pipe gets plain text; `RUST_LOG`
/// overrides the `default` filter. A worker inherits its parent's stderr, so both decide
/// alike.
pub(crate) fn init_log(default: &str) {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .try_init();
}

/// Runs the CLI on the process's arguments with `registry`'s component types; returns the
/// process exit code.
pub fn main_with(registry: Registry) -> i32 {
    run_with(registry, std::env::args_os())
}

/// Runs the CLI on `args` (the first one is the program name); returns the exit code.
pub fn run_with<I, T>(registry: Registry, args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate(args) => validate::run(&registry, &args),
        Command::Graph(args) => graph::run(&registry, &args),
        Command::Components(args) => components::run(&registry, &args),
        Command::Run(args) => run::run(&registry, args),
        Command::Plan(args) => run::plan(&registry, &args),
        Command::Top(args) => top::run(&args),
        Command::Tap(args) => tap::run(&args),
        Command::Worker(args) => worker::run(registry, &args),
        Command::Coordinator(args) => daemons::coordinator(args),
        Command::Supervisor(args) => daemons::supervisor(args),
        Command::Submit(args) => cluster::submit(&registry, &args),
        Command::List(args) => cluster::list(&args),
        Command::Kill(args) => cluster::kill(&args),
        Command::Activate(args) => cluster::activate(&args, true),
        Command::Deactivate(args) => cluster::activate(&args, false),
        Command::Rebalance(args) => cluster::rebalance(&args),
        Command::UiToken(args) => ui::print_token(&args),
    }
}

/// Reads, parses and validates the topology file `path` (`-` reads standard input). On
/// failure prints every problem to stderr (rustc style) and returns the exit code:
/// [`EXIT_INVALID`] for an invalid topology, [`EXIT_USAGE`] for a file that cannot be read.
pub fn load_file(path: &Path, catalog: &dyn Catalog) -> Result<Topology, i32> {
    let source = Source::read(path)?;
    source.load(catalog).map_err(|diags| {
        eprint!("{}", diags.render(&source.shown, &source.text));
        let n = diags.len();
        let plural = if n == 1 { "" } else { "s" };
        eprintln!(
            "error: {}: invalid topology ({n} error{plural})",
            source.shown
        );
        EXIT_INVALID
    })
}

/// A topology file's text and the name it is shown under.
pub(crate) struct Source {
    /// The path as given, or `<stdin>`.
    pub(crate) shown: String,
    /// The text (lossy when the file is not utf-8; then `bad_utf8` is where it broke).
    pub(crate) text: String,
    bad_utf8: Option<usize>,
}

impl Source {
    /// Reads `path`, or standard input for `-`; prints the error and returns
    /// [`EXIT_USAGE`] when it cannot be read.
    pub(crate) fn read(path: &Path) -> Result<Source, i32> {
        let stdin = path.as_os_str() == "-";
        let shown = if stdin {
            "<stdin>".to_owned()
        } else {
            path.display().to_string()
        };
        let bytes = if stdin {
            let mut b = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut b).map(|_| b)
        } else {
            std::fs::read(path)
        };
        let bytes = bytes.map_err(|e| {
            eprintln!("error: cannot read {shown}: {e}");
            EXIT_USAGE
        })?;
        Ok(match String::from_utf8(bytes) {
            Ok(text) => Source {
                shown,
                text,
                bad_utf8: None,
            },
            Err(e) => Source {
                shown,
                bad_utf8: Some(e.utf8_error().valid_up_to()),
                text: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            },
        })
    }

    /// Parses and validates the text.
    pub(crate) fn load(&self, catalog: &dyn Catalog) -> Result<Topology, Diagnostics> {
        match self.bad_utf8 {
            None => topo_dsl::load(&self.text, catalog),
            Some(at) => {
                let diag = Diagnostic::new("file is not valid utf-8", Some(Span::new(at, at + 1)))
                    .with_hint("topology files are utf-8 text");
                Err(Diagnostics { items: vec![diag] })
            }
        }
    }
}
