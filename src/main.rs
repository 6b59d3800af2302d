//! The `topo` command.

fn main() {
    std::process::exit(topo::cli::main_with(topo::default_registry()));
}
