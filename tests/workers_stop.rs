//! Stopping a run of worker processes: Ctrl-C drains every worker and exits 0; workers
//! do not outlive a supervisor that was killed.

mod workers_support;

use workers_support::{row, wait_until, Topo};

const UNBOUNDED: &str = r#"
[topology]
name = "unbounded"
workers = 2
acking = true

[spouts.sentences]
type = "random_sentences"

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["sentences"]

[bolts.count]
type = "word_count"
parallelism = 2
inputs = [{ from = "split", fields = ["word"] }]

[bolts.out]
type = "file_sink"
path = "out.jsonl"
inputs = ["count"]
"#;

/// True once `pid` is gone (or a zombie nobody reaped yet).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn ctrl_c_drains_every_worker_and_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("u.topo.toml");
    std::fs::write(&file, UNBOUNDED).expect("write");
    let topo = Topo::start(&file, dir.path(), &[]);
    topo.wait_running(2);
    wait_until(
        "counts reach the sink",
        || topo.stderr(),
        || !workers_support::sink_strings(&dir.path().join("out.jsonl"), "word").is_empty(),
    );
    topo.signal(libc::SIGINT);
    let (code, out, err) = topo.wait();
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(err.contains("Stop requested; finishing the run."), "{err}");
    let (emitted, _, acked, failed) = row(&out, "sentences");
    assert!(emitted > 0, "{out}");
    assert_eq!(
        (acked, failed),
        (emitted, 0),
        "a drain acks everything: {out}"
    );
}

#[test]
fn workers_die_with_a_killed_supervisor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("u.topo.toml");
    std::fs::write(&file, UNBOUNDED).expect("write");
    let topo = Topo::start(&file, dir.path(), &[]);
    let workers = topo.wait_running(2);
    for (pid, _) in &workers {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).expect("cmdline");
        assert!(cmdline.split('\0').any(|a| a == "worker"), "{cmdline:?}");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let ppid: u32 = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .expect("ppid");
        assert_eq!(ppid, topo.pid(), "workers are direct children");
    }
    topo.signal(libc::SIGKILL);
    let _ = topo.wait();
    for (pid, _) in workers {
        wait_until(&format!("worker {pid} is gone"), String::new, || gone(pid));
    }
}
