//! `/metrics` of a run with worker processes survives a worker's death: the restart is
//! counted, the dead worker's tasks keep their series, and no counter goes backwards.
//!
//! The spout is unbounded, so the run lives as long as the test needs: a scrape, the
//! kill, the restart, a scrape, then Ctrl-C drains it.

mod prom;
mod workers_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use workers_support::{wait_until, Topo};

fn scrape(addr: &str) -> Option<prom::Exposition> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    Some(prom::parse(body).unwrap_or_else(|e| panic!("{e}\n{body}")))
}

/// Scrapes until `cond` holds for a scrape; returns that scrape.
fn scrape_until(
    topo: &Topo,
    addr: &str,
    what: &str,
    cond: impl Fn(&prom::Exposition) -> bool,
) -> prom::Exposition {
    let mut found = None;
    wait_until(
        what,
        || format!("{:?}\n{}", scrape(addr).map(|e| e.samples), topo.stderr()),
        || {
            found = scrape(addr).filter(|e| cond(e));
            found.is_some()
        },
    );
    found.expect("a scrape")
}

/// Bytes received on `pid`'s TCP sockets that it has not read yet (Linux: the
/// `rx_queue` column of /proc/PID/net/tcp{,6} for the socket inodes among its fds).
fn unread_bytes(pid: i32) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    let inodes: std::collections::HashSet<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut unread = 0;
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(queues), Some(inode)) = (cols.get(4), cols.get(9)) else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            if let Some((_, rx)) = queues.split_once(':') {
                unread += u64::from_str_radix(rx, 16).unwrap_or(0);
            }
        }
    }
    unread
}

#[test]
fn a_killed_worker_is_counted_and_no_counter_goes_backwards() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("restart.topo.toml");
    // Plan (3 workers, round-robin by task id): numbers -> worker 0; relay 2, 3, 4 ->
    // workers 1, 2, 0; ackers 5, 6, 7 -> workers 0, 1, 2. The shuffle is a plain
    // round-robin so that every relay task works: by default (load-aware) an unloaded
    // relay 4, in the spout's worker, would get every tuple.
    std::fs::write(
        &file,
        r#"
[topology]
name = "restart"
workers = 3
message_timeout_secs = 2
max_spout_pending = 100
disable_loadaware_messaging = true

[spouts.numbers]
type = "sequence"

[bolts.relay]
type = "map"
parallelism = 3
fields = ["n"]
inputs = ["numbers"]
"#,
    )
    .expect("write topology");
    let topo = Topo::start(&file, dir.path(), &["--metrics-addr", "127.0.0.1:0"]);
    let workers = topo.wait_running(3);
    let stderr = topo.stderr();
    let addr = stderr
        .lines()
        .find_map(|l| l.strip_prefix("Serving metrics at http://"))
        .and_then(|a| a.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("no metrics address in {stderr}"))
        .to_string();
    let relay = [("component", "relay")];
    let spout = [("component", "numbers")];
    let before = scrape_until(&topo, &addr, "every worker reported work", |e| {
        e.sum("topo_workers", &[]) == 3.0
            && e.matching("topo_tuples_executed_total", &relay).count() == 3
            && e.matching("topo_tuples_executed_total", &relay)
                .all(|s| s.value > 0.0)
    });
    let executed_by_task: Vec<(String, f64)> = before
        .matching("topo_tuples_executed_total", &relay)
        .map(|s| (s.labels["task"].clone(), s.value))
        .collect();
    let acked = before.sum("topo_tuples_acked_total", &spout);

    // Worker 1 runs relay task 2 and an acker. The relays keep up with the spout, so
    // worker 1 is idle most of the time, and killed then it would lose no tree. So it
    // is stopped first and killed once data for it waits unread in its socket: those
    // trees are certainly lost.
    let (victim, _) = workers[1];
    // SAFETY: kill(2) on a worker process this test's topo started.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGSTOP) }, 0);
    wait_until(
        "data waits for the stopped worker",
        || topo.stderr(),
        || unread_bytes(victim) > 0,
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let task2 = [("component", "relay"), ("task", "2")];
    let task2_before = before.sum("topo_tuples_executed_total", &task2);
    let after = scrape_until(&topo, &addr, "the restart is counted", |e| {
        e.sum("topo_worker_restarts_total", &[("topology", "restart")]) == 1.0
            && e.sum("topo_workers", &[]) == 3.0
            // The new worker 1 reports work of its own on top of the old one's.
            && e.sum("topo_tuples_executed_total", &task2) > task2_before
            && e.sum("topo_tuples_acked_total", &spout) > acked
    });
    for (task, n) in &executed_by_task {
        let now = after.sum(
            "topo_tuples_executed_total",
            &[("component", "relay"), ("task", task)],
        );
        assert!(now >= *n, "task {task}'s executed went from {n} to {now}");
    }
    // Trees through the dead worker failed at the spout (worker 0 lived on) as soon as
    // its connection dropped, not at their timeout.
    scrape_until(&topo, &addr, "the lost trees failed", |e| {
        e.sum(
            "topo_tuples_failed_total",
            &[("component", "numbers"), ("reason", "worker_lost")],
        ) > 0.0
    });
    topo.signal(libc::SIGINT);
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
}
