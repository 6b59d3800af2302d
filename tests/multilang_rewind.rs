//! A multilang spout that rewinds: a Python counting spout written on the prelude's
//! `Spout` base class, opting in with `rewinds = true`, in a checkpointed word count over
//! two workers, one of them killed with SIGKILL mid-run, still counts every word
//! exactly, once; so does one whose Python child is killed (its worker exits and the run
//! rolls back). Without the opt-in `topo validate` refuses it in a checkpointed topology.

mod state_support;
mod workers_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use state_support::{committed, count_into_sink, counts_once};
use workers_support::{wait_until, Topo};

/// Numbers the spout counts; 50 words, each `NUMBERS / 50` times.
const NUMBERS: u64 = 400_000;

/// The spout (after the prelude): `n` counts up; `position` is `{"n": n}`.
const COUNTING: &str = r#"
N = int(sys.argv[1])

class Counting(Spout):
    def initialize(self, conf, context):
        self.n = 0

    def next_tuple(self):
        if self.n >= N:
            sys.exit(0)
        for _ in range(min(100, N - self.n)):
            self.emit(["w%d" % (self.n % 50)])
            self.n += 1

    def position(self):
        return {"n": self.n}

    def seek(self, position):
        self.n = position["n"]

Counting().run()
"#;

fn topology(dir: &Path, rewinds: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("counting.py"),
        format!("{}\n{COUNTING}", topo_multilang::PYTHON_PRELUDE),
    )
    .expect("write the script");
    let file = dir.join("ml.topo.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "ml"
workers = 2
acking = false
checkpoint_interval_secs = 0.5
state_dir = "state"

[spouts.numbers]
type = "multilang"
command = ["python3", "counting.py", "{NUMBERS}"]
outputs = ["word"]
{rewinds}

{}"#,
            count_into_sink("numbers", 2)
        ),
    )
    .expect("write topology");
    file
}

/// Runs the topology in `dir` with `kill` once a checkpoint committed; checks the run
/// rolled back once and counted every word exactly; returns its log.
fn counts_exactly_after(dir: &Path, kill: impl FnOnce(&Topo)) -> String {
    let file = topology(dir, "rewinds = true");
    let topo = Topo::start(&file, dir, &[]);
    kill(&topo);
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert_eq!(
        stderr.matches("rolling every worker back").count(),
        1,
        "{stderr}"
    );
    let got = counts_once(&dir.join("out.jsonl"));
    let want: BTreeMap<String, u64> = (0..50).map(|i| (format!("w{i}"), NUMBERS / 50)).collect();
    assert_eq!(got, want, "exact counts");
    stderr
}

#[test]
fn a_rewinding_python_spout_killed_mid_run_counts_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    counts_exactly_after(dir.path(), |topo| {
        topo.kill_after_commits(2, 1, || committed(&state))
    });
}

/// The spout's child: the process running `counting.py` in `dir`.
fn child_in(dir: &Path) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: i32 = e.file_name().to_str()?.parse().ok()?;
        let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let script = cmdline.split(|&b| b == 0).nth(1) == Some(b"counting.py".as_slice());
        (cwd == dir && script).then_some(pid)
    })
}

#[test]
fn a_rewinding_python_spout_whose_child_is_killed_rolls_the_run_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let stderr = counts_exactly_after(dir.path(), |topo| {
        topo.wait_running(2);
        wait_until(
            "a checkpoint commits",
            || topo.stderr(),
            || !committed(&state).is_empty(),
        );
        let mut pid = None;
        wait_until(
            "the spout's child runs",
            || topo.stderr(),
            || {
                pid = child_in(&dir.path().canonicalize().expect("dir"));
                pid.is_some()
            },
        );
        assert!(
            !topo.stderr().contains("Every spout is done"),
            "the run read its whole input before the kill: make it longer"
        );
        let pid = pid.expect("found");
        // SAFETY: kill(2) on the spout child this test's run started.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    });
    assert!(
        stderr.contains("A rewinding multilang spout lost its child in a checkpointed run"),
        "{stderr}"
    );
}

#[test]
fn topo_validate_refuses_a_checkpointed_multilang_spout_that_does_not_opt_in() {
    let dir = tempfile::tempdir().expect("temp dir");
    let validate = |file: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_topo"))
            .arg("validate")
            .arg(file)
            .output()
            .expect("topo runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = validate(&topology(dir.path(), ""));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "ml.topo.toml:10:1: error: spout \"numbers\": type \"multilang\" cannot rewind, so a checkpointed topology cannot replay it after a failure"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "= hint: set `rewinds = true` if its child answers the `position` and `seek` commands, or remove \"checkpoint_interval_secs\""
        ),
        "{stderr}"
    );
    let (code, stderr) = validate(&topology(dir.path(), "rewinds = false"));
    assert_eq!(code, Some(1), "{stderr}");
    let (code, stderr) = validate(&topology(dir.path(), "rewinds = true"));
    assert_eq!(code, Some(0), "{stderr}");
}
