//! topo: a streaming topology engine in the spirit of Apache Storm.
//!
//! Declare a graph of spouts (sources) and bolts (processors) in a `*.topo.toml` file or
//! with [`prelude::Topology::builder`], and run it with `topo run`. Every message a spout
//! emits is fully processed or replayed.
//!
//! # Layout
//! - [`cli`]: the `topo` command line; a binary with its own components calls
//!   [`cli::main_with`] and gets every verb.
//! - [`prelude`]: what a component author needs.
//! - [`default_registry`]: every built-in spout and bolt: `topo-spouts`, `topo-bolts`,
//!   `topo-multilang` and `topo-redis` each register theirs.
//!
//! # Example
//! ```no_run
//! // A binary with its own components: add them to the registry, get every verb.
//! let registry = topo::default_registry();
//! // registry.bolt("my_bolt", ...);
//! std::process::exit(topo::cli::main_with(registry));
//! ```

pub mod cli;

// The README's Rust examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// What a component author needs.
pub mod prelude {
    pub use topo_dsl::{Grouping, Kind, StreamDecl, Topology, TopologySpec};
    pub use topo_engine::{
        values, Bolt, BoltOutput, MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext,
        TaskId, Tuple, Value, Values,
    };
}

/// A registry with every built-in spout and bolt.
pub fn default_registry() -> topo_engine::Registry {
    let mut registry = topo_engine::Registry::new();
    topo_spouts::register(&mut registry);
    topo_bolts::register(&mut registry);
    topo_multilang::register(&mut registry);
    topo_redis::register(&mut registry);
    registry
}
