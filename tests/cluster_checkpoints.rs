//! Exactly-once state in cluster mode: a checkpointed word count (checkpoints in Redis)
//! over three supervisors on 127.0.0.2, .3 and .4; one supervisor is killed with SIGKILL
//! mid-run, the coordinator rolls every worker back to the last committed checkpoint, and
//! every word's final count in the sink equals the reference, once.
//!
//! Every process the test starts is killed when its guard drops (a supervisor's workers
//! die with it).

mod cluster_support;
mod redis_support;
mod state_support;

use cluster_support::wordcount::{spout_emitted, topology_file, Cluster};
use redis_support::RedisServer;
use state_support::{counts_once, write_input};

const LINES: usize = 2_000_000;

#[test]
fn a_word_count_whose_supervisor_is_killed_counts_exactly_in_cluster_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start();
    let want = write_input(&dir.path().join("in.txt"), LINES);
    let c = Cluster::start(dir.path());

    // A local state backend cannot serve several hosts: refused.
    let local = topology_file(dir.path(), "local", "", 2);
    let (code, _, err) = c.topo(&["submit", local.to_str().expect("utf-8")]);
    assert_ne!(code, 0, "a local state backend is refused");
    assert!(err.contains("state_backend = \"redis\""), "{err}");

    let settings = format!("state_backend = \"redis\"\nstate_url = \"{}\"", redis.url());
    let file = topology_file(dir.path(), "cwc", &settings, 2);
    let (code, out, err) = c.topo(&["submit", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "submit failed: {err}\n{}", c.logs());
    let id = out.trim().to_string();

    let placement = c.wait_running(&id, 3);
    c.wait_until("a checkpoint commits", || {
        !redis.committed_checkpoints("cwc").is_empty()
    });
    assert!(
        !c.coordinator_log().contains("Every spout is done"),
        "the run read its whole input before the kill: make the input longer"
    );
    // Kill a supervisor that runs a worker of the topology.
    let p = c
        .supervisors
        .borrow_mut()
        .iter_mut()
        .find(|(a, p)| p.is_some() && placement.contains(&a.to_string()))
        .and_then(|(_, p)| p.take())
        .expect("a supervisor runs a worker");
    // SAFETY: kill(2) on a process this test started.
    assert_eq!(unsafe { libc::kill(p.pid(), libc::SIGKILL) }, 0);
    c.dead.borrow_mut().push_str(&p.log());
    drop(p);
    c.wait_until("the topology rolls back", || {
        c.coordinator_log().contains("rolling every worker back")
    });
    let finished = c.wait_finished(&id);
    // The workers resumed from the checkpoint rather than starting over: the spout's
    // last incarnation read only what followed its checkpointed position.
    let lines = spout_emitted(&finished);
    assert!(
        lines < LINES as u64,
        "the spout read {lines} lines after the rollback: it did not resume from a checkpoint\n{}",
        c.logs()
    );
    // The figures of its checkpoints, over its whole life, rollback included.
    let k = &finished["checkpoints"];
    assert!(k["completed"].as_u64() >= Some(1), "{k}");
    assert!(k["rollbacks"].as_u64() >= Some(1), "{k}");
    let got = counts_once(&dir.path().join("cwc.jsonl"));
    assert_eq!(got.len(), want.len(), "one line per word");
    assert_eq!(got, want, "exact counts");
}
