//! The coordinator's state machine: supervisors, placements, sessions and ends of runs.

use super::*;

impl Coord {
    pub(super) fn send(&self, supervisor: &str, msg: ToSupervisor) -> bool {
        match self
            .supervisors
            .get(supervisor)
            .and_then(|s| s.link.as_ref())
        {
            Some(l) => l.ctl.send(msg).is_ok(),
            None => false,
        }
    }

    /// Tells the supervisor of each assigned worker of `topology` to stop it.
    pub(super) fn stop_workers(&self, topology: &str, assignments: &[Option<String>]) {
        for (w, sup) in assignments.iter().enumerate() {
            if let Some(sup) = sup {
                self.send(
                    sup,
                    ToSupervisor::Stop {
                        topology: topology.to_string(),
                        worker: w,
                    },
                );
            }
        }
    }

    /// Sends what a session answered to the supervisors of the addressed workers.
    pub(super) fn deliver(&self, topology: &str, out: Outbox) {
        let Some(t) = self.topologies.get(topology) else {
            return;
        };
        for (w, msg) in out {
            if let Some(Some(sup)) = t.record.assignments.get(w) {
                self.send(
                    sup,
                    ToSupervisor::Worker {
                        topology: topology.to_string(),
                        worker: w,
                        msg: Json(msg),
                    },
                );
            }
        }
    }

    pub(super) fn assignment(&self, t: &Topology, w: usize) -> Assignment {
        Assignment {
            topology: t.record.id.clone(),
            worker: w,
            binary: t.record.binary.clone(),
            resources: t.record.resources.clone(),
            text: t.record.text.clone(),
            fingerprint: t.record.fingerprint,
            inactive: t.record.status == Status::Inactive,
            restore: t.record.restore,
        }
    }

    /// Connected supervisors with their slots and the workers of live topologies they
    /// hold.
    pub(super) fn hosts(&self) -> BTreeMap<String, Host> {
        let mut hosts: BTreeMap<String, Host> = self
            .supervisors
            .iter()
            .filter(|(_, s)| s.link.is_some())
            .map(|(id, s)| {
                (
                    id.clone(),
                    Host {
                        slots: s.slots,
                        used: 0,
                    },
                )
            })
            .collect();
        for t in self.topologies.values() {
            if !t.record.status.is_live() {
                continue;
            }
            for a in t.record.assignments.iter().flatten() {
                if let Some(h) = hosts.get_mut(a) {
                    h.used += 1;
                }
            }
        }
        hosts
    }

    /// Places every unassigned worker of the live topologies and sends the assignments.
    pub(super) fn place(&mut self) {
        let mut hosts = self.hosts();
        let ids: Vec<String> = self.topologies.keys().cloned().collect();
        for id in ids {
            let Some(t) = self.topologies.get_mut(&id) else {
                continue;
            };
            if !t.record.status.is_live() || t.record.assignments.iter().all(Option::is_some) {
                continue;
            }
            let before = t.record.assignments.clone();
            schedule::place(&mut t.record.assignments, &mut hosts);
            let placed: Vec<usize> = (0..before.len())
                .filter(|&w| before[w].is_none() && t.record.assignments[w].is_some())
                .collect();
            if placed.is_empty() {
                continue;
            }
            self.dirty = true;
            if let Some(t) = self.topologies.get_mut(&id) {
                for &w in &placed {
                    t.awaiting[w] = true;
                }
            }
            let t = &self.topologies[&id];
            for w in placed {
                let sup = t.record.assignments[w].clone().unwrap_or_default();
                info!(topology = %id, worker = w, supervisor = %sup, "Assigned a worker.");
                let a = self.assignment(t, w);
                self.send(&sup, ToSupervisor::Assign { assignment: a });
            }
        }
    }

    /// Timeouts, placements, ends of runs.
    pub(super) fn tick(&mut self) {
        let gap = self.last_tick.elapsed();
        self.last_tick = Instant::now();
        if gap > TICK * 5 {
            warn!(
                gap_secs = gap.as_secs_f64(),
                "The coordinator did not run for a while; giving the supervisors that time."
            );
            for s in self.supervisors.values_mut() {
                s.last_seen += gap;
            }
        }
        let silent: Vec<String> = self
            .supervisors
            .iter()
            .filter(|(_, s)| s.last_seen.elapsed() > self.timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in silent {
            self.drop_supervisor(&id);
        }
        self.place();
        self.tick_checkpoints();
        let ids: Vec<String> = self.topologies.keys().cloned().collect();
        for id in ids {
            self.check_end(&id);
        }
        self.relay_taps();
        if self.last_alive.elapsed() >= Duration::from_secs(1) {
            self.last_alive = Instant::now();
            let linked: Vec<String> = self
                .supervisors
                .iter()
                .filter(|(_, s)| s.link.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            for id in linked {
                self.send(&id, ToSupervisor::Alive);
            }
        }
        if self.dirty {
            self.save();
        }
    }

    pub(super) fn drop_supervisor(&mut self, id: &str) {
        warn!(
            supervisor = id,
            timeout_secs = self.timeout.as_secs_f64(),
            "Supervisor is silent; dropping it and placing its workers elsewhere."
        );
        self.supervisors.remove(id);
        let mut lost = Vec::new();
        for t in self.topologies.values_mut() {
            if !t.record.status.is_live() {
                continue;
            }
            for w in 0..t.record.workers {
                if t.record.assignments[w].as_deref() == Some(id) {
                    t.record.assignments[w] = None;
                    t.session.started(w);
                    if !lost.contains(&t.record.id) && t.checkpointed {
                        lost.push(t.record.id.clone());
                    }
                }
            }
        }
        self.dirty = true;
        for t in lost {
            self.rollback(&t, &format!("Supervisor {id} was dropped"));
        }
    }

    pub(super) fn check_end(&mut self, id: &str) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        if !t.record.status.is_live() {
            return;
        }
        let mut out = Outbox::new();
        let now = now_secs();
        match t.record.status {
            Status::Active if !t.session.finishing() && t.session.spouts_done() => {
                info!(
                    topology = id,
                    "Every spout is done; finishing the topology."
                );
                t.session.finish(&mut out);
            }
            Status::Killing
                if !t.session.finishing() && t.record.kill_at.is_some_and(|k| now >= k) =>
            {
                info!(topology = id, "Drained; finishing the killed topology.");
                t.session.finish(&mut out);
            }
            _ => {}
        }
        if t.session.finishing() && !t.record.finishing {
            t.record.finishing = true;
            self.dirty = true;
        }
        if t.record.status == Status::Rebalancing && t.record.kill_at.is_some_and(|k| now >= k) {
            self.restart_rebalanced(id);
            return;
        }
        let ended = t.session.ended();
        let overdue = t.record.status == Status::Killing
            && t.record
                .kill_at
                .is_some_and(|k| now >= k + KILL_GRACE.as_secs_f64());
        if ended || overdue {
            let killed = t.record.status == Status::Killing;
            if ended {
                let summary = merge(t.session.take_summaries());
                t.record.components = summary
                    .components
                    .iter()
                    .filter(|c| c.kind != "acker")
                    .map(|c| ComponentInfo {
                        id: c.id.clone(),
                        kind: c.kind.clone(),
                        emitted: c.total.emitted,
                        acked: c.total.acked,
                        failed: c.total.failed,
                    })
                    .collect();
            } else {
                t.record.components = components_of(&t.session);
            }
            t.record.status = if killed {
                Status::Killed
            } else {
                Status::Finished
            };
            t.record.ended = Some(now);
            info!(
                topology = id,
                status = t.record.status.name(),
                "Topology ended."
            );
            let assignments = t.record.assignments.clone();
            for (w, sup) in assignments.iter().enumerate() {
                if let Some(sup) = sup {
                    let msg = if ended {
                        ToSupervisor::Worker {
                            topology: id.to_string(),
                            worker: w,
                            msg: Json(ToWorker::Exit),
                        }
                    } else {
                        ToSupervisor::Stop {
                            topology: id.to_string(),
                            worker: w,
                        }
                    };
                    self.send(sup, msg);
                }
            }
            self.dirty = true;
        }
        self.deliver(id, out);
    }

    pub(super) fn fail(&mut self, id: &str, message: String) {
        let Some(t) = self.topologies.get_mut(id) else {
            return;
        };
        if !t.record.status.is_live() {
            return;
        }
        error!(topology = id, "{message}");
        t.record.status = Status::Failed;
        t.record.error = Some(message);
        t.record.ended = Some(now_secs());
        t.record.components = components_of(&t.session);
        let assignments = t.record.assignments.clone();
        self.stop_workers(id, &assignments);
        self.dirty = true;
    }

    /// A supervisor (re)registered: rebuild what it runs, stop what is not its own, start
    /// what it lacks.
    /// Whether a connected supervisor, heard from within the supervisor timeout, has the
    /// id `id` (a second one with that id is refused: ids name hosts).
    pub(super) fn taken(&self, id: &str) -> bool {
        self.supervisors
            .get(id)
            .is_some_and(|s| s.link.is_some() && s.last_seen.elapsed() < self.timeout)
    }

    pub(super) fn register(
        &mut self,
        id: &str,
        slots: usize,
        workers: Vec<WorkerReport>,
        link: Link,
    ) {
        info!(
            supervisor = id,
            slots,
            workers = workers.len(),
            "Supervisor registered."
        );
        let known = self.supervisors.get(id).map(|s| s.slots);
        self.supervisors.insert(
            id.to_string(),
            SupervisorEntry {
                slots,
                link: Some(link),
                last_seen: Instant::now(),
            },
        );
        if known != Some(slots) {
            self.dirty = true;
        }
        self.send(id, ToSupervisor::Registered);
        let mut held = Vec::new();
        for r in workers {
            let mine = self.topologies.get(&r.topology).is_some_and(|t| {
                t.record.status.is_live()
                    && t.record
                        .assignments
                        .get(r.worker)
                        .and_then(|a| a.as_deref())
                        == Some(id)
            });
            if !mine {
                info!(supervisor = id, topology = %r.topology, worker = r.worker, "Stopping a worker that is not assigned there.");
                self.send(
                    id,
                    ToSupervisor::Stop {
                        topology: r.topology,
                        worker: r.worker,
                    },
                );
                continue;
            }
            held.push((r.topology.clone(), r.worker));
            let Some(t) = self.topologies.get_mut(&r.topology) else {
                continue;
            };
            let mut out = Outbox::new();
            let w = r.worker;
            if let Some(addr) = r.addr {
                if t.record.addrs[w] == Some(addr) {
                    t.session.restore(w, addr, r.running, &mut out);
                } else {
                    // It moved while we were away: its peers learn the new address.
                    t.record.addrs[w] = Some(addr);
                    self.dirty = true;
                    let _ = t
                        .session
                        .on_message(w, FromWorker::Listening { addr }, &mut out);
                    if r.running {
                        let _ = t.session.on_message(w, FromWorker::Running, &mut out);
                    }
                }
            }
            if let Some(summary) = r.summary {
                let _ = t
                    .session
                    .on_message(w, FromWorker::Summary { summary }, &mut out);
            }
            let topology = r.topology.clone();
            self.deliver(&topology, out);
        }
        // Workers assigned here that it does not run (it restarted, or never got them).
        let mut missing = Vec::new();
        for t in self.topologies.values() {
            if !t.record.status.is_live() {
                continue;
            }
            for w in 0..t.record.workers {
                if t.record.assignments[w].as_deref() == Some(id)
                    && !held.iter().any(|(tid, hw)| *tid == t.record.id && *hw == w)
                {
                    missing.push((t.record.id.clone(), w));
                }
            }
        }
        for (tid, w) in missing {
            if self.topologies.get(&tid).is_some_and(|t| t.checkpointed) {
                self.rollback(&tid, &format!("Supervisor {id} lost worker {w}"));
                continue;
            }
            if let Some(t) = self.topologies.get_mut(&tid) {
                t.session.started(w);
                t.awaiting[w] = true;
            }
            if let Some(t) = self.topologies.get(&tid) {
                let a = self.assignment(t, w);
                self.send(id, ToSupervisor::Assign { assignment: a });
            }
        }
        self.place();
    }

    /// A message from supervisor `sup` (registered).
    pub(super) fn on_supervisor(&mut self, sup: &str, msg: FromSupervisor) {
        match msg {
            FromSupervisor::Register { .. } | FromSupervisor::Heartbeat => {}
            FromSupervisor::Fetch { .. } => {}
            FromSupervisor::Started { topology, worker } => {
                let Some(t) = self.own(sup, &topology, worker) else {
                    return;
                };
                let unasked = !std::mem::take(&mut t.awaiting[worker]);
                t.session.started(worker);
                t.record.starts[worker] += 1;
                let rewind = unasked && t.checkpointed;
                self.dirty = true;
                if rewind {
                    // Its supervisor restarted it on its own, from an older checkpoint.
                    self.rollback(&topology, &format!("Worker {worker} restarted"));
                }
            }
            FromSupervisor::Refused {
                topology,
                worker,
                message,
            } => {
                if self.own(sup, &topology, worker).is_some() {
                    self.fail(
                        &topology,
                        format!("supervisor {sup} cannot run worker {worker}: {message}"),
                    );
                }
            }
            FromSupervisor::Worker {
                topology,
                worker,
                msg,
            } => {
                match self.own(sup, &topology, worker) {
                    None => return,
                    // An older incarnation's, relayed before the supervisor stopped it.
                    Some(t) if t.checkpointed && t.awaiting[worker] => return,
                    Some(_) => {}
                }
                let Json(msg) = msg;
                if let FromWorker::Checkpointed { confirm } = msg {
                    self.checkpointed_part(&topology, *confirm);
                    return;
                }
                let Some(msg) = self.relay_message(&topology, worker, msg) else {
                    return;
                };
                let Some(t) = self.own(sup, &topology, worker) else {
                    return;
                };
                let moved = matches!(msg, FromWorker::Listening { .. });
                if let FromWorker::Listening { addr } = &msg {
                    info!(topology = %topology, worker, supervisor = sup, %addr, "Worker listening.");
                    t.record.addrs[worker] = Some(*addr);
                }
                let mut out = Outbox::new();
                let result = t.session.on_message(worker, msg, &mut out);
                self.dirty |= moved;
                self.deliver(&topology, out);
                if let Err(e) = result {
                    self.fail(&topology, e.to_string());
                }
            }
        }
    }

    /// The live topology `id` if its worker `w` is assigned to `sup`.
    pub(super) fn own(&mut self, sup: &str, id: &str, w: usize) -> Option<&mut Topology> {
        self.topologies.get_mut(id).filter(|t| {
            t.record.status.is_live()
                && t.record.assignments.get(w).and_then(|a| a.as_deref()) == Some(sup)
        })
    }

    pub(super) fn find(&self, name: &str) -> Option<String> {
        if self.topologies.contains_key(name) {
            return Some(name.to_string());
        }
        // The live one by that name, else the newest.
        let mut by_name: Vec<&Topology> = self
            .topologies
            .values()
            .filter(|t| t.record.name == name)
            .collect();
        by_name.sort_by(|a, b| {
            (a.record.status.is_live(), a.record.submitted)
                .partial_cmp(&(b.record.status.is_live(), b.record.submitted))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        by_name.last().map(|t| t.record.id.clone())
    }
}

/// Each component's counts over the latest snapshot of every worker, in task order.
pub(super) fn components_of(session: &Session) -> Vec<ComponentInfo> {
    let mut by: Vec<(u32, ComponentInfo)> = Vec::new();
    for s in session.snapshots().iter().flatten() {
        for task in &s.tasks {
            if task.kind == "acker" {
                continue;
            }
            let c = match by.iter_mut().find(|(_, c)| c.id == task.component) {
                Some((first, c)) => {
                    *first = (*first).min(task.task);
                    c
                }
                None => {
                    by.push((
                        task.task,
                        ComponentInfo {
                            id: task.component.clone(),
                            kind: task.kind.clone(),
                            emitted: 0,
                            acked: 0,
                            failed: 0,
                        },
                    ));
                    &mut by.last_mut().expect("just pushed").1
                }
            };
            c.emitted += task.counts.emitted;
            c.acked += task.counts.acked;
            c.failed += task.counts.failed;
        }
    }
    by.sort_by_key(|(first, _)| *first);
    by.into_iter().map(|(_, c)| c).collect()
}
