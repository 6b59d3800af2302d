//! The Rust builder: writes the same [`TopologySpec`] a TOML file would.

use crate::catalog::{Catalog, Kind};
use crate::spec::{ComponentSpec, InputSpec, Span, TopologySpec};
use crate::topology::Topology;
use crate::validate::{validate, Diagnostics};

impl Topology {
    /// Starts a topology named `name`.
    pub fn builder(name: impl Into<String>) -> TopologyBuilder {
        TopologyBuilder {
            spec: TopologySpec {
                name: Some(name.into()),
                ..TopologySpec::default()
            },
        }
    }
}

/// Builds a [`TopologySpec`] in code.
#[derive(Debug, Clone)]
pub struct TopologyBuilder {
    spec: TopologySpec,
}

impl TopologyBuilder {
    /// Worker processes.
    pub fn workers(mut self, n: i64) -> Self {
        self.spec.workers = Some(n);
        self
    }

    /// Acking on or off.
    pub fn acking(mut self, on: bool) -> Self {
        self.spec.acking = Some(on);
        self
    }

    /// Acker tasks.
    pub fn ackers(mut self, n: i64) -> Self {
        self.spec.ackers = Some(n);
        self
    }

    /// Message timeout in seconds.
    pub fn message_timeout_secs(mut self, secs: f64) -> Self {
        self.spec.message_timeout_secs = Some(secs);
        self
    }

    /// Most pending trees per spout task.
    pub fn max_spout_pending(mut self, n: i64) -> Self {
        self.spec.max_spout_pending = Some(n);
        self
    }

    /// Turns load- and locality-aware `shuffle`/`none` routing off (`true`: plain
    /// round-robin over every task), as Storm's `topology.disable.loadaware.messaging`.
    pub fn disable_loadaware_messaging(mut self, off: bool) -> Self {
        self.spec.disable_loadaware_messaging = Some(off);
        self
    }

    /// Seals the frames between workers (ChaCha20-Poly1305) instead of sending them
    /// plain; the handshake is authenticated either way.
    pub fn encrypt(mut self, on: bool) -> Self {
        self.spec.encrypt = Some(on);
        self
    }

    /// Checkpoints every `secs` seconds (exactly-once state; see [`crate::Checkpoints`]).
    pub fn checkpoint_interval_secs(mut self, secs: f64) -> Self {
        self.spec.checkpoint_interval_secs = Some(secs);
        self
    }

    /// Where checkpoints are kept: `"local"` (files under the state folder) or `"redis"`.
    pub fn state_backend(mut self, backend: impl Into<String>) -> Self {
        self.spec.state_backend = Some(backend.into());
        self
    }

    /// The Redis URL of the `redis` state backend.
    pub fn state_url(mut self, url: impl Into<String>) -> Self {
        self.spec.state_url = Some(url.into());
        self
    }

    /// The folder of the `local` state backend.
    pub fn state_dir(mut self, dir: impl Into<String>) -> Self {
        self.spec.state_dir = Some(dir.into());
        self
    }

    /// Files and folders, relative to the topology's folder, that travel with it.
    pub fn resources<S: Into<String>>(mut self, paths: impl IntoIterator<Item = S>) -> Self {
        self.spec.resources = Some(paths.into_iter().map(Into::into).collect());
        self
    }

    /// A pip requirements file among the resources: workers run with a virtualenv of
    /// these packages first on `PATH`.
    pub fn python_requirements(mut self, path: impl Into<String>) -> Self {
        self.spec.python_requirements = Some(path.into());
        self
    }

    /// Adds a spout of type `type_name`.
    pub fn spout(self, id: impl Into<String>, type_name: impl Into<String>) -> ComponentBuilder {
        self.component(Kind::Spout, id.into(), type_name.into())
    }

    /// Adds a bolt of type `type_name`.
    pub fn bolt(self, id: impl Into<String>, type_name: impl Into<String>) -> ComponentBuilder {
        self.component(Kind::Bolt, id.into(), type_name.into())
    }

    fn component(self, kind: Kind, id: String, type_name: String) -> ComponentBuilder {
        ComponentBuilder {
            parent: self,
            spec: ComponentSpec {
                id,
                kind,
                type_name: Some(type_name),
                parallelism: None,
                tick_secs: None,
                inputs: None,
                config: toml::Table::new(),
                span: Span::default(),
            },
        }
    }

    /// The spec written so far.
    pub fn spec(self) -> TopologySpec {
        let mut spec = self.spec;
        // Same order as the loader: spouts first, then bolts, each in declaration order.
        spec.components.sort_by_key(|c| c.kind);
        spec
    }

    /// Validates the spec against `catalog`.
    pub fn build(self, catalog: &dyn Catalog) -> Result<Topology, Diagnostics> {
        validate(&self.spec(), catalog)
    }
}

/// Builds one component; every [`TopologyBuilder`] method ends it and goes on.
#[derive(Debug, Clone)]
pub struct ComponentBuilder {
    parent: TopologyBuilder,
    spec: ComponentSpec,
}

impl ComponentBuilder {
    /// Number of tasks.
    pub fn parallelism(mut self, n: i64) -> Self {
        self.spec.parallelism = Some(n);
        self
    }

    /// Tick every `secs` seconds.
    pub fn tick_secs(mut self, secs: f64) -> Self {
        self.spec.tick_secs = Some(secs);
        self
    }

    /// Sets a key of the component's own config.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<toml::Value>) -> Self {
        self.spec.config.insert(key.into(), value.into());
        self
    }

    /// Subscribes with a full input declaration.
    pub fn input(mut self, input: InputSpec) -> Self {
        self.spec.inputs.get_or_insert_with(Vec::new).push(input);
        self
    }

    fn grouped(
        self,
        from: &str,
        stream: Option<&str>,
        grouping: &str,
        fields: Option<Vec<String>>,
    ) -> Self {
        self.input(InputSpec {
            from: from.to_string(),
            stream: stream.map(str::to_string),
            grouping: Some(grouping.to_string()),
            fields,
            ..InputSpec::default()
        })
    }

    /// Shuffle grouping on `from`'s default stream (a bare id in TOML).
    pub fn shuffle(self, from: &str) -> Self {
        self.input(InputSpec {
            from: from.to_string(),
            ..InputSpec::default()
        })
    }

    /// Fields grouping on `from`'s default stream; like `{ from, fields }` in TOML, where
    /// giving fields implies the fields grouping.
    pub fn fields<S: Into<String>>(self, from: &str, fields: impl IntoIterator<Item = S>) -> Self {
        self.input(InputSpec {
            from: from.to_string(),
            fields: Some(fields.into_iter().map(Into::into).collect()),
            ..InputSpec::default()
        })
    }

    /// Partial-key grouping on `from`'s default stream.
    pub fn partial_key<S: Into<String>>(
        self,
        from: &str,
        fields: impl IntoIterator<Item = S>,
    ) -> Self {
        let fields = fields.into_iter().map(Into::into).collect();
        self.grouped(from, None, "partial_key", Some(fields))
    }

    /// All grouping on `from`'s default stream.
    pub fn all(self, from: &str) -> Self {
        self.grouped(from, None, "all", None)
    }

    /// Global grouping on `from`'s default stream.
    pub fn global(self, from: &str) -> Self {
        self.grouped(from, None, "global", None)
    }

    /// None grouping on `from`'s default stream.
    pub fn none(self, from: &str) -> Self {
        self.grouped(from, None, "none", None)
    }

    /// Direct grouping on `from`'s stream `stream`.
    pub fn direct(self, from: &str, stream: &str) -> Self {
        self.grouped(from, Some(stream), "direct", None)
    }

    /// Local-or-shuffle grouping on `from`'s default stream.
    pub fn local_or_shuffle(self, from: &str) -> Self {
        self.grouped(from, None, "local_or_shuffle", None)
    }

    /// Subscribes to `from`'s stream `stream` with `grouping` (a grouping name).
    pub fn stream(self, from: &str, stream: &str, grouping: &str) -> Self {
        self.grouped(from, Some(stream), grouping, None)
    }

    fn finish(self) -> TopologyBuilder {
        let mut parent = self.parent;
        parent.spec.components.push(self.spec);
        parent
    }

    /// Ends this component and adds a spout.
    pub fn spout(self, id: impl Into<String>, type_name: impl Into<String>) -> ComponentBuilder {
        self.finish().spout(id, type_name)
    }

    /// Ends this component and adds a bolt.
    pub fn bolt(self, id: impl Into<String>, type_name: impl Into<String>) -> ComponentBuilder {
        self.finish().bolt(id, type_name)
    }

    /// Ends this component and sets a topology setting.
    pub fn topology(self) -> TopologyBuilder {
        self.finish()
    }

    /// The spec written so far.
    pub fn spec(self) -> TopologySpec {
        self.finish().spec()
    }

    /// Validates the spec against `catalog`.
    pub fn build(self, catalog: &dyn Catalog) -> Result<Topology, Diagnostics> {
        self.finish().build(catalog)
    }
}
