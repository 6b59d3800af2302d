//! A multilang split bolt written with only the Python standard library
//! (`examples/multilang/split.py`) in a word count over a file.

mod common;

use common::strings;
use topo::prelude::*;

#[test]
fn a_stdlib_python_split_bolt_counts_the_words_of_a_file() {
    let (registry, seen) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    common::copy_script("split.py", dir.path());
    let text = "ka lo mi\nlo mi\n\nmi ka ka ka\nümlaut \"quoted\" ümlaut\n";
    std::fs::write(dir.path().join("in.txt"), text).expect("input");
    let topology = Topology::builder("stdlib")
        .spout("lines", "file_lines")
        .set("path", "in.txt")
        .bolt("split", "multilang")
        .parallelism(2)
        .set("command", strings(&["python3", "split.py"]))
        .set("outputs", strings(&["word"]))
        .shuffle("lines")
        .bolt("count", "word_count")
        .fields("split", ["word"])
        .bolt("sink", "record")
        .shuffle("count")
        .build(&registry)
        .expect("valid");
    let summary = common::run(topology, &registry, dir.path());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(common::final_counts(&seen), common::word_counts(text));
    assert_eq!(summary.counts("lines").acked, 5);
}
