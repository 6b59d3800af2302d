//! Exactly-once state from a Redis stream across `kill -9`: a checkpointed word count
//! reading a stream of 1,000,000 sentences with the `redis_stream` spout (two tasks, each
//! reading the stream itself from its checkpointed entry id) over three workers, one of
//! them killed three times mid-run, still writes every word's exact count, once — with
//! acking off and on. A run resumed with another spout parallelism is refused with the
//! reason.

mod redis_support;
mod state_support;
mod workers_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redis_support::{xadd_many, RedisServer};
use state_support::{committed, count_into_sink, counts_once, write_input};
use workers_support::{wait_until, Topo};

/// The runs share two cores with the rest of the suite: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

const KILLS: usize = 3;

/// Fills stream `sentences` with `lines` sentences of five words; returns every word's
/// count.
fn fill(server: &RedisServer, dir: &Path, lines: usize) -> BTreeMap<String, u64> {
    let input = dir.join("in.txt");
    let want = write_input(&input, lines);
    let text = std::fs::read_to_string(&input).expect("read the input");
    let sentences: Vec<&str> = text.lines().collect();
    xadd_many(&mut server.con(), "sentences", "sentence", lines, |i| {
        sentences[i].to_string()
    });
    want
}

fn topology(dir: &Path, url: &str, acking: bool, spouts: usize) -> PathBuf {
    let file = dir.join("wc.topo.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "wc"
workers = 3
acking = {acking}
checkpoint_interval_secs = 1
state_dir = "state"

[spouts.lines]
type = "redis_stream"
url = "{url}"
stream = "sentences"
group = "unused"
start = "0"
fields = ["sentence"]
stop_at_end = true
parallelism = {spouts}

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["lines"]

{}"#,
            count_into_sink("split", 2)
        ),
    )
    .expect("write topology");
    file
}

fn killed_three_times_counts_exactly(acking: bool) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let want = fill(&server, dir.path(), 1_000_000);
    let file = topology(dir.path(), &server.url(), acking, 2);
    let topo = Topo::start(&file, dir.path(), &[]);
    let state = dir.path().join("state");
    topo.kill_after_commits(3, KILLS, || committed(&state));
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stderr.matches("rolling every worker back").count(),
        KILLS,
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("Reading the stream from checkpointed positions.")
            .count(),
        2 * (KILLS + 1),
        "every incarnation's two spout tasks read by position: {stderr}"
    );
    let got = counts_once(&dir.path().join("out.jsonl"));
    assert_eq!(got.len(), want.len(), "one line per word");
    assert_eq!(got, want, "exact counts");
}

#[test]
fn a_word_count_from_a_redis_stream_killed_three_times_counts_exactly() {
    killed_three_times_counts_exactly(false);
}

#[test]
fn a_word_count_from_a_redis_stream_counts_exactly_with_acking_on() {
    killed_three_times_counts_exactly(true);
}

#[test]
fn a_resume_with_another_spout_parallelism_is_refused() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let server = RedisServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    fill(&server, dir.path(), 300_000);
    let file = topology(dir.path(), &server.url(), true, 2);
    let topo = Topo::start(&file, dir.path(), &[]);
    let state = dir.path().join("state");
    wait_until(
        "a checkpoint commits",
        || topo.stderr(),
        || !committed(&state).is_empty(),
    );
    topo.signal(libc::SIGKILL);
    let (code, _, stderr) = topo.wait();
    assert_ne!(code, 0, "killed");
    assert!(
        !stderr.contains("Every spout is done"),
        "the run read its whole input before the kill: make the input longer"
    );

    let file = topology(dir.path(), &server.url(), true, 3);
    let (code, stdout, stderr) = Topo::start(&file, dir.path(), &["--resume"]).wait();
    assert_ne!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(
        stderr.contains("error: checkpoints: checkpoint ")
            && stderr.contains(
                "was taken with 2 tasks of spout `lines`, which has 3 now: a spout resumes \
                 with the parallelism it was checkpointed with (each task's position belongs \
                 to its index)"
            ),
        "{stderr}"
    );
}
