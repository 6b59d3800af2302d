//! `ranking`: keeps the latest value of every key and prints the top `n` as a small table
//! on every tick and once at the end — a live leaderboard instead of a line per tuple.
//!
//! Every input sets its key's value (the key is field `key`, or the first field; the
//! value is field `value`, or the second field, an integer or a float): fed by
//! `word_count`, which emits each word's running count, it shows the most frequent words.
//! Ranked by value, highest first, ties by key. Give it `tick_secs` (the refresh period)
//! and a `global` grouping, so that one task sees every key.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::num::NonZeroUsize;
use std::time::Instant;

use serde::Deserialize;
use topo_engine::{Bolt, BoltOutput, Registry, Result, TaskContext, Tuple, Value};

/// Config of `ranking`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Field holding the key; the first field when absent.
    pub key: Option<String>,
    /// Field holding the value to rank by; the second field when absent.
    pub value: Option<String>,
    /// How many keys to show (default 10).
    #[serde(default = "default_n")]
    pub n: NonZeroUsize,
}

fn default_n() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(9)
}

/// The latest value of every key, and the names of the fields they came from.
#[derive(Debug, Default)]
pub struct Board {
    values: HashMap<String, (f64, Value)>,
    names: Option<(String, String)>,
}

impl Board {
    /// Sets `key`'s value; `names` are the key's and the value's field names.
    pub fn set(&mut self, key: &str, value: &Value, names: (&str, &str)) -> Result<()> {
        let rank = match value {
            Value::Int(i) => *i as f64,
            Value::Float(f) => *f,
            other => {
                return Err(format!(
                    "`ranking` ranks by numbers; field `{}` holds {other:?}",
                    names.1
                )
                .into())
            }
        };
        if self.names.is_none() {
            self.names = Some((names.0.to_string(), names.1.to_string()));
        }
        match self.values.get_mut(key) {
            Some(v) => *v = (rank, value.clone()),
            None => {
                self.values.insert(key.to_string(), (rank, value.clone()));
            }
        }
        Ok(())
    }

    /// The `n` keys with the highest values, highest first, ties by key.
    pub fn top(&self, n: usize) -> Vec<(&str, &Value)> {
        let mut all: Vec<(&str, f64, &Value)> = self
            .values
            .iter()
            .map(|(k, (r, v))| (k.as_str(), *r, v))
            .collect();
        all.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
        all.into_iter().take(n).map(|(k, _, v)| (k, v)).collect()
    }

    /// The table: a heading (`when`, e.g. `at 3s`) and one row per ranked key.
    pub fn render(&self, n: usize, when: &str) -> String {
        let (key, value) = match &self.names {
            Some((k, v)) => (k.as_str(), v.as_str()),
            None => ("key", "value"),
        };
        let top = self.top(n);
        let mut text = format!(
            "top {} {key} by {value} {when} ({} in all)\n",
            top.len(),
            self.values.len()
        );
        let rows: Vec<(&str, String)> = top.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let digits = rows.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
        for (rank, (k, v)) in rows.iter().enumerate() {
            let _ = writeln!(text, "{:>4}  {k:<width$}  {v:>digits$}", rank + 1);
        }
        text
    }
}

/// The bolt.
#[derive(Debug)]
pub struct Ranking {
    config: Config,
    board: Board,
    start: Instant,
    /// Clear the current terminal line (the status line) before a table.
    clear_line: bool,
}

impl Ranking {
    fn print(&self, when: &str) -> Result<()> {
        let mut text = String::new();
        if self.clear_line {
            text.push_str("\r\x1b[2K");
        }
        text.push_str(&self.board.render(self.config.n.get(), when));
        std::io::stdout().lock().write_all(text.as_bytes())?;
        Ok(())
    }

    fn elapsed(&self) -> String {
        format!("{}s", self.start.elapsed().as_secs())
    }
}

/// Field `name` of `input`, or its field number `index` when no name is configured: the
/// field's name and value.
fn field<'t>(
    input: &'t Tuple,
    name: Option<&'t str>,
    index: usize,
) -> Result<(&'t str, &'t Value)> {
    match name {
        Some(f) => input.field(f).map(|v| (f, v)).ok_or_else(|| {
            format!(
                "`ranking` has no field `{f}` in its input from `{}` (fields: {})",
                input.source_component(),
                input.fields().join(", ")
            )
            .into()
        }),
        None => match (input.fields().get(index), input.get(index)) {
            (Some(n), Some(v)) => Ok((n.as_str(), v)),
            _ => Err(format!(
                "`ranking` needs a key and a value; its input from `{}` has fields: {}",
                input.source_component(),
                input.fields().join(", ")
            )
            .into()),
        },
    }
}

impl Bolt for Ranking {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.start = Instant::now();
        crate::warn_without_ticks(ctx);
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let (key_name, key) = field(input, self.config.key.as_deref(), 0)?;
        let (value_name, value) = field(input, self.config.value.as_deref(), 1)?;
        match key {
            Value::Str(s) => self.board.set(s, value, (key_name, value_name)),
            other => self
                .board
                .set(&other.to_string(), value, (key_name, value_name)),
        }
    }

    fn tick(&mut self, _out: &mut BoltOutput<'_>) -> Result<()> {
        self.print(&format!("at {}", self.elapsed()))
    }

    fn finish(&mut self, _out: &mut BoltOutput<'_>) -> Result<()> {
        self.print(&format!("at the end, {}", self.elapsed()))
    }
}

/// Registers `ranking`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "ranking",
        "Prints the top `n` keys by their latest value as a table, on every tick and at the end.",
        |_: &Config| Vec::new(),
        |config: Config| {
            Ok(Ranking {
                config,
                board: Board::default(),
                start: Instant::now(),
                clear_line: std::io::stdout().is_terminal(),
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_ranks_the_latest_values_highest_first_ties_by_key() {
        let mut b = Board::default();
        for (k, v) in [("the", 1), ("cow", 1), ("the", 2), ("moon", 2), ("the", 3)] {
            b.set(k, &Value::Int(v), ("word", "count"))
                .expect("a number");
        }
        assert_eq!(
            b.render(2, "at 1s"),
            "top 2 word by count at 1s (3 in all)\n   1  the   3\n   2  moon  2\n"
        );
        assert_eq!(b.top(5).len(), 3);
    }

    #[test]
    fn a_value_that_is_not_a_number_is_an_error() {
        let mut b = Board::default();
        let err = b
            .set("a", &Value::from("x"), ("word", "count"))
            .expect_err("text");
        assert_eq!(
            err.to_string(),
            "`ranking` ranks by numbers; field `count` holds Str(\"x\")"
        );
    }
}
