//! The raw topology as written: what the TOML loader and the builder produce.
//!
//! Nothing here is checked; [`crate::validate()`] turns a spec into a [`crate::Topology`].
//! Spans are byte ranges into the source file and never take part in equality, so a spec
//! loaded from TOML equals the same spec made with the builder.

use std::collections::BTreeMap;

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

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }

    /// `Some(self)` when the span points into a file, `None` for specs made in code.
    pub fn known(self) -> Option<Span> {
        (self.start != 0 || self.end != 0).then_some(self)
    }
}

/// Where things are in the source file, kept beside the spec's plain values: each
/// `key = value` (from the key's start to the value's end) of `[topology]`, of every
/// component and of every input table.
///
/// Empty for specs made in code; like [`Span`], never takes part in equality.
#[derive(Debug, Clone, Default)]
pub struct Spans(BTreeMap<(Option<Kind>, String, Option<usize>, String), Span>);

impl PartialEq for Spans {
    fn eq(&self, _: &Spans) -> bool {
        true
    }
}

impl Spans {
    /// Records where the `[topology]` key `key` is.
    pub fn insert_setting(&mut self, key: &str, span: Span) {
        self.0
            .insert((None, String::new(), None, key.to_string()), span);
    }

    /// Where the `[topology]` key `key` is.
    pub fn setting(&self, key: &str) -> Option<Span> {
        self.0
            .get(&(None, String::new(), None, key.to_string()))
            .copied()
    }

    /// Records where key `key` of component `id` is.
    pub fn insert_component(&mut self, kind: Kind, id: &str, key: &str, span: Span) {
        self.0
            .insert((Some(kind), id.to_string(), None, key.to_string()), span);
    }

    /// Where key `key` of component `id` is.
    pub fn component(&self, kind: Kind, id: &str, key: &str) -> Option<Span> {
        self.0
            .get(&(Some(kind), id.to_string(), None, key.to_string()))
            .copied()
    }

    /// Records where key `key` of input number `index` of component `id` is.
    pub fn insert_input(&mut self, kind: Kind, id: &str, index: usize, key: &str, span: Span) {
        self.0.insert(
            (Some(kind), id.to_string(), Some(index), key.to_string()),
            span,
        );
    }

    /// Where key `key` of input number `index` (in `inputs`) of component `id` is.
    pub fn input(&self, kind: Kind, id: &str, index: usize, key: &str) -> Option<Span> {
        self.0
            .get(&(Some(kind), id.to_string(), Some(index), key.to_string()))
            .copied()
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
    /// Where the component's header is (its id in `[bolts.ID]`).
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
    /// `topology.disable_loadaware_messaging`.
    pub disable_loadaware_messaging: Option<bool>,
    /// `topology.encrypt`.
    pub encrypt: Option<bool>,
    /// `topology.checkpoint_interval_secs`.
    pub checkpoint_interval_secs: Option<f64>,
    /// `topology.state_backend`.
    pub state_backend: Option<String>,
    /// `topology.state_url`.
    pub state_url: Option<String>,
    /// `topology.state_dir`.
    pub state_dir: Option<String>,
    /// `topology.resources`: files and folders, relative to the topology file, that
    /// travel with it to a cluster.
    pub resources: Option<Vec<String>>,
    /// `topology.python_requirements`: a pip requirements file among the resources.
    pub python_requirements: Option<String>,
    /// Spouts then bolts, each in declaration order.
    pub components: Vec<ComponentSpec>,
    /// Where each key is, when the spec came from a file.
    pub spans: Spans,
}
