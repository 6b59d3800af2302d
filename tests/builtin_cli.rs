//! The built-ins through `topo run`, the way a user runs them: standard input to the
//! console, and file_sink across restarts within one run.

mod common;

use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn stdin_lines_to_console_prints_every_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "echo.topo.toml",
        r#"
[topology]
name = "echo"

[spouts.input]
type = "stdin_lines"

[bolts.print]
type = "console"
prefix = "got"
inputs = ["input"]
"#,
    );
    let ran = common::topo_run(&file, &[], "first line\n\nthird, ünïcode\nno newline");
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(
        ran.stdout,
        "got: line=first line\ngot: line=\ngot: line=third, ünïcode\ngot: line=no newline\n"
    );
    assert_eq!(ran.summary["errors"], serde_json::json!([]));
}

#[test]
fn file_sink_appends_when_a_run_restarts_and_truncates_for_a_new_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "sink.topo.toml",
        r#"
[topology]
name = "sink"

[spouts.numbers]
type = "sequence"
count = 3

[bolts.out]
type = "file_sink"
path = "out.jsonl"
inputs = ["numbers"]
"#,
    );
    let out = dir.path().join("out.jsonl");
    let lines = |n: usize| "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n".repeat(n);
    // Two processes of one run (a worker restarted): the second appends.
    for (run, expect) in [("run-a", 1), ("run-a", 2), ("run-b", 1)] {
        let ran = common::topo_run(&file, &[("TOPO_RUN_ID", run)], "");
        assert_eq!(ran.code, Some(0), "{}", ran.stderr);
        assert_eq!(
            std::fs::read_to_string(&out).expect("output"),
            lines(expect),
            "after a process of {run}"
        );
    }
}

#[test]
fn multilang_logs_reach_the_engine_log() {
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_examples(
        &[
            "multilang_wordcount.topo.toml",
            "file_wordcount.txt",
            "multilang/split.py",
        ],
        dir.path(),
    );
    let ran = common::topo_run(
        &dir.path().join("multilang_wordcount.topo.toml"),
        &[("RUST_LOG", "info")],
        "",
    );
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    for task in [2, 3] {
        assert!(
            ran.stderr.contains(&format!("split started (task {task})")),
            "{}",
            ran.stderr
        );
    }
}

#[test]
fn topo_validate_reports_a_bad_expression_with_its_line_and_column() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = write(
        dir.path(),
        "bad.topo.toml",
        r#"[topology]
name = "bad"

[spouts.numbers]
type = "sequence"

[bolts.keep]
type = "filter"
where = "n >= && true"
fields = ["n"]
inputs = ["numbers"]
"#,
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("topo runs");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "bad.topo.toml:9:1: error: bolt \"keep\": \"where\": expected a value, found `&&` at column 6 of \"n >= && true\""
        ),
        "{stderr}"
    );
}
