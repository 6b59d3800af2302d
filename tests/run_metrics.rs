//! `topo run --metrics-addr`: a user scrapes `/metrics` while a bounded topology runs and
//! after it settled; the figures parse and are exact. `--json` explains failures by
//! reason, and a log line names a failed message.

mod prom;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn write(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("t.topo.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// A `topo run` child, killed and reaped when dropped.
struct Run {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Run { child, stderr: rx }
}

/// The first stderr line containing `needle`, waiting up to a minute.
fn line_with(run: &Run, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match run.stderr.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(e) => panic!("no stderr line with {needle:?}: {e}"),
        }
    }
}

fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

const NUMBERS: u64 = 3000;

/// Runs a bounded topology with `workers` workers under `--metrics-addr` and `--linger`,
/// scraping `/metrics` while it runs until it says it ended; returns the last scrape.
fn settled(workers: u32) -> prom::Exposition {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        &format!(
            "[topology]\nname = \"scraped\"\nworkers = {workers}\n\
             [spouts.numbers]\ntype = \"sequence\"\nparallelism = 3\ncount = {NUMBERS}\n\
             [bolts.double]\ntype = \"map\"\nparallelism = 3\nfields = [\"n * 2 as d\"]\n\
             inputs = [\"numbers\"]\n"
        ),
    );
    let run = start(&[
        "run",
        &file,
        "--metrics-addr",
        "127.0.0.1:0",
        "--linger",
        "5m",
        "--json",
    ]);
    let line = line_with(&run, "Serving metrics at http://");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|a| a.strip_suffix("/metrics"))
        .unwrap()
        .to_string();
    // Poll with a deadline until the run says it ended.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (head, body) = get(&addr, "/metrics");
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        let e = prom::parse(&body).unwrap_or_else(|m| panic!("{m}\n{body}"));
        if e.sum("topo_running", &[("topology", "scraped")]) == 0.0
            && e.matching("topo_running", &[]).count() == 1
        {
            assert_eq!(
                get(&addr, "/nope").0.lines().next(),
                Some("HTTP/1.1 404 Not Found")
            );
            return e;
        }
        assert!(Instant::now() < deadline, "the run did not settle:\n{body}");
        std::thread::park_timeout(Duration::from_millis(50));
    }
}

/// Per component, the counters that do not depend on where tasks ran.
fn totals(e: &prom::Exposition) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for c in ["numbers", "double"] {
        for name in [
            "topo_tuples_emitted_total",
            "topo_tuples_transferred_total",
            "topo_tuples_executed_total",
            "topo_tuples_acked_total",
            "topo_tuples_failed_total",
            "topo_complete_latency_seconds_count",
            "topo_execute_latency_seconds_count",
        ] {
            out.push((format!("{name}{{{c}}}"), e.sum(name, &[("component", c)])));
        }
    }
    out
}

#[test]
fn metrics_are_scraped_while_it_runs_and_are_exact_once_it_settles() {
    let exposition = settled(1);
    let spout = [("topology", "scraped"), ("component", "numbers")];
    let emitted = exposition.sum("topo_tuples_emitted_total", &spout);
    let acked = exposition.sum("topo_tuples_acked_total", &spout);
    assert_eq!(emitted, NUMBERS as f64);
    assert_eq!(acked, emitted);
    assert_eq!(
        exposition
            .matching("topo_tuples_acked_total", &spout)
            .count(),
        3,
        "per task"
    );
    assert_eq!(exposition.sum("topo_tuples_failed_total", &spout), 0.0);
    let bolt = [("component", "double")];
    assert_eq!(
        exposition.sum("topo_tuples_executed_total", &bolt),
        NUMBERS as f64
    );
    assert_eq!(exposition.types["topo_tuples_acked_total"], "counter");
    assert_eq!(
        exposition.types["topo_complete_latency_seconds"],
        "histogram"
    );
    assert_eq!(
        exposition.sum("topo_complete_latency_seconds_count", &spout),
        NUMBERS as f64,
        "every tree's complete latency is recorded"
    );
    let inf = [("component", "numbers"), ("le", "+Inf")];
    assert_eq!(
        exposition.sum("topo_complete_latency_seconds_bucket", &inf),
        NUMBERS as f64
    );
    assert_eq!(
        exposition.sum("topo_workers", &[]),
        0.0,
        "none runs any more"
    );
}

#[test]
fn three_worker_processes_add_up_to_what_one_worker_does() {
    let one = settled(1);
    let three = settled(3);
    assert_eq!(totals(&three), totals(&one));
    let spout = [("component", "numbers")];
    assert_eq!(three.sum("topo_tuples_acked_total", &spout), NUMBERS as f64);
    // Each worker reported its own tasks and its traffic with its two peers.
    for w in ["0", "1", "2"] {
        let sent = three.sum(
            "topo_transport_frames_total",
            &[("worker", w), ("direction", "out")],
        );
        assert!(sent > 0.0, "worker {w} sent frames");
        assert_eq!(
            three
                .matching(
                    "topo_transport_bytes_total",
                    &[("worker", w), ("direction", "in")]
                )
                .count(),
            2
        );
    }
    assert_eq!(three.sum("topo_worker_restarts_total", &[]), 0.0);
}

#[test]
fn a_bad_metrics_address_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        &dir,
        "[topology]\nname = \"t\"\n[spouts.s]\ntype = \"sequence\"\ncount = 1\n",
    );
    // Hold a port so that binding it again fails.
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", &file, "--metrics-addr", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(&format!("error: cannot serve metrics on {addr}: ")),
        "{err}"
    );
}

#[test]
fn the_json_summary_counts_failures_by_reason_and_a_log_line_names_one() {
    let dir = tempfile::tempdir().unwrap();
    // `100 / (n % 10)` fails every tenth number; the spout replays them until the stop.
    let file = write(
        &dir,
        "[topology]\nname = \"failing\"\n\
         [spouts.numbers]\ntype = \"sequence\"\n\
         [bolts.divide]\ntype = \"map\"\nfields = [\"100 / (n % 10) as q\"]\n\
         inputs = [\"numbers\"]\n",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", &file, "--for", "1s", "--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let component = |id: &str| {
        v["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .unwrap()
            .clone()
    };
    let (spout, bolt) = (component("numbers"), component("divide"));
    assert!(
        !err.contains("\x1b[2K") && !err.contains("/s  acked"),
        "no status line when stdout is not a terminal: {err}"
    );
    let failed = bolt["failed"].as_u64().unwrap();
    assert!(failed > 0, "{bolt}");
    assert_eq!(bolt["failed_by"]["explicit"], failed);
    assert_eq!(bolt["failed_by"]["panic"], 0);
    assert_eq!(bolt["failed_by"]["timeout"], 0);
    // Each failed input was a whole tree: the spout saw the same failures.
    assert_eq!(spout["failed"], failed);
    assert_eq!(spout["failed_by"]["explicit"], failed);
    assert_eq!(spout["failed_by"]["timeout"], 0);
    assert!(spout["acked"].as_u64().unwrap() > 0, "{spout}");
    assert!(
        bolt["execute_latency"]["samples"].as_u64().unwrap() > 0,
        "{bolt}"
    );
    assert!(bolt["capacity"].as_f64().is_some(), "{bolt}");
    // The log names a failed message id (a multiple of ten) and why.
    let line = err
        .lines()
        .find(|l| l.contains("Tuples failed; e.g. message id"))
        .unwrap_or_else(|| panic!("no failure line in:\n{err}"));
    let id: u64 = line
        .split("message id ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(id % 10, 0, "{line}");
    assert!(
        line.contains(&format!("message id {id}: explicit.")),
        "{line}"
    );
    assert!(line.contains("component=numbers"), "{line}");
}

#[test]
fn linger_needs_an_address_to_serve() {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", "x.topo.toml", "--linger", "1s"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with(
            "error: the following required arguments were not provided:\n  \
             <--ui <ADDR>|--metrics-addr <ADDR>>"
        ),
        "{err}"
    );
}
