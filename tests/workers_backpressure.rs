//! Two workers flooding each other (acking off, no `max_spout_pending`): flow control per
//! destination task keeps them moving and every word is counted. (The release-build
//! benchmark is where the old per-connection-only credit deadlocked; this debug-build run
//! is the end-to-end check of the same shape.)

mod workers_support;

use workers_support::{final_counts, Topo};

#[test]
fn two_workers_sending_each_other_data_without_acking_do_not_deadlock() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("flood.topo.toml");
    std::fs::write(
        &file,
        r#"
[topology]
name = "flood"
workers = 2
acking = false

[spouts.sentences]
type = "random_sentences"
parallelism = 2
count = 30000

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["sentences"]

[bolts.count]
type = "word_count"
emit = "end"
parallelism = 2
inputs = [{ from = "split", fields = ["word"] }]

[bolts.out]
type = "file_sink"
path = "counts.jsonl"
inputs = ["count"]
"#,
    )
    .expect("write topology");
    let (code, out, err) = Topo::start(&file, dir.path(), &[]).wait();
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    let total: u64 = final_counts(&dir.path().join("counts.jsonl"))
        .values()
        .sum();
    assert_eq!(
        total, 300_000,
        "ten words per sentence, each counted once: {out}"
    );
}
