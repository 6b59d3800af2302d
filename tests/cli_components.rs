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
        ["console", "random_sentences", "split_words", "word_count"]
    );
    assert!(lines[0].starts_with("console           bolt   Prints every tuple"));
    assert_eq!(lines[1].trim(), "outputs: none");
    assert_eq!(lines[3].trim(), "outputs: default(sentence)");
    assert_eq!(lines[7].trim(), "outputs: default(word, count)");
}
