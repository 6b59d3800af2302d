//! The checkpoints of a checkpointed topology in cluster mode: the coordinator plays
//! `topo run`'s part. It runs the engine's checkpoint [`Coordinator`] for the topology,
//! sends `Checkpoint` to every worker through its supervisor, takes the `Checkpointed`
//! confirmations they relay, and when a worker is lost (its supervisor dropped or
//! restarted without it, or a supervisor restarted it on its own) rolls every worker of
//! the topology back to the newest committed checkpoint: each is stopped and assigned
//! again with `restore` set.
//!
//! The checkpoints must be where every host and the coordinator reach them:
//! `state_backend = "redis"` (a submit with `local` is refused).

use topo_engine::state::{CheckpointStore, Confirm, Coordinator, RedisBackend};

use super::*;

/// How long after a failed try the checkpoints of a topology are opened again.
const OPEN_RETRY: Duration = Duration::from_secs(5);

/// A checkpointed topology's coordinator and when its next checkpoint starts.
pub(super) struct Checkpoints {
    pub(super) coordinator: Coordinator,
    interval: Duration,
    next: Instant,
}

/// What a topology file says about checkpoints: `None` without them, else the Redis
/// URL (or why the topology cannot take checkpoints in a cluster).
pub(super) fn redis_url(spec: &topo_dsl::TopologySpec) -> Option<Result<String, String>> {
    spec.checkpoint_interval_secs?;
    Some(match (spec.state_backend.as_deref(), &spec.state_url) {
        (Some("redis"), Some(url)) => Ok(url.clone()),
        _ => Err(
            "a checkpointed topology needs state_backend = \"redis\" (with state_url, \
             reachable from every host) in cluster mode: the coordinator and every \
             supervisor must reach its checkpoints"
                .into(),
        ),
    })
}

/// Opens the checkpoint coordinator of the topology file `text`: `None` when it takes no
/// checkpoints.
fn open(text: &str) -> Option<Result<Checkpoints, String>> {
    let (spec, _) = topo_dsl::parse(text);
    let url = match redis_url(&spec)? {
        Ok(url) => url,
        Err(e) => return Some(Err(e)),
    };
    let name = spec.name.clone().unwrap_or_else(|| "topology".into());
    let expected = spec
        .components
        .iter()
        .map(|c| c.parallelism.unwrap_or(1).max(1) as usize)
        .sum();
    let interval = Duration::from_secs_f64(spec.checkpoint_interval_secs?.max(0.01));
    let opened = RedisBackend::open(&url, &name)
        .and_then(|b| {
            Coordinator::for_tasks(CheckpointStore::new(Arc::new(b)), &name, expected, interval)
        })
        .map_err(|e| e.to_string());
    Some(opened.map(|coordinator| Checkpoints {
        coordinator,
        interval,
        next: Instant::now() + interval,
    }))
}

impl Checkpoints {
    /// The next checkpoint starts at the next tick (a rebalance waits for it).
    pub(super) fn due_now(&mut self) {
        self.next = Instant::now();
    }
}

impl Topology {
    /// Its workers will resume from the newest committed checkpoint: the checkpoint in
    /// flight fails, and the next one starts an interval from now.
    pub(super) fn rewind(&mut self) {
        let Some(mut c) = self.checkpoints.take() else {
            return;
        };
        c.coordinator.rollback();
        self.latest_restore(&c);
        c.next = Instant::now() + c.interval;
        self.checkpoints = Some(c);
    }

    /// Its workers will restore the newest committed checkpoint in `c`'s store (the last
    /// one known when the store cannot be read).
    pub(super) fn latest_restore(&mut self, c: &Checkpoints) {
        match c.coordinator.store().latest() {
            Ok(latest) => {
                self.record.restore = latest.map(|r| r.manifest.id).or(self.record.restore)
            }
            Err(e) => {
                warn!(topology = %self.record.id, error = %e, "Cannot read the checkpoints; rolling back to the last one known.")
            }
        }
    }

    /// It takes checkpoints now: active, or rebalancing from active (waiting for one).
    fn takes_checkpoints(&self) -> bool {
        match self.record.status {
            Status::Active => true,
            Status::Rebalancing => self
                .record
                .rebalance
                .as_ref()
                .is_some_and(|r| r.status == Status::Active),
            _ => false,
        }
    }
}

impl Coord {
    /// Opens the checkpoint coordinator of each live checkpointed topology that lacks
    /// one, and starts the checkpoints that are due.
    pub(super) fn tick_checkpoints(&mut self) {
        let ids: Vec<String> = self.topologies.keys().cloned().collect();
        for id in ids {
            let Some(t) = self.topologies.get_mut(&id) else {
                continue;
            };
            if !t.record.status.is_live() {
                if let Some(mut c) = t.checkpoints.take() {
                    c.coordinator.abandon();
                }
                continue;
            }
            let due = t.checkpoints_retry.is_none_or(|at| Instant::now() >= at);
            if t.checkpoints.is_none() && t.checkpointed && due {
                match open(&t.record.text) {
                    None => {}
                    Some(Ok(mut c)) => {
                        if let Some(earlier) = &t.record.checkpoints {
                            c.coordinator.continue_from(earlier);
                        }
                        t.checkpoints = Some(c);
                        t.checkpoints_retry = None;
                    }
                    Some(Err(e)) => {
                        warn!(topology = %id, error = %e, "Cannot open the checkpoints; retrying in {} s.", OPEN_RETRY.as_secs());
                        t.checkpoints_retry = Some(Instant::now() + OPEN_RETRY);
                        continue;
                    }
                }
            }
            let ready = t.takes_checkpoints()
                && t.session.all_running()
                && !t.session.finishing()
                && !t.awaiting.iter().any(|&a| a);
            let Some(c) = &mut t.checkpoints else {
                continue;
            };
            let figures = Some(c.coordinator.summary());
            if t.record.checkpoints != figures {
                t.record.checkpoints = figures;
                self.dirty = true;
            }
            let now = Instant::now();
            if now < c.next || !ready {
                continue;
            }
            c.next = now + c.interval;
            if let Some(cid) = c.coordinator.start(now) {
                let out: Outbox = (0..t.record.workers)
                    .map(|w| (w, ToWorker::Checkpoint { id: cid }))
                    .collect();
                self.deliver(&id, out);
            }
        }
    }

    /// A worker of `id` confirmed its part of a checkpoint; a rebalance waiting for a
    /// committed checkpoint restarts the topology once this completed one.
    pub(super) fn checkpointed_part(&mut self, id: &str, confirm: Confirm) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        let Some(c) = t.checkpoints.as_mut() else {
            return;
        };
        let Some(m) = c.coordinator.confirm(confirm) else {
            return;
        };
        info!(topology = id, checkpoint = m.id, "Checkpoint committed.");
        t.record.checkpoints = Some(c.coordinator.summary());
        let rebalance = t.record.status == Status::Rebalancing && t.record.rebalance.is_some();
        self.dirty = true;
        if rebalance {
            self.restart_rebalanced(id);
        }
    }

    /// A worker of the checkpointed topology `id` was lost: every worker is stopped and
    /// assigned again (those without a supervisor are placed anew), to resume from the
    /// newest committed checkpoint.
    pub(super) fn rollback(&mut self, id: &str, why: &str) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        if !t.record.status.is_live() {
            return;
        }
        t.rewind();
        warn!(
            topology = id,
            checkpoint = t.record.restore,
            "{why}; rolling every worker back to the last committed checkpoint."
        );
        t.session.rollback();
        t.record.finishing = false;
        let assignments = t.record.assignments.clone();
        self.dirty = true;
        for (w, sup) in assignments.iter().enumerate() {
            let Some(sup) = sup else { continue };
            self.send(
                sup,
                ToSupervisor::Stop {
                    topology: id.to_string(),
                    worker: w,
                },
            );
            let Some(t) = self.topologies.get_mut(id) else {
                return;
            };
            t.awaiting[w] = true;
            let a = self.assignment(&self.topologies[id], w);
            self.send(sup, ToSupervisor::Assign { assignment: a });
        }
        self.place();
    }
}
