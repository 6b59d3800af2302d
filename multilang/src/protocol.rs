//! What the bolt and the spout share: the component config, stream rules, and the
//! `conf` and `context` a child gets in the handshake.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value as Json};
use topo_dsl::{Grouping, StreamDecl, Topology, DEFAULT_STREAM};
use topo_engine::TaskId;

/// The command that starts the child: program and arguments, at least the program.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Vec<String>")]
pub struct Command(pub Vec<String>);

impl TryFrom<Vec<String>> for Command {
    type Error = &'static str;
    fn try_from(v: Vec<String>) -> Result<Self, Self::Error> {
        if v.is_empty() || v[0].is_empty() {
            return Err("`command` needs at least the program, e.g. [\"python3\", \"bolt.py\"]");
        }
        Ok(Command(v))
    }
}

/// The streams the child emits: a list of fields for the default stream, or a table of
/// stream name to fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Outputs {
    /// `outputs = ["word"]`: the default stream.
    Default(Vec<String>),
    /// `outputs = { default = ["word"], errors = ["line"] }`.
    Streams(BTreeMap<String, Vec<String>>),
}

impl Default for Outputs {
    fn default() -> Self {
        Outputs::Streams(BTreeMap::new())
    }
}

impl Outputs {
    /// The declared streams.
    pub fn decls(&self) -> Vec<StreamDecl> {
        match self {
            Outputs::Default(fields) => vec![StreamDecl::default_stream(fields.clone())],
            Outputs::Streams(m) => m
                .iter()
                .map(|(s, f)| StreamDecl::named(s, f.clone()))
                .collect(),
        }
    }
}

/// Config of `multilang` (bolt) and `multilang_spout`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    /// The child's command; relative paths resolve against the topology file's folder,
    /// which is also the child's working directory.
    pub command: Command,
    /// Declared output streams; none when absent (a sink).
    pub outputs: Outputs,
    /// Streams of `outputs` that are direct: the child names the receiving task.
    pub direct: Vec<String>,
    /// Extra entries for the `conf` the child gets in the handshake (e.g.
    /// `"pystorm.log.level" = "debug"`).
    pub conf: toml::Table,
    /// Bolts: seconds between heartbeats (default 1).
    pub heartbeat_secs: f64,
    /// Seconds without an answer after which the child counts as hung and is killed and
    /// restarted (default 30): the heartbeat `sync` for a bolt, any command's `sync` for
    /// a spout.
    pub timeout_secs: f64,
    /// Bolts: most tuples the child has at once (default 100, like Storm's
    /// `topology.shellbolt.max.pending`); at the limit the bolt waits for the child.
    pub max_pending: usize,
    /// Longest message the child may send, in bytes (default 16 MiB). A child that sends
    /// a longer one is killed and started again, and the tuples it had are failed.
    pub max_message_bytes: usize,
    /// Spouts: the child answers `position` and `seek` (see [`crate::spout`]), so a
    /// checkpointed topology may use it (default false).
    pub rewinds: bool,
}

/// Default of [`Config::max_message_bytes`].
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// [`Config`] as written, before the checks across keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    command: Command,
    #[serde(default)]
    outputs: Outputs,
    #[serde(default)]
    direct: Vec<String>,
    #[serde(default)]
    conf: toml::Table,
    #[serde(default = "default_heartbeat")]
    heartbeat_secs: f64,
    #[serde(default = "default_timeout")]
    timeout_secs: f64,
    #[serde(default = "default_max_pending")]
    max_pending: usize,
    #[serde(default = "default_max_message_bytes")]
    max_message_bytes: usize,
    #[serde(default)]
    rewinds: bool,
}

fn default_max_message_bytes() -> usize {
    MAX_MESSAGE_BYTES
}

fn default_max_pending() -> usize {
    100
}

impl TryFrom<RawConfig> for Config {
    type Error = String;
    fn try_from(r: RawConfig) -> Result<Self, String> {
        let streams: Vec<String> = r.outputs.decls().into_iter().map(|d| d.name).collect();
        if let Some(bad) = r.direct.iter().find(|d| !streams.contains(d)) {
            return Err(format!(
                "`direct` names stream `{bad}`, which `outputs` does not declare (declared: {})",
                streams.join(", ")
            ));
        }
        for (key, v) in [
            ("heartbeat_secs", r.heartbeat_secs),
            ("timeout_secs", r.timeout_secs),
        ] {
            if !(v > 0.0 && v.is_finite()) {
                return Err(format!(
                    "`{key}` must be a positive number of seconds, not {v}"
                ));
            }
        }
        Ok(Config {
            command: r.command,
            outputs: r.outputs,
            direct: r.direct,
            conf: r.conf,
            heartbeat_secs: r.heartbeat_secs,
            timeout_secs: r.timeout_secs,
            max_pending: r.max_pending.max(1),
            max_message_bytes: r.max_message_bytes.max(64),
            rewinds: r.rewinds,
        })
    }
}

fn default_heartbeat() -> f64 {
    1.0
}

fn default_timeout() -> f64 {
    30.0
}

impl Config {
    /// Heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs_f64(self.heartbeat_secs.clamp(0.01, 3600.0))
    }

    /// Hang timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs_f64(self.timeout_secs.clamp(0.01, 86_400.0))
    }

    /// The declared streams, the direct ones marked.
    pub fn decls(&self) -> Vec<StreamDecl> {
        self.outputs
            .decls()
            .into_iter()
            .map(|d| {
                if self.direct.contains(&d.name) {
                    d.direct()
                } else {
                    d
                }
            })
            .collect()
    }
}

/// What a child may emit on one of its streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRule {
    /// Number of fields.
    pub arity: usize,
    /// A direct stream: every emit names its task.
    pub direct: bool,
    /// For a direct stream, the tasks subscribed to it (direct grouping).
    pub targets: Vec<TaskId>,
}

/// The rules of every declared stream; `targets` gives the direct subscribers' tasks.
pub fn rules(
    config: &Config,
    targets: &BTreeMap<String, Vec<TaskId>>,
) -> BTreeMap<String, StreamRule> {
    config
        .decls()
        .into_iter()
        .map(|d| {
            let rule = StreamRule {
                arity: d.fields.len(),
                direct: d.direct,
                targets: targets.get(&d.name).cloned().unwrap_or_default(),
            };
            (d.name, rule)
        })
        .collect()
}

/// For each stream of `component`, the tasks that subscribe to it with a direct grouping.
pub fn direct_targets(
    topology: &Topology,
    component: &str,
    component_tasks: &[Vec<TaskId>],
) -> BTreeMap<String, Vec<TaskId>> {
    let mut out = BTreeMap::new();
    if let Some((idx, me)) = topology.component(component) {
        for decl in &me.outputs {
            let tasks: Vec<TaskId> = topology
                .subscribers(idx, &decl.name)
                .filter(|(_, input)| input.grouping == Grouping::Direct)
                .flat_map(|(sub, _)| component_tasks.get(sub).cloned().unwrap_or_default())
                .collect();
            out.insert(decl.name.clone(), tasks);
        }
    }
    out
}

/// The stream an emit names, `default` when it names none.
pub fn stream_of(msg: &Json) -> &str {
    msg.get("stream")
        .and_then(Json::as_str)
        .unwrap_or(DEFAULT_STREAM)
}

/// The `conf` of the handshake: Storm's names for the topology settings, then the
/// component's `conf` table.
pub fn conf_json(topology: &Topology, component: &str, extra: &toml::Table) -> Json {
    let s = topology.settings();
    let mut conf = Map::new();
    conf.insert("topology.name".into(), json!(topology.name()));
    conf.insert("topology.workers".into(), json!(s.workers));
    conf.insert("topology.acker.executors".into(), json!(s.ackers));
    conf.insert(
        "topology.message.timeout.secs".into(),
        json!(s.message_timeout.as_secs()),
    );
    conf.insert(
        "topology.max.spout.pending".into(),
        s.max_spout_pending.map_or(Json::Null, |n| json!(n)),
    );
    conf.insert("topology.debug".into(), json!(false));
    if let Some(tick) = topology.component(component).and_then(|(_, c)| c.tick) {
        conf.insert(
            "topology.tick.tuple.freq.secs".into(),
            json!(tick.as_secs_f64()),
        );
    }
    if let Ok(Json::Object(extra)) = serde_json::to_value(extra) {
        conf.extend(extra);
    }
    Json::Object(conf)
}

/// A grouping as Storm writes it in the context: `{"type": "FIELDS", "fields": [...]}`.
pub fn grouping_json(g: &Grouping) -> Json {
    let kind = g.name().to_uppercase();
    match g {
        Grouping::Fields(f) | Grouping::PartialKey(f) => json!({"type": kind, "fields": f}),
        _ => json!({ "type": kind }),
    }
}

/// The `context` of the handshake for task `task` of component `component`.
pub fn context_json(
    topology: &Topology,
    component: &str,
    task: TaskId,
    component_tasks: &[Vec<TaskId>],
) -> Json {
    let mut task_component = Map::new();
    for (c, tasks) in topology.components().iter().zip(component_tasks) {
        for t in tasks {
            task_component.insert(t.to_string(), json!(c.id));
        }
    }
    let mut targets = Map::new();
    let mut streams = Vec::new();
    let mut out_fields = Map::new();
    let mut sources: Map<String, Json> = Map::new();
    let mut source_fields: Map<String, Json> = Map::new();
    if let Some((idx, me)) = topology.component(component) {
        for decl in &me.outputs {
            streams.push(json!(decl.name));
            out_fields.insert(decl.name.clone(), json!(decl.fields));
            let mut by_target = Map::new();
            for (sub, input) in topology.subscribers(idx, &decl.name) {
                by_target.insert(
                    topology.components()[sub].id.clone(),
                    grouping_json(&input.grouping),
                );
            }
            targets.insert(decl.name.clone(), Json::Object(by_target));
        }
        for input in &me.inputs {
            let from = &topology.components()[input.from];
            let fields = from
                .output(&input.stream)
                .map_or_else(Vec::new, |d| d.fields.clone());
            if let Json::Object(m) = sources.entry(from.id.clone()).or_insert_with(|| json!({})) {
                m.insert(input.stream.clone(), grouping_json(&input.grouping));
            }
            if let Json::Object(m) = source_fields
                .entry(from.id.clone())
                .or_insert_with(|| json!({}))
            {
                m.insert(input.stream.clone(), json!(fields));
            }
        }
    }
    json!({
        "taskid": task,
        "componentid": component,
        "task->component": task_component,
        "stream->target->grouping": targets,
        "streams": streams,
        "stream->outputfields": out_fields,
        "source->stream->grouping": sources,
        "source->stream->fields": source_fields,
    })
}

/// A tracing level for a multilang `log` level (Storm: 0 trace, 1 debug, 2 info, 3 warn,
/// 4 error; info when absent).
pub fn log_level(msg: &Json) -> u64 {
    msg.get("level").and_then(Json::as_u64).unwrap_or(2)
}

/// Logs a child's `log` message at its level.
pub fn log_message(component: &str, task: TaskId, msg: &Json) {
    let text = msg.get("msg").and_then(Json::as_str).unwrap_or("");
    match log_level(msg) {
        0 => tracing::trace!(component, task, "{text}"),
        1 => tracing::debug!(component, task, "{text}"),
        2 => tracing::info!(component, task, "{text}"),
        3 => tracing::warn!(component, task, "{text}"),
        _ => tracing::error!(component, task, "{text}"),
    }
}

#[cfg(test)]
mod tests {
    use topo_dsl::parse_config;

    use super::*;

    fn config(src: &str) -> Result<Config, String> {
        let table: toml::Table = src.parse().map_err(|e| format!("{e}"))?;
        parse_config::<Config>(&table).map_err(|e| e[0].message.clone())
    }

    #[test]
    fn outputs_are_a_list_or_a_table_of_streams() {
        let c = config("command = ['python3', 'split.py']\noutputs = ['word']").expect("list");
        assert_eq!(c.outputs.decls(), [StreamDecl::default_stream(["word"])]);
        let c = config("command = ['x']\noutputs = { default = ['a'], errs = ['line', 'why'] }")
            .expect("table");
        assert_eq!(
            c.outputs.decls(),
            [
                StreamDecl::default_stream(["a"]),
                StreamDecl::named("errs", ["line", "why"])
            ]
        );
        let c = config("command = ['x']").expect("no outputs");
        assert!(c.outputs.decls().is_empty());
        let c =
            config("command = ['x']\noutputs = { default = ['a'], to = ['b'] }\ndirect = ['to']")
                .expect("direct");
        assert_eq!(
            c.decls(),
            [
                StreamDecl::default_stream(["a"]),
                StreamDecl::named("to", ["b"]).direct()
            ]
        );
    }

    #[test]
    fn an_empty_command_is_a_config_error() {
        assert_eq!(
            config("command = []").expect_err("empty"),
            "`command` needs at least the program, e.g. [\"python3\", \"bolt.py\"]\nin `command`"
        );
        assert_eq!(
            config("command = ['x']\noutputs = ['a']\ndirect = ['b']").expect_err("undeclared"),
            "`direct` names stream `b`, which `outputs` does not declare (declared: default)"
        );
        assert_eq!(
            config("command = ['x']\ntimeout_secs = 0").expect_err("zero"),
            "`timeout_secs` must be a positive number of seconds, not 0"
        );
        assert!(config("command = ['x']\nheartbeat = 3")
            .expect_err("unknown key")
            .starts_with("unknown field `heartbeat`"));
    }
}
