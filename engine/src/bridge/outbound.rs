//! The runtime's senders to tasks of other workers, over the transport.
//!
//! Data batches are encoded as one `Data` frame each (split in halves while a batch is
//! larger than a frame may be). A batch or end-of-stream for a worker that is not
//! connected waits for the connection to come back (the worker is starting or was
//! restarted): what was lost with the old connection fails its trees and is replayed by
//! the spouts, what comes after goes to the new worker. Acker and control messages never
//! wait: while the peer is away they are dropped, and the spouts fail the trees they
//! concern when the peer is back (see `inbound`).
//!
//! # Flow control per task
//! The transport's credit is per connection: with batches for several tasks queued on one
//! connection, a task that is slow to drain would hold the credit that another task's
//! producers need, and two workers sending each other data could wait on each other for
//! ever. So on top of it each destination task grants [`WINDOW`] batches to each worker
//! that sends to it: a sender spends one per batch and blocks at zero (like a full local
//! queue); the receiving task grants batches back, in a `Control` frame to task 0, as it
//! takes them from its remote inbox (a few per frame, and all it owes before it waits for
//! input). The receiver drops the transport's grant as soon as a frame is read: what
//! waits in a remote inbox is bounded by the windows.
//!
//! Every end-of-stream sent is remembered, and sent again whenever a worker reconnects:
//! if it restarted, its new tasks must still see the end of every upstream stream; if it
//! only reconnected, its tasks drop the ones they already counted.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::load::Loads;
use crate::plan::PhysicalPlan;
use crate::route::{AckerIn, Gone, Inbound, RemoteSender, SpoutMsg};
use crate::tuple::TaskId;
use crate::wire;
use topo_transport::{PeerSender, SendError};

/// Senders to every task of the plan that runs in another worker.
pub(crate) struct Remote {
    /// Task id -> its worker's sender (`None` for local tasks and unknown ids).
    peers: Vec<Option<PeerSender>>,
    /// Worker index -> its sender (`None` for this worker).
    workers: Vec<Option<PeerSender>>,
    /// Task id -> batches it still lets this worker send.
    credit: Mutex<Vec<i64>>,
    credit_changed: Condvar,
    /// (to, from) of every end-of-stream sent.
    eos: Mutex<Vec<(TaskId, TaskId)>>,
    /// The worker's load table, once its tasks run: peers' load reports go there.
    loads: OnceLock<Weak<Loads>>,
}

/// Batches a task lets each other worker have in flight to it.
pub(crate) const WINDOW: i64 = 8;

/// Encodes `msg` into this thread's encode buffer: a payload is split off the buffer, so
/// most batches take no allocation of their own (the buffer is reallocated once the
/// payloads sharing its memory are all sent and it runs out of room).
fn encode_reusing(msg: &Inbound) -> Result<Bytes, wire::WireError> {
    thread_local! {
        static BUF: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
    }
    BUF.with(|b| {
        let mut b = b.borrow_mut();
        if b.capacity() < ENCODE_MIN {
            b.reserve(ENCODE_CHUNK);
        }
        wire::encode_data_into(msg, &mut b)?;
        Ok(b.split().freeze())
    })
}

/// A thread's encode buffer grows by this much when less than `ENCODE_MIN` is left.
const ENCODE_CHUNK: usize = 256 * 1024;
const ENCODE_MIN: usize = 16 * 1024;

impl Remote {
    /// Senders for worker `me` of `plan`, given a sender per worker (`None` for `me`).
    pub(crate) fn new(plan: &PhysicalPlan, me: usize, senders: &[Option<PeerSender>]) -> Remote {
        let mut peers = vec![None; plan.tasks().len() + 1];
        for t in plan.tasks() {
            if t.worker != me {
                peers[t.id as usize] = senders.get(t.worker).cloned().flatten();
            }
        }
        Remote {
            credit: Mutex::new(vec![WINDOW; peers.len()]),
            peers,
            workers: senders.to_vec(),
            credit_changed: Condvar::new(),
            eos: Mutex::new(Vec::new()),
            loads: OnceLock::new(),
        }
    }

    /// Where peers' load reports go from now on.
    pub(crate) fn set_loads(&self, loads: &Arc<Loads>) {
        let _ = self.loads.set(Arc::downgrade(loads));
    }

    /// Takes in a load report from a peer (dropped before the tasks run or after they
    /// ended).
    pub(crate) fn receive_loads(&self, payload: &[u8]) -> Result<(), String> {
        match self.loads.get().and_then(Weak::upgrade) {
            Some(l) => l.receive(payload),
            None => Ok(()),
        }
    }

    /// Sends this worker's load report to every peer (a peer that is away misses it).
    pub(crate) fn publish_loads(&self, payload: Bytes) {
        for peer in self.workers.iter().flatten() {
            let _ = peer.send_control(wire::payload::REPORT_TASK, payload.clone());
        }
    }

    fn credit(&self) -> MutexGuard<'_, Vec<i64>> {
        self.credit.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spends one batch of `to`'s window, waiting while it is empty.
    fn spend(&self, to: TaskId) {
        let mut c = self.credit();
        while c.get(to as usize).is_some_and(|&n| n <= 0) {
            c = self
                .credit_changed
                .wait(c)
                .unwrap_or_else(|e| e.into_inner());
        }
        if let Some(n) = c.get_mut(to as usize) {
            *n -= 1;
        }
    }

    /// Task `task` (of another worker) took `batches` more from us.
    pub(crate) fn add_credit(&self, task: TaskId, batches: u32) {
        let mut c = self.credit();
        if let Some(n) = c.get_mut(task as usize) {
            *n = (*n + i64::from(batches)).min(WINDOW);
        }
        drop(c);
        self.credit_changed.notify_all();
    }

    /// Worker `worker` went away: what was in flight to it is lost, its tasks' windows
    /// start over (for its next incarnation), and what it reported of its tasks' loads
    /// no longer holds (no shuffle spills to it until it reports again).
    pub(crate) fn reset_credit(&self, worker: u32) {
        let mut c = self.credit();
        for (t, p) in self.peers.iter().enumerate() {
            if p.as_ref().is_some_and(|p| p.peer() == worker) {
                c[t] = WINDOW;
            }
        }
        drop(c);
        self.credit_changed.notify_all();
        if let Some(loads) = self.loads.get().and_then(Weak::upgrade) {
            let theirs = self.peers.iter().enumerate().filter_map(|(t, p)| {
                p.as_ref()
                    .is_some_and(|p| p.peer() == worker)
                    .then_some(t as TaskId)
            });
            loads.forget(theirs);
        }
    }

    /// Tells worker `worker` that our task `task` took `batches` more of its batches.
    pub(crate) fn grant(&self, worker: u32, task: TaskId, batches: u32) {
        let Some(Some(peer)) = self.workers.get(worker as usize) else {
            return;
        };
        if let Ok(payload) = wire::payload::encode_grant(task, batches) {
            // A peer that is gone gets a fresh window when it comes back.
            let _ = peer.send_control(wire::payload::GRANT_TASK, payload);
        }
    }

    fn peer(&self, to: TaskId) -> Result<&PeerSender, Gone> {
        self.peers
            .get(to as usize)
            .and_then(Option::as_ref)
            .ok_or(Gone(to))
    }

    /// Sends a data payload, waiting for credit and for the peer to be connected.
    fn send_data_bytes(&self, peer: &PeerSender, to: TaskId, payload: Bytes) -> Result<(), Gone> {
        loop {
            match peer.send_data(to, payload.clone()) {
                Ok(()) => return Ok(()),
                Err(SendError::Disconnected { .. }) => {
                    // Starting or restarting: wait for the new connection. A shut-down
                    // transport ends the wait and the next send says `Closed`.
                    peer.wait_connected(Duration::from_secs(1));
                }
                Err(SendError::NoCredit { .. }) => {}
                Err(SendError::Closed) => return Err(Gone(to)),
                Err(e @ SendError::TooLarge { .. }) => {
                    tracing::warn!(task = to, error = %e, "Dropped a batch.");
                    return Ok(());
                }
            }
        }
    }

    fn send_msg(&self, to: TaskId, msg: &Inbound) -> Result<(), Gone> {
        let peer = self.peer(to)?;
        let payload = match encode_reusing(msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(task = to, error = %e, "Cannot encode a batch; dropped it.");
                return Ok(());
            }
        };
        if payload.len() > peer.max_payload() {
            if let Inbound::Batch(tuples) = msg {
                if tuples.len() > 1 {
                    let (a, b) = tuples.split_at(tuples.len() / 2);
                    // Rare (a batch over 16 MiB): the halves are copies.
                    self.send_msg(to, &Inbound::Batch(a.to_vec()))?;
                    return self.send_msg(to, &Inbound::Batch(b.to_vec()));
                }
            }
        }
        if matches!(msg, Inbound::Batch(_)) {
            self.spend(to);
        }
        self.send_data_bytes(peer, to, payload)
    }

    /// Sends every end-of-stream sent so far to tasks of worker `worker` again (it
    /// restarted and its tasks are new).
    pub(crate) fn resend_eos(&self, worker: u32) {
        let sent: Vec<(TaskId, TaskId)> = match self.eos.lock() {
            Ok(e) => e.clone(),
            Err(e) => e.into_inner().clone(),
        };
        for (to, from) in sent {
            let Ok(peer) = self.peer(to) else { continue };
            if peer.peer() != worker {
                continue;
            }
            if let Ok(payload) = wire::encode_data(&Inbound::Eos(from)) {
                // Never blocks for credit long: an end-of-stream is a few bytes.
                let _ = peer
                    .try_send_data(to, payload.clone())
                    .or_else(|_| peer.send_data_timeout(to, payload, Duration::from_secs(1)));
            }
        }
    }
}

impl RemoteSender<Inbound> for Remote {
    fn send(&self, to: TaskId, msg: Inbound) -> Result<(), Gone> {
        if let Inbound::Eos(from) = msg {
            match self.eos.lock() {
                Ok(mut e) => e.push((to, from)),
                Err(e) => e.into_inner().push((to, from)),
            }
        }
        self.send_and_return(to, msg).map(drop)
    }

    /// Gives a batch's vector back emptied, for the sender's next batch: a fresh vector
    /// of a whole batch per batch sent costs an allocation (and, when the allocator
    /// hands the memory back, page faults) every time.
    fn send_and_return(&self, to: TaskId, msg: Inbound) -> Result<Option<Inbound>, Gone> {
        let sent = self.send_msg(to, &msg);
        match msg {
            Inbound::Batch(mut tuples) => {
                // Most sent tuples own nothing on the heap (numbers, short strings):
                // skip their drop glue.
                crate::tuple::clear_batch(&mut tuples);
                sent.map(|()| Some(Inbound::Batch(tuples)))
            }
            _ => sent.map(|()| None),
        }
    }
}

impl RemoteSender<AckerIn> for Remote {
    fn send(&self, to: TaskId, msg: AckerIn) -> Result<(), Gone> {
        let AckerIn::Batch(msgs) = msg else {
            return Ok(());
        };
        let peer = self.peer(to)?;
        let Ok(payload) = wire::encode_acker(&msgs) else {
            return Ok(());
        };
        match peer.send_acker(to, payload) {
            Err(SendError::Closed) => Err(Gone(to)),
            // Disconnected: the spouts fail the trees when the peer is back.
            _ => Ok(()),
        }
    }
}

impl RemoteSender<SpoutMsg> for Remote {
    fn send(&self, to: TaskId, msg: SpoutMsg) -> Result<(), Gone> {
        let peer = self.peer(to)?;
        let payload = match wire::encode_control(&msg) {
            Ok(p) => p,
            Err(_) => return Ok(()),
        };
        match peer.send_control(to, payload) {
            Err(SendError::Closed) => Err(Gone(to)),
            _ => Ok(()),
        }
    }
}
