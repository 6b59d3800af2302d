//! Groupings: which tasks of a subscriber get a tuple, with Storm's semantics.
//!
//! One `Router` per (emitting task, stream, subscriber) holds that emitter's state:
//! the round-robin position of a shuffle, the per-task counts of a partial-key grouping.

use smallvec::SmallVec;
use topo_dsl::Grouping;

use crate::tuple::TaskId;
use crate::value::{StableHasher, Value};

/// The task among `n` that a fields grouping sends `values` to: the [`Value::stable_hash`]
/// of the grouping fields' values, in the grouping's field order, modulo `n`. The same
/// in every process.
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

/// One emitter's routing state for one subscription.
#[derive(Debug, Clone)]
pub(crate) enum Router {
    /// Round-robin over `tasks`, from a random start (shuffle, none, local_or_shuffle).
    RoundRobin { tasks: Vec<TaskId>, next: usize },
    /// Hash of the values at `fields` modulo the task count.
    Fields {
        tasks: Vec<TaskId>,
        fields: SmallVec<[usize; 2]>,
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
    /// task runs in the emitter's worker; `start` seeds the round-robin position.
    pub(crate) fn new(
        grouping: &Grouping,
        tasks: &[TaskId],
        declared: &[String],
        local: impl Fn(TaskId) -> bool,
        start: usize,
    ) -> Router {
        let indexes = |names: &[String]| -> SmallVec<[usize; 2]> {
            names
                .iter()
                .filter_map(|n| declared.iter().position(|d| d == n))
                .collect()
        };
        let n = tasks.len().max(1);
        match grouping {
            Grouping::Shuffle | Grouping::None => Router::RoundRobin {
                tasks: tasks.to_vec(),
                next: start % n,
            },
            Grouping::LocalOrShuffle => {
                let near: Vec<TaskId> = tasks.iter().copied().filter(|&t| local(t)).collect();
                let tasks = if near.is_empty() {
                    tasks.to_vec()
                } else {
                    near
                };
                let next = start % tasks.len().max(1);
                Router::RoundRobin { tasks, next }
            }
            Grouping::Fields(f) => Router::Fields {
                tasks: tasks.to_vec(),
                fields: indexes(f),
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
            Router::RoundRobin { tasks, next } => {
                if let Some(&t) = tasks.get(*next) {
                    out.push(t);
                    *next += 1;
                    if *next == tasks.len() {
                        *next = 0;
                    }
                }
            }
            Router::Fields { tasks, fields } => match tasks.len() {
                0 => {}
                // One task gets every key: no need to hash.
                1 => out.push(tasks[0]),
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
            Router::RoundRobin { tasks, next } => {
                if let Some(&t) = tasks.get(*next) {
                    out.push(t);
                    *next += 1;
                    if *next == tasks.len() {
                        *next = 0;
                    }
                }
            }
            Router::Fields { tasks, fields } => match tasks.len() {
                0 => {}
                // One task gets every key: no need to hash.
                1 => out.push(tasks[0]),
                n => {
                    let i = fields_index(fields.iter().map(|&i| &values[i]), n);
                    out.push(tasks[i]);
                }
            },
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
        let mut r = Router::new(&Grouping::Shuffle, &[4, 5, 6], &[], |_| true, 7);
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
        );
        let got: Vec<TaskId> = (0..4).flat_map(|_| route(&mut r, &[])).collect();
        assert_eq!(got, [2, 4, 2, 4]);
    }
}
