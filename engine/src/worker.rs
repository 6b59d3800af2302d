//! A worker's bridge to the transport: remote senders that encode the runtime's messages
//! into the transport's frames, and a dispatcher that decodes what peers send into the
//! inboxes of this worker's tasks.
//!
//! The dispatcher never blocks on a full bolt queue: a batch that does not fit waits in a
//! per-task line (keeping its order and its credit grant, so the sending worker is held
//! back by the transport's credits) while acker and control messages keep flowing. Its
//! memory is bounded by the credit window.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use topo_dsl::Topology;

use crate::plan::PhysicalPlan;
use crate::route::{AckerIn, Gone, Inbound, RemoteSender, SpoutMsg};
use crate::runtime::{Inboxes, Remotes};
use crate::transport::{self, CreditGrant, PeerSender, Transport};
use crate::tuple::TaskId;
use crate::wire;

/// Senders to every peer worker, addressed by task.
struct Peers {
    /// Worker of each task, by task id.
    worker_of: Vec<Option<u32>>,
    senders: HashMap<u32, PeerSender>,
}

impl Peers {
    fn sender(&self, to: TaskId) -> Result<&PeerSender, Gone> {
        self.worker_of
            .get(to as usize)
            .copied()
            .flatten()
            .and_then(|w| self.senders.get(&w))
            .ok_or(Gone(to))
    }
}

impl RemoteSender<Inbound> for Peers {
    fn send(&self, to: TaskId, msg: Inbound) -> Result<(), Gone> {
        let bytes = wire::encode_data(&msg).map_err(|e| {
            tracing::error!(task = to, error = %e, "Cannot encode a batch.");
            Gone(to)
        })?;
        self.sender(to)?.send_data(to, bytes).map_err(|_| Gone(to))
    }
}

impl RemoteSender<AckerIn> for Peers {
    fn send(&self, to: TaskId, msg: AckerIn) -> Result<(), Gone> {
        let AckerIn::Batch(msgs) = msg else {
            return Ok(());
        };
        let bytes = wire::encode_acker(&msgs).map_err(|_| Gone(to))?;
        self.sender(to)?.send_acker(to, bytes).map_err(|_| Gone(to))
    }
}

impl RemoteSender<SpoutMsg> for Peers {
    fn send(&self, to: TaskId, msg: SpoutMsg) -> Result<(), Gone> {
        let bytes = wire::encode_control(&msg).map_err(|_| Gone(to))?;
        self.sender(to)?
            .send_control(to, bytes)
            .map_err(|_| Gone(to))
    }
}

/// The [`Remotes`] of a worker: every task of another worker is reached through
/// `transport`'s connection to that worker.
pub fn remotes(transport: &Transport, plan: &PhysicalPlan) -> Remotes {
    let me = transport.worker();
    let worker_of: Vec<Option<u32>> = std::iter::once(None)
        .chain(plan.tasks().iter().map(|t| Some(t.worker as u32)))
        .collect();
    let senders = (0..plan.workers() as u32)
        .filter(|&w| w != me)
        .filter_map(|w| transport.sender(w).map(|s| (w, s)))
        .collect();
    let peers = Arc::new(Peers { worker_of, senders });
    Remotes {
        data: peers.clone(),
        acker: peers.clone(),
        spout: peers,
    }
}

/// Batches waiting for room in a bolt's queue, with the credit they hold.
type Line = VecDeque<(Inbound, CreditGrant)>;

struct Dispatcher {
    topology: Arc<Topology>,
    data: HashMap<TaskId, Sender<Inbound>>,
    ackers: HashMap<TaskId, Sender<AckerIn>>,
    spouts: HashMap<TaskId, Sender<SpoutMsg>>,
    waiting: HashMap<TaskId, Line>,
}

impl Dispatcher {
    fn handle(&mut self, msg: transport::Delivery) {
        match msg {
            transport::Delivery::Data {
                from,
                dest_task,
                payload,
                grant,
            } => match wire::decode_data(&payload, &self.topology) {
                Ok(m) => self.deliver(dest_task, m, grant),
                Err(e) => tracing::warn!(peer = from, error = %e, "Dropped a data frame."),
            },
            transport::Delivery::Acker {
                from,
                dest_task: to,
                payload,
            } => match wire::decode_acker(&payload) {
                Ok(msgs) => match self.ackers.get(&to) {
                    Some(tx) => {
                        let _ = tx.send(AckerIn::Batch(msgs));
                    }
                    None => {
                        tracing::warn!(peer = from, task = to, "Acker message for no acker here.")
                    }
                },
                Err(e) => tracing::warn!(peer = from, error = %e, "Dropped an acker frame."),
            },
            transport::Delivery::Control {
                from,
                dest_task: to,
                payload,
            } => match wire::decode_control(&payload) {
                Ok(m) => match self.spouts.get(&to) {
                    Some(tx) => {
                        let _ = tx.send(m);
                    }
                    None => {
                        tracing::warn!(peer = from, task = to, "Control message for no spout here.")
                    }
                },
                Err(e) => tracing::warn!(peer = from, error = %e, "Dropped a control frame."),
            },
            transport::Delivery::PeerUp { peer } => tracing::info!(peer, "Peer connected."),
            transport::Delivery::PeerDown { peer } => tracing::warn!(peer, "Peer disconnected."),
        }
    }

    fn deliver(&mut self, to: TaskId, msg: Inbound, grant: CreditGrant) {
        let Some(tx) = self.data.get(&to) else {
            tracing::warn!(task = to, "Batch for no bolt here.");
            return;
        };
        let line = self.waiting.entry(to).or_default();
        if !line.is_empty() {
            line.push_back((msg, grant));
            return;
        }
        match tx.try_send(msg) {
            Ok(()) => drop(grant),
            Err(TrySendError::Full(msg)) => line.push_back((msg, grant)),
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Moves waiting batches into queues with room, in order; true when none waits.
    fn retry(&mut self) -> bool {
        for (to, line) in self.waiting.iter_mut() {
            let Some(tx) = self.data.get(to) else {
                line.clear();
                continue;
            };
            while let Some((msg, grant)) = line.pop_front() {
                match tx.try_send(msg) {
                    Ok(()) => drop(grant),
                    Err(TrySendError::Full(msg)) => {
                        line.push_front((msg, grant));
                        break;
                    }
                    Err(TrySendError::Disconnected(_)) => line.clear(),
                }
            }
        }
        self.waiting.retain(|_, l| !l.is_empty());
        self.waiting.is_empty()
    }
}

/// Starts a thread that delivers what peers send (`inbound`, from [`Transport::start`])
/// into `inboxes`; it ends when the transport shuts down.
pub fn dispatch(
    inbound: Receiver<transport::Delivery>,
    inboxes: &Inboxes,
    topology: Arc<Topology>,
) -> std::io::Result<JoinHandle<()>> {
    let mut d = Dispatcher {
        topology,
        data: inboxes.data.iter().cloned().collect(),
        ackers: inboxes.ackers.iter().cloned().collect(),
        spouts: inboxes.spouts.iter().cloned().collect(),
        waiting: HashMap::new(),
    };
    std::thread::Builder::new()
        .name("topo-dispatch".into())
        .spawn(move || loop {
            let idle = d.retry();
            let msg = if idle {
                inbound.recv().map_err(|_| RecvTimeoutError::Disconnected)
            } else {
                inbound.recv_timeout(Duration::from_micros(200))
            };
            match msg {
                Ok(m) => d.handle(m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        })
}
