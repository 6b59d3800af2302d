//! topo's built-in bolts. A sink is a bolt with no outputs.
//!
//! # Layout
//! - [`words`]: `split_words` and `word_count`.
//! - [`select`]: `filter` and `map`, driven by the [`expr`] language.
//! - [`sink`]: `file_sink`, JSON Lines to a file.
//! - [`top`]: `rolling_top`, the top keys over a sliding window.
//! - [`ranking`]: `ranking`, prints the top keys as a table once a tick.
//! - [`window`]: `window_aggregate`, per-key aggregates over windows, by panes.
//! - [`console`]: `console`, prints every tuple.
//!
//! Add them all to a registry with [`register`]. The multilang bolt is in
//! `topo-multilang`, the Redis sinks in `topo-redis`.
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
pub mod ranking;
pub mod select;
pub mod sink;
pub mod top;
pub mod window;
pub mod words;

/// Warns when the component of `ctx` has no `tick_secs`: a bolt that reports on ticks
/// (`rolling_top`, `ranking`) then reports only when the topology finishes.
fn warn_without_ticks(ctx: &topo_engine::TaskContext) {
    let ticks = ctx
        .topology
        .component(&ctx.component)
        .is_some_and(|(_, c)| c.tick.is_some());
    if !ticks {
        tracing::warn!(component = %ctx.component, "No `tick_secs`: the ranking comes only when the topology finishes.");
    }
}

/// Registers every built-in bolt.
pub fn register(registry: &mut Registry) {
    words::register(registry);
    select::register(registry);
    sink::register(registry);
    top::register(registry);
    ranking::register(registry);
    window::register(registry);
    console::register(registry);
}
