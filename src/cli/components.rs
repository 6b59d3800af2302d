//! `topo components`: every registered component type, its description and outputs.

use topo_dsl::ComponentType;
use topo_engine::Registry;

use super::EXIT_OK;

/// Arguments of `topo components` (none yet).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Prints one entry per registered type, sorted by name.
pub fn run(registry: &Registry, _args: &Args) -> i32 {
    print!("{}", listing(registry));
    EXIT_OK
}

/// The listing `topo components` prints: name, kind and description on one line, the
/// output streams with their fields on the next.
pub fn listing(registry: &Registry) -> String {
    let entries: Vec<_> = registry.entries().collect();
    let width = entries.iter().map(|e| e.name().len()).max().unwrap_or(0);
    let mut out = String::new();
    for e in entries {
        // Outputs as declared for an empty config; a type whose outputs come from its
        // config (e.g. a multilang component) needs keys and says so.
        let outputs = match e.configure(&toml::Table::new()) {
            Ok(streams) if streams.is_empty() => "none".to_string(),
            Ok(streams) => streams
                .iter()
                .map(|s| {
                    let direct = if s.direct { " (direct)" } else { "" };
                    format!("{}({}){direct}", s.name, s.fields.join(", "))
                })
                .collect::<Vec<_>>()
                .join(", "),
            Err(_) => "declared by its config".to_string(),
        };
        out.push_str(&format!(
            "{:<width$}  {:<5}  {}\n{:<width$}         outputs: {outputs}\n",
            e.name(),
            e.kind().to_string(),
            e.description(),
            ""
        ));
    }
    out
}
