//! Exactly-once windows across `kill -9`: a checkpointed sliding event-time window count
//! over three worker processes, one of them killed twice mid-run, still writes every
//! (word, window)'s exact count, once, to its sink. The windows span several
//! checkpoints, so a restored task that lost its panes would write short counts.
//!
//! And across a rescale: a run killed after two checkpoints and resumed with two
//! window tasks instead of three, or three instead of two, writes each (word, window)
//! once: with the exact event-time counts, and in processing time (where a window's
//! contents depend on when tuples came) with every word counted in exactly as many
//! windows as a window of 2 s sliding by 1 s puts it in.

mod state_support;
mod workers_support;

use std::collections::BTreeMap;

use std::path::Path;

use state_support::committed;
use topo_spouts::sentences::{sentence_into, vocabulary};
use workers_support::{resume, run_then_kill, Topo};

/// Sentences (ten words each); sentence i's event time is i ms.
const SENTENCES: u64 = 200_000;
const LENGTH_MS: u64 = 10_000;
const SLIDE_MS: u64 = 5_000;
const KILLS: usize = 2;

/// Sentence i's words, for i in `0..sentences`, with i.
fn words(sentences: u64) -> impl Iterator<Item = (u64, String)> {
    let vocab = vocabulary();
    let mut s = String::new();
    (0..sentences).flat_map(move |i| {
        s.clear();
        sentence_into(&vocab, 0, i, &mut s);
        let words: Vec<(u64, String)> = s.split_whitespace().map(|w| (i, w.to_string())).collect();
        words
    })
}

/// Every (word, window start) → count of `sentences` sentences (event time i ms) in
/// windows of `length` ms sliding by `slide`.
fn reference(sentences: u64, length: u64, slide: u64) -> BTreeMap<(String, i64), u64> {
    let mut want = BTreeMap::new();
    for (i, word) in words(sentences) {
        for k in 0..length / slide {
            let start = ((i / slide) * slide) as i64 - (k * slide) as i64;
            *want.entry((word.clone(), start)).or_insert(0) += 1;
        }
    }
    want
}

/// The topology: `sentences` sentences split into words, counted per word in windows of
/// `length` ms sliding by `slide` (event time when `event`) by `parallelism` tasks.
fn topology(
    workers: usize,
    parallelism: usize,
    sentences: u64,
    (length, slide): (u64, u64),
    event: bool,
    checkpoint_secs: f64,
) -> String {
    let time = if event {
        "timestamp_field = \"ts\""
    } else {
        ""
    };
    format!(
        r#"
[topology]
name = "win"
workers = {workers}
acking = false
checkpoint_interval_secs = {checkpoint_secs}
state_dir = "state"

[spouts.sentences]
type = "random_sentences"
count = {sentences}
timestamp = true

[bolts.split]
type = "split_words"
parallelism = 2
keep = ["ts"]
inputs = ["sentences"]

[bolts.windows]
type = "window_aggregate"
parallelism = {parallelism}
window = {{ length_secs = {}, slide_secs = {} }}
{time}
key = ["word"]
aggregates = ["count() as n"]
inputs = [{{ from = "split", grouping = "fields", fields = ["word"] }}]

[bolts.sink]
type = "file_sink"
path = "out.jsonl"
inputs = ["windows"]
"#,
        length as f64 / 1000.0,
        slide as f64 / 1000.0
    )
}

/// The sink's (word, window start) → count, each written once, each window `length` ms.
fn windows_once(path: &Path, length: u64) -> BTreeMap<(String, i64), u64> {
    let text = std::fs::read_to_string(path).expect("sink output");
    let mut got = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a json line");
        let word = v["word"].as_str().expect("word").to_string();
        let start = v["window_start"].as_i64().expect("window_start");
        assert_eq!(
            v["window_end"].as_i64(),
            Some(start + length as i64),
            "{line}"
        );
        let n = v["n"].as_u64().expect("n");
        assert!(
            got.insert((word.clone(), start), n).is_none(),
            "({word}, {start}) is in the sink twice"
        );
    }
    got
}

/// Runs the topology with `from` window tasks until two checkpoints committed, kills
/// it, resumes it with `to`; returns the sink's windows.
fn rescaled(
    dir: &Path,
    (from, to): (usize, usize),
    sentences: u64,
    window: (u64, u64),
    event: bool,
) -> BTreeMap<(String, i64), u64> {
    let file = dir.join("win.topo.toml");
    let write = |p| {
        let text = topology(2, p, sentences, window, event, 0.5);
        std::fs::write(&file, text).expect("write topology");
    };
    write(from);
    let state = dir.join("state");
    run_then_kill(&file, dir, 2, "two checkpoints commit", || {
        committed(&state).len() >= 2
    });
    let last = *committed(&state).last().expect("a checkpoint");
    write(to);
    let log = resume(&file, dir);
    assert!(
        log.contains(&format!("Resuming from a checkpoint. checkpoint={last}")),
        "{log}"
    );
    windows_once(&dir.join("out.jsonl"), window.0)
}

/// Rescaled event-time windows: 60,000 sentences in windows of 2 s sliding by 0.5 s.
fn event_time_rescaled(from: usize, to: usize) {
    const N: u64 = 60_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let got = rescaled(dir.path(), (from, to), N, (2_000, 500), true);
    let want = reference(N, 2_000, 500);
    assert_eq!(got.len(), want.len(), "one line per (word, window)");
    assert_eq!(got, want, "exact counts");
}

#[test]
fn event_time_windows_resumed_from_two_tasks_on_three_count_each_window_once() {
    event_time_rescaled(2, 3);
}

#[test]
fn event_time_windows_resumed_from_three_tasks_on_two_count_each_window_once() {
    event_time_rescaled(3, 2);
}

#[test]
fn processing_time_windows_resumed_on_another_parallelism_count_each_word_twice() {
    const N: u64 = 60_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let got = rescaled(dir.path(), (3, 2), N, (2_000, 1_000), false);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (_, word) in words(N) {
        *want.entry(word).or_insert(0) += 2;
    }
    let mut per_word: BTreeMap<String, u64> = BTreeMap::new();
    for ((word, _), n) in got {
        *per_word.entry(word).or_insert(0) += n;
    }
    assert_eq!(
        per_word, want,
        "every word in exactly two windows per occurrence"
    );
}

#[test]
fn sliding_windows_killed_twice_count_each_window_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("win.topo.toml");
    let window = (LENGTH_MS, SLIDE_MS);
    std::fs::write(&file, topology(3, 2, SENTENCES, window, true, 1.0)).expect("write topology");
    let state = dir.path().join("state");
    let topo = Topo::start(&file, dir.path(), &[]);
    topo.kill_after_commits(3, KILLS, || committed(&state));
    let want = reference(SENTENCES, LENGTH_MS, SLIDE_MS);
    topo.wait_rolled_back(KILLS);
    let got = windows_once(&dir.path().join("out.jsonl"), LENGTH_MS);
    assert_eq!(got.len(), want.len(), "one line per (word, window)");
    assert_eq!(got, want, "exact counts");
}
