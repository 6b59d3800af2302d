//! `file_sink`: writes every tuple to a file as one JSON object per line (JSON Lines),
//! field names as keys in field order.
//!
//! The file is truncated once per run of the topology and only appended to after that,
//! so a task that restarts (or a worker that is restarted) never erases what an earlier
//! incarnation wrote. The run is named by the `TOPO_RUN_ID` environment variable when
//! it is set (the runtime should set it for every worker process of one run) and
//! otherwise by the running topology instance in this process. A sidecar file `<path>.run` holds the id of the run that last truncated it:
//! a task that finds its own run id there appends; otherwise it truncates and writes
//! the id, under an exclusive lock so that several tasks of one sink agree. Every tuple
//! is written with one `write` to a file opened for appending, so the tasks of one sink
//! can share it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use serde::Deserialize;
use topo_dsl::Topology;
use topo_engine::{Bolt, BoltOutput, Registry, Result, TaskContext, Tuple, Value};

/// The environment variable that names a run of a topology.
pub const RUN_ID_VAR: &str = "TOPO_RUN_ID";

/// Config of `file_sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The output file, relative to the topology file's folder.
    pub path: PathBuf,
}

/// The id of the run `topology` belongs to: `TOPO_RUN_ID` when set, else one id per
/// running topology instance in this process (tasks of one start share their
/// `Arc<Topology>`; a later start in the same process gets a new id).
pub fn run_id(topology: &Arc<Topology>) -> String {
    if let Ok(id) = std::env::var(RUN_ID_VAR) {
        return id;
    }
    static PROCESS: OnceLock<String> = OnceLock::new();
    static LIVE: Mutex<Vec<(Weak<Topology>, u64)>> = Mutex::new(Vec::new());
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let process = PROCESS.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        format!("pid{}-{nanos}", std::process::id())
    });
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|(w, _)| w.strong_count() > 0);
    let n = match live
        .iter()
        .find(|(w, _)| std::ptr::eq(w.as_ptr(), Arc::as_ptr(topology)))
    {
        Some((_, n)) => *n,
        None => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            live.push((Arc::downgrade(topology), n));
            n
        }
    };
    format!("{process}-{n}")
}

/// An open JSON Lines file.
#[derive(Debug)]
pub struct JsonLines {
    file: File,
    line: String,
}

impl JsonLines {
    /// Opens `path` for run `run`: truncates it if this is the run's first open.
    pub fn open(path: &Path, run: &str) -> Result<Self> {
        let marker_path = marker(path);
        let ctx = |what: &str, p: &Path, e: std::io::Error| {
            format!("`file_sink` cannot {what} `{}`: {e}", p.display())
        };
        let mut marker = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&marker_path)
            .map_err(|e| ctx("open", &marker_path, e))?;
        // SAFETY: flock on a file descriptor we own; the lock ends when `marker` closes.
        if unsafe { libc::flock(marker.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(ctx("lock", &marker_path, std::io::Error::last_os_error()).into());
        }
        let mut seen = String::new();
        marker
            .read_to_string(&mut seen)
            .map_err(|e| ctx("read", &marker_path, e))?;
        if seen.trim() != run {
            File::create(path).map_err(|e| ctx("create", path, e))?;
            marker
                .set_len(0)
                .and_then(|()| marker.rewind())
                .and_then(|()| writeln!(marker, "{run}"))
                .map_err(|e| ctx("write", &marker_path, e))?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| ctx("open", path, e))?;
        drop(marker);
        Ok(JsonLines {
            file,
            line: String::new(),
        })
    }

    /// Appends one object: `names[i]: values[i]`.
    pub fn write(&mut self, names: &[String], values: &[Value]) -> Result<()> {
        self.line.clear();
        self.line.push('{');
        for (i, (name, value)) in names.iter().zip(values).enumerate() {
            if i > 0 {
                self.line.push(',');
            }
            self.line.push_str(&serde_json::to_string(name)?);
            self.line.push(':');
            self.line.push_str(&serde_json::to_string(value)?);
        }
        self.line.push_str("}\n");
        self.file.write_all(self.line.as_bytes())?;
        Ok(())
    }
}

/// The sidecar marker of `path`: `<path>.run`.
pub fn marker(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".run");
    PathBuf::from(name)
}

/// The bolt.
#[derive(Debug)]
pub struct FileSink {
    config: Config,
    out: Option<JsonLines>,
}

impl Bolt for FileSink {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.out = Some(JsonLines::open(
            &ctx.resolve(&self.config.path),
            &run_id(&ctx.topology),
        )?);
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        match self.out.as_mut() {
            Some(out) => out.write(input.fields(), input.values()),
            None => Err("`file_sink` was not prepared".into()),
        }
    }
}

/// Registers `file_sink`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "file_sink",
        "Writes every tuple to `path` as a JSON object per line; truncated once per run, appended to by restarted tasks.",
        |_: &Config| Vec::new(),
        |config: Config| Ok(FileSink { config, out: None }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_restart_in_the_same_run_appends_and_a_new_run_truncates() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.jsonl");
        let fields = names(&["word", "count"]);
        let mut first = JsonLines::open(&path, "run-1").expect("open");
        first
            .write(&fields, &[Value::from("ka \"x\""), Value::Int(2)])
            .expect("write");
        drop(first);
        let mut again = JsonLines::open(&path, "run-1").expect("reopen");
        again
            .write(&fields, &[Value::from("lo"), Value::Float(1.5)])
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text,
            "{\"word\":\"ka \\\"x\\\"\",\"count\":2}\n{\"word\":\"lo\",\"count\":1.5}\n"
        );
        JsonLines::open(&path, "run-2").expect("next run");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "");
        assert_eq!(
            std::fs::read_to_string(marker(&path)).expect("marker"),
            "run-2\n"
        );
    }

    #[test]
    fn a_missing_folder_is_named_in_the_error() {
        let err = JsonLines::open(Path::new("/nonexistent/out.jsonl"), "r").expect_err("no dir");
        assert_eq!(
            err.to_string(),
            "`file_sink` cannot open `/nonexistent/out.jsonl.run`: No such file or directory (os error 2)"
        );
    }
}
