//! The runtime's side of a peer: a blocking, credit-limited sender, and what arrives.
//!
//! Credit is counted in bytes of `Data` payload (plus [`FRAME_OVERHEAD`] per frame). A fresh
//! connection starts with the configured window; each `Data` frame spends its cost; the
//! receiver grants the cost back (a `Credit` frame) only when the runtime drops the
//! [`CreditGrant`] that came with the frame. A sender with no credit left blocks, so a
//! receiver that falls behind stops its senders, and both sides hold at most about one window
//! per connection. `Acker` and `Control` frames spend no credit and never block: they go on
//! a separate unbounded lane that the connection writes ahead of data, because acks must
//! never wait behind data (they are what unblocks spouts); their volume is bounded above the
//! transport by `max_spout_pending`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, Notify};

use super::counters::PeerCounters;
use super::frame::{Frame, FRAME_OVERHEAD};

/// Why a frame could not be handed to the transport.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No connection to the peer right now (it is starting, restarting or gone); the frame
    /// was not queued. The runtime fails or replays what it carried.
    #[error("worker {peer} is not connected")]
    Disconnected {
        /// The peer's worker index.
        peer: u32,
    },
    /// The transport has shut down.
    #[error("transport is shut down")]
    Closed,
    /// The payload is larger than a frame may be.
    #[error("payload of {len} bytes is over the maximum of {max} bytes")]
    TooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload allowed.
        max: usize,
    },
    /// No credit (or no queue space) arrived before the timeout, or right away for `try_*`.
    #[error("worker {peer} granted no credit in time")]
    NoCredit {
        /// The peer's worker index.
        peer: u32,
    },
}

#[derive(Debug)]
struct LinkState {
    connected: bool,
    closed: bool,
    credit: i64,
}

/// Shared state of one peer, between its senders and its connection driver.
#[derive(Debug)]
pub(crate) struct Link {
    peer: u32,
    max_payload: usize,
    state: Mutex<LinkState>,
    changed: Condvar,
    queue: mpsc::Sender<Frame>,
    urgent: mpsc::UnboundedSender<Frame>,
    pub(crate) counters: Arc<PeerCounters>,
}

impl Link {
    pub(crate) fn new(
        peer: u32,
        max_frame_len: usize,
        queue: mpsc::Sender<Frame>,
        urgent: mpsc::UnboundedSender<Frame>,
    ) -> Arc<Link> {
        Arc::new(Link {
            peer,
            max_payload: max_frame_len.saturating_sub(FRAME_OVERHEAD),
            state: Mutex::new(LinkState {
                connected: false,
                closed: false,
                credit: 0,
            }),
            changed: Condvar::new(),
            queue,
            urgent,
            counters: Arc::new(PeerCounters::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LinkState> {
        // A panic while holding this lock leaves plain numbers behind; keep going.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set_connected(&self, window: u32) {
        let mut s = self.lock();
        s.connected = true;
        s.credit = i64::from(window);
        drop(s);
        self.changed.notify_all();
    }

    pub(crate) fn set_disconnected(&self) {
        let mut s = self.lock();
        s.connected = false;
        s.credit = 0;
        drop(s);
        self.changed.notify_all();
    }

    pub(crate) fn close(&self) {
        let mut s = self.lock();
        s.connected = false;
        s.closed = true;
        drop(s);
        self.changed.notify_all();
    }

    pub(crate) fn add_credit(&self, bytes: u32) {
        let mut s = self.lock();
        s.credit = s.credit.saturating_add(i64::from(bytes));
        drop(s);
        self.changed.notify_all();
    }

    /// Waits until the frame may be queued and spends its credit.
    fn acquire(&self, cost: u32, deadline: Option<Instant>) -> Result<(), SendError> {
        let mut s = self.lock();
        loop {
            if s.closed {
                return Err(SendError::Closed);
            }
            if !s.connected {
                return Err(SendError::Disconnected { peer: self.peer });
            }
            if cost == 0 || s.credit > 0 {
                // Spending may overdraw by one frame: a frame larger than the window
                // still goes, and the receiver holds at most window + one frame.
                s.credit -= i64::from(cost);
                return Ok(());
            }
            s = match deadline {
                None => self
                    .changed
                    .wait(s)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(SendError::NoCredit { peer: self.peer });
                    }
                    self.changed
                        .wait_timeout(s, left)
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    fn enqueue(&self, frame: Frame, block: bool) -> Result<(), SendError> {
        if block {
            self.queue
                .blocking_send(frame)
                .map_err(|_| SendError::Closed)
        } else {
            self.queue.try_send(frame).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::NoCredit { peer: self.peer },
                mpsc::error::TrySendError::Closed(_) => SendError::Closed,
            })
        }
    }
}

/// The cost of a `Data` payload in credit.
pub(crate) fn data_cost(len: usize) -> u32 {
    u32::try_from(len.saturating_add(FRAME_OVERHEAD)).unwrap_or(u32::MAX)
}

/// Sends frames to one peer worker; cheap to clone, for the runtime's std threads.
///
/// The blocking methods must not be called from inside a tokio runtime (they park the
/// thread); call them from executor threads or `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct PeerSender {
    link: Arc<Link>,
}

impl PeerSender {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        PeerSender { link }
    }

    /// The peer's worker index.
    pub fn peer(&self) -> u32 {
        self.link.peer
    }

    /// The largest `Data`, `Acker` or `Control` payload a frame can carry.
    pub fn max_payload(&self) -> usize {
        self.link.max_payload
    }

    /// True while an authenticated connection to the peer is up.
    pub fn is_connected(&self) -> bool {
        self.link.lock().connected
    }

    /// Waits until the peer is connected (true) or the timeout passes or the transport shuts
    /// down (false).
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.link.lock();
        while !s.connected && !s.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .link
                .changed
                .wait_timeout(s, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        s.connected
    }

    /// Credit left, in bytes; zero or less means `send_data` blocks.
    pub fn credit(&self) -> i64 {
        self.link.lock().credit
    }

    fn check_len(&self, payload: &Bytes) -> Result<(), SendError> {
        if payload.len() > self.link.max_payload {
            return Err(SendError::TooLarge {
                len: payload.len(),
                max: self.link.max_payload,
            });
        }
        Ok(())
    }

    fn data(
        &self,
        dest_task: u32,
        payload: Bytes,
        deadline: Option<Instant>,
        block: bool,
    ) -> Result<(), SendError> {
        self.check_len(&payload)?;
        self.link.acquire(data_cost(payload.len()), deadline)?;
        self.link.enqueue(Frame::Data { dest_task, payload }, block)
    }

    /// Sends a batch of encoded tuples for `dest_task`, blocking while the peer has granted
    /// no credit (backpressure) or the send queue is full.
    pub fn send_data(&self, dest_task: u32, payload: Bytes) -> Result<(), SendError> {
        self.data(dest_task, payload, None, true)
    }

    /// Like [`send_data`](Self::send_data), but gives up with [`SendError::NoCredit`] after
    /// `timeout` without credit.
    pub fn send_data_timeout(
        &self,
        dest_task: u32,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<(), SendError> {
        self.data(dest_task, payload, Some(Instant::now() + timeout), true)
    }

    /// Like [`send_data`](Self::send_data), but never blocks: [`SendError::NoCredit`] when
    /// it would.
    pub fn try_send_data(&self, dest_task: u32, payload: Bytes) -> Result<(), SendError> {
        self.data(dest_task, payload, Some(Instant::now()), false)
    }

    /// Sends an acker message to task `dest_task` of the peer. Spends no credit, never
    /// blocks, and is written ahead of queued data.
    pub fn send_acker(&self, dest_task: u32, payload: Bytes) -> Result<(), SendError> {
        self.urgent(Frame::Acker { dest_task, payload })
    }

    /// Sends a control message to task `dest_task` of the peer (0: the worker itself).
    /// Spends no credit, never blocks, and is written ahead of queued data.
    pub fn send_control(&self, dest_task: u32, payload: Bytes) -> Result<(), SendError> {
        self.urgent(Frame::Control { dest_task, payload })
    }

    fn urgent(&self, frame: Frame) -> Result<(), SendError> {
        if let Frame::Acker { payload, .. } | Frame::Control { payload, .. } = &frame {
            self.check_len(payload)?;
        }
        self.link.acquire(0, None)?;
        self.link.urgent.send(frame).map_err(|_| SendError::Closed)
    }
}

/// Credit a connection owes its peer, released by the runtime as it consumes data.
#[derive(Debug)]
pub(crate) struct CreditReturn {
    pending: AtomicU64,
    threshold: u64,
    pub(crate) ready: Notify,
}

impl CreditReturn {
    pub(crate) fn new(window: u32) -> Arc<CreditReturn> {
        Arc::new(CreditReturn {
            pending: AtomicU64::new(0),
            // Grant in quarters of the window: few Credit frames, and a blocked sender
            // (whole window outstanding) always gets some back once the data is consumed.
            threshold: u64::from(window / 4).max(1),
            ready: Notify::new(),
        })
    }

    fn release(&self, bytes: u32) {
        let bytes = u64::from(bytes);
        let before = self.pending.fetch_add(bytes, Ordering::AcqRel);
        if before < self.threshold && before + bytes >= self.threshold {
            self.ready.notify_one();
        }
    }

    /// Takes what is owed, up to `u32::MAX`, leaving the rest (with a new notification).
    pub(crate) fn take(&self) -> u32 {
        let all = self.pending.swap(0, Ordering::AcqRel);
        let now = all.min(u64::from(u32::MAX));
        if all > now {
            self.release(u32::try_from(all - now).unwrap_or(u32::MAX));
        }
        u32::try_from(now).unwrap_or(u32::MAX)
    }
}

/// The credit of one received `Data` frame; dropping it grants the credit back to the
/// sender. Hold it until the frame's tuples are consumed (handed to bounded executor queues).
#[derive(Debug)]
pub struct CreditGrant {
    owed: Arc<CreditReturn>,
    bytes: u32,
}

impl CreditGrant {
    pub(crate) fn new(owed: Arc<CreditReturn>, bytes: u32) -> Self {
        CreditGrant { owed, bytes }
    }

    /// Credit this grant gives back, in bytes.
    pub fn bytes(&self) -> u32 {
        self.bytes
    }
}

impl Drop for CreditGrant {
    fn drop(&mut self) {
        self.owed.release(self.bytes);
    }
}

/// Where the transport hands what peers send: called on the transport's I/O threads, in
/// order per peer, so it must never block. A crossbeam [`Sender`](crossbeam_channel::Sender)
/// is one (what [`Transport::start`](super::Transport::start) uses); a worker's runtime
/// hands each delivery straight to the task it is for.
pub trait Deliver: Send + Sync + 'static {
    /// Takes one delivery; false when the runtime is gone (the connection then ends).
    fn deliver(&self, delivery: Delivery) -> bool;
}

impl Deliver for crossbeam_channel::Sender<Delivery> {
    fn deliver(&self, delivery: Delivery) -> bool {
        self.send(delivery).is_ok()
    }
}

/// What the transport delivers to the runtime, in order per peer.
#[derive(Debug)]
pub enum Delivery {
    /// A batch of encoded tuples for one of this worker's tasks.
    Data {
        /// The sending worker.
        from: u32,
        /// The task the tuples are for.
        dest_task: u32,
        /// The runtime's encoding of the batch.
        payload: Bytes,
        /// Drop it once the batch is consumed; until then the sender's credit stays spent.
        grant: CreditGrant,
    },
    /// An acker message.
    Acker {
        /// The sending worker.
        from: u32,
        /// The task it is for.
        dest_task: u32,
        /// The runtime's encoding.
        payload: Bytes,
    },
    /// A control message.
    Control {
        /// The sending worker.
        from: u32,
        /// The task it is for (0: this worker).
        dest_task: u32,
        /// The runtime's encoding.
        payload: Bytes,
    },
    /// An authenticated connection to this worker is up (again).
    PeerUp {
        /// The peer's worker index.
        peer: u32,
    },
    /// The connection to this worker ended; frames queued to it were dropped. Tuple trees
    /// through it will not complete: the runtime may fail them now rather than time out.
    PeerDown {
        /// The peer's worker index.
        peer: u32,
    },
}
