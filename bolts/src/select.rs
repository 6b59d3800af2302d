//! `filter` and `map`: keep the tuples matching a condition, compute new fields; both
//! written in the [`expr`](crate::expr) language.
//!
//! Their config is parsed when the topology is validated, so a syntax error is reported
//! by `topo validate` with the key and column. Field names are checked against the
//! inputs' declared fields when the task starts.

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::{Bolt, BoltOutput, Registry, Result, TaskContext, Tuple, Value, Values};

use crate::expr::{truth, Expr, Projection};

/// A parsed condition (deserialized from its source text).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Condition(pub Expr);

impl TryFrom<String> for Condition {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Expr::parse(&s).map(Condition).map_err(|e| e.to_string())
    }
}

/// A parsed projection (deserialized from `"expr"` or `"expr as name"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct Field(pub Projection);

impl TryFrom<String> for Field {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Projection::parse(&s).map(Field).map_err(|e| e.to_string())
    }
}

/// Config of `filter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// The condition a tuple must meet to pass, e.g. `count >= 3 && word != "ka"`.
    #[serde(rename = "where")]
    pub condition: Condition,
    /// The fields passed on (the output stream's fields), e.g. `["word", "count"]`.
    pub fields: Vec<Field>,
}

/// Config of `map`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapConfig {
    /// The output fields, each `expr` or `expr as name`: `["word", "upper(word) as shout"]`.
    pub fields: Vec<Field>,
}

fn names(fields: &[Field]) -> Vec<String> {
    fields.iter().map(|f| f.0.name.clone()).collect()
}

/// Both bolts: an optional condition, then a projection.
#[derive(Debug)]
pub struct Select {
    condition: Option<Expr>,
    fields: Vec<Projection>,
}

impl Select {
    /// A filter.
    pub fn filter(c: FilterConfig) -> Self {
        Select {
            condition: Some(c.condition.0),
            fields: c.fields.into_iter().map(|f| f.0).collect(),
        }
    }

    /// A map.
    pub fn map(c: MapConfig) -> Self {
        Select {
            condition: None,
            fields: c.fields.into_iter().map(|f| f.0).collect(),
        }
    }

    /// What to emit for a tuple whose fields `field` looks up: `None` when the condition
    /// rejects it.
    pub fn apply<'v>(&self, field: &dyn Fn(&str) -> Option<&'v Value>) -> Result<Option<Values>> {
        if let Some(c) = &self.condition {
            if !truth(&c.eval(field)?, "where")? {
                return Ok(None);
            }
        }
        let values = self
            .fields
            .iter()
            .map(|p| {
                p.expr
                    .eval(field)
                    .map_err(|e| format!("field `{}`: {e}", p.name))
            })
            .collect::<Result<Values, String>>()?;
        Ok(Some(values))
    }

    fn read_fields(&self) -> Vec<&str> {
        let mut all = Vec::new();
        let exprs = self
            .condition
            .iter()
            .chain(self.fields.iter().map(|p| &p.expr));
        for e in exprs {
            for f in e.fields() {
                if !all.contains(&f) {
                    all.push(f);
                }
            }
        }
        all
    }
}

impl Bolt for Select {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        let Some((_, me)) = ctx.topology.component(&ctx.component) else {
            return Ok(());
        };
        for input in &me.inputs {
            let from = &ctx.topology.components()[input.from];
            let Some(decl) = from.output(&input.stream) else {
                continue;
            };
            for f in self.read_fields() {
                if !decl.fields.iter().any(|d| d == f) {
                    return Err(format!(
                        "`{}` reads field `{f}`, which its input `{}` (stream `{}`) does not have; it has: {}",
                        ctx.component,
                        from.id,
                        input.stream,
                        decl.fields.join(", ")
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        if let Some(values) = self.apply(&|name| input.field(name))? {
            out.emit(values);
        }
        Ok(())
    }
}

/// Registers `filter` and `map`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "filter",
        "Passes on the tuples meeting `where` (e.g. `count >= 3 && word != \"ka\"`), projected to `fields`.",
        |c: &FilterConfig| vec![StreamDecl::default_stream(names(&c.fields))],
        |c| Ok(Select::filter(c)),
    );
    registry.bolt(
        "map",
        "Computes `fields` from every tuple: field names or `expr as name` (e.g. `upper(word) as shout`).",
        |c: &MapConfig| vec![StreamDecl::default_stream(names(&c.fields))],
        |c| Ok(Select::map(c)),
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use topo_dsl::parse_config;

    use super::*;

    fn table(src: &str) -> toml::Table {
        src.parse().expect("toml")
    }

    #[test]
    fn a_filter_passes_matching_tuples_projected() {
        let c: FilterConfig = parse_config(&table(
            "where = 'count >= 3 && word != \"ka\"'\nfields = ['word', 'count * 10 as tens']",
        ))
        .expect("config");
        let f = Select::filter(c);
        let run = |word: &str, count: i64| {
            let m: HashMap<&str, Value> =
                [("word", Value::from(word)), ("count", Value::Int(count))].into();
            f.apply(&|n| m.get(n)).expect("apply")
        };
        assert_eq!(
            run("pemi", 3),
            Some(Values::from([Value::from("pemi"), Value::Int(30)]))
        );
        assert_eq!(run("ka", 5), None);
        assert_eq!(run("pemi", 2), None);
    }

    #[test]
    fn config_errors_name_the_key_and_column() {
        let err = parse_config::<FilterConfig>(&table("where = 'count >'\nfields = ['word']"))
            .expect_err("bad condition");
        assert_eq!(
            err[0].message,
            "expected a value, found the end at column 8 of \"count >\"\nin `where`"
        );
        let err =
            parse_config::<MapConfig>(&table("fields = ['upper(word)']")).expect_err("unnamed");
        assert_eq!(
            err[0].message,
            "a computed value needs a name: write `upper(word) as NAME` at column 1 of \"upper(word)\"\nin `fields`"
        );
    }
}
