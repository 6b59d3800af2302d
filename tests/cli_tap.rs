//! `topo tap`: a sample of the tuples a component of a running word count emits, one JSON
//! object per line.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn tap_prints_a_limited_sample_of_split_as_json_lines() {
    let served = common::Served::start(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wordcount.topo.toml"),
    );
    let lines = tap_lines(&[
        "split",
        "--addr",
        &served.addr,
        "--limit",
        "10",
        "--rate",
        "50",
    ]);
    assert_eq!(lines.len(), 10, "{lines:?}");
    for v in lines {
        assert_eq!(v["component"], "split", "{v}");
        assert_eq!(v["stream"], "default", "{v}");
        assert!(
            v["fields"]["word"].as_str().is_some_and(|w| !w.is_empty()),
            "{v}"
        );
        assert!(v["task"].as_u64().is_some(), "{v}");
        // Acking is on: the tuple belongs to its sentence's tree.
        assert_eq!(v["anchors"].as_object().map(|a| a.len()), Some(1), "{v}");
    }
}

#[test]
fn tap_of_an_unknown_component_says_which_exist() {
    let served = common::Served::start(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wordcount.topo.toml"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["tap", "splt", "--addr", &served.addr, "--limit", "1"])
        .output()
        .expect("topo tap runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no component `splt` (the components: sentences, split, count, print)"),
        "{stderr}"
    );
}

/// `topo tap ... --limit N` against `addr`: its stdout lines, each a JSON object, after
/// checking that it exited 0.
fn tap_lines(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("tap")
        .args(args)
        .output()
        .expect("topo tap runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
        .collect()
}

#[test]
fn tap_reaches_the_tasks_of_every_worker_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wordcount.topo.toml"),
    )
    .expect("read the example");
    let file = dir.path().join("wordcount.topo.toml");
    std::fs::write(&file, example.replace("workers = 1", "workers = 2")).expect("write");
    let served = common::Served::start(&file);

    let lines = tap_lines(&["split", "--addr", &served.addr, "--limit", "10"]);
    assert_eq!(lines.len(), 10);
    for v in &lines {
        assert_eq!(v["component"], "split", "{v}");
        assert!(
            v["fields"]["word"].as_str().is_some_and(|w| !w.is_empty()),
            "{v}"
        );
    }
    // split's two tasks run in different workers (the plan spreads them): tap again
    // until both were seen (a worker that was never asked would never show). A sample
    // is the freshest record after each pause, so a short one may come from the worker
    // whose records arrive first: take 200 at 1,000 a second.
    let mut tasks = std::collections::BTreeSet::new();
    let start = std::time::Instant::now();
    while tasks.len() < 2 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "only tasks {tasks:?}"
        );
        let lines = tap_lines(&[
            "split",
            "--addr",
            &served.addr,
            "--limit",
            "200",
            "--rate",
            "1000",
        ]);
        tasks.extend(lines.iter().filter_map(|v| v["task"].as_u64()));
    }
}
