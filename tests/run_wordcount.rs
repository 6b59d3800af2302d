//! The word count example, run for real: by the `topo` binary (timed and bounded), and
//! through the library with its final counts checked against a direct computation.

use std::collections::HashMap;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use topo::prelude::*;
use topo_spouts::sentences::{sentence_into, vocabulary};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/wordcount.topo.toml");

/// Runs `topo` with `args`; returns (exit code, the last `keep` bytes of stdout, stderr).
/// Only the tail is kept: the summary is at the end.
fn topo(args: &[&str], keep: usize) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let mut tail: Vec<u8> = Vec::new();
    let mut buf = vec![0; 1 << 16];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        tail.extend_from_slice(&buf[..n]);
        if tail.len() > 2 * keep {
            tail.drain(..tail.len() - keep);
        }
    }
    let status = child.wait().unwrap();
    let stderr = err.join().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&tail).into_owned(),
        stderr,
    )
}

#[test]
fn the_example_runs_for_a_while_then_drains_and_prints_the_summary() {
    let (code, out, err) = topo(&["run", EXAMPLE, "--for", "2s"], 4096);
    assert_eq!(code, 0, "stderr: {err}");
    let table = &out[out.rfind("component").expect("a summary table")..];
    let rows: Vec<&str> = table.lines().collect();
    assert!(rows[0].split_whitespace().eq([
        "component",
        "kind",
        "tasks",
        "emitted",
        "executed",
        "acked",
        "failed",
        "explicit",
        "timeout",
        "panic",
        "exec_ms",
        "complete_ms",
        "capacity"
    ]));
    let row = |id: &str| -> Vec<u64> {
        let line = rows.iter().find(|l| l.starts_with(id)).unwrap();
        line.split_whitespace()
            .skip(2)
            .take(8)
            .map(|x| x.parse().unwrap())
            .collect()
    };
    let sentences = row("sentences");
    assert!(sentences[1] > 0, "the spout emitted: {table}");
    // A graceful stop drains what is in flight: every emitted sentence was acked.
    assert_eq!(sentences[3], sentences[1], "{table}");
    assert_eq!(sentences[4], 0, "{table}");
    assert_eq!(
        row("print")[2],
        row("count")[1],
        "print executed every count"
    );
    assert!(table.contains("wordcount in"));
}

#[derive(Deserialize)]
struct Summary {
    components: Vec<Component>,
}

#[derive(Deserialize)]
struct Component {
    id: String,
    emitted: u64,
    executed: u64,
    acked: u64,
    failed: u64,
}

#[test]
fn a_bounded_word_count_ends_by_itself_with_every_sentence_acked() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(EXAMPLE).unwrap().replace(
        "type = \"random_sentences\"",
        "type = \"random_sentences\"\ncount = 100000",
    );
    let file = dir.path().join("bounded.topo.toml");
    std::fs::write(&file, text).unwrap();
    // `--for` only guards against a hang; the run ends by itself long before.
    let (code, out, err) = topo(
        &["run", file.to_str().unwrap(), "--json", "--for", "120s"],
        1 << 16,
    );
    assert_eq!(code, 0, "stderr: {err}");
    let json = out.lines().last().unwrap();
    let summary: Summary = serde_json::from_str(json).unwrap();
    let c = |id: &str| summary.components.iter().find(|c| c.id == id).unwrap();
    let sentences = c("sentences");
    assert_eq!(sentences.emitted, 100_000);
    assert_eq!(sentences.acked, sentences.emitted);
    assert_eq!(sentences.failed, 0);
    assert_eq!(c("split").executed, 100_000);
    assert_eq!(c("count").executed, 1_000_000);
    assert_eq!(c("print").executed, 1_000_000);
    assert_eq!(c("__acker").acked, 100_000);
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// Keeps the latest count of every word.
struct Latest(Arc<Mutex<HashMap<String, i64>>>);

impl Bolt for Latest {
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let word = input.str_field("word").unwrap().to_string();
        let count = input.field("count").and_then(Value::as_int).unwrap();
        let mut latest = self.0.lock().unwrap();
        let e = latest.entry(word).or_insert(0);
        *e = (*e).max(count);
        Ok(())
    }
}

#[test]
fn word_counts_equal_a_reference_computed_directly() {
    const SENTENCES: u64 = 20_000;
    let latest = Arc::new(Mutex::new(HashMap::new()));
    let mut registry = topo::default_registry();
    let l = Arc::clone(&latest);
    registry.bolt(
        "latest",
        "keeps the latest count per word",
        |_: &NoConfig| Vec::new(),
        move |_| Ok(Latest(Arc::clone(&l))),
    );
    let topology = Topology::builder("wordcount")
        .spout("sentences", "random_sentences")
        .parallelism(2)
        .set("count", SENTENCES as i64)
        .bolt("split", "split_words")
        .parallelism(3)
        .shuffle("sentences")
        .bolt("count", "word_count")
        .parallelism(4)
        .fields("split", ["word"])
        .bolt("latest", "latest")
        .global("count")
        .build(&registry)
        .unwrap();
    let running = topo_engine::start(Arc::new(topology), &registry, Default::default()).unwrap();
    let summary = running.wait();

    let vocab = vocabulary();
    let mut expect: HashMap<String, i64> = HashMap::new();
    let mut s = String::new();
    for i in 0..SENTENCES {
        s.clear();
        sentence_into(&vocab, 0, i, &mut s);
        for w in s.split_whitespace() {
            *expect.entry(w.to_string()).or_default() += 1;
        }
    }
    assert_eq!(*latest.lock().unwrap(), expect);
    assert_eq!(summary.counts("sentences").acked, SENTENCES);
}

#[test]
fn ctrl_c_drains_in_flight_trees_and_exits_cleanly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    // The example without its console bolt, unbounded.
    let text = std::fs::read_to_string(EXAMPLE).unwrap();
    let text = &text[..text.find("[bolts.print]").unwrap()];
    let file = dir.path().join("unbounded.topo.toml");
    std::fs::write(&file, text).unwrap();
    /// Ends the child even when an assertion fails first.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut guard = Guard(
        Command::new(env!("CARGO_BIN_EXE_topo"))
            .args(["run", file.to_str().unwrap(), "--json", "--for", "120s"])
            .env("RUST_LOG", "topo_engine=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("Topology started.") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "topo ended early");
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {rest}");
    assert!(
        rest.contains("Stopping: draining in-flight tuples"),
        "{rest}"
    );
    let summary: Summary = serde_json::from_str(out.trim()).unwrap();
    let sentences = summary
        .components
        .iter()
        .find(|c| c.id == "sentences")
        .unwrap();
    assert_eq!(sentences.acked, sentences.emitted);
    assert_eq!(sentences.failed, 0);
}
