//! Every example in `examples/` that the built-ins own, run as a user would, its output
//! checked. The topology files run in a copy, so their outputs stay out of the tree.

mod common;

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
