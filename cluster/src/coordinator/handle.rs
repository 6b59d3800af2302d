//! A [`Handle`] on a running coordinator for what runs in its process beside it (the web
//! UI of `topo coordinator --ui`): the topologies with their workers' latest snapshots,
//! the client requests that change them, and taps of their components.

use topo_engine::launcher::relay::Relay;
use topo_engine::metrics::WorkerSnapshot;
use topo_engine::tap::Tap;

use super::conn::with;
use super::*;

/// Reads and drives the coordinator it was handed by [`serve_with`].
#[derive(Clone)]
pub struct Handle(pub(super) Shared);

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// One topology as the coordinator sees it now.
#[derive(Debug, Clone)]
pub struct TopologyView {
    /// What `topo list` shows.
    pub info: TopologyInfo,
    /// The topology file's text.
    pub text: String,
    /// The latest snapshot of each worker that sent one; `running` is false for a worker
    /// whose tasks do not run now.
    pub snapshots: Vec<WorkerSnapshot>,
}

impl Handle {
    /// Every topology, as [`Request::List`] orders them, with its snapshots.
    pub fn topologies(&self) -> Vec<TopologyView> {
        let c = lock(&self.0);
        c.list()
            .into_iter()
            .filter_map(|info| {
                let t = c.topologies.get(&info.id)?;
                let mut snapshots = t.session.live_snapshots();
                for s in &mut snapshots {
                    s.running &= t.record.status.is_live();
                }
                Some(TopologyView {
                    text: t.record.text.clone(),
                    info,
                    snapshots,
                })
            })
            .collect()
    }

    /// Carries out a client request that names a topology (kill, activate, deactivate,
    /// rebalance) as if a client sent it; any other request is refused.
    pub fn request(&self, req: Request) -> Reply {
        match req {
            Request::Kill { name, wait_secs } => with(&self.0, |c| c.kill(&name, wait_secs)),
            Request::Activate { name } => with(&self.0, |c| c.set_active(&name, true)),
            Request::Deactivate { name } => with(&self.0, |c| c.set_active(&name, false)),
            Request::Rebalance {
                name,
                workers,
                parallelism,
            } => with(&self.0, |c| c.rebalance(&name, workers, &parallelism)),
            other => Reply::Error {
                message: format!("not a request about a topology: {other:?}"),
            },
        }
    }

    /// Taps `component` (only `stream` when given) in every worker of live topology `id`,
    /// each sending at most `per_sec` records a second, until the [`Tap`] is dropped.
    pub fn tap(
        &self,
        id: &str,
        component: &str,
        stream: Option<&str>,
        per_sec: f64,
    ) -> Result<Tap, String> {
        let mut c = lock(&self.0);
        let Some(t) = c.topologies.get(id) else {
            return Err(format!("no topology {id}"));
        };
        if !t.record.status.is_live() {
            return Err(format!(
                "topology {id} is {}: nothing to tap",
                t.record.status.name()
            ));
        }
        // The coordinator may not know a user binary's component types: it checks the
        // component's name; the workers check its stream.
        let (spec, _) = topo_dsl::parse(&t.record.text);
        if !spec.components.iter().any(|s| s.id == component) {
            let known: Vec<&str> = spec.components.iter().map(|s| s.id.as_str()).collect();
            return Err(format!(
                "no component `{component}` (the components: {})",
                known.join(", ")
            ));
        }
        let relay = Arc::clone(c.relays.entry(id.to_string()).or_default());
        Ok(relay.attach(component, stream, per_sec))
    }
}

impl Coord {
    /// Sends what the taps of each live topology ask for to its workers; forgets the
    /// taps of topologies that ended.
    pub(super) fn relay_taps(&mut self) {
        let live = |c: &Coord, id: &str| {
            c.topologies
                .get(id)
                .is_some_and(|t| t.record.status.is_live())
        };
        let ended: Vec<String> = self
            .relays
            .keys()
            .filter(|id| !live(self, id))
            .cloned()
            .collect();
        for id in ended {
            self.relays.remove(&id);
        }
        for (id, relay) in &self.relays {
            let Some(t) = self.topologies.get(id) else {
                continue;
            };
            let out: Outbox = relay
                .take_outbox()
                .into_iter()
                .flat_map(|msg| (0..t.record.workers).map(move |w| (w, msg.clone())))
                .collect();
            self.deliver(id, out);
        }
    }

    /// Passes worker `w` of `topology`'s tap messages to its relay (`None`: taken); a
    /// worker that starts running is asked for the taps attached now.
    pub(super) fn relay_message(
        &self,
        topology: &str,
        w: usize,
        msg: FromWorker,
    ) -> Option<FromWorker> {
        let Some(relay) = self.relays.get(topology) else {
            return Some(msg);
        };
        let msg = relay.on_message(w, msg)?;
        if msg == FromWorker::Running {
            let out: Outbox = relay.active().into_iter().map(|m| (w, m)).collect();
            self.deliver(topology, out);
        }
        Some(msg)
    }
}

/// Keeps the [`Relay`] type in the signatures above readable.
pub(super) type Relays = BTreeMap<String, Arc<Relay>>;
