//! `topo coordinator` and `topo supervisor`: the cluster's daemons (see
//! `topo_cluster::coordinator` and `topo_cluster::supervisor`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use topo_cluster::coordinator::{self, CoordinatorOptions};
use topo_cluster::secret::Secret;
use topo_cluster::supervisor::{self, SupervisorOptions};

use super::run::parse_duration;
use super::{EXIT_OK, EXIT_USAGE};

/// The log filter of the daemons when `RUST_LOG` is not set.
const DAEMON_LOG: &str = "info";

/// Arguments of `topo coordinator`.
#[derive(Debug, Args)]
pub(crate) struct CoordinatorArgs {
    /// Where supervisors and clients connect (`127.0.0.1:7000`).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the cluster's state (`state.json`) and the uploaded binaries live.
    #[arg(long, value_name = "DIR")]
    state_dir: PathBuf,
    /// File holding the cluster secret (else `TOPO_CLUSTER_SECRET`).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Drop a supervisor silent this long and place its workers elsewhere.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    supervisor_timeout: Duration,
}

/// Arguments of `topo supervisor`.
#[derive(Debug, Args)]
pub(crate) struct SupervisorArgs {
    /// This host's address: the supervisor's id; its workers listen on its IP.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// Where the fetched binaries (content-addressed) and the workers' folders live.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The coordinator's address.
    #[arg(long, value_name = "ADDR")]
    coordinator: SocketAddr,
    /// Workers it may run at once.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// File holding the cluster secret (else `TOPO_CLUSTER_SECRET`).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Restart a worker silent this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    worker_timeout: Duration,
}

fn init_log() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(DAEMON_LOG)),
        )
        .try_init();
}

fn secret(file: Option<&std::path::Path>) -> Result<Secret, i32> {
    Secret::load(file).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

/// Runs `topo coordinator` until it is killed; returns the exit code.
pub(crate) fn coordinator(args: CoordinatorArgs) -> i32 {
    init_log();
    let secret = match secret(args.secret_file.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = CoordinatorOptions {
        listen: args.listen,
        state_dir: args.state_dir,
        secret,
        supervisor_timeout: args.supervisor_timeout,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the I/O runtime: {e}");
            return EXIT_USAGE;
        }
    };
    match rt.block_on(coordinator::serve(opts)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}

/// Runs `topo supervisor` until it is killed; returns the exit code.
pub(crate) fn supervisor(args: SupervisorArgs) -> i32 {
    init_log();
    let secret = match secret(args.secret_file.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut opts = SupervisorOptions::new(args.listen, args.dir, args.coordinator, secret);
    opts.slots = args.slots.max(1);
    opts.worker_timeout = args.worker_timeout;
    match supervisor::run(opts) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}
