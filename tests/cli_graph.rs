//! `topo graph`: the word count as text, Mermaid and DOT that Graphviz accepts.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn graph(format: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["graph", "examples/wordcount.topo.toml", "--format", format])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("topo runs")
}

fn stdout(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn text_lists_components_and_edges_with_stream_and_grouping() {
    assert_eq!(
        stdout(&graph("text")),
        "\
topology \"wordcount\": 4 components, 6 tasks, 3 edges
  spout sentences  random_sentences  x1   outputs: default(sentence)
  bolt  split      split_words       x2   outputs: default(word)
  bolt  count      word_count        x2   outputs: default(word, count)
  bolt  print      ranking           x1   outputs: none
edges:
  sentences -> split      stream default, shuffle
  split     -> count      stream default, fields(word)
  count     -> print      stream default, global
"
    );
}

#[test]
fn mermaid_labels_edges_with_grouping_and_stream() {
    let mermaid = stdout(&graph("mermaid"));
    let readme = include_str!("../README.md");
    assert!(
        readme.contains(&format!("```mermaid\n{mermaid}```")),
        "the README shows the word count's graph as topo draws it"
    );
    assert_eq!(
        mermaid,
        "\
flowchart LR
  c0([\"sentences<br/>random_sentences x1\"])
  c1[\"split<br/>split_words x2\"]
  c2[\"count<br/>word_count x2\"]
  c3[\"print<br/>ranking x1\"]
  c0 -->|\"shuffle<br/>stream default\"| c1
  c1 -->|\"fields(word)<br/>stream default\"| c2
  c2 -->|\"global<br/>stream default\"| c3
"
    );
}

#[test]
fn dot_is_accepted_by_graphviz() {
    let dot = stdout(&graph("dot"));
    assert!(dot.starts_with("digraph \"wordcount\" {\n"));
    assert!(dot.contains("\"split\" -> \"count\" [label=\"fields(word)\\nstream default\"];"));
    common::require("dot", &["-V"], "graphviz (apt-get install graphviz)");
    let mut child = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dot");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(dot.as_bytes())
        .expect("write to dot");
    let out = child.wait_with_output().expect("dot runs");
    assert!(
        out.status.success(),
        "dot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(svg.contains("<svg"), "{svg}");
    assert!(svg.contains("fields(word)"), "{svg}");
}

#[test]
fn an_invalid_file_is_not_drawn() {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(["graph", "tests/data/broken.topo.toml"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("topo runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}
