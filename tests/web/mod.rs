//! Shared by the web tests: a `topo run --ui` child on a free port, and plain HTTP/1.1
//! requests (one per connection, as the server answers them).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A `topo` child serving HTTP, killed and reaped when dropped.
pub(crate) struct Run {
    pub(crate) child: Child,
    /// `HOST:PORT` it serves on.
    pub(crate) addr: String,
    pub(crate) stderr: mpsc::Receiver<String>,
}

impl Drop for Run {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let status = self.child.try_wait();
            let err: Vec<String> = self.stderr.try_iter().collect();
            eprintln!("topo ({status:?}) said:\n{}", err.join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `topo ARGS` and waits (up to a minute) for the stderr line saying where it
/// serves HTTP.
pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.starts_with("Serving ") && line.contains(" at http://") => {
                let rest = line.split("http://").nth(1).unwrap();
                break rest.split('/').next().unwrap().to_string();
            }
            Ok(line) => seen.push(line),
            Err(e) => panic!(
                "topo never said where it serves ({e}):\n{}",
                seen.join("\n")
            ),
        }
    };
    Run {
        child,
        addr,
        stderr: rx,
    }
}

/// `topo run FILE ARGS` of topology `text`, written into `dir`.
pub(crate) fn start(dir: &tempfile::TempDir, text: &str, args: &[&str]) -> Run {
    let path = dir.path().join("t.topo.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.to_string_lossy().into_owned();
    let mut all = vec!["run", path.as_str()];
    all.extend_from_slice(args);
    spawn(&all, &[])
}

/// Sends `method path` with `headers`; returns the response head and body.
pub(crate) fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

/// `GET path`.
pub(crate) fn get(addr: &str, path: &str) -> (String, String) {
    request(addr, "GET", path, &[])
}

/// `GET path`, which must answer 200 with JSON.
pub(crate) fn get_json(addr: &str, path: &str) -> serde_json::Value {
    let (head, body) = get(addr, path);
    assert!(
        head.starts_with("HTTP/1.1 200 OK"),
        "{path}: {head}\n{body}"
    );
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}
