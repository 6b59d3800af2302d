//! A worker process: the tasks of one worker of the plan, connected to the other workers
//! over the transport, driven by its supervisor (`topo run` or `topo supervisor`) over
//! its control channel.
//!
//! # Control protocol
//! One JSON object per line, both ways on the control channel (a Unix socket the
//! supervisor passes as file descriptor [`CONTROL_FD`](super::CONTROL_FD); see
//! [`process`](super::process)). The supervisor writes [`ToWorker`] lines, the worker
//! writes [`FromWorker`] lines. Its stdout and stderr are its own (a `console` bolt, its
//! logs): no tuple data can reach the control channel.
//!
//! ```text
//! supervisor                                  worker i
//!   Start {topology, base_dir, worker, secret, restore} ->
//!                                             <- Listening {addr}     (bound 127.0.0.1:0)
//!   Peers {addrs} (once every worker listens) ->
//!                                                connects to every peer, starts its tasks
//!                                             <- Running
//!                                             <- Status {spouts_done} (every 100 ms: the heartbeat,
//!                                                and at once when it changes)
//!                                             <- Metrics {snapshot}   (every second)
//!   PeerMoved {worker, addr} (a peer restarted) ->
//!   Deactivate / Activate (any time it runs)  ->
//!   Tap {tap, component, ...} / Untap {tap}   ->
//!                                             <- Tapped {tap, record} (a sample, while tapped)
//!   Checkpoint {id} (checkpointed topology)   ->
//!                                                spouts record positions, emit barriers
//!                                             <- Checkpointed {confirm} (per task part written)
//!   Finish (every spout is done, or time is up) ->
//!                                                spouts end their streams, tasks drain
//!                                             <- Metrics {snapshot}   (final)
//!                                             <- Summary {summary}
//!   Exit (every worker sent its summary)      ->
//! ```
//!
//! The secret travels on the control channel only, never in argv or the environment. EOF
//! on the control channel means the supervisor is gone: the worker exits at once.
//!

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use serde::{Deserialize, Serialize};
use topo_dsl::Topology;

use crate::bridge::outbound as remote;
pub use crate::bridge::Dispatcher;
use crate::metrics::{TransportSnapshot, WorkerSnapshot};
use crate::registry::Registry;
use crate::runtime::{self, Remotes, RunOptions, RunningTopology};
use crate::state::Confirm;
use crate::summary::RunSummary;
use crate::tap::{Tap, TapRecord};
use crate::PhysicalPlan;
use topo_transport::{self as transport, Transport, TransportConfig};

/// A message from the supervisor to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// The run: what to run and who this worker is.
    Start {
        /// The topology file's text (the worker validates it again with its registry).
        topology: String,
        /// Folder that relative paths in component configs resolve against.
        base_dir: PathBuf,
        /// This worker's index in the plan.
        worker: usize,
        /// The run's shared secret, hex.
        secret: String,
        /// The plan's fingerprint; peers with another are refused.
        fingerprint: u64,
        /// The IP address its transport listens on (port 0); 127.0.0.1 when absent. A
        /// cluster supervisor passes its own listen address.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bind: Option<IpAddr>,
        /// A checkpointed topology resumes from this committed checkpoint (absent: it
        /// starts afresh).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restore: Option<u64>,
    },
    /// Start checkpoint `id` in the spout tasks here.
    Checkpoint {
        /// The checkpoint.
        id: u64,
    },
    /// Every worker's listening address, by worker index.
    Peers {
        /// The addresses.
        addrs: Vec<SocketAddr>,
    },
    /// A worker restarted and listens on a new address.
    PeerMoved {
        /// Its index.
        worker: usize,
        /// Its new address.
        addr: SocketAddr,
    },
    /// End the run: spouts end their streams, tasks drain, then send the summary.
    Finish,
    /// Deactivate every spout task here: `next_tuple` is no longer called (pending trees
    /// still complete or fail).
    Deactivate,
    /// Activate the spouts again.
    Activate,
    /// Tap `component`'s tasks here and send what they emit as `Tapped` (see
    /// [`relay`](super::relay)).
    Tap {
        /// The tap's id, in `Tapped` and `Untap`.
        tap: u64,
        /// The component.
        component: String,
        /// Only this stream (every stream when absent).
        stream: Option<String>,
        /// At most this many records a second.
        per_sec: f64,
    },
    /// Detach tap `tap`.
    Untap {
        /// The tap's id.
        tap: u64,
    },
    /// Shut down (after the summary).
    Exit,
}

/// A message from a worker to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker's transport listens here.
    Listening {
        /// The address.
        addr: SocketAddr,
    },
    /// Connected to every peer; the tasks run.
    Running,
    /// The heartbeat.
    Status {
        /// Every spout task here is done with no pending trees.
        spouts_done: bool,
    },
    /// Its figures, about once a second and once more before the summary (final).
    Metrics {
        /// The snapshot.
        snapshot: Box<WorkerSnapshot>,
    },
    /// Every task ended: what they did.
    Summary {
        /// The worker's summary (tasks of other workers count zero).
        summary: RunSummary,
    },
    /// The worker cannot run (its tasks would not start).
    Failed {
        /// Why.
        message: String,
        /// The topology or a component config is at fault (exit code 1), rather than I/O.
        invalid: bool,
    },
    /// A tuple one of its tasks emitted, for tap `tap`.
    Tapped {
        /// The tap's id.
        tap: u64,
        /// The tuple.
        record: TapRecord,
    },
    /// A task here wrote its part of a checkpoint (or could not).
    Checkpointed {
        /// What it says.
        confirm: Box<Confirm>,
    },
    /// Tap `tap` cannot be attached here.
    TapFailed {
        /// The tap's id.
        tap: u64,
        /// Why.
        message: String,
    },
}

/// How often a worker sends its status.
pub const STATUS_INTERVAL: Duration = Duration::from_millis(100);

/// How often a worker sends its metrics snapshot.
pub const METRICS_INTERVAL: Duration = Duration::from_secs(1);

/// The plan's fingerprint: peers with another plan are refused.
pub fn fingerprint(topology_text: &str, workers: usize) -> u64 {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(topology_text.as_bytes());
    h.update((workers as u64).to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Writes [`FromWorker`] lines to the control channel.
#[derive(Clone)]
struct Say(Arc<Mutex<UnixStream>>);

impl Say {
    fn say(&self, msg: &FromWorker) {
        let Ok(mut line) = serde_json::to_vec(msg) else {
            return;
        };
        line.push(b'\n');
        let mut out = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let _ = out.write_all(&line);
    }
}

/// Reads [`ToWorker`] lines from the control channel on a thread; the channel closes at
/// EOF.
fn read_control(control: UnixStream) -> Receiver<ToWorker> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let spawned = std::thread::Builder::new()
        .name("control".into())
        .spawn(move || {
            for line in BufReader::new(control).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<ToWorker>(&line) {
                    Ok(msg) => {
                        if tx.send(msg).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "Ignored a control line that does not parse.")
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "Cannot read the control channel.");
    }
    rx
}

/// The supervisor is gone (EOF on the control channel): nothing left to report to.
fn orphaned(worker: usize) -> ! {
    tracing::warn!(worker, "The supervisor is gone; exiting.");
    std::process::exit(3)
}

/// Why [`start`] could not start a worker.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its tasks would not start (a component config, or a thread).
    #[error(transparent)]
    Tasks(#[from] runtime::StartError),
    /// The dispatcher already hands deliveries to other tasks.
    #[error("the dispatcher is attached to another worker's tasks already")]
    Attached,
    /// The thread that samples and publishes the tasks' loads could not be started.
    #[error("cannot start the load sampler thread: {0}")]
    Sampler(std::io::Error),
}

/// Starts, in this process, the tasks of worker `transport.worker()` of `topology`'s
/// plan, connected to the other workers through `transport`, which hands what peers send
/// to `dispatcher` (given to [`Transport::start_with`]): the same bridge a worker process
/// uses, with per-task flow control and ends of streams sent again to a worker that comes
/// back. `options.worker` and `options.remote` are set here.
pub fn start(
    topology: Arc<Topology>,
    registry: &Registry,
    transport: &Transport,
    dispatcher: &Dispatcher,
    options: RunOptions,
) -> Result<RunningTopology, StartError> {
    let plan = PhysicalPlan::new(&topology);
    let workers = plan.workers();
    let me = transport.worker() as usize;
    let senders: Vec<_> = (0..workers as u32).map(|w| transport.sender(w)).collect();
    let remote = Arc::new(remote::Remote::new(&plan, me, &senders));
    let options = RunOptions {
        worker: Some(me),
        remote: Some(Remotes {
            data: remote.clone(),
            acker: remote.clone(),
            spout: remote.clone(),
        }),
        ..options
    };
    let running = runtime::start(Arc::clone(&topology), registry, options)?;
    remote.set_loads(running.loads());
    if topology.settings().load_aware && plan.shuffles_across_workers(&topology) {
        let to_peers = Arc::clone(&remote);
        let sampler = crate::load::spawn_sampler(running.loads(), me, move |report| {
            to_peers.publish_loads(report)
        });
        if let Err(e) = sampler {
            running.stop();
            return Err(StartError::Sampler(e));
        }
    }
    if !dispatcher.attach(
        running.plan(),
        running.inboxes(),
        running.remote_inboxes(),
        remote,
        me,
    ) {
        running.stop();
        return Err(StartError::Attached);
    }
    Ok(running)
}

/// Runs a worker process (the hidden `topo worker` verb) driven over the control
/// channel its supervisor passed as file descriptor `control_fd`; returns the exit code.
pub fn run(registry: &Registry, control_fd: i32) -> i32 {
    let control = match take_control(control_fd) {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "error: `topo worker` is started by a supervisor (`topo run`, `topo supervisor`), which passes it a control channel as fd {control_fd}: {e}"
            );
            return 2;
        }
    };
    let writer = match control.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: cannot use the control channel: {e}");
            return 2;
        }
    };
    let ctl = read_control(control);
    let say = Say(Arc::new(Mutex::new(writer)));
    let (text, base_dir, me, secret, fingerprint, bind, restore) = match ctl.recv() {
        Ok(ToWorker::Start {
            topology,
            base_dir,
            worker,
            secret,
            fingerprint,
            bind,
            restore,
        }) => (
            topology,
            base_dir,
            worker,
            secret,
            fingerprint,
            bind,
            restore,
        ),
        Ok(other) => {
            eprintln!("error: the first control message must be `start`, not {other:?}");
            return 2;
        }
        Err(_) => {
            eprintln!("error: the supervisor closed the control channel before the start");
            return 2;
        }
    };
    let fail = |message: String, invalid: bool| {
        tracing::error!(worker = me, "{message}");
        say.say(&FromWorker::Failed { message, invalid });
        if invalid {
            1
        } else {
            2
        }
    };
    let topology = match topo_dsl::load(&text, registry) {
        Ok(t) => Arc::new(t),
        Err(d) => return fail(format!("invalid topology ({} errors)", d.len()), true),
    };
    let Some(secret) = unhex(&secret).filter(|s| !s.is_empty()) else {
        return fail("the secret is not hex".into(), false);
    };
    let plan = PhysicalPlan::new(&topology);
    let workers = plan.workers();
    if me >= workers {
        return fail(format!("worker {me} is not in a plan of {workers}"), false);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("transport")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the I/O runtime: {e}"), false),
    };
    let listener = match rt.block_on(transport::bind(bind.map(|ip| SocketAddr::new(ip, 0)))) {
        Ok(l) => l,
        Err(e) => return fail(format!("cannot listen: {e}"), false),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return fail(format!("cannot listen: {e}"), false),
    };
    tracing::info!(worker = me, %addr, pid = std::process::id(), "Worker listening.");
    say.say(&FromWorker::Listening { addr });

    let mut finish = false;
    // Deactivated before the tasks run: they start deactivated.
    let mut inactive = false;
    let peers = loop {
        match ctl.recv() {
            Ok(ToWorker::Peers { addrs }) => break addrs,
            Ok(ToWorker::Finish) => finish = true,
            Ok(ToWorker::Deactivate) => inactive = true,
            Ok(ToWorker::Activate) => inactive = false,
            Ok(ToWorker::Exit) => return 0,
            Ok(_) => {}
            Err(_) => orphaned(me),
        }
    };
    if peers.len() != workers {
        return fail(
            format!("{} peer addresses for {workers} workers", peers.len()),
            false,
        );
    }
    let _tokio = rt.enter();
    let mut config = TransportConfig::new(me as u32, peers, fingerprint, secret);
    config.encrypt = topology.settings().encrypt;
    let dispatcher = Dispatcher::new();
    let sink = Arc::clone(&dispatcher) as Arc<dyn transport::Deliver>;
    let transport = match Transport::start_with(config, listener, std::future::pending(), sink) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot start the transport: {e}"), false),
    };
    let senders: Vec<_> = (0..workers as u32).map(|w| transport.sender(w)).collect();
    // Every peer connected before the first tuple: nothing waits at the start.
    for s in senders.iter().flatten() {
        while !s.wait_connected(STATUS_INTERVAL) {
            loop {
                match ctl.try_recv() {
                    Ok(ToWorker::PeerMoved { worker, addr }) => {
                        transport.set_peer_addr(worker as u32, addr);
                    }
                    Ok(ToWorker::Finish) => finish = true,
                    Ok(ToWorker::Deactivate) => inactive = true,
                    Ok(ToWorker::Activate) => inactive = false,
                    Ok(ToWorker::Exit) => return 0,
                    Ok(_) => {}
                    Err(crossbeam_channel::TryRecvError::Empty) => break,
                    Err(crossbeam_channel::TryRecvError::Disconnected) => orphaned(me),
                }
            }
            say.say(&FromWorker::Status { spouts_done: false });
        }
    }
    let options = RunOptions {
        base_dir,
        hold_done: true,
        restore,
        ..RunOptions::default()
    };
    let running = match start(
        Arc::clone(&topology),
        registry,
        &transport,
        &dispatcher,
        options,
    ) {
        Ok(running) => running,
        Err(e @ StartError::Tasks(_)) => return fail(e.to_string(), true),
        Err(e @ (StartError::Attached | StartError::Sampler(_))) => {
            return fail(e.to_string(), false)
        }
    };
    tracing::info!(
        worker = me,
        tasks = plan.worker_tasks(me).count(),
        "Worker running."
    );
    say.say(&FromWorker::Running);
    if inactive {
        running.stop_handle().deactivate();
    }
    if finish {
        running.stop();
    }
    let mut taps = Forwarders::default();
    let mut reported = std::time::Instant::now();
    let mut said_done = false;
    let mut last_status = std::time::Instant::now();
    let say_status = |running: &RunningTopology, said: &mut bool, last: &mut std::time::Instant| {
        let done = running.spouts_done();
        // A change at once; otherwise the heartbeat.
        if done != *said || last.elapsed() >= STATUS_INTERVAL {
            *said = done;
            *last = std::time::Instant::now();
            say.say(&FromWorker::Status { spouts_done: done });
        }
    };
    let never = crossbeam_channel::never();
    let confirms = running.confirmations().unwrap_or(&never).clone();
    loop {
        // Woken by the supervisor, by a spout's done flag changing (the supervisor ends a
        // bounded run as soon as every spout is done) and by the last task ending (the
        // summary goes out at once): `topo run` of a bounded topology ends without
        // waiting for a heartbeat.
        let woke = crossbeam_channel::select! {
            recv(ctl) -> msg => Some(msg),
            recv(confirms) -> c => {
                if let Ok(confirm) = c {
                    say.say(&FromWorker::Checkpointed {
                        confirm: Box::new(confirm),
                    });
                }
                None
            }
            recv(running.spouts_done_changed()) -> _ => None,
            recv(running.ended_signal()) -> _ => None,
            default(STATUS_INTERVAL) => None,
        };
        // `None`: not from the supervisor, only the checks below.
        match woke {
            Some(Ok(ToWorker::Finish)) => running.stop(),
            Some(Ok(ToWorker::Deactivate)) => {
                tracing::info!(worker = me, "Spouts deactivated.");
                running.stop_handle().deactivate();
            }
            Some(Ok(ToWorker::Activate)) => {
                tracing::info!(worker = me, "Spouts activated.");
                running.stop_handle().activate();
            }
            Some(Ok(ToWorker::PeerMoved { worker, addr })) => {
                tracing::info!(worker = me, peer = worker, %addr, "Peer moved.");
                transport.set_peer_addr(worker as u32, addr);
            }
            Some(Ok(ToWorker::Tap {
                tap,
                component,
                stream,
                per_sec,
            })) => match running.tap(&component, stream.as_deref()) {
                Ok(t) => taps.start(tap, t, per_sec, say.clone()),
                Err(e) => say.say(&FromWorker::TapFailed {
                    tap,
                    message: e.to_string(),
                }),
            },
            Some(Ok(ToWorker::Untap { tap })) => taps.stop(tap),
            Some(Ok(ToWorker::Checkpoint { id })) => {
                running.checkpoint(id);
            }
            Some(Ok(ToWorker::Exit)) => std::process::exit(0),
            Some(Ok(_)) | None => {}
            Some(Err(_)) => orphaned(me),
        }
        if running.wait_timeout(Duration::ZERO) {
            break;
        }
        say_status(&running, &mut said_done, &mut last_status);
        if reported.elapsed() >= METRICS_INTERVAL {
            reported = std::time::Instant::now();
            let mut snapshot = running.snapshot();
            snapshot.transport = Some(TransportSnapshot::of(&transport, workers as u32));
            say.say(&FromWorker::Metrics {
                snapshot: Box::new(snapshot),
            });
        }
    }
    taps.stop_all();
    let (summary, mut snapshot) = running.wait_snapshot();
    snapshot.transport = Some(TransportSnapshot::of(&transport, workers as u32));
    say.say(&FromWorker::Metrics {
        snapshot: Box::new(snapshot),
    });
    say.say(&FromWorker::Summary { summary });
    // Stay connected until every worker is done: peers may still send us ends of streams.
    loop {
        match ctl.recv() {
            Ok(ToWorker::Exit) | Err(_) => break,
            Ok(ToWorker::PeerMoved { worker, addr }) => {
                transport.set_peer_addr(worker as u32, addr);
            }
            Ok(_) => {}
        }
    }
    transport.shutdown();
    let _ = rt.block_on(tokio::time::timeout(
        Duration::from_secs(2),
        transport.join(),
    ));
    tracing::info!(worker = me, "Worker stopped.");
    0
}

/// The threads that send tapped tuples to the supervisor, by tap id.
#[derive(Default)]
struct Forwarders {
    running: std::collections::BTreeMap<u64, Arc<std::sync::atomic::AtomicBool>>,
}

impl Forwarders {
    /// Sends `tap`'s records as `Tapped { tap: id }`, at most `per_sec` a second (what
    /// arrives during the pause is dropped: the next record sent is a fresh one).
    fn start(&mut self, id: u64, tap: Tap, per_sec: f64, say: Say) {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gap = if per_sec > 0.0 && per_sec.is_finite() {
            Duration::from_secs_f64(1.0 / per_sec)
        } else {
            Duration::ZERO
        };
        let stopped = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("tap".into())
            .spawn(move || {
                while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(record) = tap.records().recv_timeout(STATUS_INTERVAL) else {
                        continue;
                    };
                    say.say(&FromWorker::Tapped { tap: id, record });
                    if !gap.is_zero() {
                        std::thread::sleep(gap);
                        for _ in tap.records().try_iter() {}
                    }
                }
            });
        match spawned {
            Ok(_) => {
                if let Some(old) = self.running.insert(id, stop) {
                    old.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "Cannot start a tap thread."),
        }
    }

    fn stop(&mut self, id: u64) {
        if let Some(stop) = self.running.remove(&id) {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn stop_all(&mut self) {
        let ids: Vec<u64> = self.running.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}

/// The worker side: takes the control channel a supervisor passed as `fd`, marks it
/// close-on-exec (so no program the worker starts inherits it), and returns it.
fn take_control(fd: i32) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::FromRawFd;
    // SAFETY: fcntl on an fd number only reads or sets its flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the supervisor passed this fd for this purpose and nothing else owns it.
    let stream = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    // A socket, not a file a user pointed us at.
    stream.peer_addr()?;
    Ok(stream)
}
