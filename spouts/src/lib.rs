//! topo's built-in spouts.
//!
//! # Layout
//! - [`sentences`]: `random_sentences`, the benchmark's deterministic sentence generator.
//!
//! Add them all to a registry with [`register`].

use topo_engine::Registry;

pub mod sentences;

/// Registers every built-in spout.
pub fn register(registry: &mut Registry) {
    sentences::register(registry);
}
