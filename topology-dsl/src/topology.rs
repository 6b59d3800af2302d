//! The checked topology: a DAG of components whose every reference resolves.
//!
//! A `Topology` is only made by [`crate::validate()`], so a function that takes
//! `&Topology` never sees an unchecked one.

use std::path::PathBuf;
use std::time::Duration;

use crate::catalog::{Kind, StreamDecl};
use crate::resources::Resources;

/// Index of a component in [`Topology::components`].
pub type ComponentIdx = usize;

/// How the tuples of one stream are spread over the tasks of a subscriber.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// Random, with an equal count per task; load- and locality-aware unless
    /// [`Settings::load_aware`] is off (see the engine's `grouping` module).
    Shuffle,
    /// Same values of these fields go to the same task.
    Fields(Vec<String>),
    /// Like fields, but each key has two candidate tasks and the less loaded one gets it.
    PartialKey(Vec<String>),
    /// A copy to every task.
    All,
    /// The whole stream to the task with the lowest id.
    Global,
    /// No preference: same as shuffle.
    None,
    /// The emitter names the task; only on direct streams.
    Direct,
    /// Shuffle among the subscriber's tasks in the emitter's worker, if any; else shuffle.
    LocalOrShuffle,
}

impl Grouping {
    /// The grouping's name as written in a topology file.
    pub fn name(&self) -> &'static str {
        match self {
            Grouping::Shuffle => "shuffle",
            Grouping::Fields(_) => "fields",
            Grouping::PartialKey(_) => "partial_key",
            Grouping::All => "all",
            Grouping::Global => "global",
            Grouping::None => "none",
            Grouping::Direct => "direct",
            Grouping::LocalOrShuffle => "local_or_shuffle",
        }
    }

    /// Every grouping name, as written in a topology file.
    pub const NAMES: [&'static str; 8] = [
        "shuffle",
        "fields",
        "partial_key",
        "all",
        "global",
        "none",
        "direct",
        "local_or_shuffle",
    ];
}

/// Topology-wide settings, from `[topology]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Worker processes to place the tasks in (`workers`, default 1).
    pub workers: usize,
    /// Track tuple trees and replay failures (`acking`, default true).
    pub acking: bool,
    /// Acker tasks (`ackers`, default: one per worker). Zero when acking is off.
    pub ackers: usize,
    /// A tree not complete within this is failed (`message_timeout_secs`, default 30).
    pub message_timeout: Duration,
    /// Most pending trees per spout task (`max_spout_pending`, default 1000 with acking on;
    /// `None` means unbounded).
    pub max_spout_pending: Option<usize>,
    /// `shuffle` and `none` prefer the emitter's worker and weigh tasks by their load
    /// (default true; `disable_loadaware_messaging = true` makes them plain round-robin
    /// over every task).
    pub load_aware: bool,
    /// Seal the frames between workers after their authenticated handshake
    /// (`encrypt`, default false: only the handshake is authenticated, frames go plain).
    pub encrypt: bool,
    /// Exactly-once state: checkpoint every so often (`checkpoint_interval_secs`); `None`
    /// when the topology does not checkpoint.
    pub checkpoints: Option<Checkpoints>,
}

/// How a checkpointed topology takes its checkpoints, from `[topology]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoints {
    /// Start a checkpoint this often (`checkpoint_interval_secs`).
    pub interval: Duration,
    /// Where committed checkpoints are kept (`state_backend`, default `local`).
    pub backend: StateBackend,
}

/// Where checkpoints are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum StateBackend {
    /// Files under a folder (`state_dir`; `None`: the engine's default, beside the
    /// topology file). Relative paths resolve against the topology file's folder.
    Local {
        /// `state_dir`, as written.
        dir: Option<PathBuf>,
    },
    /// A Redis server reachable from every host (`state_url`).
    Redis {
        /// `state_url`, e.g. `redis://127.0.0.1:6379/0`.
        url: String,
    },
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            workers: 1,
            acking: true,
            ackers: 1,
            message_timeout: Duration::from_secs(30),
            max_spout_pending: Some(1000),
            load_aware: true,
            encrypt: false,
            checkpoints: None,
        }
    }
}

/// One subscription of a bolt: which stream of which component, grouped how.
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    /// The upstream component.
    pub from: ComponentIdx,
    /// The upstream's stream name.
    pub stream: String,
    /// How tuples are spread over this bolt's tasks.
    pub grouping: Grouping,
}

/// A checked component.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Its id in the topology (the TOML table name).
    pub id: String,
    /// Spout or bolt.
    pub kind: Kind,
    /// The registered type name.
    pub type_name: String,
    /// Number of tasks (and executors), at least 1.
    pub parallelism: usize,
    /// Deliver a tick to every task this often, if set (`tick_secs`).
    pub tick: Option<Duration>,
    /// The component's own config: every key but the engine's.
    pub config: toml::Table,
    /// The streams it emits, as its type declared them from its config.
    pub outputs: Vec<StreamDecl>,
    /// What it subscribes to (empty for spouts).
    pub inputs: Vec<Input>,
}

impl Component {
    /// The declared output stream named `name`.
    pub fn output(&self, name: &str) -> Option<&StreamDecl> {
        self.outputs.iter().find(|s| s.name == name)
    }
}

/// A validated topology: an acyclic graph of components, every reference resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Topology {
    pub(crate) name: String,
    pub(crate) settings: Settings,
    pub(crate) components: Vec<Component>,
    pub(crate) resources: Resources,
}

impl Topology {
    /// The topology's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The files it ships with it (`resources`, `python_requirements`).
    pub fn resources(&self) -> &Resources {
        &self.resources
    }

    /// Every component, spouts first, each group in declaration order; an index into this
    /// slice is a [`ComponentIdx`].
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// The component with id `id`.
    pub fn component(&self, id: &str) -> Option<(ComponentIdx, &Component)> {
        self.components.iter().enumerate().find(|(_, c)| c.id == id)
    }

    /// Every (subscriber, input) that reads from `from`'s stream `stream`.
    pub fn subscribers<'a>(
        &'a self,
        from: ComponentIdx,
        stream: &'a str,
    ) -> impl Iterator<Item = (ComponentIdx, &'a Input)> + 'a {
        self.components.iter().enumerate().flat_map(move |(i, c)| {
            c.inputs
                .iter()
                .filter(move |inp| inp.from == from && inp.stream == stream)
                .map(move |inp| (i, inp))
        })
    }

    /// Total number of tasks over all components (ackers not included).
    pub fn task_count(&self) -> usize {
        self.components.iter().map(|c| c.parallelism).sum()
    }

    /// Number of edges (subscriptions).
    pub fn edge_count(&self) -> usize {
        self.components.iter().map(|c| c.inputs.len()).sum()
    }

    /// Returns the same topology with other settings, for callers (the CLI's flags, tests,
    /// benchmarks) that override the file. Settings cannot make a topology invalid.
    pub fn with_settings(mut self, settings: Settings) -> Self {
        self.settings = settings;
        self
    }
}
