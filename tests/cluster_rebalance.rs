//! `topo rebalance --parallelism` in cluster mode: a checkpointed word count (checkpoints
//! in Redis) over three supervisors counts with `count` at parallelism 2, is rebalanced
//! to 4 mid-run, and every word's final count in the sink equals the reference, once:
//! the state went over to the new layout from a committed checkpoint, each key to the
//! task that owns its key group now. Requests the coordinator cannot carry out are
//! refused with their reason, and the new parallelism survives a coordinator restart.
//!
//! Every process the test starts is killed when its guard drops.

mod cluster_support;
mod redis_support;
mod state_support;

use cluster_support::wordcount::{spout_emitted, topology_file, Cluster};
use redis_support::RedisServer;
use state_support::{counts_once, write_input};

const LINES: usize = 2_000_000;

#[test]
fn a_word_count_rebalanced_to_four_counters_mid_run_counts_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let redis = RedisServer::start();
    let want = write_input(&dir.path().join("in.txt"), LINES);
    let c = Cluster::start(dir.path());
    let settings = format!("state_backend = \"redis\"\nstate_url = \"{}\"", redis.url());
    let file = topology_file(dir.path(), "rwc", &settings, 2);
    let (code, out, err) = c.topo(&["submit", file.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "submit failed: {err}\n{}", c.logs());
    let id = out.trim().to_string();
    c.wait_running(&id, 3);
    let listed = c.listing(&id).expect("listed");
    assert_eq!(listed["parallelism"]["count"], 2, "{listed}");

    // What the coordinator cannot do is refused, and nothing changes.
    let refusals = [
        (
            "nope=2",
            format!("topology {id} has no component `nope` (it has "),
        ),
        (
            "count=0",
            "the parallelism of `count` must be at least 1".to_string(),
        ),
        (
            "count=129",
            "parallelism 129 of `count` is above its 128 key groups: in a checkpointed \
             topology every task must own a key group of the state"
                .to_string(),
        ),
        (
            "lines=2",
            "spout `lines` keeps its parallelism 1 in a checkpointed topology".to_string(),
        ),
    ];
    for (ask, why) in &refusals {
        let (code, _, err) = c.topo(&["rebalance", "rwc", "--parallelism", ask]);
        assert_eq!(code, 1, "{ask}: {err}");
        assert!(
            err.starts_with(&format!("error: the coordinator refused: {why}")),
            "{ask}: {err}"
        );
    }
    let (code, _, err) = c.topo(&["rebalance", "rwc", "--parallelism", "count"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("`count` is not COMPONENT=N"), "{err}");
    let (code, _, err) = c.topo(&["rebalance", "rwc"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--workers <N>|--parallelism <COMPONENT=N>"),
        "{err}"
    );

    c.wait_until("a checkpoint commits", || {
        !redis.committed_checkpoints("rwc").is_empty()
    });
    let (code, out, err) = c.topo(&["rebalance", "rwc", "--parallelism", "count=4"]);
    assert_eq!(code, 0, "rebalance failed: {err}\n{}", c.logs());
    assert!(
        out.starts_with(&format!(
            "rebalancing {id} to count=4: it restarts from its next committed checkpoint"
        )),
        "{out}"
    );
    c.wait_until("the rebalanced topology restarts", || {
        c.coordinator_log()
            .contains("Restarting the rebalanced topology.")
    });
    assert!(
        !c.coordinator_log().contains("Every spout is done"),
        "the run read its whole input before the rebalance: make the input longer"
    );
    let listed = c.listing(&id).expect("listed");
    assert_eq!(listed["parallelism"]["count"], 4, "{listed}");
    c.wait_running(&id, 3);

    let finished = c.wait_finished(&id);
    // The workers resumed from the checkpoint: the spout's last incarnation read only
    // what followed its checkpointed position.
    let lines = spout_emitted(&finished);
    assert!(
        lines < LINES as u64,
        "the spout read {lines} lines after the rebalance: it did not resume from a checkpoint\n{}",
        c.logs()
    );
    let got = counts_once(&dir.path().join("rwc.jsonl"));
    assert_eq!(got.len(), want.len(), "one line per word");
    assert_eq!(got, want, "exact counts");

    // The figures of its checkpoints; the new parallelism and the figures survive a
    // coordinator restart.
    let k = finished["checkpoints"].clone();
    assert!(k["completed"].as_u64() >= Some(2), "{k}");
    assert!(k["last_completed"].as_u64() >= Some(2), "{k}");
    assert!(k["size_bytes"].as_u64() > Some(0), "{k}");
    assert!(k["last_duration_ms"].as_f64() > Some(0.0), "{k}");
    c.restart_coordinator();
    c.wait_until("the restarted coordinator lists the topology", || {
        c.listing(&id).is_some()
    });
    let listed = c.listing(&id).expect("listed");
    assert_eq!(listed["parallelism"]["count"], 4, "{listed}");
    assert_eq!(listed["checkpoints"], k, "{listed}");
    let (code, table, _) = c.topo(&["list"]);
    assert_eq!(code, 0);
    let last = k["last_completed"].as_u64().expect("an id");
    assert!(
        table.contains(&format!("  checkpoints: last {last} (")),
        "{table}"
    );
}
