//! The runtime: starts the tasks of a topology's plan on executor threads, stops them,
//! and collects what they did.
//!
//! ```
//! use std::sync::Arc;
//! use topo_dsl::{StreamDecl, Topology};
//! use topo_engine::{runtime, Poll, Registry, Spout, SpoutOutput, Result};
//!
//! #[derive(serde::Deserialize)]
//! struct NoConfig {}
//! struct Three(u64);
//! impl Spout for Three {
//!     fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
//!         if self.0 == 3 { return Ok(Poll::Done) }
//!         self.0 += 1;
//!         out.emit_id(self.0, [self.0]);
//!         Ok(Poll::Ready)
//!     }
//! }
//! let mut registry = Registry::new();
//! registry.spout("three", "Emits 1, 2, 3.", |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
//!     |_| Ok(Three(0)));
//! let topology = Topology::builder("t").spout("numbers", "three").build(&registry).unwrap();
//! let running = runtime::start(Arc::new(topology), &registry, Default::default()).unwrap();
//! let summary = running.wait();
//! assert_eq!(summary.counts("numbers").acked, 3);
//! ```
//!
//! # Layout
//! - `mod.rs`: what a run is given ([`RunOptions`], [`Remotes`]) and how starting fails.
//! - `start.rs`: [`start`] wires a plan's tasks (instances, inboxes, routes, executor
//!   threads, ackers).
//! - `running.rs`: [`RunningTopology`], the handle to what runs: stop, watch, summarize.
//! - `checkpoint.rs`: the checkpoint coordinator of a run in one process.

use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::route::{AckerIn, Inbound, RemoteSender, SpoutMsg};
use crate::summary::Counts;
use crate::tuple::TaskId;

mod checkpoint;
mod running;
mod start;

pub use crate::route::Inboxes;
pub use crate::stop::StopHandle;
pub use running::RunningTopology;
pub use start::start;

/// How to run a topology.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Folder that relative paths in component configs resolve against.
    pub base_dir: PathBuf,
    /// Most tuples in one batch between two tasks.
    pub batch_size: usize,
    /// Capacity of a bolt task's input queue, in batches.
    pub queue_batches: usize,
    /// A task sends what it buffered at least this often.
    pub flush_interval: Duration,
    /// Run only the tasks of this worker of the plan; `None` runs every worker's tasks
    /// in this process (all routes local).
    pub worker: Option<usize>,
    /// How to reach tasks of other workers; needed when `worker` is set and the plan has
    /// more than one worker.
    pub remote: Option<Remotes>,
    /// A spout task that is done with no pending trees waits for a stop instead of ending
    /// its stream (see [`RunningTopology::spouts_done`]): with several workers the
    /// supervisor decides the end, because a restarted worker replays.
    pub hold_done: bool,
    /// In a checkpointed topology: resume from this committed checkpoint (every task
    /// restores its state, every spout seeks to its position); `None` starts afresh.
    pub restore: Option<u64>,
}

/// Senders to the tasks of other workers, provided by the transport.
#[derive(Clone)]
pub struct Remotes {
    /// Data batches and end-of-stream markers to bolt tasks (may block for credits).
    pub data: Arc<dyn RemoteSender<Inbound>>,
    /// Acker messages (must not block).
    pub acker: Arc<dyn RemoteSender<AckerIn>>,
    /// Acks, fails and control messages to spout tasks (must not block).
    pub spout: Arc<dyn RemoteSender<SpoutMsg>>,
}

impl std::fmt::Debug for Remotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remotes")
    }
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            base_dir: PathBuf::from("."),
            batch_size: 512,
            queue_batches: 8,
            flush_interval: Duration::from_millis(1),
            worker: None,
            remote: None,
            hold_done: false,
            restore: None,
        }
    }
}

/// Why a topology could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A component's factory refused its config.
    #[error("cannot make `{component}` (type `{type_name}`): {message}")]
    Component {
        /// The component id.
        component: String,
        /// Its type.
        type_name: String,
        /// What the factory said.
        message: String,
    },
    /// A task of another worker must be reached but no transport was given.
    #[error("task {task} runs in worker {worker}, and no transport reaches other workers")]
    NoTransport {
        /// The remote task.
        task: TaskId,
        /// Its worker.
        worker: usize,
    },
    /// The checkpoint store could not be opened, or the checkpoint to resume from read.
    #[error("checkpoints: {0}")]
    State(#[from] crate::state::StateError),
    /// An executor thread could not be started.
    #[error("cannot start a thread for task {task}: {source}")]
    Thread {
        /// The task.
        task: TaskId,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A started acker task: its id, inbox and thread.
type Acker = (TaskId, Sender<AckerIn>, JoinHandle<Counts>);

/// The component id of the acker tasks in summaries.
pub const ACKER: &str = "__acker";
