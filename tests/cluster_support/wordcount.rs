//! A checkpointed word count in cluster mode: a coordinator and three supervisors on
//! 127.0.0.2, .3 and .4, the topology file, `topo list --json`, waits with a deadline.
//!
//! The input and the sink's file are absolute paths in the test's folder: the hosts of
//! this cluster share a file system, as hosts sharing a network file system would.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

use super::{free_addr, Proc};

/// How long any one wait may take.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A coordinator (state in `DIR/coordinator`, supervisors dropped after 3 s of silence)
/// and three supervisors; a supervisor taken out of `supervisors` (to kill it) leaves its
/// log in `dead`.
pub struct Cluster {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// The coordinator.
    pub coordinator: RefCell<Proc>,
    /// Each supervisor's address, and its process while it runs.
    pub supervisors: RefCell<Vec<(SocketAddr, Option<Proc>)>>,
    /// The logs of processes that were stopped.
    pub dead: RefCell<String>,
    state_dir: PathBuf,
}

impl Cluster {
    /// Starts the cluster in `dir` and waits until every supervisor registered.
    pub fn start(dir: &Path) -> Cluster {
        let addr = free_addr("127.0.0.1");
        let state_dir = dir.join("coordinator");
        let coordinator = RefCell::new(Cluster::coordinator(addr, &state_dir));
        let supervisors = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
            .iter()
            .map(|ip| {
                let sup = free_addr(ip);
                let sdir = dir.join(format!("supervisor-{ip}"));
                let p = Proc::start(
                    &format!("supervisor {ip}"),
                    &[
                        "supervisor",
                        "--listen",
                        &sup.to_string(),
                        "--dir",
                        &sdir.display().to_string(),
                        "--coordinator",
                        &addr.to_string(),
                    ],
                );
                (sup, Some(p))
            })
            .collect();
        let c = Cluster {
            addr,
            coordinator,
            supervisors: RefCell::new(supervisors),
            dead: RefCell::new(String::new()),
            state_dir,
        };
        c.wait_until("every supervisor registered", || {
            c.coordinator
                .borrow()
                .log()
                .matches("Supervisor registered.")
                .count()
                >= 3
        });
        c
    }

    fn coordinator(addr: SocketAddr, state_dir: &Path) -> Proc {
        Proc::start(
            "coordinator",
            &[
                "coordinator",
                "--listen",
                &addr.to_string(),
                "--state-dir",
                &state_dir.display().to_string(),
                "--supervisor-timeout",
                "3s",
            ],
        )
    }

    /// Kills the coordinator (SIGKILL) and starts it again on the same address and state.
    pub fn restart_coordinator(&self) {
        let mut c = self.coordinator.borrow_mut();
        c.stop();
        self.dead.borrow_mut().push_str(&c.log());
        *c = Cluster::coordinator(self.addr, &self.state_dir);
    }

    /// Every log so far: the stopped processes', the coordinator's, the supervisors'.
    pub fn logs(&self) -> String {
        let mut all = self.dead.borrow().clone();
        all.push_str(&self.coordinator.borrow().log());
        for p in self
            .supervisors
            .borrow()
            .iter()
            .filter_map(|(_, p)| p.as_ref())
        {
            all.push_str(&p.log());
        }
        all
    }

    /// The coordinator's log so far.
    pub fn coordinator_log(&self) -> String {
        self.coordinator.borrow().log()
    }

    /// Runs a client verb against the coordinator: (exit code, stdout, stderr).
    pub fn topo(&self, args: &[&str]) -> (i32, String, String) {
        super::client(&self.addr.to_string(), args)
    }

    /// The topology `id` as `topo list --json` shows it.
    pub fn listing(&self, id: &str) -> Option<Json> {
        let (code, out, _) = self.topo(&["list", "--json"]);
        if code != 0 {
            return None;
        }
        let all: Json = serde_json::from_str(&out).ok()?;
        all.as_array()?.iter().find(|t| t["id"] == id).cloned()
    }

    /// Waits until `cond` holds, failing with every log after [`DEADLINE`].
    pub fn wait_until(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every one of the `n` workers of `id` runs; returns each one's
    /// supervisor.
    pub fn wait_running(&self, id: &str, n: usize) -> Vec<String> {
        let mut placement = Vec::new();
        self.wait_until("every worker runs", || {
            let Some(t) = self.listing(id) else {
                return false;
            };
            let workers = t["assignments"].as_array().cloned().unwrap_or_default();
            placement = workers
                .iter()
                .map(|w| w["supervisor"].as_str().unwrap_or("").to_string())
                .collect();
            workers.len() == n && workers.iter().all(|w| w["running"] == true)
        });
        placement
    }

    /// Waits until `id` finished (failing if it failed); returns its listing.
    pub fn wait_finished(&self, id: &str) -> Json {
        let mut finished = Json::Null;
        self.wait_until("the topology finishes", || {
            let Some(t) = self.listing(id) else {
                return false;
            };
            assert_ne!(t["status"], "failed", "{}\n{}", t["error"], self.logs());
            let done = t["status"] == "finished";
            finished = t;
            done
        });
        finished
    }
}

/// Writes `DIR/NAME.topo.toml`: three workers, a checkpoint every second, `file_lines`
/// over `DIR/in.txt`, `split_words` and `word_count` (`count_parallelism` tasks, fields
/// grouping) into `file_sink` at `DIR/NAME.jsonl`; `settings` go into `[topology]`.
pub fn topology_file(dir: &Path, name: &str, settings: &str, count_parallelism: usize) -> PathBuf {
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
parallelism = {count_parallelism}
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

/// What `lines` (the spout) emitted, from a listing.
pub fn spout_emitted(listing: &Json) -> u64 {
    listing["components"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["id"] == "lines"))
        .and_then(|c| c["emitted"].as_u64())
        .expect("the spout's counts")
}
