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
//!
//! In a checkpointed topology the sink is exactly-once: it keeps the file's length in
//! each checkpoint (its committed length) and, when the run restores a checkpoint, cuts
//! the file back to it, so the lines written again by the replay appear once. It then
//! runs as one task and never truncates by run id.
//!
//! Durability (`sync`): with `"batch"` (the default) a tuple is acked only after its line
//! was fsynced (`fdatasync`). A syncer thread does it as group commit: each sync covers
//! every line written while the previous one ran, so there is one fsync per batch of
//! lines and at most one in flight. `"always"` syncs after every line before `execute`
//! returns; `"never"` leaves it to the kernel (a machine crash can lose acked lines).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};

use serde::Deserialize;
use topo_dsl::Topology;
use topo_engine::state::{TaskState, TaskStateReader};
use topo_engine::{Bolt, BoltOutput, Notifier, Registry, Result, TaskContext, Tuple, Value};

/// The environment variable that names a run of a topology.
pub const RUN_ID_VAR: &str = "TOPO_RUN_ID";

/// Config of `file_sink`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The output file, relative to the topology file's folder.
    pub path: PathBuf,
    /// When lines are fsynced: `"batch"` (default), `"always"` or `"never"`.
    #[serde(default)]
    pub sync: Sync,
}

/// When `file_sink` fsyncs what it wrote, and so when it acks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sync {
    /// Once per batch of lines (group commit), before acking them.
    #[default]
    Batch,
    /// After every line, before acking it.
    Always,
    /// Never: acked once written to the kernel.
    Never,
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

    /// Opens `path` for appending without truncating it: in a checkpointed topology the
    /// sink truncates to its checkpointed length when it restores.
    pub fn open_appending(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| format!("`file_sink` cannot open `{}`: {e}", path.display()))?;
        Ok(JsonLines {
            file,
            line: String::new(),
        })
    }

    /// The file's length in bytes.
    pub fn len(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> std::io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Cuts the file back to `len` bytes.
    pub fn truncate(&self, len: u64) -> std::io::Result<()> {
        self.file.set_len(len)?;
        self.file.sync_data()
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

    /// Flushes what was written to the disk (`fdatasync`).
    pub fn sync(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Lines written and lines known synced, counted from the task's start.
#[derive(Default)]
struct Counts {
    written: u64,
    synced: u64,
    /// Set when a sync failed: the lines up to `written` then are failed.
    failed_upto: u64,
    error: Option<String>,
    stop: bool,
}

/// Group commit: a thread fsyncs whatever was written since its last sync and reports
/// how far it got; the bolt acks the tuples up to there.
struct Syncer {
    state: Arc<(Mutex<Counts>, Condvar)>,
    /// Tuples written and not yet synced, oldest first; the front one is line `acked + 1`.
    waiting: VecDeque<Tuple>,
    acked: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(file: File, notifier: Notifier) -> std::io::Result<Syncer> {
        let state: Arc<(Mutex<Counts>, Condvar)> = Arc::default();
        let theirs = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("file-sink-sync".into())
            .spawn(move || {
                let (lock, cv) = &*theirs;
                let mut c = lock.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    while c.written == c.synced && !c.stop {
                        c = cv.wait(c).unwrap_or_else(|e| e.into_inner());
                    }
                    if c.written == c.synced {
                        return;
                    }
                    let upto = c.written;
                    drop(c);
                    let r = file.sync_data();
                    c = lock.lock().unwrap_or_else(|e| e.into_inner());
                    match r {
                        Ok(()) => c.synced = upto,
                        Err(e) => {
                            c.failed_upto = upto;
                            c.synced = upto;
                            c.error = Some(e.to_string());
                        }
                    }
                    notifier.notify();
                }
            })?;
        Ok(Syncer {
            state,
            waiting: VecDeque::new(),
            acked: 0,
            thread: Some(thread),
        })
    }

    /// `input`'s line was written: its ack waits for the next sync.
    fn written(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) {
        out.defer();
        self.waiting.push_back(input.clone());
        let (lock, cv) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).written += 1;
        cv.notify_one();
    }

    /// Acks the tuples whose lines were synced (fails them when the sync failed).
    fn settle(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        let (synced, failed_upto, error) = {
            let mut c = self.state.0.lock().unwrap_or_else(|e| e.into_inner());
            (c.synced, c.failed_upto, c.error.take())
        };
        while self.acked < synced {
            let Some(t) = self.waiting.pop_front() else {
                break;
            };
            self.acked += 1;
            if self.acked <= failed_upto && error.is_some() {
                out.fail(&t);
            } else {
                out.ack(&t);
            }
        }
        match error {
            Some(e) => Err(format!("`file_sink` cannot sync its file: {e}").into()),
            None => Ok(()),
        }
    }

    fn stop(&mut self) {
        let (lock, cv) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("waiting", &self.waiting.len())
            .finish()
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
    syncer: Option<Syncer>,
}

impl Bolt for FileSink {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        let path = ctx.resolve(&self.config.path);
        let lines = if ctx.topology.settings().checkpoints.is_some() {
            if ctx.tasks_of(&ctx.component).len() > 1 {
                return Err(format!(
                    "`file_sink` `{}` in a checkpointed topology keeps one committed length, \
                     so it runs as one task: set its parallelism to 1",
                    ctx.component
                )
                .into());
            }
            JsonLines::open_appending(&path)?
        } else {
            JsonLines::open(&path, &run_id(&ctx.topology))?
        };
        if self.config.sync == Sync::Batch {
            self.syncer = Some(Syncer::start(
                lines.file.try_clone()?,
                ctx.notifier.clone(),
            )?);
        }
        self.out = Some(lines);
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let Some(lines) = self.out.as_mut() else {
            return Err("`file_sink` was not prepared".into());
        };
        lines.write(input.fields(), input.values())?;
        match (self.config.sync, self.syncer.as_mut()) {
            (Sync::Always, _) => lines.sync()?,
            (Sync::Batch, Some(s)) => s.written(input, out),
            _ => {}
        }
        Ok(())
    }

    fn wake(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        match self.syncer.as_mut() {
            Some(s) => s.settle(out),
            None => Ok(()),
        }
    }

    fn cleanup(&mut self) {
        if let Some(s) = self.syncer.as_mut() {
            s.stop();
        }
    }

    /// The committed length: the file's length once every input before the barrier was
    /// written.
    fn snapshot(&mut self, state: &mut TaskState) -> Result<()> {
        let Some(lines) = self.out.as_ref() else {
            return Err("`file_sink` was not prepared".into());
        };
        state.put_task(&lines.len()?)?;
        Ok(())
    }

    /// Cuts the file back to the committed length (empty on a fresh start): what was
    /// written after the checkpoint is written again by the replay, once.
    fn restore(&mut self, state: &TaskStateReader) -> Result<()> {
        let Some(lines) = self.out.as_ref() else {
            return Err("`file_sink` was not prepared".into());
        };
        let committed: u64 = state.task()?.unwrap_or(0);
        let len = lines.len()?;
        if len < committed {
            return Err(format!(
                "`file_sink` `{}` is {len} bytes, shorter than the {committed} bytes its checkpoint committed",
                self.config.path.display()
            )
            .into());
        }
        lines.truncate(committed)?;
        Ok(())
    }
}

/// Registers `file_sink`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "file_sink",
        "Writes every tuple to `path` as a JSON object per line; truncated once per run, appended to by restarted tasks; `sync` = batch | always | never.",
        |_: &Config| Vec::new(),
        |config: Config| {
            Ok(FileSink {
                config,
                out: None,
                syncer: None,
            })
        },
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
