//! A topology's resources and Python packages travel with it: a pystorm spout and bolt
//! listed in `[topology] resources`, pystorm named in `python_requirements`, run by
//! supervisors whose folders hold no script and no package; the resource archive moves
//! once per content; hostile archives are refused at submit and by supervisors; the same
//! file runs with `topo run`.
//!
//! pip installs pystorm from a wheel folder (`.tools/wheels`, downloaded from PyPI once
//! and reused), which the daemons and `topo run` are pointed at with `PIP_NO_INDEX` and
//! `PIP_FIND_LINKS`, as an operator points them at a mirror: the test then needs no
//! network after its first run and builds each venv in seconds.

mod cluster_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cluster_support::{free_addr, Proc};
use serde_json::Value as Json;

const DEADLINE: Duration = Duration::from_secs(120);

const SENTENCES: &str = "the cow jumped over the moon
an apple a day keeps the doctor away
four score and seven years ago
snow white and the seven dwarfs
i am at two with nature";

/// The wheel folder pip installs pystorm from, filled from PyPI when it lacks pystorm.
fn wheelhouse() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/wheels");
    let has = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|mut e| {
            e.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("pystorm-")))
        })
    };
    if !has(&dir) {
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--disable-pip-version-check", "-q"])
            .arg("--dest")
            .arg(&dir)
            .arg("pystorm")
            .output()
            .expect("run python3 -m pip download");
        assert!(
            out.status.success() && has(&dir),
            "cannot download pystorm's wheels into {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// The environment the daemons and `topo run` get: pip reads the wheel folder only.
fn pip_env(wheels: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("PIP_NO_INDEX", "1".into()),
        ("PIP_FIND_LINKS", wheels.display().to_string()),
        ("PIP_DISABLE_PIP_VERSION_CHECK", "1".into()),
    ]
}

/// The job's folder: the topology file, two pystorm scripts, the requirements.
fn write_job(dir: &Path, out: &Path) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/multilang");
    std::fs::create_dir_all(dir.join("multilang")).expect("mkdir");
    for script in ["pystorm_sentences.py", "pystorm_split.py"] {
        std::fs::copy(examples.join(script), dir.join("multilang").join(script)).expect("copy");
    }
    std::fs::write(dir.join("requirements.txt"), "pystorm\n").expect("write");
    let file = dir.join("pywords.topo.toml");
    std::fs::write(
        &file,
        format!(
            r#"[topology]
name = "pywords"
workers = 3
message_timeout_secs = 5
resources = ["multilang/", "requirements.txt"]
python_requirements = "requirements.txt"

[spouts.sentences]
type = "multilang"
command = ["python3", "multilang/pystorm_sentences.py"]
outputs = ["sentence"]

[bolts.split]
type = "multilang"
command = ["python3", "multilang/pystorm_split.py"]
outputs = ["word"]
parallelism = 2
inputs = ["sentences"]

[bolts.count]
type = "word_count"
parallelism = 2
inputs = [{{ from = "split", fields = ["word"] }}]

[bolts.sink]
type = "file_sink"
path = "{}"
inputs = ["count"]
"#,
            out.display()
        ),
    )
    .expect("write the topology");
    file
}

/// The final counts in a word_count → file_sink output: the largest count per word.
fn final_counts(path: &Path) -> BTreeMap<String, i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for l in text.lines() {
        let v: Json = serde_json::from_str(l).expect("a json line");
        let word = v["word"].as_str().expect("word").to_string();
        let n = v["count"].as_i64().expect("count");
        let e = counts.entry(word).or_insert(0);
        *e = n.max(*e);
    }
    counts
}

fn word_counts() -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    for w in SENTENCES.split_whitespace() {
        *counts.entry(w.to_string()).or_insert(0) += 1;
    }
    counts
}

struct Cluster {
    dir: tempfile::TempDir,
    coordinator: SocketAddr,
    procs: Vec<Proc>,
    ips: Vec<&'static str>,
}

impl Cluster {
    fn start(supervisors: &[&'static str], env: &[(&str, String)]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let coordinator = free_addr("127.0.0.1");
        let state = dir.path().join("coordinator").display().to_string();
        let coord = Proc::start(
            "coordinator",
            &[
                "coordinator",
                "--listen",
                &coordinator.to_string(),
                "--state-dir",
                &state,
                "--supervisor-timeout",
                "10s",
            ],
        );
        let mut procs = vec![coord];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for ip in supervisors {
            let sdir = dir
                .path()
                .join(format!("supervisor-{ip}"))
                .display()
                .to_string();
            procs.push(Proc::start_env(
                &format!("supervisor {ip}"),
                &[
                    "supervisor",
                    "--listen",
                    &free_addr(ip).to_string(),
                    "--dir",
                    &sdir,
                    "--coordinator",
                    &coordinator.to_string(),
                ],
                &env,
            ));
        }
        let c = Cluster {
            dir,
            coordinator,
            procs,
            ips: supervisors.to_vec(),
        };
        c.wait_until("every supervisor registered", |c| {
            c.procs[0].log().matches("Supervisor registered.").count() >= supervisors.len()
        });
        c
    }

    fn logs(&self) -> String {
        self.procs.iter().map(Proc::log).collect()
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

    /// `topo ARGS --coordinator ADDR`: (exit code, stdout, stderr).
    fn topo(&self, args: &[&str]) -> (i32, String, String) {
        cluster_support::client(&self.coordinator.to_string(), args)
    }

    fn topology(&self, id: &str) -> Option<Json> {
        let (code, out, _) = self.topo(&["list", "--json"]);
        if code != 0 {
            return None;
        }
        let all: Json = serde_json::from_str(&out).ok()?;
        all.as_array()?.iter().find(|t| t["id"] == id).cloned()
    }

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

    /// Submits `file`; (id, stderr).
    fn submit(&self, file: &Path) -> (String, String) {
        let (code, out, err) = self.topo(&["submit", file.to_str().expect("utf-8")]);
        assert_eq!(code, 0, "submit failed: {err}\n{}", self.logs());
        (out.trim().to_string(), err)
    }

    /// Each supervisor's `(binaries fetched, archives fetched)`.
    fn fetched(&self) -> Vec<(u64, u64)> {
        let read = |p: PathBuf| -> u64 {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| serde_json::from_str::<Json>(&t).ok())
                .and_then(|j| j["fetched"].as_u64())
                .unwrap_or(0)
        };
        self.ips
            .iter()
            .map(|ip| {
                let d = self.dir.path().join(format!("supervisor-{ip}"));
                (
                    read(d.join("transfers.json")),
                    read(d.join("archive-transfers.json")),
                )
            })
            .collect()
    }

    /// Resource archives the coordinator received.
    fn uploaded_archives(&self) -> u64 {
        let p = self.dir.path().join("coordinator/archive-transfers.json");
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| serde_json::from_str::<Json>(&t).ok())
            .and_then(|j| j["fetched"].as_u64())
            .unwrap_or(0)
    }

    fn supervisor_dir(&self, ip: &str) -> PathBuf {
        self.dir.path().join(format!("supervisor-{ip}"))
    }
}

/// Every file name under `dir`, recursively (for "no script was there" checks).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Acceptance: a pystorm spout and bolt, shipped as resources with pystorm as their
/// requirement, run across three supervisors with exact counts; a resubmit moves no
/// archive, a changed script one; the same file runs with `topo run`.
#[test]
fn a_pystorm_topology_ships_its_scripts_and_packages_to_three_supervisors() {
    let wheels = wheelhouse();
    let env = pip_env(&wheels);
    let c = Cluster::start(&["127.0.0.2", "127.0.0.3", "127.0.0.4"], &env);
    let job = c.dir.path().join("job");
    let out = c.dir.path().join("counts.jsonl");
    let file = write_job(&job, &out);
    for ip in &c.ips {
        let scripts: Vec<PathBuf> = files_under(&c.supervisor_dir(ip))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "py"))
            .collect();
        assert!(scripts.is_empty(), "{scripts:?}");
    }

    let (id, said) = c.submit(&file);
    assert!(
        said.contains("uploaded the resources (2 listed, "),
        "{said}"
    );
    let t = c.wait_status(&id, "finished");
    assert_eq!(final_counts(&out), word_counts(), "{}", c.logs());
    // Each worker ran in its topology's work directory, where the scripts were unpacked,
    // with the virtualenv of the requirements' hash first on PATH.
    let archive = t["resources"].as_str().expect("resources hash").to_string();
    let requirements = t["requirements"]
        .as_str()
        .expect("requirements hash")
        .to_string();
    assert_eq!(archive.len(), 64, "{t}");
    let mut hosts = 0;
    for ip in &c.ips {
        let d = c.supervisor_dir(ip);
        if !d.join("work").join(&id).exists() {
            continue;
        }
        hosts += 1;
        assert!(d
            .join("work")
            .join(&id)
            .join("multilang/pystorm_split.py")
            .is_file());
        assert!(d
            .join("venvs")
            .join(&requirements)
            .join("bin/python3")
            .exists());
    }
    assert_eq!(hosts, 3, "a worker on every supervisor\n{}", c.logs());
    assert_eq!(
        c.logs().matches("Python virtualenv ready.").count(),
        3,
        "one venv built per supervisor"
    );
    let first = c.fetched();
    assert_eq!(first, vec![(1, 1); 3], "one binary and one archive each");
    assert_eq!(c.uploaded_archives(), 1);

    // The same again: no archive moves, no venv is built.
    std::fs::remove_file(&out).expect("remove the output");
    let (id2, said) = c.submit(&file);
    assert!(
        said.contains("the coordinator has the resources already"),
        "{said}"
    );
    let t2 = c.wait_status(&id2, "finished");
    assert_eq!(t2["resources"], t["resources"]);
    assert_eq!(final_counts(&out), word_counts());
    assert_eq!(c.fetched(), first, "a resubmit transfers no archive");
    assert_eq!(c.uploaded_archives(), 1);
    assert_eq!(c.logs().matches("Python virtualenv ready.").count(), 3);

    // One script changed: one new archive, to the coordinator and to each host once.
    let split = job.join("multilang/pystorm_split.py");
    let text = std::fs::read_to_string(&split).expect("read");
    std::fs::write(&split, format!("{text}\n# changed\n")).expect("write");
    std::fs::remove_file(&out).expect("remove the output");
    let (id3, _) = c.submit(&file);
    let t3 = c.wait_status(&id3, "finished");
    assert_ne!(t3["resources"], t["resources"]);
    assert_eq!(t3["requirements"], t["requirements"]);
    assert_eq!(final_counts(&out), word_counts());
    assert_eq!(c.fetched(), vec![(1, 2); 3], "one new archive per host");
    assert_eq!(c.uploaded_archives(), 2);

    // The same file, unchanged, with `topo run`: paths resolve against its folder and
    // the virtualenv is built in the cache folder.
    std::fs::remove_file(&out).expect("remove the output");
    let cache = c.dir.path().join("cache");
    let ran = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", file.to_str().expect("utf-8"), "--for", "60s"])
        .env("TOPO_CACHE_DIR", &cache)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run topo run");
    let err = String::from_utf8_lossy(&ran.stderr);
    assert_eq!(ran.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Built the Python virtualenv of requirements.txt"),
        "{err}"
    );
    assert!(cache.join("venvs").join(&requirements).is_dir());
    assert_eq!(final_counts(&out), word_counts(), "{err}");
}

/// A gzipped tar with entries written by hand, as an attacker would.
fn crafted(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    use flate2::write::GzEncoder;
    let mut tar = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, kind, body) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        if *kind == tar::EntryType::Symlink {
            h.as_old_mut().linkname[..body.len()].copy_from_slice(body.as_bytes());
            h.set_size(0);
            h.set_cksum();
            tar.append(&h, std::io::empty()).expect("append");
        } else {
            h.set_size(body.len() as u64);
            h.set_cksum();
            tar.append(&h, body.as_bytes()).expect("append");
        }
    }
    tar.into_inner().expect("tar").finish().expect("gzip")
}

/// The three hostile archives and what they are refused with; `outside` is where the
/// absolute one would write.
fn hostile(outside: &Path) -> Vec<(Vec<u8>, String)> {
    use tar::EntryType::{Regular, Symlink};
    let abs = outside.join("abs-evil").display().to_string();
    vec![
        (
            crafted(&[("ok.py", Regular, "x"), ("../evil", Regular, "pwned")]),
            "archive entry \"../evil\" is refused: it goes up with \"..\"".to_string(),
        ),
        (
            crafted(&[(abs.as_str(), Regular, "pwned")]),
            format!("archive entry \"{abs}\" is refused: it is absolute"),
        ),
        (
            crafted(&[("etc", Symlink, "/etc"), ("etc/evil", Regular, "pwned")]),
            "archive entry \"etc\" is refused: it is a symbolic link to \"/etc\", outside the resources"
                .to_string(),
        ),
    ]
}

const PLAIN: &str = "[topology]\nname = \"evil\"\nresources = [\"x\"]\n\
    [spouts.s]\ntype = \"sequence\"\ncount = 1\n\
    [bolts.b]\ntype = \"map\"\nfields = [\"n\"]\ninputs = [\"s\"]\n";

/// Acceptance: archives with `../evil`, an absolute path or a symlink to `/etc` are
/// refused at submit (the coordinator checks every entry before it accepts the topology),
/// and `topo submit` refuses to pack a link out of the resources.
#[test]
fn hostile_archives_are_refused_at_submit() {
    let c = Cluster::start(&[], &[]);
    let dir = c.dir.path();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let secret = topo_cluster::secret::Secret::none();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_topo"));
    for (bytes, message) in hostile(dir) {
        let s = topo_cluster::client::Submission {
            name: "evil",
            text: PLAIN,
            binary: &binary,
            resources: Some(&bytes),
        };
        let err = rt
            .block_on(topo_cluster::client::submit(&[c.coordinator], &secret, s))
            .expect_err("refused");
        let text = err.to_string();
        assert!(
            text.starts_with("the coordinator refused: resource archive ")
                && text.ends_with(&message),
            "{text}"
        );
    }
    assert!(!dir.join("abs-evil").exists());
    assert!(!dir.join("coordinator/evil").exists());
    let (code, out, _) = c.topo(&["list", "--json"]);
    assert_eq!((code, out.trim()), (0, "[]"), "no topology was accepted");

    // `topo submit` packs nothing that leaves the resources.
    let job = dir.join("job");
    std::fs::create_dir_all(job.join("x")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", job.join("x/etc")).expect("symlink");
    let file = job.join("evil.topo.toml");
    std::fs::write(&file, PLAIN).expect("write");
    let (code, _, err) = c.topo(&["submit", file.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{err}");
    assert_eq!(
        err,
        "error: resource \"x/etc\" is refused: it is a symbolic link to \"/etc\", outside the resources\n"
    );
}

/// Acceptance: a supervisor unpacks nothing hostile even when its coordinator sends it
/// (here a fake coordinator that does), and refuses a tampered archive; nothing is
/// written outside the work directory.
#[test]
fn a_supervisor_refuses_hostile_and_tampered_archives() {
    use topo_cluster::artifacts::Sha256Hex;
    use topo_cluster::control::{Listener, Role};
    use topo_cluster::proto::{Assignment, Chunk, FromSupervisor, ToSupervisor};

    let dir = tempfile::tempdir().expect("temp dir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let secret = topo_cluster::secret::Secret::none();
    let listener = rt
        .block_on(Listener::bind(
            "127.0.0.1:0".parse().expect("addr"),
            &secret,
        ))
        .expect("bind");
    let sdir = dir.path().join("supervisor");
    let supervisor = Proc::start(
        "supervisor",
        &[
            "supervisor",
            "--listen",
            &free_addr("127.0.0.2").to_string(),
            "--dir",
            &sdir.display().to_string(),
            "--coordinator",
            &listener.local_addr().to_string(),
        ],
    );
    let mut cases = hostile(dir.path());
    // Bytes that do not hash to the name they are sent under.
    let good = crafted(&[("ok.py", tar::EntryType::Regular, "x")]);
    let mut tampered = good.clone();
    let n = tampered.len();
    tampered[n - 9] ^= 0xff;
    cases.push((tampered, "uploaded bytes hash to".to_string()));
    // A fine archive whose requirements pip refuses: the worker is refused with pip's words.
    let pip = crafted(&[("req.txt", tar::EntryType::Regular, "--no-such-pip-option\n")]);
    cases.push((
        pip,
        "python_requirements req.txt: pip install failed: exit status: ".to_string(),
    ));
    let pip_text = PLAIN.replace(
        "resources = [\"x\"]",
        "resources = [\"req.txt\"]\npython_requirements = \"req.txt\"",
    );
    let binary = b"#!/bin/sh\nexit 0\n".to_vec();
    let binary_hash = Sha256Hex::of(&binary).to_string();
    let refusals = rt.block_on(async {
        let (mut conn, role, _) = tokio::time::timeout(DEADLINE, listener.accept())
            .await
            .expect("dialed")
            .expect("accept");
        assert_eq!(role, Role::Supervisor);
        let reg = conn.recv::<FromSupervisor>().await.expect("recv");
        assert!(
            matches!(reg, Some(FromSupervisor::Register { .. })),
            "{reg:?}"
        );
        conn.send(&ToSupervisor::Registered).await.expect("send");
        let mut refusals = Vec::new();
        for (i, (bytes, _)) in cases.iter().enumerate() {
            // The tampered one is announced under the good archive's hash.
            let hash = if i == 3 {
                Sha256Hex::of(&good)
            } else {
                Sha256Hex::of(bytes)
            }
            .to_string();
            let a = Assignment {
                topology: format!("evil-{}", 1_700_000_000 + i),
                worker: 0,
                binary: binary_hash.clone(),
                resources: Some(hash.clone()),
                text: if i == 4 {
                    pip_text.clone()
                } else {
                    PLAIN.to_string()
                },
                fingerprint: 1,
                inactive: false,
                restore: None,
            };
            conn.send(&ToSupervisor::Assign { assignment: a })
                .await
                .expect("send");
            loop {
                let msg = tokio::time::timeout(DEADLINE, conn.recv::<FromSupervisor>())
                    .await
                    .expect("the supervisor answers")
                    .expect("recv")
                    .expect("open");
                match msg {
                    FromSupervisor::Fetch { hash: h } => {
                        let data = if h == binary_hash {
                            binary.clone()
                        } else {
                            bytes.clone()
                        };
                        conn.send(&ToSupervisor::ArtifactBegin {
                            hash: h.clone(),
                            len: data.len() as u64,
                        })
                        .await
                        .expect("send");
                        conn.send(&ToSupervisor::ArtifactChunk {
                            hash: h.clone(),
                            data: Chunk(data),
                        })
                        .await
                        .expect("send");
                        conn.send(&ToSupervisor::ArtifactEnd { hash: h })
                            .await
                            .expect("send");
                    }
                    FromSupervisor::Refused { message, .. } => {
                        refusals.push(message);
                        break;
                    }
                    FromSupervisor::Started { .. } => panic!("started a worker of case {i}"),
                    // As a coordinator does: a supervisor that hears nothing for a while
                    // dials again.
                    FromSupervisor::Heartbeat => {
                        conn.send(&ToSupervisor::Alive).await.expect("send");
                    }
                    _ => {}
                }
            }
        }
        refusals
    });
    for ((_, want), got) in cases.iter().zip(&refusals) {
        assert!(
            got.contains(want.as_str()),
            "{got}\nwanted: {want}\n{}",
            supervisor.log()
        );
    }
    assert!(
        refusals[4].contains("no-such-pip-option"),
        "{}",
        refusals[4]
    );
    // Nothing was written outside the work directory; in it, only the last case's
    // requirements (and the supervisor's note that it unpacked them).
    assert!(!dir.path().join("abs-evil").exists());
    assert!(!sdir.join("work/evil").exists());
    assert!(!sdir.join("evil").exists());
    let mut work = files_under(&sdir.join("work"));
    work.sort();
    assert_eq!(
        work,
        [
            sdir.join("work/evil-1700000004/req.txt"),
            sdir.join("work/evil-1700000004.resources"),
        ],
    );
    let stored = files_under(&sdir.join("archives"));
    assert_eq!(stored.len(), 4, "all but the tampered one: {stored:?}");
}

/// `topo run` resolves resources against the topology file's folder and refuses to start
/// without one of them.
#[test]
fn topo_run_refuses_a_missing_resource() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("job.topo.toml");
    std::fs::write(&file, PLAIN.replace("[\"x\"]", "[\"lookup.csv\"]")).expect("write");
    let ran = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", file.to_str().expect("utf-8"), "--for", "5s"])
        .output()
        .expect("run topo run");
    assert_eq!(ran.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&ran.stderr),
        format!(
            "error: {}: resource \"lookup.csv\" does not exist in {}\n",
            file.display(),
            dir.path().display()
        )
    );
    std::fs::write(dir.path().join("lookup.csv"), "a,1\n").expect("write");
    let ran = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["run", file.to_str().expect("utf-8"), "--for", "5s"])
        .output()
        .expect("run topo run");
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
}
