//! Supervisors listening on `0.0.0.0`: each is known by the address it advertises
//! (`--advertise HOST`, or without it the address it reaches the coordinator from), so
//! ids stay unique and workers are reached at a real address, never at `0.0.0.0`; a
//! second supervisor with an id already connected is refused.

mod cluster_support;
mod workers_support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use serde_json::Value as Json;
use workers_support::sink_values;

const DEADLINE: Duration = Duration::from_secs(90);

/// `topo list --json` from the coordinator at `coordinator` (None until it answers).
fn list(coordinator: &str, secret: &str) -> Option<Json> {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["list", "--json", "--coordinator", coordinator])
        .args(["--secret-file", secret])
        .env_remove("TOPO_CLUSTER_SECRET")
        .output()
        .expect("run topo list");
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

#[test]
fn supervisors_on_every_address_are_known_by_the_address_they_advertise() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Binding every address takes a secret.
    let secret_file = dir.path().join("cluster.secret");
    std::fs::write(&secret_file, "a secret\n").expect("write the secret");
    let secret = secret_file.display().to_string();
    let coordinator_addr = free_addr("127.0.0.1").to_string();
    let coordinator = Proc::coordinator(
        &coordinator_addr,
        &dir.path().join("state"),
        &secret_file,
        &[],
    );
    // Two supervisors on every address, each told what to advertise; a third without
    // --advertise, which takes the address it reaches the coordinator from (127.0.0.1).
    let mut supervisors = Vec::new();
    let mut want = BTreeSet::new();
    for (i, advertise) in [Some("127.0.0.2"), Some("127.0.0.3"), None]
        .into_iter()
        .enumerate()
    {
        let port = free_addr("0.0.0.0").port();
        let mut args = vec![
            "supervisor".to_string(),
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--dir".into(),
            dir.path()
                .join(format!("supervisor-{i}"))
                .display()
                .to_string(),
            "--coordinator".into(),
            coordinator_addr.clone(),
            "--secret-file".into(),
            secret.clone(),
        ];
        if let Some(a) = advertise {
            args.extend(["--advertise".into(), a.into()]);
        }
        want.insert(format!("{}:{port}", advertise.unwrap_or("127.0.0.1")));
        supervisors.push(Proc::start(&format!("supervisor {i}"), &args));
    }
    let logs = || {
        let mut all = coordinator.log();
        for s in &supervisors {
            all.push_str(&s.log());
        }
        all
    };
    let start = Instant::now();
    while coordinator.log().matches("Supervisor registered.").count() < 3 {
        assert!(start.elapsed() < DEADLINE, "{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        supervisors[2]
            .log()
            .contains("Advertising the address this host reaches the coordinator from"),
        "{}",
        supervisors[2].log()
    );

    let out = dir.path().join("out.jsonl");
    let file = dir.path().join("spread.topo.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "spread"
workers = 3
disable_loadaware_messaging = true

[spouts.numbers]
type = "sequence"

[bolts.out]
type = "file_sink"
parallelism = 3
path = "{}"
inputs = ["numbers"]
"#,
            out.display()
        ),
    )
    .expect("write the topology");
    let submitted = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("submit")
        .arg(&file)
        .args(["--coordinator", &coordinator_addr, "--secret-file", &secret])
        .env_remove("TOPO_CLUSTER_SECRET")
        .output()
        .expect("topo submit");
    assert!(submitted.status.success(), "{}", logs());

    // One worker per supervisor, each reached at its supervisor's advertised address.
    let mut placed = Vec::new();
    while placed.len() < 3 {
        assert!(start.elapsed() < DEADLINE, "{}", logs());
        std::thread::sleep(Duration::from_millis(50));
        let Some(all) = list(&coordinator_addr, &secret) else {
            continue;
        };
        let assignments = all[0]["assignments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if assignments.len() == 3 && assignments.iter().all(|a| a["running"] == true) {
            placed = assignments;
        }
    }
    let ids: BTreeSet<String> = placed
        .iter()
        .map(|a| a["supervisor"].as_str().expect("supervisor").to_string())
        .collect();
    assert_eq!(ids, want, "{placed:?}");
    for a in &placed {
        let supervisor: SocketAddr = a["supervisor"].as_str().unwrap().parse().expect("id");
        let worker: SocketAddr = a["addr"].as_str().expect("addr").parse().expect("addr");
        assert_eq!(worker.ip(), supervisor.ip(), "{placed:?}");
    }
    // Two more supervisors advertising one address with one port: the second to register
    // is refused, since ids name hosts.
    let port = free_addr("127.0.0.5").port();
    let twins: Vec<Proc> = ["127.0.0.5", "127.0.0.6"]
        .into_iter()
        .enumerate()
        .map(|(i, ip)| {
            let args = [
                "supervisor".to_string(),
                "--listen".into(),
                format!("{ip}:{port}"),
                "--advertise".into(),
                "127.0.0.9".into(),
                "--dir".into(),
                dir.path().join(format!("twin-{i}")).display().to_string(),
                "--coordinator".into(),
                coordinator_addr.clone(),
                "--secret-file".into(),
                secret.clone(),
            ];
            Proc::start(&format!("twin {i}"), &args)
        })
        .collect();
    let refused = format!(
        "The coordinator refused this supervisor: another connected supervisor has the id \
         127.0.0.9:{port}; give each host its own --advertise address"
    );
    while !twins.iter().any(|t| t.log().contains(&refused)) {
        assert!(
            start.elapsed() < DEADLINE,
            "{}{}{}",
            logs(),
            twins[0].log(),
            twins[1].log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The coordinator logs its refusal around the time it sends it: wait for that line too.
    while !coordinator
        .log()
        .contains("Refused a supervisor: another connected supervisor has its id.")
    {
        assert!(start.elapsed() < DEADLINE, "{}", coordinator.log());
        std::thread::sleep(Duration::from_millis(50));
    }

    // Tuples cross all three workers: the spout round-robins over the sink's tasks, and
    // would wait on one it could not reach.
    while sink_values(&out, "n").len() < 3000 {
        assert!(start.elapsed() < DEADLINE, "{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    }
}
