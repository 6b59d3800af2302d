//! A `redis-server` of a test's own: a free loopback port, a temporary folder, AOF on;
//! killed (and its folder removed) when the guard drops.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running redis-server.
pub(crate) struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts one on a free port with AOF on (`appendfsync always`, so a SIGKILL loses
    /// nothing it confirmed).
    pub(crate) fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts one with extra `redis-server` arguments (later ones win).
    pub(crate) fn start_with(extra: &[&str]) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut server = RedisServer {
            child: None,
            dir,
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--bind")
            .arg("127.0.0.1")
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--appendonly")
            .arg("yes")
            .arg("--appendfsync")
            .arg("always")
            .arg("--save")
            .arg("")
            .arg("--daemonize")
            .arg("no")
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it: apt-get install redis-server (./test does)")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut con) = self.client().get_connection() {
                if redis::cmd("PING").query::<String>(&mut con).is_ok() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its folder (AOF files).
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A client.
    pub(crate) fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("url")
    }

    /// A connection.
    pub(crate) fn con(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .expect("connect to the test's redis-server")
    }

    /// The committed checkpoint ids of `topology` in the Redis state backend, ascending.
    pub(crate) fn committed_checkpoints(&self, topology: &str) -> Vec<u64> {
        let mut ids: Vec<u64> = redis::cmd("SMEMBERS")
            .arg(format!("topo:state:{topology}:committed"))
            .query(&mut self.con())
            .expect("SMEMBERS");
        ids.sort_unstable();
        ids
    }

    /// SIGKILLs it.
    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and folder (it reloads its AOF).
    pub(crate) fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A loopback port nobody listens on now.
pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Appends `n` entries `field = make(i)` to `stream`, pipelined 1000 at a time.
pub(crate) fn xadd_many(
    con: &mut redis::Connection,
    stream: &str,
    field: &str,
    n: usize,
    make: impl Fn(usize) -> String,
) {
    let mut i = 0;
    while i < n {
        let mut pipe = redis::pipe();
        for j in i..(i + 1000).min(n) {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg(field)
                .arg(make(j))
                .ignore();
        }
        pipe.exec(con).expect("xadd");
        i += 1000;
    }
}

/// Every value of `field` in `stream`, read with XRANGE in pages.
pub(crate) fn stream_values(con: &mut redis::Connection, stream: &str, field: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut from = "-".to_string();
    loop {
        let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(10_000)
            .query(con)
            .expect("xrange");
        let Some((last, _)) = page.last() else {
            return out;
        };
        from = format!("({last}");
        for (_, kv) in page {
            out.extend(kv.into_iter().filter(|(k, _)| k == field).map(|(_, v)| v));
        }
    }
}

/// How many entries of `group` on `stream` are pending (XPENDING's summary count).
pub(crate) fn pending(con: &mut redis::Connection, stream: &str, group: &str) -> u64 {
    let v: redis::Value = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .query(con)
        .expect("xpending");
    match v {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(n)) => *n as u64,
            other => panic!("XPENDING: {other:?}"),
        },
        other => panic!("XPENDING: {other:?}"),
    }
}

/// The path of a file in `dir`.
pub(crate) fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
