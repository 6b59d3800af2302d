//! The registry of component types: a plain map from kind and type name to description,
//! outputs and factory, filled by explicit `register` calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use topo_dsl::{parse_config, Catalog, ComponentType, ConfigIssue, Kind, StreamDecl};

use crate::component::{Bolt, Result, Spout};

type Check = Arc<dyn Fn(&toml::Table) -> Result<Vec<StreamDecl>, Vec<ConfigIssue>> + Send + Sync>;
type SpoutFactory = Arc<dyn Fn(&toml::Table) -> Result<Box<dyn Spout>> + Send + Sync>;
type BoltFactory = Arc<dyn Fn(&toml::Table) -> Result<Box<dyn Bolt>> + Send + Sync>;
type Rewinds = Arc<dyn Fn(&toml::Table) -> bool + Send + Sync>;

#[derive(Clone)]
enum Factory {
    Spout(SpoutFactory),
    Bolt(BoltFactory),
}

/// One registered component type.
#[derive(Clone)]
pub struct Entry {
    name: String,
    description: String,
    check: Check,
    factory: Factory,
    rewinds: Option<Rewinds>,
    rewind_hint: Option<String>,
}

impl Entry {
    /// The type name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl ComponentType for Entry {
    fn kind(&self) -> Kind {
        match self.factory {
            Factory::Spout(_) => Kind::Spout,
            Factory::Bolt(_) => Kind::Bolt,
        }
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn configure(&self, config: &toml::Table) -> Result<Vec<StreamDecl>, Vec<ConfigIssue>> {
        (self.check)(config)
    }

    fn rewinds(&self, config: &toml::Table) -> bool {
        self.rewinds.as_ref().is_some_and(|r| r(config))
    }

    fn may_rewind(&self) -> bool {
        self.rewinds.is_some()
    }

    fn rewind_hint(&self) -> Option<&str> {
        self.rewind_hint.as_deref()
    }
}

/// Component types by kind and name: `redis_stream` is a spout type under `[spouts.*]` and a
/// bolt type under `[bolts.*]`. An alias is a second name for a type, kept for old files.
///
/// ```
/// use topo_engine::{Registry, Spout, SpoutOutput, Poll, Result};
/// use topo_dsl::StreamDecl;
///
/// #[derive(serde::Deserialize)]
/// #[serde(deny_unknown_fields)]
/// struct Config { count: u64 }
///
/// struct Numbers { next: u64, count: u64 }
/// impl Spout for Numbers {
///     fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
///         if self.next == self.count { return Ok(Poll::Done) }
///         out.emit_id(self.next, [self.next]);
///         self.next += 1;
///         Ok(Poll::Ready)
///     }
/// }
///
/// let mut registry = Registry::new();
/// registry.spout(
///     "numbers",
///     "Emits 0..count.",
///     |_: &Config| vec![StreamDecl::default_stream(["n"])],
///     |c: Config| Ok(Numbers { next: 0, count: c.count }),
/// );
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    entries: BTreeMap<(String, Kind), Entry>,
    aliases: BTreeMap<(String, Kind), String>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Registry::default()
    }

    fn checker<C: DeserializeOwned + 'static>(
        outputs: impl Fn(&C) -> Vec<StreamDecl> + Send + Sync + 'static,
    ) -> Check {
        Arc::new(move |table| parse_config::<C>(table).map(|c| outputs(&c)))
    }

    /// Registers a spout type: its typed config `C` (deserialized from the component's
    /// table), the streams it declares for a config, and a factory called once per task.
    pub fn spout<C, S>(
        &mut self,
        name: &str,
        description: &str,
        outputs: impl Fn(&C) -> Vec<StreamDecl> + Send + Sync + 'static,
        factory: impl Fn(C) -> Result<S> + Send + Sync + 'static,
    ) -> &mut Self
    where
        C: DeserializeOwned + 'static,
        S: Spout,
    {
        let make: SpoutFactory = Arc::new(move |table| {
            let config = parse_config::<C>(table).map_err(issues_error)?;
            Ok(Box::new(factory(config)?) as Box<dyn Spout>)
        });
        self.insert(
            name,
            description,
            Self::checker(outputs),
            Factory::Spout(make),
        )
    }

    /// Registers a bolt type; see [`Registry::spout`].
    pub fn bolt<C, B>(
        &mut self,
        name: &str,
        description: &str,
        outputs: impl Fn(&C) -> Vec<StreamDecl> + Send + Sync + 'static,
        factory: impl Fn(C) -> Result<B> + Send + Sync + 'static,
    ) -> &mut Self
    where
        C: DeserializeOwned + 'static,
        B: Bolt,
    {
        let make: BoltFactory = Arc::new(move |table| {
            let config = parse_config::<C>(table).map_err(issues_error)?;
            Ok(Box::new(factory(config)?) as Box<dyn Bolt>)
        });
        self.insert(
            name,
            description,
            Self::checker(outputs),
            Factory::Bolt(make),
        )
    }

    fn insert(
        &mut self,
        name: &str,
        description: &str,
        check: Check,
        factory: Factory,
    ) -> &mut Self {
        let entry = Entry {
            name: name.to_string(),
            description: description.to_string(),
            check,
            factory,
            rewinds: None,
            rewind_hint: None,
        };
        let kind = entry.kind();
        self.aliases.remove(&(name.to_string(), kind));
        self.entries.insert((name.to_string(), kind), entry);
        self
    }

    /// Makes `alias` a second name of the `kind` type registered as `name`.
    pub fn alias(&mut self, kind: Kind, alias: &str, name: &str) -> &mut Self {
        self.aliases
            .insert((alias.to_string(), kind), name.to_string());
        self
    }

    /// Says that spouts of type `name` whose config `when` accepts implement
    /// [`Spout::position`] and [`Spout::seek`], so a checkpointed topology may use them.
    pub fn rewinds<C: DeserializeOwned + 'static>(
        &mut self,
        name: &str,
        when: impl Fn(&C) -> bool + Send + Sync + 'static,
    ) -> &mut Self {
        if let Some(e) = self.entries.get_mut(&(name.to_string(), Kind::Spout)) {
            e.rewinds = Some(Arc::new(move |table| {
                parse_config::<C>(table).is_ok_and(|c| when(&c))
            }));
        }
        self
    }

    /// Says how a config of spout type `name` that does not rewind can be made to: the
    /// hint `topo validate` gives when a checkpointed topology refuses one.
    pub fn rewind_hint(&mut self, name: &str, how: &str) -> &mut Self {
        if let Some(e) = self.entries.get_mut(&(name.to_string(), Kind::Spout)) {
            e.rewind_hint = Some(how.to_string());
        }
        self
    }

    /// Every registered type (not its aliases), sorted by name, a spout before a bolt of
    /// the same name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The entry of kind `kind` named `name`, or the one `name` is an alias of.
    fn entry(&self, kind: Kind, name: &str) -> Option<&Entry> {
        let key = (name.to_string(), kind);
        self.entries.get(&key).or_else(|| {
            let target = self.aliases.get(&key)?;
            self.entries.get(&(target.clone(), kind))
        })
    }

    /// Makes a spout task of type `name` from its config.
    pub fn make_spout(&self, name: &str, config: &toml::Table) -> Result<Box<dyn Spout>> {
        match self.entry(Kind::Spout, name).map(|e| &e.factory) {
            Some(Factory::Spout(f)) => f(config),
            _ => Err(format!("no spout type `{name}` is registered").into()),
        }
    }

    /// Makes a bolt task of type `name` from its config.
    pub fn make_bolt(&self, name: &str, config: &toml::Table) -> Result<Box<dyn Bolt>> {
        match self.entry(Kind::Bolt, name).map(|e| &e.factory) {
            Some(Factory::Bolt(f)) => f(config),
            _ => Err(format!("no bolt type `{name}` is registered").into()),
        }
    }
}

fn issues_error(issues: Vec<ConfigIssue>) -> crate::component::Error {
    let text: Vec<String> = issues.into_iter().map(|i| i.message).collect();
    text.join("; ").into()
}

impl Catalog for Registry {
    fn component_type(&self, kind: Kind, name: &str) -> Option<&dyn ComponentType> {
        self.entry(kind, name).map(|e| e as &dyn ComponentType)
    }

    fn type_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.keys().map(|(n, _)| n.clone()).collect();
        names.dedup();
        names
    }
}
