//! `random_sentences`: deterministic ten-word sentences over a 1,000-word vocabulary.
//!
//! Word k of the vocabulary is the syllables of k's decimal digits (`0` → `ka`,
//! `42` → `pemi`); word j of sentence i is `vocab[splitmix64(i*10 + j) % 1000]`. With
//! several tasks, task k of p emits sentences k, k+p, k+2p, … With `timestamp = true`
//! each also carries `ts` = i, its event time in milliseconds.

use std::collections::VecDeque;

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::{values, MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext};

const SYL: [&str; 10] = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze"];

/// Words per sentence.
pub const WORDS_PER_SENTENCE: u64 = 10;

/// Words in the vocabulary.
pub const VOCABULARY: u64 = 1000;

/// The 1,000-word vocabulary.
pub fn vocabulary() -> Vec<String> {
    (0..VOCABULARY)
        .map(|k| {
            k.to_string()
                .bytes()
                .map(|d| SYL[usize::from(d - b'0')])
                .collect()
        })
        .collect()
}

/// The standard splitmix64 finalizer.
#[inline]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Writes sentence `i` of `seed` (0 is the benchmark's sequence) into `out`.
pub fn sentence_into(vocab: &[String], seed: u64, i: u64, out: &mut String) {
    let mix = if seed == 0 { 0 } else { splitmix64(seed) };
    for j in 0..WORDS_PER_SENTENCE {
        if j > 0 {
            out.push(' ');
        }
        let x = (i * WORDS_PER_SENTENCE + j) ^ mix;
        out.push_str(&vocab[(splitmix64(x) % VOCABULARY) as usize]);
    }
}

/// Config of `random_sentences`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Sentences in all (over every task); unbounded when absent.
    pub count: Option<u64>,
    /// Another sequence of sentences; 0 (the default) is the benchmark's.
    #[serde(default)]
    pub seed: u64,
    /// Adds field `ts`, the event time of sentence i: i milliseconds (the windowing
    /// benchmark's workload).
    #[serde(default)]
    pub timestamp: bool,
}

/// The spout.
#[derive(Debug)]
pub struct RandomSentences {
    config: Config,
    vocab: Vec<String>,
    next: u64,
    step: u64,
    replay: VecDeque<MsgId>,
    buf: String,
}

impl RandomSentences {
    /// A spout for `config`.
    pub fn new(config: Config) -> Self {
        RandomSentences {
            config,
            vocab: vocabulary(),
            next: 0,
            step: 1,
            replay: VecDeque::new(),
            buf: String::new(),
        }
    }

    fn emit(&mut self, i: u64, out: &mut SpoutOutput<'_>) {
        self.buf.clear();
        sentence_into(&self.vocab, self.config.seed, i, &mut self.buf);
        if self.config.timestamp {
            out.emit_id(i, values![self.buf.as_str(), i]);
        } else {
            out.emit_id(i, [self.buf.as_str()]);
        }
    }
}

impl Spout for RandomSentences {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        self.next = ctx.task_index as u64;
        self.step = ctx.tasks_of(&ctx.component).len().max(1) as u64;
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        if let Some(i) = self.replay.pop_front() {
            self.emit(i, out);
            return Ok(Poll::Ready);
        }
        if self.config.count.is_some_and(|n| self.next >= n) {
            return Ok(Poll::Done);
        }
        let i = self.next;
        self.next += self.step;
        self.emit(i, out);
        Ok(Poll::Ready)
    }

    fn fail(&mut self, id: MsgId) {
        self.replay.push_back(id);
    }

    fn position(&mut self) -> Option<Vec<u8>> {
        Some(crate::file::encode_position(&[self.next]))
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let [next] = crate::file::decode_position(position)?;
        self.next = next;
        self.replay.clear();
        Ok(())
    }
}

/// Registers `random_sentences`.
pub fn register(registry: &mut Registry) {
    registry.spout(
        "random_sentences",
        "Deterministic ten-word sentences (the benchmark's generator); `count` bounds it, `seed` varies it, `timestamp = true` adds `ts` (sentence i: i ms).",
        |c: &Config| {
            if c.timestamp {
                vec![StreamDecl::default_stream(["sentence", "ts"])]
            } else {
                vec![StreamDecl::default_stream(["sentence"])]
            }
        },
        |c: Config| Ok(RandomSentences::new(c)),
    );
    registry.rewinds("random_sentences", |_: &Config| true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_matches_the_benchmark() {
        let v = vocabulary();
        assert_eq!(
            (v[0].as_str(), v[42].as_str(), v[999].as_str()),
            ("ka", "pemi", "zezeze")
        );
    }
}
