//! `GET /api/v1/topologies/{id}/tap?component=C[&stream=S][&limit=N][&rate=R]`: a live
//! sample of the tuples component `C` emits, one JSON object per line
//! ([`TapRecord`](topo_engine::tap::TapRecord)), as `topo tap` prints them.
//!
//! The tap stays attached while the answer streams and is detached when it ends: after
//! `limit` tuples, when the client goes away, or at the server's request deadline.
//!
//! A topology is tapped through its [`Source`]: its tasks in this process (a
//! [`TapPoint`]), its worker processes ([`Workers`], `topo run` with `workers > 1`), or a
//! cluster's workers (the coordinator's).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use topo_dsl::Topology;
use topo_engine::launcher::relay::Relay;
use topo_engine::tap::{Tap, TapPoint};

use crate::api::Message;

/// Records a second a worker sends for a tap that asked for no rate.
pub const RELAYED_PER_SEC: f64 = 100.0;

/// What attaches taps to one running topology.
pub trait Source: Send + Sync {
    /// Taps `component` (only `stream` when given), `per_sec` records a second at most
    /// (`None`: as many as come), until the [`Tap`] is dropped; `Err` says why not.
    fn attach(
        &self,
        component: &str,
        stream: Option<&str>,
        per_sec: Option<f64>,
    ) -> Result<Tap, String>;
}

impl Source for TapPoint {
    fn attach(&self, component: &str, stream: Option<&str>, _: Option<f64>) -> Result<Tap, String> {
        TapPoint::attach(self, component, stream).map_err(|e| e.to_string())
    }
}

/// A topology's worker processes, tapped through the [`Relay`] of their supervisor.
#[derive(Debug)]
pub struct Workers {
    /// The topology, to check the component and stream against.
    pub topology: Arc<Topology>,
    /// The relay the supervisor drives.
    pub relay: Arc<Relay>,
}

impl Source for Workers {
    fn attach(
        &self,
        component: &str,
        stream: Option<&str>,
        per_sec: Option<f64>,
    ) -> Result<Tap, String> {
        topo_engine::tap::check(&self.topology, component, stream).map_err(|e| e.to_string())?;
        let per_sec = per_sec.unwrap_or(RELAYED_PER_SEC);
        Ok(self.relay.attach(component, stream, per_sec))
    }
}

/// The running topologies that can be tapped here, by id.
#[derive(Default)]
pub struct Taps {
    points: Mutex<Vec<(String, Arc<dyn Source>)>>,
    /// The token a tap needs (a coordinator's: tuples are the users' data), if any.
    token: Option<String>,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taps").finish_non_exhaustive()
    }
}

impl Taps {
    /// Taps that need `Authorization: Bearer TOKEN` with `token` (401 without, 403 with
    /// another).
    pub fn with_token(token: String) -> Taps {
        Taps {
            points: Mutex::default(),
            token: Some(token),
        }
    }

    /// Makes topology `id` tappable through `point`.
    pub fn add(&self, id: &str, point: Arc<dyn Source>) {
        if let Ok(mut p) = self.points.lock() {
            p.retain(|(i, _)| i != id);
            p.push((id.to_string(), point));
        }
    }

    /// Topology `id` can no longer be tapped (it ended).
    pub fn remove(&self, id: &str) {
        if let Ok(mut p) = self.points.lock() {
            p.retain(|(i, _)| i != id);
        }
    }

    fn point(&self, id: &str) -> Option<Arc<dyn Source>> {
        let p = self.points.lock().ok()?;
        p.iter().find(|(i, _)| i == id).map(|(_, t)| t.clone())
    }
}

/// The tap route, to merge into [`router`](crate::server::router)'s.
pub fn routes(taps: Arc<Taps>) -> Router {
    Router::new()
        .route("/api/v1/topologies/{id}/tap", get(tap))
        .with_state(taps)
}

#[derive(Debug, Deserialize)]
struct TapQuery {
    component: String,
    stream: Option<String>,
    limit: Option<u64>,
    rate: Option<f64>,
}

fn message(status: StatusCode, text: String) -> Response {
    (status, Json(Message { message: text })).into_response()
}

async fn tap(
    State(taps): State<Arc<Taps>>,
    Path(id): Path<String>,
    Query(q): Query<TapQuery>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = &taps.token {
        if let Some(refused) = crate::server::refusal(&headers, token) {
            tracing::warn!(topology = %id, "Refused a tap without the right token.");
            return refused;
        }
    }
    let Some(point) = taps.point(&id) else {
        return message(
            StatusCode::NOT_FOUND,
            format!("no running topology `{id}` to tap here"),
        );
    };
    let per_sec = q.rate.filter(|r| *r > 0.0 && r.is_finite());
    let tap = match point.attach(&q.component, q.stream.as_deref(), per_sec) {
        Ok(t) => t,
        Err(e) => return message(StatusCode::NOT_FOUND, e),
    };
    let gap = match q.rate {
        Some(r) if r > 0.0 && r.is_finite() => Duration::from_secs_f64(1.0 / r),
        Some(_) => {
            return message(
                StatusCode::BAD_REQUEST,
                "rate must be a number above 0".to_string(),
            )
        }
        None => Duration::ZERO,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<String>(16);
    let limit = q.limit.unwrap_or(u64::MAX);
    std::thread::spawn(move || pump(&tap, &tx, limit, gap));
    let lines = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|l| (Ok::<_, Infallible>(l), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// Sends `tap`'s records to `tx` as JSON lines, at most one per `gap`, until `limit` or
/// until the answer is gone; the tap is detached when it returns.
fn pump(tap: &Tap, tx: &tokio::sync::mpsc::Sender<String>, limit: u64, gap: Duration) {
    let mut sent = 0;
    while sent < limit {
        match tap.records().recv_timeout(Duration::from_millis(500)) {
            Ok(record) => {
                let Ok(mut line) = serde_json::to_string(&record) else {
                    continue;
                };
                line.push('\n');
                if tx.blocking_send(line).is_err() {
                    return;
                }
                sent += 1;
                if !gap.is_zero() {
                    std::thread::sleep(gap);
                    // What arrived during the pause is stale: the next record is fresh.
                    for _ in tap.records().try_iter() {}
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) if tx.is_closed() => return,
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
        }
    }
}
