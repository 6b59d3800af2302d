//! The one validator: spec → checked [`Topology`], every problem reported at once.
//!
//! Both the TOML loader and the builder end here, so a mistake gets the same message
//! whichever way it was written. The validator never panics and never stops at the first
//! problem: a component whose type or config is wrong is still known by id, so inputs
//! naming it do not add noise, and checks that need its outputs are skipped.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::catalog::{Catalog, ConfigIssue, Kind, StreamDecl, DEFAULT_STREAM};
use crate::diagnostic::{closest, did_you_mean, quoted_list};
use crate::spec::{ComponentSpec, Span, Spans, TopologySpec};
use crate::topology::{Component, Grouping, Input, Topology};

mod settings;

pub use crate::diagnostic::{Diagnostic, Diagnostics};

/// Most tasks one component may have.
pub const MAX_PARALLELISM: i64 = 10_000;
/// Most worker processes.
pub const MAX_WORKERS: i64 = 1_000;
/// Most acker tasks.
pub const MAX_ACKERS: i64 = 10_000;
/// Longest message timeout or tick period, in seconds (one year).
pub const MAX_SECS: f64 = 365.0 * 24.0 * 3600.0;

/// Checks `spec` against `catalog`: every problem at once, in component order.
pub fn validate(spec: &TopologySpec, catalog: &dyn Catalog) -> Result<Topology, Diagnostics> {
    let mut v = Validator {
        catalog,
        spans: &spec.spans,
        diags: Vec::new(),
        checkpointed: false,
    };
    let settings = v.settings(spec);
    v.checkpointed = settings.checkpoints.is_some();
    let name = v.name(spec);
    let resources = v.resources(spec);

    // Spouts first, then bolts, each in the spec's order.
    let mut order: Vec<&ComponentSpec> = spec.components.iter().collect();
    order.sort_by_key(|c| c.kind);

    // First pass: ids, types, configs, parallelism. Every component with a unique id is
    // known, even when its type or config is wrong.
    let mut known: Vec<Known<'_>> = Vec::new();
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for c in &order {
        v.check_id(c);
        if let Some(&first) = by_id.get(c.id.as_str()) {
            let prev: &Known<'_> = &known[first];
            v.err(
                Diagnostic::new(
                    format!("duplicate component id \"{}\"", c.id),
                    c.span.known(),
                )
                .with_hint(format!("\"{}\" is already a {}", c.id, prev.spec.kind)),
            );
            continue;
        }
        by_id.insert(c.id.as_str(), known.len());
        let component = v.component(c);
        known.push(Known { spec: c, component });
    }
    if !known.iter().any(|k| k.spec.kind == Kind::Spout) {
        v.err(Diagnostic::new("topology has no spouts", None).with_hint("add a [spouts.ID] table"));
    }

    // Second pass: inputs.
    let ids: Vec<&str> = known.iter().map(|k| k.spec.id.as_str()).collect();
    let mut inputs_of: Vec<Vec<(Input, Span)>> = Vec::with_capacity(known.len());
    for k in &known {
        inputs_of.push(v.inputs(k, &known, &by_id, &ids));
    }

    v.cycles(&known, &inputs_of);

    if !v.diags.is_empty() {
        return Err(Diagnostics { items: v.diags });
    }
    let mut components = Vec::with_capacity(known.len());
    for (k, inputs) in known.into_iter().zip(inputs_of) {
        let Some(mut c) = k.component else {
            continue;
        };
        c.inputs = inputs.into_iter().map(|(i, _)| i).collect();
        components.push(c);
    }
    Ok(Topology {
        name,
        settings,
        components,
        resources,
    })
}

struct Known<'a> {
    spec: &'a ComponentSpec,
    /// `None` when its type or config is wrong: its outputs are unknown.
    component: Option<Component>,
}

struct Validator<'c> {
    catalog: &'c dyn Catalog,
    spans: &'c Spans,
    diags: Vec<Diagnostic>,
    /// The topology checkpoints: every spout must rewind.
    checkpointed: bool,
}

/// `bolt "split"`, as messages name a component.
fn kind_of(c: &ComponentSpec) -> String {
    format!("{} \"{}\"", c.kind, c.id)
}

/// Where an input is: its keys' spans, else the whole input's.
#[derive(Clone, Copy)]
struct Place<'a> {
    spans: &'a Spans,
    kind: Kind,
    id: &'a str,
    index: usize,
    whole: Span,
}

impl Place<'_> {
    fn at(&self, key: &str) -> Option<Span> {
        self.spans
            .input(self.kind, self.id, self.index, key)
            .or(self.whole.known())
    }
}

/// A number as written back in a message: `1.5`, `1e300`.
fn number(x: f64) -> String {
    if x.is_finite() && x.abs() < 1e9 {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

fn seconds(secs: f64) -> Option<Duration> {
    (secs > 0.0 && secs <= MAX_SECS)
        .then(|| Duration::try_from_secs_f64(secs).ok())
        .flatten()
}

impl Validator<'_> {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// The span of `key` in component `c`, else its header.
    fn at(&self, c: &ComponentSpec, key: &str) -> Option<Span> {
        self.spans.component(c.kind, &c.id, key).or(c.span.known())
    }

    fn check_id(&mut self, c: &ComponentSpec) {
        let ok = !c.id.is_empty()
            && !c.id.starts_with("__")
            && c.id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
        if !ok {
            self.err(
                Diagnostic::new(
                    format!("invalid component id \"{}\"", c.id.escape_debug()),
                    c.span.known(),
                )
                .with_hint(
                    "ids use ascii letters, digits, \"_\" and \"-\", and do not start with \"__\"",
                ),
            );
        }
    }

    /// Type, config and parallelism of one component; `None` when its outputs are unknown.
    fn component(&mut self, c: &ComponentSpec) -> Option<Component> {
        let parallelism = c.parallelism.unwrap_or(1);
        if parallelism < 1 {
            self.err(Diagnostic::new(
                format!(
                    "{}: \"parallelism\" must be at least 1, not {parallelism}",
                    kind_of(c)
                ),
                self.at(c, "parallelism"),
            ));
        } else if parallelism > MAX_PARALLELISM {
            self.err(Diagnostic::new(
                format!(
                    "{}: \"parallelism\" must be at most {MAX_PARALLELISM}, not {parallelism}",
                    kind_of(c)
                ),
                self.at(c, "parallelism"),
            ));
        }
        let tick = match c.tick_secs {
            None => None,
            Some(s) => {
                let t = seconds(s);
                if t.is_none() {
                    self.err(Diagnostic::new(
                        format!(
                            "{}: \"tick_secs\" must be a positive number of seconds up to {MAX_SECS}, not {}",
                            kind_of(c),
                            number(s)
                        ),
                        self.at(c, "tick_secs"),
                    ));
                }
                t
            }
        };
        let names = self.catalog.type_names();
        let known_types = format!("known types: {}", names.join(", "));
        let Some(type_name) = &c.type_name else {
            self.err(
                Diagnostic::new(
                    format!("{} has no \"type\"", kind_of(c)),
                    self.at(c, "type"),
                )
                .with_hint(known_types),
            );
            return None;
        };
        // A type of the other kind under this name is found too, to say which table it
        // belongs in.
        let other = match c.kind {
            Kind::Spout => Kind::Bolt,
            Kind::Bolt => Kind::Spout,
        };
        let found = self.catalog.component_type(c.kind, type_name);
        let Some(ty) = found.or_else(|| self.catalog.component_type(other, type_name)) else {
            let hint = match did_you_mean(type_name, names.iter().map(String::as_str)) {
                Some(dym) => format!("{dym} {known_types}"),
                None => known_types,
            };
            self.err(
                Diagnostic::new(
                    format!("unknown component type \"{type_name}\""),
                    self.at(c, "type"),
                )
                .with_hint(hint),
            );
            return None;
        };
        if ty.kind() != c.kind {
            let table = match ty.kind() {
                Kind::Spout => "spouts",
                Kind::Bolt => "bolts",
            };
            self.err(
                Diagnostic::new(
                    format!(
                        "\"{type_name}\" is a {} type, not a {} type",
                        ty.kind(),
                        c.kind
                    ),
                    self.at(c, "type"),
                )
                .with_hint(format!("declare it as [{table}.{}]", c.id)),
            );
            return None;
        }
        let outputs = match ty.configure(&c.config) {
            Ok(outputs) if c.kind == Kind::Spout && self.checkpointed && !ty.rewinds(&c.config) => {
                let rewinding: Vec<String> = names
                    .iter()
                    .filter(|n| {
                        self.catalog
                            .component_type(Kind::Spout, n)
                            .is_some_and(|t| t.kind() == Kind::Spout && t.may_rewind())
                    })
                    .cloned()
                    .collect();
                self.err(
                    Diagnostic::new(
                        format!(
                            "{}: type \"{type_name}\" cannot rewind, so a checkpointed topology cannot replay it after a failure",
                            kind_of(c)
                        ),
                        self.at(c, "type"),
                    )
                    .with_hint(match ty.rewind_hint() {
                        Some(how) => format!("{how}, or remove \"checkpoint_interval_secs\""),
                        None => format!(
                            "use a spout that rewinds ({}), or remove \"checkpoint_interval_secs\"",
                            rewinding.join(", ")
                        ),
                    }),
                );
                outputs
            }
            Ok(outputs) => outputs,
            Err(issues) => {
                for i in issues.into_iter().map(tidy) {
                    let span = i
                        .key
                        .as_deref()
                        .and_then(|k| self.spans.component(c.kind, &c.id, k))
                        .or(self.at(c, "type"));
                    self.err(
                        Diagnostic::new(format!("{}: {}", kind_of(c), i.message), span)
                            .with_hint_opt(i.hint),
                    );
                }
                return None;
            }
        };
        Some(Component {
            id: c.id.clone(),
            kind: c.kind,
            type_name: type_name.clone(),
            parallelism: parallelism.clamp(1, MAX_PARALLELISM) as usize,
            tick,
            config: c.config.clone(),
            outputs,
            inputs: Vec::new(),
        })
    }

    fn inputs(
        &mut self,
        k: &Known<'_>,
        known: &[Known<'_>],
        by_id: &HashMap<&str, usize>,
        ids: &[&str],
    ) -> Vec<(Input, Span)> {
        let c = k.spec;
        let declared = c.inputs.as_deref().unwrap_or_default();
        match c.kind {
            Kind::Spout if c.inputs.is_some() => {
                self.err(
                    Diagnostic::new(
                        format!("{} cannot have inputs", kind_of(c)),
                        self.at(c, "inputs"),
                    )
                    .with_hint("a spout is a source; subscribe a bolt instead"),
                );
                return Vec::new();
            }
            Kind::Bolt if declared.is_empty() => {
                self.err(
                    Diagnostic::new(
                        format!("{} has no inputs", kind_of(c)),
                        self.at(c, "inputs"),
                    )
                    .with_hint("add inputs = [\"<component id>\"]"),
                );
            }
            _ => {}
        }
        let mut out: Vec<(Input, Span)> = Vec::new();
        let mut seen: BTreeSet<(usize, String)> = BTreeSet::new();
        let spans = self.spans;
        for (index, inp) in declared.iter().enumerate() {
            let place = Place {
                spans,
                kind: c.kind,
                id: &c.id,
                index,
                whole: inp.span,
            };
            let Some(&from) = by_id.get(inp.from.as_str()) else {
                self.err(
                    Diagnostic::new(format!("unknown input \"{}\"", inp.from), place.at("from"))
                        .with_hint_opt(did_you_mean(&inp.from, ids.iter().copied())),
                );
                continue;
            };
            let stream = inp.stream.as_deref().unwrap_or(DEFAULT_STREAM);
            let grouping_name = inp.grouping.as_deref().unwrap_or(if inp.fields.is_some() {
                "fields"
            } else {
                "shuffle"
            });
            let fields = inp.fields.clone().unwrap_or_default();
            let grouping = match grouping_name {
                "shuffle" => Some(Grouping::Shuffle),
                "fields" => Some(Grouping::Fields(fields.clone())),
                "partial_key" => Some(Grouping::PartialKey(fields.clone())),
                "all" => Some(Grouping::All),
                "global" => Some(Grouping::Global),
                "none" => Some(Grouping::None),
                "direct" => Some(Grouping::Direct),
                "local_or_shuffle" => Some(Grouping::LocalOrShuffle),
                other => {
                    let list = format!("groupings: {}", Grouping::NAMES.join(", "));
                    let hint = match did_you_mean(other, Grouping::NAMES) {
                        Some(d) => format!("{d} {list}"),
                        None => list,
                    };
                    self.err(
                        Diagnostic::new(
                            format!("unknown grouping \"{other}\""),
                            place.at("grouping"),
                        )
                        .with_hint(hint),
                    );
                    None
                }
            };
            let keyed = matches!(
                grouping,
                Some(Grouping::Fields(_) | Grouping::PartialKey(_))
            );
            if keyed && fields.is_empty() {
                self.err(
                    Diagnostic::new(
                        format!("{grouping_name} grouping on \"{}\" needs \"fields\"", inp.from),
                        place.at("fields").or(place.at("grouping")),
                    )
                    .with_hint(format!(
                        "e.g. {{ from = \"{}\", grouping = \"{grouping_name}\", fields = [\"<field>\"] }}",
                        inp.from
                    )),
                );
            } else if grouping.is_some() && !keyed && inp.fields.is_some() {
                self.err(Diagnostic::new(
                    format!(
                        "\"fields\" only applies to fields and partial_key groupings, not \"{grouping_name}\""
                    ),
                    place.at("fields"),
                ));
            }
            if !seen.insert((from, stream.to_string())) {
                self.err(Diagnostic::new(
                    format!(
                        "{} subscribes to stream \"{stream}\" of \"{}\" twice",
                        kind_of(c),
                        inp.from
                    ),
                    place.at("from"),
                ));
            }
            // Checks against the upstream's declared streams, when they are known.
            if let Some(up) = &known[from].component {
                self.stream_checks(place, up, stream, grouping.as_ref(), &fields);
            }
            if let Some(grouping) = grouping {
                out.push((
                    Input {
                        from,
                        stream: stream.to_string(),
                        grouping,
                    },
                    place.at("from").unwrap_or_default(),
                ));
            }
        }
        out
    }

    fn stream_checks(
        &mut self,
        place: Place<'_>,
        up: &Component,
        stream: &str,
        grouping: Option<&Grouping>,
        fields: &[String],
    ) {
        let Some(decl) = up.output(stream) else {
            let hint = if up.outputs.is_empty() {
                format!("\"{}\" declares no output streams", up.id)
            } else {
                let names: Vec<&str> = up.outputs.iter().map(|s| s.name.as_str()).collect();
                let list = format!("its streams: {}", quoted_list(&names));
                match did_you_mean(stream, names.iter().copied()) {
                    Some(d) => format!("{d} {list}"),
                    None => list,
                }
            };
            self.err(
                Diagnostic::new(
                    format!("\"{}\" has no stream \"{stream}\"", up.id),
                    place.at("stream").or(place.at("from")),
                )
                .with_hint(hint),
            );
            return;
        };
        for f in fields {
            if !decl.fields.contains(f) {
                self.err(
                    Diagnostic::new(
                        format!("stream \"{stream}\" of \"{}\" has no field \"{f}\"", up.id),
                        place.at("fields"),
                    )
                    .with_hint(fields_hint(f, decl)),
                );
            }
        }
        match grouping {
            Some(Grouping::Direct) if !decl.direct => self.err(
                Diagnostic::new(
                    format!(
                        "direct grouping on stream \"{stream}\" of \"{}\", which is not direct",
                        up.id
                    ),
                    place.at("grouping"),
                )
                .with_hint("only a stream declared direct can be grouped direct"),
            ),
            Some(g) if *g != Grouping::Direct && decl.direct => self.err(
                Diagnostic::new(
                    format!(
                        "stream \"{stream}\" of \"{}\" is direct and needs grouping \"direct\", not \"{}\"",
                        up.id,
                        g.name()
                    ),
                    place.at("grouping").or(place.at("from")),
                ),
            ),
            _ => {}
        }
    }

    /// Names every component on every cycle.
    fn cycles(&mut self, known: &[Known<'_>], inputs_of: &[Vec<(Input, Span)>]) {
        let mut graph: DiGraph<usize, ()> = DiGraph::new();
        let nodes: Vec<NodeIndex> = (0..known.len()).map(|i| graph.add_node(i)).collect();
        for (to, inputs) in inputs_of.iter().enumerate() {
            for (input, _) in inputs {
                graph.add_edge(nodes[input.from], nodes[to], ());
            }
        }
        let mut cycles: Vec<Vec<usize>> = tarjan_scc(&graph)
            .into_iter()
            .map(|scc| {
                let mut members: Vec<usize> = scc.into_iter().map(|n| graph[n]).collect();
                members.sort_unstable();
                members
            })
            .filter(|m| m.len() > 1 || inputs_of[m[0]].iter().any(|(i, _)| i.from == m[0]))
            .collect();
        cycles.sort();
        for members in cycles {
            let names: Vec<&str> = members.iter().map(|&i| known[i].spec.id.as_str()).collect();
            // Point at the first input that closes the cycle, in the first member.
            let first = members[0];
            let span = inputs_of[first]
                .iter()
                .find(|(i, _)| members.contains(&i.from))
                .and_then(|(_, s)| s.known());
            let message = if names.len() == 1 {
                format!("cycle: \"{}\" subscribes to itself", names[0])
            } else {
                format!("cycle through {}", quoted_list(&names))
            };
            self.err(
                Diagnostic::new(message, span)
                    .with_hint("a topology must be acyclic; remove one of these inputs"),
            );
        }
    }
}

fn fields_hint(f: &str, decl: &StreamDecl) -> String {
    if decl.fields.is_empty() {
        return format!("stream \"{}\" has no fields", decl.name);
    }
    let list = format!("its fields: {}", quoted_list(&decl.fields));
    match closest(f, decl.fields.iter().map(String::as_str)) {
        Some(c) => format!("did you mean \"{c}\"? {list}"),
        None => list,
    }
}

/// A component type's config issue as a one-line diagnostic about a key.
///
/// Issues from [`crate::parse_config`] carry serde's and toml's texts: `unknown field
/// `sed`, expected `count` or `seed``, `invalid type: string "x", expected u64` followed by
/// a line `in `seed``. They become `unknown key "sed"` (with a did-you-mean hint),
/// `missing key "count"`, `invalid type for "seed": expected u64, found string "x"`; other
/// texts keep their words, on one line, prefixed with the key they are about.
fn tidy(issue: ConfigIssue) -> ConfigIssue {
    let whole = issue.message.trim();
    // toml names the key path of an error inside a value on a last line `in `a.b``.
    let (text, path) = match whole.rsplit_once('\n') {
        Some((head, last)) => match last
            .trim()
            .strip_prefix("in `")
            .and_then(|p| p.strip_suffix('`'))
        {
            Some(p) => (head.trim(), Some(p.to_string())),
            None => (whole, None),
        },
        None => (whole, None),
    };
    let top = |p: &str| p.split('.').next().unwrap_or(p).to_string();
    let ticked: Vec<&str> = text.split('`').skip(1).step_by(2).collect();
    if text.starts_with("unknown field") {
        if let Some((key, expected)) = ticked.split_first() {
            let hint = did_you_mean(key, expected.iter().copied()).unwrap_or_else(|| {
                if expected.is_empty() {
                    "this component type takes no config keys".to_string()
                } else {
                    format!("known keys: {}", expected.join(", "))
                }
            });
            // Inside a nested table, toml names the table and serde the key.
            let shown = match &path {
                Some(p) => format!("{p}.{key}"),
                None => key.to_string(),
            };
            return ConfigIssue::key(top(&shown), format!("unknown key \"{shown}\""))
                .with_hint(hint);
        }
    }
    if text.starts_with("missing field") {
        if let Some(key) = ticked.first() {
            let shown = match &path {
                Some(p) => format!("{p}.{key}"),
                None => key.to_string(),
            };
            return ConfigIssue {
                key: path.as_deref().map(top),
                message: format!("missing key \"{shown}\""),
                hint: issue.hint,
            };
        }
    }
    if let Some(p) = &path {
        for (prefix, what) in [("invalid type: ", "type"), ("invalid value: ", "value")] {
            let Some((found, expected)) = text
                .strip_prefix(prefix)
                .and_then(|rest| rest.rsplit_once(", expected "))
            else {
                continue;
            };
            // serde's data model names; a topology file has tables and arrays.
            let found = match found {
                "map" => "table",
                "sequence" => "array",
                other => other,
            };
            return ConfigIssue {
                key: Some(top(p)),
                message: format!("invalid {what} for \"{p}\": expected {expected}, found {found}"),
                hint: issue.hint,
            };
        }
    }
    let one_line = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let message = match &path {
        Some(p) if !one_line.contains(&format!("`{p}`")) => format!("\"{p}\": {one_line}"),
        _ => one_line,
    };
    ConfigIssue {
        key: path.as_deref().map(top).or(issue.key),
        message,
        hint: issue.hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tidied(message: &str, key: Option<&str>) -> (Option<String>, String, Option<String>) {
        let t = tidy(ConfigIssue {
            key: key.map(str::to_string),
            message: message.to_string(),
            hint: None,
        });
        (t.key, t.message, t.hint)
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn serde_texts_become_short_messages_about_a_key() {
        assert_eq!(
            tidied(
                "unknown field `sed`, expected `count` or `seed`",
                Some("sed")
            ),
            (
                some("sed"),
                "unknown key \"sed\"".into(),
                some("did you mean \"seed\"?")
            )
        );
        assert_eq!(
            tidied("unknown field `x`, expected `count` or `seed`", None),
            (
                some("x"),
                "unknown key \"x\"".into(),
                some("known keys: count, seed")
            )
        );
        assert_eq!(
            tidied("missing field `command`", Some("command")),
            (None, "missing key \"command\"".into(), None)
        );
        assert_eq!(
            tidied(
                "invalid value: integer `0`, expected a nonzero u64\nin `window_secs`",
                None
            ),
            (
                some("window_secs"),
                "invalid value for \"window_secs\": expected a nonzero u64, found integer `0`"
                    .into(),
                None
            )
        );
        assert_eq!(
            tidied(
                "invalid type: sequence, expected a string\nin `prefix`",
                None
            ),
            (
                some("prefix"),
                "invalid type for \"prefix\": expected a string, found array".into(),
                None
            )
        );
    }

    #[test]
    fn other_texts_keep_their_words_on_one_line() {
        assert_eq!(
            tidied(
                "`command` needs at least the program, e.g. [\"python3\", \"bolt.py\"]\nin `command`",
                Some("command")
            ),
            (
                some("command"),
                "`command` needs at least the program, e.g. [\"python3\", \"bolt.py\"]".into(),
                None
            )
        );
        assert_eq!(
            tidied(
                "expected a value, found the end at column 8 of \"count >\"\nin `where`",
                None
            ),
            (
                some("where"),
                "\"where\": expected a value, found the end at column 8 of \"count >\"".into(),
                None
            )
        );
        assert_eq!(tidied("two\nlines", None), (None, "two lines".into(), None));
    }
}
