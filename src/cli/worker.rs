//! `topo worker`: a worker process of `topo run` (hidden). It reads its work from stdin,
//! so the run's secret never appears in a command line.

use clap::Args as ClapArgs;
use topo_engine::Registry;

/// Arguments of `topo worker`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The worker's index (shown in `ps`; the supervisor's start message decides).
    #[arg(long)]
    index: Option<usize>,
}

/// Runs a worker until the supervisor lets it go; returns the exit code.
pub(crate) fn run(registry: Registry, args: &Args) -> i32 {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(super::run::DEFAULT_LOG)),
        )
        .try_init();
    tracing::debug!(index = ?args.index, "Worker process started.");
    topo_engine::launcher::worker::run(&registry)
}
