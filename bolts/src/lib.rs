//! topo's built-in bolts. A sink is a bolt with no outputs.
//!
//! # Layout
//! - [`words`]: `split_words` and `word_count`.
//! - [`console`]: `console`, prints every tuple.
//!
//! Add them all to a registry with [`register`].

use topo_engine::Registry;

pub mod console;
pub mod words;

/// Registers every built-in bolt.
pub fn register(registry: &mut Registry) {
    words::register(registry);
    console::register(registry);
}
