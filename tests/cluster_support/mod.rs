//! Shared by the cluster tests: a `topo` daemon whose stderr is collected, and free ports.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub mod wordcount;

/// A `topo` daemon (without `TOPO_CLUSTER_SECRET` from the test's environment) whose
/// stderr is collected; killed (SIGKILL) and reaped on drop.
pub struct Proc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Proc {
    /// Starts `topo ARGS`; each log line is prefixed with `[name] ` unless `name` is empty.
    pub fn start<S: AsRef<OsStr>>(name: &str, args: &[S]) -> Proc {
        Proc::start_env(name, args, &[])
    }

    /// As [`Proc::start`], with the variables `env` set too.
    pub fn start_env<S: AsRef<OsStr>>(name: &str, args: &[S], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("TOPO_CLUSTER_SECRET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start topo");
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().expect("stderr");
        let sink = Arc::clone(&log);
        let prefix = if name.is_empty() {
            String::new()
        } else {
            format!("[{name}] ")
        };
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]);
                        let mut l = sink.lock().expect("lock");
                        for line in text.split_inclusive('\n') {
                            if l.is_empty() || l.ends_with('\n') {
                                l.push_str(&prefix);
                            }
                            l.push_str(line);
                        }
                    }
                }
            }
        });
        Proc { child, log }
    }

    /// Starts `topo coordinator` listening on `addr`, its state in `state_dir`, the cluster
    /// secret in `secret_file`, with `extra` arguments; logs prefixed `[coordinator] `.
    pub fn coordinator(addr: &str, state_dir: &Path, secret_file: &Path, extra: &[&str]) -> Proc {
        let state = state_dir.display().to_string();
        let secret = secret_file.display().to_string();
        let mut args = vec![
            "coordinator",
            "--listen",
            addr,
            "--state-dir",
            &state,
            "--secret-file",
            &secret,
        ];
        args.extend_from_slice(extra);
        Proc::start("coordinator", &args)
    }

    /// Its stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().expect("lock").clone()
    }

    /// Kills it (SIGKILL) and reaps it now, rather than when it drops.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its pid.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free port on `ip` (bound, then released for the daemon to take).
pub fn free_addr(ip: &str) -> SocketAddr {
    let l = TcpListener::bind(format!("{ip}:0")).expect("bind a free port");
    l.local_addr().expect("local addr")
}

/// Runs the client verb `topo ARGS --coordinator COORDINATORS` (without
/// `TOPO_CLUSTER_SECRET` from the test's environment): (exit code, stdout, stderr).
pub fn client(coordinators: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .arg("--coordinator")
        .arg(coordinators)
        .env_remove("TOPO_CLUSTER_SECRET")
        .output()
        .expect("run topo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A topology file `NAME.topo.toml` in `dir`: `spout` (its TOML) → `relay` (a `map` of
/// `fields`, 3 tasks) → `out` (3 tasks writing `NAME.jsonl` in `dir`), three workers,
/// acking on. Returns (topology file, output file).
pub fn relay_topology(
    dir: &std::path::Path,
    name: &str,
    spout: &str,
    fields: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let out = dir.join(format!("{name}.jsonl"));
    let file = dir.join(format!("{name}.topo.toml"));
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "{name}"
workers = 3
acking = true
message_timeout_secs = 2
max_spout_pending = 200

[spouts.source]
{spout}

[bolts.relay]
type = "map"
fields = ["{fields}"]
parallelism = 3
inputs = ["source"]

[bolts.out]
type = "file_sink"
parallelism = 3
path = "{}"
inputs = ["relay"]
"#,
            out.display()
        ),
    )
    .expect("write the topology");
    (file, out)
}
