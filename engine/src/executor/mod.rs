//! Executors: one thread per task running its user code, and the output machinery they
//! share — stream lookup, grouping, per-destination batches and the acker buffer.
//!
//! An executor never sends one tuple at a time: it keeps one outgoing batch per
//! destination task and sends it when full, before it blocks (waiting for input, for
//! `max_spout_pending`, on an idle spout) and at least every flush interval. Acker
//! messages are coalesced per tree root during a batch and always sent before (or with)
//! the data that carries the children they announce, so an acker never sees a child's
//! ack before its creation from the same sender.

pub(crate) mod acker;
pub(crate) mod bolt;
pub(crate) mod spout;

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use rand::rngs::SmallRng;
use rand::Rng;
use topo_dsl::DEFAULT_STREAM;

use crate::grouping::Router;
use crate::metrics::{worth_logging, TaskStats, PUBLISH_EVERY};
use crate::route::{AckerIn, AckerMsg, Gone, Inbound, Route};
use crate::summary::{Counts, SharedCounts};
use crate::tap::{TapSink, TapSlot};
use crate::tuple::{clear_batch, push_in_place, Anchors, StreamInfo, TaskId, Tuple, Values};

/// One declared output stream of a task and its subscriptions.
pub(crate) struct StreamOut {
    pub(crate) name: String,
    pub(crate) info: &'static StreamInfo,
    pub(crate) direct: bool,
    pub(crate) routers: Vec<Router>,
}

/// Empty batch vectors, shared by a worker's executors so a batch is not an allocation.
#[derive(Clone)]
pub(crate) struct Pool {
    tx: Sender<Vec<Tuple>>,
    rx: Receiver<Vec<Tuple>>,
}

impl Pool {
    pub(crate) fn new(capacity: usize) -> Pool {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        Pool { tx, rx }
    }
}

struct Dest {
    id: TaskId,
    buf: Vec<Tuple>,
    /// Tuples that fill a batch to this destination.
    limit: usize,
    route: Route<Inbound>,
}

/// A batch to a task of another worker holds this many times the batch size: it leaves
/// as one encoded frame (a few bytes per tuple), and each frame costs wake-ups on both
/// sides (the I/O threads, the receiving task) that larger frames amortize. Its buffer
/// grows to that size only when the destination is used.
pub(crate) const REMOTE_BATCH_FACTOR: usize = 4;

/// Messages for one acker task, in the order they arose.
#[derive(Default)]
struct AckBuf {
    msgs: Vec<AckerMsg>,
}

/// Everything an [`Output`] needs, built by the runtime for one task.
pub(crate) struct OutputSpec {
    pub(crate) task: TaskId,
    pub(crate) component: String,
    pub(crate) streams: Vec<StreamOut>,
    pub(crate) dests: Vec<(TaskId, Route<Inbound>)>,
    /// Acker routes in acker order; empty with acking off.
    pub(crate) ackers: Vec<(TaskId, Route<AckerIn>)>,
    pub(crate) tracking: bool,
    pub(crate) batch: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) pool: Pool,
    pub(crate) shared: Arc<SharedCounts>,
    pub(crate) stats: Arc<Mutex<TaskStats>>,
    pub(crate) tap: Arc<TapSlot>,
}

/// A task's side of emitting: routing, batching, acker buffers, counters.
pub(crate) struct Output {
    pub(crate) task: TaskId,
    pub(crate) component: String,
    streams: Vec<StreamOut>,
    /// Task id -> index into `dests`.
    slots: Vec<u32>,
    dests: Vec<Dest>,
    /// Index in `streams` of the default stream, if declared.
    default: Option<usize>,
    /// Index in `streams` of the last non-default stream emitted on.
    last: usize,
    /// The tasks the last emit went to (a `Vec`: clearing and pushing are cheaper than
    /// a `SmallVec`'s, and its capacity is kept).
    pub(crate) targets: Vec<TaskId>,
    /// Acking on with at least one acker: tuples get ids.
    pub(crate) tracking: bool,
    ackers: Vec<(TaskId, Route<AckerIn>)>,
    acks: Vec<AckBuf>,
    /// Indexes in `acks` of the ackers in this worker: new roots are chosen so that one of
    /// them tracks the tree (see [`Output::next_root`]).
    local_acks: Vec<u32>,
    acks_dirty: bool,
    /// The XOR being accumulated for tree `xor_root` (consecutive updates mostly share a
    /// root: the words of one sentence), queued as one message when the root changes or
    /// at the next flush.
    xor_root: u64,
    xor_acc: u64,
    pub(crate) rng: SmallRng,
    batch: usize,
    flush_interval: Duration,
    last_flush: Instant,
    pool: Pool,
    spare: Vec<Vec<Tuple>>,
    pub(crate) counts: Counts,
    shared: Arc<SharedCounts>,
    /// Latencies, busy time and the last failure, handed over every `PUBLISH_EVERY`.
    pub(crate) stats: TaskStats,
    stats_out: Arc<Mutex<TaskStats>>,
    last_stats: Instant,
    created: Instant,
    /// Busy time is the time not spent waiting (spouts), not measured calls (bolts).
    pub(crate) busy_is_wall: bool,
    /// Batches a route refused (their receiver is gone).
    dropped: u64,
    /// This task's tap switch, loaded once per flush into `tap`.
    tap_slot: Arc<TapSlot>,
    /// Where emits go while a tap is attached (almost always `None`).
    tap: Option<TapSink>,
}

const NO_SLOT: u32 = u32::MAX;

impl Output {
    pub(crate) fn new(spec: OutputSpec) -> Output {
        let max = spec.dests.iter().map(|d| d.0).max().unwrap_or(0) as usize;
        let mut slots = vec![NO_SLOT; max + 1];
        let dests: Vec<Dest> = spec
            .dests
            .into_iter()
            .enumerate()
            .map(|(i, (id, route))| {
                slots[id as usize] = i as u32;
                let (buf, limit) = match route {
                    Route::Local(_) => (Vec::with_capacity(spec.batch), spec.batch),
                    Route::Remote(_) => (Vec::new(), spec.batch * REMOTE_BATCH_FACTOR),
                };
                Dest {
                    id,
                    buf,
                    limit: limit.max(1),
                    route,
                }
            })
            .collect();
        let default = spec.streams.iter().position(|s| s.name == DEFAULT_STREAM);
        Output {
            task: spec.task,
            component: spec.component,
            streams: spec.streams,
            slots,
            dests,
            default,
            last: 0,
            targets: Vec::with_capacity(8),
            tracking: spec.tracking && !spec.ackers.is_empty(),
            acks: spec.ackers.iter().map(|_| AckBuf::default()).collect(),
            local_acks: (0..spec.ackers.len() as u32)
                .filter(|&i| matches!(spec.ackers[i as usize].1, Route::Local(_)))
                .collect(),
            ackers: spec.ackers,
            acks_dirty: false,
            xor_root: 0,
            xor_acc: 0,
            rng: rand::make_rng(),
            batch: spec.batch.max(1),
            flush_interval: spec.flush_interval,
            last_flush: Instant::now(),
            pool: spec.pool,
            spare: Vec::new(),
            counts: Counts::default(),
            shared: spec.shared,
            stats: TaskStats::default(),
            stats_out: spec.stats,
            last_stats: Instant::now(),
            created: Instant::now(),
            busy_is_wall: false,
            dropped: 0,
            tap_slot: spec.tap,
            tap: None,
        }
    }

    /// Finds `stream`, checks the values against its fields and routes them into
    /// `self.targets`. Panics (caught around user code) on a contract violation.
    ///
    /// Inlined into each emit: the common case (right arity, not direct, one
    /// subscription) is a few compares and one router; the rest is out of line.
    #[inline(always)]
    pub(crate) fn select(
        &mut self,
        stream: &str,
        values: &Values,
        direct: Option<TaskId>,
    ) -> &'static StreamInfo {
        let i = self.stream_index(stream);
        let s = &mut self.streams[i];
        match s.routers.as_mut_slice() {
            [r] if direct.is_none() && !s.direct && values.len() == s.info.fields.len() => {
                self.targets.clear();
                r.route(values, None, &mut self.targets);
                s.info
            }
            _ => self.select_slow(i, stream, values, direct),
        }
    }

    /// [`Output::select`] for any stream: several or no subscriptions, direct emits,
    /// contract violations.
    #[inline(never)]
    fn select_slow(
        &mut self,
        i: usize,
        stream: &str,
        values: &Values,
        direct: Option<TaskId>,
    ) -> &'static StreamInfo {
        let Output {
            streams,
            targets,
            component,
            ..
        } = self;
        let s = &mut streams[i];
        if values.len() != s.info.fields.len() {
            wrong_arity(component, stream, values.len(), &s.info.fields);
        }
        if s.direct != direct.is_some() {
            wrong_direct(component, stream, direct);
        }
        targets.clear();
        for r in &mut s.routers {
            r.route(values, direct, targets);
        }
        if let (Some(t), true) = (direct, targets.is_empty() && !s.routers.is_empty()) {
            not_subscribed(component, stream, t);
        }
        s.info
    }

    /// The index of `stream` in `self.streams`. `DEFAULT_STREAM`, which every `emit`
    /// without a stream passes, is compared with the constant inline (two loads, no
    /// `memcmp` call; its address differs between crates, so no pointer test); other
    /// names are compared with the last one used first.
    #[inline]
    fn stream_index(&mut self, stream: &str) -> usize {
        if let Some(i) = self.default {
            if stream == DEFAULT_STREAM {
                return i;
            }
        }
        if self
            .streams
            .get(self.last)
            .is_some_and(|s| s.name == stream)
        {
            return self.last;
        }
        self.find_stream(stream)
    }

    #[inline(never)]
    fn find_stream(&mut self, stream: &str) -> usize {
        match self.streams.iter().position(|s| s.name == stream) {
            Some(i) => {
                self.last = i;
                i
            }
            None => undeclared(&self.component, stream, &self.streams),
        }
    }

    /// Sends one tuple per target, `anchors(k)` giving the acking state of the copy for
    /// the k-th target.
    #[inline(always)]
    pub(crate) fn send_to_targets(
        &mut self,
        info: &'static StreamInfo,
        values: Values,
        mut anchors: impl FnMut(&mut Self, usize) -> Anchors,
    ) {
        let n = self.targets.len();
        if n == 1 {
            // The common case: one receiver, the values move.
            let to = self.targets[0];
            let anchors = anchors(self, 0);
            self.push(to, values, info, anchors);
            return;
        }
        let mut values = Some(values);
        for k in 0..n {
            let to = self.targets[k];
            let anchors = anchors(self, k);
            let values = if k + 1 == n {
                values.take().unwrap_or_default()
            } else {
                values.clone().unwrap_or_default()
            };
            self.push(to, values, info, anchors);
        }
    }

    /// Offers an emit to the attached tap (with the anchors of its first copy).
    #[cold]
    #[inline(never)]
    fn tap_offer(&self, info: &StreamInfo, values: &Values, anchors: &Anchors) {
        if let Some(t) = &self.tap {
            t.offer(self.task, info, values, anchors);
        }
    }

    /// Appends a tuple to the batch of task `to`, built where it is stored.
    #[inline(always)]
    pub(crate) fn push(
        &mut self,
        to: TaskId,
        values: Values,
        source: &'static StreamInfo,
        anchors: Anchors,
    ) {
        let slot = self.slots.get(to as usize).copied().unwrap_or(NO_SLOT);
        if slot == NO_SLOT {
            return;
        }
        self.counts.transferred += 1;
        // A tap sees each emit once: its copy to the first of its targets.
        if self.tap.is_some() && self.targets.first() == Some(&to) {
            self.tap_offer(source, &values, &anchors);
        }
        let source_task = self.task;
        let d = &mut self.dests[slot as usize];
        push_in_place(&mut d.buf, values, source, source_task, anchors);
        if d.buf.len() >= d.limit {
            self.flush_dest(slot as usize);
        }
    }

    pub(crate) fn take_vec(&mut self) -> Vec<Tuple> {
        self.spare
            .pop()
            .or_else(|| self.pool.rx.try_recv().ok())
            .unwrap_or_else(|| Vec::with_capacity(self.batch))
    }

    /// Empties a batch vector and keeps it for reuse, if it holds a whole batch: a smaller
    /// one (a decoded remote batch is exactly its size) would grow, copying its tuples,
    /// when it is filled again, which costs more than a fresh vector.
    pub(crate) fn recycle(&mut self, mut v: Vec<Tuple>) {
        clear_batch(&mut v);
        if v.capacity() < self.batch {
            return;
        }
        if self.spare.len() < 4 {
            self.spare.push(v);
        } else {
            let _ = self.pool.tx.try_send(v);
        }
    }

    fn flush_dest(&mut self, slot: usize) {
        self.flush_acks();
        if self.dests[slot].buf.is_empty() {
            return;
        }
        let d = &mut self.dests[slot];
        let sent = match &d.route {
            Route::Local(tx) => {
                let full = std::mem::take(&mut d.buf);
                tx.send(Inbound::Batch(full)).map_err(|_| Gone(d.id))
            }
            // The transport encodes the tuples and gives the emptied vector back.
            Route::Remote(r) => {
                match r.send_and_return(d.id, Inbound::Batch(std::mem::take(&mut d.buf))) {
                    Ok(Some(Inbound::Batch(v))) if v.capacity() >= self.batch => {
                        d.buf = v;
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        };
        if self.dests[slot].buf.capacity() == 0 && matches!(self.dests[slot].route, Route::Local(_))
        {
            self.dests[slot].buf = self.take_vec();
        }
        if let Err(e) = sent {
            // The receiver's worker is gone: what the batch carried times out and replays.
            self.dropped += 1;
            if worth_logging(self.dropped) {
                tracing::warn!(task = self.task, error = %e, dropped = self.dropped, "Dropped a batch.");
            }
        }
    }

    /// XORs `x` into the acker buffer of tree `root`.
    #[inline]
    pub(crate) fn ack_xor(&mut self, root: u64, x: u64) {
        if root == self.xor_root {
            self.xor_acc ^= x;
            self.acks_dirty = true;
            return;
        }
        if self.acks.is_empty() {
            return;
        }
        self.spill_xor();
        self.xor_root = root;
        self.xor_acc = x;
        self.acks_dirty = true;
    }

    /// Queues the accumulated XOR (nothing when it is 0: XOR with 0 changes nothing).
    #[inline]
    fn spill_xor(&mut self) {
        let (root, xor) = (self.xor_root, self.xor_acc);
        self.xor_acc = 0;
        if xor != 0 {
            let n = self.acks.len() as u64;
            self.acks[(root % n) as usize]
                .msgs
                .push(AckerMsg::Xor { root, xor });
        }
    }

    /// Queues a message for the acker of `root`.
    #[inline]
    pub(crate) fn acker_msg(&mut self, root: u64, msg: AckerMsg) {
        let n = self.acks.len() as u64;
        if n == 0 {
            return;
        }
        self.spill_xor();
        self.acks[(root % n) as usize].msgs.push(msg);
        self.acks_dirty = true;
    }

    /// Sends the acker buffers.
    pub(crate) fn flush_acks(&mut self) {
        if !self.acks_dirty {
            return;
        }
        self.acks_dirty = false;
        self.spill_xor();
        // A root of 0 never matches a random root: the next update starts afresh.
        self.xor_root = 0;
        for (b, (id, route)) in self.acks.iter_mut().zip(&self.ackers) {
            if b.msgs.is_empty() {
                continue;
            }
            let cap = b.msgs.len();
            let msgs = std::mem::replace(&mut b.msgs, Vec::with_capacity(cap));
            let _ = route.send(*id, AckerIn::Batch(msgs));
        }
    }

    /// Sends every buffer and publishes the counters.
    pub(crate) fn flush_all(&mut self, now: Instant) {
        self.flush_acks();
        for slot in 0..self.dests.len() {
            if !self.dests[slot].buf.is_empty() {
                self.flush_dest(slot);
            }
        }
        self.last_flush = now;
        // The only cost of taps to an untapped task: one relaxed load per flush.
        self.tap = self.tap_slot.sink();
        self.shared.publish(&self.counts);
        if now.saturating_duration_since(self.last_stats) >= PUBLISH_EVERY {
            self.publish_stats(now);
        }
    }

    /// Hands the latencies, busy time and last failure over to the runtime.
    pub(crate) fn publish_stats(&mut self, now: Instant) {
        self.last_stats = now;
        if self.busy_is_wall {
            let wall = now.saturating_duration_since(self.created).as_nanos() as u64;
            self.stats.busy_ns = wall.saturating_sub(self.stats.waited_ns);
        }
        if let Ok(mut s) = self.stats_out.lock() {
            s.clone_from(&self.stats);
        }
    }

    /// Flushes when the flush interval has passed since the last flush.
    #[inline]
    pub(crate) fn maybe_flush(&mut self, now: Instant) {
        if now.duration_since(self.last_flush) >= self.flush_interval {
            self.flush_all(now);
        }
    }

    /// Flushes, then sends checkpoint `id`'s barrier to every downstream task: after
    /// everything this task emitted so far, before anything it emits next.
    pub(crate) fn barrier(&mut self, id: u64) {
        self.flush_all(Instant::now());
        let from = self.task;
        for d in &self.dests {
            let _ = d.route.send(d.id, Inbound::Barrier { from, id });
        }
    }

    /// Flushes, then tells every downstream task that this task is done.
    pub(crate) fn end_stream(&mut self) {
        self.flush_all(Instant::now());
        for d in &self.dests {
            let _ = d.route.send(d.id, Inbound::Eos(self.task));
        }
    }

    /// A fresh random tuple id.
    #[inline]
    pub(crate) fn next_id(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A new tree's root id: random, except that `root % ackers` (which picks the tree's
    /// acker) names an acker in this worker when there is one, so the spout's `Init` and
    /// the acker's `Acked` never cross to another worker. The other bits stay random.
    #[inline]
    pub(crate) fn next_root(&mut self) -> u64 {
        let r = self.rng.next_u64();
        let n = self.acks.len() as u64;
        if n <= 1 || self.local_acks.is_empty() {
            return r;
        }
        let i = u64::from(self.local_acks[(r >> 40) as usize % self.local_acks.len()]);
        root_with_acker(r, n, i)
    }
}

/// The id nearest `r` from below (or above, at the top of the range) with `id % n == i`.
fn root_with_acker(r: u64, n: u64, i: u64) -> u64 {
    let base = r - r % n;
    base.checked_add(i).unwrap_or_else(|| base - n + i)
}

#[cold]
#[inline(never)]
fn undeclared(component: &str, stream: &str, streams: &[StreamOut]) -> ! {
    let declared: Vec<&str> = streams.iter().map(|s| s.name.as_str()).collect();
    panic!(
        "`{component}` emitted on stream `{stream}`, which it does not declare (declared: {})",
        if declared.is_empty() {
            "none".to_string()
        } else {
            declared.join(", ")
        }
    );
}

#[cold]
#[inline(never)]
fn wrong_arity(component: &str, stream: &str, got: usize, fields: &[String]) -> ! {
    panic!(
        "`{component}` emitted {got} value(s) on stream `{stream}`, which declares {} \
         field(s): {}",
        fields.len(),
        fields.join(", ")
    );
}

#[cold]
#[inline(never)]
fn wrong_direct(component: &str, stream: &str, direct: Option<TaskId>) -> ! {
    match direct {
        None => panic!(
            "`{component}` emitted on direct stream `{stream}` without a task: use emit_direct"
        ),
        Some(t) => panic!(
            "`{component}` called emit_direct to task {t} on stream `{stream}`, which is not \
             declared direct"
        ),
    }
}

#[cold]
#[inline(never)]
fn not_subscribed(component: &str, stream: &str, t: TaskId) -> ! {
    panic!(
        "`{component}` called emit_direct to task {t} on stream `{stream}`, but task {t} does \
         not subscribe to it"
    );
}

/// The text of a panic payload.
pub(crate) fn panic_text(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn only_vectors_that_hold_a_whole_batch_are_kept_for_reuse() {
        let pool = Pool::new(8);
        let mut out = Output::new(OutputSpec {
            task: 1,
            component: "c".into(),
            streams: Vec::new(),
            dests: Vec::new(),
            ackers: Vec::new(),
            tracking: false,
            batch: 16,
            flush_interval: Duration::from_millis(1),
            pool: pool.clone(),
            shared: Arc::default(),
            stats: Arc::default(),
            tap: Arc::default(),
        });
        let info = StreamInfo::intern("c", "default", &["word".into()]);
        let mut small = Vec::with_capacity(3);
        small.push(Tuple::new(info, 1, [Value::from("ka")]));
        out.recycle(small);
        out.recycle(Vec::with_capacity(16));
        let kept: Vec<usize> = out.spare.iter().map(Vec::capacity).collect();
        assert_eq!(kept, [16]);
        assert!(out.spare.iter().all(Vec::is_empty));
        assert!(pool.rx.try_recv().is_err());
        assert_eq!(out.take_vec().capacity(), 16);
    }

    #[test]
    fn a_root_names_the_chosen_acker_and_keeps_its_other_bits() {
        for n in [2u64, 3, 5, 8, 1000] {
            for r in [0, 1, 12_345, u64::MAX / 3, u64::MAX - 1, u64::MAX] {
                for i in 0..n.min(9) {
                    let root = root_with_acker(r, n, i);
                    assert_eq!(root % n, i, "r {r} n {n} i {i}");
                    assert!(root.abs_diff(r) < n, "r {r} n {n} i {i}: {root}");
                }
            }
        }
    }
}
