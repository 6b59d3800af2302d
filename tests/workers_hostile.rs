//! Hostile bytes at a live worker's port: random bytes, an oversized length prefix, a
//! truncated frame, an undecodable body, wrong handshakes. Each connection is closed by
//! the worker, no worker restarts, and the topology completes with every message.

mod workers_support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use topo_transport::frame::Frame;
use topo_transport::handshake::Identity;
use workers_support::{mkfifo, open_writer, row, sink_strings, wait_until, Topo, DEADLINE};

const IDS: usize = 2000;

const TOPOLOGY: &str = r#"
[topology]
name = "hostile"
workers = 3
acking = true
message_timeout_secs = 30

[spouts.ids]
type = "file_lines"
path = "ids.pipe"

[bolts.relay]
type = "split_words"
parallelism = 3
inputs = ["ids"]

[bolts.out]
type = "file_sink"
parallelism = 2
path = "out.jsonl"
inputs = ["relay"]
"#;

/// A frame as the wire has it: 4-byte big-endian length, then the body.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// A worker's `Hello` flight, keyed with a secret that is not the run's (it is random).
fn hello(fingerprint: u64, worker: u32) -> Vec<u8> {
    let id = Identity {
        fingerprint,
        worker,
        workers: 3,
        secret: std::sync::Arc::from(&b"not the run's secret"[..]),
        encrypt: false,
    };
    let (_, flight) = id.dialer(worker + 1).expect("a hello");
    framed(&flight)
}

/// The attacks: (name, bytes to send, whether to close our write side after them).
fn attacks() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let fingerprint = topo_engine::launcher::worker::fingerprint(TOPOLOGY, 3);
    let mut truncated = 100u32.to_be_bytes().to_vec();
    truncated.extend_from_slice(b"only ten b");
    let bad_auth = hello(fingerprint, 0);
    vec![
        ("random bytes", random, false),
        (
            "an oversized length prefix",
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            false,
        ),
        ("a truncated frame", truncated, true),
        ("an undecodable body", framed(&[0xc1; 8]), false),
        (
            "a hello with another fingerprint",
            hello(fingerprint ^ 1, 0),
            false,
        ),
        ("a hello with a wrong secret", bad_auth, false),
        (
            "data before any handshake",
            framed(
                &Frame::Data {
                    dest_task: 2,
                    payload: vec![0x93, 1, 2, 3].into(),
                }
                .encode_body()
                .expect("encode"),
            ),
            false,
        ),
    ]
}

/// Sends `bytes` to `addr` and waits until the worker closes the connection.
fn attack(addr: &str, name: &str, bytes: &[u8], close: bool) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    // The worker may close before it read everything: a failed write is fine.
    let _ = s.write_all(bytes);
    if close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            // Its own Hello may come first; then the close.
            Ok(n) if n > 0 => continue,
            Ok(_) => break,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                panic!("worker at {addr} kept a connection open after {name}")
            }
            Err(_) => break, // reset: closed too
        }
    }
}

#[test]
fn hostile_bytes_at_worker_ports_close_those_connections_and_the_run_completes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pipe = dir.path().join("ids.pipe");
    mkfifo(&pipe);
    let file = dir.path().join("hostile.topo.toml");
    std::fs::write(&file, TOPOLOGY).expect("write topology");
    let out = dir.path().join("out.jsonl");
    let topo = Topo::start(&file, dir.path(), &[]);
    let workers = topo.wait_running(3);
    let mut writer = open_writer(&pipe, &topo);
    let ids: Vec<String> = (0..IDS).map(|i| format!("id{i:05}")).collect();
    for id in &ids[..IDS / 2] {
        writeln!(writer, "{id}").expect("write an id");
    }
    writer.flush().expect("flush");
    wait_until(
        "some ids arrived",
        || topo.stderr(),
        || !sink_strings(&out, "word").is_empty(),
    );

    let attacks = attacks();
    for (_, addr) in &workers {
        for (name, bytes, close) in &attacks {
            attack(addr, name, bytes, *close);
        }
    }

    for id in &ids[IDS / 2..] {
        writeln!(writer, "{id}").expect("write an id");
    }
    drop(writer);
    let status_before_exit = topo.status().expect("status");
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    for w in status_before_exit["workers"].as_array().expect("workers") {
        assert_eq!(w["restarts"], 0, "no worker restarted: {stderr}");
    }
    assert!(
        !stderr.contains("restarting it"),
        "no worker restarted: {stderr}"
    );
    let failures = stderr
        .matches("Handshake failed; connection closed.")
        .count();
    assert!(
        failures >= attacks.len() * workers.len(),
        "every hostile connection was refused and logged ({failures}): {stderr}"
    );
    let got = sink_strings(&out, "word");
    let want: BTreeSet<String> = ids.into_iter().collect();
    assert_eq!(got, want, "every id arrived");
    let (emitted, _, acked, failed) = row(&stdout, "ids");
    assert_eq!(
        (emitted, acked, failed),
        (IDS as u64, IDS as u64, 0),
        "{stdout}"
    );
}
