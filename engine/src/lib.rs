//! topo's engine: components, tuples, the registry, and the runtime that moves tuples
//! between tasks with Storm's acking.
//!
//! # Layout
//! - [`value`], [`tuple`]: the data model.
//! - [`component`]: the `Spout` and `Bolt` traits, their collectors and `TaskContext`.
//! - [`registry`]: component types by name.

pub mod component;
pub mod registry;
pub mod transport;
pub mod tuple;
pub mod value;

pub use component::{
    Bolt, BoltOutput, Error, Notifier, Poll, Result, Spout, SpoutOutput, TaskContext,
};
pub use registry::Registry;
pub use tuple::{MsgId, StreamInfo, TaskId, Tuple, Values};
pub use value::Value;
