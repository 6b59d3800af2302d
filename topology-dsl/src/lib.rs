//! The topology model of topo: the TOML loader, the Rust builder, the one validator,
//! diagnostics and graph rendering. No runtime lives here.
//!
//! # Layout
//! - [`spec`]: `TopologySpec`, the raw topology as written, with source spans.
//! - [`load`](mod@load): the TOML loader, `*.topo.toml` text → spec, recovering from syntax errors.
//! - [`builder`]: `Topology::builder(...)`, the Rust way to write a spec.
//! - [`validate`](mod@validate): spec → checked [`Topology`], every problem reported at once
//!   (`validate/settings.rs`: the keys of `[topology]`; `mod.rs`: components, inputs, the graph).
//! - [`topology`]: the checked `Topology`, what the engine runs.
//! - [`catalog`]: what the validator knows of component types.
//! - [`diagnostic`]: problems with their place and hint, rendered rustc/gcc style.
//! - [`graph`]: a checked topology as text, Graphviz DOT or Mermaid.
//! - [`names`]: the characters and length a topology name or id may have.
//! - [`resources`]: the files a topology ships with it (`resources`,
//!   `python_requirements`) and the form their paths must have.
//!
//! # Example
//! ```
//! use topo_dsl::Topology;
//! let spec = Topology::builder("wordcount")
//!     .spout("sentences", "random_sentences")
//!     .bolt("split", "split_words").shuffle("sentences")
//!     .spec();
//! assert_eq!(spec.components.len(), 2);
//!
//! // The same from a file's text: every problem at once, rendered rustc style.
//! let (from_file, problems) = topo_dsl::parse(
//!     "[spouts.sentences]\ntype = \"random_sentences\"\n\
//!      [bolts.split]\ntype = \"split_words\"\ninputs = [\"sentences\"]\n",
//! );
//! assert!(problems.is_empty());
//! assert_eq!(from_file.components, spec.components);
//! ```

pub mod builder;
pub mod catalog;
pub mod diagnostic;
pub mod graph;
pub mod load;
pub mod names;
pub mod resources;
pub mod spec;
pub mod topology;
pub mod validate;

pub use builder::{ComponentBuilder, TopologyBuilder};
pub use catalog::{
    parse_config, Catalog, ComponentType, ConfigIssue, Kind, StreamDecl, DEFAULT_STREAM,
};
pub use diagnostic::Location;
pub use load::{load, parse};
pub use names::{check_id, check_name, NameError, MAX_ID_LEN, MAX_NAME_LEN};
pub use resources::{check_resource_path, Resources};
pub use spec::{ComponentSpec, InputSpec, Span, Spans, TopologySpec};
pub use topology::{
    Checkpoints, Component, ComponentIdx, Grouping, Input, Settings, StateBackend, Topology,
};
pub use validate::{validate, Diagnostic, Diagnostics};
