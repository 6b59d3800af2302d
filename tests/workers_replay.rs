//! A worker killed mid-run: the trees that may have gone through it are failed as soon as
//! its connections drop, not after `message_timeout_secs`, and every number still arrives.
//!
//! The test prints what it measured (time from the SIGKILL to the first replay, and to
//! the sink writing at 80 % of its rate before the kill again); run it with
//! `cargo test --test workers_replay -- --nocapture` to see them.

mod workers_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use workers_support::{sink_values, wait_until, Topo, DEADLINE};

/// Plan (3 workers, round-robin by task id): numbers -> worker 0; out 2, 3, 4 -> workers
/// 1, 2, 0; ackers 5, 6, 7 -> workers 0, 1, 2. Worker 1 runs a sink task and an acker.
const TOPOLOGY: &str = r#"
[topology]
name = "replay"
workers = 3
acking = true
message_timeout_secs = 30
max_spout_pending = 500
disable_loadaware_messaging = true   # a third of the numbers go through worker 1

[spouts.numbers]
type = "sequence"

[bolts.out]
type = "file_sink"
parallelism = 3
path = "out.jsonl"
inputs = ["numbers"]
"#;

const REPLAYING: &str = "A worker was lost; replaying the trees that may have gone through it.";

/// Bytes the sink wrote so far.
fn written(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[test]
fn trees_through_a_killed_worker_replay_at_once_and_every_number_arrives() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("replay.topo.toml");
    std::fs::write(&file, TOPOLOGY).expect("write topology");
    let out = dir.path().join("out.jsonl");
    let topo = Topo::start(&file, dir.path(), &["--json"]);
    let workers = topo.wait_running(3);
    wait_until(
        "numbers reach the sink",
        || topo.stderr(),
        || written(&out) > 0,
    );

    // The sink's rate before the kill, over a second.
    let (b0, t0) = (written(&out), Instant::now());
    std::thread::sleep(Duration::from_secs(1));
    let before = (written(&out) - b0) as f64 / t0.elapsed().as_secs_f64();

    let (victim, _) = workers[1];
    // SAFETY: kill(2) on a worker process this test's topo started.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let killed = Instant::now();

    // Samples of (time, bytes written) every 5 ms, until the first replay was logged and
    // the sink's rate is back to 80 % of what it was.
    let mut samples: Vec<(Instant, u64)> = vec![(killed, written(&out))];
    let mut replayed = None;
    // The sample a window starts at: the first since the replay, then later ones.
    let mut from = None;
    let recovered = loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = Instant::now();
        assert!(
            now - killed < DEADLINE,
            "no recovery after the kill\n{}",
            topo.stderr()
        );
        let bytes = written(&out);
        samples.push((now, bytes));
        if replayed.is_none() && topo.stderr().contains(REPLAYING) {
            replayed = Some(now);
            from = Some(samples.len() - 1);
        }
        // Recovered at a window's start once the sink wrote at 80 % of its earlier rate
        // over the 200 ms from there; otherwise the window moves on a sample.
        let Some(i) = from else { continue };
        let (t, b) = samples[i];
        if now - t >= Duration::from_millis(200) {
            if (bytes - b) as f64 / (now - t).as_secs_f64() >= 0.8 * before {
                break t;
            }
            from = Some(i + 1);
        }
    };
    let replayed = replayed.expect("set before the loop ends");
    let first_replay = replayed - killed;
    eprintln!(
        "SIGKILL to the first replay: {} ms; to 80 % of the sink's rate before ({:.0} B/s): {} ms",
        first_replay.as_millis(),
        before,
        (recovered - killed).as_millis()
    );
    // Well before a tree could time out: the fail came from the lost connection.
    assert!(
        first_replay < Duration::from_secs(10),
        "the first replay came {first_replay:?} after the kill"
    );
    topo.wait_restarted(1, victim);

    topo.signal(libc::SIGINT);
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("Worker exited; restarting it."),
        "the restart is logged: {stderr}"
    );
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json summary");
    let spout = summary["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == "numbers"))
        .unwrap_or_else(|| panic!("no spout row in {stdout}"));
    assert_eq!(spout["failed_by"]["timeout"], 0, "{stdout}");
    let lost = spout["failed_by"]["worker_lost"]
        .as_u64()
        .expect("worker_lost");
    assert!(lost > 0, "{stdout}");
    assert_eq!(spout["failed"], lost, "{stdout}");
    assert_eq!(
        spout["acked"],
        spout["emitted"].as_u64().unwrap() - lost,
        "{stdout}"
    );

    // Every number emitted arrived (some twice: replays of trees that had completed
    // there but whose acker state died with the worker).
    let got: HashSet<u64> = sink_values(&out, "n")
        .iter()
        .filter_map(serde_json::Value::as_u64)
        .collect();
    let max = got.iter().copied().max().expect("numbers arrived");
    let missing: Vec<u64> = (0..=max).filter(|n| !got.contains(n)).take(5).collect();
    assert!(
        missing.is_empty(),
        "numbers never arrived, e.g. {missing:?}"
    );
    assert_eq!(
        spout["acked"].as_u64(),
        Some(max + 1),
        "each number acked once: {stdout}"
    );
}
