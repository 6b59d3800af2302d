//! The spout executor: calls `next_tuple`, tracks pending trees, delivers acks and fails.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use smallvec::SmallVec;

use super::{panic_text, Output};
use crate::acker::IdMap;
use crate::component::{Anchoring, Emitter, Poll, Spout, SpoutOutput, TaskContext};
use crate::metrics::worth_logging;
use crate::metrics::{FailReason, FailSample};
use crate::route::{AckerMsg, SpoutMsg};
use crate::state::task::TaskCheckpoint;
use crate::state::TaskState;
use crate::stop::StopHandle;
use crate::summary::{Counts, Histogram};
use crate::tuple::{Anchors, MsgId, TaskId, Tuple, Values};

/// The trees a spout task emitted that are neither acked nor failed yet.
#[derive(Default)]
struct Pending {
    /// Root -> (message id, deadline).
    map: IdMap<(MsgId, Instant)>,
    /// (deadline, root) in emit order; entries of trees already done are skipped.
    order: VecDeque<(Instant, u64)>,
}

impl Pending {
    fn insert(&mut self, root: u64, id: MsgId, deadline: Instant) {
        self.map.insert(root, (id, deadline));
        self.order.push_back((deadline, root));
    }

    /// Removes a tree; returns its message id and deadline.
    fn remove(&mut self, root: u64) -> Option<(MsgId, Instant)> {
        let id = self.map.remove(&root)?;
        if self.order.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.order.retain(|(_, r)| map.contains_key(r));
        }
        Some(id)
    }

    /// Removes the trees whose deadline passed; returns their message ids.
    fn expire(&mut self, now: Instant, out: &mut Vec<MsgId>) {
        while let Some(&(deadline, root)) = self.order.front() {
            if deadline > now {
                break;
            }
            self.order.pop_front();
            if let Some((id, _)) = self.map.remove(&root) {
                out.push(id);
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|e| e.0)
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// The spout's emitter: the output plus the pending trees.
pub(crate) struct SpoutCore {
    pub(crate) out: Output,
    pending: Pending,
    /// Message ids to ack right away (no receivers, or acking off).
    ack_now: Vec<MsgId>,
    now: Instant,
    timeout: Duration,
}

impl SpoutCore {
    pub(crate) fn new(out: Output, timeout: Duration) -> SpoutCore {
        SpoutCore {
            out,
            pending: Pending::default(),
            ack_now: Vec::new(),
            now: Instant::now(),
            timeout,
        }
    }
}

impl Emitter for SpoutCore {
    fn emit(
        &mut self,
        stream: &str,
        _anchors: Anchoring<'_>,
        msg_id: Option<MsgId>,
        direct: Option<TaskId>,
        values: Values,
    ) -> &[TaskId] {
        let info = self.out.select(stream, &values, direct);
        self.out.counts.emitted += 1;
        let n = self.out.targets.len();
        match msg_id {
            Some(id) if n == 1 && self.out.tracking => {
                // The common case: one receiver, one edge.
                let root = self.out.next_root();
                let edge = self.out.next_id();
                let spout = self.out.task;
                self.out.acker_msg(
                    root,
                    AckerMsg::Init {
                        root,
                        xor: edge,
                        spout,
                    },
                );
                self.pending.insert(root, id, self.now + self.timeout);
                let to = self.out.targets[0];
                self.out
                    .push(to, values, info, Anchors::from_buf([(root, edge)]));
            }
            Some(id) if n > 0 && self.out.tracking => {
                let root = self.out.next_root();
                let mut edges: SmallVec<[u64; 8]> = SmallVec::with_capacity(n);
                let mut xor = 0;
                for _ in 0..n {
                    let e = self.out.next_id();
                    xor ^= e;
                    edges.push(e);
                }
                // The init goes to the acker buffer first: it is flushed before the data.
                let spout = self.out.task;
                self.out
                    .acker_msg(root, AckerMsg::Init { root, xor, spout });
                self.pending.insert(root, id, self.now + self.timeout);
                self.out.send_to_targets(info, values, |_, k| {
                    let mut a = Anchors::new();
                    a.push((root, edges[k]));
                    a
                });
            }
            Some(id) => {
                // Nobody receives it, or nothing tracks it: it is done now (Storm acks
                // right after the emit when there are no ackers).
                self.ack_now.push(id);
                self.out
                    .send_to_targets(info, values, |_, _| Anchors::new());
            }
            None => self
                .out
                .send_to_targets(info, values, |_, _| Anchors::new()),
        }
        &self.out.targets
    }

    fn ack(&mut self, _tuple: &Tuple) {}

    fn fail(&mut self, _tuple: &Tuple) {}

    fn defer(&mut self) {}
}

/// Everything a spout task runs with.
pub(crate) struct SpoutExecutor {
    pub(crate) spout: Box<dyn Spout>,
    pub(crate) core: SpoutCore,
    pub(crate) ctl: Receiver<SpoutMsg>,
    pub(crate) ctx: TaskContext,
    pub(crate) max_pending: Option<usize>,
    pub(crate) stop: StopHandle,
    pub(crate) errors: Arc<Mutex<Vec<String>>>,
    /// Complete latencies, handed over when the task ends.
    pub(crate) latency_out: Arc<Mutex<Histogram>>,
    /// Set: when done with no pending trees, raise the flag and wait for a stop.
    pub(crate) hold: Option<Hold>,
    /// In a checkpointed topology: the position to seek to, and where parts go.
    pub(crate) checkpoint: Option<TaskCheckpoint>,
}

/// A spout's "done, waiting for a stop" flag, and a doorbell rung when it changes (so
/// whoever decides the end learns it at once, not at its next poll).
#[derive(Clone)]
pub(crate) struct Hold {
    pub(crate) flag: Arc<AtomicBool>,
    pub(crate) changed: Sender<()>,
}

impl Hold {
    fn set(&self, done: bool) {
        if self.flag.swap(done, Ordering::AcqRel) != done {
            // Full: a ring is already pending, which is all the reader needs.
            let _ = self.changed.try_send(());
        }
    }
}

struct State {
    active: bool,
    stopping: bool,
    done: bool,
}

/// Calls of `next_tuple` after the first between two rounds of housekeeping, while the
/// spout emits and has room. Its emits carry the clock read before the first call (a
/// timeout's deadline is that much earlier: microseconds).
const BURST: u32 = 7;

/// How long an idle spout waits before calling `next_tuple` again (unless woken).
const IDLE_WAIT: Duration = Duration::from_millis(1);

/// Longest wait for control messages when nothing else is due.
const MAX_WAIT: Duration = Duration::from_millis(100);

impl SpoutExecutor {
    fn count_error(&mut self, what: &str, text: &str) {
        self.core.out.counts.errors += 1;
        let n = self.core.out.counts.errors;
        if worth_logging(n) {
            tracing::warn!(
                component = %self.ctx.component,
                task = self.ctx.task,
                errors = n,
                "Spout `{what}` failed: {text}"
            );
        }
    }

    fn call_ack(&mut self, id: MsgId) {
        let spout = &mut self.spout;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| spout.ack(id))) {
            self.count_error("ack", &panic_text(&*p));
        }
    }

    fn call_fail(&mut self, id: MsgId, st: &mut State) {
        st.done = false;
        let spout = &mut self.spout;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| spout.fail(id))) {
            self.count_error("fail", &panic_text(&*p));
        }
    }

    fn set_active(&mut self, on: bool, st: &mut State) {
        if st.active == on {
            return;
        }
        st.active = on;
        let spout = &mut self.spout;
        let r = catch_unwind(AssertUnwindSafe(|| {
            if on {
                spout.activate()
            } else {
                spout.deactivate()
            }
        }));
        if let Err(p) = r {
            self.count_error(if on { "activate" } else { "deactivate" }, &panic_text(&*p));
        }
    }

    fn handle(&mut self, msg: SpoutMsg, st: &mut State) {
        match msg {
            SpoutMsg::Acked(roots) => {
                let now = Instant::now();
                for r in roots {
                    if let Some((id, deadline)) = self.core.pending.remove(r) {
                        self.core.out.counts.acked += 1;
                        let emitted = deadline.checked_sub(self.core.timeout);
                        if let Some(e) = emitted {
                            let took = now.saturating_duration_since(e);
                            self.core.out.stats.complete.record(took);
                        }
                        self.call_ack(id);
                    }
                }
            }
            SpoutMsg::Failed(roots) => {
                for r in roots {
                    if let Some((id, _)) = self.core.pending.remove(r) {
                        self.core.out.counts.failed += 1;
                        self.core.out.counts.failed_by.explicit += 1;
                        self.core.out.stats.last_fail = Some(FailSample {
                            msg_id: Some(id),
                            root: Some(r),
                            reason: FailReason::Explicit,
                        });
                        self.call_fail(id, st);
                    }
                }
            }
            SpoutMsg::PeerLost(at) => {
                // Deadlines are emit times plus the timeout, in emit order: the trees
                // emitted until `at` are the front of the queue.
                let mut lost = Vec::new();
                if let Some(cutoff) = at.checked_add(self.core.timeout) {
                    self.core.pending.expire(cutoff, &mut lost);
                }
                if !lost.is_empty() {
                    tracing::info!(
                        component = %self.ctx.component,
                        task = self.ctx.task,
                        trees = lost.len(),
                        "A worker was lost; replaying the trees that may have gone through it."
                    );
                }
                for id in lost {
                    self.core.out.counts.failed += 1;
                    self.core.out.counts.failed_by.worker_lost += 1;
                    self.core.out.stats.last_fail = Some(FailSample {
                        msg_id: Some(id),
                        root: None,
                        reason: FailReason::WorkerLost,
                    });
                    self.call_fail(id, st);
                }
            }
            SpoutMsg::Activate if !st.stopping => self.set_active(true, st),
            SpoutMsg::Activate => {}
            SpoutMsg::Deactivate => self.set_active(false, st),
            SpoutMsg::Stop => {
                st.stopping = true;
                self.set_active(false, st);
            }
            SpoutMsg::Wake => {}
            SpoutMsg::Checkpoint(id) => self.checkpoint(id),
        }
    }

    /// Checkpoint `id`: records the position, then sends the barrier after everything
    /// emitted so far, and hands the part to the writer.
    fn checkpoint(&mut self, id: u64) {
        let Some(c) = &self.checkpoint else { return };
        let spout = &mut self.spout;
        let state = match catch_unwind(AssertUnwindSafe(|| spout.position())) {
            Ok(Some(position)) => Ok(TaskState {
                position: Some(position),
                ..TaskState::default()
            }),
            Ok(None) => Err(format!(
                "spout `{}` cannot tell its position",
                self.ctx.component
            )),
            Err(p) => Err(format!(
                "spout `{}` panicked telling its position: {}",
                self.ctx.component,
                panic_text(&*p)
            )),
        };
        self.core.out.barrier(id);
        c.submit(id, state, Duration::ZERO);
    }

    /// Seeks to the position of the checkpoint the run resumes from, if any.
    fn seek(&mut self) -> Result<(), String> {
        let Some(position) = self
            .checkpoint
            .as_ref()
            .and_then(|c| c.restore.as_ref())
            .and_then(|r| r.position())
        else {
            return Ok(());
        };
        let position = position.to_vec();
        let spout = &mut self.spout;
        match catch_unwind(AssertUnwindSafe(|| spout.seek(&position))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot seek to its checkpointed position: {e}")),
            Err(p) => Err(format!(
                "panicked seeking to its checkpointed position: {}",
                panic_text(&*p)
            )),
        }
    }

    /// Calls `next_tuple` once; true when the spout had nothing (or failed).
    fn next_tuple(&mut self, st: &mut State) -> bool {
        let spout = &mut self.spout;
        let core = &mut self.core;
        let r = catch_unwind(AssertUnwindSafe(|| {
            spout.next_tuple(&mut SpoutOutput { inner: core })
        }));
        match r {
            Ok(Ok(Poll::Ready)) => false,
            Ok(Ok(Poll::Idle)) => true,
            Ok(Ok(Poll::Done)) => {
                st.done = true;
                false
            }
            Ok(Err(e)) => {
                self.count_error("next_tuple", &e.to_string());
                true
            }
            Err(p) => {
                self.count_error("next_tuple", &panic_text(&*p));
                true
            }
        }
    }

    /// Fewer trees pending than `max_spout_pending` allows.
    fn has_room(&self) -> bool {
        self.max_pending.is_none_or(|m| self.core.pending.len() < m)
    }

    /// Runs the task to its end; returns its counts.
    pub(crate) fn run(mut self) -> Counts {
        let mut st = State {
            active: false,
            stopping: false,
            done: false,
        };
        self.core.out.busy_is_wall = true;
        let spout = &mut self.spout;
        let ctx = &self.ctx;
        match catch_unwind(AssertUnwindSafe(|| spout.open(ctx))) {
            Ok(Ok(())) => match self.seek() {
                Ok(()) => self.set_active(true, &mut st),
                Err(e) => self.broken(&e),
            },
            Ok(Err(e)) => self.broken(&e.to_string()),
            Err(p) => self.broken(&panic_text(&*p)),
        }
        let mut expired = Vec::new();
        loop {
            let now = Instant::now();
            self.core.now = now;
            while let Ok(msg) = self.ctl.try_recv() {
                self.handle(msg, &mut st);
            }
            for id in std::mem::take(&mut self.core.ack_now) {
                self.core.out.counts.acked += 1;
                self.call_ack(id);
            }
            self.core.pending.expire(now, &mut expired);
            for id in expired.drain(..) {
                self.core.out.counts.failed += 1;
                self.core.out.counts.failed_by.timeout += 1;
                self.core.out.stats.last_fail = Some(FailSample {
                    msg_id: Some(id),
                    root: None,
                    reason: FailReason::Timeout,
                });
                self.call_fail(id, &mut st);
            }
            let pending = self.core.pending.len();
            self.core.out.stats.pending = pending as u64;
            let idle_done = st.done && pending == 0 && self.core.ack_now.is_empty();
            if let Some(h) = &self.hold {
                h.set(idle_done);
            }
            if (st.stopping || (idle_done && self.hold.is_none()))
                && pending == 0
                && self.core.ack_now.is_empty()
            {
                break;
            }
            let room = self.has_room();
            if st.active && !st.done && room {
                let mut idle = self.next_tuple(&mut st);
                // A few more calls while the spout has tuples and room, before the
                // housekeeping above (the clock, control messages, timeouts), which
                // otherwise costs about as much as emitting a short sentence.
                let mut more = BURST;
                while !idle && !st.done && more > 0 && self.has_room() {
                    idle = self.next_tuple(&mut st);
                    more -= 1;
                }
                if idle {
                    self.core.out.flush_all(now);
                    let waiting = Instant::now();
                    let msg = self.ctl.recv_timeout(IDLE_WAIT);
                    self.core.out.stats.waited_ns += waiting.elapsed().as_nanos() as u64;
                    if let Ok(msg) = msg {
                        self.handle(msg, &mut st);
                    }
                } else {
                    self.core.out.maybe_flush(now);
                }
            } else {
                self.core.out.flush_all(now);
                let wait = self
                    .core
                    .pending
                    .next_deadline()
                    .map_or(MAX_WAIT, |d| d.saturating_duration_since(now))
                    .min(MAX_WAIT);
                let msg = self.ctl.recv_timeout(wait);
                self.core.out.stats.waited_ns += now.elapsed().as_nanos() as u64;
                match msg {
                    Ok(msg) => self.handle(msg, &mut st),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => st.stopping = true,
                }
            }
        }
        self.core.out.end_stream();
        let spout = &mut self.spout;
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| spout.close())) {
            self.count_error("close", &panic_text(&*p));
        }
        let now = Instant::now();
        self.core.out.stats.pending = self.core.pending.len() as u64;
        self.core.out.flush_all(now);
        self.core.out.publish_stats(now);
        if let Ok(mut h) = self.latency_out.lock() {
            h.merge(&self.core.out.stats.complete);
        }
        self.core.out.counts
    }

    /// `open` failed: record it, stop the topology, and end this task's stream.
    fn broken(&mut self, text: &str) {
        let message = format!(
            "spout `{}` task {} failed to open: {text}",
            self.ctx.component, self.ctx.task
        );
        tracing::error!(component = %self.ctx.component, task = self.ctx.task, "{message}");
        self.core.out.counts.errors += 1;
        if let Ok(mut e) = self.errors.lock() {
            e.push(message);
        }
        self.stop.stop();
    }
}
