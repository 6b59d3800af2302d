//! The TOML loader: topology file text → [`TopologySpec`] with source spans.
//!
//! The parse recovers from syntax errors, so one run reports a syntax error and every
//! other problem of the file. The loader checks only the file's shape (tables, keys, value
//! types); everything else is the validator's, shared with the builder.

use toml::de::{DeArray, DeTable, DeValue};
use toml::Spanned;

use crate::catalog::{Catalog, Kind};
use crate::diagnostic::{did_you_mean, Diagnostic, Diagnostics};
use crate::spec::{ComponentSpec, InputSpec, Span, Spans, TopologySpec};
use crate::topology::Topology;
use crate::validate::validate;

const TOP_KEYS: [&str; 3] = ["topology", "spouts", "bolts"];
const SETTING_KEYS: [&str; 14] = [
    "name",
    "workers",
    "acking",
    "ackers",
    "message_timeout_secs",
    "max_spout_pending",
    "disable_loadaware_messaging",
    "encrypt",
    "checkpoint_interval_secs",
    "state_backend",
    "state_url",
    "state_dir",
    "resources",
    "python_requirements",
];
const INPUT_KEYS: [&str; 4] = ["from", "stream", "grouping", "fields"];

/// Parses a topology file into a spec and the problems with its shape. The spec holds
/// everything that could be read, so validating it finds the remaining problems.
pub fn parse(text: &str) -> (TopologySpec, Diagnostics) {
    let (spec, diags, _) = parse_marked(text);
    (spec, diags)
}

/// [`parse`], and the start of every `key = value` whose value could not be read: the
/// validator sees those keys absent and would report them again.
fn parse_marked(text: &str) -> (TopologySpec, Diagnostics, Vec<usize>) {
    let mut l = Loader {
        diags: Vec::new(),
        spans: Spans::default(),
        unread: Vec::new(),
    };
    let (doc, errors) = DeTable::parse_recoverable(text);
    for e in errors {
        let span = e.span().map(|r| Span::new(r.start, r.end));
        l.err(Diagnostic::new(syntax_message(e.message()), span));
    }
    let mut spec = TopologySpec::default();
    let mut spouts = Vec::new();
    let mut bolts = Vec::new();
    for (key, value) in doc.get_ref().iter() {
        match key.get_ref().as_ref() {
            "topology" => {
                if let Some(t) = l.table(value, "topology") {
                    l.settings(t, &mut spec);
                }
            }
            "spouts" => {
                if let Some(t) = l.table(value, "spouts") {
                    spouts = l.components(t, Kind::Spout);
                }
            }
            "bolts" => {
                if let Some(t) = l.table(value, "bolts") {
                    bolts = l.components(t, Kind::Bolt);
                }
            }
            other => l.unknown_key(key, value, other, "at the top level", &TOP_KEYS),
        }
    }
    spec.components = spouts;
    spec.components.append(&mut bolts);
    spec.spans = l.spans;
    (spec, Diagnostics { items: l.diags }, l.unread)
}

/// Parses and validates a topology file: every problem at once, in source order.
pub fn load(text: &str, catalog: &dyn Catalog) -> Result<Topology, Diagnostics> {
    let (spec, shape, mut unread) = parse_marked(text);
    // Where the loader found a problem, the validator's report would be a second one.
    unread.extend(shape.items.iter().filter_map(|d| d.span).map(|s| s.start));
    let checked = validate(&spec, catalog);
    // One syntax error per line: a broken line often gives several.
    let mut broken_lines: Vec<usize> = Vec::new();
    let mut items = Vec::new();
    for d in shape.items {
        if d.message.starts_with(SYNTAX) {
            if let Some(s) = d.span {
                let line = crate::diagnostic::position(text, s.start).0;
                if broken_lines.contains(&line) {
                    continue;
                }
                broken_lines.push(line);
            }
        }
        items.push(d);
    }
    match checked {
        Ok(topology) if items.is_empty() => return Ok(topology),
        Ok(_) => {}
        Err(found) => items.extend(
            found
                .items
                .into_iter()
                .filter(|d| d.span.is_none_or(|s| !unread.contains(&s.start))),
        ),
    }
    items.sort_by_key(|d| d.span.map_or(usize::MAX, |s| s.start));
    Err(Diagnostics { items })
}

const SYNTAX: &str = "invalid toml: ";

fn syntax_message(message: &str) -> String {
    let one_line: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    format!("{SYNTAX}{}", one_line.join(", "))
}

type Entry<'a, 'i> = (
    &'a Spanned<std::borrow::Cow<'i, str>>,
    &'a Spanned<DeValue<'i>>,
);

fn span_of<T>(s: &Spanned<T>) -> Span {
    let r = s.span();
    Span::new(r.start, r.end)
}

/// `key = value`, from the key's start to the value's end.
fn entry_span(key: &Spanned<std::borrow::Cow<'_, str>>, value: &Spanned<DeValue<'_>>) -> Span {
    let (k, v) = (key.span(), value.span());
    Span::new(k.start.min(v.start), k.end.max(v.end))
}

/// Entries of a table in source order (the map itself is sorted by key), without the
/// placeholders the recovering parser puts where a value could not be read (their span is
/// empty; the syntax error is already reported).
fn in_order<'a, 'i>(t: &'a DeTable<'i>) -> Vec<Entry<'a, 'i>> {
    let mut entries: Vec<Entry<'a, 'i>> = t.iter().filter(|(_, v)| is_real(v)).collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// Not a placeholder of the recovering parser.
fn is_real(v: &Spanned<DeValue<'_>>) -> bool {
    !v.span().is_empty()
}

fn type_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "string",
        DeValue::Integer(_) => "integer",
        DeValue::Float(_) => "float",
        DeValue::Boolean(_) => "boolean",
        DeValue::Datetime(_) => "datetime",
        DeValue::Array(_) => "array",
        DeValue::Table(_) => "table",
    }
}

struct Loader {
    diags: Vec<Diagnostic>,
    spans: Spans,
    /// Starts of `key = value` entries whose value could not be read.
    unread: Vec<usize>,
}

impl Loader {
    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn wrong_type(&mut self, what: &str, expected: &str, value: &Spanned<DeValue<'_>>) {
        self.err(Diagnostic::new(
            format!(
                "invalid type for \"{what}\": expected {expected}, found {}",
                type_name(value.get_ref())
            ),
            Some(span_of(value)),
        ));
    }

    fn unknown_key(
        &mut self,
        key: &Spanned<std::borrow::Cow<'_, str>>,
        value: &Spanned<DeValue<'_>>,
        name: &str,
        place: &str,
        known: &[&str],
    ) {
        let hint = did_you_mean(name, known.iter().copied())
            .unwrap_or_else(|| format!("known keys: {}", known.join(", ")));
        self.err(
            Diagnostic::new(
                format!("unknown key \"{name}\" {place}"),
                Some(entry_span(key, value)),
            )
            .with_hint(hint),
        );
    }

    fn table<'a, 'i>(
        &mut self,
        value: &'a Spanned<DeValue<'i>>,
        what: &str,
    ) -> Option<&'a DeTable<'i>> {
        match value.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => {
                self.wrong_type(what, "table", value);
                None
            }
        }
    }

    fn string(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => {
                self.wrong_type(what, "string", value);
                None
            }
        }
    }

    fn bool(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<bool> {
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type(what, "boolean", value);
                None
            }
        }
    }

    fn int(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<i64> {
        match value.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    self.err(Diagnostic::new(
                        format!("integer out of range for \"{what}\""),
                        Some(span_of(value)),
                    ));
                    None
                }
            },
            _ => {
                self.wrong_type(what, "integer", value);
                None
            }
        }
    }

    /// An integer or a float, as seconds.
    fn number(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<f64> {
        match value.get_ref() {
            DeValue::Integer(_) => self.int(value, what).map(|n| n as f64),
            DeValue::Float(f) => match f.as_str().parse::<f64>() {
                Ok(x) => Some(x),
                Err(_) => {
                    self.err(Diagnostic::new(
                        format!("invalid number for \"{what}\""),
                        Some(span_of(value)),
                    ));
                    None
                }
            },
            _ => {
                self.wrong_type(what, "number", value);
                None
            }
        }
    }

    fn settings(&mut self, t: &DeTable<'_>, spec: &mut TopologySpec) {
        for (key, value) in in_order(t) {
            let name = key.get_ref().as_ref();
            self.spans.insert_setting(name, entry_span(key, value));
            match name {
                "name" => spec.name = self.string(value, name),
                "workers" => spec.workers = self.int(value, name),
                "acking" => spec.acking = self.bool(value, name),
                "ackers" => spec.ackers = self.int(value, name),
                "message_timeout_secs" => spec.message_timeout_secs = self.number(value, name),
                "max_spout_pending" => spec.max_spout_pending = self.int(value, name),
                "disable_loadaware_messaging" => {
                    spec.disable_loadaware_messaging = self.bool(value, name)
                }
                "encrypt" => spec.encrypt = self.bool(value, name),
                "checkpoint_interval_secs" => {
                    spec.checkpoint_interval_secs = self.number(value, name)
                }
                "state_backend" => spec.state_backend = self.string(value, name),
                "state_url" => spec.state_url = self.string(value, name),
                "state_dir" => spec.state_dir = self.string(value, name),
                "resources" => spec.resources = self.strings(value, name),
                "python_requirements" => spec.python_requirements = self.string(value, name),
                other => self.unknown_key(key, value, other, "in [topology]", &SETTING_KEYS),
            }
        }
    }

    fn components(&mut self, t: &DeTable<'_>, kind: Kind) -> Vec<ComponentSpec> {
        let table_name = match kind {
            Kind::Spout => "spouts",
            Kind::Bolt => "bolts",
        };
        let mut out = Vec::new();
        for (key, value) in in_order(t) {
            let id = key.get_ref().to_string();
            let Some(body) = self.table(value, &format!("{table_name}.{id}")) else {
                continue;
            };
            let mut c = ComponentSpec {
                id,
                kind,
                type_name: None,
                parallelism: None,
                tick_secs: None,
                inputs: None,
                config: toml::Table::new(),
                span: span_of(key),
            };
            // Keys whose value the recovering parser could not read: known, but absent.
            for (k, _) in body.iter().filter(|(_, v)| !is_real(v)) {
                self.spans
                    .insert_component(kind, &c.id, k.get_ref().as_ref(), span_of(k));
                self.unread.push(k.span().start);
            }
            for (k, v) in in_order(body) {
                let name = k.get_ref().as_ref();
                self.spans
                    .insert_component(kind, &c.id, name, entry_span(k, v));
                let before = self.diags.len();
                match name {
                    "type" => c.type_name = self.string(v, name),
                    "parallelism" => c.parallelism = self.int(v, name),
                    "tick_secs" => c.tick_secs = self.number(v, name),
                    "inputs" => c.inputs = self.inputs(v, kind, &c.id),
                    other => {
                        if let Some(value) = self.value(v, other) {
                            c.config.insert(other.to_string(), value);
                        }
                    }
                }
                if self.diags.len() > before {
                    self.unread.push(entry_span(k, v).start);
                }
            }
            out.push(c);
        }
        out
    }

    fn inputs(
        &mut self,
        value: &Spanned<DeValue<'_>>,
        kind: Kind,
        id: &str,
    ) -> Option<Vec<InputSpec>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type("inputs", "array", value);
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter().filter(|i| is_real(i)) {
            if let Some((input, spans)) = self.input(item) {
                for (key, span) in spans {
                    self.spans.insert_input(kind, id, out.len(), key, span);
                }
                out.push(input);
            }
        }
        Some(out)
    }

    /// One input, and where its keys are.
    fn input<'k>(
        &mut self,
        item: &'k Spanned<DeValue<'_>>,
    ) -> Option<(InputSpec, Vec<(&'k str, Span)>)> {
        let mut input = InputSpec {
            span: span_of(item),
            ..InputSpec::default()
        };
        let mut spans = Vec::new();
        match item.get_ref() {
            DeValue::String(s) => {
                input.from = s.to_string();
                Some((input, spans))
            }
            DeValue::Table(t) => {
                let mut from = None;
                for (k, v) in in_order(t) {
                    let name = k.get_ref().as_ref();
                    spans.push((name, entry_span(k, v)));
                    match name {
                        "from" => from = self.string(v, name),
                        "stream" => input.stream = self.string(v, name),
                        "grouping" => input.grouping = self.string(v, name),
                        "fields" => input.fields = self.strings(v, name),
                        other => self.unknown_key(k, v, other, "in input", &INPUT_KEYS),
                    }
                }
                if !spans.iter().any(|(k, _)| *k == "from") {
                    self.err(
                        Diagnostic::new("input has no \"from\"", Some(input.span))
                            .with_hint("e.g. { from = \"<component id>\" }"),
                    );
                    return None;
                }
                // A malformed `from` is already reported; drop the input.
                input.from = from?;
                Some((input, spans))
            }
            _ => {
                self.wrong_type("inputs", "string or table", item);
                None
            }
        }
    }

    fn strings(&mut self, value: &Spanned<DeValue<'_>>, what: &str) -> Option<Vec<String>> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(what, "array of strings", value);
            return None;
        };
        let mut out = Vec::new();
        for item in items.iter().filter(|i| is_real(i)) {
            out.push(self.string(item, what)?);
        }
        Some(out)
    }

    /// A config value as a plain TOML value.
    fn value(&mut self, v: &Spanned<DeValue<'_>>, what: &str) -> Option<toml::Value> {
        Some(match v.get_ref() {
            DeValue::String(s) => toml::Value::String(s.to_string()),
            DeValue::Integer(_) => toml::Value::Integer(self.int(v, what)?),
            DeValue::Float(_) => toml::Value::Float(self.number(v, what)?),
            DeValue::Boolean(b) => toml::Value::Boolean(*b),
            DeValue::Datetime(d) => toml::Value::Datetime(*d),
            DeValue::Array(items) => toml::Value::Array(self.array(items, what)?),
            DeValue::Table(t) => {
                let mut table = toml::Table::new();
                for (k, item) in in_order(t) {
                    table.insert(k.get_ref().to_string(), self.value(item, what)?);
                }
                toml::Value::Table(table)
            }
        })
    }

    fn array(&mut self, items: &DeArray<'_>, what: &str) -> Option<Vec<toml::Value>> {
        items
            .iter()
            .filter(|i| is_real(i))
            .map(|i| self.value(i, what))
            .collect()
    }
}
