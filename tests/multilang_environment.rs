//! Secrets stay out of workers and multilang children: a run started with the cluster
//! secret in its environment passes it to neither; in a cluster, neither the secret nor
//! the topology's worker key is in a worker's or a child's environment or command line,
//! in the coordinator's state or in a log.

mod cluster_support;
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use topo_cluster::secret::Secret;

const SECRET: &str = "s3cr3t-cluster-key-that-must-not-leak";

/// Two workers; the multilang bolt's child records its own environment and command
/// line, and its parent's (the worker process), then acks.
const TOPOLOGY: &str = r#"
[topology]
name = "environment"
workers = 2
disable_loadaware_messaging = true   # each child gets tuples, so each records before the end

[spouts.numbers]
type = "sequence"
count = 4

[bolts.spy]
type = "multilang"
command = ["python3", "spy.py"]
parallelism = 2
inputs = ["numbers"]
"#;

const SPY: &str = r#"
hs = read()
send({"pid": os.getpid()})
def dump(pid):
    with open("/proc/%d/environ" % pid, "rb") as f:
        env = f.read()
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        cmd = f.read()
    return env + b"\n" + cmd
with open("seen-%d" % os.getpid(), "wb") as f:
    f.write(b"CHILD\n" + dump(os.getpid()) + b"\nWORKER\n" + dump(os.getppid()))
while True:
    t = read()
    if t["stream"] == "__heartbeat":
        send({"command": "sync"})
        continue
    send({"command": "ack", "id": t["id"]})
"#;

#[test]
fn workers_and_multilang_children_never_see_the_cluster_secret() {
    common::require("python3", &["--version"], "python3");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("environment.topo.toml");
    std::fs::write(&file, TOPOLOGY).expect("write the topology");
    common::write_python(&dir.path().join("spy.py"), SPY);
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", "--for", "120s"])
        .arg(&file)
        .env("TOPO_CLUSTER_SECRET", SECRET)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdin(Stdio::null())
        .output()
        .expect("topo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir.path()).expect("read the folder") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with("seen-") {
            continue;
        }
        seen += 1;
        let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).to_string();
        assert!(!text.contains(SECRET), "{text}");
        assert!(!text.contains("TOPO_CLUSTER_SECRET"), "{text}");
        // The worker is `topo worker`, with the variables it needs and no more.
        let worker = text.split("\nWORKER\n").nth(1).expect("the worker's part");
        assert!(worker.contains("worker\0--index\0"), "{worker:?}");
        assert!(worker.contains("PATH="), "{worker:?}");
        assert!(worker.contains("TOPO_RUN_ID="), "{worker:?}");
    }
    assert_eq!(seen, 2, "one record per multilang child; stderr:\n{stderr}");
}

/// The `seen-*` records the spy children wrote under `dir` (any depth).
fn records(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("seen-"))
            {
                found.push(path);
            }
        }
    }
    found
}

/// True when `haystack` holds `needle` anywhere.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn in_a_cluster_neither_the_secret_nor_the_worker_key_leaves_the_supervisor() {
    common::require("python3", &["--version"], "python3");
    let dir = tempfile::tempdir().expect("temp dir");
    let secret_file = dir.path().join("cluster.secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).expect("write the secret");
    let spy = dir.path().join("spy.py");
    common::write_python(&spy, SPY);
    let file = dir.path().join("environment.topo.toml");
    let text = TOPOLOGY.replace("\"spy.py\"", &format!("{:?}", spy.display().to_string()));
    std::fs::write(&file, text).expect("write the topology");

    let coordinator_addr = free_addr("127.0.0.1").to_string();
    let state = dir.path().join("state");
    let secret_arg = secret_file.display().to_string();
    let coordinator = Proc::coordinator(&coordinator_addr, &state, &secret_file, &[]);
    // The supervisor takes the secret from its environment: the one a worker would
    // inherit if it were not scrubbed.
    let supervisor_dir = dir.path().join("supervisor");
    let supervisor = Proc::start_env(
        "supervisor",
        &[
            "supervisor",
            "--listen",
            &free_addr("127.0.0.1").to_string(),
            "--dir",
            &supervisor_dir.display().to_string(),
            "--coordinator",
            &coordinator_addr,
        ],
        &[("TOPO_CLUSTER_SECRET", SECRET)],
    );
    let logs = || format!("{}{}", coordinator.log(), supervisor.log());
    let start = Instant::now();
    let submitted = loop {
        let out = Command::new(env!("CARGO_BIN_EXE_topo"))
            .arg("submit")
            .arg(&file)
            .args([
                "--coordinator",
                &coordinator_addr,
                "--secret-file",
                &secret_arg,
            ])
            .env_remove("TOPO_CLUSTER_SECRET")
            .stdin(Stdio::null())
            .output()
            .expect("topo submit");
        if out.status.success() && logs().contains("Supervisor registered.") {
            break String::from_utf8_lossy(&out.stdout).trim().to_string();
        }
        assert!(start.elapsed() < Duration::from_secs(90), "{}", logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    while records(&supervisor_dir).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "no record from both children\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let key = Secret::from_bytes(SECRET).topology_key(&submitted);
    let key_hex = topo_engine::launcher::worker::hex(&key);
    let secrets: [(&str, &[u8]); 3] = [
        ("the cluster secret", SECRET.as_bytes()),
        ("the worker key", &key),
        ("the worker key in hex", key_hex.as_bytes()),
    ];
    let mut places: Vec<(String, Vec<u8>)> = records(&supervisor_dir)
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read(&p).expect("read")))
        .collect();
    for (name, text) in &places {
        let text = String::from_utf8_lossy(text);
        let worker = text.split("\nWORKER\n").nth(1).expect("the worker's part");
        assert!(
            worker.contains("worker\0--index\0"),
            "{name}: not a worker's command line: {worker:?}"
        );
        assert!(!text.contains("TOPO_CLUSTER_SECRET"), "{name}: {text}");
    }
    // The search finds what is there: the supervisor itself has the secret.
    let supervisor_env =
        std::fs::read(format!("/proc/{}/environ", supervisor.pid())).expect("environ");
    assert!(holds(&supervisor_env, SECRET.as_bytes()));
    let state_json = std::fs::read(state.join("state.json")).expect("the coordinator's state");
    assert!(
        holds(&state_json, submitted.as_bytes()),
        "the topology is in the state"
    );
    places.push(("state.json".into(), state_json));
    places.push((
        "the coordinator's log".into(),
        coordinator.log().into_bytes(),
    ));
    places.push(("the supervisor's log".into(), supervisor.log().into_bytes()));
    for (place, bytes) in &places {
        for (what, secret) in secrets {
            assert!(!holds(bytes, secret), "{what} is in {place}");
        }
    }
}
