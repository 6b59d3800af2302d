//! The raw topology as written: what the TOML loader and the builder produce.
//!
//! Nothing here is checked; [`crate::validate`] turns a spec into a [`crate::Topology`].
//! Spans are byte ranges into the source file and never take part in equality, so a spec
//! loaded from TOML equals the same spec made with the builder.

use crate::catalog::Kind;

/// A byte range in a source file; empty (`0..0`) for specs made in code.
#[derive(Debug, Clone, Copy, Default)]
pub struct Span {
    /// Start byte offset.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
}

impl PartialEq for Span {
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

/// A raw input declaration: `"split"` or `{ from, stream, grouping, fields }`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InputSpec {
    /// Upstream component id.
    pub from: String,
    /// Upstream stream, `default` if `None`.
    pub stream: Option<String>,
    /// Grouping name, `shuffle` (or `fields` when fields are given) if `None`.
    pub grouping: Option<String>,
    /// Fields for `fields`/`partial_key` groupings.
    pub fields: Option<Vec<String>>,
    /// Where the declaration is.
    pub span: Span,
}

/// A raw component declaration.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentSpec {
    /// Its id.
    pub id: String,
    /// `[spouts.ID]` or `[bolts.ID]`.
    pub kind: Kind,
    /// The `type` key.
    pub type_name: Option<String>,
    /// The `parallelism` key (default 1).
    pub parallelism: Option<i64>,
    /// The `tick_secs` key.
    pub tick_secs: Option<f64>,
    /// The `inputs` key; `None` when absent.
    pub inputs: Option<Vec<InputSpec>>,
    /// Every other key: the component's own config.
    pub config: toml::Table,
    /// Where the component's header is.
    pub span: Span,
}

/// A raw topology.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TopologySpec {
    /// `topology.name`.
    pub name: Option<String>,
    /// `topology.workers`.
    pub workers: Option<i64>,
    /// `topology.acking`.
    pub acking: Option<bool>,
    /// `topology.ackers`.
    pub ackers: Option<i64>,
    /// `topology.message_timeout_secs`.
    pub message_timeout_secs: Option<f64>,
    /// `topology.max_spout_pending`.
    pub max_spout_pending: Option<i64>,
    /// Spouts then bolts, each in declaration order.
    pub components: Vec<ComponentSpec>,
}
