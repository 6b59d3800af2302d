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

/// When `word_count` emits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmitWhen {
    /// `word, count` after every input (the default).
    #[default]
    Every,
    /// Nothing while counting; every word's final count once, when every upstream task
    /// has ended (a bounded run). Benchmarks use it to check the counts without a
    /// downstream stage that sees every update.
    End,
}

/// Config of `word_count`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountConfig {
    /// `every` (default) or `end`.
    #[serde(default)]
    pub emit: EmitWhen,
}

/// Counts field `word`; emits `word, count` on every update, or once per word at the end.
#[derive(Debug, Default)]
pub struct WordCount {
    counts: HashMap<SmolStr, u64>,
    emit: EmitWhen,
}

impl WordCount {
    /// A counter that emits as `config` says.
    pub fn new(config: &CountConfig) -> Self {
        WordCount {
            counts: HashMap::new(),
            emit: config.emit,
        }
    }
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
        if self.emit == EmitWhen::Every {
            out.emit(values![word.clone(), count]);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if self.emit == EmitWhen::End {
            let mut words: Vec<(&SmolStr, &u64)> = self.counts.iter().collect();
            words.sort_unstable();
            for (word, &count) in words {
                out.emit(values![word.clone(), count]);
            }
        }
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
        "Counts field `word`; emits the word and its count on every update, or each word once at the end with `emit = \"end\"`.",
        |_: &CountConfig| vec![StreamDecl::default_stream(["word", "count"])],
        |c: CountConfig| Ok(WordCount::new(&c)),
    );
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use topo_dsl::Topology;
    use topo_engine::{Poll, Spout, SpoutOutput};

    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoConfig {}

    struct Lines(Vec<&'static str>);

    impl Spout for Lines {
        fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
            match self.0.pop() {
                Some(line) => {
                    out.emit([line]);
                    Ok(Poll::Ready)
                }
                None => Ok(Poll::Done),
            }
        }
    }

    type Seen = Arc<Mutex<Vec<(String, i64)>>>;

    struct Record(Seen);

    impl Bolt for Record {
        fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
            let word = input.get(0).and_then(Value::as_str).ok_or("no word")?;
            let count = input.get(1).and_then(Value::as_int).ok_or("no count")?;
            self.0
                .lock()
                .map_err(|_| "poisoned")?
                .push((word.to_string(), count));
            Ok(())
        }
    }

    /// Runs lines -> split_words -> word_count (with `emit`) -> record; returns what
    /// the recorder got, sorted.
    fn counted(emit: &str) -> Vec<(String, i64)> {
        let mut registry = Registry::new();
        register(&mut registry);
        registry.spout(
            "lines",
            "Three fixed lines.",
            |_: &NoConfig| vec![StreamDecl::default_stream(["line"])],
            |_| Ok(Lines(vec!["a b a", "c a", "b"])),
        );
        let seen: Seen = Arc::default();
        let keep = Arc::clone(&seen);
        registry.bolt(
            "record",
            "Records word and count.",
            |_: &NoConfig| Vec::new(),
            move |_: NoConfig| Ok(Record(Arc::clone(&keep))),
        );
        let topology = Topology::builder("count")
            .spout("lines", "lines")
            .bolt("split", "split_words")
            .shuffle("lines")
            .bolt("count", "word_count")
            .set("emit", emit)
            .fields("split", ["word"])
            .bolt("record", "record")
            .shuffle("count")
            .build(&registry)
            .expect("valid");
        let running =
            topo_engine::start(Arc::new(topology), &registry, Default::default()).expect("starts");
        let summary = running.wait();
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        let mut got = seen.lock().expect("lock").clone();
        got.sort();
        got
    }

    fn pairs(v: &[(&str, i64)]) -> Vec<(String, i64)> {
        v.iter().map(|&(w, n)| (w.to_string(), n)).collect()
    }

    #[test]
    fn word_count_emits_every_update_by_default() {
        assert_eq!(
            counted("every"),
            pairs(&[("a", 1), ("a", 2), ("a", 3), ("b", 1), ("b", 2), ("c", 1)])
        );
    }

    #[test]
    fn word_count_with_emit_end_emits_each_final_count_once() {
        assert_eq!(counted("end"), pairs(&[("a", 3), ("b", 2), ("c", 1)]));
    }
}
