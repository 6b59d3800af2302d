//! `cargo bench --bench window`: the sliding-window word count of the peers (event time =
//! sentence index in ms, windows of 60 s sliding by 1 s, a count per (word, window)),
//! against the plain word count in the same run, with 1 and 2 workers.
//!
//! # Layout
//! - the parent (`cargo bench`): runs each configuration `TOPO_BENCH_REPS` times,
//!   interleaved, checks every run against a reference computed here (itself checked
//!   against `window_reference.py`'s published values), prints a table and one
//!   `BENCH window workers=W words_per_sec=X wordcount_ratio=R` line per worker count;
//! - `window`: `random_sentences (timestamp = true) -> split_words (keep = ["ts"],
//!   local_or_shuffle) -> window_aggregate (fields on word) -> window_check`;
//! - `plain`: `random_sentences -> split_words -> word_count (emit = "end") ->
//!   window_check`, acking off, the same workers;
//! - one worker runs in a child process (this binary, `__window-child`), timed from the
//!   start to the end of the last task; two run through `topo run` (this binary is a
//!   topo binary with the bench's registry), timed around it;
//! - any other arguments go to the `topo` CLI, so `topo run` can start workers.
//!
//! # Environment
//! - `TOPO_BENCH_SENTENCES` (default 200,000): sentences per run (10 words each);
//! - `TOPO_BENCH_REPS` (default 3): runs per configuration.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use topo::prelude::*;
use topo_spouts::sentences::{splitmix64, vocabulary, VOCABULARY, WORDS_PER_SENTENCE};

/// `window_reference.py`'s values: (sentences, results, counted, checksum).
const KNOWN: [(u64, u64, u64, u64); 2] = [
    (200_000, 259_000, 120_000_000, 0x2416_6d4f_bc80_5a4c),
    (100_000, 159_000, 60_000_000, 0x1ed3_dcdc_1ee6_d7c8),
];

/// Window length in seconds (it slides by one).
const LENGTH_SECS: u64 = 60;

/// What Apache Flink's `SlidingEventTimeWindows` does on this workload on this machine
/// (words/s; `/work/shared/peers/README.md`).
const FLINK_WORDS_PER_SEC: f64 = 27_000.0;

mod support;

use support::{env_num, fnv1a64, report_dir, stats};

/// The median of a non-empty list.
fn median(v: &[f64]) -> f64 {
    stats(v.to_vec()).map_or(f64::NAN, |s| s.median)
}

const CHILD: &str = "__window-child";

fn main() {
    support::main_with(CHILD, child, registry, parent)
}

/// Results (tuples received), Σ counts, Σ fnv1a64(word)·count (wrapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    results: u64,
    counted: u64,
    checksum: u64,
}

impl Tally {
    fn merge(&mut self, o: &Tally) {
        self.results += o.results;
        self.counted += o.counted;
        self.checksum = self.checksum.wrapping_add(o.checksum);
    }
}

/// The expected tallies of `n` sentences: (window, plain).
fn reference(n: u64) -> (Tally, Tally) {
    let vocab = vocabulary();
    let mut seconds: Vec<BTreeSet<u64>> = vec![BTreeSet::new(); vocab.len()];
    let mut counts = vec![0u64; vocab.len()];
    for i in 0..n {
        for j in 0..WORDS_PER_SENTENCE {
            let w = (splitmix64(i * WORDS_PER_SENTENCE + j) % VOCABULARY) as usize;
            seconds[w].insert(i / 1000);
            counts[w] += 1;
        }
    }
    let mut plain = Tally::default();
    let mut window = Tally::default();
    for (w, word) in vocab.iter().enumerate() {
        if counts[w] == 0 {
            continue;
        }
        let h = fnv1a64(word.as_bytes());
        plain.results += 1;
        plain.counted += counts[w];
        plain.checksum = plain.checksum.wrapping_add(h.wrapping_mul(counts[w]));
        // Windows starting at k (seconds) hold second s when s - L < k <= s.
        let mut starts: BTreeSet<i64> = BTreeSet::new();
        for &s in &seconds[w] {
            let s = s as i64;
            starts.extend(s - LENGTH_SECS as i64 + 1..=s);
        }
        window.results += starts.len() as u64;
        window.counted += counts[w] * LENGTH_SECS;
        window.checksum = window
            .checksum
            .wrapping_add(h.wrapping_mul(counts[w] * LENGTH_SECS));
    }
    (window, plain)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckConfig {
    report: String,
}

/// Tallies `word, ..., n` (the last field is the count) and writes it at the end.
struct Check {
    dir: PathBuf,
    task: TaskId,
    tally: Tally,
}

impl Bolt for Check {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.task = ctx.task;
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let word = input.get(0).and_then(Value::as_str).ok_or("no word")?;
        let n = input
            .values()
            .last()
            .and_then(Value::as_int)
            .ok_or("no count")?;
        let n = u64::try_from(n)?;
        self.tally.results += 1;
        self.tally.counted += n;
        self.tally.checksum = self
            .tally
            .checksum
            .wrapping_add(fnv1a64(word.as_bytes()).wrapping_mul(n));
        Ok(())
    }

    fn finish(&mut self, _out: &mut BoltOutput<'_>) -> Result<()> {
        let path = self.dir.join(format!("check-{}.json", self.task));
        std::fs::write(path, serde_json::to_vec(&self.tally)?)?;
        Ok(())
    }
}

fn registry() -> Registry {
    let mut registry = topo::default_registry();
    registry.bolt(
        "window_check",
        "Benchmark: tallies (word, ..., count) results and writes them at the end.",
        |_: &CheckConfig| Vec::new(),
        |c: CheckConfig| {
            Ok(Check {
                dir: PathBuf::from(c.report),
                task: 0,
                tally: Tally::default(),
            })
        },
    );
    registry
}

/// The topology file of one configuration.
fn toml(window: bool, workers: usize, n: u64, dir: &Path) -> String {
    let p = workers;
    let report = toml::Value::from(dir.display().to_string());
    let (spout, split, count) = if window {
        (
            "timestamp = true\n",
            "keep = [\"ts\"]\ninputs = [{ from = \"sentences\", grouping = \"local_or_shuffle\" }]\n",
            "type = \"window_aggregate\"\nwindow = { length_secs = 60, slide_secs = 1 }\n\
             timestamp_field = \"ts\"\nkey = [\"word\"]\naggregates = [\"count() as n\"]\n",
        )
    } else {
        (
            "",
            "inputs = [\"sentences\"]\n",
            "type = \"word_count\"\nemit = \"end\"\n",
        )
    };
    format!(
        "[topology]\nname = \"window-bench\"\nworkers = {p}\nacking = false\n\n\
         [spouts.sentences]\ntype = \"random_sentences\"\ncount = {n}\n{spout}parallelism = {p}\n\n\
         [bolts.split]\ntype = \"split_words\"\nparallelism = {p}\n{split}\n\
         [bolts.count]\n{count}parallelism = {p}\ninputs = [{{ from = \"split\", fields = [\"word\"] }}]\n\n\
         [bolts.check]\ntype = \"window_check\"\nreport = {report}\nparallelism = {p}\n\
         inputs = [{{ from = \"count\", fields = [\"word\"] }}]\n"
    )
}

/// A run: seconds and the merged tally.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Run {
    secs: f64,
    tally: Tally,
    errors: Vec<String>,
}

fn collect(dir: &Path) -> Result<Tally, String> {
    let mut tally = Tally::default();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("check-"))
        {
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let t: Tally =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            tally.merge(&t);
        }
    }
    Ok(tally)
}

/// `__window-child window|plain N`: one worker, in this process.
fn child(args: &[String]) -> i32 {
    let run = || -> Result<Run, String> {
        let [kind, n] = args else {
            return Err(format!("bad child arguments {args:?}"));
        };
        let n: u64 = n.parse().map_err(|e| format!("bad N {n}: {e}"))?;
        let dir = report_dir()?;
        let registry = registry();
        let text = toml(kind == "window", 1, n, dir.path());
        let topology = topo_dsl::load(&text, &registry).map_err(|d| d.to_string())?;
        let t0 = Instant::now();
        let running = topo_engine::start(Arc::new(topology), &registry, Default::default())
            .map_err(|e| e.to_string())?;
        let summary = running.wait();
        let secs = t0.elapsed().as_secs_f64();
        Ok(Run {
            secs,
            tally: collect(dir.path())?,
            errors: summary.errors,
        })
    };
    support::report(run())
}

fn run_once(window: bool, workers: usize, n: u64) -> Result<Run, String> {
    if workers == 1 {
        let kind = if window { "window" } else { "plain" };
        let (run, _) = support::spawn_child(&[CHILD.into(), kind.into(), n.to_string()])?;
        return Ok(run);
    }
    let dir = report_dir()?;
    let file = dir.path().join("window.topo.toml");
    std::fs::write(&file, toml(window, workers, n, dir.path()))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let (secs, _) = support::topo_run(&file)?;
    Ok(Run {
        secs,
        tally: collect(dir.path())?,
        errors: Vec::new(),
    })
}

fn parent() -> i32 {
    match bench() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn bench() -> Result<(), String> {
    let n = env_num("TOPO_BENCH_SENTENCES", 200_000u64)?;
    let reps = env_num("TOPO_BENCH_REPS", 3usize)?.max(1);
    let (expect_window, expect_plain) = reference(n);
    for (kn, results, counted, checksum) in KNOWN {
        let w = if kn == n {
            expect_window
        } else {
            reference(kn).0
        };
        let published = Tally {
            results,
            counted,
            checksum,
        };
        if w != published {
            return Err(format!(
                "the reference disagrees with window_reference.py for N={kn}: {w:?} != {published:?}"
            ));
        }
    }
    let words = (n * WORDS_PER_SENTENCE) as f64;
    println!(
        "sliding-window word count: {n} sentences, {} words, windows of {LENGTH_SECS} s sliding by 1 s; {reps} runs each",
        n * WORDS_PER_SENTENCE
    );
    println!(
        "expect results={} counted={} checksum={:016x}",
        expect_window.results, expect_window.counted, expect_window.checksum
    );
    let mut lines = Vec::new();
    for workers in [1, 2] {
        let (mut win, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            for window in [false, true] {
                let run = run_once(window, workers, n)?;
                let expect = if window { expect_window } else { expect_plain };
                if !run.errors.is_empty() || run.tally != expect {
                    return Err(format!(
                        "workers={workers} window={window}: wrong result {:?} (expected {expect:?}); errors {:?}",
                        run.tally, run.errors
                    ));
                }
                let rate = words / run.secs;
                if window {
                    win.push(rate);
                } else {
                    plain.push(rate);
                }
            }
        }
        let (w, p) = (median(&win), median(&plain));
        println!(
            "workers={workers}: window median {:.2} M words/s (min {:.2}, max {:.2}; {:.0}x Flink's {:.0} K), plain word count {:.2} M words/s, ratio {:.2}",
            w / 1e6,
            win.iter().copied().fold(f64::MAX, f64::min) / 1e6,
            win.iter().copied().fold(0.0, f64::max) / 1e6,
            w / FLINK_WORDS_PER_SEC,
            FLINK_WORDS_PER_SEC / 1e3,
            p / 1e6,
            w / p
        );
        lines.push(format!(
            "BENCH window workers={workers} words_per_sec={w:.0} wordcount_ratio={:.2}",
            w / p
        ));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(())
}
