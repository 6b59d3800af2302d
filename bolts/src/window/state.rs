//! `window_aggregate`'s checkpoint: each key's pane aggregates as keyed state (so a
//! rescaled task gets the keys of its key groups), and the task's watermark, window
//! bookkeeping and pane times as task state.
//!
//! Tuples held for acking are not in it: after a rollback their trees are gone and the
//! spouts send them again.

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use topo_engine::state::{TaskState, TaskStateReader};
use topo_engine::{Result, Value};

use super::acc::{Acc, Group, Groups, Key};
use super::{Pane, WindowAggregate};

/// One key's entry of the keyed state while it is gathered: the key's hash, its values
/// and its aggregate in each pane.
type KeyPanes = (u64, Vec<Value>, Vec<(i64, Acc)>);

/// The task state: what is not per key.
#[derive(Debug, Serialize, Deserialize)]
struct TaskPart {
    /// Each upstream task's latest timestamp, and the watermark.
    latest: Vec<(u32, i64)>,
    watermark: i64,
    newest: i64,
    next: Option<i64>,
    arrived: u64,
    late: u64,
    /// The running window's panes `lo..hi`.
    lo: i64,
    hi: i64,
    /// Each pane's first and last time.
    panes: Vec<(i64, i64, i64)>,
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
            arrived: self.arrived,
            late: self.late,
            lo: self.lo,
            hi: self.hi,
            panes: times,
        })?;
        Ok(())
    }

    /// Takes back the windows `state` holds (nothing for a fresh start).
    pub(super) fn restore_windows(&mut self, state: &TaskStateReader) -> Result<()> {
        self.hot = Pane::default();
        self.hot_idx = None;
        self.panes.clear();
        self.running = Groups::default();
        let task: Option<TaskPart> = state.task()?;
        if let Some(t) = &task {
            self.watermarks.restore(&t.latest, t.watermark);
            self.newest = t.newest;
            self.next = t.next;
            self.arrived = t.arrived;
            self.late = t.late;
            self.lo = t.lo;
            self.hi = t.hi;
            for &(i, first_ts, last_ts) in &t.panes {
                let pane = self.panes.entry(i).or_default();
                pane.first_ts = first_ts;
                pane.last_ts = last_ts;
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
        if self.invertible {
            for (_, pane) in self.panes.range(self.lo..self.hi) {
                for g in pane.groups.iter() {
                    self.running.merge(g);
                }
            }
        }
        if task.is_some() && self.panes.is_empty() {
            self.next = None;
            self.lo = i64::MIN;
            self.hi = i64::MIN;
        }
        Ok(())
    }
}
