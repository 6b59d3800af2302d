//! The HTTP server: one axum [`Router`] (UI, JSON API, `/metrics`) served on a listener
//! the caller binds, with a deadline per request and a prompt shutdown.
//!
//! Every connection carries one request (`Connection: close`), whose head must arrive
//! within [`HEAD_DEADLINE`] and whose whole exchange must end within
//! [`REQUEST_DEADLINE`]: a client that trickles a byte every few seconds holds one
//! connection task for at most that long and never the others. Connections are served
//! concurrently on a runtime of the server's own, so [`Server::shutdown`] returns at once
//! whatever clients are doing.
//!
//! # Adding a route
//! [`router`] builds every route from an [`App`]; another module's routes (a streaming
//! endpoint, say) join with `router(app).merge(other)` before [`serve`].

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

use crate::api::Message;
use crate::board::Board;
use crate::ui;

/// A request's head must arrive within this long.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);

/// A connection (one request and its answer) ends within this long.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

/// A cluster action the page may ask for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Resume the spouts.
    Activate,
    /// Pause the spouts.
    Deactivate,
    /// Deactivate, drain for `wait_secs` (default: the message timeout), stop.
    Kill {
        /// Seconds to drain.
        wait_secs: Option<f64>,
    },
    /// Restart with another number of workers or other components' parallelism.
    Rebalance {
        /// The new number of workers (unchanged when `None`).
        workers: Option<usize>,
        /// Component id -> its new parallelism.
        parallelism: BTreeMap<String, usize>,
    },
}

/// What carries out cluster actions (the coordinator's client); `Err` is the refusal's text.
pub trait Actions: Send + Sync + 'static {
    /// Does `action` to topology `id`; answers what happened.
    fn act(
        &self,
        id: String,
        action: Action,
    ) -> Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;
}

/// What the routes serve from.
#[derive(Clone)]
pub struct App {
    /// The topologies' figures.
    pub board: Arc<Board>,
    /// The Prometheus text at `/metrics`, when there is one.
    pub metrics: Option<PrometheusHandle>,
    /// Cluster actions and the token that allows them (hex, as `topo ui-token` prints it).
    pub actions: Option<(Arc<dyn Actions>, String)>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("metrics", &self.metrics.is_some())
            .field("actions", &self.actions.is_some())
            .finish()
    }
}

/// Every route: the page, the JSON API and `/metrics`.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{asset}", get(ui::asset))
        .route("/metrics", get(metrics))
        .route("/api/v1", get(endpoints))
        .route("/api/v1/topologies", get(list))
        .route("/api/v1/topologies/{id}", get(detail))
        .route("/api/v1/topologies/{id}/{part}", get(part).post(action))
        .fallback(not_found)
        .with_state(app)
}

fn message(status: StatusCode, text: impl Into<String>) -> Response {
    (
        status,
        Json(Message {
            message: text.into(),
        }),
    )
        .into_response()
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        "not found: the page is at /, the JSON API at /api/v1, metrics at /metrics\n",
    )
        .into_response()
}

async fn metrics(State(app): State<App>) -> Response {
    match &app.metrics {
        Some(h) => {
            h.run_upkeep();
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                h.render(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "no metrics here\n").into_response(),
    }
}

/// `GET /api/v1`: the endpoints, for a person exploring with curl.
async fn endpoints() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "topologies": "/api/v1/topologies",
        "topology": "/api/v1/topologies/{id}",
        "parts": ["graph", "components", "windows", "workers", "failures", "plan"],
        "part": "/api/v1/topologies/{id}/{part}",
        "actions": "POST /api/v1/topologies/{id}/{activate|deactivate|kill|rebalance} \
                    with Authorization: Bearer TOKEN (cluster only)",
        "metrics": "/metrics",
    }))
}

async fn list(State(app): State<App>) -> Response {
    Json(app.board.list()).into_response()
}

fn unknown(id: &str) -> Response {
    message(StatusCode::NOT_FOUND, format!("no topology {id}"))
}

async fn detail(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.board.detail(&id) {
        Some(d) => Json(d).into_response(),
        None => unknown(&id),
    }
}

/// The parts of a topology's document served on their own.
const PARTS: [&str; 6] = [
    "graph",
    "components",
    "windows",
    "workers",
    "failures",
    "plan",
];

async fn part(State(app): State<App>, Path((id, part)): Path<(String, String)>) -> Response {
    if !PARTS.contains(&part.as_str()) {
        return message(
            StatusCode::NOT_FOUND,
            format!("no part {part}: try one of {}", PARTS.join(", ")),
        );
    }
    let Some(d) = app.board.detail(&id) else {
        return unknown(&id);
    };
    match serde_json::to_value(d) {
        Ok(mut v) => Json(v[part.as_str()].take()).into_response(),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Query parameters of the actions.
#[derive(Debug, Deserialize)]
struct ActionQuery {
    workers: Option<usize>,
    wait_secs: Option<f64>,
    /// `count=4,split=2`.
    parallelism: Option<String>,
}

/// `count=4,split=2` as component -> parallelism (the coordinator checks the values).
fn parse_parallelism(text: &str) -> Option<BTreeMap<String, usize>> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (c, n) = p.split_once('=')?;
            Some((c.trim().to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

async fn action(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<ActionQuery>,
    headers: HeaderMap,
) -> Response {
    let Some((actions, token)) = &app.actions else {
        return message(
            StatusCode::NOT_FOUND,
            "no actions here: `topo run` serves none",
        );
    };
    if let Some(refused) = refusal(&headers, token) {
        tracing::warn!(topology = %id, action = %name, "Refused a UI action without the right token.");
        return refused;
    }
    let parallelism = match q.parallelism.as_deref().map(parse_parallelism) {
        None => BTreeMap::new(),
        Some(Some(p)) => p,
        Some(None) => {
            return message(
                StatusCode::BAD_REQUEST,
                "parallelism takes COMPONENT=N[,COMPONENT=N...]",
            )
        }
    };
    let act = match (name.as_str(), q.workers) {
        ("activate", _) => Action::Activate,
        ("deactivate", _) => Action::Deactivate,
        ("kill", _) => Action::Kill {
            wait_secs: q.wait_secs,
        },
        ("rebalance", Some(0)) | ("rebalance", None) if parallelism.is_empty() => {
            return message(
                StatusCode::BAD_REQUEST,
                "rebalance needs ?workers=N (N > 0) or ?parallelism=COMPONENT=N[,...]",
            )
        }
        ("rebalance", workers) => Action::Rebalance {
            workers,
            parallelism,
        },
        _ => {
            return message(
                StatusCode::NOT_FOUND,
                format!("no action {name}: activate, deactivate, kill or rebalance"),
            )
        }
    };
    tracing::info!(topology = %id, action = %name, "UI action.");
    match actions.act(id, act).await {
        Ok(text) => message(StatusCode::OK, text),
        Err(text) => message(StatusCode::CONFLICT, text),
    }
}

/// Checks the request's `Authorization: Bearer TOKEN` against `token`: the answer to
/// send when it is missing (401) or wrong (403), `None` when it is right.
pub(crate) fn refusal(headers: &HeaderMap, token: &str) -> Option<Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        let mut r = message(
            StatusCode::UNAUTHORIZED,
            "this needs the UI token (`topo ui-token`) as `Authorization: Bearer TOKEN`",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return Some(r);
    };
    if !same(given.trim().as_bytes(), token.as_bytes()) {
        return Some(message(StatusCode::FORBIDDEN, "wrong UI token"));
    }
    None
}

/// Compares in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A running server; stops when dropped or [`Server::shutdown`].
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, drops every connection, and waits for the server thread.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// Serves `router` on `listener` from a thread of its own until the [`Server`] is shut
/// down or dropped.
pub fn serve(listener: std::net::TcpListener, router: Router) -> std::io::Result<Server> {
    let addr = listener.local_addr()?;
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("topo-http".into())
        .spawn(move || {
            rt.block_on(accept(listener, router, rx));
            // Dropping the runtime drops every connection task still running.
            rt.shutdown_timeout(Duration::ZERO);
        })?;
    Ok(Server {
        addr,
        stop: Some(tx),
        thread: Some(thread),
    })
}

async fn accept(
    listener: std::net::TcpListener,
    router: Router,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "Cannot serve HTTP.");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = &mut stop => return,
            conn = listener.accept() => match conn {
                Ok((stream, _)) => {
                    tokio::spawn(connection(stream, router.clone()));
                }
                Err(e) => {
                    // Out of file descriptors: the clients connected keep being served.
                    tracing::debug!(error = %e, "HTTP accept failed.");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
}

async fn connection(stream: tokio::net::TcpStream, router: Router) {
    let service = TowerToHyperService::new(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEAD_DEADLINE)
        .keep_alive(false)
        .title_case_headers(true);
    let conn = http.serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(REQUEST_DEADLINE, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "HTTP connection failed."),
        Err(_) => tracing::debug!("HTTP connection over its deadline; dropped."),
    }
}
