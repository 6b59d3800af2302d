//! Apache Storm's multilang protocol: spouts and bolts written in any language run as
//! child processes that exchange JSON messages over their stdin and stdout.
//!
//! Existing Storm components (`storm.py`, `pystorm`, …) run unmodified.
//!
//! # Layout
//! - [`protocol`]: the component config and what the handshake tells a child
//!   ([`Config`], [`conf_json`], [`context_json`]), shared by both sides.
//! - [`child`]: one child process, its framing and handshake.
//! - [`bolt`]: the `multilang` bolt, asynchronous, with heartbeats.
//! - [`spout`]: the `multilang` spout (alias `multilang_spout`), synchronous (`next`, then `sync`).
//! - [`PYTHON_PRELUDE`]: the framing in a few lines of Python, for test scripts.
//!
//! Add both components to a registry with [`register`].
//!
//! # Example
//! ```
//! let mut registry = topo_engine::Registry::new();
//! topo_multilang::register(&mut registry);
//! // `multilang` names the bolt and the spout (`multilang_spout` is the spout's alias).
//! assert_eq!(registry.entries().filter(|e| e.name() == "multilang").count(), 2);
//! ```

use topo_engine::Registry;

pub mod bolt;
pub mod child;
pub mod protocol;
pub mod spout;

pub use protocol::{conf_json, context_json, Config};

/// Storm's multilang framing in Python (standard library only): `read()` returns the next
/// message (exits on EOF), `send(m)` writes one, `read_ids()` returns the next list of
/// task ids; `json`, `os`, `sys` and `threading` are imported; `Spout` is a spout base
/// class that also answers `position` and `seek` (see [`spout::rewind`]). Test scripts
/// start with it.
pub const PYTHON_PRELUDE: &str = include_str!("protocol.py");

/// Registers the `multilang` bolt and the `multilang_spout` spout.
pub fn register(registry: &mut Registry) {
    bolt::register(registry);
    spout::register(registry);
}
