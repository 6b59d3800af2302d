//! The `topo` command line: one binary, every role.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use topo_dsl::ComponentType;
use topo_engine::Registry;

mod run;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the topology is invalid.
pub const EXIT_INVALID: i32 = 1;
/// Exit code: an I/O or usage error.
pub const EXIT_USAGE: i32 = 2;

/// topo: run streaming topologies of spouts and bolts, with Storm's guarantees.
#[derive(Debug, Parser)]
#[command(name = "topo", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check topology files and print a summary of each.
    Validate {
        /// The `*.topo.toml` files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List every registered component type with its description and outputs.
    Components,
    /// Run a topology in this process until it ends, is stopped, or `--for` is up.
    Run(run::RunArgs),
}

/// Runs the CLI with `registry`'s component types; returns the process exit code.
pub fn main_with(registry: Registry) -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match cli.command {
        Command::Validate { files } => validate(&registry, &files),
        Command::Components => components(&registry),
        Command::Run(args) => run::run(&registry, args),
    }
}

fn validate(registry: &Registry, files: &[PathBuf]) -> i32 {
    let _ = (registry, files);
    eprintln!("error: `topo validate` is not built yet");
    EXIT_USAGE
}

fn components(registry: &Registry) -> i32 {
    for e in registry.entries() {
        println!("{:<18} {:<5} {}", e.name(), e.kind(), e.description());
    }
    EXIT_OK
}
