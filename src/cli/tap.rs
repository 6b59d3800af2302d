//! `topo tap COMPONENT[:STREAM]`: prints a sample of the tuples a component of a running
//! topology emits, one JSON object per line (Storm's event inspector, `vector tap`), read
//! from the server's `/api/v1/topologies/{id}/tap` stream.

use std::io::Write;

use clap::Args;

use super::top::connect;
use super::{EXIT_OK, EXIT_USAGE};

/// Arguments of `topo tap`.
#[derive(Debug, Args)]
pub(crate) struct TapArgs {
    /// The component, and optionally one of its streams (`split`, `split:default`).
    target: String,
    /// The server of a `topo run FILE --ui ADDR` (or `--metrics-addr ADDR`).
    #[arg(
        long,
        value_name = "HOST:PORT",
        required_unless_present = "coordinator"
    )]
    addr: Option<String>,
    /// The web server of a coordinator (`topo coordinator … --ui ADDR`).
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "addr")]
    coordinator: Option<String>,
    /// The topology's name or id (default: the newest one the server has).
    #[arg(long, value_name = "NAME")]
    topology: Option<String>,
    /// Stop after this many tuples (default: until Ctrl-C or the topology ends).
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// At most this many tuples per second.
    #[arg(long, value_name = "R", default_value_t = 10.0)]
    rate: f64,
    /// With --coordinator: the file holding the cluster secret, which the UI token a
    /// coordinator's taps take is derived from (else TOPO_CLUSTER_SECRET).
    #[arg(long, value_name = "PATH", requires = "coordinator")]
    secret_file: Option<std::path::PathBuf>,
}

/// Runs `topo tap`; returns the exit code.
pub(crate) fn run(args: &TapArgs) -> i32 {
    let addr = args
        .addr
        .clone()
        .or_else(|| args.coordinator.clone())
        .unwrap_or_default();
    if !(args.rate > 0.0 && args.rate.is_finite()) {
        eprintln!("error: --rate must be a number above 0");
        return EXIT_USAGE;
    }
    let (component, stream) = match args.target.split_once(':') {
        Some((c, s)) => (c, Some(s)),
        None => (args.target.as_str(), None),
    };
    let (mut client, id) = match connect(&addr, args.topology.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if args.coordinator.is_some() {
        match topo_cluster::secret::Secret::load(args.secret_file.as_deref()) {
            Ok(secret) => client = client.with_token(super::ui::token(&secret)),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        }
    }
    let mut path = format!(
        "/api/v1/topologies/{id}/tap?component={}&rate={}",
        query(component),
        args.rate
    );
    if let Some(s) = stream {
        path.push_str(&format!("&stream={}", query(s)));
    }
    // A run serves before its tasks start: wait (30 s at most) until they run.
    let start = std::time::Instant::now();
    while !running(&client, &id) && start.elapsed() < std::time::Duration::from_secs(30) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let mut printed = 0u64;
    let mut closed = false;
    let mut out = std::io::stdout().lock();
    loop {
        let left = args.limit.map(|n| n - printed);
        let ask = match left {
            Some(n) => format!("{path}&limit={n}"),
            None => path.clone(),
        };
        let streamed = client.stream_lines(&ask, |line| {
            if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                closed = true;
                return false;
            }
            printed += 1;
            args.limit.is_none_or(|n| printed < n)
        });
        if let Err(e) = streamed {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
        // The server ends each answer after its request deadline: ask again while the
        // topology runs.
        if closed || args.limit.is_some_and(|n| printed >= n) || !running(&client, &id) {
            return EXIT_OK;
        }
    }
}

/// True while topology `id` is listed as running (a run) or active or inactive (a
/// cluster topology), with a worker running.
fn running(client: &super::http::Client, id: &str) -> bool {
    client
        .get_json::<topo_web::api::TopologyList>("/api/v1/topologies")
        .is_ok_and(|l| {
            l.topologies.iter().any(|t| {
                t.id == id
                    && matches!(t.status.as_str(), "running" | "active" | "inactive")
                    && t.workers_running > 0
            })
        })
}

/// `text` escaped for a query string.
fn query(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
