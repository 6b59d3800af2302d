//! `topo components`: every registered type with its kind, description and outputs.

use std::process::Command;

use topo_dsl::ComponentType;

#[test]
fn lists_every_registered_type_with_its_kind_description_and_outputs() {
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("components")
        .output()
        .expect("topo runs");
    assert_eq!(out.status.code(), Some(0));
    let listing = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = listing.lines().collect();
    // Two lines per type: `name  kind  description`, then `outputs: ...`.
    let registry = topo::default_registry();
    let entries: Vec<_> = registry.entries().collect();
    assert_eq!(lines.len(), 2 * entries.len(), "{listing}");
    for (pair, entry) in lines.chunks(2).zip(&entries) {
        let words: Vec<&str> = pair[0].split_whitespace().collect();
        assert_eq!(words[0], entry.name());
        assert_eq!(words[1], entry.kind().to_string());
        assert!(pair[0].ends_with(entry.description()), "{}", pair[0]);
        assert!(pair[1].trim_start().starts_with("outputs: "), "{}", pair[1]);
    }
    let outputs = |name: &str| {
        lines
            .chunks(2)
            .find(|p| p[0].split_whitespace().next() == Some(name))
            .map(|p| p[1].trim())
    };
    assert_eq!(outputs("console"), Some("outputs: none"));
    assert_eq!(
        outputs("random_sentences"),
        Some("outputs: default(sentence)")
    );
    assert_eq!(outputs("split_words"), Some("outputs: default(word)"));
    assert_eq!(outputs("word_count"), Some("outputs: default(word, count)"));
    assert_eq!(
        outputs("multilang"),
        Some("outputs: declared by its config")
    );
}
