//! The component contract: [`Spout`] and [`Bolt`], their output collectors and context.
//!
//! One required method each (`next_tuple`, `execute`); everything else has a default.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use topo_dsl::{Topology, DEFAULT_STREAM};

use crate::state::{TaskState, TaskStateReader};
use crate::tuple::{MsgId, TaskId, Tuple, Values};

/// The error user code returns. Anything that implements `std::error::Error` converts
/// with `?`, and so does a `&str` or `String`.
pub type Error = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with the component [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a spout's `next_tuple` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// It may have emitted; call again right away.
    Ready,
    /// Nothing to emit now; the executor backs off briefly before calling again.
    Idle,
    /// No more input, ever (a bounded source at its end). The executor still delivers
    /// `ack`/`fail` and calls `next_tuple` again after a `fail`, so that a spout can replay.
    Done,
}

/// A source of tuples.
pub trait Spout: Send + 'static {
    /// Called once on the executor thread before the first `next_tuple`.
    fn open(&mut self, _ctx: &TaskContext) -> Result<()> {
        Ok(())
    }

    /// Emits zero or more tuples. Never block here for long: acks, fails and shutdown are
    /// handled on the same thread between calls.
    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll>;

    /// The tree of the message emitted with `id` was fully processed.
    fn ack(&mut self, _id: MsgId) {}

    /// The tree of the message emitted with `id` failed or timed out; emit it again to
    /// replay it.
    fn fail(&mut self, _id: MsgId) {}

    /// The topology was activated: `next_tuple` will be called.
    fn activate(&mut self) {}

    /// The topology was deactivated: `next_tuple` will not be called until `activate`.
    fn deactivate(&mut self) {}

    /// Called once when the task stops.
    fn close(&mut self) {}

    /// Where the spout is in its input, for a checkpoint: replaying from here (after
    /// [`Spout::seek`]) emits exactly what it would have emitted after this call. `None`
    /// (the default): the spout cannot rewind, and a checkpointed topology refuses it
    /// (register the type with [`crate::Registry::rewinds`] when it can).
    fn position(&mut self) -> Option<Vec<u8>> {
        None
    }

    /// Goes back to a position [`Spout::position`] returned, after `open` and before the
    /// first `next_tuple` of a run restored from a checkpoint. Whatever the spout kept for
    /// replay is forgotten: the checkpoint's state holds its effects.
    fn seek(&mut self, _position: &[u8]) -> Result<()> {
        Err("this spout cannot rewind".into())
    }
}

/// A processor of tuples.
pub trait Bolt: Send + 'static {
    /// Called once on the executor thread before the first `execute`.
    fn prepare(&mut self, _ctx: &TaskContext) -> Result<()> {
        Ok(())
    }

    /// Processes one input. `Ok` acks it (unless the bolt called [`BoltOutput::defer`]) and
    /// anchors what was emitted to it; `Err` fails its tree. A panic is caught and fails it.
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()>;

    /// Called every `tick_secs` seconds when the component sets it, or every
    /// [`Bolt::tick_interval`].
    fn tick(&mut self, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }

    /// A tick period the bolt needs by itself (a windowed bolt's watermark interval),
    /// read once after `prepare`; with the component's `tick_secs` too, the shorter wins.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// Called after [`Notifier::notify`] was called from another thread: lets a bolt that
    /// waits on something else (a child process, a socket) emit, ack and fail.
    fn wake(&mut self, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }

    /// Called once when every upstream task has finished (a bounded topology's end):
    /// the last chance to emit, for bolts that emit on completion.
    fn finish(&mut self, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }

    /// Called once when the task stops.
    fn cleanup(&mut self) {}

    /// Writes the task's state into a checkpoint (see [`crate::state`]): called between
    /// two inputs, once the checkpoint's barrier arrived on every input. Keep it short:
    /// copy or serialise, never wait. Stateless bolts keep the default.
    fn snapshot(&mut self, _state: &mut TaskState) -> Result<()> {
        Ok(())
    }

    /// Restores the state of the last committed checkpoint: in a checkpointed topology,
    /// called after `prepare` and before the first input, with the key groups this task
    /// owns (after a rescale, others than the task had when it wrote them). A run that
    /// starts afresh (no checkpoint to resume from) restores an empty state.
    fn restore(&mut self, _state: &TaskStateReader) -> Result<()> {
        Ok(())
    }
}

/// Wakes an executor from another thread, so it calls its bolt's `wake` (or, for a spout,
/// `next_tuple`) soon.
#[derive(Clone)]
pub struct Notifier(pub(crate) Arc<dyn Fn() + Send + Sync>);

impl Notifier {
    /// Asks the executor to call `wake` soon. Cheap; calls may coalesce.
    pub fn notify(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notifier")
    }
}

/// What a task knows about itself and its topology.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// The topology.
    pub topology: Arc<Topology>,
    /// This component's id.
    pub component: String,
    /// This task's id (unique in the topology).
    pub task: TaskId,
    /// This task's index among its component's tasks, from 0.
    pub task_index: usize,
    /// Every task id of every component, by component index: `component_tasks[c]`.
    pub component_tasks: Arc<Vec<Vec<TaskId>>>,
    /// Index of the worker this task runs in.
    pub worker: usize,
    /// Folder that relative paths in the component's config resolve against (the
    /// topology file's folder).
    pub base_dir: PathBuf,
    /// Wakes this task's executor from another thread.
    pub notifier: Notifier,
}

impl TaskContext {
    /// Resolves a path from the component's config against [`TaskContext::base_dir`].
    pub fn resolve(&self, path: impl AsRef<Path>) -> PathBuf {
        self.base_dir.join(path)
    }

    /// The task ids of component `id`.
    pub fn tasks_of(&self, id: &str) -> &[TaskId] {
        self.topology
            .component(id)
            .map_or(&[], |(i, _)| &self.component_tasks[i])
    }
}

/// How an executor turns emits into routed tuples. Implemented by the engine's executors;
/// components see only [`SpoutOutput`] and [`BoltOutput`].
pub(crate) trait Emitter {
    /// Emits `values` on `stream`. `anchors`: `None` for a spout or an unanchored bolt
    /// emit; for a bolt, the tuples to anchor to. `msg_id`: a spout's message id.
    /// `direct`: the task for a direct stream. Returns the task ids it went to.
    fn emit(
        &mut self,
        stream: &str,
        anchors: Anchoring<'_>,
        msg_id: Option<MsgId>,
        direct: Option<TaskId>,
        values: Values,
    ) -> &[TaskId];

    /// Acks a tuple the bolt deferred.
    fn ack(&mut self, tuple: &Tuple);

    /// Fails a tuple's tree.
    fn fail(&mut self, tuple: &Tuple);

    /// Keeps the current input from being acked when `execute` returns.
    fn defer(&mut self);
}

/// What a bolt's emit is anchored to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Anchoring<'a> {
    /// Not anchored (spouts, unanchored bolt emits).
    None,
    /// The input being executed, if any.
    Input,
    /// These tuples.
    #[allow(dead_code)]
    Tuples(&'a [&'a Tuple]),
}

/// A spout's collector.
pub struct SpoutOutput<'a> {
    pub(crate) inner: &'a mut dyn Emitter,
}

impl SpoutOutput<'_> {
    /// Emits an untracked tuple on the default stream.
    pub fn emit(&mut self, values: impl Into<Values>) {
        self.inner
            .emit(DEFAULT_STREAM, Anchoring::None, None, None, values.into());
    }

    /// Emits a tracked tuple on the default stream; the spout gets `ack(id)` or `fail(id)`.
    /// With acking off it is untracked.
    pub fn emit_id(&mut self, id: MsgId, values: impl Into<Values>) {
        self.inner.emit(
            DEFAULT_STREAM,
            Anchoring::None,
            Some(id),
            None,
            values.into(),
        );
    }

    /// Emits on a named stream, tracked when `id` is given. Returns the receiving tasks.
    ///
    /// # Panics
    /// When the component does not declare `stream`, or the values do not match its fields.
    pub fn emit_to(
        &mut self,
        stream: &str,
        id: Option<MsgId>,
        values: impl Into<Values>,
    ) -> &[TaskId] {
        self.inner
            .emit(stream, Anchoring::None, id, None, values.into())
    }

    /// Emits to one task on a direct stream.
    pub fn emit_direct(
        &mut self,
        task: TaskId,
        stream: &str,
        id: Option<MsgId>,
        values: impl Into<Values>,
    ) {
        self.inner
            .emit(stream, Anchoring::None, id, Some(task), values.into());
    }
}

/// A bolt's collector.
pub struct BoltOutput<'a> {
    pub(crate) inner: &'a mut dyn Emitter,
}

impl BoltOutput<'_> {
    /// Emits on the default stream, anchored to the input being executed.
    pub fn emit(&mut self, values: impl Into<Values>) {
        self.inner
            .emit(DEFAULT_STREAM, Anchoring::Input, None, None, values.into());
    }

    /// Emits on a named stream, anchored to the input. Returns the receiving tasks.
    ///
    /// # Panics
    /// When the component does not declare `stream`, or the values do not match its fields.
    pub fn emit_to(&mut self, stream: &str, values: impl Into<Values>) -> &[TaskId] {
        self.inner
            .emit(stream, Anchoring::Input, None, None, values.into())
    }

    /// Emits on a stream without anchoring: a failure downstream will not replay it.
    pub fn emit_unanchored(&mut self, stream: &str, values: impl Into<Values>) -> &[TaskId] {
        self.inner
            .emit(stream, Anchoring::None, None, None, values.into())
    }

    /// Emits on a stream anchored to the given tuples (several anchors make a DAG).
    pub fn emit_anchored(
        &mut self,
        anchors: &[&Tuple],
        stream: &str,
        values: impl Into<Values>,
    ) -> &[TaskId] {
        self.inner.emit(
            stream,
            Anchoring::Tuples(anchors),
            None,
            None,
            values.into(),
        )
    }

    /// Emits to one task on a direct stream, anchored to `anchors` (or to the input when
    /// `anchors` is `None`).
    pub fn emit_direct(
        &mut self,
        task: TaskId,
        stream: &str,
        anchors: Option<&[&Tuple]>,
        values: impl Into<Values>,
    ) {
        let anchoring = anchors.map_or(Anchoring::Input, Anchoring::Tuples);
        self.inner
            .emit(stream, anchoring, None, Some(task), values.into());
    }

    /// Don't ack the current input when `execute` returns: the bolt keeps a clone of it
    /// and calls [`BoltOutput::ack`] or [`BoltOutput::fail`] later.
    pub fn defer(&mut self) {
        self.inner.defer();
    }

    /// Acks a tuple whose ack was deferred.
    pub fn ack(&mut self, tuple: &Tuple) {
        self.inner.ack(tuple);
    }

    /// Fails a tuple's tree now (faster replay than a timeout).
    pub fn fail(&mut self, tuple: &Tuple) {
        self.inner.fail(tuple);
    }
}
