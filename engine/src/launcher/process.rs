//! One worker process as both supervisors run it (`topo run` and `topo supervisor`):
//! spawned, watched, spoken to over its control channel, restarted by one policy, stopped.
//!
//! # What a worker gets
//! - **Its command line**: `EXE worker --index I --control-fd 3`; nothing secret.
//! - **Its environment**: scrubbed to [`KEPT_ENV`] (the search path, the home folder,
//!   the locale, the log filter); everything else the supervisor had, a cluster secret
//!   included, is cleared. `TOPO_RUN_ID` names the run.
//! - **Its control channel**: one end of a Unix socket pair, as file descriptor 3. The
//!   supervisor writes [`ToWorker`] lines to it and reads [`FromWorker`] lines from it;
//!   the worker marks it close-on-exec at once, so the programs it starts (multilang
//!   children) never hold it. Tuple data, a `console` bolt, a user's `println!` and a
//!   child's stray output go to the worker's stdout, which cannot reach this channel.
//! - **Its output**: stdout goes to the supervisor's own ([`Output::Inherit`]), or line
//!   by line with a prefix such as `[worker 1] ` ([`Output::Prefixed`]); stderr, where
//!   its log lines go (each with `worker=I`), to the supervisor's as it is, so a terminal
//!   still gets colour and every log line keeps one format.
//! - **Its standard input**: none, unless [`WorkerCommand::stdin`] gives it the
//!   supervisor's (a `stdin_lines` spout runs there).
//! - **Death with its parent**: `PR_SET_PDEATHSIG` (SIGKILL), and EOF on the control
//!   channel; its own process group, so a terminal's Ctrl-C reaches only the supervisor,
//!   which drains its workers itself. Processes are forked from one long-lived thread,
//!   because the parent-death signal fires when the *thread* that forked exits.
//!
//! # Restarts
//! [`RestartPolicy`]: a worker that exits before its summary, or is silent past the
//! heartbeat timeout, is started again; more than `max_restarts` restarts of one worker
//! and the supervisor gives up on it.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::warn;

use super::worker::{FromWorker, ToWorker};

/// The file descriptor a worker finds its control channel on.
pub const CONTROL_FD: i32 = 3;

/// The environment variables a worker (and so every program it starts) keeps; the rest
/// is cleared. `PATH` so that `python3` resolves as it does for the supervisor (a
/// virtualenv first on it included), `HOME`, `USER` and `LOGNAME` for tools that look
/// for a config, the locale and time zone, `TMPDIR`, and the log and backtrace switches.
pub const KEPT_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "LC_NUMERIC",
    "LC_TIME",
    "TZ",
    "TMPDIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
];

/// The variable naming the run (files a sink writes carry it).
pub const RUN_ID_VAR: &str = "TOPO_RUN_ID";

/// A folder put first on the `PATH` of every worker and multilang child this process
/// starts ([`set_path_prefix`]): the topology's virtualenv under `topo run`.
static PATH_PREFIX: OnceLock<PathBuf> = OnceLock::new();

/// Puts `dir` first on the `PATH` of every worker and multilang child this process starts
/// from now on; once per process (a later call is ignored and returns false).
pub fn set_path_prefix(dir: PathBuf) -> bool {
    PATH_PREFIX.set(dir).is_ok()
}

/// `PATH` with `dir` first.
fn prefixed_path(dir: &Path) -> std::ffi::OsString {
    let mut parts = vec![dir.to_path_buf()];
    if let Some(path) = std::env::var_os("PATH") {
        parts.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(parts).unwrap_or_else(|_| dir.as_os_str().to_owned())
}

/// The environment a worker or a multilang child starts with: [`KEPT_ENV`] from this
/// process's, with the [`set_path_prefix`] folder first on `PATH`.
pub fn kept_env() -> Vec<(String, std::ffi::OsString)> {
    KEPT_ENV
        .iter()
        .filter_map(|k| match (*k, PATH_PREFIX.get()) {
            ("PATH", Some(dir)) => Some(((*k).to_string(), prefixed_path(dir))),
            _ => std::env::var_os(k).map(|v| ((*k).to_string(), v)),
        })
        .collect()
}

/// Clears `cmd`'s environment down to [`kept_env`] (and [`RUN_ID_VAR`] when this process
/// has it).
pub fn scrub_env(cmd: &mut Command) {
    cmd.env_clear().envs(kept_env());
    if let Some(run) = std::env::var_os(RUN_ID_VAR) {
        cmd.env(RUN_ID_VAR, run);
    }
}

/// Where a worker's stdout goes (its stderr goes to the supervisor's as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// To the supervisor's own stdout, as it is.
    Inherit,
    /// To the supervisor's stdout, each line behind this prefix.
    Prefixed(String),
}

/// How to start one worker process.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    /// The executable (`topo`, or a user's binary built with `topo::cli::main_with`).
    pub exe: PathBuf,
    /// The worker's index (shown in `ps`).
    pub index: usize,
    /// The run's id, as [`RUN_ID_VAR`].
    pub run_id: String,
    /// Its working directory; the supervisor's when absent.
    pub dir: Option<PathBuf>,
    /// Where its stdout goes.
    pub output: Output,
    /// It gets the supervisor's standard input (else none).
    pub stdin: bool,
    /// A folder put first on its `PATH` (a topology's virtualenv `bin/`), so the
    /// programs it starts find their interpreter and packages there.
    pub path_prefix: Option<PathBuf>,
}

/// What a worker process reports, from the thread that reads its control channel.
#[derive(Debug)]
pub enum WorkerEvent {
    /// One control message.
    Message(FromWorker),
    /// The control channel closed: the worker exited (or closed it, which it does only
    /// by exiting).
    Closed,
}

/// A running worker process and its control channel. Dropping it kills the process.
#[derive(Debug)]
pub struct WorkerProcess {
    child: Child,
    control: Option<UnixStream>,
    pid: u32,
    last_seen: Instant,
}

type Spawn = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Forks every worker from one thread that lives as long as the process: the
/// parent-death signal fires when the thread that forked exits, so a worker forked from
/// a short-lived thread (a tokio worker, a test's) would be killed with it.
fn spawner() -> &'static Mutex<mpsc::Sender<Spawn>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Spawn>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Spawn>();
        let started = std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                while let Ok((mut cmd, reply)) = rx.recv() {
                    let _ = reply.send(cmd.spawn());
                }
            });
        if let Err(e) = started {
            tracing::error!(error = %e, "Cannot start the spawner thread.");
        }
        Mutex::new(tx)
    })
}

fn spawn_on_spawner(cmd: Command) -> std::io::Result<Child> {
    let (tx, rx) = mpsc::channel();
    let sent = spawner()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx));
    if sent.is_err() {
        return Err(std::io::Error::other("the spawner thread is gone"));
    }
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("the spawner thread is gone")))
}

impl WorkerProcess {
    /// Starts the worker `command` describes; `events` gets its control messages and,
    /// last, [`WorkerEvent::Closed`] (it returns false when nobody listens any more).
    pub fn spawn(
        command: &WorkerCommand,
        events: impl Fn(WorkerEvent) -> bool + Send + 'static,
    ) -> std::io::Result<Self> {
        let (mine, theirs) = UnixStream::pair()?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(&command.exe);
        cmd.arg("worker")
            .arg("--index")
            .arg(command.index.to_string())
            .arg("--control-fd")
            .arg(CONTROL_FD.to_string());
        cmd.env_clear()
            .envs(kept_env())
            .env(RUN_ID_VAR, &command.run_id);
        if let Some(dir) = &command.path_prefix {
            cmd.env("PATH", prefixed_path(dir));
        }
        if let Some(dir) = &command.dir {
            cmd.current_dir(dir);
        }
        let piped = matches!(command.output, Output::Prefixed(_));
        cmd.stdin(if command.stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(if piped {
            Stdio::piped()
        } else {
            Stdio::inherit()
        })
        .stderr(Stdio::inherit());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // Die with the supervisor; stay out of its terminal's Ctrl-C (the
                // supervisor drains the workers itself).
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() == 1 {
                    return Err(std::io::Error::other("the supervisor is gone"));
                }
                libc::setpgid(0, 0);
                // The control channel on fd 3; dup2 leaves the copy open across exec.
                if libc::dup2(theirs_fd, CONTROL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = spawn_on_spawner(cmd)?;
        drop(theirs);
        let pid = child.id();
        if let Output::Prefixed(prefix) = &command.output {
            if let Some(out) = child.stdout.take() {
                relay(out, prefix.clone(), command.index);
            }
        }
        let reader = match mine.try_clone() {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        let index = command.index;
        let started = std::thread::Builder::new()
            .name(format!("worker-{index}-ctl"))
            .spawn(move || read_control(reader, index, events));
        if let Err(e) = started {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(WorkerProcess {
            child,
            control: Some(mine),
            pid,
            last_seen: Instant::now(),
        })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `msg` on its control channel. A dead worker's channel is closed; its exit
    /// is noticed separately ([`WorkerEvent::Closed`]).
    pub fn send(&mut self, msg: &ToWorker) {
        let Some(control) = self.control.as_mut() else {
            return;
        };
        let Ok(mut line) = serde_json::to_vec(msg) else {
            return;
        };
        line.push(b'\n');
        let _ = control.write_all(&line);
    }

    /// It was heard from now.
    pub fn heard(&mut self) {
        self.last_seen = Instant::now();
    }

    /// How long since it was last heard from.
    pub fn silent_for(&self) -> Duration {
        self.last_seen.elapsed()
    }

    /// Closes its control channel: the worker takes that as its supervisor gone, and
    /// exits.
    pub fn close(&mut self) {
        if let Some(c) = self.control.take() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Waits for it to exit; how it ended.
    pub fn wait(&mut self) -> String {
        self.child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string())
    }

    /// Kills it (SIGKILL) and waits for it; how it ended.
    pub fn kill(&mut self) -> String {
        let _ = self.child.kill();
        self.close();
        self.wait()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads [`FromWorker`] lines from the control channel until it closes.
fn read_control(
    stream: UnixStream,
    index: usize,
    events: impl Fn(WorkerEvent) -> bool + Send + 'static,
) {
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        match serde_json::from_str::<FromWorker>(&line) {
            Ok(msg) => {
                if !events(WorkerEvent::Message(msg)) {
                    return;
                }
            }
            Err(e) => {
                warn!(worker = index, error = %e, "Ignored a control line that does not parse.")
            }
        }
    }
    events(WorkerEvent::Closed);
}

/// Copies a worker's stdout to ours, each line behind `prefix`, on a thread.
fn relay(from: impl Read + Send + 'static, prefix: String, index: usize) {
    let started = std::thread::Builder::new()
        .name(format!("worker-{index}-out"))
        .spawn(move || {
            let mut from = from;
            let mut buf = vec![0u8; 16 * 1024];
            let mut at_line_start = true;
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n + 2 * prefix.len());
                for piece in buf[..n].split_inclusive(|b| *b == b'\n') {
                    if at_line_start {
                        out.extend_from_slice(prefix.as_bytes());
                    }
                    out.extend_from_slice(piece);
                    at_line_start = piece.ends_with(b"\n");
                }
                let mut o = std::io::stdout().lock();
                if o.write_all(&out).and_then(|()| o.flush()).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = started {
        warn!(worker = index, error = %e, "Cannot relay a worker's output.");
    }
}

/// When a worker is started again, and when its supervisor gives up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Restarts allowed per worker.
    pub max_restarts: u32,
    /// A worker silent this long (before its summary) is killed and started again.
    pub heartbeat_timeout: Duration,
}

impl Default for RestartPolicy {
    /// 10 restarts per worker, a 10 s heartbeat timeout.
    fn default() -> Self {
        RestartPolicy {
            max_restarts: 10,
            heartbeat_timeout: Duration::from_secs(10),
        }
    }
}

impl RestartPolicy {
    /// `worker` hangs: it has been silent past the heartbeat timeout.
    pub fn hangs(&self, worker: &WorkerProcess) -> bool {
        worker.silent_for() > self.heartbeat_timeout
    }

    /// A worker that died after `restarts` restarts may start again.
    pub fn allows(&self, restarts: u32) -> bool {
        restarts < self.max_restarts
    }
}
