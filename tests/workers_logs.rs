//! Logs written to a pipe or a file: plain text, no colour codes, and the worker
//! processes' lines in the same format as the supervisor's.

use std::process::{Command, Stdio};

const TOPOLOGY: &str = r#"
[topology]
name = "logs"
workers = 2

[spouts.sentences]
type = "random_sentences"
count = 2000

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["sentences"]
"#;

/// The shape of a log line's prefix: the timestamp with every digit as `0`, the level and
/// the target, e.g. `0000-00-00T00:00:00.000000Z  INFO topo_engine::launcher:`.
fn prefix_shape(line: &str) -> Option<(String, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let shape: String = stamp
        .chars()
        .map(|c| if c.is_ascii_digit() { '0' } else { c })
        .collect();
    let level_and_target = rest.split(": ").next()?;
    Some((shape, level_and_target))
}

#[test]
fn worker_and_supervisor_lines_to_a_pipe_are_plain_and_alike() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("logs.topo.toml");
    std::fs::write(&file, TOPOLOGY).expect("write the topology");
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", "--for", "120s"])
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("topo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !out.stderr.contains(&0x1b),
        "no ANSI escape in logs to a pipe:\n{stderr}"
    );
    // "Worker started." is the supervisor's line, "Worker listening." each worker's own.
    let supervisor: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" topo_engine::launcher: Worker started."))
        .collect();
    let workers: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(" topo_engine::launcher::worker: Worker listening."))
        .collect();
    assert_eq!(supervisor.len(), 2, "{stderr}");
    assert_eq!(workers.len(), 2, "{stderr}");
    let (stamp, level) = prefix_shape(supervisor[0]).expect("a log line");
    assert_eq!(stamp, "0000-00-00T00:00:00.000000Z", "{}", supervisor[0]);
    assert_eq!(level, " INFO topo_engine::launcher", "{}", supervisor[0]);
    for line in &workers {
        let (s, l) = prefix_shape(line).expect("a log line");
        assert_eq!(s, stamp, "{line}");
        assert_eq!(l, " INFO topo_engine::launcher::worker", "{line}");
        assert!(
            line.contains(" worker=") && line.contains(" pid="),
            "fields as key=value after the message: {line}"
        );
    }
}
