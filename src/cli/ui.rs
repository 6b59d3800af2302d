//! The web UI of `topo coordinator --ui ADDR`: the page and JSON API of `topo run --ui`
//! for every topology of the cluster, fed once a second from the coordinator's state
//! (the snapshots its supervisors relay), with the cluster actions and `topo tap`.
//!
//! Actions (activate, deactivate, rebalance, kill) and taps (they show the users' tuples)
//! need the UI token, HMAC-SHA256(cluster secret, `ui-token`) in hex, as `topo ui-token`
//! prints it: the browser never holds the cluster secret, and the token is good for
//! nothing but the UI.
//! Without a secret the UI, like the daemons, binds loopback only.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use topo_cluster::coordinator::Handle;
use topo_cluster::proto::{Reply, Request};
use topo_cluster::secret::{check_bind, Secret};
use topo_engine::launcher::worker::hex;
use topo_engine::tap::Tap;
use topo_web::board::{Board, Report, Shape};
use topo_web::server::{self, Action, Actions, App, Server};
use topo_web::tap::{self, Source, Taps};

use super::{EXIT_OK, EXIT_USAGE};

/// What the token is derived for.
const TOKEN_LABEL: &str = "ui-token";

/// How often the board reads the coordinator.
const REFRESH: Duration = Duration::from_secs(1);

/// The UI token of the cluster with `secret`: HMAC-SHA256(secret, `ui-token`), hex.
pub(crate) fn token(secret: &Secret) -> String {
    hex(&secret.derive(TOKEN_LABEL))
}

/// Arguments of `topo ui-token`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    /// File holding the cluster secret (else the environment variable TOPO_CLUSTER_SECRET).
    #[arg(long, value_name = "PATH")]
    secret_file: Option<std::path::PathBuf>,
}

/// Runs `topo ui-token`: prints the token the coordinator's web UI takes for actions.
pub(crate) fn print_token(args: &TokenArgs) -> i32 {
    match Secret::load(args.secret_file.as_deref()) {
        Ok(secret) => {
            if !secret.is_set() {
                eprintln!(
                    "note: no cluster secret configured: this is the token of a loopback-only coordinator"
                );
            }
            println!("{}", token(&secret));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
    }
}

/// Binds the UI's address: without a secret, loopback only.
pub(crate) fn bind(addr: SocketAddr, secret: &Secret) -> Result<TcpListener, String> {
    check_bind(addr, secret).map_err(|e| format!("cannot serve the web UI on {addr}: {e}"))?;
    TcpListener::bind(addr).map_err(|e| format!("cannot serve the web UI on {addr}: {e}"))
}

/// Serves the UI on `listener` for the coordinator behind `handle`; the board is
/// refreshed from a thread of its own for as long as the process runs.
pub(crate) fn serve(
    listener: TcpListener,
    secret: &Secret,
    handle: Handle,
) -> std::io::Result<Server> {
    let board = Arc::new(Board::new("cluster", true));
    // Taps show the users' tuples: they take the token, as the actions do.
    let taps = Arc::new(Taps::with_token(token(secret)));
    let app = App {
        board: Arc::clone(&board),
        metrics: None,
        actions: Some((Arc::new(Cluster(handle.clone())), token(secret))),
    };
    let routes = server::router(app).merge(tap::routes(Arc::clone(&taps)));
    let server = server::serve(listener, routes)?;
    std::thread::Builder::new()
        .name("ui-board".into())
        .spawn(move || loop {
            refresh(&handle, &board, &taps);
            std::thread::sleep(REFRESH);
        })?;
    Ok(server)
}

/// Reads every topology from the coordinator into the board, and makes the live ones
/// tappable.
fn refresh(handle: &Handle, board: &Board, taps: &Taps) {
    let views = handle.topologies();
    for v in &views {
        let id = v.info.id.as_str();
        board.update(
            Report {
                id,
                name: &v.info.name,
                status: v.info.status.name(),
                error: v.info.error.as_deref(),
                uptime_secs: Some(v.info.uptime_secs),
                snapshots: &v.snapshots,
                checkpoints: v.info.checkpoints.as_ref(),
            },
            || Shape::of_spec(&topo_dsl::parse(&v.text).0),
        );
        if v.info.status.is_live() {
            taps.add(
                id,
                Arc::new(ClusterTap {
                    handle: handle.clone(),
                    id: id.to_string(),
                }),
            );
        } else {
            taps.remove(id);
        }
    }
    let ids: Vec<&str> = views.iter().map(|v| v.info.id.as_str()).collect();
    board.retain(&ids);
}

/// The actions, carried out by the coordinator as a client's requests are.
struct Cluster(Handle);

impl Actions for Cluster {
    fn act(
        &self,
        id: String,
        action: Action,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>> {
        let req = match action {
            Action::Activate => Request::Activate { name: id },
            Action::Deactivate => Request::Deactivate { name: id },
            Action::Kill { wait_secs } => Request::Kill {
                name: id,
                wait_secs,
            },
            Action::Rebalance {
                workers,
                parallelism,
            } => Request::Rebalance {
                name: id,
                workers,
                parallelism,
            },
        };
        let handle = self.0.clone();
        Box::pin(async move {
            match handle.request(req) {
                Reply::Done { message } => Ok(message),
                Reply::Error { message } => Err(message),
                other => Err(format!("unexpected answer: {other:?}")),
            }
        })
    }
}

/// A cluster topology's workers, tapped through the coordinator.
struct ClusterTap {
    handle: Handle,
    id: String,
}

impl Source for ClusterTap {
    fn attach(
        &self,
        component: &str,
        stream: Option<&str>,
        per_sec: Option<f64>,
    ) -> Result<Tap, String> {
        let per_sec = per_sec.unwrap_or(tap::RELAYED_PER_SEC);
        self.handle.tap(&self.id, component, stream, per_sec)
    }
}
