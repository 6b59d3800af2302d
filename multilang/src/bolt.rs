//! The `multilang` bolt: tuples go to a child process, which emits, acks and fails
//! asynchronously.
//!
//! `execute` sends the tuple (its id a decimal string) and defers its ack; the child's
//! messages are read on a reader thread, which wakes the executor, and handled in
//! `wake` on the executor thread: `emit` (anchored to the named tuples, answered with the
//! receiving task ids unless `need_task_ids` is false or the emit is direct), `ack`,
//! `fail`, `log`, `error`, `metrics`, `sync`. A heartbeat thread sends a `__heartbeat`
//! tuple (task -1) every `heartbeat_secs`; a child that sends no `sync` for
//! `timeout_secs` is killed. A child that dies or is killed has its in-flight tuples
//! failed (so their spouts replay them) and is started again on the next tuple.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};
use topo_engine::{Bolt, BoltOutput, Registry, Result, TaskContext, TaskId, Tuple, Value, Values};

use crate::child::{frame, Child, Incoming, Wake};
use crate::protocol::{
    conf_json, context_json, direct_targets, log_message, rules, stream_of, Config, StreamRule,
};

/// Where the bolt core sends what the child asks for: the executor's [`BoltOutput`] at
/// run time, a recorder in tests.
pub trait Collector {
    /// Emits `values` on `stream` anchored to `anchors` (to task `direct` on a direct
    /// stream); returns the receiving task ids.
    fn emit(
        &mut self,
        anchors: &[&Tuple],
        stream: &str,
        direct: Option<TaskId>,
        values: Values,
    ) -> Vec<TaskId>;
    /// Acks a deferred tuple.
    fn ack(&mut self, tuple: &Tuple);
    /// Fails a tuple's tree.
    fn fail(&mut self, tuple: &Tuple);
}

impl Collector for BoltOutput<'_> {
    fn emit(
        &mut self,
        anchors: &[&Tuple],
        stream: &str,
        direct: Option<TaskId>,
        values: Values,
    ) -> Vec<TaskId> {
        match direct {
            Some(task) => {
                self.emit_direct(task, stream, Some(anchors), values);
                vec![task]
            }
            None if anchors.is_empty() => self.emit_unanchored(stream, values).to_vec(),
            None => self.emit_anchored(anchors, stream, values).to_vec(),
        }
    }

    fn ack(&mut self, tuple: &Tuple) {
        BoltOutput::ack(self, tuple);
    }

    fn fail(&mut self, tuple: &Tuple) {
        BoltOutput::fail(self, tuple);
    }
}

/// What the handshake needs besides the config.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Component id.
    pub component: String,
    /// Task id.
    pub task: TaskId,
    /// The child's working directory (the topology file's folder).
    pub dir: PathBuf,
    /// The handshake's `conf`.
    pub conf: Json,
    /// The handshake's `context`.
    pub context: Json,
    /// For each stream, the tasks subscribed to it with a direct grouping.
    pub direct_targets: BTreeMap<String, Vec<TaskId>>,
}

impl Setup {
    /// The setup of the task described by `ctx`.
    pub fn from_context(ctx: &TaskContext, config: &Config) -> Setup {
        Setup {
            component: ctx.component.clone(),
            task: ctx.task,
            dir: ctx.base_dir.clone(),
            conf: conf_json(&ctx.topology, &ctx.component, &config.conf),
            context: context_json(
                &ctx.topology,
                &ctx.component,
                ctx.task,
                &ctx.component_tasks,
            ),
            direct_targets: direct_targets(&ctx.topology, &ctx.component, &ctx.component_tasks),
        }
    }
}

/// The protocol side of the bolt, independent of the executor.
pub struct BoltCore {
    config: Config,
    setup: Setup,
    wake: Wake,
    rules: BTreeMap<String, StreamRule>,
    child: Option<Child>,
    heartbeat: Option<Sender<()>>,
    hung: Arc<AtomicBool>,
    pending: HashMap<String, Tuple>,
    system: HashSet<String>,
    next_id: u64,
    /// Children started so far.
    pub starts: u64,
}

impl std::fmt::Debug for BoltCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoltCore")
            .field("component", &self.setup.component)
            .field("child", &self.child)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl BoltCore {
    /// A core; the child starts with [`BoltCore::start`] or on the first tuple.
    pub fn new(config: Config, setup: Setup, wake: Wake) -> Self {
        BoltCore {
            rules: rules(&config, &setup.direct_targets),
            config,
            setup,
            wake,
            child: None,
            heartbeat: None,
            hung: Arc::new(AtomicBool::new(false)),
            pending: HashMap::new(),
            system: HashSet::new(),
            next_id: 0,
            starts: 0,
        }
    }

    /// Starts the child if none runs.
    pub fn start(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Child::spawn(
            &self.config.command.0,
            &self.setup.dir,
            &self.setup.conf,
            &self.setup.context,
            self.config.timeout(),
            self.config.max_message_bytes,
            Arc::clone(&self.wake),
        )?;
        self.starts += 1;
        tracing::debug!(component = %self.setup.component, task = self.setup.task, pid = child.pid(), "Multilang child started.");
        self.hung = Arc::new(AtomicBool::new(false));
        self.heartbeat = child.sender().map(|to_child| {
            spawn_heartbeat(
                to_child,
                &child,
                self.config.heartbeat(),
                self.config.timeout(),
                Arc::clone(&self.hung),
                Arc::clone(&self.wake),
            )
        });
        self.child = Some(child);
        Ok(())
    }

    /// The child's pid, when one runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::pid)
    }

    /// Tuples sent to the child and not yet acked or failed by it.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn next_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// Sends `input` to the child (starting it if needed); the caller defers its ack.
    pub fn send_tuple(&mut self, input: &Tuple) -> Result<()> {
        self.start()?;
        let id = self.next_id();
        let msg = json!({
            "id": id,
            "comp": input.source_component(),
            "stream": input.source_stream(),
            "task": input.source_task(),
            "tuple": input.values(),
        });
        self.pending.insert(id, input.clone());
        if let Some(child) = &self.child {
            child.send(&msg);
        }
        Ok(())
    }

    /// Sends a tick tuple (`__system`, `__tick`, task -1, the tick period).
    pub fn send_tick(&mut self, secs: f64) -> Result<()> {
        self.start()?;
        let id = self.next_id();
        let msg =
            json!({"id": id, "comp": "__system", "stream": "__tick", "task": -1, "tuple": [secs]});
        self.system.insert(id);
        if let Some(child) = &self.child {
            child.send(&msg);
        }
        Ok(())
    }

    /// Handles every message the child has sent so far, and a hung or dead child.
    pub fn pump(&mut self, out: &mut dyn Collector) {
        if self.hung.load(Ordering::Relaxed) {
            tracing::error!(component = %self.setup.component, task = self.setup.task, timeout = ?self.config.timeout(), "Multilang child stopped answering heartbeats; killing it.");
            self.lost(out);
            return;
        }
        while let Some(msg) = self.child.as_ref().and_then(Child::try_recv) {
            match msg {
                Incoming::Msg(m) => self.handle(m, out),
                Incoming::Bad(text, e) => {
                    tracing::error!(component = %self.setup.component, task = self.setup.task, "Multilang child sent {text:?}, which is not JSON: {e}.");
                }
                Incoming::TooLarge(n) => {
                    self.too_large(n, out);
                    return;
                }
                Incoming::Closed => {
                    self.closed(out);
                    return;
                }
            }
        }
    }

    /// Waits until the child has acked or failed every tuple it has, for at most the
    /// timeout; what is left then is failed. For the end of a bounded stream.
    pub fn drain(&mut self, out: &mut dyn Collector) {
        self.wait_below(1, out);
    }

    /// Waits while the child has `max_pending` tuples or more (backpressure: the
    /// executor takes no new input meanwhile), for at most the timeout.
    pub fn wait_for_room(&mut self, out: &mut dyn Collector) {
        self.wait_below(self.config.max_pending, out);
    }

    fn wait_below(&mut self, limit: usize, out: &mut dyn Collector) {
        self.pump(out);
        while self.pending.len() >= limit.max(1) && self.child.is_some() {
            if self.hung.load(Ordering::Relaxed) {
                self.pump(out);
                return;
            }
            match self
                .child
                .as_ref()
                .and_then(|c| c.recv(self.config.timeout()))
            {
                Some(Incoming::Msg(m)) => self.handle(m, out),
                Some(Incoming::Bad(text, e)) => {
                    tracing::error!(component = %self.setup.component, task = self.setup.task, "Multilang child sent {text:?}, which is not JSON: {e}.");
                }
                Some(Incoming::TooLarge(n)) => {
                    self.too_large(n, out);
                    return;
                }
                Some(Incoming::Closed) => {
                    self.closed(out);
                    return;
                }
                None => {
                    tracing::error!(component = %self.setup.component, task = self.setup.task, timeout = ?self.config.timeout(), "Multilang child sent nothing in time; killing it.");
                    self.lost(out);
                    return;
                }
            }
        }
    }

    /// The child sent a message over `max_message_bytes`: kill it, fail what it had; the
    /// next tuple starts a new one.
    fn too_large(&mut self, size: usize, out: &mut dyn Collector) {
        tracing::error!(component = %self.setup.component, task = self.setup.task, limit = self.config.max_message_bytes, "Multilang child sent a message of more than {size} bytes, over `max_message_bytes`; killing it and failing its {} tuple(s).", self.pending.len());
        self.lost(out);
    }

    /// The child closed its stdout: reap it, log how it ended, fail what it had.
    fn closed(&mut self, out: &mut dyn Collector) {
        let status = self.child.as_mut().map(Child::reap).unwrap_or_default();
        tracing::error!(component = %self.setup.component, task = self.setup.task, "Multilang child exited ({status}); failing its {} tuple(s).", self.pending.len());
        self.lost(out);
    }

    /// The child is gone or hung: kill it and fail what it had.
    fn lost(&mut self, out: &mut dyn Collector) {
        self.heartbeat = None;
        self.hung = Arc::new(AtomicBool::new(false));
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
        let mut pending: Vec<(u64, Tuple)> = self
            .pending
            .drain()
            .map(|(id, t)| (id.parse().unwrap_or(0), t))
            .collect();
        pending.sort_by_key(|(id, _)| *id);
        for (_, t) in pending {
            out.fail(&t);
        }
        self.system.clear();
    }

    fn handle(&mut self, m: Json, out: &mut dyn Collector) {
        let command = m.get("command").and_then(Json::as_str).unwrap_or("");
        let (component, task) = (self.setup.component.as_str(), self.setup.task);
        match command {
            "sync" => {}
            "emit" => self.emit(&m, out),
            "ack" | "fail" => {
                let id = id_text(m.get("id"));
                if let Some(t) = self.pending.remove(&id) {
                    if command == "ack" {
                        out.ack(&t);
                    } else {
                        out.fail(&t);
                    }
                } else if !self.system.remove(&id) {
                    tracing::warn!(
                        component,
                        task,
                        "Multilang child sent `{command}` for unknown tuple id {id:?}."
                    );
                }
            }
            "log" => log_message(component, task, &m),
            "error" => {
                let text = m.get("msg").and_then(Json::as_str).unwrap_or("");
                tracing::error!(component, task, "Multilang child reported: {text}");
            }
            "metrics" => {
                tracing::debug!(component, task, name = %m.get("name").unwrap_or(&Json::Null), params = %m.get("params").unwrap_or(&Json::Null), "Multilang metric.");
            }
            other => {
                tracing::error!(
                    component,
                    task,
                    "Multilang child sent unknown command {other:?}: {m}."
                );
            }
        }
    }

    fn emit(&mut self, m: &Json, out: &mut dyn Collector) {
        let stream = stream_of(m).to_string();
        let anchor_ids: Vec<String> = m
            .get("anchors")
            .and_then(Json::as_array)
            .map(|a| a.iter().map(|v| id_text(Some(v))).collect())
            .unwrap_or_default();
        let anchors: Vec<&Tuple> = anchor_ids
            .iter()
            .filter_map(|id| self.pending.get(id))
            .collect();
        let direct = m
            .get("task")
            .and_then(Json::as_u64)
            .and_then(|t| TaskId::try_from(t).ok());
        // As Storm's ShellBolt: anchoring to a tuple the child no longer has (acked or
        // failed already, or never given) is an error, not an unanchored emit.
        let checked = match anchor_ids.iter().find(|id| !self.pending.contains_key(*id)) {
            Some(stale) => Err(format!(
                "it anchored an emit to tuple id {stale:?}, which it already acked or failed (or never had)"
            )),
            None => check_emit(m, &stream, direct, &self.rules),
        };
        let values = match checked {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(component = %self.setup.component, task = self.setup.task, "Multilang child emitted badly: {e}; the emit is dropped and its anchors failed.");
                let anchors: Vec<Tuple> = anchors.into_iter().cloned().collect();
                for t in &anchors {
                    out.fail(t);
                }
                for id in &anchor_ids {
                    self.pending.remove(id);
                }
                return;
            }
        };
        let tasks = out.emit(&anchors, &stream, direct, values);
        let need_ids = m
            .get("need_task_ids")
            .and_then(Json::as_bool)
            .unwrap_or(true);
        if direct.is_none() && need_ids {
            if let Some(child) = &self.child {
                child.send(&json!(tasks));
            }
        }
    }

    /// Kills the child.
    pub fn stop(&mut self) {
        self.heartbeat = None;
        self.child = None;
    }
}

impl Drop for BoltCore {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A message id as the text the protocol uses (strings as they are, numbers printed).
pub fn id_text(v: Option<&Json>) -> String {
    match v {
        Some(Json::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The values of an emit to `direct` (a task, for a direct stream), checked against the
/// declared streams.
pub fn check_emit(
    m: &Json,
    stream: &str,
    direct: Option<TaskId>,
    rules: &BTreeMap<String, StreamRule>,
) -> Result<Values, String> {
    let Some(tuple) = m.get("tuple").and_then(Json::as_array) else {
        return Err(format!("emit without a `tuple` array: {m}"));
    };
    let Some(rule) = rules.get(stream) else {
        return Err(format!(
            "stream `{stream}` is not declared in `outputs` (declared: {})",
            rules.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    };
    if rule.arity != tuple.len() {
        return Err(format!(
            "{} value(s) on stream `{stream}`, which declares {} field(s)",
            tuple.len(),
            rule.arity
        ));
    }
    match (rule.direct, direct) {
        (true, None) => {
            return Err(format!(
                "stream `{stream}` is direct, but the emit names no `task`"
            ))
        }
        (false, Some(t)) => {
            return Err(format!(
                "the emit names task {t}, but stream `{stream}` is not in `direct`"
            ))
        }
        (true, Some(t)) if !rule.targets.contains(&t) => {
            return Err(format!(
                "task {t} does not subscribe to stream `{stream}` with a direct grouping"
            ))
        }
        _ => {}
    }
    Ok(tuple.iter().cloned().map(Value::from).collect())
}

fn spawn_heartbeat(
    to_child: Sender<Vec<u8>>,
    child: &Child,
    period: Duration,
    timeout: Duration,
    hung: Arc<AtomicBool>,
    wake: Wake,
) -> Sender<()> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (last_sync, started) = child.sync_clock();
    let pid = child.pid();
    let spawned = std::thread::Builder::new()
        .name(format!("multilang-hb-{pid}"))
        .spawn(move || {
            let mut n: u64 = 0;
            loop {
                match stop_rx.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let now = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                let since = now.saturating_sub(last_sync.load(Ordering::Relaxed));
                if Duration::from_millis(since) > timeout {
                    hung.store(true, Ordering::Relaxed);
                    wake();
                    return;
                }
                n += 1;
                let beat = json!({"id": format!("-{n}"), "comp": "__system", "stream": "__heartbeat", "task": -1, "tuple": []});
                if to_child.send(frame(&beat)).is_err() {
                    return;
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(pid, "Cannot start the heartbeat thread: {e}.");
    }
    stop_tx
}

/// The `multilang` bolt.
#[derive(Debug)]
pub struct MultilangBolt {
    config: Config,
    core: Option<BoltCore>,
    tick: f64,
}

impl Bolt for MultilangBolt {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        let notifier = ctx.notifier.clone();
        let setup = Setup::from_context(ctx, &self.config);
        self.tick = ctx
            .topology
            .component(&ctx.component)
            .and_then(|(_, c)| c.tick)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut core = BoltCore::new(
            self.config.clone(),
            setup,
            Arc::new(move || notifier.notify()),
        );
        core.start()?;
        self.core = Some(core);
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let core = self
            .core
            .as_mut()
            .ok_or("the multilang bolt was not prepared")?;
        core.pump(out);
        core.send_tuple(input)?;
        out.defer();
        core.wait_for_room(out);
        Ok(())
    }

    fn tick(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if let Some(core) = self.core.as_mut() {
            core.pump(out);
            core.send_tick(self.tick)?;
        }
        Ok(())
    }

    fn wake(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if let Some(core) = self.core.as_mut() {
            core.pump(out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if let Some(core) = self.core.as_mut() {
            core.drain(out);
        }
        Ok(())
    }

    fn cleanup(&mut self) {
        self.core = None;
    }
}

/// Registers the `multilang` bolt.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "multilang",
        "Runs `command` as a child speaking Storm's multilang protocol (JSON); `outputs` declares its streams.",
        |c: &Config| c.decls(),
        |config: Config| {
            Ok(MultilangBolt {
                config,
                core: None,
                tick: 0.0,
            })
        },
    );
}

#[cfg(test)]
mod tests;
