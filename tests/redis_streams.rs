//! Redis Streams in and out: sentences in a stream → `redis_stream` spout (a consumer
//! group, parallelism 2) → `split_words` → `redis_stream` sink, over two workers. Every
//! word arrives and nothing stays pending in the group — also when a worker is killed,
//! when entries sit pending at a consumer that never comes back (XAUTOCLAIM), and when
//! redis-server itself is killed and restarted mid-run.

mod redis_support;
mod workers_support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use redis_support::{pending, stream_values, xadd_many, RedisServer};
use workers_support::{row, wait_until, Topo};

/// The runs share two cores with the rest of the suite: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Every run's size: 200,000 sentences, 400,000 words.
const ENTRIES: usize = 200_000;

fn sentence(i: usize) -> String {
    format!("a{i} b{i}")
}

fn topology(dir: &Path, url: &str, acking: bool, spout_extra: &str) -> PathBuf {
    let file = dir.join("redis.topo.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "redis_wc"
workers = 2
acking = {acking}
message_timeout_secs = 10
max_spout_pending = 4000

[spouts.lines]
type = "redis_stream"
url = "{url}"
stream = "sentences"
group = "wc"
start = "0"
fields = ["sentence"]
parallelism = 2
stop_at_end = true
{spout_extra}

[bolts.split]
type = "split_words"
parallelism = 2
inputs = ["lines"]

[bolts.out]
type = "redis_stream"
url = "{url}"
stream = "words"
parallelism = 2
inputs = ["split"]
"#
        ),
    )
    .expect("write topology");
    file
}

/// One acceptance run: a redis-server of its own (AOF on) holding [`ENTRIES`] sentences
/// in stream `sentences`, and the topology file that reads them into stream `words`.
struct Run {
    redis: RedisServer,
    con: redis::Connection,
    dir: tempfile::TempDir,
    file: PathBuf,
    _one: MutexGuard<'static, ()>,
}

impl Run {
    /// Seeds a new server; `spout_extra` is added to the spout's table.
    fn new(acking: bool, spout_extra: &str) -> Run {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let redis = RedisServer::start();
        let mut con = redis.con();
        xadd_many(&mut con, "sentences", "sentence", ENTRIES, sentence);
        let dir = tempfile::tempdir().expect("temp dir");
        let file = topology(dir.path(), &redis.url(), acking, spout_extra);
        Run {
            redis,
            con,
            dir,
            file,
            _one: one,
        }
    }

    /// Starts `topo run` on the topology.
    fn start(&self) -> Topo {
        Topo::start(&self.file, self.dir.path(), &[])
    }

    /// Runs the topology to its end; returns its summary table, after checking it
    /// exited 0.
    fn run(&self) -> String {
        let (code, stdout, stderr) = self.start().wait();
        assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
        stdout
    }

    /// Waits until a quarter of the words arrived: the run is well under way.
    fn wait_under_way(&mut self, topo: &Topo) {
        let con = &mut self.con;
        wait_until(
            "a quarter of the words arrived",
            || topo.stderr(),
            || {
                redis::cmd("XLEN")
                    .arg("words")
                    .query::<usize>(con)
                    .unwrap_or(0)
                    >= ENTRIES / 2
            },
        );
    }

    /// Every word of every sentence is in `words`, and nothing is pending in the group;
    /// returns how many words `words` holds.
    fn assert_every_word(&mut self) -> usize {
        let got = stream_values(&mut self.con, "words", "word");
        let distinct: BTreeSet<&str> = got.iter().map(String::as_str).collect();
        let mut missing = Vec::new();
        for i in 0..ENTRIES {
            for w in sentence(i).split(' ') {
                if !distinct.contains(w) {
                    missing.push(w.to_string());
                }
            }
        }
        assert!(
            missing.is_empty(),
            "{} words never arrived, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        assert_eq!(pending(&mut self.con, "sentences", "wc"), 0);
        got.len()
    }
}

#[test]
fn every_word_arrives_and_nothing_stays_pending() {
    let mut run = Run::new(true, "");
    let stdout = run.run();
    let words = run.assert_every_word();
    assert!(words >= 2 * ENTRIES, "{words}");
    let (emitted, _, acked, _) = row(&stdout, "lines");
    assert!(
        emitted >= ENTRIES as u64 && acked >= ENTRIES as u64,
        "{stdout}"
    );
}

/// A worker is SIGKILLed mid-run (its spout task comes back under the same consumer
/// name and emits its pending entries again), and 1,000 entries are pending at a
/// consumer that never comes back: live consumers claim them after `claim_idle_ms`.
#[test]
fn a_killed_worker_and_a_dead_consumer_lose_nothing() {
    let mut run = Run::new(true, "claim_idle_ms = 500");
    let con = &mut run.con;
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("sentences")
        .arg("wc")
        .arg("0")
        .query(con)
        .expect("group");
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("wc")
        .arg("ghost")
        .arg("COUNT")
        .arg(1000)
        .arg("STREAMS")
        .arg("sentences")
        .arg(">")
        .query(con)
        .expect("the ghost reads");
    assert_eq!(pending(con, "sentences", "wc"), 1000);
    let topo = run.start();
    let workers = topo.wait_running(2);
    run.wait_under_way(&topo);
    let (victim, _) = workers[1];
    // SAFETY: kill(2) on a worker process this test's topo started.
    assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("Worker exited; restarting it."), "{stderr}");
    run.assert_every_word();
    let ghost: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg("sentences")
        .arg("wc")
        .arg("-")
        .arg("+")
        .arg(10)
        .arg("ghost")
        .query(&mut run.con)
        .expect("xpending");
    assert!(ghost.is_empty(), "the ghost's entries were claimed");
}

/// redis-server is SIGKILLed mid-run and started again on its AOF: the spout and the
/// sink reconnect, log the outage once each, and the run still delivers every word.
#[test]
fn redis_killed_and_restarted_mid_run_loses_nothing() {
    let mut run = Run::new(true, "");
    let topo = run.start();
    run.wait_under_way(&topo);
    run.redis.restart();
    run.con = run.redis.con();
    let (code, stdout, stderr) = topo.wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stderr.contains("Lost the connection to Redis"), "{stderr}");
    assert!(stderr.contains("Reconnected to Redis."), "{stderr}");
    run.assert_every_word();
}

/// With acking off the spout reads with NOACK: each entry once, nothing pending.
#[test]
fn acking_off_reads_every_entry_once() {
    let mut run = Run::new(false, "");
    let stdout = run.run();
    let words = run.assert_every_word();
    assert_eq!(words, 2 * ENTRIES, "each entry was read exactly once");
    let (emitted, _, _, _) = row(&stdout, "lines");
    assert_eq!(emitted, ENTRIES as u64, "{stdout}");
}

/// Nothing listens at the URL: the run stops at once, naming the component and the URL.
#[test]
fn an_unreachable_server_is_named_with_its_component() {
    let port = redis_support::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("temp dir");
    let file = topology(dir.path(), &url, true, "");
    let (code, stdout, stderr) = Topo::start(&file, dir.path(), &[]).wait();
    assert_ne!(code, 0, "{stdout}");
    let want = format!("`redis_stream` spout `lines` cannot connect to Redis at {url}: ");
    assert!(stderr.contains(&want), "{stderr}");
}

/// `topo validate` checks every key: a bad URL, an unknown key, `hset` without `field`.
#[test]
fn validate_checks_every_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.topo.toml");
    std::fs::write(
        &file,
        r#"
[topology]
name = "bad"

[spouts.lines]
type = "redis_stream"
url = "http://127.0.0.1:6379"
stream = "s"
group = "g"
fields = ["sentence"]
blok_ms = 5

[bolts.out]
type = "redis"
command = "hset"
key = "sentence"
value = "sentence"
inputs = ["lines"]
"#,
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("validate")
        .arg(&file)
        .output()
        .expect("topo validate runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`http://127.0.0.1:6379` is not a Redis URL"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown key \"blok_ms\""), "{stderr}");
    assert!(stderr.contains("`hset` needs `field`"), "{stderr}");
}

/// The `redis` sink: SET, HSET and INCRBY from input fields, acked once written.
#[test]
fn the_key_sink_sets_hashes_and_counts() {
    let redis = RedisServer::start();
    let mut con = redis.con();
    xadd_many(&mut con, "in", "sentence", 3, |i| {
        ["x y", "y z", "z z"][i].to_string()
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("keys.topo.toml");
    let url = redis.url();
    std::fs::write(
        &file,
        format!(
            r#"
[topology]
name = "keys"

[spouts.in]
type = "redis_stream"
url = "{url}"
stream = "in"
group = "g"
start = "0"
fields = ["sentence"]
with_id = true
stop_at_end = true

[bolts.split]
type = "split_words"
inputs = ["in"]

[bolts.count]
type = "redis"
url = "{url}"
command = "incrby"
key = "word"
key_prefix = "n:"
inputs = ["split"]

[bolts.last]
type = "redis"
url = "{url}"
command = "set"
key = "sentence"
value = "id"
inputs = ["in"]

[bolts.ids]
type = "redis"
url = "{url}"
command = "hset"
key = "sentence"
key_prefix = "h:"
field = "sentence"
value = "id"
inputs = ["in"]
"#
        ),
    )
    .expect("write");
    let (code, stdout, stderr) = Topo::start(&file, dir.path(), &[]).wait();
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
    let n = |k: &str, con: &mut redis::Connection| -> i64 {
        redis::cmd("GET").arg(k).query(con).expect(k)
    };
    assert_eq!(
        (n("n:x", &mut con), n("n:y", &mut con), n("n:z", &mut con)),
        (1, 2, 3)
    );
    let ids: Vec<String> = redis::cmd("XRANGE")
        .arg("in")
        .arg("-")
        .arg("+")
        .query::<Vec<(String, Vec<(String, String)>)>>(&mut con)
        .expect("xrange")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let set: String = redis::cmd("GET").arg("x y").query(&mut con).expect("set");
    assert_eq!(set, ids[0]);
    let h: String = redis::cmd("HGET")
        .arg("h:z z")
        .arg("z z")
        .query(&mut con)
        .expect("hset");
    assert_eq!(h, ids[2]);
    assert_eq!(pending(&mut con, "in", "g"), 0);
}
