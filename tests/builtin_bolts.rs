//! The built-in bolts, run through the engine: filter and map expressions, file_sink's
//! JSON Lines, rolling_top's ranking.

mod common;

use topo::prelude::*;

fn strings(v: &[&str]) -> toml::Value {
    toml::Value::Array(v.iter().map(|s| toml::Value::from(*s)).collect())
}

#[test]
fn map_computes_fields_and_filter_keeps_matching_tuples() {
    let (registry, seen) = common::registry();
    let topology = Topology::builder("exprs")
        .spout("numbers", "sequence")
        .set("count", 12)
        .bolt("shape", "map")
        .set(
            "fields",
            strings(&["n", "n * n as square", "'#' + str(n) as label"]),
        )
        .shuffle("numbers")
        .bolt("even_big", "filter")
        .set("where", "square % 2 == 0 && square >= 16 && label != '#8'")
        .set("fields", strings(&["label", "square"]))
        .shuffle("shape")
        .bolt("sink", "record")
        .shuffle("even_big")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = common::run(topology, &registry, dir.path());
    let mut got: Vec<(Vec<String>, Vec<Value>)> = seen.lock().expect("lock").clone();
    got.sort_by_key(|(_, v)| v[1].as_int());
    let fields = vec!["label".to_string(), "square".to_string()];
    let expect: Vec<(Vec<String>, Vec<Value>)> = [4i64, 6, 10]
        .iter()
        .map(|n| {
            (
                fields.clone(),
                vec![Value::from(format!("#{n}")), Value::Int(n * n)],
            )
        })
        .collect();
    assert_eq!(got, expect);
    assert_eq!(summary.counts("numbers").acked, 12);
}

#[test]
fn a_bad_expression_is_a_validation_error_with_its_column() {
    let (registry, _) = common::registry();
    let err = Topology::builder("exprs")
        .spout("numbers", "sequence")
        .bolt("keep", "filter")
        .set("where", "n >= && true")
        .set("fields", strings(&["n"]))
        .shuffle("numbers")
        .build(&registry)
        .expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("expected a value, found `&&` at column 6 of \"n >= && true\""),
        "{text}"
    );
}

#[test]
fn a_field_the_input_lacks_stops_the_filter_when_it_starts() {
    let (registry, _) = common::registry();
    let topology = Topology::builder("exprs")
        .spout("numbers", "sequence")
        .set("count", 3)
        .bolt("keep", "filter")
        .set("where", "count > 1")
        .set("fields", strings(&["n"]))
        .shuffle("numbers")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = common::run(topology, &registry, dir.path());
    assert_eq!(
        summary.errors,
        ["bolt `keep` task 2 failed to prepare: `keep` reads field `count`, which its input `numbers` (stream `default`) does not have; it has: n"]
    );
}

#[test]
fn file_sink_writes_json_lines_and_a_new_run_truncates() {
    let (registry, _) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("out.jsonl"), "stale\n").expect("stale file");
    let build = || {
        Topology::builder("sink")
            .spout("numbers", "sequence")
            .set("count", 5)
            .bolt("shape", "map")
            .set("fields", strings(&["n", "upper('n' + str(n)) as name"]))
            .shuffle("numbers")
            .bolt("out", "file_sink")
            .parallelism(2)
            .set("path", "out.jsonl")
            .shuffle("shape")
            .build(&registry)
            .expect("valid")
    };
    for _ in 0..2 {
        common::run(build(), &registry, dir.path());
        let text = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("output");
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            (0..5)
                .map(|n| format!("{{\"n\":{n},\"name\":\"N{n}\"}}"))
                .collect::<Vec<_>>(),
            "each run starts the file afresh, its two tasks share it"
        );
    }
}

/// Every `sync` mode writes every line and acks every tuple; with `batch` (the default)
/// the acks come from the syncer thread after each group fsync, through `wake`.
#[test]
fn file_sink_acks_every_line_in_each_sync_mode() {
    let (registry, _) = common::registry();
    for sync in ["batch", "always", "never"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let topology = Topology::builder("sync")
            .acking(true)
            .spout("numbers", "sequence")
            .set("count", 2000)
            .bolt("out", "file_sink")
            .parallelism(2)
            .set("path", "out.jsonl")
            .set("sync", sync)
            .shuffle("numbers")
            .build(&registry)
            .expect("valid");
        let summary = common::run(topology, &registry, dir.path());
        let text = std::fs::read_to_string(dir.path().join("out.jsonl")).expect("output");
        assert_eq!(text.lines().count(), 2000, "{sync}");
        assert_eq!(summary.counts("numbers").acked, 2000, "{sync}");
        assert_eq!(summary.counts("numbers").failed, 0, "{sync}");
    }
}

#[test]
fn rolling_top_ranks_keys_when_the_stream_ends() {
    let (registry, seen) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    let words = "ka lo ka mi lo ka nu\nka mi\n";
    std::fs::write(dir.path().join("words.txt"), words).expect("input");
    let topology = Topology::builder("top")
        .spout("lines", "file_lines")
        .set("path", "words.txt")
        .bolt("split", "split_words")
        .shuffle("lines")
        .bolt("top", "rolling_top")
        .set("n", 3)
        .set("window_secs", 600)
        .global("split")
        .bolt("sink", "record")
        .global("top")
        .build(&registry)
        .expect("valid");
    common::run(topology, &registry, dir.path());
    let got: Vec<Vec<Value>> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(f, v)| {
            assert_eq!(f, &["rank", "key", "count"]);
            v.clone()
        })
        .collect();
    assert_eq!(
        got,
        [
            vec![Value::Int(1), Value::from("ka"), Value::Int(4)],
            vec![Value::Int(2), Value::from("lo"), Value::Int(2)],
            vec![Value::Int(3), Value::from("mi"), Value::Int(2)],
        ]
    );
}

#[test]
fn rolling_top_emits_the_ranking_on_ticks() {
    let (registry, seen) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    // Unbounded numbers, keyed by n % 3: the bolt ranks on every tick while they flow.
    let topology = Topology::builder("top")
        .max_spout_pending(10)
        .spout("numbers", "sequence")
        .bolt("keys", "map")
        .set("fields", strings(&["n % 3 as key"]))
        .shuffle("numbers")
        .bolt("top", "rolling_top")
        .set("n", 2)
        .tick_secs(0.05)
        .global("keys")
        .bolt("sink", "record")
        .global("top")
        .build(&registry)
        .expect("valid");
    let running = topo_engine::start(
        std::sync::Arc::new(topology),
        &registry,
        topo_engine::RunOptions {
            base_dir: dir.path().to_path_buf(),
            ..Default::default()
        },
    )
    .expect("start");
    // Stop once two rankings (two tuples each) arrived, bounded by two minutes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while seen.lock().expect("lock").len() < 4 && std::time::Instant::now() < deadline {
        running.wait_timeout(std::time::Duration::from_millis(20));
    }
    running.stop();
    running.wait();
    let got: Vec<Vec<Value>> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, v)| v.clone())
        .collect();
    let rankings = got.iter().filter(|v| v[0] == Value::Int(1)).count();
    assert!(rankings >= 2, "one ranking per tick: {got:?}");
    for pair in got.windows(2) {
        if pair[1][0] == Value::Int(2) {
            assert_eq!(pair[0][0], Value::Int(1), "{got:?}");
            assert!(pair[0][2].as_int() >= pair[1][2].as_int(), "{got:?}");
        }
    }
}
