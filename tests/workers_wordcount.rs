//! A bounded word count over a file gives the same final counts with its tasks in three
//! worker processes as in one, and both match a direct count. `word_count` emits each
//! word once when its input ends, so the ends of streams must cross the processes too.

mod workers_support;

use std::collections::BTreeMap;
use std::path::Path;

use workers_support::{final_counts, row, Topo};

/// 3000 lines of words from a small vocabulary, in a fixed pseudo-random order.
fn text() -> String {
    let words = [
        "pemi", "ka", "tuk", "oro", "sel", "vani", "mu", "drel", "ix", "yo",
    ];
    let mut x: u64 = 7;
    let mut out = String::new();
    for _ in 0..3000 {
        let n = 1 + (x % 9) as usize;
        for i in 0..n {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i > 0 {
                out.push(' ');
            }
            out.push_str(words[(x >> 33) as usize % words.len()]);
        }
        out.push('\n');
    }
    out
}

fn expected(text: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for w in text.split_whitespace() {
        *m.entry(w.to_string()).or_insert(0) += 1;
    }
    m
}

fn run(dir: &Path, workers: usize, encrypt: bool) -> BTreeMap<String, u64> {
    let name = format!("{workers}{}", if encrypt { "-sealed" } else { "" });
    let file = dir.join(format!("wc{name}.topo.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "wc"
workers = {workers}
acking = true
encrypt = {encrypt}

[spouts.lines]
type = "file_lines"
path = "words.txt"

[bolts.split]
type = "split_words"
parallelism = 3
inputs = ["lines"]

[bolts.count]
type = "word_count"
emit = "end"
parallelism = 3
inputs = [{{ from = "split", fields = ["word"] }}]

[bolts.out]
type = "file_sink"
parallelism = 2
path = "counts{name}.jsonl"
inputs = ["count"]
"#
        ),
    )
    .expect("write topology");
    let (code, out, err) = Topo::start(&file, dir, &[]).wait();
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let (emitted, _, acked, failed) = row(&out, "lines");
    assert_eq!((emitted, acked, failed), (3000, 3000, 0), "{out}");
    let sink = dir.join(format!("counts{name}.jsonl"));
    let lines = std::fs::read_to_string(&sink)
        .expect("sink output")
        .lines()
        .count();
    let counts = final_counts(&sink);
    assert_eq!(lines, counts.len(), "with emit = \"end\", each word once");
    counts
}

#[test]
fn three_workers_count_the_same_as_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = text();
    std::fs::write(dir.path().join("words.txt"), &text).expect("write input");
    let want = expected(&text);
    let one = run(dir.path(), 1, false);
    assert_eq!(one, want, "one worker");
    let three = run(dir.path(), 3, false);
    assert_eq!(three, want, "three workers");
}

#[test]
fn three_workers_with_sealed_frames_count_the_same() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = text();
    std::fs::write(dir.path().join("words.txt"), &text).expect("write input");
    assert_eq!(run(dir.path(), 3, true), expected(&text));
}

#[test]
fn topo_plan_spreads_every_component_over_the_workers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("p.topo.toml");
    std::fs::write(
        &file,
        "[topology]\nname = \"p\"\nworkers = 2\n\n[spouts.s]\ntype = \"sequence\"\nparallelism = 2\n\n\
         [bolts.b]\ntype = \"console\"\nparallelism = 2\ninputs = [\"s\"]\n",
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("plan")
        .arg(&file)
        .output()
        .expect("topo plan");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "worker 0: 1 s[0], 3 b[0], 5 __acker[0]\nworker 1: 2 s[1], 4 b[1], 6 __acker[1]\n"
    );
}
