//! `window_aggregate`'s checkpoint: each key's pane aggregates as keyed state (so a
//! rescaled task gets the keys of its key groups), and the task's watermark, window
//! bookkeeping and pane times as task state.
//!
//! A resume at another parallelism gives a task keys of several old tasks, which had
//! each their own watermark and had fired windows up to their own point. Every old
//! task's own state comes back with the key groups it owned
//! ([`TaskStateReader::every_task`]), so the task keeps, per key group, what its old
//! owner had done ([`Moved`]): it starts from the lowest watermark and the earliest
//! open window of those owners, sends a tuple to `late` when it is behind its key
//! group's old watermark, and writes a window of a key only if that key's old owner had
//! not fired it. The upstream tasks' latest timestamps start over (the input after the
//! checkpoint moves the watermark on). Count windows count per task: a rescaled task
//! takes the count of the old task with its index.
//!
//! Tuples held for acking are not in it: after a rollback their trees are gone and the
//! spouts send them again.

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry;
use std::ops::Range;

use topo_engine::state::{key_group_of, key_group_range, TaskState, TaskStateReader, KEY_GROUPS};
use topo_engine::{Result, Tuple, Value};

use super::acc::{Acc, Group, Groups, Key};
use super::{Pane, WindowAggregate};

/// One key's entry of the keyed state while it is gathered: the key's hash, its values
/// and its aggregate in each pane.
type KeyPanes = (u64, Vec<Value>, Vec<(i64, Acc)>);

/// Per key group of a task resumed at another parallelism, what the group's old owner
/// had done at the checkpoint: its watermark (a tuple behind it was late there) and the
/// start before which it had fired every window. Indexed by key group; empty when
/// every group of the task is where the task is.
#[derive(Debug, Clone, Default)]
pub(super) struct Moved(Vec<(i64, i64)>);

impl Moved {
    /// Group `g`'s watermark and fired bound (the lowest when the table is empty).
    pub(super) fn get(&self, g: u32) -> (i64, i64) {
        self.0
            .get(g as usize)
            .copied()
            .unwrap_or((i64::MIN, i64::MIN))
    }
}

/// The task state: what is not per key.
#[derive(Debug, Serialize, Deserialize)]
struct TaskPart {
    /// Each upstream task's latest timestamp, and the watermark.
    latest: Vec<(u32, i64)>,
    watermark: i64,
    newest: i64,
    next: Option<i64>,
    /// Every window that starts before it has fired.
    fired: i64,
    arrived: u64,
    late: u64,
    /// Each pane's first and last time.
    panes: Vec<(i64, i64, i64)>,
    /// Key groups whose watermark or fired bound is ahead of the task's (group,
    /// watermark, fired): keys moved here by a rescaled resume.
    ahead: Vec<(u32, i64, i64)>,
}

impl WindowAggregate {
    /// Every pane (the hot one too), by index.
    fn all_panes(&self) -> impl Iterator<Item = (i64, &Pane)> {
        let hot = self.hot_idx.map(|i| (i, &self.hot));
        self.panes.iter().map(|(i, p)| (*i, p)).chain(hot)
    }

    /// Writes the windows into `state`.
    pub(super) fn snapshot_windows(&self, state: &mut TaskState) -> Result<()> {
        // Each key's panes, found by the key's hash.
        let mut keyed: HashTable<KeyPanes> = HashTable::new();
        let mut times = Vec::new();
        for (i, pane) in self.all_panes() {
            times.push((i, pane.first_ts, pane.last_ts));
            for g in pane.groups.iter() {
                let entry = keyed.entry(
                    g.hash,
                    |(h, k, _)| *h == g.hash && k.as_slice() == g.key.0.as_slice(),
                    |(h, _, _)| *h,
                );
                entry
                    .or_insert_with(|| (g.hash, g.key.0.to_vec(), Vec::new()))
                    .into_mut()
                    .2
                    .push((i, g.acc.clone()));
            }
        }
        times.sort_unstable();
        state.put_map(keyed.iter().map(|(_, k, panes)| (k, panes)))?;
        state.put_task(&TaskPart {
            latest: self.watermarks.latest().to_vec(),
            watermark: self.watermarks.current(),
            newest: self.newest,
            next: self.next,
            fired: self.fired,
            arrived: self.arrived,
            late: self.late,
            panes: times,
            ahead: self.ahead(),
        })?;
        Ok(())
    }

    /// The key groups whose old owner is still ahead of this task.
    fn ahead(&self) -> Vec<(u32, i64, i64)> {
        let (wm, fired) = (self.watermarks.current(), self.fired);
        (0..self.moved.0.len() as u32)
            .map(|g| (g, self.moved.get(g)))
            .filter(|(_, (w, f))| *w > wm || *f > fired)
            .map(|(g, (w, f))| (g, w.max(wm), f.max(fired)))
            .collect()
    }

    /// Takes back the windows `state` holds (nothing for a fresh start).
    pub(super) fn restore_windows(&mut self, state: &TaskStateReader) -> Result<()> {
        self.hot = Pane::default();
        self.hot_idx = None;
        self.panes.clear();
        // The running window is summed again from the panes at the first window.
        self.running = Groups::default();
        self.lo = i64::MIN;
        self.hi = i64::MIN;
        self.moved = Moved::default();
        self.late_below = i64::MIN;
        self.fired_below = i64::MIN;
        if let Some(t) = state.task::<TaskPart>()? {
            self.arrived = t.arrived;
            self.late = t.late;
        }
        // The old tasks whose key groups this task owns now.
        let mine = key_group_range(self.task_index, self.tasks);
        let owners: Vec<(Range<u32>, TaskPart)> = state
            .every_task::<TaskPart>()?
            .into_iter()
            .filter(|(g, _)| g.start < mine.end && mine.start < g.end)
            .collect();
        match owners.as_slice() {
            [] => {}
            [(groups, t)] if *groups == mine => {
                // The keys it had at the checkpoint: it goes on where it was.
                self.watermarks.restore(&t.latest, t.watermark);
                self.newest = t.newest;
                self.next = t.next;
                self.fired = t.fired;
            }
            // Keys of other tasks: the earliest window open at any of them comes next;
            // the upstream tasks' latest timestamps start over.
            _ => self.next = owners.iter().filter_map(|(_, t)| t.next).min(),
        }
        if !owners.is_empty() {
            self.restore_groups(&owners, mine);
        }
        for (_, t) in &owners {
            for &(i, first_ts, last_ts) in &t.panes {
                match self.panes.entry(i) {
                    Entry::Vacant(e) => {
                        e.insert(Pane {
                            first_ts,
                            last_ts,
                            ..Pane::default()
                        });
                    }
                    Entry::Occupied(mut e) => {
                        let p = e.get_mut();
                        p.first_ts = p.first_ts.min(first_ts);
                        p.last_ts = p.last_ts.max(last_ts);
                    }
                }
            }
        }
        for (key, panes) in state.map::<Vec<Value>, Vec<(i64, Acc)>>()? {
            let hash = self.hasher.hash(key.iter());
            let key = Key(key.into_iter().collect());
            for (i, acc) in panes {
                self.panes.entry(i).or_default().groups.insert(Group {
                    hash,
                    key: key.clone(),
                    acc,
                    held: Vec::new(),
                });
            }
        }
        // Panes of keys this task no longer owns: nothing to keep.
        self.panes.retain(|_, p| p.groups.iter().next().is_some());
        if self.panes.is_empty() {
            self.next = None;
        }
        Ok(())
    }

    /// Each key group's watermark and fired bound as its old owner had them: the task
    /// starts from the lowest, and keeps the table while some group is ahead.
    fn restore_groups(&mut self, owners: &[(Range<u32>, TaskPart)], mine: Range<u32>) {
        let mut table = vec![(i64::MIN, i64::MIN); KEY_GROUPS as usize];
        for (groups, t) in owners {
            for g in groups.start.max(mine.start)..groups.end.min(mine.end) {
                table[g as usize] = (t.watermark, t.fired);
            }
            for &(g, w, f) in &t.ahead {
                if groups.contains(&g) && mine.contains(&g) {
                    table[g as usize] = (w, f);
                }
            }
        }
        let mine = &table[mine.start as usize..mine.end as usize];
        let low = |f: fn(&(i64, i64)) -> i64| mine.iter().map(f).min().unwrap_or(i64::MIN);
        let high = |f: fn(&(i64, i64)) -> i64| mine.iter().map(f).max().unwrap_or(i64::MIN);
        let (floor, fired) = (low(|e| e.0), low(|e| e.1));
        self.watermarks.restore(&[], floor);
        self.fired = fired;
        if high(|e| e.0) > floor {
            self.late_below = high(|e| e.0);
        }
        if high(|e| e.1) > fired {
            self.fired_below = high(|e| e.1);
        }
        if self.late_below != i64::MIN || self.fired_below != i64::MIN {
            self.moved = Moved(table);
        }
    }

    /// The old owner of `input`'s key group (rescaled resume) had its watermark past
    /// `ts`: the tuple was late there, so it is late here.
    #[cold]
    pub(super) fn late_for_old_owner(&self, input: &Tuple, ts: i64) -> bool {
        let Some(fields) = &self.fields else {
            return false;
        };
        let mut key = Vec::with_capacity(fields.key.len());
        for at in &fields.key {
            match at.and_then(|at| input.get(at)) {
                Some(v) => key.push(v),
                None => return false,
            }
        }
        ts < self.moved.get(key_group_of(key)).0
    }

    /// The old owner of `key`'s key group (rescaled resume) had already fired the window
    /// starting at `start`.
    #[cold]
    pub(super) fn fired_before_resume(&self, key: &Key, start: i64) -> bool {
        start < self.moved.get(key_group_of(key.0.iter())).1
    }
}
