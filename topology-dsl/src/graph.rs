//! A checked topology drawn as text, Graphviz DOT or Mermaid; edges show grouping and stream.

use std::fmt::Write as _;

use crate::catalog::Kind;
use crate::topology::{Component, Grouping, Topology};

/// How to draw a topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A plain listing of components and edges.
    Text,
    /// Graphviz DOT (`dot -Tsvg`).
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
}

/// Draws `topology` in `format`.
pub fn render(topology: &Topology, format: Format) -> String {
    match format {
        Format::Text => text(topology),
        Format::Dot => dot(topology),
        Format::Mermaid => mermaid(topology),
    }
}

/// `shuffle`, `fields(word)`, `partial_key(a, b)`.
pub fn grouping_label(g: &Grouping) -> String {
    match g {
        Grouping::Fields(f) | Grouping::PartialKey(f) => format!("{}({})", g.name(), f.join(", ")),
        _ => g.name().to_string(),
    }
}

fn outputs_label(c: &Component) -> String {
    if c.outputs.is_empty() {
        return "none".to_string();
    }
    let streams: Vec<String> = c
        .outputs
        .iter()
        .map(|s| {
            let direct = if s.direct { " direct" } else { "" };
            format!("{}({}){direct}", s.name, s.fields.join(", "))
        })
        .collect();
    streams.join(" ")
}

/// Every edge: (from, to, stream, grouping label).
fn edges(t: &Topology) -> Vec<(usize, usize, &str, String)> {
    let mut out = Vec::new();
    for (to, c) in t.components().iter().enumerate() {
        for i in &c.inputs {
            out.push((i.from, to, i.stream.as_str(), grouping_label(&i.grouping)));
        }
    }
    out
}

/// A plain listing: one line per component, then one per edge.
pub fn text(t: &Topology) -> String {
    let mut out = String::new();
    let cs = t.components();
    let _ = writeln!(
        out,
        "topology \"{}\": {} components, {} tasks, {} edges",
        t.name(),
        cs.len(),
        t.task_count(),
        t.edge_count()
    );
    let id_w = cs.iter().map(|c| c.id.len()).max().unwrap_or(0);
    let ty_w = cs.iter().map(|c| c.type_name.len()).max().unwrap_or(0);
    for c in cs {
        let _ = writeln!(
            out,
            "  {:<5} {:<id_w$}  {:<ty_w$}  x{:<3} outputs: {}",
            c.kind.to_string(),
            c.id,
            c.type_name,
            c.parallelism,
            outputs_label(c)
        );
    }
    let edges = edges(t);
    if !edges.is_empty() {
        let _ = writeln!(out, "edges:");
    }
    for (from, to, stream, grouping) in edges {
        let _ = writeln!(
            out,
            "  {:<id_w$} -> {:<id_w$}  stream {stream}, {grouping}",
            cs[from].id, cs[to].id
        );
    }
    out
}

fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Graphviz DOT: spouts are boxes with rounded corners, bolts plain boxes.
pub fn dot(t: &Topology) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(t.name()));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, fontname=\"Helvetica\"];");
    let _ = writeln!(out, "  edge [fontname=\"Helvetica\", fontsize=10];");
    for c in t.components() {
        let style = match c.kind {
            Kind::Spout => ", style=\"rounded,filled\", fillcolor=\"#dbeafe\"",
            Kind::Bolt => "",
        };
        let label = format!("{}\n{} x{}", c.id, c.type_name, c.parallelism);
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\"{style}];",
            dot_escape(&c.id),
            dot_escape(&label)
        );
    }
    let cs = t.components();
    for (from, to, stream, grouping) in edges(t) {
        let label = format!("{grouping}\nstream {stream}");
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            dot_escape(&cs[from].id),
            dot_escape(&cs[to].id),
            dot_escape(&label)
        );
    }
    out.push_str("}\n");
    out
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;")
}

/// A Mermaid flowchart, left to right; node ids are `c0`, `c1`, … in component order.
pub fn mermaid(t: &Topology) -> String {
    let mut out = String::from("flowchart LR\n");
    for (i, c) in t.components().iter().enumerate() {
        let label = mermaid_escape(&format!("{}<br/>{} x{}", c.id, c.type_name, c.parallelism));
        let _ = match c.kind {
            Kind::Spout => writeln!(out, "  c{i}([\"{label}\"])"),
            Kind::Bolt => writeln!(out, "  c{i}[\"{label}\"]"),
        };
    }
    for (from, to, stream, grouping) in edges(t) {
        let label = mermaid_escape(&format!("{grouping}<br/>stream {stream}"));
        let _ = writeln!(out, "  c{from} -->|\"{label}\"| c{to}");
    }
    out
}
