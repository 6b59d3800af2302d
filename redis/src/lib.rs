//! topo's Redis connector: Redis Streams in and out, and keys out. The spout and the sinks
//! live together (as a connector does in Vector) because they share the connection, the
//! URL and the fault handling.
//!
//! Connections are the `redis` crate's synchronous ones, used with pipelining: a sink
//! writes from a thread of its own (the executor thread only queues commands and acks
//! what Redis confirmed), the spout reads and acks from its executor thread, one round
//! trip per batch.
//!
//! # Layout
//! - [`link`]: [`RedisUrl`] (checked when the config is read) and [`Link`], one
//!   component's connection: reconnects with backoff, logs once per outage.
//! - [`check`]: [`Checked`], a config whose rules across keys `topo validate` checks too.
//! - [`spout`]: the `redis_stream` spout: a consumer of a consumer group (acked trees
//!   XACKed, failed ones emitted again, a dead consumer's entries claimed), or in a
//!   checkpointed topology a reader that rewinds to checkpointed entry ids.
//! - [`sink`]: the `redis_stream` sink (XADD) and the `redis` sink (SET, HSET, INCRBY),
//!   pipelined from a writer thread, each tuple acked once Redis confirmed its write.
//!
//! Add all three to a registry with [`register`]; `redis_stream` names the spout under
//! `[spouts.*]` and the sink under `[bolts.*]`.
//!
//! # Example
//! ```
//! use topo_dsl::Kind;
//!
//! let mut registry = topo_engine::Registry::new();
//! topo_redis::register(&mut registry);
//! let kinds: Vec<Kind> = registry
//!     .entries()
//!     .filter(|e| e.name() == "redis_stream")
//!     .map(|e| topo_dsl::ComponentType::kind(e))
//!     .collect();
//! assert_eq!(kinds, [Kind::Spout, Kind::Bolt]);
//! ```

use topo_engine::Registry;

pub mod check;
pub mod link;
pub mod sink;
pub mod spout;

pub use check::{Check, Checked};
pub use link::{Link, RedisUrl};

/// Registers the `redis_stream` spout and the `redis_stream` and `redis` sinks.
pub fn register(registry: &mut Registry) {
    spout::register(registry);
    sink::register(registry);
}
