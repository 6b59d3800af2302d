//! What other workers send, handed to this worker's tasks on the transport's I/O thread.
//!
//! A [`Dispatcher`] is the transport's [`Deliver`] sink: it never blocks and never
//! decodes a data batch. A `Data` payload goes, still encoded, into its bolt task's
//! unbounded remote inbox; the task's own thread decodes it just before executing it and
//! grants it back to its sender (see `bridge::inbox`), so the unbounded inbox holds at
//! most a window of batches per sending worker. The transport's grant is dropped at once:
//! what waits is bounded by the windows. Acker, grant and spout control frames are small:
//! they are decoded here and pushed into the (unbounded) acker and spout inboxes, or
//! added to this worker's sending windows.
//!
//! When a connection is lost, every spout task of this worker fails the trees it emitted
//! until then (they may have gone through the lost peer, which dropped them or their
//! acker state), so they replay within moments instead of after `message_timeout_secs`;
//! when the peer is back it does so again, for the trees whose acker messages to it were
//! dropped meanwhile.
//!
//! When a connection is lost the sender's windows for our tasks start over, so batches
//! that came on it, and grants owed for them, are never granted back: each connection of
//! a peer has an epoch, and a remote batch remembers the one it came on. When a peer
//! comes back, the ends of streams sent to it so far are sent again (on a short-lived
//! thread: that may wait for the connection).
//!
//! Deliveries that arrive before the tasks run (a faster peer already sends) wait in a
//! list and are handed over in order when [`Dispatcher`] is attached to them.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use crossbeam_channel::Sender;

use super::outbound::{self, Remote};
use crate::plan::PhysicalPlan;
use crate::route::Inboxes;
use crate::route::{AckerIn, GrantBook, RemoteBatch, SpoutMsg};
use crate::tuple::TaskId;
use crate::wire;
use topo_transport::{Deliver, Delivery};

/// Hands what the transport receives to this worker's tasks: pass it to
/// [`Transport::start_with`](topo_transport::Transport::start_with), then to
/// [`worker::start`](crate::launcher::worker::start), which attaches it to the tasks.
#[derive(Default)]
pub struct Dispatcher {
    table: OnceLock<Table>,
    /// Deliveries that came before the tasks ran, in order.
    early: Mutex<Vec<Delivery>>,
    rare: Mutex<Rare>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("attached", &self.table.get().is_some())
            .finish()
    }
}

/// Where each delivery goes, by destination task.
struct Table {
    data: Vec<Option<Sender<RemoteBatch>>>,
    ackers: Vec<Option<Sender<AckerIn>>>,
    spouts: Vec<Option<Sender<SpoutMsg>>>,
    book: Arc<Book>,
    worker: usize,
}

impl Table {
    /// Tells every spout task of this worker that a peer was lost at `at`: each fails the
    /// trees it emitted until then (see [`SpoutMsg::PeerLost`]).
    fn peer_lost(&self, at: Instant) {
        for tx in self.spouts.iter().flatten() {
            let _ = tx.send(SpoutMsg::PeerLost(at));
        }
    }
}

/// State of the rare deliveries.
#[derive(Default)]
struct Rare {
    seen_up: Vec<bool>,
    bad: u64,
}

/// The grant side of flow control: the sending windows and each peer's connection epoch.
struct Book {
    remote: Arc<Remote>,
    epochs: Vec<AtomicU32>,
}

impl GrantBook for Book {
    fn epoch(&self, worker: u32) -> u32 {
        self.epochs
            .get(worker as usize)
            .map_or(0, |e| e.load(Ordering::Acquire))
    }

    fn grant(&self, worker: u32, task: TaskId, batches: u32) {
        self.remote.grant(worker, task, batches);
    }
}

// A task grants a few batches at a time, well within the window, so its senders keep
// sending while the grant travels.
const _: () = assert!(2 * super::inbox::GRANT_EVERY as i64 <= outbound::WINDOW);

fn by_task<T: Clone>(n: usize, items: &[(u32, T)]) -> Vec<Option<T>> {
    let mut v = vec![None; n];
    for (t, s) in items {
        if let Some(slot) = v.get_mut(*t as usize) {
            *slot = Some(s.clone());
        }
    }
    v
}

impl Dispatcher {
    /// A dispatcher not attached to tasks yet: it keeps what arrives until it is.
    pub fn new() -> Arc<Dispatcher> {
        Arc::default()
    }

    fn rare(&self) -> MutexGuard<'_, Rare> {
        self.rare.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn early(&self) -> MutexGuard<'_, Vec<Delivery>> {
        self.early.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts handing deliveries to `running`'s tasks, first those that waited. Returns
    /// false (and changes nothing) when it was attached already.
    pub(crate) fn attach(
        &self,
        plan: &PhysicalPlan,
        inboxes: &Inboxes,
        remote_inboxes: &[(TaskId, Sender<RemoteBatch>)],
        remote: Arc<Remote>,
        worker: usize,
    ) -> bool {
        if self.table.get().is_some() {
            return false;
        }
        let n = plan.tasks().len() + 1;
        let workers = plan.workers();
        let table = Table {
            data: by_task(n, remote_inboxes),
            ackers: by_task(n, &inboxes.ackers),
            spouts: by_task(n, &inboxes.spouts),
            book: Arc::new(Book {
                remote,
                epochs: (0..workers).map(|_| AtomicU32::new(0)).collect(),
            }),
            worker,
        };
        self.rare().seen_up.resize(workers, false);
        // Hand over what waited, then take over under the lock: whatever arrives
        // meanwhile joins the list, so each peer's order holds.
        loop {
            let mut early = self.early();
            if early.is_empty() {
                let set = self.table.set(table).is_ok();
                drop(early);
                return set;
            }
            let waited = std::mem::take(&mut *early);
            drop(early);
            for d in waited {
                self.handle(&table, d);
            }
        }
    }

    fn malformed(&self, worker: usize, from: u32, error: &dyn std::fmt::Display) {
        let mut rare = self.rare();
        rare.bad += 1;
        let count = rare.bad;
        drop(rare);
        if crate::metrics::worth_logging(count) {
            tracing::warn!(worker, peer = from, %error, count, "Dropped a message that does not decode.");
        }
    }

    fn handle(&self, t: &Table, d: Delivery) {
        match d {
            Delivery::Data {
                from,
                dest_task,
                payload,
                grant,
            } => {
                drop(grant);
                let Some(Some(tx)) = t.data.get(dest_task as usize) else {
                    tracing::warn!(
                        worker = t.worker,
                        peer = from,
                        task = dest_task,
                        "Dropped data for a task that is not here."
                    );
                    return;
                };
                // Unbounded: the windows bound it. A task that ended takes nothing more.
                let _ = tx.send(RemoteBatch {
                    from,
                    epoch: t.book.epoch(from),
                    payload,
                    book: Arc::clone(&t.book) as Arc<dyn GrantBook>,
                });
            }
            Delivery::Acker {
                from,
                dest_task,
                payload,
            } => match wire::decode_acker(&payload) {
                Ok(msgs) => {
                    if let Some(Some(tx)) = t.ackers.get(dest_task as usize) {
                        let _ = tx.send(AckerIn::Batch(msgs));
                    }
                }
                Err(e) => self.malformed(t.worker, from, &e),
            },
            Delivery::Control {
                from,
                dest_task: wire::payload::REPORT_TASK,
                payload,
            } => {
                if let Err(e) = t.book.remote.receive_loads(&payload) {
                    self.malformed(
                        t.worker,
                        from,
                        &wire::WireError::Decode {
                            what: "load report",
                            message: e,
                        },
                    );
                }
            }
            Delivery::Control {
                from,
                dest_task: wire::payload::GRANT_TASK,
                payload,
            } => match wire::payload::decode_grant(&payload) {
                Ok((task, batches)) => t.book.remote.add_credit(task, batches),
                Err(e) => self.malformed(t.worker, from, &e),
            },
            Delivery::Control {
                from,
                dest_task,
                payload,
            } => match wire::decode_control(&payload) {
                Ok(msg) => {
                    if let Some(Some(tx)) = t.spouts.get(dest_task as usize) {
                        let _ = tx.send(msg);
                    }
                }
                Err(e) => self.malformed(t.worker, from, &e),
            },
            Delivery::PeerUp { peer } => {
                let again = self
                    .rare()
                    .seen_up
                    .get_mut(peer as usize)
                    .map(|s| std::mem::replace(s, true))
                    .unwrap_or(false);
                if again {
                    tracing::info!(
                        worker = t.worker,
                        peer,
                        "Worker is back; sending it the ends of streams again."
                    );
                    // While it was away, acker messages to it were dropped (they never
                    // wait): trees emitted meanwhile whose acker runs there never
                    // complete either.
                    t.peer_lost(Instant::now());
                    resend_eos(Arc::clone(&t.book.remote), peer);
                }
            }
            Delivery::PeerDown { peer } => {
                t.book.remote.reset_credit(peer);
                // Its next incarnation starts with whole windows: nothing owed to this
                // one is granted.
                if let Some(e) = t.book.epochs.get(peer as usize) {
                    e.fetch_add(1, Ordering::AcqRel);
                }
                tracing::debug!(
                    worker = t.worker,
                    peer,
                    "Lost the connection to a worker; failing the trees that may have gone through it."
                );
                t.peer_lost(Instant::now());
            }
        }
    }
}

/// Sends `peer` the ends of streams again, off the I/O thread (it may wait for credit).
fn resend_eos(remote: Arc<Remote>, peer: u32) {
    let r = Arc::clone(&remote);
    let spawned = std::thread::Builder::new()
        .name(format!("resend-eos-{peer}"))
        .spawn(move || r.resend_eos(peer));
    if let Err(e) = spawned {
        tracing::warn!(peer, error = %e, "Cannot start a thread; sending the ends of streams from the I/O thread.");
        remote.resend_eos(peer);
    }
}

impl Deliver for Dispatcher {
    fn deliver(&self, delivery: Delivery) -> bool {
        if let Some(t) = self.table.get() {
            self.handle(t, delivery);
            return true;
        }
        let mut early = self.early();
        match self.table.get() {
            Some(t) => {
                drop(early);
                self.handle(t, delivery);
            }
            None => early.push(delivery),
        }
        true
    }
}
