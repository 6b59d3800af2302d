//! Every example in `examples/` that the built-ins own, run as a user would, its output
//! checked. The topology files run in a copy, so their outputs stay out of the tree.

mod common;
mod redis_support;

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/custom_bolt.rs"]
mod custom_bolt;

use std::collections::BTreeMap;

fn example_text() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/file_wordcount.txt");
    std::fs::read_to_string(path).expect("example text")
}

#[test]
fn file_wordcount_writes_the_final_counts_to_json_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_examples(
        &["file_wordcount.topo.toml", "file_wordcount.txt"],
        dir.path(),
    );
    let ran = common::topo_run(&dir.path().join("file_wordcount.topo.toml"), &[], "");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let out = std::fs::read_to_string(dir.path().join("file_wordcount.out.jsonl")).expect("output");
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        let (word, n) = (
            v["word"].as_str().expect("word"),
            v["count"].as_i64().expect("count"),
        );
        let e = counts.entry(word.to_string()).or_insert(0);
        *e = n.max(*e);
    }
    assert_eq!(counts, common::word_counts(&example_text()));
    assert_eq!(
        out.lines().count(),
        example_text().split_whitespace().count()
    );
}

#[test]
fn multilang_wordcount_splits_with_a_python_script() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_examples(
        &[
            "multilang_wordcount.topo.toml",
            "file_wordcount.txt",
            "multilang/split.py",
        ],
        dir.path(),
    );
    let ran = common::topo_run(&dir.path().join("multilang_wordcount.topo.toml"), &[], "");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for line in ran.stdout.lines() {
        let rest = line.strip_prefix("count: word=").expect("a console line");
        let (word, n) = rest.split_once(" count=").expect("word and count");
        let e = counts.entry(word.to_string()).or_insert(0);
        *e = n.parse::<i64>().expect("count").max(*e);
    }
    assert_eq!(counts, common::word_counts(&example_text()));
}

#[test]
fn custom_bolt_adds_up_the_numbers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = custom_bolt::run_in(dir.path()).expect("example runs");
    let expect: String = (1..=10)
        .map(|n| format!("{{\"n\":{n},\"total\":{}}}\n", n * (n + 1) / 2))
        .collect();
    assert_eq!(text, expect);
}

#[test]
fn redis_wordcount_counts_a_stream_into_keys() {
    let redis = redis_support::RedisServer::start();
    let mut con = redis.con();
    let lines: Vec<String> = example_text().lines().map(str::to_string).collect();
    redis_support::xadd_many(&mut con, "sentences", "sentence", lines.len(), |i| {
        lines[i].clone()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_examples(&["redis_wordcount.topo.toml"], dir.path());
    let file = dir.path().join("redis_wordcount.topo.toml");
    let text = std::fs::read_to_string(&file).expect("example");
    std::fs::write(&file, text.replace("redis://127.0.0.1:6379", &redis.url())).expect("write");
    let ran = common::topo_run(&file, &[], "");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let want = common::word_counts(&example_text());
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for word in want.keys() {
        let n: i64 = redis::cmd("GET")
            .arg(format!("count:{word}"))
            .query(&mut con)
            .expect("a count per word");
        got.insert(word.clone(), n);
    }
    assert_eq!(got, want);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("count:*")
        .query(&mut con)
        .expect("keys");
    assert_eq!(keys.len(), want.len(), "no other words were counted");
}

#[test]
fn windowed_wordcount_counts_each_word_per_minute_of_event_time() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_examples(&["windowed_wordcount.topo.toml"], dir.path());
    let ran = common::topo_run(&dir.path().join("windowed_wordcount.topo.toml"), &[], "");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    let out =
        std::fs::read_to_string(dir.path().join("windowed_wordcount.out.jsonl")).expect("output");
    // window start -> (words, Σ n)
    let mut windows: BTreeMap<i64, (usize, i64)> = BTreeMap::new();
    for line in out.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("a JSON object per line");
        let start = v["window_start"].as_i64().expect("window_start");
        assert_eq!(v["window_end"].as_i64(), Some(start + 60_000));
        let w = windows.entry(start).or_default();
        w.0 += 1;
        w.1 += v["n"].as_i64().expect("n");
    }
    // Sentences 0..60,000 in the first minute, 60,000..90,000 in the second; ten words
    // each over a 1,000-word vocabulary.
    assert_eq!(
        windows.into_iter().collect::<Vec<_>>(),
        [(0, (1000, 600_000)), (60_000, (1000, 300_000))]
    );
    let late = std::fs::read_to_string(dir.path().join("windowed_wordcount.late.jsonl"))
        .unwrap_or_default();
    assert_eq!(late, "", "one spout emits in order: nothing is late");
}
