//! Shared by the built-in and multilang integration tests: a recording sink and `run`.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use topo::prelude::*;
use topo_engine::{RunOptions, RunSummary};

/// Every tuple a recorder got: its field names and values.
pub type Seen = Arc<Mutex<Vec<(Vec<String>, Vec<Value>)>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

struct Record {
    seen: Seen,
}

impl Bolt for Record {
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        self.seen
            .lock()
            .map_err(|_| "poisoned")?
            .push((input.fields().to_vec(), input.values().to_vec()));
        Ok(())
    }
}

/// The default registry plus a `record` bolt that keeps every input in the returned list.
pub fn registry() -> (Registry, Seen) {
    let mut registry = topo::default_registry();
    let seen: Seen = Arc::default();
    let keep = Arc::clone(&seen);
    registry.bolt(
        "record",
        "Records every input (tests).",
        |_: &NoConfig| Vec::new(),
        move |_: NoConfig| {
            Ok(Record {
                seen: Arc::clone(&keep),
            })
        },
    );
    (registry, seen)
}

/// The first value of every recorded tuple, as text, sorted.
pub fn firsts(seen: &Seen) -> Vec<String> {
    let mut v: Vec<String> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, vals)| match &vals[0] {
            Value::Str(s) => s.to_string(),
            other => other.to_string(),
        })
        .collect();
    v.sort();
    v
}

/// Runs `topology` with `dir` as the topology folder until it ends by itself; a guard
/// stops it after two minutes so a hang fails the assertions instead of the run.
pub fn run(topology: Topology, registry: &Registry, dir: &Path) -> RunSummary {
    let options = RunOptions {
        base_dir: dir.to_path_buf(),
        ..RunOptions::default()
    };
    let running = topo_engine::start(Arc::new(topology), registry, options).expect("start");
    if !running.wait_timeout(Duration::from_secs(120)) {
        running.stop();
    }
    running.wait()
}

/// Copies `examples/multilang/<name>` into `dir`, so that what a script writes to its
/// working directory stays out of the source tree.
pub fn copy_script(name: &str, dir: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/multilang")
        .join(name);
    std::fs::copy(&from, dir.join(name)).expect("copy script");
}

/// A TOML array of strings.
pub fn strings(v: &[&str]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::from(*s)).collect())
}

/// The last count `word_count` reported for every word.
pub fn final_counts(seen: &Seen) -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for (_, v) in seen.lock().expect("lock").iter() {
        let word = v[0].as_str().expect("word").to_string();
        let n = v[1].as_int().expect("count");
        let e = counts.entry(word).or_insert(0);
        *e = n.max(*e);
    }
    counts
}

/// How often each word occurs in `text`.
pub fn word_counts(text: &str) -> std::collections::BTreeMap<String, i64> {
    let mut counts = std::collections::BTreeMap::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

/// What one `topo` invocation did.
#[derive(Debug)]
pub struct Ran {
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output, without the `--json` summary line.
    pub stdout: String,
    /// The `--json` summary.
    pub summary: serde_json::Value,
    /// Standard error.
    pub stderr: String,
}

/// Runs `topo run --json --for 120s FILE` (the guard ends a hang) with `env` set and
/// `stdin` fed to it.
pub fn topo_run(file: &Path, env: &[(&str, &str)], stdin: &str) -> Ran {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_topo"));
    cmd.args(["run", "--json", "--for", "120s"])
        .arg(file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start topo");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.as_bytes()).expect("feed stdin");
    drop(input);
    let out = child.wait_with_output().expect("topo ran");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, last) = match stdout.trim_end().rsplit_once('\n') {
        Some((body, last)) => (format!("{body}\n"), last.to_string()),
        None => (String::new(), stdout.trim_end().to_string()),
    };
    Ran {
        code: out.status.code(),
        summary: serde_json::from_str(&last).unwrap_or(serde_json::Value::Null),
        stdout: body,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Copies the example files `names` (paths under `examples/`) into `dir`.
pub fn copy_examples(names: &[&str], dir: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for name in names {
        let to = dir.join(name);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).expect("folder");
        }
        std::fs::copy(root.join(name), &to).expect("copy example");
    }
}

/// The multilang protocol's framing for test scripts: `read()` returns the next message
/// (exits on EOF), `send(m)` writes one; `json`, `os`, `sys` and `threading` are imported.
pub const PY_PROTOCOL: &str = topo_multilang::PYTHON_PRELUDE;

/// Writes the Python script `body`, after [`PY_PROTOCOL`], to `path`.
pub fn write_python(path: &Path, body: &str) {
    std::fs::write(path, format!("{PY_PROTOCOL}\n{body}")).expect("write the script");
}

/// Fails the test, with an install hint, unless `program args…` runs and exits 0: a test
/// whose tool is missing must fail, never pass by skipping. `./test` installs `package`.
pub fn require(program: &str, args: &[&str], package: &str) {
    let ran = std::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    if !matches!(ran, Ok(s) if s.success()) {
        panic!(
            "`{program} {}` failed: this test needs {package}\n\
             hint: run ./test, which installs it (Debian packages with apt-get, Python ones \
             into .tools/venv; put .tools/venv/bin first on PATH when running cargo test by hand)",
            args.join(" ")
        );
    }
}

/// A `topo run FILE --ui 127.0.0.1:0` in the background, for the clients of its server;
/// killed on drop.
pub struct Served {
    child: std::process::Child,
    /// Where its server listens (`127.0.0.1:PORT`).
    pub addr: String,
}

impl Served {
    /// Starts `topo run file --ui 127.0.0.1:0 --for 120s` and waits (two minutes at most)
    /// for the line that says where it serves.
    pub fn start(file: &Path) -> Served {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
            .args(["run", "--ui", "127.0.0.1:0", "--for", "120s"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start topo run");
        let mut out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("http://").nth(1) {
                    let addr = rest.split('/').next().unwrap_or_default().to_string();
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(addr) => Served { child, addr },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("topo run --ui did not say where it serves");
            }
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
