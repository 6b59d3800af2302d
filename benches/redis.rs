//! `cargo bench --bench redis`: the `redis_stream` spout and sink against
//! `redis-benchmark`'s pipelined XADD, measured in the same run on the same server.
//!
//! # Layout
//! - a `redis-server` of its own (free loopback port, temporary folder, no persistence),
//!   stopped when the bench ends;
//! - each repetition, on fresh keys: `redis-benchmark -P 64 -n N XADD bench<r> * sentence
//!   <text>` (50 clients, 64 commands in flight each), the server's pipelined write rate and
//!   the yardstick, which also fills the stream the spout then reads; the spout:
//!   `redis_stream` (acking on, one task) → `bench_count`, a bolt that counts its inputs,
//!   in this process (one worker), timed from start to the end of the run; the sink:
//!   `sequence` (N) → `redis_stream` sink (XADD), every tuple acked once Redis confirmed
//!   it, timed the same way; and the same spout in a topology checkpointed every second
//!   (state in a temporary folder), which reads by position instead of through the group.
//!   Each run is checked: the bolt counted N, the spout acked N, nothing is pending in
//!   the group, the sink's stream holds N entries;
//! - a table of medians (and min–max) and one `BENCH redis …` line.
//!
//! # Environment
//! - `TOPO_BENCH_REDIS_ENTRIES` (default 1,000,000): entries per run;
//! - `TOPO_BENCH_REPS` (default 3): repetitions;
//! - `TOPO_BENCH_REDIS_BATCH` (default: the spout's default): the spout's `batch`.

#[path = "../tests/redis_support/mod.rs"]
mod redis_support;
mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{env_num, stats};
use topo::prelude::*;

const SENTENCE: &str = "the quick brown fox jumps over the lazy dog";

/// Counts its inputs into a shared total.
struct Count(Arc<AtomicU64>);

impl Bolt for Count {
    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> topo_engine::Result<()> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn registry(total: Arc<AtomicU64>) -> Registry {
    let mut registry = topo::default_registry();
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoConfig {}
    registry.bolt(
        "bench_count",
        "Counts its inputs.",
        |_: &NoConfig| Vec::new(),
        move |_: NoConfig| Ok(Count(Arc::clone(&total))),
    );
    registry
}

/// Runs `topology` to its end in this process; how long it took.
fn run(topology: Topology, registry: &Registry) -> Result<(f64, topo_engine::RunSummary), String> {
    let start = Instant::now();
    let running = topo_engine::start(
        Arc::new(topology),
        registry,
        topo_engine::RunOptions::default(),
    )
    .map_err(|e| format!("cannot start the topology: {e}"))?;
    if !running.wait_timeout(Duration::from_secs(600)) {
        running.stop();
        return Err("the run did not end in 10 minutes".into());
    }
    let summary = running.wait();
    Ok((start.elapsed().as_secs_f64(), summary))
}

fn xlen(con: &mut redis::Connection, key: &str) -> Result<u64, String> {
    redis::cmd("XLEN")
        .arg(key)
        .query(con)
        .map_err(|e| format!("XLEN {key}: {e}"))
}

fn del(con: &mut redis::Connection, key: &str) -> Result<(), String> {
    redis::cmd("DEL")
        .arg(key)
        .query::<u64>(con)
        .map(drop)
        .map_err(|e| format!("DEL {key}: {e}"))
}

/// `redis-benchmark`'s pipelined XADD of `n` entries to `key`: entries per second.
fn redis_benchmark(port: u16, key: &str, n: u64) -> Result<f64, String> {
    let out = Command::new("redis-benchmark")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-P",
            "64",
            "--csv",
        ])
        .args(["-n", &n.to_string()])
        .args(["XADD", key, "*", "sentence", SENTENCE])
        .output()
        .map_err(|e| format!("cannot run redis-benchmark ({e}): apt-get install redis-tools"))?;
    let csv = String::from_utf8_lossy(&out.stdout);
    csv.lines()
        .filter_map(|l| l.split(',').nth(1))
        .filter_map(|v| v.trim_matches('"').parse().ok())
        .next_back()
        .ok_or_else(|| format!("no rate in redis-benchmark's output: {csv}"))
}

/// One repetition's rates: (redis-benchmark XADD, spout, checkpointed spout, sink), per
/// second.
fn once(
    server: &redis_support::RedisServer,
    rep: u32,
    n: u64,
    batch: Option<i64>,
) -> Result<(f64, f64, f64, f64), String> {
    let port: u16 = server
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or("no port in the server's URL")?;
    let mut con = server.con();
    let stream = format!("bench{rep}");
    let xadd = redis_benchmark(port, &stream, n)?;
    let len = xlen(&mut con, &stream)?;
    if len != n {
        return Err(format!("redis-benchmark wrote {len} entries, not {n}"));
    }

    // The spout reads those entries, acking on, into a counting bolt: as a consumer
    // group, then checkpointed (reading by position).
    let spout_rate = read_rate(server, &stream, n, batch, None)?;
    let state = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    let rewinding_rate = read_rate(server, &stream, n, batch, Some(state.path()))?;
    del(&mut con, &stream)?;

    // The sink writes N tuples.
    let url = server.url();
    let reg = registry(Arc::new(AtomicU64::new(0)));
    let out = format!("out{rep}");
    let sink = Topology::builder("redis_bench_sink")
        .acking(true)
        .max_spout_pending(8192)
        .spout("numbers", "sequence")
        .set("count", n as i64)
        .bolt("out", "redis_stream")
        .set("url", url.as_str())
        .set("stream", out.as_str())
        .shuffle("numbers")
        .build(&reg)
        .map_err(|e| format!("{e:?}"))?;
    let (secs, summary) = run(sink, &reg)?;
    let len = xlen(&mut con, &out)?;
    let acked = summary.counts("numbers").acked;
    if len != n || acked != n {
        return Err(format!(
            "sink run: {len} entries written, {acked} acked; want {n} and {n}"
        ));
    }
    del(&mut con, &out)?;
    Ok((xadd, spout_rate, rewinding_rate, n as f64 / secs))
}

/// Reads the `n` entries of `stream` with the spout (acking on, one task) into a
/// counting bolt and checks them; with `state`, in a topology checkpointed every second
/// into that folder. Returns entries per second.
fn read_rate(
    server: &redis_support::RedisServer,
    stream: &str,
    n: u64,
    batch: Option<i64>,
    state: Option<&std::path::Path>,
) -> Result<f64, String> {
    let total = Arc::new(AtomicU64::new(0));
    let reg = registry(Arc::clone(&total));
    let url = server.url();
    let mut builder = Topology::builder("redis_bench_spout")
        .acking(true)
        .max_spout_pending(8192);
    if let Some(dir) = state {
        builder = builder
            .checkpoint_interval_secs(1.0)
            .state_dir(dir.display().to_string());
    }
    let mut spout = builder
        .spout("in", "redis_stream")
        .set("url", url.as_str())
        .set("stream", stream)
        .set("group", "bench")
        .set("start", "0")
        .set("fields", toml::Value::Array(vec!["sentence".into()]))
        .set("stop_at_end", true);
    if let Some(b) = batch {
        spout = spout.set("batch", b);
    }
    let spout = spout
        .bolt("count", "bench_count")
        .shuffle("in")
        .build(&reg)
        .map_err(|e| format!("{e:?}"))?;
    let (secs, summary) = run(spout, &reg)?;
    let counted = total.load(Ordering::Relaxed);
    let acked = summary.counts("in").acked;
    let pending = match state {
        Some(_) => 0,
        None => redis_support::pending(&mut server.con(), stream, "bench"),
    };
    if counted != n || acked != n || pending != 0 {
        return Err(format!(
            "spout run: counted {counted}, acked {acked}, {pending} pending; want {n}, {n}, 0"
        ));
    }
    Ok(n as f64 / secs)
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Err(e) = bench() {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
}

fn bench() -> Result<(), String> {
    let n: u64 = env_num("TOPO_BENCH_REDIS_ENTRIES", 1_000_000)?;
    let reps: u32 = env_num("TOPO_BENCH_REPS", 3)?;
    let batch: i64 = env_num("TOPO_BENCH_REDIS_BATCH", 0)?;
    let batch = (batch > 0).then_some(batch);
    let server = redis_support::RedisServer::start_with(&["--appendonly", "no"]);
    let (mut xadd, mut spout, mut rewinding, mut sink) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps.max(1) {
        let (x, p, r, k) = once(&server, rep, n, batch)?;
        eprintln!(
            "run {}: redis-benchmark XADD {x:.0}/s, spout {p:.0}/s, checkpointed spout {r:.0}/s, sink {k:.0}/s",
            rep + 1
        );
        xadd.push(x);
        spout.push(p);
        rewinding.push(r);
        sink.push(k);
    }
    let (x, p, r, k) = (
        stats(xadd).ok_or("no runs")?,
        stats(spout).ok_or("no runs")?,
        stats(rewinding).ok_or("no runs")?,
        stats(sink).ok_or("no runs")?,
    );
    println!("{n} entries, {reps} runs; medians (min-max), per second");
    println!(
        "redis-benchmark -P 64 XADD   {:>10.0}  ({:.0}-{:.0})",
        x.median, x.min, x.max
    );
    println!(
        "redis_stream spout, acking   {:>10.0}  ({:.0}-{:.0})  {:.0} % of XADD (goal: 50 %)",
        p.median,
        p.min,
        p.max,
        100.0 * p.median / x.median
    );
    println!(
        "redis_stream spout, checkpointed {:>6.0}  ({:.0}-{:.0})  {:.0} % of XADD",
        r.median,
        r.min,
        r.max,
        100.0 * r.median / x.median
    );
    println!(
        "redis_stream sink (XADD)     {:>10.0}  ({:.0}-{:.0})  {:.0} % of XADD",
        k.median,
        k.min,
        k.max,
        100.0 * k.median / x.median
    );
    println!(
        "BENCH redis entries={n} xadd={:.0} spout={:.0} checkpointed_spout={:.0} sink={:.0} spout_ratio={:.2}",
        x.median,
        p.median,
        r.median,
        k.median,
        p.median / x.median
    );
    Ok(())
}
