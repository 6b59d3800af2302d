//! Rebalancing a running topology (`topo rebalance NAME [--workers N] [--parallelism
//! COMPONENT=N]...`): the checks, the rewritten topology file, and the restart.
//!
//! A checkpointed topology takes its state over to the new layout exactly once: it keeps
//! running until its next checkpoint commits (one is started at once), then every worker
//! is stopped and the new layout restores from that checkpoint, each task reading the key
//! groups it owns now and each spout seeking to its recorded position. If none commits
//! within the checkpoint timeout it restarts from the last one that did: what came after
//! it is replayed, as after a rollback. Any other topology is deactivated, drained for the
//! message timeout and restarted with empty in-memory state, as Storm rebalances.

use topo_dsl::validate::{MAX_PARALLELISM, MAX_WORKERS};
use topo_dsl::{Kind, TopologySpec};
use topo_engine::state::coordinator::checkpoint_timeout;
use topo_engine::state::KEY_GROUPS;

use super::*;

/// `text` with `[topology] workers` and each listed component's `parallelism` set (the
/// file is rewritten: comments and layout are not kept, the values are).
pub(super) fn rewrite(
    text: &str,
    workers: Option<usize>,
    parallelism: &BTreeMap<String, usize>,
) -> Result<String, String> {
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e| format!("cannot parse the topology file: {e}"))?;
    if let Some(n) = workers {
        let topology = doc
            .entry("topology")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(t) = topology.as_table_mut() else {
            return Err("`topology` is not a table".into());
        };
        t.insert("workers".into(), toml::Value::Integer(n as i64));
    }
    for (id, &n) in parallelism {
        let kind = ["spouts", "bolts"].into_iter().find(|kind| {
            doc.get(*kind)
                .and_then(toml::Value::as_table)
                .is_some_and(|t| t.contains_key(id))
        });
        let table = kind
            .and_then(|kind| doc.get_mut(kind)?.as_table_mut()?.get_mut(id))
            .and_then(toml::Value::as_table_mut);
        let Some(table) = table else {
            return Err(format!(
                "no table for component `{id}` in the topology file"
            ));
        };
        table.insert("parallelism".into(), toml::Value::Integer(n as i64));
    }
    toml::to_string(&doc).map_err(|e| format!("cannot write the topology file: {e}"))
}

/// Why topology `id` (parsed as `spec`) cannot be rebalanced as asked, if it cannot.
fn check(
    id: &str,
    spec: &TopologySpec,
    workers: Option<usize>,
    parallelism: &BTreeMap<String, usize>,
) -> Result<(), String> {
    if workers.is_none() && parallelism.is_empty() {
        return Err("nothing to rebalance: give --workers N or --parallelism COMPONENT=N".into());
    }
    match workers {
        Some(0) => return Err("a topology needs at least 1 worker".into()),
        Some(n) if n as i64 > MAX_WORKERS => {
            return Err(format!("{n} workers is above the limit of {MAX_WORKERS}"))
        }
        _ => {}
    }
    let checkpointed = spec.checkpoint_interval_secs.is_some();
    for (name, &n) in parallelism {
        let Some(c) = spec.components.iter().find(|c| &c.id == name) else {
            let known: Vec<&str> = spec.components.iter().map(|c| c.id.as_str()).collect();
            return Err(format!(
                "topology {id} has no component `{name}` (it has {})",
                known.join(", ")
            ));
        };
        if n == 0 {
            return Err(format!("the parallelism of `{name}` must be at least 1"));
        }
        if n as i64 > MAX_PARALLELISM {
            return Err(format!(
                "parallelism {n} of `{name}` is above the limit of {MAX_PARALLELISM}"
            ));
        }
        if !checkpointed {
            continue;
        }
        if n > KEY_GROUPS as usize {
            return Err(format!(
                "parallelism {n} of `{name}` is above its {KEY_GROUPS} key groups: in a \
                 checkpointed topology every task must own a key group of the state"
            ));
        }
        let now = c.parallelism.unwrap_or(1).max(1) as usize;
        if c.kind == Kind::Spout && n != now {
            return Err(format!(
                "spout `{name}` keeps its parallelism {now} in a checkpointed topology: each \
                 spout task's recorded position belongs to its index"
            ));
        }
    }
    Ok(())
}

/// `count=4 split=2`, or `3 workers`, for messages.
fn describe(workers: Option<usize>, parallelism: &BTreeMap<String, usize>) -> String {
    let mut parts: Vec<String> = workers
        .map(|n| format!("{n} workers"))
        .into_iter()
        .collect();
    parts.extend(parallelism.iter().map(|(c, n)| format!("{c}={n}")));
    parts.join(", ")
}

impl Coord {
    /// `topo rebalance`: checks the request, then starts the rebalance (see the module
    /// doc); the topology restarts in [`Coord::restart_rebalanced`].
    pub(super) fn rebalance(
        &mut self,
        name: &str,
        workers: Option<usize>,
        parallelism: &BTreeMap<String, usize>,
    ) -> Reply {
        let Some(id) = self.find(name) else {
            return requests::not_found(name);
        };
        let t = self.topologies.get_mut(&id).expect("found");
        if !matches!(t.record.status, Status::Active | Status::Inactive) {
            return Reply::Error {
                message: format!("topology {id} is {}", t.record.status.name()),
            };
        }
        if t.session.finishing() {
            return Reply::Error {
                message: format!("topology {id} is finishing: its spouts are done"),
            };
        }
        let (spec, _) = topo_dsl::parse(&t.record.text);
        let checked = check(&id, &spec, workers, parallelism)
            .and_then(|()| rewrite(&t.record.text, workers, parallelism));
        let text = match checked {
            Ok(text) => text,
            Err(message) => return Reply::Error { message },
        };
        let (new, diags) = topo_dsl::parse(&text);
        if !diags.is_empty() {
            return Reply::Error {
                message: format!(
                    "the rebalanced topology is invalid ({} errors)",
                    diags.len()
                ),
            };
        }
        let what = describe(workers, parallelism);
        let n = workers.unwrap_or(t.record.workers);
        t.record.rebalance = Some(Rebalance {
            workers: n,
            text,
            status: t.record.status,
        });
        let was = std::mem::replace(&mut t.record.status, Status::Rebalancing);
        self.dirty = true;
        if t.checkpointed {
            let interval =
                Duration::from_secs_f64(new.checkpoint_interval_secs.unwrap_or(1.0).max(0.01));
            // An inactive topology takes no checkpoints: it restarts from its last one.
            let wait = if was == Status::Active {
                checkpoint_timeout(interval).as_secs_f64()
            } else {
                0.0
            };
            t.record.kill_at = Some(now_secs() + wait);
            if let Some(c) = &mut t.checkpoints {
                c.due_now();
            }
            info!(topology = %id, to = %what, "Rebalancing at the next committed checkpoint.");
            return Reply::Done {
                message: format!(
                    "rebalancing {id} to {what}: it restarts from its next committed checkpoint, \
                     every key's state moved to the task that owns it now"
                ),
            };
        }
        let wait = t.record.message_timeout_secs.max(0.0);
        t.record.kill_at = Some(now_secs() + wait);
        let out: Outbox = (0..t.record.workers)
            .map(|w| (w, ToWorker::Deactivate))
            .collect();
        self.deliver(&id, out);
        info!(topology = %id, to = %what, wait_secs = wait, "Rebalancing: spouts deactivated, draining.");
        Reply::Done {
            message: format!(
                "rebalancing {id} to {what}: spouts deactivated, restarting in {wait} s; \
                 the topology takes no checkpoints, so its bolts' in-memory state starts empty"
            ),
        }
    }

    /// Restarts a rebalancing topology with its new file: every worker is stopped, and
    /// started again (a worker index that remains stays on its supervisor); a checkpointed
    /// one restores from its newest committed checkpoint. A checkpointed topology whose
    /// checkpoints are not open yet (a coordinator just restarted) waits for them.
    pub(super) fn restart_rebalanced(&mut self, id: &str) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        if t.record.rebalance.is_none() || (t.checkpointed && t.checkpoints.is_none()) {
            return;
        }
        let Some(r) = t.record.rebalance.take() else {
            return;
        };
        if let Some(mut c) = t.checkpoints.take() {
            // What is in flight would come from the old layout: it fails; the new
            // layout's checkpoints are taken by a coordinator opened for its tasks.
            c.coordinator.fail();
            t.record.checkpoints = Some(c.coordinator.summary());
            t.latest_restore(&c);
        }
        let old = t.record.assignments.clone();
        let mut kept = old.clone();
        kept.resize(r.workers, None);
        t.record.assignments = kept;
        t.record.workers = r.workers;
        t.record.fingerprint = fingerprint(&r.text, r.workers);
        t.checkpointed = topo_dsl::parse(&r.text)
            .0
            .checkpoint_interval_secs
            .is_some();
        t.record.text = r.text;
        t.record.addrs = vec![None; r.workers];
        t.record.starts = vec![0; r.workers];
        t.record.finishing = false;
        t.record.kill_at = None;
        t.record.status = r.status;
        t.session = Session::new(r.workers);
        t.awaiting = vec![false; r.workers];
        info!(
            topology = id,
            workers = r.workers,
            checkpoint = t.record.restore,
            "Restarting the rebalanced topology."
        );
        self.stop_workers(id, &old);
        self.dirty = true;
        // Those kept on their supervisor start again there (after the stop, in order).
        let keep: Vec<(usize, String)> = self.topologies[id]
            .record
            .assignments
            .iter()
            .enumerate()
            .filter_map(|(w, s)| Some((w, s.clone()?)))
            .collect();
        for (w, sup) in keep {
            if let Some(t) = self.topologies.get_mut(id) {
                t.awaiting[w] = true;
            }
            let a = self.assignment(&self.topologies[id], w);
            self.send(&sup, ToSupervisor::Assign { assignment: a });
        }
        self.place();
    }
}
