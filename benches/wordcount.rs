//! `cargo bench --bench wordcount`: word-count throughput, memory and latency against a
//! plain loop measured in the same run.
//!
//! # Layout
//! - the parent (`cargo bench`): plans the runs, starts each one in a fresh child process
//!   (this binary again, `__bench-child ...`), reads the child's peak RSS from `wait4`,
//!   checks every run's counts against an independent reference, prints the table and
//!   one `BENCH wordcount ...` line per configuration;
//! - `baseline`: one thread, no engine: generate, split, count into a
//!   `HashMap<String, u64>` with one `String` per word;
//! - `topology`: `random_sentences -> split_words (shuffle) -> word_count (fields on
//!   word, emit = "end") -> bench_check (fields on word)`; `bench_check` receives each
//!   word's final count once, so it adds nothing per word; it writes its task's total,
//!   distinct words, checksum and its process's `VmHWM` to a report file;
//! - latency runs swap the spout for `bench_sentences`: the same sentences, rate-limited,
//!   each message timestamped at emit and timed again in `ack`;
//! - two workers: `topo run` (this binary) starts them as worker processes, which reach
//!   each other over loopback TCP; `w2-on-sealed` is `w2-on` with `encrypt = true`
//!   (every frame between the workers sealed with ChaCha20-Poly1305), run in the same
//!   interleaving, so its ratio to `w2-on` is the cost of encryption; `w2-off-chk` and
//!   `w2-on-chk` are `w2-off` and `w2-on` with a checkpoint every second (exactly-once
//!   state in a folder of the run's temporary directory), and their ratio to those is
//!   the cost of checkpointing;
//! - any other arguments (`run`, `worker`, ...) go to the `topo` CLI with this binary's
//!   registry, so that `topo run` re-executing `current_exe() worker ...` works here.
//!
//! # Environment
//! - `TOPO_BENCH_SENTENCES` (default 5,000,000): sentences per run (10 words each);
//! - `TOPO_BENCH_REPS` (default 3): runs per configuration, interleaved;
//! - `TOPO_BENCH_ONLY`: comma-separated subset of
//!   `w1-off,w1-on,w2-off,w2-on,w2-on-sealed,w2-off-chk,w2-on-chk`
//!   (the baseline always runs; it is the denominator);
//! - `TOPO_BENCH_LATENCY_SECS` (default 3; 0 skips): length of each latency run at half
//!   of the configuration's median throughput.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use topo::prelude::*;

use topo_spouts::sentences::{sentence_into, splitmix64, vocabulary, VOCABULARY};

/// Checksums the issue publishes, to check the reference itself.
const KNOWN: [(u64, u64); 3] = [
    (100_000, 0x66e9_ee59_0083_d8ee),
    (2_000_000, 0xba5d_f26a_0f13_efc1),
    (5_000_000, 0xb104_bf6e_6f86_8833),
];

mod support;

use support::{env_num, fnv1a64, percentile, report_dir, stats, vmhwm_kib, Stats};

const CHILD: &str = "__bench-child";

fn main() {
    support::main_with(CHILD, child, registry, parent)
}

// ---------------------------------------------------------------------------------------
// Workload and checks

/// Words counted, distinct words, Σ fnv1a64(word)·count (wrapping).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Tally {
    total: u64,
    distinct: u64,
    checksum: u64,
}

impl Tally {
    fn add_word(&mut self, word: &str, count: u64) {
        self.total += count;
        self.distinct += 1;
        self.checksum = self
            .checksum
            .wrapping_add(fnv1a64(word.as_bytes()).wrapping_mul(count));
    }

    fn merge(&mut self, other: &Tally) {
        self.total += other.total;
        self.distinct += other.distinct;
        self.checksum = self.checksum.wrapping_add(other.checksum);
    }
}

/// The expected tally of `n` sentences, computed without text: word j of sentence i is
/// vocabulary index `splitmix64(10i + j) % 1000`.
fn reference(n: u64) -> Tally {
    let vocab = vocabulary();
    let mut counts = vec![0u64; vocab.len()];
    for x in 0..n * 10 {
        counts[(splitmix64(x) % VOCABULARY) as usize] += 1;
    }
    let mut t = Tally::default();
    for (w, &c) in vocab.iter().zip(&counts) {
        if c > 0 {
            t.add_word(w, c);
        }
    }
    t
}

/// The baseline: one thread, no engine, one `String` per word, std `HashMap`.
fn baseline(n: u64) -> Tally {
    let vocab = vocabulary();
    let mut counts: HashMap<String, u64> = HashMap::new();
    let mut line = String::with_capacity(128);
    for i in 0..n {
        line.clear();
        sentence_into(&vocab, 0, i, &mut line);
        for word in line.split_whitespace() {
            let word = word.to_string();
            match counts.get_mut(&word) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(word, 1);
                }
            }
        }
    }
    let mut t = Tally::default();
    for (w, &c) in &counts {
        t.add_word(w, c);
    }
    t
}

// ---------------------------------------------------------------------------------------
// The bench's own components

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckConfig {
    /// Folder the report goes to.
    report: String,
}

/// One `bench_check` task's report.
#[derive(Debug, Serialize, Deserialize)]
struct CheckReport {
    worker: usize,
    task: TaskId,
    tally: Tally,
    vmhwm_kib: u64,
}

/// Tallies `word, count` pairs (each word's final count once) and writes them at the end.
struct Check {
    dir: PathBuf,
    worker: usize,
    task: TaskId,
    tally: Tally,
}

impl Bolt for Check {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.worker = ctx.worker;
        self.task = ctx.task;
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let word = input.get(0).and_then(Value::as_str).ok_or("no word")?;
        let count = input.get(1).and_then(Value::as_int).ok_or("no count")?;
        self.tally.add_word(word, u64::try_from(count)?);
        Ok(())
    }

    fn finish(&mut self, _out: &mut BoltOutput<'_>) -> Result<()> {
        let report = CheckReport {
            worker: self.worker,
            task: self.task,
            tally: self.tally,
            vmhwm_kib: vmhwm_kib(),
        };
        let path = self.dir.join(format!("check-{}.json", self.task));
        std::fs::write(&path, serde_json::to_vec(&report)?)?;
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TimedConfig {
    /// Sentences over all tasks.
    count: u64,
    /// Sentences per second over all tasks.
    rate: f64,
    /// Folder the report goes to.
    report: String,
}

/// One `bench_sentences` task's complete latencies.
#[derive(Debug, Default, Serialize, Deserialize)]
struct LatencyReport {
    acked: u64,
    failed: u64,
    /// Every emit -> ack time in microseconds, sorted.
    micros: Vec<u32>,
}

/// `random_sentences`'s sentences at a fixed rate, each timed from emit to ack.
struct Timed {
    config: TimedConfig,
    vocab: Vec<String>,
    next: u64,
    step: u64,
    emitted: u64,
    started: Option<Instant>,
    in_flight: HashMap<MsgId, Instant>,
    replay: Vec<MsgId>,
    task: TaskId,
    report: LatencyReport,
    line: String,
}

impl Timed {
    fn emit(&mut self, i: u64, out: &mut SpoutOutput<'_>) {
        self.line.clear();
        sentence_into(&self.vocab, 0, i, &mut self.line);
        self.in_flight.insert(i, Instant::now());
        out.emit_id(i, [self.line.as_str()]);
    }
}

impl Spout for Timed {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        self.next = ctx.task_index as u64;
        self.step = ctx.tasks_of(&ctx.component).len().max(1) as u64;
        self.task = ctx.task;
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        if let Some(i) = self.replay.pop() {
            self.emit(i, out);
            return Ok(Poll::Ready);
        }
        if self.next >= self.config.count {
            return Ok(Poll::Done);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let due = started.elapsed().as_secs_f64() * self.config.rate / self.step as f64;
        if self.emitted as f64 >= due {
            return Ok(Poll::Idle);
        }
        let i = self.next;
        self.next += self.step;
        self.emitted += 1;
        self.emit(i, out);
        Ok(Poll::Ready)
    }

    fn ack(&mut self, id: MsgId) {
        if let Some(at) = self.in_flight.remove(&id) {
            let us = at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            self.report.micros.push(us);
            self.report.acked += 1;
        }
    }

    fn fail(&mut self, id: MsgId) {
        self.in_flight.remove(&id);
        self.report.failed += 1;
        self.replay.push(id);
    }

    fn close(&mut self) {
        let mut report = std::mem::take(&mut self.report);
        report.micros.sort_unstable();
        let path = Path::new(&self.config.report).join(format!("latency-{}.json", self.task));
        match serde_json::to_vec(&report) {
            Ok(bytes) => {
                if let Err(e) = std::fs::write(&path, bytes) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("error: cannot encode the latency report: {e}"),
        }
    }
}

/// The default registry plus `bench_check` and `bench_sentences`.
fn registry() -> Registry {
    let mut registry = topo::default_registry();
    registry.bolt(
        "bench_check",
        "Benchmark: tallies final word counts and writes them with the process's peak RSS.",
        |_: &CheckConfig| Vec::new(),
        |c: CheckConfig| {
            Ok(Check {
                dir: PathBuf::from(c.report),
                worker: 0,
                task: 0,
                tally: Tally::default(),
            })
        },
    );
    registry.spout(
        "bench_sentences",
        "Benchmark: random_sentences at a fixed rate, timing every message from emit to ack.",
        |_: &TimedConfig| vec![StreamDecl::default_stream(["sentence"])],
        |config: TimedConfig| {
            if config.rate.is_nan() || config.rate <= 0.0 {
                return Err("`rate` must be positive".into());
            }
            Ok(Timed {
                config,
                vocab: vocabulary(),
                next: 0,
                step: 1,
                emitted: 0,
                started: None,
                in_flight: HashMap::new(),
                replay: Vec::new(),
                task: 0,
                report: LatencyReport::default(),
                line: String::new(),
            })
        },
    );
    registry
}

// ---------------------------------------------------------------------------------------
// A configuration and one run of it

/// An engine configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Config {
    workers: usize,
    acking: bool,
    /// `encrypt = true`: frames between workers sealed.
    encrypt: bool,
    /// `checkpoint_interval_secs = 1`: exactly-once state, a checkpoint every second.
    checkpoint: bool,
}

impl Config {
    const ALL: [Config; 7] = [
        Config::new(1, false, false),
        Config::new(1, true, false),
        Config::new(2, false, false),
        Config::new(2, true, false),
        Config::new(2, true, true),
        Config::new(2, false, false).checkpointed(),
        Config::new(2, true, false).checkpointed(),
    ];

    const fn new(workers: usize, acking: bool, encrypt: bool) -> Config {
        Config {
            workers,
            acking,
            encrypt,
            checkpoint: false,
        }
    }

    const fn checkpointed(self) -> Config {
        Config {
            checkpoint: true,
            ..self
        }
    }

    /// The same configuration without checkpoints.
    fn unchecked(self) -> Config {
        Config {
            checkpoint: false,
            ..self
        }
    }

    /// Short id for `TOPO_BENCH_ONLY`: `w1-off`, `w2-on`, `w2-on-sealed`, `w2-on-chk`, ...
    fn id(&self) -> String {
        let sealed = if self.encrypt { "-sealed" } else { "" };
        let chk = if self.checkpoint { "-chk" } else { "" };
        format!("w{}-{}{sealed}{chk}", self.workers, on_off(self.acking))
    }

    fn label(&self) -> String {
        let sealed = if self.encrypt { " encrypt=on" } else { "" };
        let chk = if self.checkpoint {
            " checkpoints=1s"
        } else {
            ""
        };
        format!(
            "workers={} acking={}{sealed}{chk}",
            self.workers,
            on_off(self.acking)
        )
    }

    /// The topology file of this configuration; `rate` > 0 makes it a latency run.
    fn toml(&self, sentences: u64, rate: f64, dir: &Path) -> String {
        let p = self.workers;
        let report = toml::Value::from(dir.display().to_string());
        let spout = if rate > 0.0 {
            format!("type = \"bench_sentences\"\ncount = {sentences}\nrate = {rate:.1}\nreport = {report}")
        } else {
            format!("type = \"random_sentences\"\ncount = {sentences}")
        };
        let chk = if self.checkpoint {
            let state = toml::Value::from(dir.join("state").display().to_string());
            format!("checkpoint_interval_secs = 1\nstate_dir = {state}\n")
        } else {
            String::new()
        };
        format!(
            "[topology]\nname = \"wordcount-bench\"\nworkers = {p}\nacking = {}\nencrypt = {}\n{chk}\n\
             [spouts.sentences]\n{spout}\nparallelism = {p}\n\n\
             [bolts.split]\ntype = \"split_words\"\nparallelism = {p}\ninputs = [\"sentences\"]\n\n\
             [bolts.count]\ntype = \"word_count\"\nemit = \"end\"\nparallelism = {p}\n\
             inputs = [{{ from = \"split\", fields = [\"word\"] }}]\n\n\
             [bolts.check]\ntype = \"bench_check\"\nreport = {report}\nparallelism = {p}\n\
             inputs = [{{ from = \"count\", fields = [\"word\"] }}]\n",
            self.acking, self.encrypt
        )
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// What a child reports on its stdout (one `RESULT {json}` line).
#[derive(Debug, Default, Serialize, Deserialize)]
struct ChildResult {
    secs: f64,
    tally: Tally,
    /// Peak RSS of each worker process that reported one: (worker, KiB).
    worker_rss_kib: Vec<(usize, u64)>,
    /// Complete latencies of a latency run, sorted (µs).
    #[serde(default)]
    latency_us: Vec<u32>,
    /// The engine's own complete latency of the spout (p50, p99 in ms), when it reports one.
    #[serde(default)]
    engine_latency_ms: Option<(f64, f64)>,
    failed: u64,
    errors: Vec<String>,
    /// A checkpointed run's checkpoints: (completed, duration p99 ms, bytes of the last).
    #[serde(default)]
    checkpoints: Option<(u64, f64, u64)>,
}

/// A finished child: its result, its peak RSS and its CPU time (user + system) from
/// `wait4`.
#[derive(Debug)]
struct Run {
    result: ChildResult,
    rss_kib: u64,
    cpu_secs: f64,
}

/// The child side: `__bench-child baseline N` or `__bench-child topology W A N RATE`.
fn child(args: &[String]) -> i32 {
    let result = match args {
        [kind, n] if kind == "baseline" => {
            n.parse().map_err(|e| format!("bad N {n}: {e}")).map(|n| {
                let t0 = Instant::now();
                let tally = baseline(n);
                ChildResult {
                    secs: t0.elapsed().as_secs_f64(),
                    tally,
                    ..ChildResult::default()
                }
            })
        }
        [kind, w, a, n, rate] if kind == "topology" => {
            match (w.parse(), a.parse(), n.parse(), rate.parse()) {
                (Ok(workers), Ok(acking), Ok(n), Ok(rate)) => {
                    run_in_process(Config::new(workers, acking, false), n, rate)
                }
                _ => Err(format!("bad child arguments {args:?}")),
            }
        }
        _ => Err(format!("bad child arguments {args:?}")),
    };
    support::report(result)
}

/// Runs the topology with every task in this process (one worker) and times it from the
/// start to the end of the last task.
fn run_in_process(config: Config, n: u64, rate: f64) -> Result<ChildResult, String> {
    let dir = report_dir()?;
    let registry = registry();
    let text = config.toml(n, rate, dir.path());
    let topology = topo_dsl::load(&text, &registry).map_err(|d| d.to_string())?;
    let t0 = Instant::now();
    let running = topo_engine::start(Arc::new(topology), &registry, Default::default())
        .map_err(|e| e.to_string())?;
    let summary = running.wait();
    let secs = t0.elapsed().as_secs_f64();
    let mut result = collect(dir.path())?;
    result.secs = secs;
    result.failed = summary.counts("sentences").failed;
    result.engine_latency_ms = summary
        .component("sentences")
        .and_then(|c| c.complete_latency)
        .map(|l| (l.p50_ms, l.p99_ms));
    result.errors = summary.errors;
    Ok(result)
}

/// Reads the `bench_check` and `bench_sentences` reports of a run.
fn collect(dir: &Path) -> Result<ChildResult, String> {
    let mut result = ChildResult::default();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            // A checkpointed run's state folder.
            continue;
        }
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("check-") {
            let r: CheckReport =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            result.tally.merge(&r.tally);
            match result
                .worker_rss_kib
                .iter_mut()
                .find(|(w, _)| *w == r.worker)
            {
                Some((_, kib)) => *kib = (*kib).max(r.vmhwm_kib),
                None => result.worker_rss_kib.push((r.worker, r.vmhwm_kib)),
            }
        } else if name.starts_with("latency-") {
            let r: LatencyReport =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            result.latency_us.extend(r.micros);
        }
    }
    result.worker_rss_kib.sort_unstable();
    result.latency_us.sort_unstable();
    Ok(result)
}

// ---------------------------------------------------------------------------------------
// The parent

/// Settings from the environment.
struct Plan {
    sentences: u64,
    reps: usize,
    configs: Vec<Config>,
    latency_secs: f64,
}

fn plan() -> Result<Plan, String> {
    let sentences = env_num("TOPO_BENCH_SENTENCES", 5_000_000u64)?;
    let reps = env_num("TOPO_BENCH_REPS", 3usize)?.max(1);
    let latency_secs = env_num("TOPO_BENCH_LATENCY_SECS", 3.0f64)?;
    let configs = match std::env::var("TOPO_BENCH_ONLY") {
        Ok(only) => {
            let wanted: Vec<&str> = only.split(',').map(str::trim).collect();
            for w in &wanted {
                if !Config::ALL.iter().any(|c| c.id() == *w) && *w != "baseline" {
                    return Err(format!(
                        "TOPO_BENCH_ONLY: unknown configuration `{w}` (known: baseline, w1-off, w1-on, w2-off, w2-on, w2-on-sealed, w2-off-chk, w2-on-chk)"
                    ));
                }
            }
            Config::ALL
                .into_iter()
                .filter(|c| wanted.contains(&c.id().as_str()))
                .collect()
        }
        Err(_) => Config::ALL.to_vec(),
    };
    Ok(Plan {
        sentences,
        reps,
        configs,
        latency_secs,
    })
}

/// Starts this binary with `args` and waits for it with `wait4`, for its peak RSS.
fn spawn(args: &[String]) -> Result<Run, String> {
    let (result, waited) = support::spawn_child(args)?;
    Ok(Run {
        result,
        rss_kib: waited.rss_kib,
        cpu_secs: waited.cpu_secs,
    })
}

/// Runs `config` once in a child; `rate` > 0 makes it a latency run.
fn run_config(config: Config, n: u64, rate: f64) -> Result<Run, String> {
    if config.workers == 1 {
        return spawn(&[
            CHILD.into(),
            "topology".into(),
            config.workers.to_string(),
            config.acking.to_string(),
            n.to_string(),
            rate.to_string(),
        ]);
    }
    run_cli(config, n, rate)
}

/// Runs `config` through `topo run` (this binary), which starts the workers itself.
/// Every worker's `bench_check` task reports its own `VmHWM`.
fn run_cli(config: Config, n: u64, rate: f64) -> Result<Run, String> {
    let dir = report_dir()?;
    let file = dir.path().join("wordcount.topo.toml");
    std::fs::write(&file, config.toml(n, rate, dir.path()))
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let (secs, waited, summary) = support::topo_run_json(&file)?;
    let mut result = collect(dir.path())?;
    result.secs = secs;
    let k = &summary["checkpoints"];
    if config.checkpoint {
        result.checkpoints = Some((
            k["completed"].as_u64().unwrap_or(0),
            k["duration"]["p99_ms"].as_f64().unwrap_or(f64::NAN),
            k["size_bytes"].as_u64().unwrap_or(0),
        ));
    }
    Ok(Run {
        result,
        rss_kib: waited.rss_kib,
        cpu_secs: waited.cpu_secs,
    })
}

/// Everything measured for one configuration.
#[derive(Default)]
struct Measured {
    words_per_sec: Vec<f64>,
    /// CPU nanoseconds (all threads, user + system) per word, per run.
    cpu_ns_per_word: Vec<f64>,
    /// Peak RSS per worker (MiB), max over the runs.
    rss_mib: Vec<(usize, f64)>,
    latency: Option<Latency>,
    errors: Vec<String>,
    /// Per run of a checkpointed configuration: (completed, duration p99 ms, bytes).
    checkpoints: Vec<(u64, f64, u64)>,
}

struct Latency {
    rate_words: f64,
    achieved_words: f64,
    samples: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    engine: Option<(f64, f64)>,
}

/// Checks a run against the reference; returns its words per second.
fn check(run: &Run, expect: &Tally, what: &str) -> Result<f64, String> {
    let r = &run.result;
    if !r.errors.is_empty() {
        return Err(format!("{what}: the run reported errors: {:?}", r.errors));
    }
    if r.tally != *expect {
        return Err(format!(
            "{what}: wrong counts: total {} distinct {} checksum {:016x}, expected total {} distinct {} checksum {:016x}",
            r.tally.total, r.tally.distinct, r.tally.checksum,
            expect.total, expect.distinct, expect.checksum
        ));
    }
    Ok(r.tally.total as f64 / r.secs)
}

fn rss_of(run: &Run, workers: usize) -> Vec<(usize, f64)> {
    if workers == 1 {
        // One process ran everything: its ru_maxrss.
        vec![(0, run.rss_kib as f64 / 1024.0)]
    } else {
        run.result
            .worker_rss_kib
            .iter()
            .map(|&(w, kib)| (w, kib as f64 / 1024.0))
            .collect()
    }
}

fn parent() -> i32 {
    let plan = match plan() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let n = plan.sentences;
    let expect = reference(n);
    if let Some(&(_, known)) = KNOWN.iter().find(|(k, _)| *k == n) {
        if expect.checksum != known || expect.total != 10 * n || expect.distinct != VOCABULARY {
            eprintln!(
                "error: the reference tally of {n} sentences is wrong: {:016x}, expected {known:016x}",
                expect.checksum
            );
            return 2;
        }
    }
    eprintln!(
        "wordcount: {n} sentences ({} words) per run, {} runs per configuration, reference checksum {:016x}",
        10 * n,
        plan.reps,
        expect.checksum,
    );

    let mut base = Measured::default();
    let mut measured: Vec<(Config, Measured)> = plan
        .configs
        .iter()
        .map(|&c| (c, Measured::default()))
        .collect();
    for rep in 1..=plan.reps {
        match spawn(&[CHILD.into(), "baseline".into(), n.to_string()])
            .and_then(|r| check(&r, &expect, "baseline").map(|w| (w, r)))
        {
            Ok((w, r)) => {
                eprintln!("  run {rep} baseline: {w:.0} words/s");
                base.words_per_sec.push(w);
                base.cpu_ns_per_word.push(cpu_ns(&r));
                merge_rss(&mut base.rss_mib, rss_of(&r, 1));
            }
            Err(e) => base.errors.push(e),
        }
        for (config, m) in &mut measured {
            let what = config.label();
            match run_config(*config, n, 0.0) {
                Ok(r) => match check(&r, &expect, &what) {
                    Ok(w) => {
                        eprintln!("  run {rep} {what}: {w:.0} words/s");
                        m.words_per_sec.push(w);
                        m.cpu_ns_per_word.push(cpu_ns(&r));
                        merge_rss(&mut m.rss_mib, rss_of(&r, config.workers));
                        m.checkpoints.extend(r.result.checkpoints);
                    }
                    Err(e) => m.errors.push(e),
                },
                Err(e) => m.errors.push(format!("{what}: {e}")),
            }
        }
    }

    // Latency at half of each acking configuration's median throughput.
    if plan.latency_secs > 0.0 {
        for (config, m) in &mut measured {
            let Some(s) = stats(m.words_per_sec.clone()) else {
                continue;
            };
            if !config.acking || config.checkpoint || !m.errors.is_empty() {
                continue;
            }
            let rate_words = s.median / 2.0;
            let rate = rate_words / 10.0;
            let count = ((rate * plan.latency_secs) as u64).max(1000);
            let what = format!("{} latency", config.label());
            match run_config(*config, count, rate) {
                Ok(r) => match check(&r, &reference(count), &what) {
                    Ok(w) => {
                        let l = &r.result.latency_us;
                        if r.result.failed > 0 || l.len() as u64 != count {
                            m.errors.push(format!(
                                "{what}: {} of {count} messages acked, {} failed",
                                l.len(),
                                r.result.failed
                            ));
                            continue;
                        }
                        let ms = |p| percentile(l, p) / 1000.0;
                        m.latency = Some(Latency {
                            rate_words,
                            achieved_words: w,
                            samples: l.len(),
                            p50_ms: ms(50.0),
                            p99_ms: ms(99.0),
                            max_ms: ms(100.0),
                            engine: r.result.engine_latency_ms,
                        });
                    }
                    Err(e) => m.errors.push(e),
                },
                Err(e) => m.errors.push(e),
            }
        }
    }

    report(&plan, &base, &measured)
}

/// CPU time per word counted, in nanoseconds.
fn cpu_ns(run: &Run) -> f64 {
    run.cpu_secs * 1e9 / run.result.tally.total.max(1) as f64
}

fn merge_rss(into: &mut Vec<(usize, f64)>, from: Vec<(usize, f64)>) {
    for (w, mib) in from {
        match into.iter_mut().find(|(x, _)| *x == w) {
            Some((_, m)) => *m = m.max(mib),
            None => into.push((w, mib)),
        }
    }
    into.sort_by_key(|(w, _)| *w);
}

fn report(plan: &Plan, base: &Measured, measured: &[(Config, Measured)]) -> i32 {
    let mut failed = false;
    let base_stats = stats(base.words_per_sec.clone());
    let rss_text = |rss: &[(usize, f64)]| {
        rss.iter()
            .map(|(_, m)| format!("{m:.1}"))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!();
    println!(
        "word count, {} sentences x 10 words, {} runs each (words/s at word_count, generator included)",
        plan.sentences, plan.reps
    );
    println!(
        "{:<24} {:>12} {:>12} {:>12} {:>7} {:>8} {:>14} {:>8} {:>8}",
        "configuration",
        "median",
        "min",
        "max",
        "ratio",
        "CPU ns/w",
        "RSS MiB/worker",
        "p50 ms",
        "p99 ms"
    );
    let row = |name: &str, s: &Stats, ratio: f64, m: &Measured| {
        let (p50, p99) = m
            .latency
            .as_ref()
            .map_or((String::from("-"), String::from("-")), |l| {
                (format!("{:.2}", l.p50_ms), format!("{:.2}", l.p99_ms))
            });
        let cpu = stats(m.cpu_ns_per_word.clone()).map_or(f64::NAN, |c| c.median);
        println!(
            "{name:<24} {:>12.0} {:>12.0} {:>12.0} {ratio:>7.3} {cpu:>8.1} {:>14} {p50:>8} {p99:>8}",
            s.median,
            s.min,
            s.max,
            rss_text(&m.rss_mib)
        );
    };
    if let Some(b) = &base_stats {
        row("baseline (plain loop)", b, 1.0, base);
    }
    for (config, m) in measured {
        match (stats(m.words_per_sec.clone()), &base_stats) {
            (Some(s), Some(b)) => row(&config.label(), &s, s.median / b.median, m),
            _ => println!("{:<24} no valid run", config.label()),
        }
    }
    for (config, m) in measured {
        if let Some(l) = &m.latency {
            let engine = l.engine.map_or(String::new(), |(p50, p99)| {
                format!("; the engine's histogram: p50 {p50:.2} ms, p99 {p99:.2} ms")
            });
            println!(
                "latency {}: {} messages at {:.0} words/s offered ({:.0} achieved): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (emit -> ack){engine}",
                config.label(),
                l.samples,
                l.rate_words,
                l.achieved_words,
                l.p50_ms,
                l.p99_ms,
                l.max_ms
            );
        }
    }
    for (config, m) in measured.iter().filter(|(c, _)| c.checkpoint) {
        let plain = measured
            .iter()
            .find(|(c, _)| *c == config.unchecked())
            .and_then(|(_, p)| stats(p.words_per_sec.clone()));
        let Some(s) = stats(m.words_per_sec.clone()) else {
            continue;
        };
        let ratio = plain.map_or(String::from("-"), |p| format!("{:.3}", s.median / p.median));
        let completed: Vec<String> = m.checkpoints.iter().map(|c| c.0.to_string()).collect();
        let p99 = stats(m.checkpoints.iter().map(|c| c.1).collect()).map_or(f64::NAN, |x| x.median);
        let bytes = stats(m.checkpoints.iter().map(|c| c.2 as f64).collect())
            .map_or(f64::NAN, |x| x.median);
        println!(
            "checkpoints {}: {ratio} x the throughput without; checkpoints per run {}; duration p99 {p99:.1} ms (median over runs); state {bytes:.0} bytes",
            config.label(),
            completed.join(", ")
        );
    }
    println!();
    if let Some(b) = &base_stats {
        println!(
            "BENCH wordcount baseline words_per_sec={:.0} rss_mib={}",
            b.median,
            max_rss(&base.rss_mib)
        );
    }
    for (config, m) in measured {
        let (Some(s), Some(b)) = (stats(m.words_per_sec.clone()), &base_stats) else {
            continue;
        };
        let mut line = format!(
            "BENCH wordcount {} words_per_sec={:.0} baseline_ratio={:.2} rss_mib={}",
            config.label(),
            s.median,
            s.median / b.median,
            max_rss(&m.rss_mib)
        );
        if let Some(l) = &m.latency {
            line.push_str(&format!(" p99_ms={:.1}", l.p99_ms));
        }
        println!("{line}");
    }
    for e in base
        .errors
        .iter()
        .chain(measured.iter().flat_map(|(_, m)| &m.errors))
    {
        failed = true;
        eprintln!("error: {e}");
    }
    if failed {
        1
    } else {
        0
    }
}

fn max_rss(rss: &[(usize, f64)]) -> String {
    let m = rss.iter().map(|(_, m)| *m).fold(0.0, f64::max);
    format!("{m:.1}")
}
