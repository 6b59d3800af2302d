//! Task loads for load- and locality-aware `shuffle` (Storm 2's `LoadAwareShuffleGrouping`
//! with its locality awareness, adapted; see [`choose`]).
//!
//! The load of a bolt task is how full its inbox is, from 0 (empty) to [`SCALE`] (full);
//! batches from other workers waiting in its second inbox count as if they were in the first.
//! Each worker samples its own bolt tasks' inboxes every [`SAMPLE_EVERY`] (smoothed over a
//! few samples), and every [`PUBLISH_EVERY`] sends them to its peers in a `Control` frame
//! to the reserved task [`REPORT_TASK`](crate::wire::payload::REPORT_TASK) (the payload is
//! in the table of [`wire::payload`](crate::wire::payload)); what a peer reported is the
//! load of its tasks here. A task nobody reported on yet counts as full: no tuple spills
//! to a worker before it said it has room.
//!
//! A shuffle's router reads the table only when its choice array wraps (at least every
//! [`grouping::CHOICES`](crate::grouping) emits) and only when the table changed since
//! (a generation counter), so an emit stays an index into a small array.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::Sender;

use crate::route::{Inbound, RemoteBatch};
use crate::tuple::TaskId;
use crate::wire::{payload, WireError};

/// A full inbox.
pub(crate) const SCALE: u32 = 1024;
/// Storm's `topology.localityaware.higher.bound` (0.8): local tasks this loaded on
/// average are overloaded.
pub(crate) const HIGH: u32 = SCALE * 8 / 10;
/// Storm's `topology.localityaware.lower.bound` (0.2): spilling stops once the local
/// tasks are this little loaded on average.
pub(crate) const LOW: u32 = SCALE * 2 / 10;
/// A task of another worker has room when it is at least this much less loaded than the
/// local tasks on average: tasks loaded alike (the saturated case) keep tuples local.
pub(crate) const GAP: u32 = SCALE / 4;
/// Weights are spare capacity in steps of 1/`STEPS` of an inbox, at least 1 (so a full
/// task still gets a share): coarse enough that a choice array holds them exactly.
pub(crate) const STEPS: u32 = 16;

/// How often a worker samples its inboxes.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_millis(10);
/// How often a worker sends its loads to its peers.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(50);

/// Every task's last known load, shared by a worker's routers, its sampler and the
/// thread that receives reports.
pub(crate) struct Loads {
    /// Task id -> load, `0..=SCALE`.
    loads: Vec<AtomicU32>,
    /// Changes whenever a load may have changed.
    generation: AtomicU64,
    /// This worker's bolt inboxes.
    local: Vec<(TaskId, Sender<Inbound>)>,
    /// Task id -> runs in this worker (a report never overrides those).
    is_local: Vec<bool>,
    /// Task id -> its inbox for other workers' batches (set once the tasks exist): what
    /// waits there loads the task as much as what waits in its local inbox.
    remote: OnceLock<Vec<Option<Sender<RemoteBatch>>>>,
}

impl std::fmt::Debug for Loads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loads")
            .field("tasks", &self.loads.len())
            .field("local", &self.local.len())
            .finish()
    }
}

impl Loads {
    /// A table for task ids `0..tasks` whose local bolt inboxes are `local`.
    pub(crate) fn new(tasks: usize, local: Vec<(TaskId, Sender<Inbound>)>) -> Loads {
        let mut is_local = vec![false; tasks];
        let loads: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(SCALE)).collect();
        for (t, _) in &local {
            if let Some(l) = is_local.get_mut(*t as usize) {
                *l = true;
                loads[*t as usize].store(0, Ordering::Relaxed);
            }
        }
        Loads {
            loads,
            generation: AtomicU64::new(0),
            local,
            is_local,
            remote: OnceLock::new(),
        }
    }

    /// Adds the tasks' inboxes for other workers' batches to what [`Loads::sample`] counts.
    pub(crate) fn set_remote(&self, inboxes: &[(TaskId, Sender<RemoteBatch>)]) {
        let mut by_task = vec![None; self.is_local.len()];
        for (t, tx) in inboxes {
            if let Some(slot) = by_task.get_mut(*t as usize) {
                *slot = Some(tx.clone());
            }
        }
        let _ = self.remote.set(by_task);
    }

    /// The last known load of `task` (full when unknown).
    #[inline]
    pub(crate) fn load(&self, task: TaskId) -> u32 {
        self.loads
            .get(task as usize)
            .map_or(SCALE, |l| l.load(Ordering::Relaxed))
    }

    /// Changes whenever a load may have changed.
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Samples every local inbox into its smoothed load (3/4 the old, 1/4 the sample).
    pub(crate) fn sample(&self) {
        let remote = self.remote.get();
        for (t, tx) in &self.local {
            let cap = tx.capacity().unwrap_or(0).max(1) as u64;
            let waiting = tx.len()
                + remote
                    .and_then(|r| r.get(*t as usize))
                    .and_then(Option::as_ref)
                    .map_or(0, Sender::len);
            let now = (waiting as u64 * u64::from(SCALE) / cap).min(u64::from(SCALE)) as u32;
            if let Some(l) = self.loads.get(*t as usize) {
                let old = l.load(Ordering::Relaxed);
                l.store((3 * old + now).div_ceil(4), Ordering::Relaxed);
            }
        }
        self.bump();
    }

    /// The local tasks' loads as a report for the peers.
    pub(crate) fn report(&self) -> Bytes {
        payload::encode_loads(self.local.iter().map(|(t, _)| (*t, self.load(*t) as u16)))
    }

    /// Forgets what was reported of `tasks` (their worker went away): they count as full
    /// until their worker reports again.
    pub(crate) fn forget(&self, tasks: impl IntoIterator<Item = TaskId>) {
        for t in tasks {
            if self.is_local.get(t as usize) == Some(&false) {
                self.loads[t as usize].store(SCALE, Ordering::Relaxed);
            }
        }
        self.bump();
    }

    /// Takes in a peer's report. Tasks this table does not know, or that run here, are
    /// ignored; loads above full count as full.
    pub(crate) fn receive(&self, payload: &[u8]) -> Result<(), String> {
        let entries = payload::decode_loads(payload).map_err(|e| match e {
            WireError::Decode { message, .. } => message,
            e => e.to_string(),
        })?;
        for (task, load) in entries {
            let load = u32::from(load).min(SCALE);
            if self.is_local.get(task as usize) == Some(&false) {
                self.loads[task as usize].store(load, Ordering::Relaxed);
            }
        }
        self.bump();
        Ok(())
    }
}

/// Samples the inboxes every [`SAMPLE_EVERY`] and hands a report to `publish` every
/// [`PUBLISH_EVERY`], on a thread of its own; it ends once the table is dropped (every
/// task ended and the running topology is gone).
pub(crate) fn spawn_sampler(
    loads: &Arc<Loads>,
    worker: usize,
    publish: impl Fn(Bytes) + Send + 'static,
) -> std::io::Result<()> {
    let loads: Weak<Loads> = Arc::downgrade(loads);
    let every = (PUBLISH_EVERY.as_millis() / SAMPLE_EVERY.as_millis()).max(1) as u32;
    std::thread::Builder::new()
        .name(format!("load-{worker}"))
        .spawn(move || {
            let mut n = 0u32;
            loop {
                std::thread::sleep(SAMPLE_EVERY);
                let Some(loads) = loads.upgrade() else { break };
                loads.sample();
                n += 1;
                if n.is_multiple_of(every) {
                    publish(loads.report());
                }
            }
        })
        .map(|_| ())
}

/// Which tasks a shuffle sends to, and with what weights (0: not chosen), given the loads
/// of the candidate tasks in the emitter's worker (`local`) and in others (`remote`);
/// `weights` gets the local tasks' weights, then the remote ones'. `spilling` is the
/// previous answer; the new one is returned.
///
/// Like Storm, the emitter starts with its own worker's tasks and leaves that scope when
/// their average load reaches [`HIGH`], returning below [`LOW`]. Unlike Storm, it leaves
/// only for tasks with room ([`GAP`] less loaded than the local average) and sends only to
/// those: when every task is loaded alike (a saturated topology) tuples stay local, where
/// they cost no encoding, no network and no decoding, instead of spreading over every
/// worker. The chosen tasks are weighted by their spare capacity (in [`STEPS`]);
/// without a spill the local tasks get equal weights (a plain round-robin). With no local
/// task, every task is chosen, weighted by its spare capacity.
pub(crate) fn choose(
    local: &[u32],
    remote: &[u32],
    spilling: bool,
    weights: &mut Vec<u32>,
) -> bool {
    let spare = |l: u32| (SCALE.saturating_sub(l) * STEPS).div_ceil(SCALE).max(1);
    weights.clear();
    if local.is_empty() {
        weights.extend(remote.iter().map(|&l| spare(l)));
        return false;
    }
    let avg = local.iter().map(|&l| u64::from(l)).sum::<u64>() / local.len() as u64;
    let avg = avg as u32;
    let room = |l: u32| l + GAP <= avg;
    let bound = if spilling { LOW } else { HIGH };
    let spill = avg >= bound && remote.iter().any(|&l| room(l));
    if spill {
        weights.extend(local.iter().map(|&l| spare(l)));
        weights.extend(remote.iter().map(|&l| if room(l) { spare(l) } else { 0 }));
    } else {
        weights.extend(local.iter().map(|_| 1));
        weights.extend(remote.iter().map(|_| 0));
    }
    spill
}

/// Fills `out` with the tasks of `ids` in exact proportion to `weights` (same order, 0:
/// left out), spread evenly by smooth weighted round-robin: the weights are divided by
/// their greatest common divisor and the array is the shortest whole number of rounds
/// that has at least `len` slots, so equal weights give a plain round-robin.
pub(crate) fn fill(ids: &[TaskId], weights: &[u32], len: usize, out: &mut Vec<TaskId>) {
    out.clear();
    let g = weights.iter().fold(0, |g, &w| gcd(g, w));
    if g == 0 {
        return;
    }
    let chosen: Vec<(TaskId, i64)> = ids
        .iter()
        .zip(weights)
        .filter(|(_, &w)| w > 0)
        .map(|(&t, &w)| (t, i64::from(w / g)))
        .collect();
    let total: i64 = chosen.iter().map(|&(_, w)| w).sum();
    let slots = ((len as i64 + total - 1) / total).max(1) * total;
    let mut current = vec![0i64; chosen.len()];
    for _ in 0..slots {
        for (c, &(_, w)) in current.iter_mut().zip(&chosen) {
            *c += w;
        }
        let best = argmax(&current);
        current[best] -= total;
        out.push(chosen[best].0);
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The first index of the largest value.
fn argmax(v: &[i64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};

    fn chosen(local: &[u32], remote: &[u32], spilling: bool) -> (bool, Vec<u32>) {
        let mut w = Vec::new();
        let s = choose(local, remote, spilling, &mut w);
        (s, w)
    }

    #[test]
    fn unloaded_stays_local_with_equal_weights() {
        assert_eq!(chosen(&[0, 100], &[0, 0], false), (false, vec![1, 1, 0, 0]));
    }

    #[test]
    fn everything_loaded_alike_stays_local() {
        // The saturated benchmark: every inbox (nearly) full everywhere.
        assert_eq!(chosen(&[SCALE], &[SCALE], false), (false, vec![1, 0]));
        assert_eq!(
            chosen(&[SCALE, 900], &[850, 1000], false),
            (false, vec![1, 1, 0, 0])
        );
        // Not even once spilling: nobody has room.
        assert_eq!(
            chosen(&[SCALE], &[SCALE * 7 / 8], true),
            (false, vec![1, 0])
        );
    }

    #[test]
    fn overloaded_local_tasks_spill_to_tasks_with_room_by_spare_capacity() {
        let (spill, w) = chosen(&[SCALE], &[0, SCALE / 2, SCALE], false);
        assert!(spill);
        assert_eq!(w, vec![1, STEPS, STEPS / 2, 0]);
        // Below the high bound nothing spills, however idle the others are.
        assert_eq!(chosen(&[HIGH - 1], &[0], false), (false, vec![1, 0]));
    }

    #[test]
    fn spilling_goes_on_until_the_local_load_is_low_or_nobody_has_room() {
        let (spill, w) = chosen(&[SCALE / 2], &[0], true);
        assert!(spill, "between the bounds the spill goes on");
        assert_eq!(w, vec![STEPS / 2, STEPS]);
        assert_eq!(chosen(&[LOW - 1], &[0], true), (false, vec![1, 0]));
        assert_eq!(
            chosen(&[SCALE / 2], &[SCALE / 2], true),
            (false, vec![1, 0])
        );
    }

    #[test]
    fn without_local_tasks_every_task_is_weighted_by_its_spare_capacity() {
        assert_eq!(chosen(&[], &[0, 0], false), (false, vec![STEPS, STEPS]));
        assert_eq!(
            chosen(&[], &[SCALE / 2, SCALE, SCALE - 1], false),
            (false, vec![STEPS / 2, 1, 1])
        );
    }

    #[test]
    fn equal_weights_fill_a_plain_round_robin() {
        let mut out = Vec::new();
        fill(&[4, 5, 6], &[1, 1, 1], 64, &mut out);
        assert_eq!(out.len(), 66);
        assert!(out.chunks(3).all(|c| c == [4, 5, 6]), "{out:?}");
        fill(&[4, 5, 6], &[1, 0, 1], 64, &mut out);
        assert!(out.chunks(2).all(|c| c == [4, 6]), "{out:?}");
        fill(&[4, 5], &[0, 0], 64, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn weights_fill_in_exact_proportion_and_interleaved() {
        let mut out = Vec::new();
        fill(&[1, 2], &[1, 15], 64, &mut out);
        assert_eq!(out.len(), 64);
        let ones = out.iter().filter(|&&t| t == 1).count();
        assert_eq!(ones, 4, "1/16 of the slots: {out:?}");
        // Spread out, not in a block.
        let at: Vec<usize> = (0..64).filter(|&i| out[i] == 1).collect();
        assert!(at.windows(2).all(|w| w[1] - w[0] == 16), "{at:?}");
        fill(&[1, 2, 3], &[16, 16, 8], 64, &mut out);
        let count = |out: &[TaskId], t| out.iter().filter(|&&x| x == t).count();
        assert_eq!(out.len(), 65, "13 rounds of 2, 2, 1");
        assert_eq!(
            (count(&out, 1), count(&out, 2), count(&out, 3)),
            (26, 26, 13)
        );
        fill(&[1, 2, 3], &[7, 5, 3], 64, &mut out);
        assert_eq!(out.len(), 75);
        assert_eq!(
            (count(&out, 1), count(&out, 2), count(&out, 3)),
            (35, 25, 15)
        );
    }

    #[test]
    fn reports_round_trip_and_never_override_local_tasks() {
        let (tx, _rx) = crossbeam_channel::bounded(4);
        let here = Loads::new(5, vec![(2, tx)]);
        assert_eq!((here.load(2), here.load(3)), (0, SCALE), "unknown is full");
        let (tx, _rx2) = crossbeam_channel::bounded(4);
        let there = Loads::new(5, vec![(3, tx.clone())]);
        tx.send(Inbound::Wake).unwrap();
        tx.send(Inbound::Wake).unwrap();
        for _ in 0..20 {
            there.sample();
        }
        assert_eq!(there.load(3), SCALE / 2, "half full");
        assert_eq!(
            &there.report()[..],
            [0, 0, 0, 3, 0x02, 0x00],
            "task 3 at 512"
        );
        let g = here.generation();
        here.receive(&there.report()).unwrap();
        assert_eq!(here.load(3), SCALE / 2);
        assert!(here.generation() > g);
        here.forget([2, 3]);
        assert_eq!((here.load(2), here.load(3)), (0, SCALE), "gone: full again");
        here.receive(&there.report()).unwrap();
        // A report on task 2 (ours), on an unknown task, or above full.
        let mut evil = BytesMut::new();
        for (t, l) in [(2u32, 7u16), (99, 7), (4, u16::MAX)] {
            evil.put_u32(t);
            evil.put_u16(l);
        }
        here.receive(&evil).unwrap();
        assert_eq!((here.load(2), here.load(4)), (0, SCALE));
        assert_eq!(
            here.receive(&[1, 2, 3]).unwrap_err(),
            "a load report is 3 bytes, not a multiple of 6"
        );
    }
}
