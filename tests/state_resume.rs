//! `topo run --resume`: a checkpointed word count whose supervisor is killed mid-run
//! resumes from its last committed checkpoint and still writes exact counts, once —
//! rescaled from two counting tasks to four, and from the previous checkpoint when the
//! newest one is corrupt.
//!
//! The input is 300,000 lines (1.5 M words); the first run is killed (SIGKILL of the
//! supervisor, whose workers die with it) once two checkpoints committed.

mod state_support;
mod workers_support;

use std::path::Path;

use state_support::{committed, count_into_sink, counts_once, write_input};
use workers_support::{resume, run_then_kill};

const LINES: usize = 300_000;

fn topology(count_parallelism: usize) -> String {
    format!(
        r#"
[topology]
name = "wc"
workers = 2
acking = false
checkpoint_interval_secs = 0.5
state_dir = "state"

[spouts.lines]
type = "file_lines"
path = "in.txt"

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["lines"]

{}"#,
        count_into_sink("split", count_parallelism)
    )
}

/// Runs the topology in `dir` until two checkpoints committed, then kills its
/// supervisor; returns the committed checkpoints.
fn run_and_kill(dir: &Path, file: &Path) -> Vec<u64> {
    let state = dir.join("state");
    run_then_kill(file, dir, 2, "two checkpoints commit", || {
        committed(&state).len() >= 2
    });
    committed(&state)
}

#[test]
fn a_killed_run_resumes_at_another_parallelism_with_exact_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let want = write_input(&dir.path().join("in.txt"), LINES);
    let file = dir.path().join("wc.topo.toml");
    std::fs::write(&file, topology(2)).expect("write topology");
    let ids = run_and_kill(dir.path(), &file);
    let last = *ids.last().expect("a checkpoint");

    std::fs::write(&file, topology(4)).expect("write topology");
    let log = resume(&file, dir.path());
    assert!(
        log.contains(&format!("Resuming from a checkpoint. checkpoint={last}")),
        "{log}"
    );
    assert_eq!(counts_once(&dir.path().join("out.jsonl")), want);
}

#[test]
fn a_corrupt_checkpoint_is_skipped_and_the_previous_one_resumed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let want = write_input(&dir.path().join("in.txt"), LINES);
    let file = dir.path().join("wc.topo.toml");
    std::fs::write(&file, topology(2)).expect("write topology");
    let ids = run_and_kill(dir.path(), &file);
    let (previous, newest) = (ids[ids.len() - 2], ids[ids.len() - 1]);

    let part = dir
        .path()
        .join("state")
        .join(format!("chk-{newest}"))
        .join("count.0");
    let mut bytes = std::fs::read(&part).expect("read a part");
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&part, bytes).expect("flip a byte");

    let log = resume(&file, dir.path());
    assert!(
        log.contains(&format!(
            "checkpoint {newest} is corrupt: part `count.0` checksum does not match"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "Resuming from a checkpoint. checkpoint={previous}"
        )),
        "{log}"
    );
    assert_eq!(counts_once(&dir.path().join("out.jsonl")), want);
}
