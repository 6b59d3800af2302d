//! topo's engine: components, tuples, the registry, and the runtime that moves tuples
//! between tasks with Storm's acking.
//!
//! # Layout
//! - [`value`], [`tuple`]: the data model.
//! - [`component`]: the `Spout` and `Bolt` traits, their collectors and `TaskContext`.
//! - [`registry`]: component types by name.
//! - [`plan`]: the physical plan, tasks placed in workers.
//! - [`runtime`]: starts a plan's tasks, stops them, returns a [`RunSummary`].
//! - [`grouping`]: Storm's groupings; [`route`]: messages between tasks and the seam a
//!   remote transport plugs into; [`acker`]: Storm's XOR tree tracking.
//! - [`summary`]: per-task counts and the run summary; [`signal`]: Ctrl-C and SIGTERM.
//! - [`transport`]: frames and authenticated, credit-limited TCP connections between workers.
//! - `executor` (private): the spout, bolt and acker executor threads.

pub mod acker;
pub mod component;
mod executor;
pub mod grouping;
pub mod plan;
pub mod registry;
pub mod route;
pub mod runtime;
pub mod signal;
pub mod summary;
pub mod transport;
pub mod tuple;
pub mod value;

pub use component::{
    Bolt, BoltOutput, Error, Notifier, Poll, Result, Spout, SpoutOutput, TaskContext,
};
pub use plan::PhysicalPlan;
pub use registry::Registry;
pub use runtime::{start, RunOptions, RunningTopology, StartError, StopHandle};
pub use summary::{ComponentSummary, Counts, FailReasons, Latency, RunSummary, TaskSummary};
pub use tuple::{MsgId, StreamInfo, TaskId, Tuple, Values};
pub use value::Value;
