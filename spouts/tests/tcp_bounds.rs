//! `tcp_lines` against hostile clients: an endless line keeps memory flat, thousands of
//! idle sockets and running out of file descriptors don't stop a real client's lines,
//! and a scanner's empty connections don't count toward `connections`.

use std::io::Write;
use std::net::TcpStream;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use topo_spouts::tcp::{Limits, LineServer};

/// One test at a time: one of them lowers this process's file limit, which would make the
/// others' opens fail.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn server(limits: Limits) -> (LineServer, std::net::SocketAddr) {
    let s = LineServer::with_limits("127.0.0.1:0".parse().expect("addr"), limits).expect("bind");
    let addr = s.local_addr().expect("addr");
    (s, addr)
}

/// Polls until `cond` holds, for at most a minute.
fn poll_until(
    s: &mut LineServer,
    lines: &mut Vec<String>,
    what: &str,
    mut cond: impl FnMut(&LineServer, &[String]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond(s, lines) {
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {} lines",
            lines.len()
        );
        s.poll(lines).expect("poll");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_endless_line_keeps_memory_flat_and_is_dropped() {
    let _serial = serial();
    let limits = Limits {
        max_line: 1 << 20,
        ..Limits::default()
    };
    let (mut s, addr) = server(limits);
    let mut lines = Vec::new();
    // 256 MiB without a newline, then one, then a normal line.
    const TOTAL: usize = 256 << 20;
    let writer = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).expect("connect");
        let block = vec![b'x'; 64 << 10];
        let mut sent = 0;
        while sent < TOTAL {
            c.write_all(&block).expect("send");
            sent += block.len();
        }
        c.write_all(b"\nafter\n").expect("send");
        c
    });
    let before = rss_kib();
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lines.iter().any(|l| l == "after") {
        assert!(
            Instant::now() < deadline,
            "the line after the endless one never came"
        );
        s.poll(&mut lines).expect("poll");
        peak = peak.max(rss_kib());
    }
    let _c = writer.join().expect("writer");
    assert_eq!(
        lines,
        ["after"],
        "the over-long line was dropped, not split"
    );
    assert_eq!(s.dropped(), 1);
    // 256 MiB went through; what stays is a bounded buffer (1 MiB plus a read chunk).
    assert!(
        peak - before < 16 << 10,
        "RSS grew from {before} KiB to {peak} KiB"
    );
}

#[test]
fn idle_sockets_and_fd_exhaustion_do_not_stop_a_client() {
    let _serial = serial();
    // 2,000 idle sockets on the client side plus up to 1,024 accepted ones: raise the
    // soft limit on open files where the hard limit allows.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max.min(8192);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 4096,
        "this test needs 4096 open files, the hard limit is {}",
        lim.rlim_max
    );
    let (mut s, addr) = server(Limits::default());
    let mut lines = Vec::new();
    let mut idle = Vec::new();
    for _ in 0..2000 {
        idle.push(TcpStream::connect(addr).expect("an idle socket"));
        if idle.len() % 100 == 0 {
            s.poll(&mut lines).expect("poll");
        }
    }
    s.poll(&mut lines).expect("poll");
    assert_eq!(s.clients(), 1024, "at most max_clients are connected");
    let mut c = TcpStream::connect(addr).expect("the real client");
    c.write_all(b"one\n").expect("send");
    poll_until(
        &mut s,
        &mut lines,
        "the real client's first line arrived",
        |_, l| l == ["one"],
    );

    // Out of file descriptors: accepting fails, the connected client is still served.
    let pending_connect = TcpStream::connect(addr).expect("a connect the server cannot accept");
    // SAFETY: as above; the limit is the lowest fd number free now, so accept(2) fails.
    let free_fd = unsafe { libc::dup(0) };
    assert!(free_fd > 0);
    // SAFETY: closing the fd dup(2) just returned.
    unsafe { libc::close(free_fd) };
    let tight = libc::rlimit {
        rlim_cur: free_fd as libc::rlim_t,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &tight), 0) };
    c.write_all(b"two\n").expect("send");
    poll_until(
        &mut s,
        &mut lines,
        "the line sent while out of fds arrived",
        |_, l| l == ["one", "two"],
    );
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0) };
    drop(pending_connect);
    drop(idle);
    drop(c);
    poll_until(
        &mut s,
        &mut lines,
        "the real client's close was counted",
        |s, _| s.closed() == 1,
    );
    // Idle sockets that never sent a byte do not count toward `connections`.
    poll_until(&mut s, &mut lines, "every idle socket is gone", |s, _| {
        s.clients() == 0
    });
    assert_eq!(s.closed(), 1);
}

#[test]
fn a_silent_client_is_closed_after_the_idle_timeout() {
    let _serial = serial();
    let (mut s, addr) = server(Limits {
        idle_timeout: Some(Duration::from_millis(200)),
        ..Limits::default()
    });
    let mut lines = Vec::new();
    let _silent = TcpStream::connect(addr).expect("connect");
    poll_until(&mut s, &mut lines, "it was accepted", |s, _| {
        s.clients() == 1
    });
    poll_until(&mut s, &mut lines, "it was closed", |s, _| s.clients() == 0);
    assert_eq!(
        s.closed(),
        0,
        "a client that never spoke is not a connection"
    );
}
