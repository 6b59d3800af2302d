//! `split_words` and `word_count`, the word count's two bolts.

use serde::Deserialize;
use smol_str::SmolStr;
use topo_dsl::StreamDecl;
use topo_engine::state::{TaskState, TaskStateReader};
use topo_engine::{values, Bolt, BoltOutput, Registry, Result, StreamInfo, Tuple, Value, Values};

/// Config of `split_words`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitConfig {
    /// Input fields copied onto every word, after it (e.g. `["ts"]`, an event time).
    #[serde(default)]
    pub keep: Vec<String>,
}

/// Splits the first string field of every tuple on whitespace; one tuple per word.
#[derive(Debug, Default)]
pub struct SplitWords {
    words: WordCache,
    keep: Vec<String>,
    /// Where the kept fields are in tuples from the last source seen.
    kept_at: Option<(&'static StreamInfo, Vec<Option<usize>>)>,
}

/// Recently seen short words, so that a repeated word becomes a clone of its `SmolStr`.
///
/// Building an inline `SmolStr` copies the bytes into a stack buffer and reads them
/// back as whole words at once: a store-forwarding stall on every word, which a CPU
/// profile showed costing more than the splitting itself. A clone copies 24 bytes that
/// were written long ago. Direct-mapped: a miss builds the string and takes the slot.
struct WordCache {
    slots: Vec<SmolStr>,
}

/// Slots in a [`WordCache`] (a power of two; 96 KiB).
const WORD_SLOTS: usize = 4096;

impl Default for WordCache {
    fn default() -> Self {
        WordCache {
            slots: vec![SmolStr::default(); WORD_SLOTS],
        }
    }
}

impl std::fmt::Debug for WordCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WordCache")
    }
}

impl WordCache {
    /// `SmolStr::new(word)`, from the cache when the word was seen recently.
    #[inline]
    fn get(&mut self, word: &str) -> SmolStr {
        let b = word.as_bytes();
        // Longer strings are shared (heap) `SmolStr`s: not cached.
        if b.len() > 23 {
            return SmolStr::new(word);
        }
        let slot = &mut self.slots[word_hash(b) & (WORD_SLOTS - 1)];
        if slot.as_str() == word {
            return slot.clone();
        }
        let s = SmolStr::new(word);
        slot.clone_from(&s);
        s
    }
}

/// A cheap hash of up to 23 bytes: the length and at most 16 of them, read as two
/// overlapping words from the (long since written) input text.
#[inline]
fn word_hash(b: &[u8]) -> usize {
    let n = b.len();
    let (lo, hi) = if n >= 8 {
        (u64_at(b, 0), u64_at(b, n - 8))
    } else if n >= 4 {
        (u64::from(u32_at(b, 0)), u64::from(u32_at(b, n - 4)))
    } else if n > 0 {
        (
            u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16),
            0,
        )
    } else {
        (0, 0)
    };
    let h = (lo ^ hi.rotate_left(29) ^ (n as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 40) as usize
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[i..i + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[i..i + 4]);
    u32::from_le_bytes(w)
}

impl Bolt for SplitWords {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let Some(text) = input.values().iter().find_map(Value::as_str) else {
            return Err(format!(
                "`split_words` needs a string field; got {:?}",
                input.values()
            )
            .into());
        };
        let words = &mut self.words;
        if self.keep.is_empty() {
            for_each_word(text, |word| out.emit([Value::Str(words.get(word))]));
            return Ok(());
        }
        let source = input.source();
        if !self
            .kept_at
            .as_ref()
            .is_some_and(|(s, _)| std::ptr::eq(*s, source))
        {
            let at = self.keep.iter().map(|f| source.index_of(f)).collect();
            self.kept_at = Some((source, at));
        }
        let mut kept: smallvec::SmallVec<[Value; 2]> = smallvec::SmallVec::new();
        for (i, at) in self.kept_at.iter().flat_map(|(_, at)| at).enumerate() {
            match at.and_then(|at| input.get(at)) {
                Some(v) => kept.push(v.clone()),
                None => {
                    return Err(format!(
                        "`split_words` keeps field `{}`, which its input from `{}` does not have",
                        self.keep[i],
                        input.source_component()
                    )
                    .into())
                }
            }
        }
        for_each_word(text, |word| {
            let mut values = Values::new();
            values.push(Value::Str(words.get(word)));
            for v in &kept {
                // An event time (the usual kept field) copies without a call.
                values.push(match v {
                    Value::Int(i) => Value::Int(*i),
                    v => v.clone(),
                });
            }
            out.emit(values);
        });
        Ok(())
    }
}

/// Calls `f` with each word of `text`, exactly as `text.split_whitespace()` yields them,
/// but byte by byte while the text is ASCII (Unicode decoding and the `White_Space`
/// table lookup dominate splitting short sentences); from the first non-ASCII byte on,
/// the rest of the text goes through `split_whitespace` itself.
fn for_each_word(text: &str, mut f: impl FnMut(&str)) {
    // The ASCII characters that `char::is_whitespace` accepts (`u8::is_ascii_whitespace`
    // lacks the vertical tab).
    fn space(b: u8) -> bool {
        matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && space(bytes[i]) {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !space(bytes[i]) {
            if !bytes[i].is_ascii() {
                // `start` follows ASCII bytes only, so it is a char boundary.
                text[start..].split_whitespace().for_each(f);
                return;
            }
            i += 1;
        }
        if i > start {
            f(&text[start..i]);
        }
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
    /// A fast non-cryptographic hasher: the keys are words from the topology's own
    /// tuples, and SipHash's flooding resistance cost more than the counting itself.
    counts: foldhash::HashMap<SmolStr, u64>,
    emit: EmitWhen,
    /// Where field `word` is in tuples from the last source seen (`None`: not declared).
    word_at: Option<(&'static StreamInfo, Option<usize>)>,
}

impl WordCount {
    /// A counter that emits as `config` says.
    pub fn new(config: &CountConfig) -> Self {
        WordCount {
            counts: foldhash::HashMap::default(),
            emit: config.emit,
            word_at: None,
        }
    }
}

impl Bolt for WordCount {
    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let source = input.source();
        let at = match self.word_at {
            Some((s, at)) if std::ptr::eq(s, source) => at,
            _ => {
                let at = source.index_of("word");
                self.word_at = Some((source, at));
                at
            }
        };
        let word = match at.and_then(|i| input.get(i)).or_else(|| input.get(0)) {
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

    /// Every word's count, as keyed state.
    fn snapshot(&mut self, state: &mut TaskState) -> Result<()> {
        state.put_map(self.counts.iter())?;
        Ok(())
    }

    /// The counts of the words this task owns now.
    fn restore(&mut self, state: &TaskStateReader) -> Result<()> {
        self.counts = state.map::<SmolStr, u64>()?.into_iter().collect();
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
        "Splits the first string field on whitespace into one tuple per word; `keep` copies input fields onto each word.",
        |c: &SplitConfig| {
            let mut fields = vec!["word".to_string()];
            fields.extend(c.keep.iter().cloned());
            vec![StreamDecl::default_stream(fields)]
        },
        |c: SplitConfig| {
            Ok(SplitWords {
                keep: c.keep,
                ..SplitWords::default()
            })
        },
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

    fn words(text: &str) -> Vec<String> {
        let mut got = Vec::new();
        for_each_word(text, |w| got.push(w.to_string()));
        got
    }

    #[test]
    fn word_cache_returns_the_word_it_was_asked_for() {
        let mut cache = WordCache::default();
        // More distinct words than slots (so slots are shared and replaced), each asked
        // for twice in a row and again later, plus words too long to cache.
        let words: Vec<String> = (0..10_000)
            .map(|i| match i % 3 {
                0 => format!("w{i}"),
                1 => format!("{i}-a-word-longer-than-23-bytes"),
                _ => "x".repeat(i % 23 + 1),
            })
            .collect();
        for round in 0..2 {
            for w in &words {
                assert_eq!(cache.get(w).as_str(), w, "round {round}");
                assert_eq!(cache.get(w).as_str(), w, "round {round}, repeated");
            }
        }
    }

    #[test]
    fn ascii_split_matches_split_whitespace_on_every_ascii_space() {
        let text = " a\tbb\ncc\x0bdd\x0cee\rff  \x1cgg\u{85}hh\u{a0}ii jj\u{3000}kk é ";
        let expect: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(words(text), expect);
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("   "), Vec::<String>::new());
        assert_eq!(words("one"), ["one"]);
    }

    proptest::proptest! {
        #[test]
        fn split_is_split_whitespace(text in "[ a-z\t\n\r\x0b\x0c\u{85}\u{a0}\u{2003}éß]{0,40}") {
            let expect: Vec<&str> = text.split_whitespace().collect();
            proptest::prop_assert_eq!(words(&text), expect);
        }
    }
}
