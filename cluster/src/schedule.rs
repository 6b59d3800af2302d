//! Placing workers onto supervisors' slots.
//!
//! Each worker without a supervisor goes to a supervisor with a free slot, preferring one
//! that runs no worker of the same topology yet (a topology's workers spread over the
//! hosts, as the planner spreads a component's tasks over the workers), then the one with
//! the fewest workers assigned, then the lowest id (so the result is deterministic).

use std::collections::BTreeMap;

/// One supervisor as the scheduler sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Workers it may run.
    pub slots: usize,
    /// Workers assigned to it now, of every topology.
    pub used: usize,
}

/// Places the workers of one topology whose entry in `assignments` is `None` onto `hosts`
/// (by supervisor id), updating both. Workers left `None` found no free slot.
pub fn place(assignments: &mut [Option<String>], hosts: &mut BTreeMap<String, Host>) {
    for w in 0..assignments.len() {
        if assignments[w].is_some() {
            continue;
        }
        let best = hosts
            .iter()
            .filter(|(_, h)| h.used < h.slots)
            .min_by_key(|(id, h)| {
                let mine = assignments
                    .iter()
                    .filter(|a| a.as_deref() == Some(id.as_str()))
                    .count();
                (mine, h.used, (*id).clone())
            })
            .map(|(id, _)| id.clone());
        if let Some(id) = best {
            if let Some(h) = hosts.get_mut(&id) {
                h.used += 1;
            }
            assignments[w] = Some(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(spec: &[(&str, usize, usize)]) -> BTreeMap<String, Host> {
        spec.iter()
            .map(|&(id, slots, used)| (id.to_string(), Host { slots, used }))
            .collect()
    }

    #[test]
    fn a_topology_spreads_over_every_host() {
        let mut h = hosts(&[("a", 4, 0), ("b", 4, 0), ("c", 4, 0)]);
        let mut a = vec![None; 3];
        place(&mut a, &mut h);
        let a: Vec<_> = a.into_iter().flatten().collect();
        assert_eq!(a, ["a", "b", "c"]);
        assert!(h.values().all(|h| h.used == 1));
    }

    #[test]
    fn the_least_loaded_host_goes_first_and_full_ones_are_skipped() {
        let mut h = hosts(&[("a", 2, 2), ("b", 4, 3), ("c", 4, 1)]);
        let mut a = vec![None, Some("b".to_string()), None, None];
        place(&mut a, &mut h);
        assert_eq!(
            a,
            [
                Some("c".to_string()),
                Some("b".to_string()),
                Some("c".to_string()),
                Some("b".to_string()),
            ]
        );
        assert_eq!((h["b"].used, h["c"].used), (4, 3));
    }

    #[test]
    fn workers_without_a_free_slot_stay_unplaced() {
        let mut h = hosts(&[("a", 1, 0)]);
        let mut a = vec![None, None];
        place(&mut a, &mut h);
        assert_eq!(a, [Some("a".to_string()), None]);
    }
}
