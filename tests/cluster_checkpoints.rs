//! Exactly-once state in cluster mode: a checkpointed word count (checkpoints in Redis)
//! over three supervisors on 127.0.0.2, .3 and .4; one supervisor is killed with SIGKILL
//! mid-run, the coordinator rolls every worker back to the last committed checkpoint, and
//! every word's final count in the sink equals the reference, once.
//!
//! The input and the sink's file are absolute paths in the test's folder: the hosts of
//! this cluster share a file system, as hosts sharing a network file system would.
//! Every process the test starts is killed when its guard drops (a supervisor's workers
//! die with it).

mod cluster_support;
mod redis_support;
mod state_support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use redis_support::RedisServer;
use serde_json::Value as Json;
use state_support::{counts_once, write_input};

const DEADLINE: Duration = Duration::from_secs(60);
const LINES: usize = 2_000_000;

/// Runs a client verb against the coordinator at `coordinator`: (exit code, stdout,
/// stderr).
fn topo(coordinator: SocketAddr, args: &[&str]) -> (i32, String, String) {
    cluster_support::client(&coordinator.to_string(), args)
}

/// The topology `id` as `topo list --json` shows it.
fn listing(coordinator: SocketAddr, id: &str) -> Option<Json> {
    let (code, out, _) = topo(coordinator, &["list", "--json"]);
    if code != 0 {
        return None;
    }
    let all: Json = serde_json::from_str(&out).ok()?;
    all.as_array()?.iter().find(|t| t["id"] == id).cloned()
}

fn wait_until(what: &str, logs: &dyn Fn() -> String, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting until {what}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn topology_file(dir: &Path, name: &str, settings: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.topo.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "{name}"
workers = 3
acking = false
checkpoint_interval_secs = 1
{settings}

[spouts.lines]
type = "file_lines"
path = "{input}"

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["lines"]

[bolts.count]
type = "word_count"
parallelism = 2
emit = "end"
inputs = [{{ from = "split", grouping = "fields", fields = ["word"] }}]

[bolts.sink]
type = "file_sink"
path = "{output}"
inputs = ["count"]
"#,
            input = dir.join("in.txt").display(),
            output = dir.join(format!("{name}.jsonl")).display(),
        ),
    )
    .expect("write the topology");
    file
}

#[test]
fn a_word_count_whose_supervisor_is_killed_counts_exactly_in_cluster_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start();
    let want = write_input(&dir.path().join("in.txt"), LINES);
    let coordinator_addr = free_addr("127.0.0.1");
    let coordinator = Proc::start(
        "coordinator",
        &[
            "coordinator",
            "--listen",
            &coordinator_addr.to_string(),
            "--state-dir",
            &dir.path().join("coordinator").display().to_string(),
            "--supervisor-timeout",
            "3s",
        ],
    );
    let supervisors: Vec<(SocketAddr, Option<Proc>)> = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| {
            let addr = free_addr(ip);
            let sdir = dir.path().join(format!("supervisor-{ip}"));
            let p = Proc::start(
                &format!("supervisor {ip}"),
                &[
                    "supervisor",
                    "--listen",
                    &addr.to_string(),
                    "--dir",
                    &sdir.display().to_string(),
                    "--coordinator",
                    &coordinator_addr.to_string(),
                ],
            );
            (addr, Some(p))
        })
        .collect();
    let supervisors = std::cell::RefCell::new(supervisors);
    let dead = std::cell::RefCell::new(String::new());
    let logs = || {
        let mut all = dead.borrow().clone();
        all.push_str(&coordinator.log());
        for p in supervisors.borrow().iter().filter_map(|(_, p)| p.as_ref()) {
            all.push_str(&p.log());
        }
        all
    };
    wait_until("every supervisor registered", &logs, || {
        coordinator.log().matches("Supervisor registered.").count() >= 3
    });

    // A local state backend cannot serve several hosts: refused.
    let local = topology_file(dir.path(), "local", "");
    let (code, _, err) = topo(
        coordinator_addr,
        &["submit", local.to_str().expect("utf-8")],
    );
    assert_ne!(code, 0, "a local state backend is refused");
    assert!(err.contains("state_backend = \"redis\""), "{err}");

    let settings = format!("state_backend = \"redis\"\nstate_url = \"{}\"", redis.url());
    let file = topology_file(dir.path(), "cwc", &settings);
    let (code, out, err) = topo(coordinator_addr, &["submit", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "submit failed: {err}\n{}", logs());
    let id = out.trim().to_string();

    let mut placement = Vec::new();
    wait_until("every worker runs", &logs, || {
        let Some(t) = listing(coordinator_addr, &id) else {
            return false;
        };
        let workers = t["assignments"].as_array().cloned().unwrap_or_default();
        placement = workers
            .iter()
            .map(|w| w["supervisor"].as_str().unwrap_or("").to_string())
            .collect();
        workers.len() == 3 && workers.iter().all(|w| w["running"] == true)
    });
    wait_until("a checkpoint commits", &logs, || {
        !redis.committed_checkpoints("cwc").is_empty()
    });
    assert!(
        !coordinator.log().contains("Every spout is done"),
        "the run read its whole input before the kill: make the input longer"
    );
    // Kill a supervisor that runs a worker of the topology.
    let p = supervisors
        .borrow_mut()
        .iter_mut()
        .find(|(a, p)| p.is_some() && placement.contains(&a.to_string()))
        .and_then(|(_, p)| p.take())
        .expect("a supervisor runs a worker");
    // SAFETY: kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(p.pid(), libc::SIGKILL) }, 0);
    dead.borrow_mut().push_str(&p.log());
    drop(p);
    wait_until("the topology rolls back", &logs, || {
        coordinator.log().contains("rolling every worker back")
    });
    let mut finished = Json::Null;
    wait_until("the topology finishes", &logs, || {
        let Some(t) = listing(coordinator_addr, &id) else {
            return false;
        };
        assert_ne!(t["status"], "failed", "{}\n{}", t["error"], logs());
        let done = t["status"] == "finished";
        finished = t;
        done
    });
    // The workers resumed from the checkpoint rather than starting over: the spout's
    // last incarnation read only what followed its checkpointed position.
    let lines = finished["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == "lines"))
        .and_then(|c| c["emitted"].as_u64())
        .expect("the spout's counts");
    assert!(
        lines < LINES as u64,
        "the spout read {lines} lines after the rollback: it did not resume from a checkpoint\n{}",
        logs()
    );
    let got = counts_once(&dir.path().join("cwc.jsonl"));
    assert_eq!(got.len(), want.len(), "one line per word");
    assert_eq!(got, want, "exact counts");
}
