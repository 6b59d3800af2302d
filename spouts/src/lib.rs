//! topo's built-in spouts.
//!
//! # Layout
//! - [`sentences`]: `random_sentences`, the benchmark's deterministic sentence generator.
//! - [`sequence`]: `sequence`, the integers.
//! - [`file`]: `file_lines`, the lines of a file (optionally tailed).
//! - [`stdin`]: `stdin_lines`, the lines of standard input.
//! - [`tcp`]: `tcp_lines`, lines received over TCP.
//!
//! Add them all to a registry with [`register`]. The multilang spout is in
//! `topo-multilang`, the `redis_stream` spout in `topo-redis`.
//!
//! # Example
//! ```
//! let mut registry = topo_engine::Registry::new();
//! topo_spouts::register(&mut registry);
//! assert!(registry.entries().any(|e| e.name() == "file_lines"));
//! ```

use topo_engine::Registry;

pub mod file;
mod replay;
pub mod sentences;
pub mod sequence;
pub mod stdin;
pub mod tcp;

/// Registers every built-in spout.
pub fn register(registry: &mut Registry) {
    sentences::register(registry);
    sequence::register(registry);
    file::register(registry);
    stdin::register(registry);
    tcp::register(registry);
}
