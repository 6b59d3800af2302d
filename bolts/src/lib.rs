//! topo's built-in bolts. A sink is a bolt with no outputs.
//!
//! # Layout
//! - [`words`]: `split_words` and `word_count`.
//! - [`select`]: `filter` and `map`, driven by the [`expr`] language.
//! - [`sink`]: `file_sink`, JSON Lines to a file.
//! - [`top`]: `rolling_top`, the top keys over a sliding window.
//! - [`console`]: `console`, prints every tuple.
//! - [`multilang`]: `multilang`, a bolt in any language over Storm's multilang protocol.
//!
//! Add them all to a registry with [`register`].
//!
//! # Example
//! ```
//! let mut registry = topo_engine::Registry::new();
//! topo_bolts::register(&mut registry);
//! assert!(registry.entries().any(|e| e.name() == "filter"));
//! ```

use topo_engine::Registry;

pub mod console;
pub mod expr;
pub mod multilang;
pub mod select;
pub mod sink;
pub mod top;
pub mod words;

/// Registers every built-in bolt.
pub fn register(registry: &mut Registry) {
    words::register(registry);
    select::register(registry);
    sink::register(registry);
    top::register(registry);
    console::register(registry);
    multilang::bolt::register(registry);
}
