//! `topo submit` and `topo list`, minimal: until the cluster client verbs' own module
//! lands, these call `topo_cluster::client` and print its answers plainly.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use topo_cluster::client;
use topo_cluster::secret::Secret;
use topo_engine::Registry;

use super::{EXIT_INVALID, EXIT_OK, EXIT_USAGE};

/// Arguments of `topo submit`.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The `*.topo.toml` file.
    file: PathBuf,
    /// The coordinator's address.
    #[arg(long, value_name = "ADDR")]
    coordinator: SocketAddr,
    /// The executable the workers run (default: this one).
    #[arg(long, value_name = "PATH")]
    binary: Option<PathBuf>,
    /// The topology's name (default: the file's `[topology] name`).
    #[arg(long)]
    name: Option<String>,
    /// File holding the cluster secret (else `TOPO_CLUSTER_SECRET`).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
}

/// Arguments of `topo list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// The coordinator's address.
    #[arg(long, value_name = "ADDR")]
    coordinator: SocketAddr,
    /// Print one JSON array.
    #[arg(long)]
    json: bool,
    /// File holding the cluster secret (else `TOPO_CLUSTER_SECRET`).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<PathBuf>,
}

fn secret(file: Option<&std::path::Path>) -> Result<Secret, i32> {
    Secret::load(file).map_err(|e| {
        eprintln!("error: {e}");
        EXIT_USAGE
    })
}

fn report(e: &client::ClientError) -> i32 {
    eprintln!("error: {e}");
    match e {
        client::ClientError::Refused(_) => EXIT_INVALID,
        _ => EXIT_USAGE,
    }
}

/// Runs `topo submit`; returns the exit code.
pub(crate) fn submit(registry: &Registry, args: &SubmitArgs) -> i32 {
    let topology = match super::load_file(&args.file, registry) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return EXIT_USAGE;
        }
    };
    let secret = match secret(args.secret_file.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => match std::env::current_exe() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot find this executable: {e}");
                return EXIT_USAGE;
            }
        },
    };
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| topology.name().to_string());
    let call = client::submit(args.coordinator, &secret, &name, &text, &binary);
    match client::block_on(call) {
        Ok(Ok(s)) => {
            println!("{}", s.id);
            EXIT_OK
        }
        Ok(Err(e)) => report(&e),
        Err(e) => {
            eprintln!("error: cannot start the I/O runtime: {e}");
            EXIT_USAGE
        }
    }
}

/// Runs `topo list`; returns the exit code.
pub(crate) fn list(args: &ListArgs) -> i32 {
    let secret = match secret(args.secret_file.as_deref()) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let topologies = match client::block_on(client::list(args.coordinator, &secret)) {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return report(&e),
        Err(e) => {
            eprintln!("error: cannot start the I/O runtime: {e}");
            return EXIT_USAGE;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&topologies) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_USAGE;
            }
        }
        return EXIT_OK;
    }
    for t in &topologies {
        println!(
            "{}  {}  workers {}  up {:.0}s",
            t.id,
            t.status.name(),
            t.workers,
            t.uptime_secs
        );
        for c in &t.components {
            println!(
                "  {:<16} emitted {:>10}  acked {:>10}  failed {:>8}",
                c.id, c.emitted, c.acked, c.failed
            );
        }
    }
    EXIT_OK
}
