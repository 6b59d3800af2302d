//! `topo worker`: a worker process of `topo run` or `topo supervisor` (hidden). It reads
//! its work from the control channel its supervisor passes it, so the run's secret never
//! appears in a command line or the environment.

use clap::Args as ClapArgs;
use topo_engine::Registry;

/// Arguments of `topo worker`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    /// The worker's index (shown in `ps`; the supervisor's start message decides).
    #[arg(long)]
    index: Option<usize>,
    /// The file descriptor of the control channel the supervisor passed.
    #[arg(long, default_value_t = topo_engine::launcher::CONTROL_FD)]
    control_fd: i32,
}

/// Runs a worker until the supervisor lets it go; returns the exit code.
pub(crate) fn run(registry: Registry, args: &Args) -> i32 {
    super::init_log(super::run::DEFAULT_LOG);
    tracing::debug!(index = ?args.index, "Worker process started.");
    topo_engine::launcher::worker::run(&registry, args.control_fd)
}
