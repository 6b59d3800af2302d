//! topo's engine: components, tuples, the registry, and the runtime that moves tuples
//! between tasks with Storm's acking.
//!
//! # Layout
//! - [`value`], [`tuple`](mod@tuple): the data model.
//! - [`component`]: the `Spout` and `Bolt` traits, their collectors and `TaskContext`.
//! - [`registry`]: component types by name.
//! - [`plan`]: the physical plan, tasks placed in workers.
//! - [`runtime`]: starts a plan's tasks, stops them, returns a [`RunSummary`].
//! - [`grouping`]: Storm's groupings; [`route`]: messages between tasks and the seam a
//!   remote transport plugs into; [`acker`]: Storm's XOR tree tracking; `load`
//!   (private): task loads for the load- and locality-aware shuffle, shared between
//!   workers.
//! - [`state`]: exactly-once state: key groups, what a task writes into a checkpoint,
//!   the checkpoint store and its backends (local files, Redis), the checkpoint
//!   coordinator, and the writer of a process's parts.
//! - [`summary`]: per-task counts and the run summary; [`signal`]: Ctrl-C and SIGTERM.
//! - [`tap`]: live samples of the tuples a component emits (`topo tap`).
//! - [`metrics`]: per-task latencies and busy time, worker snapshots, and their
//!   publication into the `metrics` crate; [`prometheus`]: their Prometheus text.
//! - [`wire`]: the runtime's messages as payloads of `topo-transport` frames;
//!   [`wire::payload`] is the table of every payload kind that crosses a connection.
//! - [`bridge`]: the one path between a worker's runtime and the transport (flow control
//!   per task, restart-aware, batches decoded on the receiving task's thread).
//! - [`launcher`]: several workers: the supervisor behind `topo run` and the worker
//!   process; [`launcher::worker::start`] runs one worker of a plan;
//!   [`launcher::process`] is the one worker-process supervisor (spawn, control channel,
//!   environment, restart policy, death with the parent) that `topo run` and the cluster's
//!   `topo supervisor` share.
//! - [`window`]: windows by count or time, processing or event time (watermarks, late
//!   tuples), and [`window::Windowed`], Storm's windowed bolt.
//! - `executor` (private): the spout, bolt and acker executor threads; `stop`
//!   (private): [`StopHandle`].
//! - [`tuple`](mod@tuple) also holds the batch helpers (`push_in_place`, `clear_batch`)
//!   that build and clear vectors of tuples in place.
//!
//! # Example
//! A spout of three numbers and a bolt that doubles them, run to completion:
//! ```
//! use std::sync::Arc;
//! use topo_dsl::{StreamDecl, Topology};
//! use topo_engine::{Bolt, BoltOutput, Poll, Registry, Result, Spout, SpoutOutput, Tuple};
//!
//! #[derive(serde::Deserialize)]
//! struct NoConfig {}
//!
//! struct Three(i64);
//! impl Spout for Three {
//!     fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
//!         if self.0 == 3 { return Ok(Poll::Done) }
//!         self.0 += 1;
//!         out.emit_id(self.0 as u64, [self.0]);
//!         Ok(Poll::Ready)
//!     }
//! }
//!
//! struct Double;
//! impl Bolt for Double {
//!     fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
//!         let n = input.get(0).and_then(|v| v.as_int()).ok_or("not a number")?;
//!         out.emit([n * 2]);
//!         Ok(())
//!     }
//! }
//!
//! let mut registry = Registry::new();
//! registry.spout("three", "1, 2, 3", |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
//!     |_| Ok(Three(0)));
//! registry.bolt("double", "n * 2", |_: &NoConfig| vec![StreamDecl::default_stream(["n"])],
//!     |_| Ok(Double));
//! let topology = Topology::builder("doubles")
//!     .spout("numbers", "three")
//!     .bolt("double", "double").shuffle("numbers")
//!     .build(&registry)
//!     .unwrap();
//! let summary = topo_engine::start(Arc::new(topology), &registry, Default::default())
//!     .unwrap()
//!     .wait();
//! assert_eq!(summary.counts("double").emitted, 3);
//! assert_eq!(summary.counts("numbers").acked, 3);
//! println!("{summary}");
//! ```

pub mod acker;
pub mod bridge;
pub mod component;
mod executor;
pub mod grouping;
pub mod launcher;
mod load;
pub mod metrics;
pub mod plan;
pub mod prometheus;
pub mod registry;
pub mod route;
pub mod runtime;
pub mod signal;
pub mod state;
mod stop;
pub mod summary;
pub mod tap;
pub mod tuple;
pub mod value;
pub mod window;
pub mod wire;

pub use component::{
    Bolt, BoltOutput, Error, Notifier, Poll, Result, Spout, SpoutOutput, TaskContext,
};
pub use plan::PhysicalPlan;
pub use registry::Registry;
pub use runtime::{start, RunOptions, RunningTopology, StartError, StopHandle};
pub use summary::{
    CheckpointFigures, CheckpointSummary, ComponentSummary, Counts, FailReasons, Latency,
    RunSummary, TaskSummary,
};
pub use tuple::{MsgId, StreamInfo, TaskId, Tuple, Values};
pub use value::Value;
