//! Cluster security, end to end: whoever lacks the cluster secret gets nothing done, and a
//! supervisor runs only the bytes the coordinator assigned.
//!
//! Each test starts `topo coordinator` on 127.0.0.1 and supervisors on other loopback
//! addresses as separate processes, with secrets in files; every process is killed when
//! its guard drops. Waits poll an observable condition (a log line, a command's answer)
//! with a deadline.

mod cluster_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use topo_cluster::artifacts::{file_hash, Sha256Hex};

const DEADLINE: Duration = Duration::from_secs(60);
const REFUSED: &str =
    "the coordinator refused the connection: authentication failed (wrong cluster secret?)";

fn topo() -> &'static str {
    env!("CARGO_BIN_EXE_topo")
}

/// Waits for a daemon's log to satisfy a condition.
trait WaitLog {
    /// Waits until the log satisfies `ok`; panics with the log after the deadline.
    fn wait_log(&self, what: &str, ok: impl Fn(&str) -> bool);
}

impl WaitLog for Proc {
    fn wait_log(&self, what: &str, ok: impl Fn(&str) -> bool) {
        wait(what, || ok(&self.log()), || self.log());
    }
}

fn wait(what: &str, mut ok: impl FnMut() -> bool, context: impl Fn() -> String) {
    let start = Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out waiting for {what}; log:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs a client verb to completion, without TOPO_CLUSTER_SECRET from the test's
/// environment.
fn client(args: &[&str]) -> Output {
    Command::new(topo())
        .args(args)
        .env_remove("TOPO_CLUSTER_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("run topo")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Setup {
    dir: tempfile::TempDir,
    right: PathBuf,
    wrong: PathBuf,
    addr_text: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let right = dir.path().join("cluster.secret");
        let wrong = dir.path().join("wrong.secret");
        std::fs::write(&right, "the right secret\n").expect("write secret");
        std::fs::write(&wrong, "not the secret\n").expect("write secret");
        let addr = free_addr("127.0.0.1");
        Setup {
            dir,
            right,
            wrong,
            addr_text: addr.to_string(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn coordinator(&self) -> Proc {
        let state = self.path("coordinator");
        let p = Proc::start(
            "",
            &[
                "coordinator",
                "--listen",
                &self.addr_text,
                "--state-dir",
                &state.display().to_string(),
                "--secret-file",
                &self.right.display().to_string(),
            ],
        );
        // Up once a client with the right secret is served.
        wait(
            "the coordinator to answer",
            || self.list(&self.right).status.success(),
            || p.log(),
        );
        p
    }

    fn supervisor(&self, ip: &str, secret: &Path) -> (Proc, PathBuf) {
        let dir = self.path(&format!("supervisor-{ip}"));
        let addr = free_addr(ip).to_string();
        let p = Proc::start(
            "",
            &[
                "supervisor",
                "--listen",
                &addr,
                "--dir",
                &dir.display().to_string(),
                "--coordinator",
                &self.addr_text,
                "--secret-file",
                &secret.display().to_string(),
            ],
        );
        (p, dir)
    }

    fn list(&self, secret: &Path) -> Output {
        client(&[
            "list",
            "--json",
            "--coordinator",
            &self.addr_text,
            "--secret-file",
            &secret.display().to_string(),
        ])
    }

    fn submit(&self, file: &Path, secret: &Path) -> Output {
        client(&[
            "submit",
            &file.display().to_string(),
            "--coordinator",
            &self.addr_text,
            "--secret-file",
            &secret.display().to_string(),
        ])
    }
}

fn wordcount() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wordcount.topo.toml")
}

/// Lines of `log` that record a refused control connection for a wrong secret.
fn refusals(log: &str) -> usize {
    log.lines()
        .filter(|l| {
            l.contains("WARN")
                && l.contains("refused 127.0.0.1:")
                && l.ends_with(": authentication failed (wrong cluster secret?)")
        })
        .count()
}

#[test]
fn a_submit_with_a_wrong_secret_is_refused_and_logged() {
    let s = Setup::new();
    let coordinator = s.coordinator();

    let out = s.submit(&wordcount(), &s.wrong);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("error: {REFUSED}\n"));
    assert_eq!(stdout(&out), "");
    coordinator.wait_log("the refusal in the coordinator's log", |l| refusals(l) == 1);

    // No secret at all is refused the same way.
    let out = client(&[
        "submit",
        &wordcount().display().to_string(),
        "--coordinator",
        &s.addr_text,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out), format!("error: {REFUSED}\n"));
    coordinator.wait_log("the second refusal", |l| refusals(l) == 2);

    // Nothing was submitted, nothing uploaded.
    let out = s.list(&s.right);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(listed, serde_json::json!([]));
    let stored = s.path("coordinator").join("artifacts");
    let uploads = std::fs::read_dir(&stored).map_or(0, |d| d.count());
    assert_eq!(uploads, 0, "an artifact arrived from a refused client");
    // The secret itself appears in no log line.
    assert!(!coordinator.log().contains("the right secret"));
    assert!(!coordinator.log().contains("not the secret"));
}

#[test]
fn a_supervisor_with_a_wrong_secret_is_refused_and_never_registers() {
    let s = Setup::new();
    let coordinator = s.coordinator();
    let (supervisor, _) = s.supervisor("127.0.0.2", &s.wrong);

    // It keeps trying; each attempt is refused on both sides.
    coordinator.wait_log("two refusals in the coordinator's log", |l| {
        refusals(l) >= 2
    });
    supervisor.wait_log("the refusal in the supervisor's log", |l| {
        l.contains(REFUSED)
    });
    assert!(
        !coordinator.log().contains("Supervisor registered"),
        "{}",
        coordinator.log()
    );

    // A submitted topology gets no worker on it.
    let out = s.submit(&wordcount(), &s.right);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = s.list(&s.right);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let running = listed[0]["assignments"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|w| w["running"] == true).count());
    assert_eq!(running, 0, "{listed}");
    assert!(!supervisor.log().contains("Binary stored"));
}

#[test]
fn a_tampered_artifact_is_refused_by_the_supervisor() {
    let s = Setup::new();
    let hash: Sha256Hex = file_hash(Path::new(topo())).expect("hash of topo");
    let marker = s.path("the-impostor-ran");
    // The supervisor's store holds a file under the topo binary's name that is something
    // else: a script that would leave a marker if it ever ran.
    let sdir = s.path("supervisor-127.0.0.3");
    let planted = sdir.join("artifacts").join(hash.as_str());
    std::fs::create_dir_all(planted.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &planted,
        format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    )
    .expect("plant");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let impostor = file_hash(&planted).expect("hash");

    let coordinator = s.coordinator();
    let (supervisor, dir) = s.supervisor("127.0.0.3", &s.right);
    assert_eq!(dir, sdir);
    coordinator.wait_log("the supervisor to register", |l| {
        l.contains("Supervisor registered")
    });
    let out = s.submit(&wordcount(), &s.right);
    assert!(out.status.success(), "{}", stderr(&out));

    let refusal = format!(
        "artifact {}: stored file hashes to {}; refusing to run it",
        hash.short(),
        impostor.short()
    );
    supervisor.wait_log("the supervisor to refuse the tampered file", |l| {
        l.contains(&refusal)
    });
    assert!(!marker.exists(), "the tampered artifact was executed");
}

#[test]
fn a_binary_altered_in_the_coordinators_store_is_refused_by_the_supervisor() {
    let s = Setup::new();
    let legit_ran = s.path("the-binary-ran");
    let impostor_ran = s.path("the-impostor-ran");
    let script = |marker: &Path| format!("#!/bin/sh\ntouch '{}'\n", marker.display());
    let binary = s.path("my-topology-binary");
    std::fs::write(&binary, script(&legit_ran)).expect("write binary");
    let hash = file_hash(&binary).expect("hash");

    // Submitted while no supervisor is there: the coordinator stores it, places nothing.
    let coordinator = s.coordinator();
    let out = client(&[
        "submit",
        &wordcount().display().to_string(),
        "--binary",
        &binary.display().to_string(),
        "--coordinator",
        &s.addr_text,
        "--secret-file",
        &s.right.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("uploaded "), "{}", stderr(&out));

    // Someone with access to the coordinator's disk swaps the stored bytes.
    let stored = s.path("coordinator").join("artifacts").join(hash.as_str());
    std::fs::write(&stored, script(&impostor_ran)).expect("tamper");
    let impostor = file_hash(&stored).expect("hash");

    let (supervisor, sdir) = s.supervisor("127.0.0.4", &s.right);
    let refusal = format!(
        "artifact {}: uploaded bytes hash to {}; discarded",
        hash.short(),
        impostor.short()
    );
    supervisor.wait_log("the supervisor to refuse the altered binary", |l| {
        l.contains(&refusal)
    });
    assert!(!sdir.join("artifacts").join(hash.as_str()).exists());
    assert!(!impostor_ran.exists(), "the altered binary was executed");
    assert!(
        !legit_ran.exists(),
        "something ran without a verified binary"
    );
    drop(coordinator);
}
