//! `stdin_lines` beyond one process: with `workers = 2` the worker that runs the spout
//! reads the run's standard input; `yes | topo run` keeps that worker's memory flat (the
//! spout reads a bounded number of lines ahead); a terminal, which a worker process cannot
//! read, is refused; `topo submit` refuses the spout, since a cluster worker has no
//! standard input.

mod workers_support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use workers_support::{sink_strings, wait_until};

const TWO_WORKERS: &str = r#"
[topology]
name = "lines"
workers = 2

[spouts.lines]
type = "stdin_lines"

[bolts.out]
type = "file_sink"
parallelism = 2
path = "out.jsonl"
inputs = ["lines"]
"#;

#[test]
fn with_two_workers_every_line_of_standard_input_arrives() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("lines.topo.toml");
    std::fs::write(&file, TWO_WORKERS).expect("write topology");
    let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("run")
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start topo");
    let lines: Vec<String> = (0..500).map(|i| format!("line {i}")).collect();
    let mut input = child.stdin.take().expect("stdin");
    for l in &lines {
        writeln!(input, "{l}").expect("write a line");
    }
    drop(input);
    let out = child.wait_with_output().expect("topo ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let got = sink_strings(&dir.path().join("out.jsonl"), "line");
    let want: std::collections::BTreeSet<String> = lines.into_iter().collect();
    assert_eq!(got, want, "{stderr}");
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("VmRSS")
}

#[test]
fn yes_into_a_slow_topology_keeps_the_readers_memory_flat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("yes.topo.toml");
    // The spout's worker (0) also runs a `split_words` task; every word goes on to the
    // other worker, so the topology is far slower than `yes`.
    std::fs::write(
        &file,
        r#"
[topology]
name = "yes"
workers = 2

[spouts.lines]
type = "stdin_lines"

[bolts.split]
type = "split_words"
inputs = ["lines"]

[bolts.count]
type = "word_count"
parallelism = 2
inputs = [{ from = "split", fields = ["word"] }]
"#,
    )
    .expect("write topology");
    let mut yes = Command::new("yes")
        .arg("a line of words for the split bolt to split")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start yes");
    let status_file = dir.path().join("status.json");
    let mut topo = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("run")
        .arg(&file)
        .arg("--status-file")
        .arg(&status_file)
        .stdin(yes.stdout.take().expect("yes's stdout"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start topo");
    let mut pid = 0;
    wait_until("worker 0 runs", String::new, || {
        let Ok(text) = std::fs::read_to_string(&status_file) else {
            return false;
        };
        let Ok(s) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        let w = &s["workers"][0];
        pid = w["pid"].as_i64().unwrap_or(0) as i32;
        w["running"] == true
    });
    // Past the start-up, then over four seconds: a reader that does not wait for the
    // spout takes in tens of megabytes of lines a second.
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = rss_kib(pid);
    let until = Instant::now() + Duration::from_secs(4);
    let mut most = before;
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
        most = most.max(rss_kib(pid));
    }
    assert!(
        topo.try_wait().expect("try_wait").is_none(),
        "topo ended while its input had no end"
    );
    let _ = topo.kill();
    let _ = topo.wait();
    let _ = yes.kill();
    let _ = yes.wait();
    eprintln!("worker 0: {before} KiB, then at most {most} KiB over four seconds");
    assert!(
        most < before + 16 * 1024,
        "worker 0 grew from {before} KiB to {most} KiB in four seconds"
    );
}

#[test]
fn a_terminal_is_refused_as_a_worker_processs_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("lines.topo.toml");
    std::fs::write(&file, TWO_WORKERS).expect("write topology");
    // `script` runs topo with a terminal (a pseudo-terminal) as its standard input.
    let command = format!("{} run {}", env!("CARGO_BIN_EXE_topo"), file.display());
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_eq!(
        text,
        "error: spout `lines` reads standard input, which is a terminal: with workers = 2 it \
         runs in a worker process, which cannot read a terminal\nhint: pipe the input in \
         (`... | topo run FILE`), or set workers = 1\n"
    );
}

#[test]
fn submit_refuses_stdin_lines_a_cluster_worker_has_no_standard_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("lines.topo.toml");
    std::fs::write(&file, TWO_WORKERS).expect("write topology");
    // Refused before any connection: no coordinator listens there.
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("submit")
        .arg(&file)
        .args(["--coordinator", "127.0.0.1:9"])
        .env_remove("TOPO_CLUSTER_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("topo submit");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: spout `lines` (`stdin_lines`) cannot run in a cluster: a cluster worker has no \
         standard input\nhint: run it with `topo run`, or read from a `tcp_lines` or \
         `file_lines` spout\n"
    );
}
