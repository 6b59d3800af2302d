//! Groupings: which tasks of a subscriber get a tuple, with Storm's semantics.
//!
//! One `Router` per (emitting task, stream, subscriber) holds that emitter's state:
//! the round-robin position of a shuffle, the per-task counts of a partial-key grouping.
//!
//! With several workers, `shuffle` and `none` are load- and locality-aware by default, as
//! in Storm 2 (`disable_loadaware_messaging` turns it off): the emitter round-robins over
//! a choice array of at least 64 slots, which holds its own worker's tasks while they are
//! not overloaded and other workers' tasks with room when they are (see the private
//! `load` module). The array is rebuilt only when it wraps and the loads changed.

use std::sync::Arc;

use smallvec::SmallVec;
use topo_dsl::Grouping;

use crate::load::{self, Loads};
use crate::tuple::TaskId;
use crate::value::{StableHasher, Value};

/// The task among `n` that a fields grouping sends `values` to: the [`Value::stable_hash`]
/// of the grouping fields' values, in the grouping's field order, modulo `n`. The same
/// in every process.
#[inline]
pub fn fields_index<'a>(values: impl IntoIterator<Item = &'a Value>, n: usize) -> usize {
    modulo(fields_hash(values), n)
}

/// `h % n`, without a division when `n` is a power of two (the same result).
#[inline]
fn modulo(h: u64, n: usize) -> usize {
    let n = n.max(1) as u64;
    if n.is_power_of_two() {
        (h & (n - 1)) as usize
    } else {
        (h % n) as usize
    }
}

#[inline]
fn fields_hash<'a>(values: impl IntoIterator<Item = &'a Value>) -> u64 {
    let mut h = StableHasher::default();
    for v in values {
        v.stable_hash(&mut h);
    }
    h.finish()
}

/// A second, independent hash for partial-key grouping's second candidate.
fn rehash(h: u64) -> u64 {
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Slots in a load-aware shuffle's choice array (at least): it is rebuilt at most once
/// per this many emits.
pub(crate) const CHOICES: usize = 64;

/// A load-aware shuffle's inputs: the candidate tasks by locality, the loads, and the
/// last choice.
#[derive(Debug, Clone)]
pub(crate) struct Balance {
    loads: Arc<Loads>,
    /// The emitter's worker's tasks, then the others'.
    ids: Vec<TaskId>,
    local: usize,
    generation: u64,
    spilling: bool,
    weights: Vec<u32>,
    scratch: Vec<u32>,
    sampled: Vec<u32>,
}

impl Balance {
    /// Rebuilds `tasks` when the loads changed since the last time and so did the choice.
    #[inline(never)]
    fn refresh(&mut self, tasks: &mut Vec<TaskId>) {
        let g = self.loads.generation();
        if g == self.generation {
            return;
        }
        self.generation = g;
        self.sampled.clear();
        self.sampled
            .extend(self.ids.iter().map(|&t| self.loads.load(t)));
        let (local, remote) = self.sampled.split_at(self.local);
        self.spilling = load::choose(local, remote, self.spilling, &mut self.scratch);
        if self.scratch != self.weights {
            std::mem::swap(&mut self.scratch, &mut self.weights);
            load::fill(&self.ids, &self.weights, CHOICES, tasks);
        }
    }
}

/// One emitter's routing state for one subscription.
#[derive(Debug, Clone)]
pub(crate) enum Router {
    /// Round-robin over `tasks`, from a random start (shuffle, none, local_or_shuffle);
    /// load-aware when `balance` is set.
    RoundRobin {
        tasks: Vec<TaskId>,
        next: usize,
        balance: Option<Box<Balance>>,
    },
    /// Hash of the values at `fields` modulo the task count; with `keyed` (a
    /// checkpointed topology), the hash's key group's task (see [`crate::state`]), so
    /// each task owns a range of key groups that a restore with another parallelism
    /// can move.
    Fields {
        tasks: Vec<TaskId>,
        fields: SmallVec<[usize; 2]>,
        keyed: bool,
    },
    /// Two candidates by two hashes; the one this emitter sent fewer tuples to wins.
    PartialKey {
        tasks: Vec<TaskId>,
        fields: SmallVec<[usize; 2]>,
        sent: Vec<u64>,
    },
    /// Every task.
    All { tasks: Vec<TaskId> },
    /// One task (global: the lowest id).
    One { task: TaskId },
    /// The emitter names the task; it must be one of `tasks`.
    Direct { tasks: Vec<TaskId> },
}

impl Router {
    /// The router for a subscription with `grouping` to a component whose tasks are
    /// `tasks` (ascending). `declared` are the stream's fields; `local` says whether a
    /// task runs in the emitter's worker; `start` seeds the round-robin position; with
    /// `loads`, a shuffle whose tasks are not all local is load- and locality-aware.
    pub(crate) fn new(
        grouping: &Grouping,
        tasks: &[TaskId],
        declared: &[String],
        local: impl Fn(TaskId) -> bool,
        start: usize,
        loads: Option<&Arc<Loads>>,
    ) -> Router {
        let indexes = |names: &[String]| -> SmallVec<[usize; 2]> {
            names
                .iter()
                .filter_map(|n| declared.iter().position(|d| d == n))
                .collect()
        };
        let n = tasks.len().max(1);
        match grouping {
            Grouping::Shuffle | Grouping::None => match loads {
                Some(loads) if !tasks.iter().all(|&t| local(t)) => {
                    Router::load_aware(tasks, local, start, loads)
                }
                _ => Router::RoundRobin {
                    tasks: tasks.to_vec(),
                    next: start % n,
                    balance: None,
                },
            },
            Grouping::LocalOrShuffle => {
                let near: Vec<TaskId> = tasks.iter().copied().filter(|&t| local(t)).collect();
                let tasks = if near.is_empty() {
                    tasks.to_vec()
                } else {
                    near
                };
                let next = start % tasks.len().max(1);
                Router::RoundRobin {
                    tasks,
                    next,
                    balance: None,
                }
            }
            Grouping::Fields(f) => Router::Fields {
                tasks: tasks.to_vec(),
                fields: indexes(f),
                keyed: false,
            },
            Grouping::PartialKey(f) => Router::PartialKey {
                tasks: tasks.to_vec(),
                fields: indexes(f),
                sent: vec![0; tasks.len()],
            },
            Grouping::All => Router::All {
                tasks: tasks.to_vec(),
            },
            Grouping::Global => Router::One {
                task: tasks.iter().copied().min().unwrap_or(0),
            },
            Grouping::Direct => Router::Direct {
                tasks: tasks.to_vec(),
            },
        }
    }

    /// Makes a fields grouping route by key group when the topology checkpoints; other
    /// routers are returned as they are.
    pub(crate) fn keyed_if(mut self, checkpointed: bool) -> Router {
        if let Router::Fields { keyed, .. } = &mut self {
            *keyed = checkpointed;
        }
        self
    }

    /// A load-aware shuffle over `tasks`, starting with the local ones (or all of them
    /// equally, when none is local).
    fn load_aware(
        tasks: &[TaskId],
        local: impl Fn(TaskId) -> bool,
        start: usize,
        loads: &Arc<Loads>,
    ) -> Router {
        let mut ids: Vec<TaskId> = tasks.iter().copied().filter(|&t| local(t)).collect();
        let near = ids.len();
        ids.extend(tasks.iter().copied().filter(|&t| !local(t)));
        let weights: Vec<u32> = if near == 0 {
            vec![1; ids.len()]
        } else {
            (0..ids.len()).map(|i| u32::from(i < near)).collect()
        };
        let mut choices = Vec::new();
        load::fill(&ids, &weights, CHOICES, &mut choices);
        let next = start % choices.len().max(1);
        Router::RoundRobin {
            tasks: choices,
            next,
            balance: Some(Box::new(Balance {
                loads: Arc::clone(loads),
                ids,
                local: near,
                generation: loads.generation(),
                spilling: false,
                weights,
                scratch: Vec::new(),
                sampled: Vec::new(),
            })),
        }
    }

    /// Appends the tasks that get a tuple with `values` to `out`. `direct` is the task an
    /// `emit_direct` named; a direct router adds it when it is one of its tasks.
    ///
    /// Shuffle and fields, the groupings of nearly every emit, are inlined into the
    /// emit; the others are a call.
    #[inline(always)]
    pub(crate) fn route(
        &mut self,
        values: &[Value],
        direct: Option<TaskId>,
        out: &mut Vec<TaskId>,
    ) {
        match self {
            Router::RoundRobin {
                tasks,
                next,
                balance,
            } => {
                if let Some(&t) = tasks.get(*next) {
                    out.push(t);
                    *next += 1;
                    if *next == tasks.len() {
                        *next = 0;
                        if let Some(b) = balance {
                            b.refresh(tasks);
                        }
                    }
                }
            }
            Router::Fields {
                tasks,
                fields,
                keyed,
            } => match tasks.len() {
                0 => {}
                // One task gets every key: no need to hash.
                1 => out.push(tasks[0]),
                n if *keyed => {
                    let g =
                        crate::state::key_group(fields_hash(fields.iter().map(|&i| &values[i])));
                    out.push(tasks[crate::state::key_group_task(g, n)]);
                }
                n => {
                    let i = fields_index(fields.iter().map(|&i| &values[i]), n);
                    out.push(tasks[i]);
                }
            },
            _ => self.route_other(values, direct, out),
        }
    }

    #[inline(never)]
    fn route_other(&mut self, values: &[Value], direct: Option<TaskId>, out: &mut Vec<TaskId>) {
        match self {
            // `route` handles these two inline and never calls this for them.
            Router::RoundRobin { .. } | Router::Fields { .. } => {
                unreachable!("shuffle and fields are routed inline")
            }
            Router::PartialKey {
                tasks,
                fields,
                sent,
            } => {
                if tasks.len() == 1 {
                    sent[0] += 1;
                    out.push(tasks[0]);
                } else if !tasks.is_empty() {
                    let h = fields_hash(fields.iter().map(|&i| &values[i]));
                    let a = modulo(h, tasks.len());
                    let b = modulo(rehash(h), tasks.len());
                    let i = if sent[b] < sent[a] { b } else { a };
                    sent[i] += 1;
                    out.push(tasks[i]);
                }
            }
            Router::All { tasks } => out.extend_from_slice(tasks),
            Router::One { task } => out.push(*task),
            Router::Direct { tasks } => {
                if let Some(t) = direct.filter(|t| tasks.contains(t)) {
                    out.push(t);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Inbound;

    fn route(r: &mut Router, values: &[Value]) -> Vec<TaskId> {
        let mut out = Vec::new();
        r.route(values, None, &mut out);
        out
    }

    #[test]
    fn modulo_is_the_remainder() {
        for n in 1..20 {
            for h in [0, 1, 7, 12345, u64::MAX, u64::MAX / 3] {
                assert_eq!(modulo(h, n) as u64, h % n as u64);
            }
        }
    }

    #[test]
    fn shuffle_is_even() {
        let mut r = Router::new(&Grouping::Shuffle, &[4, 5, 6], &[], |_| true, 7, None);
        let mut counts = [0; 3];
        for _ in 0..30 {
            for t in route(&mut r, &[]) {
                counts[(t - 4) as usize] += 1;
            }
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn partial_key_splits_a_hot_key_over_two_tasks() {
        let fields = vec!["w".to_string()];
        let mut r = Router::new(
            &Grouping::PartialKey(fields.clone()),
            &[1, 2, 3, 4, 5, 6, 7, 8],
            &fields,
            |_| true,
            0,
            None,
        );
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..100 {
            for t in route(&mut r, &[Value::from("hot")]) {
                *seen.entry(t).or_insert(0) += 1;
            }
        }
        let counts: Vec<i32> = seen.values().copied().collect();
        assert_eq!(
            counts,
            [50, 50],
            "two candidates share the key evenly: {seen:?}"
        );
    }

    #[test]
    fn local_or_shuffle_prefers_local_tasks() {
        let mut r = Router::new(
            &Grouping::LocalOrShuffle,
            &[1, 2, 3, 4],
            &[],
            |t| t % 2 == 0,
            0,
            None,
        );
        let got: Vec<TaskId> = (0..4).flat_map(|_| route(&mut r, &[])).collect();
        assert_eq!(got, [2, 4, 2, 4]);
    }

    /// Routes `n` tuples; counts per task.
    fn spread(r: &mut Router, n: usize) -> std::collections::BTreeMap<TaskId, usize> {
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..n {
            for t in route(r, &[]) {
                *seen.entry(t).or_insert(0) += 1;
            }
        }
        seen
    }

    #[test]
    fn a_load_aware_shuffle_stays_local_until_the_local_tasks_are_overloaded() {
        use crate::load::{Loads, SCALE};
        // Tasks 1 and 3 are local; 2 and 4 run in another worker.
        let (tx1, _rx1) = crossbeam_channel::bounded(4);
        let (tx3, _rx3) = crossbeam_channel::bounded(4);
        let loads = Arc::new(Loads::new(5, vec![(1, tx1.clone()), (3, tx3.clone())]));
        let mut r = Router::new(
            &Grouping::Shuffle,
            &[1, 2, 3, 4],
            &[],
            |t| t % 2 == 1,
            5,
            Some(&loads),
        );
        let seen = spread(&mut r, 640);
        assert_eq!(seen, [(1, 320), (3, 320)].into(), "unloaded: local only");

        // The others report room, but the local inboxes are empty: still local.
        let report = |entries: &[(u32, u16)]| {
            let mut b = Vec::new();
            for (t, l) in entries {
                b.extend(t.to_be_bytes());
                b.extend(l.to_be_bytes());
            }
            b
        };
        loads.receive(&report(&[(2, 0), (4, 0)])).unwrap();
        assert_eq!(spread(&mut r, 640), [(1, 320), (3, 320)].into());

        // Both local inboxes fill up: the rest spills to 2 and 4, evenly.
        for _ in 0..4 {
            tx1.send(Inbound::Wake).unwrap();
            tx3.send(Inbound::Wake).unwrap();
        }
        for _ in 0..20 {
            loads.sample();
        }
        assert!(loads.load(1) > SCALE - 8, "{}", loads.load(1));
        let seen = spread(&mut r, 64 * 100);
        assert!(
            seen[&1] > 0 && seen[&3] > 0,
            "a full task still gets a share: {seen:?}"
        );
        assert_eq!(seen[&2], seen[&4], "{seen:?}");
        assert!(
            seen[&2] > 10 * seen[&1],
            "most go to tasks with room: {seen:?}"
        );

        // The others are as full: back to local only.
        loads.receive(&report(&[(2, 1000), (4, 1000)])).unwrap();
        spread(&mut r, 64);
        assert_eq!(spread(&mut r, 640), [(1, 320), (3, 320)].into());
    }

    #[test]
    fn without_local_tasks_a_load_aware_shuffle_weighs_every_task() {
        use crate::load::Loads;
        let loads = Arc::new(Loads::new(4, Vec::new()));
        let mut r = Router::new(&Grouping::None, &[1, 2, 3], &[], |_| false, 0, Some(&loads));
        assert_eq!(
            spread(&mut r, 66 * 10),
            [(1, 220), (2, 220), (3, 220)].into(),
            "nothing reported yet: equal"
        );
        // Task 3 is half full, the others empty: weights 2, 2, 1.
        loads.receive(&[0, 0, 0, 3, 2, 0]).unwrap();
        loads
            .receive(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 0])
            .unwrap();
        spread(&mut r, 66);
        let seen = spread(&mut r, 64 * 10);
        assert_eq!(seen[&1], seen[&2], "{seen:?}");
        assert!(seen[&1].abs_diff(2 * seen[&3]) <= 20, "{seen:?}");
    }

    #[test]
    fn local_or_shuffle_ignores_loads() {
        use crate::load::Loads;
        let loads = Arc::new(Loads::new(5, Vec::new()));
        let mut r = Router::new(
            &Grouping::LocalOrShuffle,
            &[1, 2, 3, 4],
            &[],
            |t| t % 2 == 0,
            0,
            Some(&loads),
        );
        assert!(matches!(r, Router::RoundRobin { balance: None, .. }));
        let got: Vec<TaskId> = (0..4).flat_map(|_| route(&mut r, &[])).collect();
        assert_eq!(got, [2, 4, 2, 4]);
    }

    #[test]
    fn a_disabled_or_all_local_shuffle_is_a_plain_round_robin() {
        use crate::load::Loads;
        let loads = Arc::new(Loads::new(4, Vec::new()));
        let r = Router::new(
            &Grouping::Shuffle,
            &[1, 2, 3],
            &[],
            |_| true,
            0,
            Some(&loads),
        );
        assert!(
            matches!(r, Router::RoundRobin { balance: None, ref tasks, .. } if tasks == &[1, 2, 3])
        );
        let r = Router::new(&Grouping::Shuffle, &[1, 2, 3], &[], |_| false, 0, None);
        assert!(
            matches!(r, Router::RoundRobin { balance: None, ref tasks, .. } if tasks == &[1, 2, 3])
        );
    }
}
