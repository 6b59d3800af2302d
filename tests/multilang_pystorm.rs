//! Components written with pystorm (PyPI), unmodified, as a topology's spout and split
//! bolt: message ids, anchoring, explicit `fail` and replay, `log`.

mod common;

use common::strings;
use topo::prelude::*;

const SENTENCES: &str = "the cow jumped over the moon
an apple a day keeps the doctor away
four score and seven years ago
snow white and the seven dwarfs
i am at two with nature";

#[test]
fn a_pystorm_spout_and_split_bolt_count_words_exactly_with_replays() {
    common::require(
        "python3",
        &["-c", "import pystorm"],
        "the Python package pystorm (pip install pystorm)",
    );
    let (registry, seen) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_script("pystorm_sentences.py", dir.path());
    common::copy_script("pystorm_split.py", dir.path());
    let topology = Topology::builder("pystorm")
        .spout("sentences", "multilang_spout")
        .set("command", strings(&["python3", "pystorm_sentences.py"]))
        .set("outputs", strings(&["sentence"]))
        .bolt("split", "multilang")
        .parallelism(2)
        .set("command", strings(&["python3", "pystorm_split.py"]))
        .set("outputs", strings(&["word"]))
        .shuffle("sentences")
        .bolt("count", "word_count")
        .parallelism(2)
        .fields("split", ["word"])
        .bolt("sink", "record")
        .shuffle("count")
        .build(&registry)
        .expect("valid");
    let summary = common::run(topology, &registry, dir.path());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(common::final_counts(&seen), common::word_counts(SENTENCES));
    let words = SENTENCES.split_whitespace().count() as u64;
    assert_eq!(summary.counts("split").emitted, words, "no word twice");
    let spout = summary.counts("sentences");
    assert_eq!(
        (spout.acked, spout.failed),
        (5, 2),
        "two sentences failed once"
    );
    assert_eq!(summary.counts("split").executed, 7);
}
