//! `topo coordinator` and `topo supervisor`: the cluster's daemons (see
//! `topo_cluster::coordinator` and `topo_cluster::supervisor`).

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use topo_cluster::control::Listener;
use topo_cluster::coordinator::{self, CoordinatorOptions, EtcdOptions, LeaderInfo};
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
    /// Serve the web UI of every topology at http://ADDR/ and its JSON API at /api/v1
    /// (`127.0.0.1:8080`); actions need the token `topo ui-token` prints. Without a
    /// secret, loopback only.
    #[arg(long, value_name = "ADDR")]
    ui: Option<SocketAddr>,
    /// The largest resource archive it takes, packed or unpacked, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    max_archive_mib: u64,
    /// Keep the state in etcd and elect a leader there, at these endpoints
    /// (`http://10.0.0.1:2379,http://10.0.0.2:2379`), instead of in `STATE_DIR/state.json`:
    /// run several coordinators, one leads, the others stand by.
    #[arg(long, value_name = "URL,...", value_delimiter = ',')]
    etcd: Vec<String>,
    /// The prefix of the coordinator's etcd keys (one per cluster).
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "/topo",
        requires = "etcd"
    )]
    etcd_prefix: String,
    /// The leader's lease in etcd, in seconds: a standby takes over this long after the
    /// leader stops renewing it.
    #[arg(long, value_name = "SECS", default_value_t = 5, requires = "etcd")]
    lease_secs: u64,
    /// The etcd user, when etcd has authentication enabled; its password comes from
    /// `--etcd-password-file` or `TOPO_ETCD_PASSWORD`.
    #[arg(long, value_name = "NAME", requires = "etcd")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password (else `TOPO_ETCD_PASSWORD`).
    #[arg(long, value_name = "PATH", requires = "etcd_user")]
    etcd_password_file: Option<PathBuf>,
}

/// Arguments of `topo supervisor`.
#[derive(Debug, Args)]
pub(crate) struct SupervisorArgs {
    /// Where it and its workers listen (its workers on its IP, on ports of their own).
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,
    /// The IP or host name the coordinator and other hosts reach this host at: with the
    /// listen port, the supervisor's id, and its workers' addresses. Default: the listen
    /// IP when it is specific; for `0.0.0.0` or `::`, the address this host reaches the
    /// coordinator from.
    #[arg(long, value_name = "HOST")]
    advertise: Option<String>,
    /// Where the fetched binaries (content-addressed) and the workers' folders live.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The coordinators' addresses (`HOST:PORT`, or `A,B,C` with standbys): it dials them in
    /// turn until one, the leader, accepts.
    #[arg(long, value_name = "ADDR,...", value_delimiter = ',', required = true, value_parser = host_port)]
    coordinator: Vec<SocketAddr>,
    /// Workers it may run at once.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// File holding the cluster secret (else `TOPO_CLUSTER_SECRET`).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
    /// Restart a worker silent this long.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    worker_timeout: Duration,
    /// The largest resource archive it fetches and unpacks, packed or unpacked, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256)]
    max_archive_mib: u64,
    /// How long building a topology's Python virtualenv (venv and pip) may take.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10m")]
    venv_timeout: Duration,
}

fn init_log() {
    super::init_log(DAEMON_LOG);
}

fn secret(file: Option<&std::path::Path>) -> Result<Secret, i32> {
    Secret::load(file).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

/// The etcd options of `args`, the password read from its file or the environment.
fn etcd_options(args: &CoordinatorArgs) -> Result<Option<EtcdOptions>, String> {
    if args.etcd.is_empty() {
        return Ok(None);
    }
    let user = match &args.etcd_user {
        None => None,
        Some(name) => {
            let password = match &args.etcd_password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => std::env::var("TOPO_ETCD_PASSWORD").map_err(|_| {
                    "--etcd-user needs --etcd-password-file or TOPO_ETCD_PASSWORD".to_string()
                })?,
            };
            Some((name.clone(), password))
        }
    };
    Ok(Some(EtcdOptions {
        endpoints: args.etcd.clone(),
        prefix: args.etcd_prefix.clone(),
        lease_secs: args.lease_secs,
        user,
    }))
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
        state_dir: args.state_dir.clone(),
        secret: secret.clone(),
        supervisor_timeout: args.supervisor_timeout,
        max_archive_bytes: args.max_archive_mib.saturating_mul(1024 * 1024),
    };
    let etcd = match etcd_options(&args) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
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
    // With etcd, a standby waits here; it takes its addresses once it leads.
    let lead = match etcd {
        None => None,
        Some(e) => {
            let me = LeaderInfo {
                control: args.listen.to_string(),
                ui: args.ui.map(|a| a.to_string()),
            };
            match rt.block_on(coordinator::stand_by(&e, me, &opts)) {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return EXIT_USAGE;
                }
            }
        }
    };
    // The UI's address is taken before the control port: a coordinator that cannot serve
    // it does not start.
    let ui = match args
        .ui
        .map(|addr| super::ui::bind(addr, &secret))
        .transpose()
    {
        Ok(ui) => ui,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    // Kept until the coordinator returns.
    let mut server = None;
    let served = rt.block_on(async {
        let listener = coordinator::bind(&opts).await?;
        let secret = opts.secret.clone();
        let observe = |handle| {
            let Some(l) = ui else { return };
            match super::ui::serve(l, &secret, handle) {
                Ok(s) => {
                    eprintln!(
                        "Serving the web UI at http://{}/ (JSON API at /api/v1)",
                        s.local_addr()
                    );
                    server = Some(s);
                }
                Err(e) => tracing::error!(error = %e, "Cannot serve the web UI."),
            }
        };
        match lead {
            Some(lead) => {
                coordinator::serve_led(listener, opts, lead, std::future::pending(), observe).await
            }
            None => coordinator::serve_with(listener, opts, std::future::pending(), observe).await,
        }
    });
    drop(server);
    match served {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}

/// `IP:PORT`, or `HOST:PORT` resolved once, to its first address (a Kubernetes Service's
/// name, say): the value parser of `--coordinator`.
pub(crate) fn host_port(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("not IP:PORT or HOST:PORT, or cannot resolve it: {e}"))?
        .next()
        .ok_or_else(|| "it resolves to no address".to_string())
}

/// An IP address, or the first address `host` resolves to.
fn resolve(host: &str) -> Result<IpAddr, String> {
    if let Ok(ip) = host.parse() {
        return Ok(ip);
    }
    let mut found = (host, 0)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve it: {e}"))?;
    found
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| "it resolves to no address".to_string())
}

/// Runs `topo supervisor` until it is killed; returns the exit code.
pub(crate) fn supervisor(args: SupervisorArgs) -> i32 {
    init_log();
    let secret = match secret(args.secret_file.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let mut opts = SupervisorOptions::new(args.dir, args.coordinator[0], secret);
    opts.coordinators = args.coordinator.clone();
    if let Some(host) = &args.advertise {
        match resolve(host) {
            Ok(ip) => opts.advertise = Some(ip),
            Err(e) => {
                eprintln!("error: --advertise {host}: {e}");
                return EXIT_USAGE;
            }
        }
    }
    opts.slots = args.slots.max(1);
    opts.restart.heartbeat_timeout = args.worker_timeout;
    opts.max_archive_bytes = args.max_archive_mib.saturating_mul(1024 * 1024);
    opts.venv_timeout = args.venv_timeout;
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the I/O runtime: {e}");
            return EXIT_USAGE;
        }
    };
    let served = rt.block_on(async {
        let listener = Listener::bind(args.listen, &opts.secret).await?;
        supervisor::serve(listener, opts, std::future::pending()).await
    });
    match served {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_USAGE
        }
    }
}
