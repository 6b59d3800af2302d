//! What the benches share: the binary's three roles (parent, child, `topo` CLI), child
//! processes timed and measured with `wait4`, the workload's checksum, and statistics.
//!
//! Each bench uses part of it.
#![allow(dead_code)]

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::de::DeserializeOwned;
use topo::prelude::Registry;

/// Runs the role the arguments name and exits: `CHILD ARGS...` runs `child(ARGS)`; any
/// other arguments without `--bench` go to the `topo` CLI with `registry` (so `topo run`
/// can re-execute this binary as a worker); otherwise (`cargo bench`) `parent()`.
pub(crate) fn main_with(
    child_tag: &str,
    child: fn(&[String]) -> i32,
    registry: fn() -> Registry,
    parent: fn() -> i32,
) -> ! {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some(tag) if tag == child_tag => child(&args[2..]),
        Some(_) if !args.iter().any(|a| a == "--bench") => {
            topo::cli::run_with(registry(), args.iter().cloned())
        }
        _ => parent(),
    };
    std::process::exit(code);
}

/// Prints `RESULT <json>` for the parent, or the error; the child's exit code.
pub(crate) fn report<T: serde::Serialize>(result: Result<T, String>) -> i32 {
    match result.and_then(|r| serde_json::to_string(&r).map_err(|e| e.to_string())) {
        Ok(json) => {
            println!("RESULT {json}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    }
}

/// FNV-1a, 64 bits: the peers' word checksum.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// A number from the environment (`_` separators allowed), or `default`.
pub(crate) fn env_num<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) => v
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{name}={v} is not a number")),
        Err(_) => Ok(default),
    }
}

/// A fresh folder for one run's files.
pub(crate) fn report_dir() -> Result<tempfile::TempDir, String> {
    tempfile::Builder::new()
        .prefix("topo-bench-")
        .tempdir()
        .map_err(|e| format!("cannot make a report folder: {e}"))
}

/// This process's peak resident set (`VmHWM`), in KiB; 0 when unknown.
pub(crate) fn vmhwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What `wait4` says of an ended child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waited {
    /// Exit status, or 128 + the signal.
    pub(crate) status: i32,
    /// Peak resident set (`ru_maxrss`), KiB.
    pub(crate) rss_kib: u64,
    /// User + system CPU seconds, its waited-for children included.
    pub(crate) cpu_secs: f64,
}

/// Waits for our child `pid`.
pub(crate) fn wait4(pid: u32) -> Result<Waited, String> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain data that wait4 fills; zeroed is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is our own child; status and usage point to live locals.
        let r = unsafe { libc::wait4(pid as libc::pid_t, &mut status, 0, &mut usage) };
        if r == pid as libc::pid_t {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(format!("wait4: {e}"));
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Ok(Waited {
        status: code,
        rss_kib: usage.ru_maxrss.max(0) as u64,
        cpu_secs: secs(usage.ru_utime) + secs(usage.ru_stime),
    })
}

/// Starts this binary with `args`, waits for it, and parses the `RESULT` line it printed.
pub(crate) fn spawn_child<T: DeserializeOwned>(args: &[String]) -> Result<(T, Waited), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start a child: {e}"))?;
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_string(&mut out)
            .map_err(|e| format!("cannot read the child's output: {e}"))?;
    }
    let waited = wait4(child.id())?;
    if waited.status != 0 {
        return Err(format!(
            "child {args:?} exited with status {}",
            waited.status
        ));
    }
    let json = out
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("child {args:?} printed no RESULT line"))?;
    let result = serde_json::from_str(json).map_err(|e| format!("bad RESULT line: {e}"))?;
    Ok((result, waited))
}

/// Runs `topo run FILE` (this binary, which starts the workers itself); returns the
/// wall-clock seconds and what `wait4` says.
pub(crate) fn topo_run(file: &Path) -> Result<(f64, Waited), String> {
    topo_run_json(file).map(|(secs, waited, _)| (secs, waited))
}

/// [`topo_run`] with `--json`: also returns the run's summary as JSON.
pub(crate) fn topo_run_json(file: &Path) -> Result<(f64, Waited, serde_json::Value), String> {
    let t0 = Instant::now();
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut child = Command::new(exe)
        .arg("run")
        .arg(file)
        .arg("--json")
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start topo run: {e}"))?;
    let mut out = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out, &mut s);
        s
    });
    let waited = wait4(child.id())?;
    let secs = t0.elapsed().as_secs_f64();
    let text = reader.join().unwrap_or_default();
    if waited.status != 0 {
        return Err(format!("topo run exited with status {}", waited.status));
    }
    let summary = text
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or(serde_json::Value::Null);
    Ok((secs, waited, summary))
}

/// Median, min and max.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stats {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
}

/// The [`Stats`] of `v`; `None` when empty.
pub(crate) fn stats(mut v: Vec<f64>) -> Option<Stats> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some(Stats {
        median,
        min: v[0],
        max: v[v.len() - 1],
    })
}

/// The p-th percentile (0..=100) of sorted values, nearest rank.
pub(crate) fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1])
}
