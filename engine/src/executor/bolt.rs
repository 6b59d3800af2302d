//! The bolt executor: executes input batches, acks or fails each input, ticks, wakes,
//! and ends its stream when every upstream task has ended theirs.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select, TryRecvError};

use super::{panic_text, Output};
use crate::bridge::inbox::RemoteIn;
use crate::component::{Anchoring, Bolt, BoltOutput, Emitter, TaskContext};
use crate::metrics::worth_logging;
use crate::metrics::{FailReason, FailSample, EXECUTE_SAMPLE};
use crate::route::{AckerMsg, Inbound};
use crate::state::task::TaskCheckpoint;
use crate::state::TaskState;
use crate::stop::StopHandle;
use crate::summary::Counts;
use crate::tuple::{Anchors, MsgId, TaskId, Tuple, Values};

/// Why a bolt failed an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    Explicit,
    Panic,
}

/// The bolt's emitter: the output plus the input being executed.
pub(crate) struct BoltCore {
    pub(crate) out: Output,
    /// Acking state of the input being executed (empty outside `execute`).
    current: Anchors,
    /// Address of the input being executed, to recognize `ack`/`fail` of it.
    current_addr: usize,
    /// The input was deferred, acked or failed by the bolt during `execute`.
    handled: bool,
    /// XOR of the edge ids of children anchored to the current input when it belongs to
    /// exactly one tree: applied with the input's ack in one buffer update (Storm sends a
    /// child's creation with its anchor's ack, too).
    children: u64,
}

impl BoltCore {
    pub(crate) fn new(out: Output) -> BoltCore {
        BoltCore {
            out,
            current: Anchors::new(),
            current_addr: 0,
            handled: false,
            children: 0,
        }
    }

    /// Moves the children's creation XOR into the acker buffer (before anything that may
    /// send the input's ack separately).
    fn fold_children(&mut self) {
        if self.children != 0 {
            if let Some(&(root, _)) = self.current.first() {
                self.out.ack_xor(root, self.children);
            }
            self.children = 0;
        }
    }

    fn is_current(&self, t: &Tuple) -> bool {
        self.current_addr != 0 && std::ptr::eq(t, self.current_addr as *const Tuple)
    }

    fn fail_with(&mut self, t: &Tuple, reason: Reason) {
        for &(root, _) in &t.anchors {
            self.out.acker_msg(root, AckerMsg::Fail { root });
        }
        let c = &mut self.out.counts;
        c.failed += 1;
        let reason = match reason {
            Reason::Explicit => {
                c.failed_by.explicit += 1;
                FailReason::Explicit
            }
            Reason::Panic => {
                c.failed_by.panic += 1;
                FailReason::Panic
            }
        };
        self.out.stats.last_fail = Some(FailSample {
            msg_id: None,
            root: t.anchors.first().map(|a| a.0),
            reason,
        });
    }

    fn ack_input(&mut self, t: &Tuple) {
        for &(root, id) in &t.anchors {
            self.out.ack_xor(root, id);
        }
        self.out.counts.acked += 1;
    }
}

/// XORs `edge` into the child's id for `root`.
fn put_xor(child: &mut Anchors, root: u64, edge: u64) {
    match child.iter_mut().find(|(r, _)| *r == root) {
        Some((_, id)) => *id ^= edge,
        None => child.push((root, edge)),
    }
}

impl Emitter for BoltCore {
    fn emit(
        &mut self,
        stream: &str,
        anchors: Anchoring<'_>,
        _msg_id: Option<MsgId>,
        direct: Option<TaskId>,
        values: Values,
    ) -> &[TaskId] {
        let info = self.out.select(stream, &values, direct);
        self.out.counts.emitted += 1;
        if self.out.targets.is_empty() {
            return &[];
        }
        let untracked = !self.out.tracking
            || match anchors {
                Anchoring::None => true,
                Anchoring::Input => self.current.is_empty(),
                Anchoring::Tuples(ts) => ts.iter().all(|t| t.anchors.is_empty()),
            };
        if untracked {
            self.out
                .send_to_targets(info, values, |_, _| Anchors::new());
        } else if let Anchoring::Tuples(ts) = anchors {
            // Storm: a new edge id per anchor; the child's id in a tree is the XOR of the
            // edges of its anchors in that tree.
            self.out.send_to_targets(info, values, |out, _| {
                let mut child = Anchors::new();
                for a in ts.iter().filter(|a| !a.anchors.is_empty()) {
                    let edge = out.next_id();
                    for &(root, _) in &a.anchors {
                        put_xor(&mut child, root, edge);
                        out.ack_xor(root, edge);
                    }
                }
                child
            });
        } else if self.current.len() == 1 && !self.handled {
            let root = self.current[0].0;
            if let [to] = self.out.targets[..] {
                // The common case: one input tree, one receiver.
                let edge = self.out.next_id();
                self.children ^= edge;
                self.out
                    .push(to, values, info, Anchors::from_buf([(root, edge)]));
                return &self.out.targets;
            }
            let children = &mut self.children;
            self.out.send_to_targets(info, values, |out, _| {
                let edge = out.next_id();
                *children ^= edge;
                let mut child = Anchors::new();
                child.push((root, edge));
                child
            });
        } else {
            let current = &self.current;
            self.out.send_to_targets(info, values, |out, _| {
                let edge = out.next_id();
                let mut child = Anchors::new();
                for &(root, _) in current {
                    child.push((root, edge));
                    out.ack_xor(root, edge);
                }
                child
            });
        }
        &self.out.targets
    }

    fn ack(&mut self, tuple: &Tuple) {
        if self.is_current(tuple) {
            self.handled = true;
            self.fold_children();
        }
        self.ack_input(tuple);
    }

    fn fail(&mut self, tuple: &Tuple) {
        if self.is_current(tuple) {
            self.handled = true;
        }
        self.fail_with(tuple, Reason::Explicit);
    }

    fn defer(&mut self) {
        self.handled = true;
    }
}

/// Everything a bolt task runs with.
pub(crate) struct BoltExecutor {
    pub(crate) bolt: Box<dyn Bolt>,
    pub(crate) core: BoltCore,
    pub(crate) inbox: Receiver<Inbound>,
    /// Batches from other workers, still encoded (with peers only).
    pub(crate) remote: Option<RemoteIn>,
    /// Take from `remote` first next time (the two inboxes take turns while both have
    /// work).
    pub(crate) remote_turn: bool,
    pub(crate) ctx: TaskContext,
    /// Number of upstream tasks; the stream ends after an end-of-stream from each.
    pub(crate) upstream: usize,
    pub(crate) tick: Option<Duration>,
    pub(crate) wake: Arc<AtomicBool>,
    pub(crate) stop: StopHandle,
    pub(crate) errors: Arc<Mutex<Vec<String>>>,
    /// In a checkpointed topology: the state to restore, and where parts go.
    pub(crate) checkpoint: Option<TaskCheckpoint>,
    /// The barrier alignment in progress.
    pub(crate) align: Align,
}

/// A checkpoint's barrier alignment: the upstream tasks whose barrier arrived are held
/// (what they send next waits in `held`) until every upstream task's barrier arrived.
///
/// What is held is bounded: past [`MAX_HELD_TUPLES`] the task declines the checkpoint
/// (it fails, as Flink's alignment limit fails one) rather than buffer without end
/// behind a slow input; the next checkpoint starts afresh.
#[derive(Default)]
pub(crate) struct Align {
    /// The checkpoint being aligned.
    id: Option<u64>,
    /// The newest checkpoint this task aligned or declined: its late barriers are
    /// dropped.
    done: u64,
    /// Tuples in `held`.
    held_tuples: usize,
    /// Upstream tasks whose barrier arrived.
    arrived: Vec<TaskId>,
    started: Option<Instant>,
    /// What held upstream tasks sent meanwhile, in arrival order.
    held: std::collections::VecDeque<Inbound>,
    /// What was held, to take before the inboxes once the alignment completed.
    replay: std::collections::VecDeque<Inbound>,
}

/// Most tuples a task holds while it aligns a checkpoint's barriers (a few MiB of word
/// tuples); past it the task declines the checkpoint.
pub(crate) const MAX_HELD_TUPLES: usize = 1 << 16;

impl BoltExecutor {
    fn count_error(&mut self, what: &str, text: &str) {
        self.core.out.counts.errors += 1;
        let n = self.core.out.counts.errors;
        if worth_logging(n) {
            tracing::warn!(
                component = %self.ctx.component,
                task = self.ctx.task,
                errors = n,
                "Bolt `{what}` failed: {text}"
            );
        }
    }

    fn execute(&mut self, t: &Tuple) {
        // `current` is empty between inputs: an untracked input leaves it so. One tree
        // (the common case) is one push into the inline slot, not a `clone_from`.
        match t.anchors.as_slice() {
            [] => {}
            [a] => self.core.current.push(*a),
            more => self.core.current.extend_from_slice(more),
        }
        self.core.current_addr = t as *const Tuple as usize;
        self.core.handled = false;
        let bolt = &mut self.bolt;
        let core = &mut self.core;
        let timed = core
            .out
            .counts
            .executed
            .is_multiple_of(EXECUTE_SAMPLE)
            .then(Instant::now);
        let r = catch_unwind(AssertUnwindSafe(|| {
            bolt.execute(t, &mut BoltOutput { inner: core })
        }));
        if let Some(t0) = timed {
            self.core.out.stats.execute.record(t0.elapsed());
        }
        self.core.out.counts.executed += 1;
        let handled = self.core.handled;
        let children = std::mem::take(&mut self.core.children);
        self.core.current.clear();
        self.core.current_addr = 0;
        // Tested in place, not moved into a tuple to match on: the result was just
        // stored as three words, and reading it back as a 16-byte pair stalled on store
        // forwarding once per input.
        if !handled && matches!(r, Ok(Ok(()))) {
            match *t.anchors.as_slice() {
                [] => {
                    // Untracked: nothing to tell an acker (and no children were tracked).
                    self.core.out.counts.acked += 1;
                    return;
                }
                [(root, id)] => {
                    // The common case: one tree, one buffer update for the ack and children.
                    self.core.out.ack_xor(root, id ^ children);
                    self.core.out.counts.acked += 1;
                    return;
                }
                _ => {}
            }
        }
        self.finish_execute(t, r, handled, children);
    }

    fn finish_execute(
        &mut self,
        t: &Tuple,
        r: std::thread::Result<crate::component::Result<()>>,
        handled: bool,
        children: u64,
    ) {
        if children != 0 {
            if let Some(&(root, _)) = t.anchors.first() {
                self.core.out.ack_xor(root, children);
            }
        }
        match r {
            Ok(Ok(())) => {
                if !handled {
                    self.core.ack_input(t);
                }
            }
            Ok(Err(e)) => {
                if !handled {
                    self.core.fail_with(t, Reason::Explicit);
                }
                let n = self.core.out.counts.failed;
                if worth_logging(n) {
                    tracing::warn!(
                        component = %self.ctx.component,
                        task = self.ctx.task,
                        failed = n,
                        "Bolt failed a tuple: {e}"
                    );
                }
            }
            Err(p) => {
                if !handled {
                    self.core.fail_with(t, Reason::Panic);
                }
                let n = self.core.out.counts.failed_by.panic;
                if worth_logging(n) {
                    tracing::error!(
                        component = %self.ctx.component,
                        task = self.ctx.task,
                        panics = n,
                        "Bolt panicked executing a tuple: {}",
                        panic_text(&*p)
                    );
                }
            }
        }
    }

    /// Calls `tick`, `wake` or `finish`.
    fn call(&mut self, what: &str) {
        let bolt = &mut self.bolt;
        let core = &mut self.core;
        let r = catch_unwind(AssertUnwindSafe(|| {
            let mut out = BoltOutput { inner: core };
            match what {
                "tick" => bolt.tick(&mut out),
                "wake" => bolt.wake(&mut out),
                _ => bolt.finish(&mut out),
            }
        }));
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.count_error(what, &e.to_string()),
            Err(p) => self.count_error(what, &panic_text(&*p)),
        }
    }

    /// Executes a batch (or fails each input when `prepare` failed) and recycles it.
    #[inline]
    fn execute_batch(&mut self, mut batch: Vec<Tuple>, ok: bool) {
        let len = batch.len();
        // By reference (moving each 128-byte tuple out of the batch costs a copy), and
        // each tuple is dropped right after it ran, while it is still in L1: dropping
        // the whole batch afterwards would fetch every tuple again.
        // SAFETY: the length is 0 first, so a panic in a drop (user code's panics are
        // caught in `execute`) leaks the rest instead of dropping twice; each tuple is
        // used by reference while the batch's buffer lives, then dropped once, in place.
        unsafe {
            batch.set_len(0);
            let base = batch.as_mut_ptr();
            for i in 0..len {
                let t = base.add(i);
                if ok {
                    self.execute(&*t);
                } else {
                    self.core.out.counts.executed += 1;
                    self.core.fail_with(&*t, Reason::Explicit);
                }
                crate::tuple::drop_tuple(t);
            }
        }
        self.core.out.recycle(batch);
    }

    /// Runs the task to its end; returns its counts.
    pub(crate) fn run(mut self) -> Counts {
        let bolt = &mut self.bolt;
        let ctx = &self.ctx;
        let ok = match catch_unwind(AssertUnwindSafe(|| bolt.prepare(ctx))) {
            Ok(Ok(())) => match self.restore() {
                Ok(()) => true,
                Err(e) => self.broken(&e),
            },
            Ok(Err(e)) => self.broken(&e.to_string()),
            Err(p) => self.broken(&panic_text(&*p)),
        };
        // Upstream tasks whose stream ended: a peer that reconnects sends its ends again.
        let mut ended: Vec<TaskId> = Vec::new();
        if ok {
            if let Some(own) = self.bolt.tick_interval() {
                self.tick = Some(self.tick.map_or(own, |t| t.min(own)));
            }
        }
        let mut next_tick = self.tick.filter(|_| ok).map(|p| Instant::now() + p);
        loop {
            let Some(msg) = self.next(next_tick) else {
                break;
            };
            let busy_from = Instant::now();
            match msg {
                Some(Inbound::Batch(batch)) => {
                    self.take_batch(batch, ok);
                    // The rest of a remote batch, a chunk at a time: each chunk is decoded
                    // into the vector the last one was executed from, still in L1.
                    while let Some(r) = self.remote.as_mut().filter(|r| r.mid_batch()) {
                        let out = &mut self.core.out;
                        if let Some(Inbound::Batch(chunk)) = r.next_chunk(|| out.take_vec()) {
                            self.take_batch(chunk, ok);
                        }
                    }
                    self.core.out.flush_acks();
                }
                Some(Inbound::Barrier { from, id }) => self.on_barrier(from, id, &ended, ok),
                Some(Inbound::Eos(up))
                    if self.align.id.is_some() && self.align.arrived.contains(&up) =>
                {
                    // After its barrier: held with what it sent before.
                    self.align.held.push_back(Inbound::Eos(up));
                }
                Some(Inbound::Eos(up)) => {
                    if !ended.contains(&up) {
                        ended.push(up);
                    }
                    if let Some(id) = self.align.id {
                        self.try_complete(id, &ended, ok);
                    }
                    if ended.len() >= self.upstream {
                        if ok {
                            self.call("finish");
                        }
                        break;
                    }
                }
                Some(Inbound::Wake) | None => {}
            }
            if ok && self.wake.swap(false, Ordering::AcqRel) {
                self.call("wake");
            }
            let mut now = Instant::now();
            if let (Some(at), Some(period)) = (next_tick, self.tick) {
                if now >= at {
                    self.call("tick");
                    next_tick = Some((at + period).max(now));
                    now = Instant::now();
                }
            }
            self.core.out.stats.busy_ns += now.duration_since(busy_from).as_nanos() as u64;
            self.core.out.maybe_flush(now);
        }
        if let Some(r) = &mut self.remote {
            r.pay_all();
        }
        self.core.out.end_stream();
        let bolt = &mut self.bolt;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| bolt.cleanup())) {
            self.count_error("cleanup", &panic_text(&*p));
        }
        let now = Instant::now();
        self.core.out.flush_all(now);
        self.core.out.publish_stats(now);
        self.core.out.counts
    }

    /// Executes a batch, or holds it while its sender's barrier is aligned.
    #[inline]
    fn take_batch(&mut self, batch: Vec<Tuple>, ok: bool) {
        if self.align.id.is_some() {
            if let Some(t) = batch.first() {
                if self.align.arrived.contains(&t.source_task) {
                    self.align.held_tuples += batch.len();
                    self.align.held.push_back(Inbound::Batch(batch));
                    if self.align.held_tuples > MAX_HELD_TUPLES {
                        self.decline();
                    }
                    return;
                }
            }
        }
        self.execute_batch(batch, ok);
    }

    /// Restores the state of the checkpoint the run resumes from, if any.
    fn restore(&mut self) -> Result<(), String> {
        let Some(r) = self.checkpoint.as_ref().and_then(|c| c.restore.as_ref()) else {
            return Ok(());
        };
        let bolt = &mut self.bolt;
        match catch_unwind(AssertUnwindSafe(|| bolt.restore(r))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot restore its checkpointed state: {e}")),
            Err(p) => Err(format!(
                "panicked restoring its checkpointed state: {}",
                panic_text(&*p)
            )),
        }
    }

    /// Checkpoint `id`'s barrier arrived from upstream task `from`.
    #[cold]
    fn on_barrier(&mut self, from: TaskId, id: u64, ended: &[TaskId], ok: bool) {
        match self.align.id {
            Some(_) if self.align.arrived.contains(&from) => {
                // The next barrier of a held task: held with what it sent.
                self.align.held.push_back(Inbound::Barrier { from, id });
                return;
            }
            Some(current) if current == id => {}
            Some(current) if id < current => return,
            None if id <= self.align.done => return,
            Some(_) => {
                // A newer checkpoint while an older one aligns: the older one cannot
                // complete (its coordinator gave up on it). Release and start over.
                self.release();
                self.start_align(id);
            }
            None => self.start_align(id),
        }
        if !self.align.arrived.contains(&from) {
            self.align.arrived.push(from);
        }
        self.try_complete(id, ended, ok);
    }

    fn start_align(&mut self, id: u64) {
        self.align.id = Some(id);
        self.align.arrived.clear();
        self.align.started = Some(Instant::now());
    }

    /// Completes the alignment of checkpoint `id` once every upstream task's barrier
    /// arrived (or its stream ended): snapshots, forwards the barrier, hands the part to
    /// the writer and releases what was held.
    fn try_complete(&mut self, id: u64, ended: &[TaskId], ok: bool) {
        let gone = ended
            .iter()
            .filter(|t| !self.align.arrived.contains(t))
            .count();
        if self.align.arrived.len() + gone < self.upstream {
            return;
        }
        let alignment = self.align.started.map_or(Duration::ZERO, |s| s.elapsed());
        let state = if ok {
            let bolt = &mut self.bolt;
            let mut state = TaskState::default();
            match catch_unwind(AssertUnwindSafe(|| bolt.snapshot(&mut state))) {
                Ok(Ok(())) => Ok(state),
                Ok(Err(e)) => Err(format!(
                    "bolt `{}` task {} cannot snapshot: {e}",
                    self.ctx.component, self.ctx.task
                )),
                Err(p) => Err(format!(
                    "bolt `{}` task {} panicked in snapshot: {}",
                    self.ctx.component,
                    self.ctx.task,
                    panic_text(&*p)
                )),
            }
        } else {
            Err(format!(
                "bolt `{}` task {} did not prepare",
                self.ctx.component, self.ctx.task
            ))
        };
        self.core.out.barrier(id);
        if let Some(c) = &self.checkpoint {
            c.submit(id, state, alignment);
        }
        self.align.done = id;
        self.release();
    }

    /// Declines the checkpoint being aligned: it held more than [`MAX_HELD_TUPLES`]. The
    /// barrier goes on at once (downstream tasks stop holding too), the coordinator hears
    /// the checkpoint failed, and what was held is taken next. Barriers of it still to
    /// come are dropped.
    #[cold]
    fn decline(&mut self) {
        let Some(id) = self.align.id else {
            return;
        };
        let alignment = self.align.started.map_or(Duration::ZERO, |s| s.elapsed());
        let why = format!(
            "bolt `{}` task {} held more than {MAX_HELD_TUPLES} tuples while aligning the barriers of checkpoint {id} (an input is much slower than another): it declines the checkpoint",
            self.ctx.component, self.ctx.task
        );
        self.core.out.barrier(id);
        if let Some(c) = &self.checkpoint {
            c.submit(id, Err(why), alignment);
        }
        self.align.done = id;
        self.release();
    }

    /// Ends the alignment: what was held is taken next, before the inboxes.
    fn release(&mut self) {
        self.align.id = None;
        self.align.held_tuples = 0;
        self.align.arrived.clear();
        self.align.started = None;
        let mut held = std::mem::take(&mut self.align.held);
        held.append(&mut self.align.replay);
        self.align.replay = held;
    }

    /// The next input: `None` once the inbox is closed, `Some(None)` when there is
    /// nothing to execute (the tick is due, or what came did not decode). Flushes, and
    /// grants back what it owes, before it waits.
    #[inline]
    fn next(&mut self, next_tick: Option<Instant>) -> Option<Option<Inbound>> {
        if let Some(m) = self.align.replay.pop_front() {
            return Some(Some(m));
        }
        let Some(r) = self.remote.as_mut() else {
            return self.next_local(next_tick);
        };
        let out = &mut self.core.out;
        if std::mem::take(&mut self.remote_turn) {
            if let Ok(m) = r.try_take(|| out.take_vec()) {
                return Some(m);
            }
        }
        match self.inbox.try_recv() {
            Ok(m) => {
                self.remote_turn = true;
                return Some(Some(m));
            }
            Err(TryRecvError::Disconnected) => return None,
            Err(TryRecvError::Empty) => {}
        }
        if let Ok(m) = r.try_take(|| self.core.out.take_vec()) {
            return Some(m);
        }
        self.core.out.flush_all(Instant::now());
        r.pay_all();
        self.wait_both(next_tick)
    }

    /// [`BoltExecutor::next`] without peers: one inbox.
    #[inline]
    fn next_local(&mut self, next_tick: Option<Instant>) -> Option<Option<Inbound>> {
        match self.inbox.try_recv() {
            Ok(m) => Some(Some(m)),
            Err(TryRecvError::Disconnected) => None,
            Err(TryRecvError::Empty) => {
                self.core.out.flush_all(Instant::now());
                match next_tick {
                    Some(at) => match self.inbox.recv_deadline(at) {
                        Ok(m) => Some(Some(m)),
                        Err(RecvTimeoutError::Timeout) => Some(None),
                        Err(RecvTimeoutError::Disconnected) => None,
                    },
                    None => self.inbox.recv().ok().map(Some),
                }
            }
        }
    }

    /// Waits for either inbox (until the tick is due).
    #[cold]
    fn wait_both(&mut self, next_tick: Option<Instant>) -> Option<Option<Inbound>> {
        let Some(r) = self.remote.as_mut() else {
            return Some(None);
        };
        let mut sel = Select::new();
        let local = sel.recv(&self.inbox);
        sel.recv(&r.rx);
        let op = match next_tick {
            Some(at) => match sel.select_deadline(at) {
                Ok(op) => op,
                Err(_) => return Some(None),
            },
            None => sel.select(),
        };
        if op.index() == local {
            return op.recv(&self.inbox).ok().map(Some);
        }
        match op.recv(&r.rx) {
            Ok(b) => Some(r.take(b, || self.core.out.take_vec())),
            Err(_) => {
                // No more peers: only the local inbox is left.
                self.remote = None;
                Some(None)
            }
        }
    }

    /// `prepare` failed: record it and stop the topology; inputs are failed from now on.
    fn broken(&mut self, text: &str) -> bool {
        let message = format!(
            "bolt `{}` task {} failed to prepare: {text}",
            self.ctx.component, self.ctx.task
        );
        tracing::error!(component = %self.ctx.component, task = self.ctx.task, "{message}");
        self.core.out.counts.errors += 1;
        if let Ok(mut e) = self.errors.lock() {
            e.push(message);
        }
        self.stop.stop();
        false
    }
}
