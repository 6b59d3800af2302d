//! `multilang_spout`: a spout in any language, run as a child process speaking Storm's
//! multilang protocol.
//!
//! The spout side is synchronous: every `next_tuple` sends `next` and handles what the
//! child sends until its `sync`. `ack` and `fail` arrive on the executor between calls,
//! without an output, so they are queued and sent (each waiting for its `sync`, its
//! emits handled) at the start of the next `next_tuple`; `activate` and `deactivate` too.
//! The child's message ids (any JSON value) are mapped to the engine's `u64` ids and
//! back. A child silent for `timeout_secs` while a command waits for its `sync` is
//! killed; one that dies is started again (at most once a second), and the ids of the old
//! one are forgotten. A child that exits with status 0 ends the spout's stream (a bounded
//! source; Storm would restart it).
//!
//! A spout with `rewinds = true` answers `position` and `seek` ([`rewind`]), so a
//! checkpointed topology may use it. There a child that dies or breaks the protocol is
//! not started again from scratch: what it emitted since the last checkpoint is already
//! downstream, so the worker process ends, and the run rolls every worker back to the
//! last committed checkpoint, where the new child is sent back to its position.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bolt::{check_emit, Setup};
use crate::child::{Child, Incoming, Wake};
use crate::protocol::{log_message, rules, stream_of, Config, StreamRule};
use serde_json::{json, Value as Json};
use topo_engine::{MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext, TaskId, Values};

pub mod rewind;

/// The exit status of a worker process whose rewinding spout lost its child.
pub const EXIT_CHILD_LOST: i32 = 70;

/// Where the spout core sends the child's emits: the executor's [`SpoutOutput`] at run
/// time, a recorder in tests.
pub trait Collector {
    /// Emits `values` on `stream`, tracked as `id` when given, to task `direct` on a
    /// direct stream; returns the receiving task ids.
    fn emit(
        &mut self,
        stream: &str,
        id: Option<MsgId>,
        direct: Option<TaskId>,
        values: Values,
    ) -> Vec<TaskId>;
}

impl Collector for SpoutOutput<'_> {
    fn emit(
        &mut self,
        stream: &str,
        id: Option<MsgId>,
        direct: Option<TaskId>,
        values: Values,
    ) -> Vec<TaskId> {
        match direct {
            Some(task) => {
                self.emit_direct(task, stream, id, values);
                vec![task]
            }
            None => self.emit_to(stream, id, values).to_vec(),
        }
    }
}

/// How long a crashed child waits before it is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);

/// Most emits handled in one `next_tuple` call: a child that emits without sending `sync`
/// still gives the executor back its thread (for acks, deactivate and stop).
pub const EMITS_PER_CALL: usize = 1024;

/// The protocol side of the spout, independent of the executor.
pub struct SpoutCore {
    config: Config,
    setup: Setup,
    track: bool,
    rules: BTreeMap<String, StreamRule>,
    child: Option<Child>,
    queued: VecDeque<Json>,
    ids: HashMap<MsgId, Json>,
    next_id: MsgId,
    finished: bool,
    last_start: Option<Instant>,
    /// The topology's `max_spout_pending` (acking on).
    max_pending: Option<usize>,
    /// The last command's `sync` has not come yet: read on before sending another.
    awaiting_sync: bool,
    /// Children started so far.
    pub starts: u64,
    /// A rewinding spout in a checkpointed run: losing the child ends the process.
    rollback_on_loss: bool,
}

impl std::fmt::Debug for SpoutCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoutCore")
            .field("component", &self.setup.component)
            .field("child", &self.child)
            .field("pending", &self.ids.len())
            .finish()
    }
}

enum Outcome {
    /// The child sent `sync`; this many emits came before it.
    Synced(usize),
    /// This many emits and no `sync` yet: the call's budget is spent.
    Paused(usize),
    /// The child is gone.
    Lost,
}

impl SpoutCore {
    /// A core; `track` is whether acking is on (the child's ids are remembered only then).
    pub fn new(config: Config, setup: Setup, track: bool) -> Self {
        SpoutCore {
            rules: rules(&config, &setup.direct_targets),
            config,
            setup,
            track,
            child: None,
            queued: VecDeque::new(),
            ids: HashMap::new(),
            next_id: 0,
            finished: false,
            last_start: None,
            max_pending: None,
            awaiting_sync: false,
            starts: 0,
            rollback_on_loss: false,
        }
    }

    /// Holds the child to `max_spout_pending` messages in flight even when it emits
    /// without sending `sync`.
    pub fn with_max_pending(mut self, max: Option<usize>) -> Self {
        self.max_pending = max;
        self
    }

    /// Emits the child may still make in this call.
    fn budget(&self) -> usize {
        let room = match self.max_pending {
            Some(max) if self.track => max.saturating_sub(self.ids.len()),
            _ => EMITS_PER_CALL,
        };
        room.clamp(1, EMITS_PER_CALL)
    }

    /// Starts the child if none runs.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        self.last_start = Some(Instant::now());
        let wake: Wake = Arc::new(|| {});
        let child = Child::spawn(
            &self.config.command.0,
            &self.setup.dir,
            &self.setup.conf,
            &self.setup.context,
            self.config.timeout(),
            self.config.max_message_bytes,
            wake,
        )?;
        self.starts += 1;
        self.child = Some(child);
        Ok(())
    }

    /// The child's pid, when one runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::pid)
    }

    /// Messages the child emitted with an id and the engine has not acked or failed.
    pub fn in_flight(&self) -> usize {
        self.ids.len()
    }

    /// Queues `ack` for the child.
    pub fn ack(&mut self, id: MsgId) {
        if let Some(j) = self.ids.remove(&id) {
            self.queued.push_back(json!({"command": "ack", "id": j}));
        }
    }

    /// Queues `fail` for the child.
    pub fn fail(&mut self, id: MsgId) {
        if let Some(j) = self.ids.remove(&id) {
            self.queued.push_back(json!({"command": "fail", "id": j}));
        }
    }

    /// Queues `activate` or `deactivate`.
    pub fn activate(&mut self, on: bool) {
        let command = if on { "activate" } else { "deactivate" };
        self.queued.push_back(json!({ "command": command }));
    }

    /// Sends the queued commands, then `next`; handles everything up to the `sync`s.
    pub fn next(&mut self, out: &mut dyn Collector) -> Result<Poll> {
        if self.finished {
            return Ok(Poll::Done);
        }
        if self.child.is_none() {
            if self.last_start.is_some_and(|t| t.elapsed() < RESTART_DELAY) {
                return Ok(Poll::Idle);
            }
            self.start()?;
        }
        let mut emitted = 0;
        if self.awaiting_sync {
            match self.command(None, out) {
                Outcome::Synced(n) => emitted += n,
                Outcome::Paused(n) => return Ok(ready_if(n)),
                Outcome::Lost => return Ok(self.after_loss()),
            }
        }
        while let Some(cmd) = self.queued.pop_front() {
            match self.command(Some(&cmd), out) {
                Outcome::Synced(n) => emitted += n,
                Outcome::Paused(n) => return Ok(ready_if(emitted + n)),
                Outcome::Lost => return Ok(self.after_loss()),
            }
        }
        match self.command(Some(&json!({"command": "next"})), out) {
            Outcome::Synced(n) | Outcome::Paused(n) => emitted += n,
            Outcome::Lost => return Ok(self.after_loss()),
        }
        Ok(ready_if(emitted))
    }

    fn after_loss(&mut self) -> Poll {
        if self.finished {
            Poll::Done
        } else {
            Poll::Idle
        }
    }

    /// Sends `cmd` (none: goes on reading for the last one's `sync`) and handles what the
    /// child sends until its `sync`, or until it made [`SpoutCore::budget`] emits.
    fn command(&mut self, cmd: Option<&Json>, out: &mut dyn Collector) -> Outcome {
        let Some(child) = &self.child else {
            return Outcome::Lost;
        };
        if let Some(cmd) = cmd {
            child.send(cmd);
        }
        self.awaiting_sync = true;
        let budget = self.budget();
        let mut emitted = 0;
        loop {
            if emitted >= budget {
                return Outcome::Paused(emitted);
            }
            // The timeout is the longest silence: a child still emitting is alive.
            let msg = self
                .child
                .as_ref()
                .and_then(|c| c.recv(self.config.timeout()));
            let (component, task) = (self.setup.component.as_str(), self.setup.task);
            match msg {
                Some(Incoming::Msg(m)) => {
                    match m.get("command").and_then(Json::as_str).unwrap_or("") {
                        "sync" => {
                            self.awaiting_sync = false;
                            return Outcome::Synced(emitted);
                        }
                        "emit" => {
                            if self.emit(&m, out) {
                                emitted += 1;
                            }
                        }
                        "log" => log_message(component, task, &m),
                        "error" => {
                            let text = m.get("msg").and_then(Json::as_str).unwrap_or("");
                            tracing::error!(component, task, "Multilang spout reported: {text}");
                        }
                        "metrics" => {}
                        other => {
                            tracing::error!(
                                component,
                                task,
                                "Multilang spout sent unknown command {other:?}: {m}."
                            );
                        }
                    }
                }
                Some(Incoming::Bad(text, e)) => {
                    tracing::error!(
                        component,
                        task,
                        "Multilang spout sent {text:?}, which is not JSON: {e}."
                    );
                }
                Some(Incoming::TooLarge(n)) => {
                    tracing::error!(component, task, limit = self.config.max_message_bytes, "Multilang spout sent a message of more than {n} bytes, over `max_message_bytes`; killing it and starting it again.");
                    self.lose();
                    return Outcome::Lost;
                }
                Some(Incoming::Closed) => {
                    let clean = self.child.as_mut().is_some_and(Child::exited_cleanly);
                    if clean {
                        if !self.ids.is_empty() {
                            tracing::warn!(component, task, "Multilang spout exited with {} message(s) in flight; they cannot be replayed.", self.ids.len());
                        }
                        tracing::info!(
                            component,
                            task,
                            "Multilang spout exited cleanly: its stream ends."
                        );
                        self.finished = true;
                    } else {
                        tracing::error!(
                            component,
                            task,
                            "Multilang spout died; starting it again."
                        );
                    }
                    self.lose();
                    return Outcome::Lost;
                }
                None => {
                    tracing::error!(component, task, timeout = ?self.config.timeout(), "Multilang spout did not sync in time; killing it.");
                    self.lose();
                    return Outcome::Lost;
                }
            }
        }
    }

    fn lose(&mut self) {
        if self.rollback_on_loss && !self.finished {
            tracing::error!(
                component = %self.setup.component,
                task = self.setup.task,
                "A rewinding multilang spout lost its child in a checkpointed run; ending the worker process, so that every worker rolls back to the last committed checkpoint."
            );
            std::process::exit(EXIT_CHILD_LOST);
        }
        self.child = None;
        self.awaiting_sync = false;
        self.ids.clear();
        self.queued.clear();
    }

    /// Emits one child emit; false when it was refused.
    fn emit(&mut self, m: &Json, out: &mut dyn Collector) -> bool {
        let stream = stream_of(m).to_string();
        let direct = m
            .get("task")
            .and_then(Json::as_u64)
            .and_then(|t| TaskId::try_from(t).ok());
        let values = match check_emit(m, &stream, direct, &self.rules) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(component = %self.setup.component, task = self.setup.task, "Multilang spout emitted badly: {e}.");
                return false;
            }
        };
        let id = match m.get("id") {
            Some(j) if !j.is_null() && self.track => {
                self.next_id += 1;
                self.ids.insert(self.next_id, j.clone());
                Some(self.next_id)
            }
            _ => None,
        };
        let tasks = out.emit(&stream, id, direct, values);
        let need_ids = m
            .get("need_task_ids")
            .and_then(Json::as_bool)
            .unwrap_or(true);
        if direct.is_none() && need_ids {
            if let Some(child) = &self.child {
                child.send(&json!(tasks));
            }
        }
        true
    }
}

fn ready_if(emitted: usize) -> Poll {
    if emitted > 0 {
        Poll::Ready
    } else {
        Poll::Idle
    }
}

/// The `multilang_spout` spout.
#[derive(Debug)]
pub struct MultilangSpout {
    config: Config,
    core: Option<SpoutCore>,
}

impl Spout for MultilangSpout {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        let setup = Setup::from_context(ctx, &self.config);
        let settings = ctx.topology.settings();
        let mut core = SpoutCore::new(self.config.clone(), setup, settings.acking)
            .with_max_pending(settings.max_spout_pending);
        core.rollback_on_loss = self.config.rewinds && settings.checkpoints.is_some();
        core.start()?;
        self.core = Some(core);
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        match self.core.as_mut() {
            Some(core) => core.next(out),
            None => Ok(Poll::Done),
        }
    }

    fn ack(&mut self, id: MsgId) {
        if let Some(core) = self.core.as_mut() {
            core.ack(id);
        }
    }

    fn fail(&mut self, id: MsgId) {
        if let Some(core) = self.core.as_mut() {
            core.fail(id);
        }
    }

    fn activate(&mut self) {
        if let Some(core) = self.core.as_mut() {
            core.activate(true);
        }
    }

    fn deactivate(&mut self) {
        if let Some(core) = self.core.as_mut() {
            core.activate(false);
        }
    }

    fn close(&mut self) {
        self.core = None;
    }

    fn position(&mut self) -> Option<Vec<u8>> {
        if !self.config.rewinds {
            return None;
        }
        let core = self.core.as_mut()?;
        match core.position() {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(component = %core.setup.component, task = core.setup.task, "Multilang spout cannot tell its position: {e}.");
                None
            }
        }
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        if !self.config.rewinds {
            return Err("a multilang spout rewinds only with `rewinds = true`".into());
        }
        match self.core.as_mut() {
            Some(core) => Ok(core.seek(position)?),
            None => Err("the spout is not open".into()),
        }
    }
}

/// Registers `multilang` (the spout; `multilang_spout` is its alias).
pub fn register(registry: &mut Registry) {
    registry
        .spout(
            "multilang",
            "Runs `command` as a spout child speaking Storm's multilang protocol (JSON); `outputs` declares its streams. Alias: `multilang_spout`.",
            |c: &Config| c.decls(),
            |config: Config| Ok(MultilangSpout { config, core: None }),
        )
        .alias(topo_dsl::Kind::Spout, "multilang_spout", "multilang")
        .rewinds("multilang", |c: &Config| c.rewinds)
        .rewind_hint(
            "multilang",
            "set `rewinds = true` if its child answers the `position` and `seek` commands",
        );
}

#[cfg(test)]
mod tests {
    use topo_dsl::parse_config;

    use super::*;

    /// A stdlib-only spout: emits "a", "b", "c" with ids 10, 11, 12, emits a failed one
    /// again, logs, and exits cleanly once everything was acked. "b" crashes the first
    /// child when `CRASH` is in its arguments.
    /// (After [`crate::PYTHON_PRELUDE`].)
    const SPOUT: &str = r#"
hs = read()
send({"pid": os.getpid()})
todo = [(10, "a"), (11, "b"), (12, "c")]
words = dict(todo)
pending = set()
crash = len(sys.argv) > 1 and not os.path.exists("crashed")
while True:
    cmd = read()
    c = cmd["command"]
    if c == "next":
        if todo:
            i, w = todo.pop(0)
            if crash and w == "b":
                open("crashed", "w").close()
                sys.exit(9)
            send({"command": "emit", "id": i, "tuple": [w]})
            ids = read()
            send({"command": "log", "msg": "sent %s to %s" % (w, ids)})
            pending.add(i)
        elif not pending:
            sys.exit(0)
    elif c == "ack":
        pending.discard(cmd["id"])
    elif c == "fail":
        pending.discard(cmd["id"])
        todo.append((cmd["id"], words[cmd["id"]]))
    send({"command": "sync"})
"#;

    #[derive(Default)]
    struct Recorder {
        emits: Vec<(Option<MsgId>, String)>,
    }

    impl Collector for Recorder {
        fn emit(
            &mut self,
            _stream: &str,
            id: Option<MsgId>,
            _direct: Option<TaskId>,
            values: Values,
        ) -> Vec<TaskId> {
            let word = values.first().map(|v| v.to_string()).unwrap_or_default();
            self.emits.push((id, word));
            vec![2]
        }
    }

    /// Emits with ids forever after its first command, never sending `sync`.
    const FLOOD: &str = r#"
hs = read()
send({"pid": os.getpid()})
read()
n = 0
while True:
    n += 1
    send({"command": "emit", "id": n, "tuple": ["w%d" % n], "need_task_ids": False})
"#;

    fn core(dir: &std::path::Path, args: &str) -> SpoutCore {
        core_running(dir, SPOUT, args)
    }

    fn core_running(dir: &std::path::Path, script: &str, args: &str) -> SpoutCore {
        std::fs::write(
            dir.join("spout.py"),
            format!("{}\n{script}", crate::PYTHON_PRELUDE),
        )
        .expect("script");
        let table: toml::Table =
            format!("command = ['python3', 'spout.py'{args}]\noutputs = ['word']")
                .parse()
                .expect("toml");
        let config: Config = parse_config(&table).expect("config");
        let setup = Setup {
            component: "words".into(),
            task: 1,
            dir: dir.to_path_buf(),
            conf: json!({}),
            context: json!({"taskid": 1, "componentid": "words"}),
            direct_targets: Default::default(),
        };
        let mut core = SpoutCore::new(config, setup, true);
        core.start().expect("start");
        core
    }

    #[test]
    fn ids_map_both_ways_a_failed_message_comes_back_and_a_clean_exit_ends_the_stream() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut core = core(dir.path(), "");
        let mut rec = Recorder::default();
        for _ in 0..3 {
            assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        }
        assert_eq!(
            rec.emits,
            [
                (Some(1), "a".into()),
                (Some(2), "b".into()),
                (Some(3), "c".into())
            ]
        );
        core.ack(1);
        core.fail(2);
        core.ack(3);
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        assert_eq!(rec.emits[3], (Some(4), "b".into()), "b was replayed");
        assert_eq!(
            core.next(&mut rec).expect("next"),
            Poll::Idle,
            "b is pending"
        );
        core.ack(4);
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Done);
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Done);
        assert_eq!(core.in_flight(), 0);
    }

    /// A rewinding spout on the prelude's `Spout` class: emits "n0", "n1", …
    const COUNTING: &str = r#"
class Counting(Spout):
    def initialize(self, conf, context):
        self.n = 0
    def next_tuple(self):
        self.emit(["n%d" % self.n], id=self.n)
        self.n += 1
    def position(self):
        return {"n": self.n}
    def seek(self, position):
        self.n = position["n"]
Counting().run()
"#;

    #[test]
    fn a_rewinding_child_reports_its_position_and_goes_back_to_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut core = core_running(dir.path(), COUNTING, "");
        let mut rec = Recorder::default();
        for _ in 0..3 {
            assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        }
        let at = core.position().expect("position");
        assert_eq!(at, br#"{"at":{"n":3}}"#);
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        core.seek(&at).expect("seek");
        assert_eq!(core.in_flight(), 0, "what was in flight is forgotten");
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        let words: Vec<&str> = rec.emits.iter().map(|(_, w)| w.as_str()).collect();
        assert_eq!(words, ["n0", "n1", "n2", "n3", "n3"]);
        let err = core.seek(b"[1]").expect_err("not a position");
        assert!(
            err.starts_with("not a position of a multilang spout"),
            "{err}"
        );
    }

    #[test]
    fn a_child_that_does_not_answer_position_is_lost() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut core = core(dir.path(), "");
        let mut rec = Recorder::default();
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        // SPOUT answers every command it does not know with `sync`.
        let err = core.position().expect_err("no position");
        assert_eq!(
            err,
            r#"it answered {"command":"position"} with "sync" instead of "position""#
        );
        assert_eq!(core.pid(), None);
    }

    #[test]
    fn a_crashed_spout_child_is_started_again_and_old_ids_are_forgotten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut core = core(dir.path(), ", 'CRASH'");
        let mut rec = Recorder::default();
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        assert_eq!(core.next(&mut rec).expect("crash"), Poll::Idle);
        assert_eq!((core.pid(), core.in_flight()), (None, 0));
        // An ack for the dead child's message goes nowhere.
        core.ack(1);
        core.last_start = None;
        assert_eq!(core.next(&mut rec).expect("restart"), Poll::Ready);
        assert_eq!(core.starts, 2);
        assert_eq!(
            rec.emits,
            [(Some(1), "a".into()), (Some(2), "a".into())],
            "the new child starts over"
        );
    }

    #[test]
    fn a_child_that_never_syncs_is_held_to_max_pending_and_gives_the_thread_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut core = core_running(dir.path(), FLOOD, "").with_max_pending(Some(10));
        let mut rec = Recorder::default();
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        assert_eq!((rec.emits.len(), core.in_flight()), (10, 10));
        for id in 1..=5 {
            core.ack(id);
        }
        assert_eq!(core.next(&mut rec).expect("next"), Poll::Ready);
        assert_eq!(
            (rec.emits.len(), core.in_flight()),
            (15, 10),
            "five more, no new command: the acks wait for a sync"
        );

        // Without max_spout_pending a call still returns after a bounded number of emits.
        let mut unbounded = core_running(dir.path(), FLOOD, "");
        let mut rec = Recorder::default();
        assert_eq!(unbounded.next(&mut rec).expect("next"), Poll::Ready);
        assert_eq!(rec.emits.len(), EMITS_PER_CALL);

        // Stopping ends the child, however much it still wants to say.
        let pid = core.pid().expect("running");
        drop(core);
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
