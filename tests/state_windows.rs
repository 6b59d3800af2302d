//! Exactly-once windows across `kill -9`: a checkpointed sliding event-time window count
//! over three worker processes, one of them killed twice mid-run, still writes every
//! (word, window)'s exact count, once, to its sink. The windows span several
//! checkpoints, so a restored task that lost its panes would write short counts.

mod state_support;
mod workers_support;

use std::collections::BTreeMap;

use state_support::committed;
use topo_spouts::sentences::{sentence_into, vocabulary};
use workers_support::Topo;

/// Sentences (ten words each); sentence i's event time is i ms.
const SENTENCES: u64 = 200_000;
const LENGTH_MS: u64 = 10_000;
const SLIDE_MS: u64 = 5_000;
const KILLS: usize = 2;

/// Every (word, window start) → count, computed from the spout's sentences.
fn reference() -> BTreeMap<(String, i64), u64> {
    let vocab = vocabulary();
    let mut want = BTreeMap::new();
    let mut s = String::new();
    for i in 0..SENTENCES {
        s.clear();
        sentence_into(&vocab, 0, i, &mut s);
        for word in s.split_whitespace() {
            for k in 0..LENGTH_MS / SLIDE_MS {
                let start = ((i / SLIDE_MS) * SLIDE_MS) as i64 - (k * SLIDE_MS) as i64;
                *want.entry((word.to_string(), start)).or_insert(0) += 1;
            }
        }
    }
    want
}

#[test]
fn sliding_windows_killed_twice_count_each_window_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("win.topo.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "win"
workers = 3
acking = false
checkpoint_interval_secs = 1
state_dir = "state"

[spouts.sentences]
type = "random_sentences"
count = {SENTENCES}
timestamp = true

[bolts.split]
type = "split_words"
parallelism = 2
keep = ["ts"]
inputs = ["sentences"]

[bolts.windows]
type = "window_aggregate"
parallelism = 2
window = {{ length_secs = {}, slide_secs = {} }}
timestamp_field = "ts"
key = ["word"]
aggregates = ["count() as n"]
inputs = [{{ from = "split", grouping = "fields", fields = ["word"] }}]

[bolts.sink]
type = "file_sink"
path = "out.jsonl"
inputs = ["windows"]
"#,
            LENGTH_MS / 1000,
            SLIDE_MS / 1000
        ),
    )
    .expect("write topology");
    let state = dir.path().join("state");
    let topo = Topo::start(&file, dir.path(), &[]);
    topo.kill_after_commits(3, KILLS, || committed(&state));
    let want = reference();
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stderr.matches("rolling every worker back").count(),
        KILLS,
        "{stderr}"
    );
    let text = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("sink output");
    let mut got = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a json line");
        let word = v["word"].as_str().expect("word").to_string();
        let start = v["window_start"].as_i64().expect("window_start");
        assert_eq!(
            v["window_end"].as_i64(),
            Some(start + LENGTH_MS as i64),
            "{line}"
        );
        let n = v["n"].as_u64().expect("n");
        assert!(
            got.insert((word.clone(), start), n).is_none(),
            "({word}, {start}) is in the sink twice"
        );
    }
    assert_eq!(got.len(), want.len(), "one line per (word, window)");
    assert_eq!(got, want, "exact counts");
}
