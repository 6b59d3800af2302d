//! The coordinator's web UI (`topo coordinator --ui`), end to end: a coordinator with a
//! cluster secret and two supervisors (127.0.0.2 and .3) run a word count in two workers;
//! the JSON API lists it with its components, workers and plan; actions need the token
//! `topo ui-token` derives from the secret; `topo tap` and `topo top` attach to it through
//! the UI's address.
//!
//! Every process a test starts is killed when its guard drops. Waits poll an observable
//! condition with a deadline.

mod cluster_support;
mod common;
mod tmux_support;
mod web;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use serde_json::Value as Json;
use tmux_support::{row, Tmux};
use web::{get_json, request};

const DEADLINE: Duration = Duration::from_secs(120);

struct Cluster {
    dir: tempfile::TempDir,
    secret: PathBuf,
    coordinator: Proc,
    coordinator_addr: String,
    /// Where the web UI listens.
    ui: String,
    supervisors: Vec<Proc>,
}

impl Cluster {
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("cluster.secret");
        std::fs::write(&secret, "a secret for the ui test\n").expect("write the secret");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the secret");
        }
        let coordinator_addr = free_addr("127.0.0.1").to_string();
        let coordinator = Proc::start(
            "coordinator",
            &[
                "coordinator",
                "--listen",
                &coordinator_addr,
                "--state-dir",
                &dir.path().join("coordinator").display().to_string(),
                "--secret-file",
                &secret.display().to_string(),
                "--ui",
                "127.0.0.1:0",
            ],
        );
        let ui = wait_for(&coordinator, "the UI's address", |log| {
            let rest = log.split("Serving the web UI at http://").nth(1)?;
            Some(rest.split('/').next()?.to_string())
        });
        let supervisors = ["127.0.0.2", "127.0.0.3"]
            .iter()
            .map(|ip| {
                Proc::start(
                    &format!("supervisor {ip}"),
                    &[
                        "supervisor",
                        "--listen",
                        &free_addr(ip).to_string(),
                        "--dir",
                        &dir.path()
                            .join(format!("supervisor-{ip}"))
                            .display()
                            .to_string(),
                        "--coordinator",
                        &coordinator_addr,
                        "--secret-file",
                        &secret.display().to_string(),
                    ],
                )
            })
            .collect();
        let c = Cluster {
            dir,
            secret,
            coordinator,
            coordinator_addr,
            ui,
            supervisors,
        };
        wait_for(&c.coordinator, "both supervisors registered", |log| {
            (log.matches("Supervisor registered.").count() >= 2).then_some(())
        });
        c
    }

    fn logs(&self) -> String {
        let mut all = self.coordinator.log();
        for s in &self.supervisors {
            all.push_str(&s.log());
        }
        all
    }

    /// Runs `topo ARGS` with the cluster secret's file given; (exit code, stdout, stderr).
    fn topo(&self, args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_topo"))
            .args(args)
            .arg("--secret-file")
            .arg(&self.secret)
            .env_remove("TOPO_CLUSTER_SECRET")
            .output()
            .expect("run topo");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Polls the UI's document at `path` until `ok` holds.
    fn until(&self, path: &str, what: &str, ok: impl Fn(&Json) -> bool) -> Json {
        let start = Instant::now();
        loop {
            let doc = get_json(&self.ui, path);
            if ok(&doc) {
                return doc;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "never {what}:\n{doc:#}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `POST /api/v1/topologies/{id}/{action}` with `headers`: (status code, body).
    fn act(&self, id: &str, action: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let (head, body) = request(
            &self.ui,
            "POST",
            &format!("/api/v1/topologies/{id}/{action}"),
            headers,
        );
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (code, body)
    }
}

/// Polls `proc`'s log until `found` finds something in it.
fn wait_for<T>(proc: &Proc, what: &str, found: impl Fn(&str) -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = found(&proc.log()) {
            return t;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}\n{}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_of(list: &Json, id: &str) -> Option<String> {
    list["topologies"]
        .as_array()?
        .iter()
        .find(|t| t["id"] == id)
        .and_then(|t| t["status"].as_str().map(str::to_string))
}

#[test]
fn the_coordinator_ui_serves_the_cluster_and_acts_only_with_the_token() {
    common::require("tmux", &["-V"], "tmux (apt-get install tmux)");
    let c = Cluster::start();
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wordcount.topo.toml"),
    )
    .expect("read the example");
    let file = c.dir.path().join("wordcount.topo.toml");
    std::fs::write(&file, example.replace("workers = 1", "workers = 2")).expect("write");
    let (code, out, err) = c.topo(&[
        "submit",
        file.to_str().expect("utf-8"),
        "--coordinator",
        &c.coordinator_addr,
    ]);
    assert_eq!(code, 0, "{err}\n{}", c.logs());
    let id = out.trim().to_string();

    // The JSON API: the cluster's topologies, then this one's graph, components, workers
    // and plan from the snapshots the supervisors relay.
    let list = c.until("/api/v1/topologies", "the topology is listed", |l| {
        status_of(l, &id).as_deref() == Some("active")
    });
    assert_eq!(list["mode"], "cluster");
    assert_eq!(list["actions"], true);
    let detail = c.until(
        &format!("/api/v1/topologies/{id}"),
        "both workers report and split emits",
        |d| {
            d["workers"].as_array().is_some_and(|w| w.len() == 2)
                && d["components"]
                    .as_array()
                    .and_then(|cs| cs.iter().find(|x| x["id"] == "split"))
                    .is_some_and(|s| s["rates"]["emitted"].as_f64() > Some(0.0))
        },
    );
    let nodes: Vec<&str> = detail["graph"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(nodes, ["sentences", "split", "count", "print"]);
    let workers: Vec<u64> = detail["plan"]
        .as_array()
        .expect("plan")
        .iter()
        .filter_map(|p| p["worker"].as_u64())
        .collect();
    assert!(workers.contains(&0) && workers.contains(&1), "{detail:#}");

    // Actions: refused without the token (401) and with a wrong one (403); the token
    // `topo ui-token` prints (never the secret) is taken.
    let (code, body) = c.act(&id, "deactivate", &[]);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("`topo ui-token`"), "{body}");
    let (code, body) = c.act(&id, "deactivate", &[("Authorization", "Bearer 00ff")]);
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        status_of(&get_json(&c.ui, "/api/v1/topologies"), &id).as_deref(),
        Some("active")
    );
    let (code, token, err) = c.topo(&["ui-token"]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    assert_eq!(token.len(), 64, "{token}");
    assert!(!token.contains("secret"), "{token}");
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let (code, body) = c.act(&id, "deactivate", &auth);
    assert_eq!(code, 200, "{body}");
    c.until("/api/v1/topologies", "the topology is inactive", |l| {
        status_of(l, &id).as_deref() == Some("inactive")
    });
    let (code, body) = c.act(&id, "activate", &auth);
    assert_eq!(code, 200, "{body}");
    c.until("/api/v1/topologies", "the topology is active again", |l| {
        status_of(l, &id).as_deref() == Some("active")
    });
    // A rebalance the coordinator refuses says why; one it cannot parse is a bad request.
    let (code, body) = c.act(&id, "rebalance?parallelism=nope%3D2", &auth);
    assert_eq!(code, 409, "{body}");
    assert!(
        body.contains(&format!(
            "topology {id} has no component `nope` (it has sentences, split, count, print)"
        )),
        "{body}"
    );
    let (code, body) = c.act(&id, "rebalance?parallelism=count", &auth);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("parallelism takes COMPONENT=N[,COMPONENT=N...]"),
        "{body}"
    );
    let (code, body) = c.act(&id, "rebalance", &auth);
    assert_eq!(code, 400, "{body}");

    // `topo tap` through the UI: a sample from the tasks of both workers. Tuples are the
    // users' data: a tap takes the token too.
    let tap_path = format!("/api/v1/topologies/{id}/tap?component=split&limit=1");
    let (head, body) = request(&c.ui, "GET", &tap_path, &[]);
    assert!(head.starts_with("HTTP/1.1 401"), "{head}\n{body}");
    let (head, body) = request(&c.ui, "GET", &tap_path, &[("Authorization", "Bearer 00ff")]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}\n{body}");
    let tap = |limit: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_topo"))
            .args([
                "tap",
                "split",
                "--coordinator",
                &c.ui,
                "--topology",
                "wordcount",
            ])
            .args(["--limit", limit, "--rate", "100", "--secret-file"])
            .arg(&c.secret)
            .output()
            .expect("topo tap runs");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            c.logs()
        );
        stdout
            .lines()
            .map(|l| serde_json::from_str::<Json>(l).expect("a JSON object per line"))
            .collect::<Vec<Json>>()
    };
    let lines = tap("10");
    assert_eq!(lines.len(), 10);
    for v in &lines {
        assert_eq!(v["component"], "split", "{v}");
        assert!(
            v["fields"]["word"].as_str().is_some_and(|w| !w.is_empty()),
            "{v}"
        );
    }
    // Tap again until both of split's tasks, one per worker, were seen (a worker that
    // was never asked would never show).
    let mut tasks = std::collections::BTreeSet::new();
    let start = Instant::now();
    while tasks.len() < 2 {
        assert!(
            start.elapsed() < DEADLINE,
            "only tasks {tasks:?}\n{}",
            c.logs()
        );
        tasks.extend(tap("20").iter().filter_map(|v| v["task"].as_u64()));
    }

    // `topo top NAME --coordinator UI` in a terminal: every component, rates that move.
    let term = Tmux::start(c.dir.path(), 100, 30);
    term.type_line(&format!("topo top wordcount --coordinator {}", c.ui));
    let components = ["sentences", "split", "count", "print", "__acker"];
    let has_all = |s: &str| components.iter().all(|x| row(s, x).is_some());
    let first = term.wait_for("every component is on screen", |s| {
        has_all(s) && s.contains("exec/s")
    });
    let emitted = |s: &str| row(s, "sentences").map(|r| r[2].to_string());
    let before = emitted(&first);
    let second = term.wait_for("the spout's rate changes", |s| {
        has_all(s) && emitted(s) != before
    });
    assert!(second.contains("wordcount"), "{second}");
    term.run(&["send-keys", "-t", "top", "q"]);

    // Kill, through the UI.
    let (code, body) = c.act(&id, "kill?wait_secs=0", &auth);
    assert_eq!(code, 200, "{body}");
    c.until("/api/v1/topologies", "the topology is killed", |l| {
        status_of(l, &id).as_deref() == Some("killed")
    });
}
