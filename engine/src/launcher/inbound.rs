//! What other workers send, handed to this worker's task inboxes.
//!
//! One thread decodes every delivery of the transport and pushes it into the inbox of
//! its task. A full inbox never blocks the other tasks: its batches wait in a per-task
//! line while deliveries for other tasks go on. Each batch that enters an inbox grants
//! its sender one more batch for that task (see `remote`'s flow control per task), so a
//! slow bolt stops its remote producers and the lines stay within the windows; the
//! transport's own grant is dropped as soon as a frame is decoded. Grants go out a few
//! batches at a time, and all of them whenever no delivery is waiting.

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use topo_dsl::Topology;

use super::remote::{self, Remote};
use crate::route::{AckerIn, Inbound};
use crate::runtime::Inboxes;
use crate::transport::Delivery;
use crate::wire;

/// Batches of one task granted back to a worker in one `Control` frame (at most: all
/// that is owed is granted whenever nothing more has arrived).
const GRANT_EVERY: u32 = (remote::WINDOW / 2) as u32;

/// Messages waiting for room in a task's inbox, each with the worker to grant a batch
/// when it gets in (`None` for an end of stream).
type Waiting = VecDeque<(Inbound, Option<u32>)>;

struct Dispatch {
    decoder: wire::DataDecoder,
    data: Vec<Option<Sender<Inbound>>>,
    ackers: Vec<Option<Sender<AckerIn>>>,
    spouts: Vec<Option<Sender<crate::route::SpoutMsg>>>,
    waiting: Vec<Waiting>,
    remote: Arc<Remote>,
    seen_up: Vec<bool>,
    /// (task, upstream task) of every end-of-stream delivered: peers send them again
    /// after any reconnect, and a bolt must count each upstream task's end once.
    eos_seen: std::collections::HashSet<(u32, u32)>,
    worker: usize,
    bad: u64,
    /// Worker -> task -> batches taken but not yet granted back.
    owed: Vec<Vec<u32>>,
}

fn by_task<T: Clone>(n: usize, items: &[(u32, T)]) -> Vec<Option<T>> {
    let mut v = vec![None; n];
    for (t, s) in items {
        if let Some(slot) = v.get_mut(*t as usize) {
            *slot = Some(s.clone());
        }
    }
    v
}

/// Starts the thread; it ends when the transport has shut down.
pub(crate) fn spawn(
    deliveries: Receiver<Delivery>,
    topology: Arc<Topology>,
    tasks: usize,
    inboxes: &Inboxes,
    remote: Arc<Remote>,
    worker: usize,
    workers: usize,
) -> std::io::Result<JoinHandle<()>> {
    let n = tasks + 1;
    let d = Dispatch {
        decoder: wire::DataDecoder::new(topology),
        data: by_task(n, &inboxes.data),
        ackers: by_task(n, &inboxes.ackers),
        spouts: by_task(n, &inboxes.spouts),
        waiting: (0..n).map(|_| VecDeque::new()).collect(),
        remote,
        seen_up: vec![false; workers],
        eos_seen: Default::default(),
        worker,
        bad: 0,
        owed: vec![vec![0; n]; workers],
    };
    std::thread::Builder::new()
        .name(format!("inbound-{worker}"))
        .spawn(move || d.run(deliveries))
}

impl Dispatch {
    fn run(mut self, deliveries: Receiver<Delivery>) {
        let mut backlog = 0usize;
        loop {
            let next = if backlog == 0 {
                deliveries
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                deliveries.recv_timeout(Duration::from_millis(1))
            };
            match next {
                Ok(d) => self.handle(d),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            backlog = self.retry();
            if deliveries.is_empty() {
                self.pay_all();
            }
        }
    }

    /// Batch `task` took from `worker` entered the inbox: grant it back, a few at a time
    /// (every [`GRANT_EVERY`], and all that is owed before this thread waits).
    fn owe(&mut self, worker: u32, task: u32) {
        let Some(n) = self
            .owed
            .get_mut(worker as usize)
            .and_then(|w| w.get_mut(task as usize))
        else {
            return;
        };
        *n += 1;
        if *n >= GRANT_EVERY {
            let batches = std::mem::take(n);
            self.remote.grant(worker, task, batches);
        }
    }

    fn pay_all(&mut self) {
        for (w, tasks) in self.owed.iter_mut().enumerate() {
            for (t, n) in tasks.iter_mut().enumerate() {
                if *n > 0 {
                    self.remote.grant(w as u32, t as u32, std::mem::take(n));
                }
            }
        }
    }

    fn malformed(&mut self, from: u32, error: &wire::WireError) {
        self.bad += 1;
        if crate::executor::worth_logging(self.bad) {
            tracing::warn!(worker = self.worker, peer = from, %error, count = self.bad, "Dropped a message that does not decode.");
        }
    }

    fn handle(&mut self, d: Delivery) {
        match d {
            Delivery::Data {
                from,
                dest_task,
                payload,
                grant,
            } => {
                let decoded = self.decoder.decode(&payload);
                drop(grant);
                let msg = match decoded {
                    Ok(m) => m,
                    Err(e) => return self.malformed(from, &e),
                };
                let owed = matches!(msg, Inbound::Batch(_)).then_some(from);
                if let Inbound::Eos(up) = msg {
                    if !self.eos_seen.insert((dest_task, up)) {
                        return;
                    }
                }
                let t = dest_task as usize;
                let Some(Some(tx)) = self.data.get(t) else {
                    tracing::warn!(
                        worker = self.worker,
                        peer = from,
                        task = dest_task,
                        "Dropped data for a task that is not here."
                    );
                    return;
                };
                if !self.waiting[t].is_empty() {
                    self.waiting[t].push_back((msg, owed));
                    return;
                }
                match tx.try_send(msg) {
                    Ok(()) => {
                        if let Some(w) = owed {
                            self.owe(w, dest_task);
                        }
                    }
                    Err(TrySendError::Full(msg)) => self.waiting[t].push_back((msg, owed)),
                    Err(TrySendError::Disconnected(_)) => {}
                }
            }
            Delivery::Acker {
                from,
                dest_task,
                payload,
            } => match wire::decode_acker(&payload) {
                Ok(msgs) => {
                    if let Some(Some(tx)) = self.ackers.get(dest_task as usize) {
                        let _ = tx.send(AckerIn::Batch(msgs));
                    }
                }
                Err(e) => self.malformed(from, &e),
            },
            Delivery::Control {
                from,
                dest_task: crate::load::REPORT_TASK,
                payload,
            } => {
                if let Err(e) = self.remote.receive_loads(&payload) {
                    self.malformed(
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
                dest_task: 0,
                payload,
            } => match remote::decode_grant(&payload) {
                Ok((task, batches)) => self.remote.add_credit(task, batches),
                Err(e) => {
                    self.bad += 1;
                    if crate::executor::worth_logging(self.bad) {
                        tracing::warn!(worker = self.worker, peer = from, error = %e, count = self.bad, "Dropped a message that does not decode.");
                    }
                }
            },
            Delivery::Control {
                from,
                dest_task,
                payload,
            } => match wire::decode_control(&payload) {
                Ok(msg) => {
                    if let Some(Some(tx)) = self.spouts.get(dest_task as usize) {
                        let _ = tx.send(msg);
                    }
                }
                Err(e) => self.malformed(from, &e),
            },
            Delivery::PeerUp { peer } => {
                let again = self
                    .seen_up
                    .get_mut(peer as usize)
                    .map(|s| std::mem::replace(s, true))
                    .unwrap_or(false);
                if again {
                    tracing::info!(
                        worker = self.worker,
                        peer,
                        "Worker is back; sending it the ends of streams again."
                    );
                    self.remote.resend_eos(peer);
                }
            }
            Delivery::PeerDown { peer } => {
                self.remote.reset_credit(peer);
                // Its next incarnation starts with whole windows.
                if let Some(w) = self.owed.get_mut(peer as usize) {
                    w.fill(0);
                }
                tracing::debug!(
                    worker = self.worker,
                    peer,
                    "Lost the connection to a worker; its trees will time out and replay."
                );
            }
        }
    }

    /// Moves waiting batches into inboxes that have room; returns how many still wait.
    fn retry(&mut self) -> usize {
        let mut left = 0;
        let mut entered = Vec::new();
        for (t, line) in self.waiting.iter_mut().enumerate() {
            if line.is_empty() {
                continue;
            }
            let Some(Some(tx)) = self.data.get(t) else {
                line.clear();
                continue;
            };
            while let Some((msg, owed)) = line.pop_front() {
                match tx.try_send(msg) {
                    Ok(()) => {
                        if let Some(w) = owed {
                            entered.push((w, t as u32));
                        }
                    }
                    Err(TrySendError::Full(msg)) => {
                        line.push_front((msg, owed));
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => line.clear(),
                }
            }
            left += line.len();
        }
        for (w, t) in entered {
            self.owe(w, t);
        }
        left
    }
}
