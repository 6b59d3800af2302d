//! `topo top`: a terminal dashboard of a running topology, read once a second from the
//! JSON API of a `topo run --ui` (or `--metrics-addr`) or of a coordinator's `--ui`.
//!
//! One thread fetches `/api/v1/topologies/{id}` every interval and hands the documents
//! over; the main thread draws them with ratatui and reads keys. The terminal is put back
//! (raw mode off, main screen, cursor shown) on every way out: `q`, Ctrl-C, an error, a
//! panic.

use std::io::Stdout;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::CrosstermBackend;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Row, Table};
use ratatui::{Frame, Terminal};
use topo_web::api::{ComponentLive, FailedBy, Graph, TopologyBrief, TopologyList, WorkerView};

use super::http::Client;
use super::run::parse_duration;
use super::{EXIT_OK, EXIT_USAGE};

/// Arguments of `topo top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    /// The topology's name or id (default: the newest one the server has).
    name: Option<String>,
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
    /// How often to refresh.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    interval: Duration,
}

/// Runs `topo top`; returns the exit code.
pub(crate) fn run(args: &TopArgs) -> i32 {
    let addr = args
        .addr
        .clone()
        .or_else(|| args.coordinator.clone())
        .unwrap_or_default();
    // The first fetch happens before the screen is taken, so an error reads plainly.
    let (client, id) = match connect(&addr, args.name.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let first = match fetch(&client, &id) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let (tx, rx) = mpsc::channel();
    let interval = args.interval;
    std::thread::spawn(move || loop {
        std::thread::sleep(interval);
        let got = fetch(&client, &id);
        if tx.send((Instant::now(), got)).is_err() {
            return;
        }
    });
    let mut board = Board::new(addr, interval, first);
    match Screen::take().and_then(|mut screen| screen.show(&mut board, &rx)) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: the terminal: {e}");
            EXIT_USAGE
        }
    }
}

/// A client of `addr` and the id of the topology to show: `name`, or the newest.
pub(crate) fn connect(addr: &str, name: Option<&str>) -> Result<(Client, String), String> {
    let client = Client::new(addr)?;
    let list: TopologyList = client.get_json("/api/v1/topologies")?;
    let id = match name {
        Some(n) => list
            .topologies
            .iter()
            .find(|t| t.id == n || t.name == n)
            .map(|t| t.id.clone())
            .ok_or_else(|| {
                let known: Vec<&str> = list.topologies.iter().map(|t| t.name.as_str()).collect();
                format!(
                    "no topology `{n}` at {addr} (it has: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )
            })?,
        None => list
            .topologies
            .first()
            .map(|t| t.id.clone())
            .ok_or_else(|| format!("{addr} runs no topology"))?,
    };
    Ok((client, id))
}

/// What the board shows of one topology: its line of the list, and the parts of its
/// detail document the table needs.
struct View {
    brief: TopologyBrief,
    graph: Graph,
    components: Vec<ComponentLive>,
    workers: Vec<WorkerView>,
}

/// Fetches topology `id`'s [`View`]. The detail document is read part by part, so that
/// the parts `top` does not show may change without breaking it.
fn fetch(client: &Client, id: &str) -> Result<View, String> {
    let list: TopologyList = client.get_json("/api/v1/topologies")?;
    let brief = list
        .topologies
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| format!("topology `{id}` is gone"))?;
    let path = format!("/api/v1/topologies/{id}");
    let doc: serde_json::Value = client.get_json(&path)?;
    fn part<T: serde::de::DeserializeOwned>(
        doc: &serde_json::Value,
        path: &str,
        key: &str,
    ) -> Result<T, String> {
        serde_json::from_value(doc.get(key).cloned().unwrap_or_default())
            .map_err(|e| format!("{path}: `{key}` is not as expected: {e}"))
    }
    Ok(View {
        brief,
        graph: part(&doc, &path, "graph")?,
        components: part(&doc, &path, "components")?,
        workers: part(&doc, &path, "workers")?,
    })
}

/// The terminal in raw mode on the alternate screen; put back on drop and on panic.
struct Screen {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

fn restore() {
    let _ = terminal::disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

impl Screen {
    fn take() -> std::io::Result<Screen> {
        terminal::enable_raw_mode()?;
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            hook(info);
        }));
        let mut stdout = std::io::stdout();
        if let Err(e) = crossterm::execute!(stdout, EnterAlternateScreen, crossterm::cursor::Hide) {
            restore();
            return Err(e);
        }
        let terminal = Terminal::new(CrosstermBackend::new(stdout)).inspect_err(|_| restore())?;
        Ok(Screen { terminal })
    }

    /// Draws `board` and its updates from `rx` until `q`, Esc or Ctrl-C.
    fn show(
        &mut self,
        board: &mut Board,
        rx: &mpsc::Receiver<(Instant, Result<View, String>)>,
    ) -> std::io::Result<()> {
        loop {
            while let Ok((at, got)) = rx.try_recv() {
                board.update(at, got);
            }
            self.terminal.draw(|f| board.draw(f))?;
            if event::poll(Duration::from_millis(100))? {
                if let Event::Key(k) = event::read()? {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if k.kind == KeyEventKind::Press
                        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c)
                    {
                        return Ok(());
                    }
                }
            }
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// What is on screen: the latest document, the one before (for rates by reason) and the
/// last error.
struct Board {
    addr: String,
    interval: Duration,
    now: (Instant, View),
    before: Option<(Instant, View)>,
    error: Option<String>,
}

/// A subscriber's input queues this full (batches per task, of 8) hold its producers
/// back: their sends block.
const FULL_QUEUE: f64 = 6.0;
/// A subscriber this busy is saturated: its producers wait for it.
const SATURATED: f64 = 0.95;

impl Board {
    fn new(addr: String, interval: Duration, first: View) -> Board {
        Board {
            addr,
            interval,
            now: (Instant::now(), first),
            before: None,
            error: None,
        }
    }

    fn update(&mut self, at: Instant, got: Result<View, String>) {
        match got {
            Ok(d) => {
                self.before = Some(std::mem::replace(&mut self.now, (at, d)));
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    /// Failures per second of `c` by reason, between the last two documents.
    fn failed_by_rate(&self, c: &ComponentLive) -> FailedBy {
        let Some((then, before)) = &self.before else {
            return FailedBy::default();
        };
        let secs = self.now.0.duration_since(*then).as_secs_f64().max(1e-3);
        let Some(b) = before.components.iter().find(|x| x.id == c.id) else {
            return FailedBy::default();
        };
        let per = |now: u64, was: u64| ((now.saturating_sub(was)) as f64 / secs).round() as u64;
        FailedBy {
            explicit: per(c.failed_by.explicit, b.failed_by.explicit),
            timeout: per(c.failed_by.timeout, b.failed_by.timeout),
            panic: per(c.failed_by.panic, b.failed_by.panic),
            worker_lost: per(c.failed_by.worker_lost, b.failed_by.worker_lost),
        }
    }

    /// True when a subscriber of `id` is full or saturated, so that backpressure holds
    /// `id` back.
    fn held_back(&self, id: &str) -> bool {
        let d = &self.now.1;
        d.graph.edges.iter().filter(|e| e.from == id).any(|e| {
            d.components.iter().find(|c| c.id == e.to).is_some_and(|c| {
                let per_task = c.queue_depth as f64 / c.tasks.len().max(1) as f64;
                per_task >= FULL_QUEUE || c.capacity.is_some_and(|x| x >= SATURATED)
            })
        })
    }

    fn draw(&self, f: &mut Frame<'_>) {
        let d = &self.now.1;
        let workers = d.workers.len().max(1) as u16;
        let running = d.workers.iter().filter(|w| w.running).count();
        let [head, table, fails, procs, foot] = Layout::vertical([
            Constraint::Length(2),
            Constraint::Length(d.components.len() as u16 + 1),
            Constraint::Length(self.failure_lines().len() as u16),
            Constraint::Length(workers + 2),
            Constraint::Min(1),
        ])
        .areas(f.area());
        let b = &d.brief;
        f.render_widget(
            Paragraph::new(vec![
                Line::styled(
                    format!(
                        "{}  {}  up {}  workers {}  tasks {}",
                        b.name,
                        b.status,
                        duration(b.uptime_secs),
                        running,
                        b.tasks
                    ),
                    Style::new().add_modifier(Modifier::BOLD),
                ),
                Line::raw(format!(
                    "spouts: emitted {}/s  acked {}/s  failed {}/s  pending {}",
                    count(b.emitted_per_sec),
                    count(b.acked_per_sec),
                    count(b.failed_per_sec),
                    b.pending
                )),
            ]),
            head,
        );
        self.draw_components(f, table);
        f.render_widget(Paragraph::new(self.failure_lines()), fails);
        self.draw_workers(f, procs);
        let status = match &self.error {
            Some(e) => format!("{e} (retrying)"),
            None => format!(
                "q quits · every {} from {} · ◀ held back by backpressure",
                duration(self.interval.as_secs_f64()),
                self.addr
            ),
        };
        f.render_widget(
            Paragraph::new(Line::styled(
                status,
                Style::new().add_modifier(Modifier::DIM),
            )),
            Rect {
                y: foot.bottom().saturating_sub(1),
                height: 1.min(foot.height),
                ..foot
            },
        );
    }

    fn draw_components(&self, f: &mut Frame<'_>, area: Rect) {
        let header = Row::new([
            "component",
            "tasks",
            "emit/s",
            "exec/s",
            "ack/s",
            "fail/s",
            "cap",
            "exec99",
            "cmpl99",
            "queue",
            "pend",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
        let rows = self.now.1.components.iter().map(|c| {
            let name = if self.held_back(&c.id) {
                format!("{} ◀", c.id)
            } else {
                c.id.clone()
            };
            let bolt = c.kind == "bolt";
            Row::new([
                name,
                c.tasks.len().to_string(),
                count(c.rates.emitted),
                count(c.rates.executed),
                count(c.rates.acked),
                count(c.rates.failed),
                c.capacity.map_or("-".into(), |x| format!("{x:.2}")),
                c.execute_p99_ms.map_or("-".into(), millis),
                c.complete_p99_ms.map_or("-".into(), millis),
                if bolt {
                    c.queue_depth.to_string()
                } else {
                    "-".into()
                },
                if c.kind == "spout" {
                    c.pending.to_string()
                } else {
                    "-".into()
                },
            ])
        });
        let widths = [
            Constraint::Min(9),
            Constraint::Length(5),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(5),
            Constraint::Length(5),
        ];
        f.render_widget(
            Table::new(rows, widths).header(header).column_spacing(1),
            area,
        );
    }

    /// One line per component with failures in the last interval, by reason.
    fn failure_lines(&self) -> Vec<Line<'static>> {
        self.now
            .1
            .components
            .iter()
            .filter_map(|c| {
                let r = self.failed_by_rate(c);
                let parts: Vec<String> = [
                    ("explicit", r.explicit),
                    ("timeout", r.timeout),
                    ("panic", r.panic),
                    ("worker_lost", r.worker_lost),
                ]
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(why, n)| format!("{why} {}/s", count(n as f64)))
                .collect();
                (!parts.is_empty())
                    .then(|| Line::raw(format!("  {} failed: {}", c.id, parts.join(", "))))
            })
            .collect()
    }

    fn draw_workers(&self, f: &mut Frame<'_>, area: Rect) {
        let header = Row::new(["worker", "host", "pid", "rss", "cpu", "restarts", "up"])
            .style(Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED));
        let rows = self.now.1.workers.iter().map(|w| {
            Row::new([
                w.worker.to_string(),
                w.host.clone().unwrap_or_else(|| "-".into()),
                w.pid.map_or("-".into(), |p| p.to_string()),
                w.rss_bytes.map_or("-".into(), bytes),
                w.cpu_percent.map_or("-".into(), |c| format!("{c:.0}%")),
                w.restarts.to_string(),
                if w.running {
                    duration(w.uptime_secs)
                } else {
                    "ended".into()
                },
            ])
        });
        let widths = [
            Constraint::Length(6),
            Constraint::Min(10),
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(8),
            Constraint::Length(7),
        ];
        let area = Rect {
            y: area.y + 1,
            height: area.height.saturating_sub(1),
            ..area
        };
        f.render_widget(
            Table::new(rows, widths).header(header).column_spacing(1),
            area,
        );
    }
}

/// A rate or count in at most 6 characters: `950`, `12.3k`, `1.20M`.
fn count(x: f64) -> String {
    let x = x.max(0.0);
    if x < 1000.0 {
        format!("{x:.0}")
    } else if x < 1e4 {
        format!("{:.2}k", x / 1e3)
    } else if x < 1e6 {
        format!("{:.1}k", x / 1e3)
    } else if x < 1e9 {
        format!("{:.2}M", x / 1e6)
    } else {
        format!("{:.2}G", x / 1e9)
    }
}

/// Milliseconds in at most 6 characters: `0.05`, `2.5`, `120`.
fn millis(ms: f64) -> String {
    if ms < 1.0 {
        format!("{ms:.2}")
    } else if ms < 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn bytes(b: u64) -> String {
    let mib = b as f64 / (1024.0 * 1024.0);
    if mib < 1024.0 {
        format!("{mib:.0}M")
    } else {
        format!("{:.1}G", mib / 1024.0)
    }
}

/// `42s`, `3m05s`, `2h01m`.
fn duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_their_columns() {
        assert_eq!(
            [0.4, 950.0, 1234.0, 12_345.0, 1_234_567.0].map(count),
            ["0", "950", "1.23k", "12.3k", "1.23M"]
        );
        assert_eq!([0.051, 2.53, 120.4].map(millis), ["0.05", "2.5", "120"]);
        assert_eq!(
            [42.0, 185.0, 7260.0].map(duration),
            ["42s", "3m05s", "2h01m"]
        );
    }
}
