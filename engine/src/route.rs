//! The messages between tasks and the seam where a task in another worker plugs in.
//!
//! Every executor sends through a [`Route`] per destination task: a local queue for a
//! task of the same worker (tuples move, never serialized) or a [`RemoteSender`] that the
//! transport provides for a task in another worker. Three kinds of inbox exist:
//! - a bolt's data inbox ([`Inbound`]): bounded, so a slow bolt slows its producers;
//! - an acker's inbox ([`AckerMsg`] batches) and a spout's control inbox ([`SpoutMsg`]):
//!   unbounded, so acking never blocks a sender (they are bounded in practice by
//!   `max_spout_pending` and the data queues).
//!
//! A bolt in a worker with peers has a second, unbounded inbox of `RemoteBatch`es:
//! payloads still encoded, which its own thread decodes just before executing them. It is
//! bounded in practice by the per-task windows of flow control: a batch is granted back
//! to its sender (through a `GrantBook`) only once the task took it.

use std::sync::Arc;

use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::tuple::{TaskId, Tuple};

/// What a bolt task receives.
#[derive(Debug)]
pub enum Inbound {
    /// Tuples, in the order their producer emitted them.
    Batch(Vec<Tuple>),
    /// The upstream task with this id will send nothing more.
    Eos(TaskId),
    /// Checkpoint `id`'s barrier from upstream task `from`: everything `from` sent before
    /// it belongs to the checkpoint, everything after it to the next (see
    /// [`crate::state`]).
    Barrier {
        /// The upstream task.
        from: TaskId,
        /// The checkpoint.
        id: u64,
    },
    /// Someone called the bolt's [`crate::Notifier`].
    Wake,
}

/// A message to an acker task about one tuple tree (identified by its random root id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AckerMsg {
    /// A spout task emitted a tracked tuple: the XOR of its edge ids.
    Init {
        /// The tree's root id.
        root: u64,
        /// XOR of the ids of the tuples the spout sent.
        xor: u64,
        /// The spout task to tell when the tree completes or fails.
        spout: TaskId,
    },
    /// Ids created and acked in the tree, XORed together.
    Xor {
        /// The tree's root id.
        root: u64,
        /// The XOR to apply.
        xor: u64,
    },
    /// A bolt failed a tuple of the tree: fail the whole tree now.
    Fail {
        /// The tree's root id.
        root: u64,
    },
}

/// What an acker task receives.
#[derive(Debug)]
pub enum AckerIn {
    /// Messages from one sender, in order.
    Batch(Vec<AckerMsg>),
    /// Stop (every component task has stopped).
    Stop,
}

/// What a spout task receives besides time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpoutMsg {
    /// These trees (root ids) completed.
    Acked(Vec<u64>),
    /// These trees failed.
    Failed(Vec<u64>),
    /// Start calling `next_tuple` again.
    Activate,
    /// Stop calling `next_tuple`.
    Deactivate,
    /// Deactivate, drain pending trees (bounded by the message timeout), then end the
    /// stream.
    Stop,
    /// Someone called the spout's [`crate::Notifier`].
    Wake,
    /// Start checkpoint `id`: record the position and emit its barrier on every output.
    Checkpoint(u64),
    /// This worker lost its connection to another one at this instant (the worker died,
    /// or frames were dropped with the connection): trees emitted until then may have
    /// gone through it and may never complete, so fail them now rather than at their
    /// timeout. Only a worker's own transport says so; it never travels on the wire.
    #[serde(skip)]
    PeerLost(std::time::Instant),
}

/// The inboxes of a worker's local tasks, for the transport to deliver what other
/// workers send them.
#[derive(Clone, Debug, Default)]
pub struct Inboxes {
    /// Bolt tasks' data inboxes (bounded: a full one is backpressure).
    pub data: Vec<(TaskId, Sender<Inbound>)>,
    /// Acker tasks' inboxes.
    pub ackers: Vec<(TaskId, Sender<AckerIn>)>,
    /// Spout tasks' control inboxes.
    pub spouts: Vec<(TaskId, Sender<SpoutMsg>)>,
}

/// An encoded data payload from another worker, for one bolt task.
pub(crate) struct RemoteBatch {
    /// The sending worker.
    pub(crate) from: u32,
    /// The sender's connection it came on (see [`GrantBook::epoch`]).
    pub(crate) epoch: u32,
    /// The encoding (`wire::DataDecoder`).
    pub(crate) payload: bytes::Bytes,
    /// Where to grant it back once taken.
    pub(crate) book: Arc<dyn GrantBook>,
}

/// Grants batches back to the workers that sent them (flow control per task).
pub(crate) trait GrantBook: Send + Sync {
    /// The current connection of worker `worker`: it changes when the connection is lost,
    /// and batches or grants owed from an older one are never granted (the sender starts
    /// its windows over).
    fn epoch(&self, worker: u32) -> u32;
    /// Task `task` took `batches` more batches from worker `worker`.
    fn grant(&self, worker: u32, task: TaskId, batches: u32);
}

/// The destination task is gone (its worker stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("task {0} is gone")]
pub struct Gone(pub TaskId);

/// Sends messages to tasks of another worker. The transport implements it; `send` of
/// [`Inbound`] data may block for flow control (credits), the other kinds must not.
pub trait RemoteSender<T>: Send + Sync {
    /// Sends `msg` to task `to`.
    fn send(&self, to: TaskId, msg: T) -> Result<(), Gone>;

    /// Sends `msg` to task `to` and may give back what is left of it for reuse (a
    /// batch's emptied vector, once its tuples are encoded). By default gives back
    /// nothing.
    fn send_and_return(&self, to: TaskId, msg: T) -> Result<Option<T>, Gone> {
        self.send(to, msg).map(|()| None)
    }
}

/// How an executor reaches one destination task.
pub enum Route<T> {
    /// A task of this worker: its queue.
    Local(Sender<T>),
    /// A task of another worker.
    Remote(Arc<dyn RemoteSender<T>>),
}

impl<T> Clone for Route<T> {
    fn clone(&self) -> Self {
        match self {
            Route::Local(s) => Route::Local(s.clone()),
            Route::Remote(r) => Route::Remote(Arc::clone(r)),
        }
    }
}

impl<T> std::fmt::Debug for Route<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Local(_) => f.write_str("Route::Local"),
            Route::Remote(_) => f.write_str("Route::Remote"),
        }
    }
}

impl<T> Route<T> {
    /// Sends `msg` to task `to`; blocks while a bounded local queue is full.
    #[inline]
    pub fn send(&self, to: TaskId, msg: T) -> Result<(), Gone> {
        match self {
            Route::Local(s) => s.send(msg).map_err(|_| Gone(to)),
            Route::Remote(r) => r.send(to, msg),
        }
    }
}
