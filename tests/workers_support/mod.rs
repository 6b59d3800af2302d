//! Helpers of the `workers_*` tests: a `topo run` child with its status file, a named
//! pipe the test feeds a spout through, waits on observable conditions.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: the suite shares two cores.
pub(crate) const DEADLINE: Duration = Duration::from_secs(120);

/// Polls `cond` until it holds; panics with `what` (and `context()`) after `DEADLINE`.
pub(crate) fn wait_until(what: &str, context: impl Fn() -> String, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting until {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `topo run FILE --status-file ...`; killed on drop if still running.
pub(crate) struct Topo {
    child: Child,
    stdout: Option<std::thread::JoinHandle<String>>,
    stderr: Arc<Mutex<String>>,
    err_thread: Option<std::thread::JoinHandle<()>>,
    pub(crate) status_file: PathBuf,
}

impl Topo {
    /// Starts `topo run file` with a status file in `dir`.
    pub(crate) fn start(file: &Path, dir: &Path, extra: &[&str]) -> Topo {
        let status_file = dir.join("status.json");
        let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
            .arg("run")
            .arg(file)
            .arg("--status-file")
            .arg(&status_file)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start topo");
        let mut out = child.stdout.take().expect("stdout");
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&stderr);
        let err_thread = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .expect("lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        Topo {
            child,
            stdout: Some(stdout),
            stderr,
            err_thread: Some(err_thread),
            status_file,
        }
    }

    /// The supervisor's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub(crate) fn stderr(&self) -> String {
        self.stderr.lock().expect("lock").clone()
    }

    /// The status file, once written.
    pub(crate) fn status(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(&self.status_file).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Waits until every worker runs; returns (pid, addr) per worker.
    pub(crate) fn wait_running(&self, workers: usize) -> Vec<(i32, String)> {
        let mut found = Vec::new();
        wait_until(
            "every worker runs",
            || self.stderr(),
            || {
                let Some(s) = self.status() else { return false };
                let ws = s["workers"].as_array().cloned().unwrap_or_default();
                if ws.len() != workers || !ws.iter().all(|w| w["running"] == true) {
                    return false;
                }
                found = ws
                    .iter()
                    .map(|w| {
                        (
                            w["pid"].as_i64().expect("pid") as i32,
                            w["addr"].as_str().expect("addr").to_string(),
                        )
                    })
                    .collect();
                true
            },
        );
        found
    }

    /// Waits until worker `worker`, whose process was `old_pid`, was restarted once and
    /// runs again.
    pub(crate) fn wait_restarted(&self, worker: usize, old_pid: i32) {
        wait_until(
            &format!("worker {worker} was restarted and runs"),
            || self.stderr(),
            || {
                self.status().is_some_and(|s| {
                    let w = &s["workers"][worker];
                    w["restarts"] == 1 && w["running"] == true && w["pid"] != old_pid
                })
            },
        );
    }

    /// Waits for the exit; returns (code, stdout, stderr).
    pub(crate) fn wait(mut self) -> (i32, String, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("topo run did not end\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let out = self
            .stdout
            .take()
            .map(|h| h.join().expect("stdout"))
            .unwrap_or_default();
        if let Some(h) = self.err_thread.take() {
            let _ = h.join();
        }
        (status.code().unwrap_or(-1), out, self.stderr())
    }

    /// Waits for a clean exit after `kills` rollbacks ([`Topo::kill_after_commits`]);
    /// returns the log.
    pub(crate) fn wait_rolled_back(self, kills: usize) -> String {
        let (code, stdout, stderr) = self.wait();
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
        assert_eq!(
            stderr.matches("rolling every worker back").count(),
            kills,
            "{stderr}"
        );
        stderr
    }

    /// Sends `signal` to the supervisor.
    pub(crate) fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Kills a worker of a checkpointed run with SIGKILL `kills` times, each time after
    /// every worker of the new incarnation runs and a checkpoint committed since the last
    /// rollback (`committed` lists the committed ids), and waits for each rollback. Fails
    /// if the run read its whole input before a kill.
    pub(crate) fn kill_after_commits(
        &self,
        workers: usize,
        kills: usize,
        committed: impl Fn() -> Vec<u64>,
    ) {
        let mut last = 0;
        let mut previous: Vec<i32> = Vec::new();
        for k in 0..kills {
            // Every worker of the new incarnation runs (none of the pids killed or rolled
            // back).
            let mut running = Vec::new();
            wait_until(
                "every worker of the new incarnation runs",
                || self.stderr(),
                || {
                    running = self.wait_running(workers);
                    !running.iter().any(|(pid, _)| previous.contains(pid))
                },
            );
            previous = running.iter().map(|w| w.0).collect();
            wait_until(
                "a checkpoint commits after the last rollback",
                || self.stderr(),
                || committed().last().is_some_and(|&id| id > last),
            );
            last = *committed().last().expect("a checkpoint");
            assert!(
                !self.stderr().contains("Every spout is done"),
                "the run read its whole input before kill {k}: make the input longer"
            );
            let (victim, _) = running[(k + 1) % workers];
            // SAFETY: kill(2) on a worker process this test's topo started.
            assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
            wait_until(
                "the run rolls back",
                || self.stderr(),
                || self.stderr().matches("rolling every worker back").count() > k,
            );
        }
    }
}

/// Runs `file` (in `dir`, `workers` workers) until `ready()` holds (`what`), then kills
/// its supervisor with SIGKILL (its workers die with it). Fails if the run read its
/// whole input first.
pub(crate) fn run_then_kill(
    file: &Path,
    dir: &Path,
    workers: usize,
    what: &str,
    ready: impl Fn() -> bool,
) {
    let topo = Topo::start(file, dir, &[]);
    topo.wait_running(workers);
    wait_until(what, || topo.stderr(), ready);
    topo.signal(libc::SIGKILL);
    let (code, _, stderr) = topo.wait();
    assert_ne!(code, 0, "killed");
    assert!(
        !stderr.contains("Every spout is done"),
        "the run read its whole input before the kill: make the input longer"
    );
}

/// Runs `topo run file --resume` (in `dir`) to a clean exit; returns its log.
pub(crate) fn resume(file: &Path, dir: &Path) -> String {
    let topo = Topo::start(file, dir, &["--resume"]);
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    stderr
}

impl Drop for Topo {
    fn drop(&mut self) {
        // Workers die with the supervisor (PR_SET_PDEATHSIG).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a named pipe at `path`.
pub(crate) fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid C string.
    let r = unsafe { libc::mkfifo(c.as_ptr(), 0o600) };
    assert_eq!(r, 0, "mkfifo {}", path.display());
}

/// Opens the write end of a named pipe once a reader opened it (within the deadline).
pub(crate) fn open_writer(path: &Path, topo: &Topo) -> File {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(p));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(f) => f.expect("open the pipe"),
        Err(_) => panic!("no spout opened the pipe\n{}", topo.stderr()),
    }
}

/// The `field` values of every line of a file_sink output (empty if there is none yet).
pub(crate) fn sink_values(path: &Path, field: &str) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v[field].clone())
        .collect()
}

/// The distinct string values of `field` in a file_sink output.
pub(crate) fn sink_strings(path: &Path, field: &str) -> BTreeSet<String> {
    sink_values(path, field)
        .into_iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect()
}

/// The final counts in a word_count -> file_sink output: the largest count per word.
pub(crate) fn final_counts(path: &Path) -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(path).expect("sink output");
    let mut counts = BTreeMap::new();
    for l in text.lines() {
        let v: serde_json::Value = serde_json::from_str(l).expect("a json line");
        let word = v["word"].as_str().expect("word").to_string();
        let n = v["count"].as_u64().expect("count");
        let e = counts.entry(word).or_insert(0);
        *e = n.max(*e);
    }
    counts
}

/// A row of the summary table: (emitted, executed, acked, failed).
pub(crate) fn row(table: &str, id: &str) -> (u64, u64, u64, u64) {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .unwrap_or_else(|| panic!("no row `{id}` in\n{table}"));
    let n: Vec<u64> = line
        .split_whitespace()
        .skip(3)
        .take(4)
        .map(|x| x.parse().expect("a number"))
        .collect();
    (n[0], n[1], n[2], n[3])
}
