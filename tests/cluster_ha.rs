//! Coordinators that survive their host: etcd with three members on 127.0.0.2, .3 and .4,
//! two coordinators on 127.0.0.1 (one leads, one stands by), three supervisors; every
//! process started here in a temp dir on free ports and killed at the end.
//!
//! Needs `etcd` and `etcdctl` (Debian: `etcd-server`, `etcd-client`); `./test` installs
//! them. Without them the test fails with that hint: it never skips.

mod cluster_support;
mod workers_support;

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use serde_json::Value as Json;
use workers_support::{mkfifo, sink_strings};

const DEADLINE: Duration = Duration::from_secs(60);
/// The coordinators' `--lease-secs`.
const LEASE_SECS: u64 = 3;

/// One etcd member; killed (SIGKILL) and reaped on drop.
struct Member {
    child: Option<Child>,
    args: Vec<String>,
    client_url: String,
    log: PathBuf,
}

impl Member {
    /// Starts it (again: its data dir keeps its identity and data).
    fn start(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("etcd log");
        let child = Command::new("etcd")
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
    }
}

fn need(cmd: &str, package: &str) {
    let found = Command::new(cmd)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "`{cmd}` is not installed: this test runs a real etcd cluster.\n\
         hint: sudo apt-get install {package}   (or run ./test, which installs it)"
    );
}

/// Three etcd members on 127.0.0.2, .3 and .4, their data under `dir`.
fn etcd_cluster(dir: &Path) -> Vec<Member> {
    need("etcd", "etcd-server");
    need("etcdctl", "etcd-client");
    let ips = ["127.0.0.2", "127.0.0.3", "127.0.0.4"];
    let peers: Vec<SocketAddr> = ips.iter().map(|ip| free_addr(ip)).collect();
    let clients: Vec<SocketAddr> = ips.iter().map(|ip| free_addr(ip)).collect();
    let initial: Vec<String> = peers
        .iter()
        .enumerate()
        .map(|(i, p)| format!("m{i}=http://{p}"))
        .collect();
    let initial = initial.join(",");
    (0..3)
        .map(|i| {
            let client_url = format!("http://{}", clients[i]);
            let peer_url = format!("http://{}", peers[i]);
            let args = [
                "--name",
                &format!("m{i}"),
                "--data-dir",
                &dir.join(format!("etcd-m{i}")).display().to_string(),
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                "topo-test",
            ]
            .map(String::from)
            .to_vec();
            let mut m = Member {
                child: None,
                args,
                client_url,
                log: dir.join(format!("etcd-m{i}.log")),
            };
            m.start();
            m
        })
        .collect()
}

struct Ha {
    dir: tempfile::TempDir,
    etcd: Vec<Member>,
    endpoints: String,
    coord_addrs: [SocketAddr; 2],
    coords: [Option<Proc>; 2],
    supervisors: Vec<Proc>,
    dead_logs: String,
}

impl Ha {
    fn start() -> Ha {
        let dir = tempfile::tempdir().expect("temp dir");
        let etcd = etcd_cluster(dir.path());
        let endpoints: Vec<&str> = etcd.iter().map(|m| m.client_url.as_str()).collect();
        let endpoints = endpoints.join(",");
        let mut ha = Ha {
            etcd,
            endpoints,
            coord_addrs: [free_addr("127.0.0.1"), free_addr("127.0.0.1")],
            coords: [None, None],
            supervisors: Vec::new(),
            dead_logs: String::new(),
            dir,
        };
        ha.start_coordinator(0);
        ha.wait_until("coordinator 0 leads", |h| {
            h.coord_log(0).contains("Leading")
        });
        ha.start_coordinator(1);
        ha.wait_until("coordinator 1 stands by", |h| {
            h.coord_log(1).contains("Standby")
        });
        let all = ha.coordinators();
        for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
            let addr = free_addr(ip);
            let sdir = ha.dir.path().join(format!("supervisor-{ip}"));
            let args = vec![
                "supervisor".to_string(),
                "--listen".into(),
                addr.to_string(),
                "--dir".into(),
                sdir.display().to_string(),
                "--coordinator".into(),
                all.clone(),
            ];
            ha.supervisors
                .push(Proc::start(&format!("supervisor {ip}"), &args));
        }
        ha.wait_until("every supervisor registered", |h| {
            h.coord_log(0).matches("Supervisor registered.").count() >= 3
        });
        ha
    }

    fn coordinators(&self) -> String {
        format!("{},{}", self.coord_addrs[0], self.coord_addrs[1])
    }

    fn start_coordinator(&mut self, i: usize) {
        let args = vec![
            "coordinator".to_string(),
            "--listen".into(),
            self.coord_addrs[i].to_string(),
            "--state-dir".into(),
            self.dir
                .path()
                .join(format!("coordinator-{i}"))
                .display()
                .to_string(),
            "--supervisor-timeout".into(),
            "5s".into(),
            "--etcd".into(),
            self.endpoints.clone(),
            "--lease-secs".into(),
            LEASE_SECS.to_string(),
        ];
        self.coords[i] = Some(Proc::start(&format!("coordinator {i}"), &args));
    }

    fn coord_log(&self, i: usize) -> String {
        self.coords[i].as_ref().map(Proc::log).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut all = self.dead_logs.clone();
        for i in 0..2 {
            all.push_str(&self.coord_log(i));
        }
        for s in &self.supervisors {
            all.push_str(&s.log());
        }
        for m in &self.etcd {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            all.push_str(&format!("[etcd {}] {}\n", m.client_url, tail.join("\n")));
        }
        all
    }

    fn kill_coordinator(&mut self, i: usize) {
        if let Some(p) = self.coords[i].take() {
            // SAFETY: kill(2) on a process this test started.
            assert_eq!(unsafe { libc::kill(p.pid(), libc::SIGKILL) }, 0);
            drop(p);
            self.dead_logs.push_str(&self.coord_log(i));
        }
    }

    fn signal(&self, i: usize, sig: i32) {
        let p = self.coords[i].as_ref().expect("running");
        // SAFETY: kill(2) on a process this test started.
        assert_eq!(unsafe { libc::kill(p.pid(), sig) }, 0);
    }

    fn topo(&self, args: &[&str]) -> (i32, String, String) {
        cluster_support::client(&self.coordinators(), args)
    }

    fn submit(&self, file: &Path) -> String {
        let (code, out, err) = self.topo(&["submit", file.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "submit failed: {err}\n{}", self.logs());
        out.trim().to_string()
    }

    fn topology(&self, id: &str) -> Option<Json> {
        let (code, out, _) = self.topo(&["list", "--json"]);
        if code != 0 {
            return None;
        }
        let all: Json = serde_json::from_str(&out).ok()?;
        all.as_array()?.iter().find(|t| t["id"] == id).cloned()
    }

    fn wait_until(&self, what: &str, mut cond: impl FnMut(&Ha) -> bool) {
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

    fn wait_status(&self, id: &str, status: &str) {
        self.wait_until(&format!("{id} is {status}"), |h| match h.topology(id) {
            Some(t) if t["status"] == status => true,
            Some(t) if t["status"] == "failed" => panic!("{id} failed: {t}\n{}", h.logs()),
            _ => false,
        });
    }

    /// `etcdctl ARGS` against the live members; its stdout.
    fn etcdctl(&self, args: &[&str]) -> String {
        let live: Vec<&str> = self
            .etcd
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| m.client_url.as_str())
            .collect();
        let out = Command::new("timeout")
            .arg("3")
            .arg("etcdctl")
            .arg(format!("--endpoints={}", live.join(",")))
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .expect("run etcdctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A topology: `spout` → `relay` (3 tasks) → `out` (3 tasks writing `NAME.jsonl`).
fn topology_file(h: &Ha, name: &str, spout: &str) -> (PathBuf, PathBuf) {
    cluster_support::relay_topology(h.dir.path(), name, spout, "line as n")
}

fn open_pipe(path: &Path, h: &Ha) -> File {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    std::thread::spawn(move || {
        let _ = tx.send(std::fs::OpenOptions::new().write(true).open(p));
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(f) => f.expect("open the pipe"),
        Err(_) => panic!("no spout opened the pipe\n{}", h.logs()),
    }
}

fn write_ids(writer: &mut File, ids: &[String]) {
    for i in ids {
        writeln!(writer, "{i}").expect("write an id");
    }
    writer.flush().expect("flush");
}

fn missing(want: &BTreeSet<String>, got: &BTreeSet<String>) -> Vec<String> {
    want.difference(got).take(5).cloned().collect()
}

/// The revision at which the current leader created the leader key.
fn takeover_revision(h: &Ha) -> i64 {
    let out = h.etcdctl(&["get", "/topo/leader", "-w", "json"]);
    let v: Json = serde_json::from_str(&out).unwrap_or(Json::Null);
    v["kvs"][0]["create_revision"].as_i64().unwrap_or(0)
}

/// The values written to the writer key after revision `rev`.
fn writers_since(h: &Ha, rev: i64) -> Vec<String> {
    let out = h.etcdctl(&["watch", "--rev", &(rev + 1).to_string(), "/topo/writer"]);
    out.lines()
        .collect::<Vec<_>>()
        .chunks(3)
        .filter(|c| c.len() == 3 && c[0] == "PUT")
        .map(|c| c[2].to_string())
        .collect()
}

/// Acceptance of coordinator HA: the leader killed mid-run, a standby leads within the
/// lease + 2 s, the topology runs on and is listed, a new submit works, every id arrives;
/// the old leader restarted stands by; one etcd member down changes nothing; a leader
/// paused past its lease and resumed writes nothing and stops.
#[test]
fn a_killed_leader_is_replaced_by_a_standby_and_every_id_still_arrives() {
    let mut h = Ha::start();
    let pipe = h.dir.path().join("ha.pipe");
    mkfifo(&pipe);
    let (file, out) = topology_file(
        &h,
        "ha",
        &format!("type = \"file_lines\"\npath = \"{}\"", pipe.display()),
    );
    let id = h.submit(&file);
    let mut writer = open_pipe(&pipe, &h);
    let ids: Vec<String> = (0..2000).map(|i| format!("id{i:05}")).collect();
    write_ids(&mut writer, &ids[..1000]);
    h.wait_until("some ids arrived", |_| sink_strings(&out, "n").len() >= 100);

    // The standby copied the binary from the leader: it can serve it once it leads.
    h.wait_until("the standby copied the binary", |h| {
        h.coord_log(1)
            .contains("Copied an artifact from the leader.")
    });
    let copied = std::fs::read_dir(h.dir.path().join("coordinator-1").join("artifacts"))
        .expect("the standby's artifacts")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().len() == 64)
        .count();
    assert_eq!(copied, 1, "the standby holds the binary");

    // The leader killed: the standby leads within the lease and 2 s.
    let killed = Instant::now();
    h.kill_coordinator(0);
    h.wait_until("coordinator 1 leads", |h| {
        h.coord_log(1).contains("Leading")
    });
    let took = killed.elapsed();
    eprintln!("the standby led {took:?} after the leader was killed");
    assert!(
        took <= Duration::from_secs(LEASE_SECS + 2),
        "the standby took {took:?} to lead\n{}",
        h.logs()
    );
    h.wait_until("the topology is listed, every worker running", |h| {
        h.topology(&id).is_some_and(|t| {
            t["status"] == "active"
                && t["assignments"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|w| w["running"] == true))
        })
    });
    let leader = h.etcdctl(&["get", "/topo/leader", "--print-value-only"]);
    assert!(
        leader.contains(&h.coord_addrs[1].to_string()),
        "published leader: {leader}"
    );

    // A new submit to the new leader; the rest of the ids; all arrive.
    let (file2, out2) = topology_file(&h, "after", "type = \"sequence\"\ncount = 300");
    let text = std::fs::read_to_string(&file2).expect("read");
    std::fs::write(&file2, text.replace("line as n", "n")).expect("write");
    let id2 = h.submit(&file2);
    write_ids(&mut writer, &ids[1000..]);
    drop(writer);
    h.wait_status(&id, "finished");
    h.wait_status(&id2, "finished");
    let got = sink_strings(&out, "n");
    let want: BTreeSet<String> = ids.into_iter().collect();
    assert!(
        got.is_superset(&want),
        "missing: {:?}",
        missing(&want, &got)
    );
    let numbers = workers_support::sink_values(&out2, "n");
    let numbers: BTreeSet<i64> = numbers.iter().filter_map(Json::as_i64).collect();
    assert_eq!(numbers.len(), 300, "{:?}", numbers.iter().take(5));

    // The old leader restarted: it stands by.
    h.start_coordinator(0);
    h.wait_until("the restarted coordinator stands by", |h| {
        h.coord_log(0).contains("Standby")
    });

    // One etcd member killed: control commands still work (a state write, a list).
    h.etcd[0].stop();
    let (file3, _) = topology_file(&h, "degraded", "type = \"sequence\"\ncount = 50");
    let text = std::fs::read_to_string(&file3).expect("read");
    std::fs::write(&file3, text.replace("line as n", "n")).expect("write");
    let id3 = h.submit(&file3);
    h.wait_status(&id3, "finished");

    // The leader paused past its lease: the standby leads; resumed, the old leader
    // writes nothing and stops.
    h.signal(1, libc::SIGSTOP);
    h.wait_until("the standby takes over from the paused leader", |h| {
        h.coord_log(0).contains("Leading")
    });
    // Any write of the old leader's after the new one took the key is a deposed write.
    let before = takeover_revision(&h);
    assert!(before > 0, "no revision from etcd\n{}", h.logs());
    // The supervisors hear nothing from the paused leader and move to the new one.
    h.wait_until("the supervisors leave the paused leader", |h| {
        h.coord_log(0).matches("Supervisor registered.").count() >= 3
    });
    h.signal(1, libc::SIGCONT);
    h.wait_until("the resumed old leader stops", |h| {
        h.coord_log(1).contains("Lost the lead")
    });
    // The new leader takes a submit (a write of the state).
    let (file4, _) = topology_file(&h, "last", "type = \"sequence\"\ncount = 50");
    let text = std::fs::read_to_string(&file4).expect("read");
    std::fs::write(&file4, text.replace("line as n", "n")).expect("write");
    let id4 = h.submit(&file4);
    h.wait_status(&id4, "finished");
    let paused = h.coord_addrs[1].to_string();
    let new_leader = h.coord_addrs[0].to_string();
    h.wait_until("the new leader's writes show in etcd", |h| {
        writers_since(h, before).contains(&new_leader)
    });
    let writers = writers_since(&h, before);
    assert!(
        !writers.contains(&paused),
        "the deposed leader wrote: {writers:?}\n{}",
        h.logs()
    );
    h.wait_until("the new leader lists the topologies", |h| {
        h.topology(&id).is_some_and(|t| t["status"] == "finished")
    });

    // The deposed coordinator restarted stands by.
    h.kill_coordinator(1);
    h.start_coordinator(1);
    h.wait_until("the restarted coordinator stands by", |h| {
        h.coord_log(1).contains("Standby")
    });

    // Every etcd member down: the running topology keeps running, control commands
    // fail with a clear message, and work again once etcd is back.
    let pipe = h.dir.path().join("outage.pipe");
    mkfifo(&pipe);
    let (file5, out5) = topology_file(
        &h,
        "outage",
        &format!("type = \"file_lines\"\npath = \"{}\"", pipe.display()),
    );
    let id5 = h.submit(&file5);
    let mut writer = open_pipe(&pipe, &h);
    let ids: Vec<String> = (0..1000).map(|i| format!("out{i:05}")).collect();
    write_ids(&mut writer, &ids[..500]);
    h.wait_until("some ids arrived", |_| sink_strings(&out5, "n").len() >= 50);
    for m in &mut h.etcd {
        m.stop();
    }
    h.wait_until("the leader without etcd stops", |h| {
        h.coord_log(0).contains("Lost the lead")
    });
    let (code, _, err) = h.topo(&["list"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("no coordinator accepted the connection"),
        "{err}"
    );
    // The end of the input ends the spout; only a coordinator ends the run.
    write_ids(&mut writer, &ids[500..]);
    drop(writer);
    let want: BTreeSet<String> = ids.into_iter().collect();
    h.wait_until("every id arrived without etcd", |_| {
        sink_strings(&out5, "n").is_superset(&want)
    });
    for m in &mut h.etcd {
        m.start();
    }
    h.wait_until("the standby leads once etcd is back", |h| {
        h.coord_log(1).contains("Leading")
    });
    h.wait_status(&id5, "finished");
}

/// etcd with authentication (one member, on 127.0.0.5): a coordinator with the etcd user
/// and its password leads; one with a wrong password never does, and says why.
#[test]
fn a_coordinator_authenticates_to_etcd_with_a_user_and_password() {
    need("etcd", "etcd-server");
    need("etcdctl", "etcd-client");
    let dir = tempfile::tempdir().expect("temp dir");
    let client = free_addr("127.0.0.5");
    let peer = free_addr("127.0.0.5");
    let client_url = format!("http://{client}");
    let peer_url = format!("http://{peer}");
    let mut m = Member {
        child: None,
        args: [
            "--name",
            "solo",
            "--data-dir",
            &dir.path().join("etcd").display().to_string(),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("solo={peer_url}"),
        ]
        .map(String::from)
        .to_vec(),
        client_url: client_url.clone(),
        log: dir.path().join("etcd.log"),
    };
    m.start();
    let etcdctl = |user: Option<&str>, args: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.arg("5")
            .arg("etcdctl")
            .arg(format!("--endpoints={client_url}"))
            .env("ETCDCTL_API", "3");
        if let Some(u) = user {
            cmd.arg(format!("--user={u}"));
        }
        let out = cmd.args(args).output().expect("run etcdctl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // The set-up the README gives, once etcd answers.
    let start = Instant::now();
    while !etcdctl(None, &["endpoint", "health"]).0 {
        assert!(start.elapsed() < DEADLINE, "etcd did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    for args in [
        &["user", "add", "root:rootpw", "--interactive=false"][..],
        &["user", "add", "topo:topopw", "--interactive=false"],
        &["role", "add", "topo"],
        &[
            "role",
            "grant-permission",
            "topo",
            "--prefix=true",
            "readwrite",
            "/topo",
        ],
        &["user", "grant-role", "topo", "topo"],
        &["auth", "enable"],
    ] {
        let (ok, out) = etcdctl(None, args);
        assert!(ok, "etcdctl {args:?}: {out}");
    }
    let (ok, out) = etcdctl(None, &["get", "/topo/leader"]);
    assert!(!ok, "etcd answers without a user: {out}");

    let secret_dir = dir.path().join("pw");
    std::fs::create_dir_all(&secret_dir).expect("dir");
    let good = secret_dir.join("good");
    std::fs::write(&good, "topopw\n").expect("write");
    let coordinator = |name: &str, password: &[&str]| {
        let addr = free_addr("127.0.0.1").to_string();
        let state = dir.path().join(name).display().to_string();
        let mut args = vec![
            "coordinator",
            "--listen",
            &addr,
            "--state-dir",
            &state,
            "--etcd",
            &client_url,
            "--etcd-user",
            "topo",
        ];
        args.extend_from_slice(password);
        let env: Vec<(&str, &str)> = if password.is_empty() {
            vec![("TOPO_ETCD_PASSWORD", "wrong")]
        } else {
            vec![]
        };
        (Proc::start_env(name, &args, &env), addr)
    };
    let (wrong, _) = coordinator("wrong", &[]);
    let wait = |p: &Proc, what: &str| {
        let start = Instant::now();
        while !p.log().contains(what) {
            assert!(start.elapsed() < DEADLINE, "no `{what}`:\n{}", p.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait(&wrong, "authentication failed");
    let good_path = good.display().to_string();
    let (right, addr) = coordinator("right", &["--etcd-password-file", &good_path]);
    wait(&right, "Leading");
    assert!(!wrong.log().contains("Leading"), "{}", wrong.log());
    let (ok, leader) = etcdctl(
        Some("root:rootpw"),
        &["get", "/topo/leader", "--print-value-only"],
    );
    assert!(ok && leader.contains(&addr), "{leader}");
}
