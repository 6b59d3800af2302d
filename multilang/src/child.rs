//! One multilang child process: spawning, the handshake, message framing over its
//! stdin/stdout, and killing it.
//!
//! Framing (Storm's JSON serializer), the same both ways:
//!
//! ```text
//! +----------------------------+------+-------+------+
//! | one JSON value (any lines) | "\n" | "end" | "\n" |
//! +----------------------------+------+-------+------+
//! ```
//!
//! A reader thread parses the child's stdout into [`Incoming`] messages and calls the
//! wake-up callback after each one; a writer thread owns the child's stdin, so a child
//! that stops reading never blocks the executor. The child runs in its own process
//! group, which is killed whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

/// The line that ends every message.
pub const END: &str = "end";

/// The least time a child gets to answer the handshake.
pub const HANDSHAKE_MIN: Duration = Duration::from_secs(10);

/// How long a child that closed its output gets to exit before it is killed.
pub const EXIT_WAIT: Duration = Duration::from_secs(2);

/// What the reader thread hands over.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// One message.
    Msg(Json),
    /// Text that is not JSON, and the parse error.
    Bad(String, String),
    /// The child sent a message longer than the limit (at least this many bytes); it is
    /// read no further.
    TooLarge(usize),
    /// The child closed its stdout (it exited or crashed).
    Closed,
}

/// A wake-up callback, called from the reader thread after every message.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// Frames `msg` as the protocol sends it.
pub fn frame(msg: &Json) -> Vec<u8> {
    let mut out = serde_json::to_vec(msg).unwrap_or_else(|_| b"null".to_vec());
    out.extend_from_slice(b"\nend\n");
    out
}

/// Splits a stream of lines into messages; returns each complete one.
///
/// Text a child printed outside the protocol (a stray `print`) lands in front of the
/// next message; when the whole text is not JSON, the message is looked for from the
/// start of the first, then the last, line that opens a JSON object or array, and the
/// text before it is kept in [`Deframer::junk`]. At most three parses per message: the
/// time is linear in what the child sent. A message over the limit is
/// [`Incoming::TooLarge`], and the deframer takes nothing more.
#[derive(Debug)]
pub struct Deframer {
    buf: String,
    /// Byte offsets in `buf` of the first and the last line that opens an object or array.
    first_open: Option<usize>,
    last_open: Option<usize>,
    max: usize,
    over: bool,
    /// Text before the last message that was not part of the protocol.
    pub junk: Option<String>,
    /// Parse attempts so far (each at most the message's length).
    pub(crate) parses: usize,
}

impl Deframer {
    /// A deframer for messages of at most `max` bytes.
    pub fn new(max: usize) -> Deframer {
        Deframer {
            buf: String::new(),
            first_open: None,
            last_open: None,
            max,
            over: false,
            junk: None,
            parses: 0,
        }
    }

    /// Bytes of the message so far.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Feeds one line (without its newline); returns a message when `line` ends one.
    pub fn line(&mut self, line: &str) -> Option<Incoming> {
        if self.over {
            return None;
        }
        if line == END {
            let text = std::mem::take(&mut self.buf);
            let (first, last) = (self.first_open.take(), self.last_open.take());
            if text.trim().is_empty() {
                return None;
            }
            self.parses += 1;
            let e = match serde_json::from_str(&text) {
                Ok(v) => return Some(Incoming::Msg(v)),
                Err(e) => e,
            };
            let mut tried = None;
            for at in [first, last].into_iter().flatten() {
                if at == 0 || tried == Some(at) {
                    continue;
                }
                tried = Some(at);
                self.parses += 1;
                if let Ok(v) = serde_json::from_str(&text[at..]) {
                    self.junk = Some(text[..at - 1].to_string());
                    return Some(Incoming::Msg(v));
                }
            }
            return Some(Incoming::Bad(text, e.to_string()));
        }
        if self.buf.len() + line.len() + 1 > self.max {
            self.over = true;
            let size = self.buf.len() + line.len() + 1;
            self.buf = String::new();
            return Some(Incoming::TooLarge(size));
        }
        if !self.buf.is_empty() {
            self.buf.push('\n');
        }
        if line.trim_start().starts_with(['{', '[']) {
            let at = self.buf.len();
            self.first_open.get_or_insert(at);
            self.last_open = Some(at);
        }
        self.buf.push_str(line);
        None
    }
}

/// A running child.
pub struct Child {
    process: std::process::Child,
    pid: u32,
    to_child: Option<Sender<Vec<u8>>>,
    from_child: crossbeam_channel::Receiver<Incoming>,
    last_sync: Arc<AtomicU64>,
    started: Instant,
    pid_dir: PathBuf,
}

impl std::fmt::Debug for Child {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Child").field("pid", &self.pid).finish()
    }
}

/// Why a child could not be started.
#[derive(Debug)]
pub struct SpawnError(pub String);

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpawnError {}

impl Child {
    /// Starts `command` in `dir` (its working directory; a relative program path with a
    /// `/` resolves against it), sends the handshake and waits up to `timeout` (at least
    /// [`HANDSHAKE_MIN`], for interpreters that start slowly) for the child's pid. `wake` is called after every message the child sends.
    pub fn spawn(
        command: &[String],
        dir: &Path,
        conf: &Json,
        context: &Json,
        timeout: Duration,
        max_message: usize,
        wake: Wake,
    ) -> Result<Child, SpawnError> {
        let shown = command.join(" ");
        let Some((program, args)) = command.split_first() else {
            return Err(SpawnError("the multilang `command` is empty".into()));
        };
        let program = if program.contains('/') && Path::new(program).is_relative() {
            dir.join(program)
        } else {
            PathBuf::from(program)
        };
        let pid_dir = make_pid_dir()
            .map_err(|e| SpawnError(format!("cannot make a pid folder for `{shown}`: {e}")))?;
        let spawned = {
            use std::os::unix::process::CommandExt;
            let mut cmd = Command::new(&program);
            // Only what a child needs (the search path, home, locale): nothing secret the
            // worker's parent held reaches code in another language either.
            topo_engine::launcher::process::scrub_env(&mut cmd);
            cmd.args(args)
                .current_dir(dir)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .process_group(0)
                .spawn()
        };
        let mut process = match spawned {
            Ok(p) => p,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&pid_dir);
                return Err(SpawnError(format!(
                    "cannot start `{shown}` in `{}`: {e}",
                    dir.display()
                )));
            }
        };
        let pid = process.id();
        let (stdin, stdout) = match (process.stdin.take(), process.stdout.take()) {
            (Some(i), Some(o)) => (i, o),
            _ => return Err(SpawnError(format!("`{shown}` has no pipes"))),
        };
        let started = Instant::now();
        let last_sync = Arc::new(AtomicU64::new(0));
        let (in_tx, in_rx) = crossbeam_channel::bounded(READ_AHEAD);
        let sync_seen = Arc::clone(&last_sync);
        let reader = std::thread::Builder::new()
            .name(format!("multilang-out-{pid}"))
            .spawn(move || read_loop(pid, stdout, in_tx, wake, sync_seen, started, max_message));
        let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>();
        let writer = std::thread::Builder::new()
            .name(format!("multilang-in-{pid}"))
            .spawn(move || write_loop(stdin, out_rx));
        let mut child = Child {
            process,
            pid,
            to_child: Some(out_tx),
            from_child: in_rx,
            last_sync,
            started,
            pid_dir,
        };
        if let Err(e) = reader.and(writer) {
            return Err(SpawnError(format!(
                "cannot start threads for `{shown}`: {e}"
            )));
        }
        let handshake = json!({
            "conf": conf,
            "context": context,
            "pidDir": child.pid_dir.to_string_lossy(),
        });
        child.send(&handshake);
        let timeout = timeout.max(HANDSHAKE_MIN);
        match child.recv(timeout) {
            Some(Incoming::Msg(m)) if m.get("pid").is_some_and(Json::is_u64) => {
                child
                    .last_sync
                    .store(elapsed_ms(started), Ordering::Relaxed);
                Ok(child)
            }
            Some(Incoming::Msg(m)) => Err(SpawnError(format!(
                "`{shown}` answered the handshake with {m} instead of {{\"pid\": N}}"
            ))),
            Some(Incoming::Bad(text, e)) => Err(SpawnError(format!(
                "`{shown}` answered the handshake with {text:?}, which is not JSON: {e}"
            ))),
            Some(Incoming::TooLarge(n)) => Err(SpawnError(format!(
                "`{shown}` answered the handshake with a message over {n} bytes"
            ))),
            Some(Incoming::Closed) => {
                let status = child.reap();
                Err(SpawnError(format!(
                    "`{shown}` exited during the handshake ({status})"
                )))
            }
            None => Err(SpawnError(format!(
                "`{shown}` did not answer the handshake within {timeout:?}"
            ))),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Queues `msg` for the child; never blocks.
    pub fn send(&self, msg: &Json) {
        if let Some(tx) = &self.to_child {
            let _ = tx.send(frame(msg));
        }
    }

    /// A handle that can send to the child from another thread (for heartbeats).
    pub fn sender(&self) -> Option<Sender<Vec<u8>>> {
        self.to_child.clone()
    }

    /// The next message, if one is waiting.
    pub fn try_recv(&self) -> Option<Incoming> {
        match self.from_child.try_recv() {
            Ok(m) => Some(m),
            Err(crossbeam_channel::TryRecvError::Empty) => None,
            Err(crossbeam_channel::TryRecvError::Disconnected) => Some(Incoming::Closed),
        }
    }

    /// The next message, waiting up to `timeout`; `None` on timeout.
    pub fn recv(&self, timeout: Duration) -> Option<Incoming> {
        match self.from_child.recv_timeout(timeout) {
            Ok(m) => Some(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Some(Incoming::Closed),
        }
    }

    /// Time since the child last sent `sync` (or finished its handshake).
    pub fn since_sync(&self) -> Duration {
        let last = self.last_sync.load(Ordering::Relaxed);
        Duration::from_millis(elapsed_ms(self.started).saturating_sub(last))
    }

    /// The shared clock of the last `sync`, in ms since [`Child::started`].
    pub fn sync_clock(&self) -> (Arc<AtomicU64>, Instant) {
        (Arc::clone(&self.last_sync), self.started)
    }

    /// After the child closed its stdout: waits up to [`EXIT_WAIT`] for it to exit (it
    /// is killed if it has not) and returns how it ended, `None` when it was killed.
    pub fn wait_exit(&mut self) -> Option<std::process::ExitStatus> {
        self.to_child = None;
        let deadline = Instant::now() + EXIT_WAIT;
        loop {
            match self.process.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    // Polling: std has no wait with a timeout, and the child is exiting.
                    std::thread::sleep(Duration::from_millis(2));
                }
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    /// Waits for the child to exit (after it closed its stdout) and describes how it did.
    pub fn reap(&mut self) -> String {
        match self.wait_exit() {
            Some(status) => status.to_string(),
            None => format!("killed: still running {EXIT_WAIT:?} after closing its output"),
        }
    }

    /// Whether the child exited with status 0 (call after `Closed`).
    pub fn exited_cleanly(&mut self) -> bool {
        self.wait_exit().is_some_and(|s| s.success())
    }

    /// Kills the child's process group and reaps it.
    pub fn kill(&mut self) {
        self.to_child = None;
        if let Ok(None) = self.process.try_wait() {
            let pgid = libc::pid_t::try_from(self.pid).unwrap_or(0);
            if pgid > 0 {
                // SAFETY: sending a signal to the process group we created for the child.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = self.process.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.pid_dir);
    }
}

fn elapsed_ms(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn make_pid_dir() -> std::io::Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("topo-multilang-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Most messages read from a child and not yet handled: the reader then waits, the
/// child's stdout pipe fills, and the child blocks in its next write.
const READ_AHEAD: usize = 1024;

#[allow(clippy::too_many_arguments)]
fn read_loop(
    pid: u32,
    stdout: std::process::ChildStdout,
    tx: crossbeam_channel::Sender<Incoming>,
    wake: Wake,
    last_sync: Arc<AtomicU64>,
    started: Instant,
    max_message: usize,
) {
    let mut reader = BufReader::new(stdout);
    let mut deframer = Deframer::new(max_message);
    let mut line = Vec::new();
    // Hands a message over, waiting while the channel is full; meanwhile the child is not
    // the one behind, so its sync clock is kept fresh.
    let hand_over = |mut msg: Incoming| -> bool {
        loop {
            match tx.send_timeout(msg, Duration::from_millis(100)) {
                Ok(()) => {
                    wake();
                    return true;
                }
                Err(crossbeam_channel::SendTimeoutError::Timeout(m)) => {
                    last_sync.store(elapsed_ms(started), Ordering::Relaxed);
                    msg = m;
                }
                Err(crossbeam_channel::SendTimeoutError::Disconnected(_)) => return false,
            }
        }
    };
    loop {
        line.clear();
        // One byte past what the message may still take, and the newline.
        let room = max_message.saturating_sub(deframer.pending()) as u64 + 2;
        match (&mut reader).take(room).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if !line.ends_with(b"\n") && line.len() as u64 == room {
            let size = deframer.pending() + line.len();
            hand_over(Incoming::TooLarge(size));
            return;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if let Some(msg) = deframer.line(text) {
            if let Some(junk) = deframer.junk.take() {
                tracing::warn!(
                    pid,
                    "Multilang child printed outside the protocol: {junk:?}."
                );
            }
            if let Incoming::Msg(m) = &msg {
                if m.get("command").and_then(Json::as_str) == Some("sync") {
                    last_sync.store(elapsed_ms(started), Ordering::Relaxed);
                }
            }
            let over = matches!(msg, Incoming::TooLarge(_));
            if !hand_over(msg) || over {
                return;
            }
        }
    }
    hand_over(Incoming::Closed);
}

fn write_loop(mut stdin: ChildStdin, rx: Receiver<Vec<u8>>) {
    while let Ok(bytes) = rx.recv() {
        if stdin
            .write_all(&bytes)
            .and_then(|()| stdin.flush())
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_json_then_an_end_line() {
        assert_eq!(
            frame(&json!({"command": "next"})),
            b"{\"command\":\"next\"}\nend\n"
        );
        assert_eq!(frame(&json!([1, 2])), b"[1,2]\nend\n");
    }

    #[test]
    fn the_deframer_joins_lines_until_end() {
        let mut d = Deframer::new(1 << 20);
        assert_eq!(d.line("{\"a\":"), None);
        assert_eq!(d.line("1}"), None);
        assert_eq!(d.line(END), Some(Incoming::Msg(json!({"a": 1}))));
        assert_eq!(d.line(END), None, "an empty message is skipped");
        assert_eq!(d.line("hello from print()"), None);
        assert_eq!(d.line("{\"command\": \"sync\"}"), None);
        assert_eq!(d.line(END), Some(Incoming::Msg(json!({"command": "sync"}))));
        assert_eq!(d.junk.take().as_deref(), Some("hello from print()"));
        assert_eq!(d.line("nope"), None);
        match d.line(END) {
            Some(Incoming::Bad(text, _)) => assert_eq!(text, "nope"),
            other => panic!("expected a bad message, got {other:?}"),
        }
    }

    #[test]
    fn a_message_costs_at_most_three_parses_however_many_lines_came_before_it() {
        let mut d = Deframer::new(1 << 24);
        for i in 0..20_000 {
            assert_eq!(d.line(&format!("junk {i}")), None);
        }
        assert_eq!(d.line("{\"command\": \"sync\"}"), None);
        assert_eq!(d.line(END), Some(Incoming::Msg(json!({"command": "sync"}))));
        assert_eq!(d.parses, 2);
        assert_eq!(d.junk.take().map(|j| j.lines().count()), Some(20_000));
        // A bad message whose every line opens an object: the whole text, then from its
        // last line (the first is the whole text again).
        for _ in 0..20_000 {
            assert_eq!(d.line("{ not json"), None);
        }
        assert!(matches!(d.line(END), Some(Incoming::Bad(..))));
        assert_eq!(d.parses, 2 + 2);
    }

    #[test]
    fn a_message_over_the_limit_is_reported_once_and_the_rest_ignored() {
        let mut d = Deframer::new(100);
        assert_eq!(d.line(&"x".repeat(60)), None);
        assert_eq!(d.line(&"y".repeat(60)), Some(Incoming::TooLarge(121)));
        assert_eq!(d.pending(), 0);
        assert_eq!(d.line(&"z".repeat(10)), None);
        assert_eq!(d.line(END), None);
    }

    proptest::proptest! {
        #[test]
        fn any_lines_give_messages_within_the_limit_in_linear_time(
            lines in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(END.to_string()),
                    proptest::strategy::Just("{\"a\": 1}".to_string()),
                    proptest::strategy::Just("[1,".to_string()),
                    proptest::strategy::Just("2]".to_string()),
                    ".{0,12}",
                ],
                0..200,
            ),
        ) {
            let mut d = Deframer::new(256);
            let mut ends = 0;
            for line in &lines {
                ends += usize::from(line == END);
                match d.line(line) {
                    Some(Incoming::Bad(text, _)) => proptest::prop_assert!(text.len() <= 256),
                    Some(Incoming::TooLarge(n)) => proptest::prop_assert!(n > 256),
                    _ => {}
                }
                proptest::prop_assert!(d.pending() <= 256);
            }
            proptest::prop_assert!(d.parses <= 3 * ends);
        }
    }
}
