//! The runtime's senders to tasks of other workers, over the transport.
//!
//! Data batches are encoded as one `Data` frame each (split in halves while a batch is
//! larger than a frame may be). A batch or end-of-stream for a worker that is not
//! connected waits for the connection to come back (the worker is starting or was
//! restarted): what was lost with the old connection fails its trees and is replayed by
//! the spouts, what comes after goes to the new worker. Acker and control messages never
//! wait: while the peer is away they are dropped, and the trees they concern time out.
//!
//! Every end-of-stream sent is remembered, and sent again whenever a worker reconnects:
//! if it restarted, its new tasks must still see the end of every upstream stream; if it
//! only reconnected, its inbound side drops the ones it already delivered.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;

use crate::plan::PhysicalPlan;
use crate::route::{AckerIn, Gone, Inbound, RemoteSender, SpoutMsg};
use crate::transport::{PeerSender, SendError};
use crate::tuple::TaskId;
use crate::wire;

/// Senders to every task of the plan that runs in another worker.
pub(crate) struct Remote {
    /// Task id -> its worker's sender (`None` for local tasks and unknown ids).
    peers: Vec<Option<PeerSender>>,
    /// (to, from) of every end-of-stream sent.
    eos: Mutex<Vec<(TaskId, TaskId)>>,
}

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
            peers,
            eos: Mutex::new(Vec::new()),
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
        let payload = match wire::encode_data(msg) {
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
        self.send_msg(to, &msg)
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
            // Disconnected: the trees time out and are replayed.
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
