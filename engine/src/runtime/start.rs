//! [`start`]: wires a plan's tasks into executor threads.
//!
//! In order: make every component instance (so a refused config starts nothing), make the
//! inboxes of this process's tasks ([`Channels`]), name a route to every task, local or
//! remote ([`Routes`]), then start one thread per task ([`Wiring::spawn_task`]) and one per
//! acker.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use rand::Rng;
use topo_dsl::{Kind, Settings, Topology};

use super::{Acker, Remotes, RunOptions, RunningTopology, StartError, StopHandle, ACKER};
use crate::bridge::inbox::RemoteIn;
use crate::component::{Bolt, Notifier, Spout, TaskContext};
use crate::executor::acker::AckerExecutor;
use crate::executor::bolt::{Align, BoltCore, BoltExecutor};
use crate::executor::spout::{Hold, SpoutCore, SpoutExecutor};
use crate::executor::{Output, OutputSpec, Pool, StreamOut};
use crate::grouping::Router;
use crate::load::Loads;
use crate::metrics::TaskStats;
use crate::plan::{PhysicalPlan, TaskRole};
use crate::registry::Registry;
use crate::route::{AckerIn, Inbound, Inboxes, RemoteBatch, Route, SpoutMsg};
use crate::state::task::{PartWriter, TaskCheckpoint};
use crate::summary::{Counts, Histogram, SharedCounts};
use crate::tap::Taps;
use crate::tuple::{StreamInfo, TaskId};
use crate::wire;

enum Instance {
    Spout(Box<dyn Spout>),
    Bolt(Box<dyn Bolt>),
}

/// Starts the tasks of `topology` in this process: every task of the plan (placement
/// then only decides `local_or_shuffle` and where ackers sit; every route is a local
/// queue), or with [`RunOptions::worker`] only that worker's tasks, reaching the others
/// through [`RunOptions::remote`].
pub fn start(
    topology: Arc<Topology>,
    registry: &Registry,
    options: RunOptions,
) -> Result<RunningTopology, StartError> {
    let started = Instant::now();
    let plan = PhysicalPlan::new(&topology);
    let mut instances = make_instances(&topology, &plan, registry, options.worker)?;
    let checkpoints = Checkpointing::open(&topology, &options)?;
    let mut channels = Channels::new(&topology, &plan, &options);
    let routes = Routes::new(&topology, &plan, &options, &channels)?;

    let stop = StopHandle::new(
        channels
            .ctl_tx
            .iter()
            .enumerate()
            .filter_map(|(t, s)| s.clone().map(|s| (t as TaskId, s)))
            .collect(),
    );
    let local_inboxes = channels
        .data_tx
        .iter()
        .enumerate()
        .filter_map(|(t, tx)| tx.clone().map(|tx| (t as TaskId, tx)))
        .collect();
    let loads = Arc::new(Loads::new(channels.data_tx.len(), local_inboxes));
    let (done_tx, done) = crossbeam_channel::bounded::<()>(0);
    let (held_tx, held_changed) = crossbeam_channel::bounded::<()>(1);
    let mut wiring = Wiring {
        settings: topology.settings().clone(),
        topology: &topology,
        plan: &plan,
        options: &options,
        routes: &routes,
        stop: stop.clone(),
        errors: Arc::new(Mutex::new(Vec::new())),
        component_tasks: Arc::new(plan.all_component_tasks().to_vec()),
        // Spare batch vectors kept for reuse: a few per task is plenty (each holds up to
        // a batch of tuples, so this also bounds what the pool retains).
        pool: Pool::new(64),
        taps: Arc::new(Taps::default()),
        loads: Arc::clone(&loads),
        done_tx,
        held_tx,
        rng: rand::rng(),
        made: Made::default(),
        checkpoints: &checkpoints,
    };
    for slot in plan.tasks().iter().filter(|s| here(&plan, &options, s.id)) {
        let TaskRole::Component(c) = slot.role else {
            continue;
        };
        if let Some(instance) = instances[slot.id as usize].take() {
            wiring.spawn_task(c, slot.id, slot.index, slot.worker, instance, &mut channels)?;
        }
    }
    let Wiring {
        errors,
        taps,
        done_tx,
        held_tx,
        mut rng,
        mut made,
        ..
    } = wiring;
    drop(done_tx);
    let Checkpointing {
        mut confirms,
        store,
        ..
    } = checkpoints;
    let mut coordinator = None;
    let mut figures = None;
    if let (Some(store), None, Some(c)) = (store, options.worker, &topology.settings().checkpoints)
    {
        let coord = crate::state::Coordinator::new(store, &topology)?;
        let rx = confirms.take().expect("a store comes with confirmations");
        let shared = Arc::new(Mutex::new(coord.figures()));
        figures = Some(Arc::clone(&shared));
        coordinator = Some(
            super::checkpoint::spawn(
                coord,
                c.interval,
                stop.spouts().to_vec(),
                rx,
                done.clone(),
                stop.clone(),
                shared,
            )
            .map_err(|source| StartError::Thread { task: 0, source })?,
        );
    }

    let ackers = spawn_ackers(
        channels.acker,
        &routes,
        topology.settings(),
        &mut made.shared,
    )?;
    let inboxes = Inboxes {
        data: made.queues.clone(),
        ackers: ackers.iter().map(|(t, tx, _)| (*t, tx.clone())).collect(),
        spouts: stop.spouts().to_vec(),
    };
    tracing::info!(
        topology = topology.name(),
        tasks = made.tasks.len(),
        ackers = ackers.len(),
        "Topology started."
    );
    loads.set_remote(&made.remote_in);
    Ok(RunningTopology {
        topology,
        plan,
        tasks: made.tasks,
        ackers,
        shared: made.shared,
        queues: made.queues,
        inboxes,
        remote_in: made.remote_in,
        latencies: made.latencies,
        stats: made.stats,
        incarnation: rng.next_u64() | 1,
        worker: options.worker.unwrap_or(0),
        held: made.held,
        held_changed,
        _held_tx: held_tx,
        stop,
        done,
        errors,
        started,
        loads,
        taps,
        confirms,
        coordinator,
        figures,
    })
}

/// The checkpoint side of a start: the store, the checkpoint resumed from, the writer
/// of this process's parts and its confirmations.
struct Checkpointing {
    store: Option<crate::state::CheckpointStore>,
    restored: Option<crate::state::Restored>,
    writer: Option<PartWriter>,
    confirms: Option<Receiver<crate::state::Confirm>>,
}

impl Checkpointing {
    fn open(topology: &Topology, options: &RunOptions) -> Result<Checkpointing, StartError> {
        let Some(store) = crate::state::open_store(topology, &options.base_dir)? else {
            return Ok(Checkpointing {
                store: None,
                restored: None,
                writer: None,
                confirms: None,
            });
        };
        let restored = options.restore.map(|id| store.read(id)).transpose()?;
        if let Some(r) = &restored {
            tracing::info!(checkpoint = r.manifest.id, "Resuming from a checkpoint.");
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let writer = PartWriter::start(store.clone(), tx)
            .map_err(|source| StartError::Thread { task: 0, source })?;
        Ok(Checkpointing {
            store: Some(store),
            restored,
            writer: Some(writer),
            confirms: Some(rx),
        })
    }

    /// What task `index` of `tasks` of `component` gets.
    fn task(&self, component: &str, index: usize, tasks: usize) -> Option<TaskCheckpoint> {
        Some(TaskCheckpoint {
            component: component.to_string(),
            index,
            tasks,
            writer: self.writer.clone()?,
            // A fresh start restores the empty state: a bolt learns it starts from nothing
            // (a sink truncates what an earlier attempt of the run wrote).
            restore: Some(
                self.restored
                    .as_ref()
                    .map(|r| r.reader(component, index, tasks))
                    .unwrap_or_default(),
            ),
        })
    }
}

/// Whether task `t` runs in this process.
fn here(plan: &PhysicalPlan, options: &RunOptions, t: TaskId) -> bool {
    options.worker.is_none_or(|w| plan.worker_of(t) == Some(w))
}

/// Makes the instance of every component task of this process, indexed by task id.
fn make_instances(
    topology: &Topology,
    plan: &PhysicalPlan,
    registry: &Registry,
    worker: Option<usize>,
) -> Result<Vec<Option<Instance>>, StartError> {
    let mut instances: Vec<Option<Instance>> = (0..plan.tasks().len() + 1).map(|_| None).collect();
    for slot in plan.tasks() {
        let TaskRole::Component(c) = slot.role else {
            continue;
        };
        if worker.is_some_and(|w| slot.worker != w) {
            continue;
        }
        let comp = &topology.components()[c];
        let made = match comp.kind {
            Kind::Spout => registry
                .make_spout(&comp.type_name, &comp.config)
                .map(Instance::Spout),
            Kind::Bolt => registry
                .make_bolt(&comp.type_name, &comp.config)
                .map(Instance::Bolt),
        };
        instances[slot.id as usize] = Some(made.map_err(|e| StartError::Component {
            component: comp.id.clone(),
            type_name: comp.type_name.clone(),
            message: e.to_string(),
        })?);
    }
    Ok(instances)
}

/// The inboxes of this process's tasks, indexed by task id: a bounded data queue per
/// bolt, an unbounded control queue per spout, one queue per acker.
struct Channels {
    data_tx: Vec<Option<Sender<Inbound>>>,
    data_rx: Vec<Option<Receiver<Inbound>>>,
    ctl_tx: Vec<Option<Sender<SpoutMsg>>>,
    ctl_rx: Vec<Option<Receiver<SpoutMsg>>>,
    acker: Vec<(TaskId, Sender<AckerIn>, Receiver<AckerIn>)>,
}

impl Channels {
    fn new(topology: &Topology, plan: &PhysicalPlan, options: &RunOptions) -> Channels {
        let n = plan.tasks().len() + 1;
        let mut ch = Channels {
            data_tx: vec![None; n],
            data_rx: vec![None; n],
            ctl_tx: vec![None; n],
            ctl_rx: vec![None; n],
            acker: Vec::new(),
        };
        for slot in plan.tasks().iter().filter(|s| here(plan, options, s.id)) {
            let TaskRole::Component(c) = slot.role else {
                continue;
            };
            let i = slot.id as usize;
            match topology.components()[c].kind {
                Kind::Bolt => {
                    let (tx, rx) = crossbeam_channel::bounded(options.queue_batches.max(1));
                    ch.data_tx[i] = Some(tx);
                    ch.data_rx[i] = Some(rx);
                }
                Kind::Spout => {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    ch.ctl_tx[i] = Some(tx);
                    ch.ctl_rx[i] = Some(rx);
                }
            }
        }
        ch.acker = plan
            .ackers()
            .iter()
            .filter(|&&t| here(plan, options, t))
            .map(|&t| {
                let (tx, rx) = crossbeam_channel::unbounded();
                (t, tx, rx)
            })
            .collect();
        ch
    }
}

/// A route to every task of the plan: its local inbox, or the transport.
struct Routes {
    data: Vec<Option<Route<Inbound>>>,
    ackers: Vec<(TaskId, Route<AckerIn>)>,
    spouts: Vec<Option<Route<SpoutMsg>>>,
}

impl Routes {
    fn new(
        topology: &Topology,
        plan: &PhysicalPlan,
        options: &RunOptions,
        channels: &Channels,
    ) -> Result<Routes, StartError> {
        let remote = |t: TaskId| -> Result<&Remotes, StartError> {
            options.remote.as_ref().ok_or(StartError::NoTransport {
                task: t,
                worker: plan.worker_of(t).unwrap_or(0),
            })
        };
        let n = plan.tasks().len() + 1;
        let mut routes = Routes {
            data: vec![None; n],
            ackers: Vec::new(),
            spouts: vec![None; n],
        };
        for slot in plan.tasks() {
            let TaskRole::Component(c) = slot.role else {
                continue;
            };
            let t = slot.id;
            let i = t as usize;
            match topology.components()[c].kind {
                Kind::Bolt => {
                    routes.data[i] = Some(match &channels.data_tx[i] {
                        Some(tx) => Route::Local(tx.clone()),
                        None if options.remote.is_some() => {
                            Route::Remote(Arc::clone(&remote(t)?.data))
                        }
                        // Reported by the first task that needs to reach it.
                        None => continue,
                    });
                }
                Kind::Spout => {
                    routes.spouts[i] = Some(match &channels.ctl_tx[i] {
                        Some(tx) => Route::Local(tx.clone()),
                        None => Route::Remote(Arc::clone(&remote(t)?.spout)),
                    });
                }
            }
        }
        for &t in plan.ackers() {
            let route = match channels.acker.iter().find(|a| a.0 == t) {
                Some((_, tx, _)) => Route::Local(tx.clone()),
                None => Route::Remote(Arc::clone(&remote(t)?.acker)),
            };
            routes.ackers.push((t, route));
        }
        Ok(routes)
    }

    /// The route to bolt task `t`.
    fn data(&self, plan: &PhysicalPlan, t: TaskId) -> Result<Route<Inbound>, StartError> {
        self.data[t as usize]
            .clone()
            .ok_or(StartError::NoTransport {
                task: t,
                worker: plan.worker_of(t).unwrap_or(0),
            })
    }
}

/// What the started tasks left for the [`RunningTopology`] to watch.
#[derive(Default)]
struct Made {
    tasks: Vec<(TaskId, JoinHandle<Counts>)>,
    shared: Vec<(TaskId, Arc<SharedCounts>)>,
    queues: Vec<(TaskId, Sender<Inbound>)>,
    remote_in: Vec<(TaskId, Sender<RemoteBatch>)>,
    latencies: Vec<(TaskId, Arc<Mutex<Histogram>>)>,
    stats: Vec<(TaskId, Arc<Mutex<TaskStats>>)>,
    held: Vec<Arc<AtomicBool>>,
}

/// What every task of one start shares, and what the started tasks leave behind.
struct Wiring<'a> {
    settings: Settings,
    topology: &'a Arc<Topology>,
    plan: &'a PhysicalPlan,
    options: &'a RunOptions,
    routes: &'a Routes,
    stop: StopHandle,
    errors: Arc<Mutex<Vec<String>>>,
    component_tasks: Arc<Vec<Vec<TaskId>>>,
    pool: Pool,
    taps: Arc<Taps>,
    loads: Arc<Loads>,
    done_tx: Sender<()>,
    held_tx: Sender<()>,
    rng: rand::rngs::ThreadRng,
    made: Made,
    checkpoints: &'a Checkpointing,
}

impl Wiring<'_> {
    /// Starts the thread of task `task` (the `index`th of component `c`, placed in worker
    /// `me`).
    fn spawn_task(
        &mut self,
        c: usize,
        task: TaskId,
        index: usize,
        me: usize,
        instance: Instance,
        channels: &mut Channels,
    ) -> Result<(), StartError> {
        let topology = Arc::clone(self.topology);
        let comp = &topology.components()[c];
        let out = self.output(c, task, me)?;
        let wake = Arc::new(AtomicBool::new(false));
        let ctx = TaskContext {
            topology: Arc::clone(&topology),
            component: comp.id.clone(),
            task,
            task_index: index,
            component_tasks: Arc::clone(&self.component_tasks),
            worker: me,
            base_dir: self.options.base_dir.clone(),
            notifier: notifier(comp.kind, task, channels, &wake),
        };
        let checkpoint = self
            .checkpoints
            .task(&comp.id, index, self.plan.component_tasks(c).len());
        let run: Box<dyn FnOnce() -> Counts + Send> = match instance {
            Instance::Spout(spout) => {
                let Some(ctl) = channels.ctl_rx[task as usize].take() else {
                    return Ok(());
                };
                let settings = &self.settings;
                let exec = SpoutExecutor {
                    spout,
                    core: SpoutCore::new(out, settings.message_timeout),
                    ctl,
                    ctx,
                    max_pending: settings.max_spout_pending.filter(|_| settings.acking),
                    stop: self.stop.clone(),
                    errors: Arc::clone(&self.errors),
                    latency_out: Arc::default(),
                    hold: self.options.hold_done.then(|| Hold {
                        flag: Arc::default(),
                        changed: self.held_tx.clone(),
                    }),
                    checkpoint,
                };
                self.made
                    .held
                    .extend(exec.hold.as_ref().map(|h| Arc::clone(&h.flag)));
                self.made
                    .latencies
                    .push((task, Arc::clone(&exec.latency_out)));
                Box::new(move || exec.run())
            }
            Instance::Bolt(bolt) => {
                let Some(inbox) = channels.data_rx[task as usize].take() else {
                    return Ok(());
                };
                if let Some(tx) = &channels.data_tx[task as usize] {
                    self.made.queues.push((task, tx.clone()));
                }
                let upstream = comp
                    .inputs
                    .iter()
                    .map(|i| i.from)
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .map(|from| self.plan.component_tasks(from).len())
                    .sum();
                // With peers: a second inbox for their batches, decoded on this thread.
                let remote = self.options.remote.as_ref().map(|_| {
                    let (tx, rx) = crossbeam_channel::unbounded();
                    self.made.remote_in.push((task, tx));
                    RemoteIn::new(
                        rx,
                        wire::DataDecoder::new(Arc::clone(&topology)),
                        task,
                        comp.id.clone(),
                    )
                });
                let exec = BoltExecutor {
                    bolt,
                    core: BoltCore::new(out),
                    inbox,
                    remote,
                    remote_turn: false,
                    ctx,
                    upstream,
                    tick: comp.tick,
                    wake,
                    stop: self.stop.clone(),
                    errors: Arc::clone(&self.errors),
                    checkpoint,
                    align: Align::default(),
                };
                Box::new(move || exec.run())
            }
        };
        let done_tx = self.done_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("{}-{task}", comp.id))
            .spawn(move || {
                let counts = run();
                drop(done_tx);
                counts
            })
            .map_err(|source| StartError::Thread { task, source })?;
        self.made.tasks.push((task, handle));
        Ok(())
    }

    /// The output of task `task` of component `c` in worker `me`: a router per
    /// subscription of each stream, and a route to every task downstream.
    fn output(&mut self, c: usize, task: TaskId, me: usize) -> Result<Output, StartError> {
        let topology = Arc::clone(self.topology);
        let plan = self.plan;
        let comp = &topology.components()[c];
        let checkpointed = self.settings.checkpoints.is_some();
        // Load-aware shuffles only where some tasks are elsewhere: one worker of several.
        let aware =
            (self.settings.load_aware && self.options.worker.is_some()).then_some(&self.loads);
        let streams: Vec<StreamOut> = comp
            .outputs
            .iter()
            .map(|decl| StreamOut {
                name: decl.name.clone(),
                info: StreamInfo::intern(&comp.id, &decl.name, &decl.fields),
                direct: decl.direct,
                routers: topology
                    .subscribers(c, &decl.name)
                    .map(|(sub, input)| {
                        Router::new(
                            &input.grouping,
                            plan.component_tasks(sub),
                            &decl.fields,
                            |t| plan.worker_of(t) == Some(me),
                            self.rng.next_u64() as usize,
                            aware,
                        )
                        .keyed_if(checkpointed)
                    })
                    .collect(),
            })
            .collect();
        // Every task of every subscriber: each gets the end of this task's stream.
        let downstream: BTreeSet<TaskId> = comp
            .outputs
            .iter()
            .flat_map(|decl| topology.subscribers(c, &decl.name))
            .flat_map(|(sub, _)| plan.component_tasks(sub).iter().copied())
            .collect();
        let dests = downstream
            .iter()
            .map(|&t| self.routes.data(plan, t).map(|r| (t, r)))
            .collect::<Result<Vec<_>, _>>()?;
        let counts = Arc::new(SharedCounts::default());
        self.made.shared.push((task, Arc::clone(&counts)));
        let task_stats = Arc::new(Mutex::new(TaskStats::default()));
        self.made.stats.push((task, Arc::clone(&task_stats)));
        Ok(Output::new(OutputSpec {
            task,
            component: comp.id.clone(),
            streams,
            dests,
            ackers: self.routes.ackers.clone(),
            tracking: self.settings.acking,
            batch: self.options.batch_size,
            flush_interval: self.options.flush_interval,
            pool: self.pool.clone(),
            shared: counts,
            stats: task_stats,
            tap: self.taps.slot(&comp.id),
        }))
    }
}

/// How a task is woken from another thread: a spout by a message on its control queue,
/// a bolt by one `Wake` in its data queue until it runs again.
fn notifier(kind: Kind, task: TaskId, channels: &Channels, wake: &Arc<AtomicBool>) -> Notifier {
    match kind {
        Kind::Spout => {
            let tx = channels.ctl_tx[task as usize].clone();
            Notifier(Arc::new(move || {
                if let Some(tx) = &tx {
                    let _ = tx.send(SpoutMsg::Wake);
                }
            }))
        }
        Kind::Bolt => {
            let tx = channels.data_tx[task as usize].clone();
            let flag = Arc::clone(wake);
            Notifier(Arc::new(move || {
                if !flag.swap(true, Ordering::AcqRel) {
                    if let Some(tx) = &tx {
                        let _ = tx.try_send(Inbound::Wake);
                    }
                }
            }))
        }
    }
}

/// Starts a thread per acker task of this process.
fn spawn_ackers(
    chans: Vec<(TaskId, Sender<AckerIn>, Receiver<AckerIn>)>,
    routes: &Routes,
    settings: &Settings,
    shared: &mut Vec<(TaskId, Arc<SharedCounts>)>,
) -> Result<Vec<Acker>, StartError> {
    let mut ackers = Vec::new();
    for (task, tx, rx) in chans {
        let counts = Arc::new(SharedCounts::default());
        shared.push((task, Arc::clone(&counts)));
        let exec = AckerExecutor {
            task,
            inbox: rx,
            spouts: routes.spouts.clone(),
            rotate_every: settings.message_timeout,
            shared: counts,
        };
        let handle = std::thread::Builder::new()
            .name(format!("{ACKER}-{task}"))
            .spawn(move || exec.run())
            .map_err(|source| StartError::Thread { task, source })?;
        ackers.push((task, tx, handle));
    }
    Ok(ackers)
}
