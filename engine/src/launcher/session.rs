//! The per-topology state machine of a run with worker processes, without processes or
//! pipes: what each worker said, and what to tell whom in reply. `topo run`'s launcher
//! drives it over the workers' stdin and stdout; the cluster coordinator drives it over
//! its supervisors' control connections (which relay each worker's lines).
//!
//! The driver reports each message a worker sent ([`Session::on_message`]) and each new
//! incarnation it started ([`Session::started`]); the session answers with the messages to
//! send ([`Outbox`]): `Peers` once every worker listens, `PeerMoved` to the others when a
//! restarted worker listens on a new address, `Finish` to a late one when the run is
//! already finishing. The driver decides when to finish ([`Session::spouts_done`], a
//! timer, a signal) and ends the run once [`Session::ended`].

use std::net::SocketAddr;

use tracing::info;

use super::worker::{FromWorker, ToWorker};
use super::LaunchError;
use crate::metrics::WorkerSnapshot;
use crate::summary::{ComponentSummary, Counts, RunSummary};

/// Messages to send, each to a worker index.
pub type Outbox = Vec<(usize, ToWorker)>;

/// What the session knows about one worker's current incarnation.
#[derive(Debug, Clone, Default)]
pub struct WorkerState {
    /// Where its transport listens, once it said.
    pub addr: Option<SocketAddr>,
    /// It was sent every peer's address.
    pub peers_sent: bool,
    /// It said its tasks run.
    pub running: bool,
    /// Its latest status says every spout task of it is done.
    pub done: bool,
    /// Its summary, once its tasks ended.
    pub summary: Option<RunSummary>,
}

/// The state of one run across its workers.
#[derive(Debug, Clone)]
pub struct Session {
    workers: Vec<WorkerState>,
    finishing: bool,
    /// The latest metrics snapshot of each worker (of its current or previous life).
    snapshots: Vec<Option<WorkerSnapshot>>,
}

impl Session {
    /// A run of `workers` workers, none started yet.
    pub fn new(workers: usize) -> Self {
        Session {
            workers: vec![WorkerState::default(); workers],
            finishing: false,
            snapshots: vec![None; workers],
        }
    }

    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// What is known of worker `w` (panics if `w` is out of range).
    pub fn worker(&self, w: usize) -> &WorkerState {
        &self.workers[w]
    }

    /// The run is finishing: every worker was (or will be) sent `Finish`.
    pub fn finishing(&self) -> bool {
        self.finishing
    }

    /// A new incarnation of worker `w` was started: forget what the old one said.
    pub fn started(&mut self, w: usize) {
        if let Some(s) = self.workers.get_mut(w) {
            *s = WorkerState::default();
        }
    }

    /// A driver that lost its state (a restarted coordinator) learns that worker `w`
    /// listens at `addr` and, if `running`, already has its peers and runs. One that does
    /// not run yet gets `Peers` once every worker's address is known.
    pub fn restore(&mut self, w: usize, addr: SocketAddr, running: bool, out: &mut Outbox) {
        let Some(s) = self.workers.get_mut(w) else {
            return;
        };
        s.addr = Some(addr);
        s.peers_sent |= running;
        s.running |= running;
        self.send_peers(out);
    }

    /// The run finishes whatever the workers said before (a restored driver learns it
    /// from a worker's summary, or ended the run before it lost its state).
    pub fn set_finishing(&mut self) {
        self.finishing = true;
    }

    /// Handles what worker `w` sent; what to send in reply goes to `out`. A worker that
    /// cannot run fails the run.
    pub fn on_message(
        &mut self,
        w: usize,
        msg: FromWorker,
        out: &mut Outbox,
    ) -> Result<(), LaunchError> {
        if w >= self.workers.len() {
            return Ok(());
        }
        match msg {
            FromWorker::Listening { addr } => {
                self.workers[w].addr = Some(addr);
                for (j, s) in self.workers.iter().enumerate() {
                    if j != w && s.peers_sent {
                        out.push((j, ToWorker::PeerMoved { worker: w, addr }));
                    }
                }
                self.send_peers(out);
            }
            FromWorker::Running => self.workers[w].running = true,
            FromWorker::Status { spouts_done } => self.workers[w].done = spouts_done,
            FromWorker::Metrics { snapshot } => self.snapshots[w] = Some(*snapshot),
            FromWorker::Summary { summary } => {
                info!(worker = w, "Worker finished.");
                self.workers[w].summary = Some(summary);
            }
            // The driver's [`Relay`](super::relay::Relay) takes these.
            FromWorker::Tapped { .. } | FromWorker::TapFailed { .. } => {}
            // The driver's checkpoint coordinator takes these.
            FromWorker::Checkpointed { .. } => {}
            FromWorker::Failed { message, invalid } => {
                return Err(LaunchError::Worker {
                    worker: w,
                    message,
                    invalid,
                })
            }
        }
        Ok(())
    }

    /// Sends `Peers` to every worker that lacks them, once every address is known.
    fn send_peers(&mut self, out: &mut Outbox) {
        let addrs: Option<Vec<SocketAddr>> = self.workers.iter().map(|s| s.addr).collect();
        let Some(addrs) = addrs else { return };
        for (w, s) in self.workers.iter_mut().enumerate() {
            if s.peers_sent {
                continue;
            }
            out.push((
                w,
                ToWorker::Peers {
                    addrs: addrs.clone(),
                },
            ));
            s.peers_sent = true;
            if self.finishing {
                out.push((w, ToWorker::Finish));
            }
        }
    }

    /// The run rolls back to a checkpoint: every worker starts over (a new incarnation
    /// of each is started), and a run that was finishing is not any more (its spouts
    /// resume from their checkpointed positions).
    pub fn rollback(&mut self) {
        self.finishing = false;
        for s in &mut self.workers {
            *s = WorkerState::default();
        }
    }

    /// Every worker runs (its current incarnation said so).
    pub fn all_running(&self) -> bool {
        self.workers.iter().all(|s| s.running)
    }

    /// Every worker runs and its latest status says all its spouts are done.
    pub fn spouts_done(&self) -> bool {
        self.workers.iter().all(|s| s.running && s.done)
    }

    /// Ends the run: every worker is sent `Finish` (once).
    pub fn finish(&mut self, out: &mut Outbox) {
        if self.finishing {
            return;
        }
        self.finishing = true;
        for w in 0..self.workers.len() {
            out.push((w, ToWorker::Finish));
        }
    }

    /// Every worker sent its summary: the driver sends `Exit` to each and ends the run.
    pub fn ended(&self) -> bool {
        self.workers.iter().all(|s| s.summary.is_some())
    }

    /// Takes the summaries sent so far, in worker order.
    pub fn take_summaries(&mut self) -> Vec<RunSummary> {
        self.workers
            .iter_mut()
            .filter_map(|s| s.summary.take())
            .collect()
    }

    /// The latest snapshot of each worker that sent one, by worker index.
    pub fn snapshots(&self) -> &[Option<WorkerSnapshot>] {
        &self.snapshots
    }

    /// The latest snapshot of each worker that sent one, in worker order, `running` only
    /// for a worker whose current incarnation runs (not one that died or restarts).
    pub fn live_snapshots(&self) -> Vec<WorkerSnapshot> {
        self.snapshots
            .iter()
            .zip(&self.workers)
            .filter_map(|(s, w)| {
                let mut s = s.clone()?;
                s.running &= w.running;
                Some(s)
            })
            .collect()
    }
}

/// One summary from the workers' summaries (each lists the tasks that ran in it): every
/// component's tasks from all workers, in task order, and their sums.
pub fn merge(summaries: Vec<RunSummary>) -> RunSummary {
    let mut out = RunSummary {
        topology: String::new(),
        elapsed_secs: 0.0,
        components: Vec::new(),
        errors: Vec::new(),
        checkpoints: None,
    };
    for s in summaries {
        out.topology = s.topology;
        out.errors.extend(s.errors);
        for c in s.components {
            let mine = match out.components.iter_mut().find(|m| m.id == c.id) {
                Some(m) => m,
                None => {
                    out.components.push(ComponentSummary {
                        id: c.id.clone(),
                        kind: c.kind.clone(),
                        total: Counts::default(),
                        complete_latency: None,
                        execute_latency: None,
                        capacity: None,
                        tasks: Vec::new(),
                    });
                    out.components.last_mut().expect("just pushed")
                }
            };
            mine.total.add(&c.total);
            mine.tasks.extend(c.tasks);
            // Complete latency: the worker with the most samples speaks for the component.
            if let Some(l) = c.complete_latency {
                if mine.complete_latency.is_none_or(|m| l.samples > m.samples) {
                    mine.complete_latency = Some(l);
                }
            }
        }
    }
    for c in &mut out.components {
        c.tasks.sort_by_key(|t| t.task);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::TaskSummary;

    fn summary(tasks: &[(u32, usize, u64)]) -> RunSummary {
        RunSummary {
            topology: "t".into(),
            elapsed_secs: 1.0,
            components: vec![ComponentSummary {
                id: "c".into(),
                kind: "bolt".into(),
                total: Counts {
                    executed: tasks.iter().map(|t| t.2).sum(),
                    ..Counts::default()
                },
                complete_latency: None,
                execute_latency: None,
                capacity: None,
                tasks: tasks
                    .iter()
                    .map(|&(task, worker, executed)| TaskSummary {
                        task,
                        worker,
                        counts: Counts {
                            executed,
                            ..Counts::default()
                        },
                    })
                    .collect(),
            }],
            errors: vec![format!("from {}", tasks[0].1)],
            checkpoints: None,
        }
    }

    #[test]
    fn summaries_merge_task_by_task() {
        let m = merge(vec![
            summary(&[(1, 0, 5), (3, 0, 7)]),
            summary(&[(2, 1, 11)]),
        ]);
        let c = m.component("c").unwrap();
        assert_eq!(c.total.executed, 23);
        let tasks: Vec<(u32, usize)> = c.tasks.iter().map(|t| (t.task, t.worker)).collect();
        assert_eq!(tasks, [(1, 0), (2, 1), (3, 0)]);
        assert_eq!(m.errors, ["from 0", "from 1"]);
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn peers_go_out_once_every_worker_listens_and_moves_go_to_the_others() {
        let mut s = Session::new(2);
        let mut out = Outbox::new();
        s.on_message(0, FromWorker::Listening { addr: addr(1) }, &mut out)
            .unwrap();
        assert!(out.is_empty());
        s.on_message(1, FromWorker::Listening { addr: addr(2) }, &mut out)
            .unwrap();
        let peers = ToWorker::Peers {
            addrs: vec![addr(1), addr(2)],
        };
        assert_eq!(out, [(0, peers.clone()), (1, peers)]);
        out.clear();
        s.started(1);
        s.finish(&mut out);
        out.clear();
        s.on_message(1, FromWorker::Listening { addr: addr(3) }, &mut out)
            .unwrap();
        let moved = ToWorker::PeerMoved {
            worker: 1,
            addr: addr(3),
        };
        let peers = ToWorker::Peers {
            addrs: vec![addr(1), addr(3)],
        };
        assert_eq!(out, [(0, moved), (1, peers), (1, ToWorker::Finish)]);
    }

    #[test]
    fn a_restored_session_sends_peers_only_to_workers_that_do_not_run() {
        let mut s = Session::new(2);
        let mut out = Outbox::new();
        s.restore(0, addr(1), true, &mut out);
        assert!(out.is_empty());
        s.restore(1, addr(2), false, &mut out);
        let peers = ToWorker::Peers {
            addrs: vec![addr(1), addr(2)],
        };
        assert_eq!(out, [(1, peers)]);
    }
}
