//! The built-in spouts, run through the engine: what they emit, how parallel tasks split
//! the input, and replay of what failed.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use topo::prelude::*;

#[test]
fn sequence_tasks_emit_every_number_once() {
    let (registry, seen) = common::registry();
    let topology = Topology::builder("seq")
        .spout("numbers", "sequence")
        .parallelism(3)
        .set("count", 20)
        .set("start", 100)
        .bolt("sink", "record")
        .shuffle("numbers")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = common::run(topology, &registry, dir.path());
    let mut got: Vec<i64> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(f, v)| {
            assert_eq!(f, &["n"]);
            v[0].as_int().expect("int")
        })
        .collect();
    got.sort();
    assert_eq!(got, (100..120).collect::<Vec<_>>());
    assert_eq!(summary.counts("numbers").acked, 20);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FailOnce {
    line: String,
}

/// Fails the tuple whose `line` is the configured one, the first time only.
struct FailFirst {
    line: String,
    done: Arc<AtomicBool>,
}

impl Bolt for FailFirst {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let line = input.str_field("line").unwrap_or_default();
        if line == self.line && !self.done.swap(true, Ordering::SeqCst) {
            return Err("failing it once".into());
        }
        out.emit([line]);
        Ok(())
    }
}

#[test]
fn file_lines_emits_every_line_once_and_replays_a_failed_one() {
    let (mut registry, seen) = common::registry();
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    registry.bolt(
        "fail_first",
        "Fails one line once.",
        |_: &FailOnce| vec![StreamDecl::default_stream(["line"])],
        move |c: FailOnce| {
            Ok(FailFirst {
                line: c.line,
                done: Arc::clone(&flag),
            })
        },
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let text: String = (1..=25).map(|i| format!("line {i}\n")).collect();
    std::fs::write(dir.path().join("in.txt"), text).expect("write");
    let topology = Topology::builder("lines")
        .spout("lines", "file_lines")
        .parallelism(2)
        .set("path", "in.txt")
        .bolt("flaky", "fail_first")
        .set("line", "line 7")
        .shuffle("lines")
        .bolt("sink", "record")
        .shuffle("flaky")
        .build(&registry)
        .expect("valid");
    let summary = common::run(topology, &registry, dir.path());
    let mut expect: Vec<String> = (1..=25).map(|i| format!("line {i}")).collect();
    expect.sort();
    assert_eq!(
        common::firsts(&seen),
        expect,
        "every line once, line 7 after its replay"
    );
    assert!(done.load(Ordering::SeqCst));
    let spout = summary.counts("lines");
    assert_eq!((spout.acked, spout.failed), (25, 1));
    assert_eq!(summary.counts("flaky").executed, 26);
}

#[test]
fn file_lines_reports_a_missing_file() {
    let (registry, _) = common::registry();
    let topology = Topology::builder("lines")
        .spout("lines", "file_lines")
        .set("path", "missing.txt")
        .bolt("sink", "record")
        .shuffle("lines")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = common::run(topology, &registry, dir.path());
    assert_eq!(
        summary.errors,
        [format!(
            "spout `lines` task 1 failed to open: `file_lines` cannot open `{}`: No such file or directory (os error 2)",
            dir.path().join("missing.txt").display()
        )]
    );
}

#[test]
fn tcp_lines_turns_received_lines_into_tuples() {
    let (registry, seen) = common::registry();
    // A free port: bind one, release it, hand it to the spout.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let topology = Topology::builder("tcp")
        .spout("net", "tcp_lines")
        .set("listen", addr.as_str())
        .set("connections", 2)
        .bolt("sink", "record")
        .shuffle("net")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let client = std::thread::spawn(move || {
        for text in ["alpha\nbeta\n", "gamma"] {
            // The spout listens once its task has opened; retry until then (bounded).
            let mut conn = None;
            for _ in 0..500 {
                match std::net::TcpStream::connect(&addr) {
                    Ok(c) => {
                        conn = Some(c);
                        break;
                    }
                    Err(_) => std::thread::yield_now(),
                }
                std::thread::park_timeout(std::time::Duration::from_millis(10));
            }
            let mut c = conn.expect("the spout never listened");
            c.write_all(text.as_bytes()).expect("send");
        }
    });
    let summary = common::run(topology, &registry, dir.path());
    client.join().expect("client");
    assert_eq!(common::firsts(&seen), ["alpha", "beta", "gamma"]);
    assert_eq!(summary.counts("net").acked, 3);
}

#[test]
fn random_sentences_tasks_emit_the_benchmark_sentences_once() {
    let (registry, seen) = common::registry();
    let topology = Topology::builder("sentences")
        .spout("sentences", "random_sentences")
        .parallelism(2)
        .set("count", 12)
        .set("seed", 3)
        .bolt("sink", "record")
        .shuffle("sentences")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    common::run(topology, &registry, dir.path());
    let vocab = topo_spouts::sentences::vocabulary();
    let mut expect: Vec<String> = (0..12)
        .map(|i| {
            let mut s = String::new();
            topo_spouts::sentences::sentence_into(&vocab, 3, i, &mut s);
            s
        })
        .collect();
    expect.sort();
    assert_eq!(common::firsts(&seen), expect);
    assert!(expect.iter().all(|s| s.split(' ').count() == 10));
}

#[test]
fn file_lines_follows_a_growing_file() {
    let (registry, seen) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("log.txt");
    std::fs::write(&path, "one\ntwo\n").expect("write");
    let topology = Topology::builder("tail")
        .spout("log", "file_lines")
        .set("path", "log.txt")
        .set("follow", true)
        .bolt("sink", "record")
        .shuffle("log")
        .build(&registry)
        .expect("valid");
    let running = topo_engine::start(
        Arc::new(topology),
        &registry,
        topo_engine::RunOptions {
            base_dir: dir.path().to_path_buf(),
            ..Default::default()
        },
    )
    .expect("start");
    let wait_for = |n: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.lock().expect("lock").len() < n && std::time::Instant::now() < deadline {
            running.wait_timeout(std::time::Duration::from_millis(10));
        }
    };
    wait_for(2);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("append");
    f.write_all(b"thr").expect("write");
    f.flush().expect("flush");
    f.write_all(b"ee\nfour\n").expect("write");
    f.flush().expect("flush");
    wait_for(4);
    running.stop();
    let summary = running.wait();
    assert_eq!(common::firsts(&seen), ["four", "one", "three", "two"]);
    assert_eq!(summary.counts("log").acked, 4);
}
