//! Test components shared by the engine's integration tests: a numbers spout that logs
//! what happened to each message, a bolt that records what it received, `run`, and
//! `run_workers` (a topology as several workers in this process, over loopback TCP).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::{
    Bolt, BoltOutput, MsgId, Poll, Registry, Result, RunOptions, RunSummary, Spout, SpoutOutput,
    TaskContext, TaskId, Tuple, Value,
};

/// What the spout saw, from its own point of view.
#[derive(Debug, Default, Clone)]
pub struct SpoutLog {
    /// Every `ack(id)`, in order.
    pub acked: Vec<MsgId>,
    /// Every `fail(id)`, in order.
    pub failed: Vec<MsgId>,
    /// Tracked messages emitted and neither acked nor failed yet.
    pub pending: usize,
    /// The most `pending` ever was.
    pub max_pending: usize,
    /// Emits (first emits and replays).
    pub emits: u64,
}

pub type Log = Arc<Mutex<SpoutLog>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NumbersConfig {
    /// Messages in all, over every task; unbounded when absent.
    count: Option<u64>,
    /// Emit again what failed (default true).
    #[serde(default = "yes")]
    replay: bool,
}

fn yes() -> bool {
    true
}

struct Numbers {
    log: Log,
    next: u64,
    step: u64,
    count: Option<u64>,
    replay: bool,
    again: Vec<u64>,
}

impl Spout for Numbers {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        self.next = ctx.task_index as u64;
        self.step = ctx.tasks_of(&ctx.component).len() as u64;
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        let n = match self.again.pop() {
            Some(n) => n,
            None if self.count.is_some_and(|c| self.next >= c) => return Ok(Poll::Done),
            None => {
                self.next += self.step;
                self.next - self.step
            }
        };
        {
            let mut log = self.log.lock().unwrap();
            log.pending += 1;
            log.max_pending = log.max_pending.max(log.pending);
            log.emits += 1;
        }
        out.emit_id(n, [n]);
        Ok(Poll::Ready)
    }

    fn ack(&mut self, id: MsgId) {
        let mut log = self.log.lock().unwrap();
        log.pending -= 1;
        log.acked.push(id);
    }

    fn fail(&mut self, id: MsgId) {
        let mut log = self.log.lock().unwrap();
        log.pending -= 1;
        log.failed.push(id);
        if self.replay {
            self.again.push(id);
        }
    }
}

/// Registers spout type `numbers` (`count`, `replay`): emits `n` = 0, 1, 2, ... each
/// with message id `n`, and logs into `log`.
pub fn numbers(registry: &mut Registry, log: &Log) {
    let log = Arc::clone(log);
    registry.spout(
        "numbers",
        "Emits 0, 1, 2, ... with message ids.",
        |_: &NumbersConfig| vec![StreamDecl::default_stream(["n"])],
        move |c: NumbersConfig| {
            Ok(Numbers {
                log: Arc::clone(&log),
                next: 0,
                step: 1,
                count: c.count,
                replay: c.replay,
                again: Vec::new(),
            })
        },
    );
}

/// What a recording bolt received: (task, values), in arrival order per task.
pub type Seen = Arc<Mutex<Vec<(TaskId, Vec<Value>)>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

struct Record {
    seen: Seen,
    task: TaskId,
}

impl Bolt for Record {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.task = ctx.task;
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        self.seen
            .lock()
            .unwrap()
            .push((self.task, input.values().to_vec()));
        Ok(())
    }
}

/// Registers bolt type `name` that records every input into `seen` and acks it.
pub fn recorder(registry: &mut Registry, name: &str, seen: &Seen) {
    let seen = Arc::clone(seen);
    registry.bolt(
        name,
        "Records every input.",
        |_: &NoConfig| Vec::new(),
        move |_: NoConfig| {
            Ok(Record {
                seen: Arc::clone(&seen),
                task: 0,
            })
        },
    );
}

/// Which tasks got each value of field 0.
pub fn tasks_by_value(seen: &Seen) -> BTreeMap<String, Vec<TaskId>> {
    let mut map: BTreeMap<String, Vec<TaskId>> = BTreeMap::new();
    for (task, values) in seen.lock().unwrap().iter() {
        let tasks = map.entry(values[0].to_string()).or_default();
        if !tasks.contains(task) {
            tasks.push(*task);
        }
    }
    map
}

/// Runs `topology` until it ends by itself. A guard stops it after a minute so that a
/// broken engine fails the test's assertions instead of hanging it.
pub fn run(topology: Topology, registry: &Registry) -> RunSummary {
    let running = topo_engine::start(Arc::new(topology), registry, RunOptions::default()).unwrap();
    if !running.wait_timeout(Duration::from_secs(60)) {
        running.stop();
    }
    running.wait()
}

/// How one worker of [`run_workers`] ended: its tasks' summary and its final snapshot,
/// with its transport's figures.
pub struct Finished {
    pub summary: RunSummary,
    pub snapshot: topo_engine::metrics::WorkerSnapshot,
}

/// Runs `topology` as its plan's workers in this process, each with its own transport
/// over loopback TCP (the bridge worker processes use: `launcher::worker::start`), until
/// every task ended (60 s at most, then they are stopped); returns each worker's end.
pub fn run_workers(
    topology: &Arc<Topology>,
    registry: &Registry,
    options: RunOptions,
) -> Vec<Finished> {
    use topo_engine::launcher::worker;
    use topo_engine::metrics::TransportSnapshot;
    use topo_transport::{Deliver, Transport, TransportConfig};

    let n = topo_engine::PhysicalPlan::new(topology).workers();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter();
    let listeners: Vec<_> = (0..n)
        .map(|_| {
            rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap()
        })
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut transports = Vec::new();
    for (w, listener) in listeners.into_iter().enumerate() {
        let config = TransportConfig::new(w as u32, addrs.clone(), 42, b"secret".to_vec());
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let dispatcher = worker::Dispatcher::new();
        let sink = Arc::clone(&dispatcher) as Arc<dyn Deliver>;
        let transport = Transport::start_with(config, listener, shutdown, sink).unwrap();
        transports.push((transport, dispatcher));
    }
    for (w, (t, _)) in transports.iter().enumerate() {
        for peer in (0..n as u32).filter(|p| *p != w as u32) {
            assert!(
                t.sender(peer)
                    .unwrap()
                    .wait_connected(Duration::from_secs(10)),
                "worker {w} reached {peer}"
            );
        }
    }
    let mut workers = Vec::new();
    for (transport, dispatcher) in &transports {
        let running = worker::start(
            Arc::clone(topology),
            registry,
            transport,
            dispatcher,
            options.clone(),
        )
        .unwrap();
        workers.push(running);
    }
    for w in &workers {
        if !w.wait_timeout(Duration::from_secs(60)) {
            w.stop();
        }
    }
    let mut finished: Vec<Finished> = workers
        .into_iter()
        .map(|w| {
            let (summary, snapshot) = w.wait_snapshot();
            Finished { summary, snapshot }
        })
        .collect();
    for (f, (t, _)) in finished.iter_mut().zip(&transports) {
        f.snapshot.transport = Some(TransportSnapshot::of(t, n as u32));
    }
    let _ = stop_tx.send(true);
    for (t, _) in transports {
        rt.block_on(t.join());
    }
    finished
}
