//! The loader, the validator and the renderer never panic: arbitrary text and bytes,
//! mutated valid and broken files, and builder specs with arbitrary numbers all end in
//! `Ok` or `Err`.

use proptest::prelude::*;
use topo_dsl::{Diagnostics, Topology};

const WORDCOUNT: &str = include_str!("../examples/wordcount.topo.toml");
const BROKEN: &str = include_str!("data/broken.topo.toml");

/// Loads `text`, renders any diagnostics, and checks what holds for every outcome.
fn check(text: &str) {
    let registry = topo::default_registry();
    match topo_dsl::load(text, &registry) {
        Ok(t) => {
            // A checked topology's invariants.
            assert!(t.task_count() >= t.components().len());
            for c in t.components() {
                for i in &c.inputs {
                    assert!(i.from < t.components().len());
                    assert!(t.components()[i.from].output(&i.stream).is_some());
                }
            }
            let _ = topo_dsl::graph::dot(&t);
        }
        Err(d) => {
            assert!(!d.is_empty(), "an error with no diagnostics");
            let shown = d.render("fuzz.topo.toml", text);
            assert!(shown.contains("error: "));
        }
    }
}

/// Small edits of a valid file: delete, insert or replace a run of characters.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just(String::new()),
        Just("=".to_string()),
        Just("\"".to_string()),
        Just("[".to_string()),
        Just("]".to_string()),
        Just("{".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("\n".to_string()),
        Just("1e999".to_string()),
        Just("99999999999999999999".to_string()),
        Just("[bolts.x]\ninputs = [\"x\"]\n".to_string()),
        "\\PC{0,8}",
    ];
    proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6, pieces), 1..5).prop_map(
        move |edits| {
            let mut chars: Vec<char> = base.chars().collect();
            for (at, del, insert) in edits {
                let start = at.index(chars.len() + 1);
                let end = (start + del).min(chars.len());
                chars.splice(start..end, insert.chars());
            }
            chars.into_iter().collect()
        },
    )
}

/// Mostly near the valid range's edges, sometimes anything.
fn int(max: i64) -> impl Strategy<Value = i64> {
    prop_oneof![-2i64..3, max - 2..max + 3, any::<i64>()]
}

fn secs() -> impl Strategy<Value = f64> {
    prop_oneof![
        -1.0f64..60.0,
        Just(0.0),
        Just(31_536_000.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        any::<f64>()
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        check(&text);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn toml_like_text_never_panics(text in "(\\[(topology|spouts|bolts)(\\.[a-z]{1,3})?\\]\n|[a-z_]{1,12} = (\"[a-z_]{0,12}\"|-?[0-9]{1,3}|\\[\"[a-z]{1,3}\"\\]|\\{ ?from = \"[a-z]{1,3}\" ?\\}|true|1\\.5)\n){0,20}") {
        check(&text);
    }

    #[test]
    fn mutated_wordcount_never_panics(text in mutated(WORDCOUNT)) {
        check(&text);
    }

    #[test]
    fn mutated_broken_file_never_panics(text in mutated(BROKEN)) {
        check(&text);
    }

    #[test]
    fn builder_numbers_never_panic(
        workers in int(1_000),
        ackers in int(10_000),
        pending in int(10_000),
        timeout in secs(),
        parallelism in int(10_000),
        tick in secs(),
        acking in any::<bool>(),
    ) {
        let result: Result<Topology, Diagnostics> = Topology::builder("t")
            .workers(workers)
            .ackers(ackers)
            .acking(acking)
            .max_spout_pending(pending)
            .message_timeout_secs(timeout)
            .spout("s", "random_sentences")
            .parallelism(parallelism)
            .bolt("b", "split_words")
            .tick_secs(tick)
            .shuffle("s")
            .build(&topo::default_registry());
        let valid = (1..=1000).contains(&workers)
            && (0..=10_000).contains(&ackers)
            && pending >= 0
            && timeout > 0.0 && timeout <= 31_536_000.0
            && (1..=10_000).contains(&parallelism)
            && tick > 0.0 && tick <= 31_536_000.0;
        prop_assert_eq!(result.is_ok(), valid, "{:?}", result.err());
    }
}
