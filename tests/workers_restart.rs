//! A worker process killed mid-run is restarted, the tuple trees through it are replayed,
//! and the bounded run still delivers every message and exits 0.
//!
//! The spout reads a named pipe the test writes to, so the run is alive for as long as
//! the test needs it: half the ids, the kill, the restart, then the other half and EOF.

mod workers_support;

use std::collections::BTreeSet;
use std::io::Write;

use workers_support::{mkfifo, open_writer, row, sink_strings, wait_until, Topo};

const IDS: usize = 4000;

#[test]
fn a_killed_worker_is_restarted_and_every_id_still_arrives() {
    lose_worker_1(libc::SIGKILL, "Worker exited; restarting it.");
}

/// A stopped process neither exits nor heartbeats: after the heartbeat timeout (10 s) the
/// supervisor kills and replaces it.
#[test]
fn a_frozen_worker_is_replaced_and_every_id_still_arrives() {
    lose_worker_1(libc::SIGSTOP, "Worker stopped heartbeating; restarting it.");
}

/// Runs the topology, sends `signal` to worker 1 mid-run, checks the restart is logged as
/// `log` and that every id arrives.
fn lose_worker_1(signal: i32, log: &str) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipe = dir.path().join("ids.pipe");
    mkfifo(&pipe);
    let file = dir.path().join("restart.topo.toml");
    // Plan (3 workers, round-robin by task id): ids -> worker 0; relay 2, 3, 4 -> workers
    // 1, 2, 0; out 5, 6 -> workers 1, 2; ackers 7, 8, 9 -> workers 0, 1, 2.
    std::fs::write(
        &file,
        r#"
[topology]
name = "restart"
workers = 3
acking = true
message_timeout_secs = 2
max_spout_pending = 200

[spouts.ids]
type = "file_lines"
path = "ids.pipe"

[bolts.relay]
type = "split_words"
parallelism = 3
inputs = ["ids"]

[bolts.out]
type = "file_sink"
parallelism = 2
path = "out.jsonl"
inputs = ["relay"]
"#,
    )
    .expect("write topology");
    let out = dir.path().join("out.jsonl");
    let topo = Topo::start(&file, dir.path(), &[]);
    let workers = topo.wait_running(3);
    let mut writer = open_writer(&pipe, &topo);
    let ids: Vec<String> = (0..IDS).map(|i| format!("id{i:05}")).collect();
    for id in &ids[..IDS / 2] {
        writeln!(writer, "{id}").expect("write an id");
    }
    writer.flush().expect("flush");
    wait_until(
        "some ids arrived",
        || topo.stderr(),
        || sink_strings(&out, "word").len() >= 100,
    );

    // Worker 1 runs a relay task, a sink task and an acker.
    let (victim, _) = workers[1];
    // SAFETY: kill(2) on a worker process this test's topo started.
    assert_eq!(unsafe { libc::kill(victim, signal) }, 0);
    topo.wait_restarted(1, victim);
    for id in &ids[IDS / 2..] {
        writeln!(writer, "{id}").expect("write an id");
    }
    drop(writer);

    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains(log), "the restart is logged: {stderr}");
    let got = sink_strings(&out, "word");
    let want: BTreeSet<String> = ids.into_iter().collect();
    let missing: Vec<&String> = want.difference(&got).collect();
    assert!(
        missing.is_empty(),
        "{} ids never arrived, e.g. {:?}\n{stdout}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let (emitted, _, acked, _) = row(&stdout, "ids");
    assert!(emitted >= IDS as u64 && acked == IDS as u64, "{stdout}");
}
