//! `topo graph FILE --format text|dot|mermaid`: draw a topology's graph.

use std::path::PathBuf;

use topo_dsl::graph::{render, Format};
use topo_engine::Registry;

use super::{load_file, EXIT_OK};

/// Output formats of `topo graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    /// Components, then edges with their stream and grouping.
    Text,
    /// Graphviz DOT, e.g. `topo graph FILE --format dot | dot -Tsvg > graph.svg`.
    Dot,
    /// A Mermaid flowchart, for Markdown.
    Mermaid,
}

/// Arguments of `topo graph`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The `*.topo.toml` file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = GraphFormat::Text)]
    pub format: GraphFormat,
}

/// Validates the file and prints its graph to stdout.
pub fn run(registry: &Registry, args: &Args) -> i32 {
    let topology = match load_file(&args.file, registry) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let format = match args.format {
        GraphFormat::Text => Format::Text,
        GraphFormat::Dot => Format::Dot,
        GraphFormat::Mermaid => Format::Mermaid,
    };
    print!("{}", render(&topology, format));
    EXIT_OK
}
