//! The one validator: spec → checked [`Topology`], every problem reported at once.

use std::fmt;
use std::time::Duration;

use crate::catalog::{Catalog, Kind, DEFAULT_STREAM};
use crate::spec::{Span, TopologySpec};
use crate::topology::{Component, Grouping, Input, Settings, Topology};

/// One problem found in a topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// What is wrong.
    pub message: String,
    /// Where, when the spec came from a file.
    pub span: Option<Span>,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Every problem found in a topology.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnostics {
    /// The problems, in source order.
    pub items: Vec<Diagnostic>,
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "error: {}", d.message)?;
            if let Some(h) = &d.hint {
                writeln!(f, "  = hint: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// Checks `spec` against `catalog`.
pub fn validate(spec: &TopologySpec, catalog: &dyn Catalog) -> Result<Topology, Diagnostics> {
    let mut errs = Vec::new();
    let mut err = |message: String, span: Option<Span>, hint: Option<String>| {
        errs.push(Diagnostic {
            message,
            span,
            hint,
        });
    };
    let workers = spec.workers.unwrap_or(1);
    if workers < 1 {
        err(
            format!("`workers` must be at least 1, not {workers}"),
            None,
            None,
        );
    }
    let acking = spec.acking.unwrap_or(true);
    let ackers = if acking {
        spec.ackers.unwrap_or(workers.max(1)).max(0) as usize
    } else {
        0
    };
    let settings = Settings {
        workers: workers.max(1) as usize,
        acking,
        ackers,
        message_timeout: Duration::from_secs_f64(
            spec.message_timeout_secs.unwrap_or(30.0).max(0.001),
        ),
        max_spout_pending: match spec.max_spout_pending {
            Some(n) if n > 0 => Some(n as usize),
            Some(_) => None,
            None if acking => Some(1000),
            None => None,
        },
    };
    let mut components: Vec<Component> = Vec::new();
    for c in &spec.components {
        let Some(type_name) = &c.type_name else {
            err(
                format!("component `{}` has no `type`", c.id),
                Some(c.span),
                None,
            );
            continue;
        };
        let Some(ty) = catalog.component_type(type_name) else {
            err(
                format!("unknown component type `{type_name}`"),
                Some(c.span),
                Some(format!("known types: {}", catalog.type_names().join(", "))),
            );
            continue;
        };
        let outputs = match ty.configure(&c.config) {
            Ok(o) => o,
            Err(issues) => {
                for i in issues {
                    err(format!("`{}`: {}", c.id, i.message), Some(c.span), i.hint);
                }
                continue;
            }
        };
        let parallelism = c.parallelism.unwrap_or(1);
        if parallelism < 1 {
            err(
                format!("`parallelism` must be at least 1, not {parallelism}"),
                Some(c.span),
                None,
            );
        }
        components.push(Component {
            id: c.id.clone(),
            kind: c.kind,
            type_name: type_name.clone(),
            parallelism: parallelism.max(1) as usize,
            tick: c.tick_secs.map(Duration::from_secs_f64),
            config: c.config.clone(),
            outputs,
            inputs: Vec::new(),
        });
    }
    for c in &spec.components {
        let Some(me) = components.iter().position(|x| x.id == c.id) else {
            continue;
        };
        let mut inputs = Vec::new();
        for inp in c.inputs.iter().flatten() {
            let Some(from) = components.iter().position(|x| x.id == inp.from) else {
                err(
                    format!("unknown input `{}`", inp.from),
                    Some(inp.span),
                    None,
                );
                continue;
            };
            let stream = inp
                .stream
                .clone()
                .unwrap_or_else(|| DEFAULT_STREAM.to_string());
            let Some(decl) = components[from].output(&stream) else {
                err(
                    format!("`{}` declares no stream `{stream}`", inp.from),
                    Some(inp.span),
                    None,
                );
                continue;
            };
            let fields = inp.fields.clone().unwrap_or_default();
            for f in &fields {
                if !decl.fields.contains(f) {
                    err(
                        format!("stream `{stream}` of `{}` has no field `{f}`", inp.from),
                        Some(inp.span),
                        None,
                    );
                }
            }
            let grouping = match inp.grouping.as_deref().unwrap_or(if fields.is_empty() {
                "shuffle"
            } else {
                "fields"
            }) {
                "shuffle" => Grouping::Shuffle,
                "fields" => Grouping::Fields(fields),
                "partial_key" => Grouping::PartialKey(fields),
                "all" => Grouping::All,
                "global" => Grouping::Global,
                "none" => Grouping::None,
                "direct" => Grouping::Direct,
                "local_or_shuffle" => Grouping::LocalOrShuffle,
                other => {
                    err(format!("unknown grouping `{other}`"), Some(inp.span), None);
                    continue;
                }
            };
            if (grouping == Grouping::Direct) != decl.direct {
                err(
                    format!(
                        "grouping `{}` does not fit stream `{stream}`",
                        grouping.name()
                    ),
                    Some(inp.span),
                    None,
                );
            }
            inputs.push(Input {
                from,
                stream,
                grouping,
            });
        }
        match (
            c.kind,
            inputs.is_empty() && c.inputs.as_ref().is_none_or(Vec::is_empty),
        ) {
            (Kind::Spout, false) => err(
                format!("spout `{}` cannot have inputs", c.id),
                Some(c.span),
                None,
            ),
            (Kind::Bolt, true) => err(format!("bolt `{}` has no inputs", c.id), Some(c.span), None),
            _ => {}
        }
        components[me].inputs = inputs;
    }
    // Cycle check: repeatedly remove components with no unresolved inputs.
    let mut done = vec![false; components.len()];
    loop {
        let next = (0..components.len()).find(|&i| {
            !done[i]
                && components[i]
                    .inputs
                    .iter()
                    .all(|inp| done[inp.from] || inp.from == i && false)
        });
        match next {
            Some(i) => done[i] = true,
            None => break,
        }
    }
    let on_cycle: Vec<&str> = (0..components.len())
        .filter(|&i| !done[i])
        .map(|i| components[i].id.as_str())
        .collect();
    if !on_cycle.is_empty() {
        err(format!("cycle through {}", on_cycle.join(", ")), None, None);
    }
    if errs.is_empty() {
        Ok(Topology {
            name: spec.name.clone().unwrap_or_else(|| "topology".into()),
            settings,
            components,
        })
    } else {
        Err(Diagnostics { items: errs })
    }
}
