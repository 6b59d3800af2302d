//! Cluster mode end to end: a coordinator on 127.0.0.1 and three supervisors on
//! 127.0.0.2, .3 and .4, each a `topo` process with its own folder; topologies submitted
//! with `topo submit`, watched with `topo list --json`.
//!
//! Every process a test starts is killed when its guard drops (a supervisor's workers die
//! with it). Waits poll an observable condition with a deadline.

mod cluster_support;
mod workers_support;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use serde_json::Value as Json;
use workers_support::{mkfifo, sink_strings, sink_values};

const DEADLINE: Duration = Duration::from_secs(90);

struct Cluster {
    dir: tempfile::TempDir,
    coordinator_addr: SocketAddr,
    coordinator: Option<Proc>,
    supervisors: Vec<(SocketAddr, Option<Proc>)>,
    /// Logs of processes already killed.
    dead_logs: String,
}

impl Cluster {
    /// A coordinator and supervisors on 127.0.0.2, .3 and .4, all registered.
    fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut c = Cluster {
            coordinator_addr: free_addr("127.0.0.1"),
            dir,
            coordinator: None,
            supervisors: Vec::new(),
            dead_logs: String::new(),
        };
        c.start_coordinator();
        for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            let addr = free_addr(ip);
            let p = c.supervisor_proc(addr);
            c.supervisors.push((addr, Some(p)));
        }
        c.wait_until("every supervisor registered", |c| {
            c.coordinator_log()
                .matches("Supervisor registered.")
                .count()
                >= 3
        });
        c
    }

    /// Starts the supervisor listening on `addr`, with its folder under the cluster's.
    fn supervisor_proc(&self, addr: SocketAddr) -> Proc {
        let ip = addr.ip();
        let sdir = self.dir.path().join(format!("supervisor-{ip}"));
        let args = vec![
            "supervisor".into(),
            "--listen".into(),
            addr.to_string(),
            "--dir".into(),
            sdir.display().to_string(),
            "--coordinator".into(),
            self.coordinator_addr.to_string(),
        ];
        Proc::start(&format!("supervisor {ip}"), &args)
    }

    /// Starts supervisor `id` again (same address, same folder) after a kill.
    fn restart_supervisor(&mut self, id: &str) {
        let i = self
            .supervisors
            .iter()
            .position(|(a, _)| a.to_string() == id)
            .expect("a supervisor of this cluster");
        let p = self.supervisor_proc(self.supervisors[i].0);
        self.supervisors[i].1 = Some(p);
    }

    fn start_coordinator(&mut self) {
        let args = vec![
            "coordinator".into(),
            "--listen".into(),
            self.coordinator_addr.to_string(),
            "--state-dir".into(),
            self.dir.path().join("coordinator").display().to_string(),
            "--supervisor-timeout".into(),
            // Short, yet long enough for three debug-build supervisors to take in a
            // 100 MB binary on a loaded two-core machine.
            "5s".into(),
        ];
        self.coordinator = Some(Proc::start("coordinator", &args));
    }

    fn coordinator_log(&self) -> String {
        self.coordinator.as_ref().map(Proc::log).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut all = self.dead_logs.clone();
        all.push_str(&self.coordinator_log());
        for (_, s) in &self.supervisors {
            if let Some(s) = s {
                all.push_str(&s.log());
            }
        }
        all
    }

    /// Runs a client verb against the coordinator; (exit code, stdout, stderr).
    fn topo(&self, args: &[&str]) -> (i32, String, String) {
        cluster_support::client(&self.coordinator_addr.to_string(), args)
    }

    fn submit(&self, file: &Path, extra: &[&str]) -> String {
        let mut args = vec!["submit", file.to_str().expect("utf-8 path")];
        args.extend_from_slice(extra);
        let (code, out, err) = self.topo(&args);
        assert_eq!(code, 0, "submit failed: {err}\n{}", self.logs());
        out.trim().to_string()
    }

    /// The topology `id` as `topo list --json` shows it (None if the coordinator does not
    /// answer or does not list it).
    fn topology(&self, id: &str) -> Option<Json> {
        let (code, out, _) = self.topo(&["list", "--json"]);
        if code != 0 {
            return None;
        }
        let all: Json = serde_json::from_str(&out).ok()?;
        all.as_array()?.iter().find(|t| t["id"] == id).cloned()
    }

    fn wait_until(&self, what: &str, mut cond: impl FnMut(&Cluster) -> bool) {
        let start = Instant::now();
        while !cond(self) {
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting until {what}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until topology `id` has status `status`; returns its listing.
    fn wait_status(&self, id: &str, status: &str) -> Json {
        let mut found = Json::Null;
        self.wait_until(&format!("{id} is {status}"), |c| match c.topology(id) {
            Some(t) if t["status"] == status => {
                found = t;
                true
            }
            Some(t) if t["status"] == "failed" => {
                panic!("{id} failed: {}\n{}", t["error"], c.logs())
            }
            _ => false,
        });
        found
    }

    /// The supervisor id each worker of `t` is assigned to.
    fn placement(t: &Json) -> Vec<String> {
        t["assignments"]
            .as_array()
            .expect("assignments")
            .iter()
            .map(|a| a["supervisor"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Kills supervisor `id` with SIGKILL; returns the pids of the workers it had started.
    fn kill_supervisor(&mut self, id: &str) -> Vec<i32> {
        let (_, slot) = self
            .supervisors
            .iter_mut()
            .find(|(a, _)| a.to_string() == id)
            .expect("a supervisor of this cluster");
        let Some(p) = slot.take() else {
            return Vec::new();
        };
        let log = p.log();
        // SAFETY: kill(2) on a process this test started.
        assert_eq!(unsafe { libc::kill(p.pid(), libc::SIGKILL) }, 0);
        drop(p);
        self.dead_logs.push_str(&log);
        strip_ansi(&log)
            .lines()
            .filter(|l| l.contains("Worker started."))
            .filter_map(|l| l.split(" pid=").nth(1)?.split(' ').next()?.parse().ok())
            .collect()
    }

    fn kill_coordinator(&mut self) {
        if let Some(p) = self.coordinator.take() {
            self.dead_logs.push_str(&p.log());
            // SAFETY: kill(2) on a process this test started.
            assert_eq!(unsafe { libc::kill(p.pid(), libc::SIGKILL) }, 0);
            drop(p);
        }
    }

    fn transfers(&self) -> Vec<Json> {
        self.supervisors
            .iter()
            .map(|(addr, _)| {
                let ip = addr.ip();
                let path = self
                    .dir
                    .path()
                    .join(format!("supervisor-{ip}"))
                    .join("transfers.json");
                std::fs::read_to_string(&path)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or(Json::Null)
            })
            .collect()
    }
}

/// `text` without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(ch) = chars.next() {
        if ch == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(ch);
        }
    }
    out
}

/// The process `pid` is gone (or a zombie waiting for its reaper).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

/// A topology file in the cluster's folder: `spout` (its TOML) → `relay` (3 tasks) →
/// `out` (3 tasks writing `NAME.jsonl` under the cluster's folder).
fn topology_file(c: &Cluster, name: &str, spout: &str) -> (PathBuf, PathBuf) {
    cluster_support::relay_topology(c.dir.path(), name, spout, "n")
}

fn missing<T: Ord + Clone + std::fmt::Debug>(want: &BTreeSet<T>, got: &BTreeSet<T>) -> Vec<T> {
    want.difference(got).take(5).cloned().collect()
}

fn sink_numbers(path: &Path) -> BTreeSet<i64> {
    sink_values(path, "n")
        .iter()
        .filter_map(Json::as_i64)
        .collect()
}

/// Acceptance: three workers under three supervisors, every number arrives; a second
/// topology with the same binary transfers nothing new.
#[test]
fn a_topology_runs_across_three_supervisors_and_its_binary_moves_once() {
    const N: i64 = 2000;
    let c = Cluster::start();
    let (file, out) = topology_file(&c, "numbers", &format!("type = \"sequence\"\ncount = {N}"));
    let id = c.submit(&file, &[]);
    assert!(id.starts_with("numbers-"), "{id}");
    let t = c.wait_status(&id, "finished");

    let placement = Cluster::placement(&t);
    let distinct: BTreeSet<&String> = placement.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "one worker per supervisor: {t}\n{}",
        c.logs()
    );
    for s in &placement {
        assert!(
            ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
                .iter()
                .any(|ip| s.starts_with(ip)),
            "{s}"
        );
    }
    let got = sink_numbers(&out);
    let want: BTreeSet<i64> = (0..N).collect();
    assert!(got == want, "missing: {:?}", missing(&want, &got));
    let source = t["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["id"] == "source")
        .cloned()
        .expect("the spout's counts");
    assert_eq!(source["acked"], N, "{t}");
    assert_eq!(source["failed"], 0, "{t}");

    // Every supervisor fetched the binary once.
    let before = c.transfers();
    for t in &before {
        assert_eq!(t["fetched"], 1, "{before:?}");
    }
    let (file2, out2) = topology_file(&c, "numbers2", "type = \"sequence\"\ncount = 100");
    let id2 = c.submit(&file2, &[]);
    c.wait_status(&id2, "finished");
    assert_eq!(sink_numbers(&out2), (0..100).collect::<BTreeSet<i64>>());
    assert_eq!(
        c.transfers(),
        before,
        "the second submit transferred nothing"
    );
    assert_eq!(
        c.coordinator_log().matches("Receiving a binary.").count(),
        1,
        "the binary was uploaded once"
    );
}

/// Opens the write end of a named pipe once its reader (a spout) opened it.
fn open_pipe(path: &Path, c: &Cluster) -> File {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(p));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(f) => f.expect("open the pipe"),
        Err(_) => panic!("no spout opened the pipe\n{}", c.logs()),
    }
}

/// A topology reading ids from a named pipe the test writes; returns the cluster, the
/// topology id, the pipe's writer, the output file and the ids.
fn piped_topology(name: &str) -> (Cluster, String, File, PathBuf, Vec<String>) {
    let c = Cluster::start();
    let pipe = c.dir.path().join(format!("{name}.pipe"));
    mkfifo(&pipe);
    let (file, out) = topology_file(
        &c,
        name,
        &format!("type = \"file_lines\"\npath = \"{}\"", pipe.display()),
    );
    // The relay maps field `n`; file_lines emits `line`.
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replace("fields = [\"n\"]", "fields = [\"line as n\"]"),
    )
    .expect("write");
    let id = c.submit(&file, &[]);
    let writer = open_pipe(&pipe, &c);
    let ids = (0..2000).map(|i| format!("id{i:05}")).collect();
    (c, id, writer, out, ids)
}

/// Writes `ids` to the spout's pipe, one per line, and flushes.
fn write_ids(writer: &mut File, ids: &[String]) {
    for i in ids {
        writeln!(writer, "{i}").expect("write an id");
    }
    writer.flush().expect("flush");
}

fn sink_ids(path: &Path) -> BTreeSet<String> {
    sink_strings(path, "n")
}

/// Acceptance: a supervisor killed with SIGKILL mid-run (its workers die with it): they
/// are placed on the others and every id still arrives.
#[test]
fn a_killed_supervisors_workers_move_and_every_id_still_arrives() {
    let (mut c, id, mut writer, out, ids) = piped_topology("moving");
    write_ids(&mut writer, &ids[..1000]);
    c.wait_until("some ids arrived", |_| sink_ids(&out).len() >= 100);

    // Worker 0 runs the spout (it reads the pipe); worker 1 a relay, a sink and an acker.
    let t = c.topology(&id).expect("listed");
    let placement = Cluster::placement(&t);
    let victim = placement[1].clone();
    let orphans = c.kill_supervisor(&victim);
    assert!(!orphans.is_empty(), "the supervisor had started worker 1");
    c.wait_until("the killed supervisor's workers died with it", |_| {
        orphans.iter().all(|&pid| gone(pid))
    });
    c.wait_until("worker 1 runs on another supervisor", |c| {
        c.topology(&id).is_some_and(|t| {
            let w = &t["assignments"][1];
            w["supervisor"] != victim.as_str()
                && w["supervisor"].is_string()
                && w["running"] == true
        })
    });
    write_ids(&mut writer, &ids[1000..]);
    drop(writer);
    let t = c.wait_status(&id, "finished");
    let placement = Cluster::placement(&t);
    assert!(!placement.contains(&victim), "{t}");
    let got = sink_ids(&out);
    let want: BTreeSet<String> = ids.into_iter().collect();
    assert!(
        got.is_superset(&want),
        "missing: {:?}",
        missing(&want, &got)
    );
    assert!(
        c.coordinator_log()
            .contains("Supervisor is silent; dropping it and placing its workers elsewhere."),
        "{}",
        c.coordinator_log()
    );
}

/// Acceptance: the coordinator killed and restarted mid-run: the topology keeps running
/// meanwhile (every id reaches the sink while it is down) and the restarted coordinator
/// still lists it, with the same workers, and ends it.
#[test]
fn a_restarted_coordinator_neither_stops_nor_forgets_a_running_topology() {
    let (mut c, id, mut writer, out, ids) = piped_topology("steady");
    write_ids(&mut writer, &ids[..1000]);
    c.wait_until("some ids arrived", |_| sink_ids(&out).len() >= 100);
    let before = c.wait_status(&id, "active");

    c.kill_coordinator();
    // Progress while it is down: the rest of the ids reach the sink. (The end of the
    // input ends the spout; only a coordinator ends the run.)
    write_ids(&mut writer, &ids[1000..]);
    drop(writer);
    let want: BTreeSet<String> = ids.iter().cloned().collect();
    c.wait_until("every id arrived while the coordinator was down", |_| {
        sink_ids(&out).is_superset(&want)
    });
    assert!(c.topology(&id).is_none(), "the coordinator is down");

    c.start_coordinator();
    let t = c.wait_status(&id, "finished");
    assert_eq!(
        Cluster::placement(&t),
        Cluster::placement(&before),
        "the same workers: {t}"
    );
    for w in t["assignments"].as_array().expect("assignments") {
        assert_eq!(w["restarts"], 0, "no worker was started again: {t}");
    }
    let source = t["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["id"] == "source")
        .cloned()
        .expect("the spout's counts");
    assert_eq!(source["acked"], 2000, "{t}");
}

/// The spout's emitted count as listed (0 before its first snapshot).
fn emitted(c: &Cluster, id: &str) -> u64 {
    c.topology(id)
        .and_then(|t| {
            t["components"]
                .as_array()?
                .iter()
                .find(|c| c["id"] == "source")?["emitted"]
                .as_u64()
        })
        .unwrap_or(0)
}

/// `topo deactivate`, `activate`, `rebalance` and `kill` on a running unbounded
/// topology.
#[test]
fn deactivate_activate_rebalance_and_kill_a_running_topology() {
    let c = Cluster::start();
    let (file, out) = topology_file(&c, "endless", "type = \"sequence\"");
    let id = c.submit(&file, &[]);
    c.wait_until("the spout emits", |c| emitted(c, &id) > 0);
    let verb = |args: &[&str]| {
        let (code, out, err) = c.topo(args);
        assert_eq!(code, 0, "topo {args:?}: {err}\n{}", c.logs());
        out
    };

    let said = verb(&["deactivate", &id]);
    assert!(said.contains("inactive"), "{said}");
    c.wait_status(&id, "inactive");
    // Deactivated: the spout's count stops (it holds for 2 s of snapshots).
    let mut last = (emitted(&c, &id), Instant::now());
    c.wait_until("the spout stops emitting", |c| {
        let now = emitted(c, &id);
        if now != last.0 {
            last = (now, Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(2)
    });
    let stopped = last.0;

    verb(&["activate", "endless"]);
    c.wait_status(&id, "active");
    c.wait_until("the spout emits again", |c| emitted(c, &id) > stopped);

    let said = verb(&["rebalance", &id, "--workers", "2"]);
    assert!(said.contains("2 workers"), "{said}");
    c.wait_until("it runs on 2 workers", |c| {
        c.topology(&id).is_some_and(|t| {
            t["status"] == "active"
                && t["workers"] == 2
                && t["assignments"]
                    .as_array()
                    .is_some_and(|a| a.len() == 2 && a.iter().all(|w| w["running"] == true))
        })
    });
    c.wait_until("the spout emits after the rebalance", |c| {
        emitted(c, &id) > 0
    });

    let said = verb(&["kill", &id, "--wait", "1"]);
    assert!(said.starts_with(&format!("killing {id}")), "{said}");
    let t = c.wait_status(&id, "killed");
    assert!(
        t["assignments"]
            .as_array()
            .is_some_and(|a| a.iter().all(|w| w["running"] == false)),
        "{t}"
    );
    assert!(!sink_numbers(&out).is_empty());
    // Killed for good: a second kill is refused (exit 1).
    let (code, _, err) = c.topo(&["kill", &id]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("topology {id} is killed")), "{err}");
}

/// A supervisor killed and started again at once (before the coordinator drops it) gets
/// its worker back from its registration, without fetching the binary again.
#[test]
fn a_restarted_supervisor_runs_its_worker_again_without_a_new_fetch() {
    let (mut c, id, mut writer, out, ids) = piped_topology("returning");
    write_ids(&mut writer, &ids[..1000]);
    c.wait_until("some ids arrived", |_| sink_ids(&out).len() >= 100);
    let before = c.topology(&id).expect("listed");
    let transfers = c.transfers();
    let host = Cluster::placement(&before)[1].clone();
    let orphans = c.kill_supervisor(&host);
    c.restart_supervisor(&host);
    c.wait_until("worker 1 runs again on its supervisor", |c| {
        c.topology(&id).is_some_and(|t| {
            let w = &t["assignments"][1];
            w["supervisor"] == host.as_str() && w["running"] == true && w["restarts"] == 1
        })
    });
    assert!(orphans.iter().all(|&pid| gone(pid)));
    write_ids(&mut writer, &ids[1000..]);
    drop(writer);
    let t = c.wait_status(&id, "finished");
    assert_eq!(Cluster::placement(&t), Cluster::placement(&before), "{t}");
    assert_eq!(c.transfers(), transfers, "no binary fetched again");
    let got = sink_ids(&out);
    let want: BTreeSet<String> = ids.into_iter().collect();
    assert!(
        got.is_superset(&want),
        "missing: {:?}",
        missing(&want, &got)
    );
}
