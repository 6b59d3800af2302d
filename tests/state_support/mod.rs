//! Helpers of the `state_*` tests: a word-count input with its reference counts, the
//! committed checkpoints of a state folder, a word count's sink output.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

/// Writes `lines` lines of five words (500 distinct) to `path`; returns every word's
/// count.
pub(crate) fn write_input(path: &Path, lines: usize) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    let mut text = String::with_capacity(lines * 25);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..lines {
        for k in 0..5 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let word = format!("w{:03}", x % 500);
            if k > 0 {
                text.push(' ');
            }
            text.push_str(&word);
            *counts.entry(word).or_insert(0) += 1;
        }
        text.push('\n');
    }
    std::fs::write(path, text).expect("write the input");
    counts
}

/// The committed checkpoints in `dir` (folders `chk-N` holding a `MANIFEST`).
pub(crate) fn committed(dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter(|e| e.path().join("MANIFEST").is_file())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// The sink's lines as (word, count), in file order.
pub(crate) fn sink_lines(path: &Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(path).expect("sink output");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a json line");
            (
                v["word"].as_str().expect("word").to_string(),
                v["count"].as_u64().expect("count"),
            )
        })
        .collect()
}

/// The sink's words and counts, checking each word is there once.
pub(crate) fn counts_once(path: &Path) -> BTreeMap<String, u64> {
    let mut got = BTreeMap::new();
    for (word, count) in sink_lines(path) {
        assert!(
            got.insert(word.clone(), count).is_none(),
            "`{word}` is in the sink twice"
        );
    }
    got
}

/// The TOML of a word count's end: `word_count` (`tasks` tasks, `emit = "end"`, fields
/// grouping on `word` from `input`) into a `file_sink` writing `out.jsonl`.
pub(crate) fn count_into_sink(input: &str, tasks: usize) -> String {
    format!(
        r#"
[bolts.count]
type = "word_count"
parallelism = {tasks}
emit = "end"
inputs = [{{ from = "{input}", grouping = "fields", fields = ["word"] }}]

[bolts.sink]
type = "file_sink"
path = "out.jsonl"
inputs = ["count"]
"#
    )
}
