//! What `topo run` shows while it runs: the live status line, the HTTP server
//! (`--ui`: the web UI, the JSON API and `/metrics`; `--metrics-addr`: the same server),
//! failure log lines, and `--linger` after the end.
//!
//! A [`Watch`] gets the snapshots of every worker about once a second
//! ([`Watch::tick`]) and publishes them; in-process runs call [`Watch::wait`], a
//! supervisor of worker processes calls `tick` with the latest snapshot of each worker.

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use topo_engine::metrics::{Publisher, Totals, WorkerSnapshot};
use topo_engine::prometheus::Exporter;
use topo_engine::RunningTopology;
use topo_web::board::{Board, Report, Shape};
use topo_web::server::{self, App, Server};
use topo_web::tap::{self, Taps};

/// How often the status line and the metrics are updated.
pub(crate) const TICK: Duration = Duration::from_secs(1);

/// The run's observers.
pub(crate) struct Watch {
    publisher: Publisher,
    /// The exporter `/metrics` renders, and the servers (`--ui`, `--metrics-addr`).
    exporter: Option<(Exporter, Vec<Server>)>,
    /// What the JSON API serves.
    board: Arc<Board>,
    /// The topology `/api/v1/topologies/{id}/tap` attaches to while it runs in-process.
    taps: Arc<Taps>,
    name: String,
    shape: Shape,
    /// Show the status line (stdout and stderr are terminals).
    live: bool,
    shown: bool,
    started: Instant,
    last: Option<(Instant, Totals)>,
}

impl Watch {
    /// Starts watching topology `name` of shape `shape`; serves the web UI, the JSON API
    /// and `/metrics` at `ui` and at `metrics_addr` (one server per address), and says
    /// where on stderr.
    pub(crate) fn start(
        name: &str,
        shape: Shape,
        ui: Option<SocketAddr>,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Watch, String> {
        let board = Arc::new(Board::new("run", false));
        let taps = Arc::new(Taps::default());
        let mut servers = Vec::new();
        let exporter = Exporter::new();
        let app = App {
            board: Arc::clone(&board),
            metrics: Some(exporter.handle()),
            actions: None,
        };
        // The API lists the topology from the start, before its first report.
        let starting = Report {
            id: name,
            name,
            status: "starting",
            error: None,
            uptime_secs: None,
            snapshots: &[],
            checkpoints: None,
        };
        board.update(starting, || shape.clone());
        for (addr, what) in [(ui, "the web UI"), (metrics_addr, "metrics")] {
            let Some(addr) = addr else { continue };
            let bound = TcpListener::bind(addr)
                .and_then(|l| {
                    let routes = server::router(app.clone()).merge(tap::routes(Arc::clone(&taps)));
                    server::serve(l, routes)
                })
                .map_err(|e| format!("cannot serve {what} on {addr}: {e}"))?;
            let at = bound.local_addr();
            if ui.is_some() && metrics_addr.is_none() {
                eprintln!(
                    "Serving the web UI at http://{at}/ (JSON API at /api/v1, metrics at /metrics)"
                );
            } else if what == "metrics" {
                eprintln!("Serving metrics at http://{at}/metrics");
            } else {
                eprintln!("Serving the web UI at http://{at}/ (JSON API at /api/v1)");
            }
            servers.push(bound);
        }
        Ok(Watch {
            publisher: Publisher::new(name),
            exporter: (!servers.is_empty()).then_some((exporter, servers)),
            board,
            taps,
            name: name.to_string(),
            shape,
            live: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            shown: false,
            started: Instant::now(),
            last: None,
        })
    }

    /// Publishes the latest snapshot of every worker (`restarts` worker restarts so far)
    /// and redraws the status line.
    pub(crate) fn tick(&mut self, snapshots: &[WorkerSnapshot], restarts: u64) {
        let publisher = &mut self.publisher;
        let totals = match &self.exporter {
            Some((e, _)) => e.record(|| publisher.publish(snapshots, restarts)),
            None => publisher.publish(snapshots, restarts),
        };
        if self.exporter.is_some() {
            let running = snapshots.iter().any(|s| s.running);
            self.board.update(
                Report {
                    id: &self.name,
                    name: &self.name,
                    status: if running { "running" } else { "ended" },
                    error: None,
                    uptime_secs: None,
                    snapshots,
                    checkpoints: None,
                },
                || self.shape.clone(),
            );
        }
        let now = Instant::now();
        if self.live {
            if let Some((at, before)) = &self.last {
                let line = status_line(
                    now.duration_since(self.started),
                    now.duration_since(*at),
                    before,
                    &totals,
                );
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
                self.shown = true;
            }
        }
        self.last = Some((now, totals));
    }

    /// Ticks every [`TICK`] until `running`'s tasks end; stops it once `run_for` is up.
    pub(crate) fn wait(&mut self, running: &RunningTopology, run_for: Option<Duration>) {
        let deadline = run_for.map(|d| self.started + d);
        let mut stopped = false;
        self.taps.add(&self.name, Arc::new(running.tap_point()));
        self.tick(&[running.snapshot()], 0);
        loop {
            let now = Instant::now();
            let step = match deadline.filter(|_| !stopped) {
                Some(d) if d <= now => {
                    running.stop();
                    stopped = true;
                    TICK
                }
                Some(d) => TICK.min(d - now),
                None => TICK,
            };
            if running.wait_timeout(step) {
                self.taps.remove(&self.name);
                return;
            }
            self.tick(&[running.snapshot()], 0);
        }
    }

    /// Makes the run tappable through `source` (its worker processes) until
    /// [`Watch::finish`].
    pub(crate) fn tap_through(&self, source: Arc<dyn tap::Source>) {
        self.taps.add(&self.name, source);
    }

    /// Publishes the final snapshots and clears the status line.
    pub(crate) fn finish(&mut self, snapshots: &[WorkerSnapshot], restarts: u64) {
        self.taps.remove(&self.name);
        let live = std::mem::replace(&mut self.live, false);
        self.tick(snapshots, restarts);
        if live && self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    /// Keeps serving metrics for `linger` after the end, or until `quit` is set.
    pub(crate) fn linger(self, linger: Option<Duration>, quit: &AtomicBool) {
        let (Some(d), Some((_, servers))) = (linger, &self.exporter) else {
            return;
        };
        for server in servers {
            eprintln!(
                "The run ended; serving metrics at http://{}/metrics for {:?} more (Ctrl-C ends it).",
                server.local_addr(),
                d
            );
        }
        let until = Instant::now() + d;
        while !quit.load(Ordering::SeqCst) {
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::park_timeout((until - now).min(Duration::from_millis(100)));
        }
    }
}

/// `wordcount  12s  emitted 1.20M/s  acked 1.19M/s  failed 0/s  pending 1000  workers 1`:
/// rates of the spouts over the last interval.
fn status_line(elapsed: Duration, span: Duration, before: &Totals, now: &Totals) -> String {
    let secs = span.as_secs_f64().max(1e-3);
    let (b, n) = (before.of_kind("spout"), now.of_kind("spout"));
    let rate = |x: u64, y: u64| rate(y.saturating_sub(x) as f64 / secs);
    format!(
        "{:>6.0}s  emitted {}/s  acked {}/s  failed {}/s  pending {}  workers {}",
        elapsed.as_secs_f64(),
        rate(b.counts.emitted, n.counts.emitted),
        rate(b.counts.acked, n.counts.acked),
        rate(
            b.counts.failed + b.worker_lost,
            n.counts.failed + n.worker_lost
        ),
        n.pending,
        now.workers
    )
}

/// `950`, `12.3k`, `1.20M`.
fn rate(x: f64) -> String {
    if x < 1e3 {
        format!("{x:.0}")
    } else if x < 1e6 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{:.2}M", x / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use topo_engine::metrics::ComponentTotals;
    use topo_engine::Counts;

    fn spout(emitted: u64, acked: u64, failed: u64, pending: u64) -> Totals {
        let mut t = Totals {
            workers: 3,
            ..Totals::default()
        };
        let counts = Counts {
            emitted,
            acked,
            failed,
            ..Counts::default()
        };
        t.components.insert(
            "s".into(),
            (
                "spout".into(),
                ComponentTotals {
                    counts,
                    worker_lost: 0,
                    pending,
                },
            ),
        );
        t
    }

    #[test]
    fn the_status_line_shows_spout_rates_over_the_interval() {
        let line = status_line(
            Duration::from_secs(12),
            Duration::from_millis(500),
            &spout(1000, 900, 0, 100),
            &spout(601_000, 1_500_900, 5, 7),
        );
        assert_eq!(
            line,
            "    12s  emitted 1.20M/s  acked 3.00M/s  failed 10/s  pending 7  workers 3"
        );
        assert_eq!(rate(12_345.0), "12.3k");
    }
}
