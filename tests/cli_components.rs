//! `topo components`: every registered type with its kind, description and outputs.

use std::process::Command;

#[test]
fn lists_every_built_in_type_with_its_outputs() {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("components")
        .output()
        .expect("topo runs");
    assert_eq!(out.status.code(), Some(0));
    let listing = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listing,
        topo::cli::components::listing(&topo::default_registry())
    );
    let lines: Vec<&str> = listing.lines().collect();
    let names: Vec<&str> = lines
        .iter()
        .step_by(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "console",
            "file_lines",
            "file_sink",
            "filter",
            "map",
            "multilang",
            "multilang_spout",
            "random_sentences",
            "rolling_top",
            "sequence",
            "split_words",
            "stdin_lines",
            "tcp_lines",
            "word_count"
        ]
    );
    let outputs_of = |name: &str| {
        let i = names.iter().position(|n| *n == name).expect("listed");
        lines[2 * i + 1].trim()
    };
    assert!(lines[0].starts_with("console           bolt   Prints every tuple"));
    assert_eq!(outputs_of("console"), "outputs: none");
    assert_eq!(outputs_of("random_sentences"), "outputs: default(sentence)");
    assert_eq!(outputs_of("word_count"), "outputs: default(word, count)");
    assert_eq!(outputs_of("multilang"), "outputs: declared by its config");
}
