//! `split_words` and `word_count`, the word count's two bolts.

use std::collections::HashMap;

use serde::Deserialize;
use smol_str::SmolStr;
use topo_dsl::StreamDecl;
use topo_engine::{values, Bolt, BoltOutput, Registry, Result, Tuple, Value};

/// `split_words` takes no config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {}

/// Splits the first string field of every tuple on whitespace; one tuple per word.
#[derive(Debug, Default)]
pub struct SplitWords;

impl Bolt for SplitWords {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let Some(text) = input.values().iter().find_map(Value::as_str) else {
            return Err(format!(
                "`split_words` needs a string field; got {:?}",
                input.values()
            )
            .into());
        };
        for word in text.split_whitespace() {
            out.emit([Value::Str(SmolStr::new(word))]);
        }
        Ok(())
    }
}

/// `word_count` takes no config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountConfig {}

/// Counts field `word`; emits `word, count` on every update.
#[derive(Debug, Default)]
pub struct WordCount {
    counts: HashMap<SmolStr, u64>,
}

impl Bolt for WordCount {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let word = match input.field("word").or_else(|| input.get(0)) {
            Some(Value::Str(w)) => w,
            other => {
                return Err(
                    format!("`word_count` needs a string field `word`; got {other:?}").into(),
                )
            }
        };
        let count = match self.counts.get_mut(word) {
            Some(c) => {
                *c += 1;
                *c
            }
            None => {
                self.counts.insert(word.clone(), 1);
                1
            }
        };
        out.emit(values![word.clone(), count]);
        Ok(())
    }
}

/// Registers `split_words` and `word_count`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "split_words",
        "Splits the first string field on whitespace into one tuple per word.",
        |_: &SplitConfig| vec![StreamDecl::default_stream(["word"])],
        |_| Ok(SplitWords),
    );
    registry.bolt(
        "word_count",
        "Counts field `word`; emits the word and its count on every update.",
        |_: &CountConfig| vec![StreamDecl::default_stream(["word", "count"])],
        |_| Ok(WordCount::default()),
    );
}
