//! What the validator needs to know about component types: kind, description, outputs.

use std::fmt;

/// Whether a component is a source (spout) or a processor (bolt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A source of tuples; has no inputs.
    Spout,
    /// A processor of tuples; has one or more inputs. A sink is a bolt without outputs.
    Bolt,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Spout => "spout",
            Kind::Bolt => "bolt",
        })
    }
}

/// The name of the stream a component emits to when it names none.
pub const DEFAULT_STREAM: &str = "default";

/// One output stream a component declares: its name, its fields, whether it is direct.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamDecl {
    /// Stream id, `default` unless named.
    pub name: String,
    /// Field names of every tuple on this stream, in order.
    pub fields: Vec<String>,
    /// A direct stream: the emitter names the receiving task (`emit_direct`).
    pub direct: bool,
}

impl StreamDecl {
    /// The default stream with the given fields.
    pub fn default_stream<S: Into<String>>(fields: impl IntoIterator<Item = S>) -> Self {
        Self::named(DEFAULT_STREAM, fields)
    }

    /// A named, non-direct stream.
    pub fn named<S: Into<String>>(name: &str, fields: impl IntoIterator<Item = S>) -> Self {
        StreamDecl {
            name: name.to_string(),
            fields: fields.into_iter().map(Into::into).collect(),
            direct: false,
        }
    }

    /// Marks the stream as direct.
    pub fn direct(mut self) -> Self {
        self.direct = true;
        self
    }
}

/// A problem with a component's own configuration, found by its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The config key at fault (for the diagnostic's position), if one is.
    pub key: Option<String>,
    /// What is wrong, as one sentence without a trailing period.
    pub message: String,
    /// How to fix it, if there is something to say.
    pub hint: Option<String>,
}

impl ConfigIssue {
    /// An issue about a key.
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigIssue {
            key: Some(key.into()),
            message: message.into(),
            hint: None,
        }
    }

    /// An issue about the config as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        ConfigIssue {
            key: None,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// A registered component type, as the validator sees it.
pub trait ComponentType {
    /// Spout or bolt.
    fn kind(&self) -> Kind;
    /// One line saying what it does.
    fn description(&self) -> &str;
    /// Checks the component's own config (every key of its table except the engine's
    /// `type`, `parallelism`, `inputs`, `tick_secs`) and returns the streams it will emit.
    /// Unknown keys and wrongly typed values are issues.
    fn configure(&self, config: &toml::Table) -> Result<Vec<StreamDecl>, Vec<ConfigIssue>>;
    /// Whether a spout of this type with this config can rewind to a recorded position,
    /// as a checkpointed topology needs. False by default.
    fn rewinds(&self, _config: &toml::Table) -> bool {
        false
    }
    /// Whether some config of this type rewinds (for hints). False by default.
    fn may_rewind(&self) -> bool {
        false
    }
    /// How a config of this type that does not rewind can be made to (the hint when a
    /// checkpointed topology refuses it); `None`: the hint lists the types that rewind.
    fn rewind_hint(&self) -> Option<&str> {
        None
    }
}

/// The set of component types a topology may use. The engine's `Registry` implements it.
///
/// Types are keyed by kind and name, as Vector's sources and sinks share type names: one
/// name may be a spout type under `[spouts.*]` and a bolt type under `[bolts.*]`.
pub trait Catalog {
    /// The type of kind `kind` registered under `name` (or under an alias of it).
    fn component_type(&self, kind: Kind, name: &str) -> Option<&dyn ComponentType>;
    /// Every registered type name, sorted, each once.
    fn type_names(&self) -> Vec<String>;
}

/// Deserializes a component's config table into its typed config `C`.
///
/// Use `#[serde(deny_unknown_fields)]` on `C` so unknown keys are issues. Every problem is
/// reported, not only serde's first: after an issue about a key, the key is set aside and
/// the rest is deserialized again (at most 32 rounds).
pub fn parse_config<C: serde::de::DeserializeOwned>(
    config: &toml::Table,
) -> Result<C, Vec<ConfigIssue>> {
    let mut table = config.clone();
    let mut issues = Vec::new();
    let mut removed: Vec<String> = Vec::new();
    for _ in 0..32 {
        let e = match C::deserialize(toml::Value::Table(table.clone())) {
            Ok(c) if issues.is_empty() => return Ok(c),
            Ok(_) => break,
            Err(e) => e,
        };
        let message = e.to_string().trim().to_string();
        // A key set aside for an earlier issue is not also missing.
        if message.starts_with("missing field")
            && ticked(&message)
                .next()
                .is_some_and(|k| removed.iter().any(|r| r == k))
        {
            break;
        }
        let key = fault_key(&message).filter(|k| table.contains_key(k.as_str()));
        issues.push(ConfigIssue {
            key: key.clone(),
            message,
            hint: None,
        });
        match key {
            Some(k) => {
                table.remove(&k);
                removed.push(k);
            }
            None => break,
        }
    }
    Err(issues)
}

/// The words serde and toml put in backticks.
fn ticked(message: &str) -> impl Iterator<Item = &str> {
    message.split('`').skip(1).step_by(2)
}

/// The top-level key a serde/toml error is about: toml's last line `in `a.b`` names the
/// path inside the value (`a`), serde's `unknown field `k`, ...` names the key.
fn fault_key(message: &str) -> Option<String> {
    let last = message.lines().last().unwrap_or_default().trim();
    if let Some(path) = last.strip_prefix("in `").and_then(|p| p.strip_suffix('`')) {
        return path.split('.').next().map(str::to_string);
    }
    if message.starts_with("unknown field") {
        return ticked(message).next().map(str::to_string);
    }
    None
}
