//! `console`: prints every tuple to standard output, one line each.

use std::io::Write;

use serde::Deserialize;
use topo_engine::{Bolt, BoltOutput, Registry, Result, Tuple};

/// Config of `console`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Printed before every line; the source component's id when absent.
    pub prefix: Option<String>,
}

/// Prints `prefix: field=value field=value`.
#[derive(Debug)]
pub struct Console {
    config: Config,
}

impl Bolt for Console {
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let prefix = self
            .config
            .prefix
            .as_deref()
            .unwrap_or(input.source_component());
        let mut line = format!("{prefix}:");
        for (name, value) in input.fields().iter().zip(input.values()) {
            line.push_str(&format!(" {name}={value}"));
        }
        line.push('\n');
        std::io::stdout().lock().write_all(line.as_bytes())?;
        Ok(())
    }
}

/// Registers `console`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "console",
        "Prints every tuple to standard output as `component: field=value ...`.",
        |_: &Config| Vec::new(),
        |c: Config| Ok(Console { config: c }),
    );
}
