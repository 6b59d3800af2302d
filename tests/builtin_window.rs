//! `window_aggregate`, run through the engine: event-time sliding windows over
//! out-of-order input with a lag (exact windows, late tuples on `late`), the running
//! (subtracting) and merging pane paths agreeing, count windows, config errors, a failed
//! result replaying its key's inputs of its window (acking on), and processing-time
//! windows on a clock the test moves.

mod common;

use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use topo::prelude::*;
use topo_bolts::window;
use topo_engine::window::Clock;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// Emits `(word, x, ts)` in this order (out of order in time).
const EVENTS: [(&str, i64, i64); 8] = [
    ("a", 1, 1),
    ("b", 2, 12),
    ("a", 3, 5),  // late: ts 12 moved the watermark to 7
    ("a", 4, 8),  // not late: 8 >= 7
    ("b", 5, 25), // watermark 20: [-10, 10) and [0, 20) fire
    ("a", 6, 18), // late
    ("a", 7, 21), // not late
    ("b", 8, 33), // watermark 28
];

struct Events(usize);

impl Spout for Events {
    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        let Some(&(w, x, ts)) = EVENTS.get(self.0) else {
            return Ok(Poll::Done);
        };
        out.emit_id(self.0 as u64, values![w, x, ts]);
        self.0 += 1;
        Ok(Poll::Ready)
    }
}

fn run_events(aggregates: &[&str]) -> (Vec<Vec<Value>>, Vec<Vec<Value>>) {
    let (mut registry, seen) = common::registry();
    registry.spout(
        "events",
        "fixed events",
        |_: &NoConfig| vec![StreamDecl::default_stream(["word", "x", "ts"])],
        |_| Ok(Events(0)),
    );
    let window: toml::Table = "length_secs = 0.02\nslide_secs = 0.01"
        .parse()
        .expect("toml");
    let topology = Topology::builder("windows")
        .acking(false)
        .spout("events", "events")
        .bolt("agg", "window_aggregate")
        .set("window", toml::Value::Table(window))
        .set("timestamp_field", "ts")
        .set("lag_secs", 0.005)
        .set("watermark_interval_secs", 0)
        .set("key", common::strings(&["word"]))
        .set("aggregates", common::strings(aggregates))
        .fields("events", ["word"])
        .bolt("sink", "record")
        .shuffle("agg")
        .stream("agg", "late", "shuffle")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = common::run(topology, &registry, dir.path());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let seen = seen.lock().expect("lock").clone();
    let late = seen
        .iter()
        .filter(|(f, _)| f == &["late_tuple"])
        .map(|(_, v)| v.clone())
        .collect();
    let mut windows: Vec<Vec<Value>> = seen
        .into_iter()
        .filter(|(f, _)| f != &["late_tuple"])
        .map(|(_, v)| v)
        .collect();
    // Windows fire in order; keys within a window in no particular order.
    windows.sort_by_key(|v| (v[1].as_int(), v[0].as_str().map(str::to_string)));
    (windows, late)
}

fn row(word: &str, start: i64, n: i64, total: i64, lo: i64, hi: i64, mean: f64) -> Vec<Value> {
    values![word, start, start + 20, n, total, lo, hi, mean].to_vec()
}

#[test]
fn event_time_sliding_aggregates_are_exact_and_late_tuples_go_to_late() {
    let (windows, late) = run_events(&[
        "count() as n",
        "sum(x) as total",
        "min(x) as lo",
        "max(x) as hi",
        "avg(x) as mean",
    ]);
    let expect = vec![
        row("a", -10, 2, 5, 1, 4, 2.5),
        row("a", 0, 2, 5, 1, 4, 2.5),
        row("b", 0, 1, 2, 2, 2, 2.0),
        row("a", 10, 1, 7, 7, 7, 7.0),
        row("b", 10, 2, 7, 2, 5, 3.5),
        row("a", 20, 1, 7, 7, 7, 7.0),
        row("b", 20, 2, 13, 5, 8, 6.5),
        row("b", 30, 1, 8, 8, 8, 8.0),
    ];
    assert_eq!(windows, expect);
    let list = |w: &str, x: i64, ts: i64| vec![Value::List(values![w, x, ts].to_vec())];
    assert_eq!(late, [list("a", 3, 5), list("a", 6, 18)]);
}

#[test]
fn the_running_window_agrees_with_merging_panes() {
    // Without min/max every aggregate subtracts: a running total per key.
    let (running, _) = run_events(&["count() as n", "sum(x) as total", "avg(x) as mean"]);
    let (merged, _) = run_events(&[
        "count() as n",
        "sum(x) as total",
        "avg(x) as mean",
        "max(x) as hi",
    ]);
    let cut: Vec<Vec<Value>> = merged
        .into_iter()
        .map(|mut v| {
            v.truncate(6);
            v
        })
        .collect();
    assert_eq!(running, cut);
    assert_eq!(running.len(), 8);
}

#[test]
fn count_windows_aggregate_the_last_tuples_every_slide() {
    let (registry, seen) = common::registry();
    let window: toml::Table = "length_count = 4\nslide_count = 2".parse().expect("toml");
    let topology = Topology::builder("counts")
        .acking(false)
        .spout("numbers", "sequence")
        .set("count", 9)
        .bolt("agg", "window_aggregate")
        .set("window", toml::Value::Table(window))
        .set(
            "aggregates",
            common::strings(&["count() as n", "sum(n) as total"]),
        )
        .shuffle("numbers")
        .bolt("sink", "record")
        .shuffle("agg")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = common::run(topology, &registry, dir.path());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let got: Vec<(i64, i64)> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(f, v)| {
            assert_eq!(f, &["window_start", "window_end", "n", "total"]);
            (v[2].as_int().expect("n"), v[3].as_int().expect("total"))
        })
        .collect();
    // 0 1 | 0 1 2 3 | 2 3 4 5 | 4 5 6 7; 8 is in a window that never fills.
    assert_eq!(got, [(2, 1), (4, 6), (4, 14), (4, 22)]);
}

#[test]
fn a_bad_window_is_a_validation_error() {
    let (registry, _) = common::registry();
    let window: toml::Table = "length_secs = 60\nslide_count = 5".parse().expect("toml");
    let err = Topology::builder("bad")
        .spout("numbers", "sequence")
        .bolt("agg", "window_aggregate")
        .set("window", toml::Value::Table(window))
        .set("aggregates", common::strings(&["median(n) as m"]))
        .shuffle("numbers")
        .build(&registry)
        .expect_err("invalid");
    let text = err.to_string();
    assert!(
        text.contains("`median(n) as m`: expected `FUNCTION(ARG) as NAME`, FUNCTION one of count, sum, min, max, avg"),
        "{text}"
    );
}

#[test]
fn random_sentences_with_timestamps_carry_their_index_as_event_time() {
    let (registry, seen) = common::registry();
    let topology = Topology::builder("ts")
        .spout("sentences", "random_sentences")
        .set("count", 3)
        .set("timestamp", true)
        .bolt("split", "split_words")
        .set("keep", common::strings(&["ts"]))
        .shuffle("sentences")
        .bolt("sink", "record")
        .shuffle("split")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    common::run(topology, &registry, dir.path());
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 30);
    let mut per_ts = [0; 3];
    for (f, v) in seen.iter() {
        assert_eq!(f, &["word", "ts"]);
        per_ts[usize::try_from(v[1].as_int().expect("ts")).expect("0..3")] += 1;
    }
    assert_eq!(per_ts, [10, 10, 10]);
}

/// Acked and failed message ids, as the spout saw them.
#[derive(Debug, Default)]
struct Acks {
    acked: Vec<u64>,
    failed: Vec<u64>,
}

/// Emits `(k, n)` for n = 0..6, k = "even" or "odd", message id n; emits again what
/// fails.
struct Keyed {
    next: u64,
    again: Vec<u64>,
    log: Arc<Mutex<Acks>>,
}

impl Spout for Keyed {
    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        let n = match self.again.pop() {
            Some(n) => n,
            None if self.next >= 6 => return Ok(Poll::Done),
            None => {
                self.next += 1;
                self.next - 1
            }
        };
        let k = if n % 2 == 0 { "even" } else { "odd" };
        out.emit_id(n, values![k, n as i64]);
        Ok(Poll::Ready)
    }

    fn ack(&mut self, id: MsgId) {
        self.log.lock().expect("lock").acked.push(id);
    }

    fn fail(&mut self, id: MsgId) {
        self.log.lock().expect("lock").failed.push(id);
        self.again.push(id);
    }
}

/// Fails the first result of key "even"; records the others.
struct FailFirstEven {
    seen: Arc<Mutex<Vec<Vec<Value>>>>,
    failed: bool,
}

impl Bolt for FailFirstEven {
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        if !self.failed && input.get(0).and_then(Value::as_str) == Some("even") {
            self.failed = true;
            return Err("failing the first even window".into());
        }
        self.seen
            .lock()
            .expect("lock")
            .push(input.values().to_vec());
        Ok(())
    }
}

#[test]
fn a_failed_result_replays_exactly_its_keys_inputs_of_that_window() {
    let mut registry = topo::default_registry();
    let log = Arc::new(Mutex::new(Acks::default()));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let l = Arc::clone(&log);
    registry.spout(
        "keyed",
        "(k, n) for n = 0..6",
        |_: &NoConfig| vec![StreamDecl::default_stream(["k", "n"])],
        move |_| {
            Ok(Keyed {
                next: 0,
                again: Vec::new(),
                log: Arc::clone(&l),
            })
        },
    );
    let s = Arc::clone(&seen);
    registry.bolt(
        "fail_first_even",
        "fails the first even result",
        |_: &NoConfig| Vec::new(),
        move |_| {
            Ok(FailFirstEven {
                seen: Arc::clone(&s),
                failed: false,
            })
        },
    );
    let window: toml::Table = "length_count = 4".parse().expect("toml");
    let topology = Topology::builder("replay")
        .acking(true)
        .spout("keyed", "keyed")
        .bolt("agg", "window_aggregate")
        .set("window", toml::Value::Table(window))
        .set("key", common::strings(&["k"]))
        .set(
            "aggregates",
            common::strings(&["count() as c", "sum(n) as total"]),
        )
        .shuffle("keyed")
        .bolt("sink", "fail_first_even")
        .shuffle("agg")
        .build(&registry)
        .expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let summary = common::run(topology, &registry, dir.path());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let log = log.lock().expect("lock");
    let mut failed = log.failed.clone();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [0, 2],
        "the failed result counted 0 and 2, and only them"
    );
    let mut acked = log.acked.clone();
    acked.sort_unstable();
    assert_eq!(acked, [0, 1, 2, 3, 4, 5]);
    // 0 1 2 3 | 4 5 and the replayed 0 2, in some order.
    let mut got: Vec<(String, i64, i64)> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|v| {
            (
                v[0].as_str().expect("k").to_string(),
                v[3].as_int().expect("c"),
                v[4].as_int().expect("total"),
            )
        })
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("even".to_string(), 3, 6),
            ("odd".to_string(), 1, 5),
            ("odd".to_string(), 2, 4)
        ]
    );
}

/// Emits the tuples the test sends; ends when the test sends `None`.
struct Feed(Arc<Mutex<mpsc::Receiver<Option<Values>>>>);

impl Spout for Feed {
    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        match self.0.lock().expect("lock").try_recv() {
            Ok(Some(v)) => {
                out.emit(v);
                Ok(Poll::Ready)
            }
            Ok(None) | Err(mpsc::TryRecvError::Disconnected) => Ok(Poll::Done),
            Err(mpsc::TryRecvError::Empty) => Ok(Poll::Idle),
        }
    }
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn processing_time_windows_fire_when_the_clock_passes_their_end() {
    let (mut registry, seen) = common::registry();
    let clock = Clock::manual(100);
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    registry.spout(
        "feed",
        "what the test sends",
        |_: &NoConfig| vec![StreamDecl::default_stream(["word"])],
        move |_| Ok(Feed(Arc::clone(&rx))),
    );
    let c = clock.clone();
    registry.bolt(
        "window_aggregate_on_clock",
        "window_aggregate on the test's clock",
        |c: &window::Config| c.outputs(),
        move |config: window::Config| Ok(window::WindowAggregate::with_clock(config, c.clone())),
    );
    let window: toml::Table = "length_secs = 1".parse().expect("toml");
    let topology = Topology::builder("processing-time")
        .acking(false)
        .spout("feed", "feed")
        .bolt("agg", "window_aggregate_on_clock")
        .set("window", toml::Value::Table(window))
        .set("watermark_interval_secs", 0.005)
        .set("key", common::strings(&["word"]))
        .set("aggregates", common::strings(&["count() as n"]))
        .shuffle("feed")
        .bolt("sink", "record")
        .shuffle("agg")
        .build(&registry)
        .expect("valid");
    let running =
        topo_engine::start(Arc::new(topology), &registry, Default::default()).expect("start");
    let results = || -> Vec<(String, i64, i64)> {
        let mut r: Vec<(String, i64, i64)> = seen
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, v)| {
                (
                    v[0].as_str().expect("word").to_string(),
                    v[1].as_int().expect("start"),
                    v[3].as_int().expect("n"),
                )
            })
            .collect();
        r.sort_by_key(|(w, start, _)| (*start, w.clone()));
        r
    };
    for w in ["a", "b", "a"] {
        tx.send(Some(values![w])).expect("send");
    }
    wait_for("three words at 100 ms", || {
        running.component_counts("agg").executed >= 3
    });
    assert!(results().is_empty(), "[0, 1000) is still open");
    clock.set(1500);
    tx.send(Some(values!["b"])).expect("send");
    wait_for("the first window", || results().len() == 2);
    let first = vec![("a".to_string(), 0, 2), ("b".to_string(), 0, 1)];
    assert_eq!(results(), first);
    clock.set(2000);
    wait_for("a tick to fire the second window", || results().len() == 3);
    tx.send(None).expect("send");
    let summary = running.wait();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let mut all = first;
    all.push(("b".to_string(), 1000, 1));
    assert_eq!(results(), all);
}

#[test]
fn event_time_windows_fire_when_a_tuple_opens_a_newer_pane_without_waiting_for_the_interval() {
    let (mut registry, seen) = common::registry();
    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    registry.spout(
        "feed",
        "what the test sends",
        |_: &NoConfig| vec![StreamDecl::default_stream(["word", "ts"])],
        move |_| Ok(Feed(Arc::clone(&rx))),
    );
    let window: toml::Table = "length_secs = 0.01".parse().expect("toml");
    let topology = Topology::builder("newer-pane")
        .acking(false)
        .spout("feed", "feed")
        .bolt("agg", "window_aggregate")
        .set("window", toml::Value::Table(window))
        .set("timestamp_field", "ts")
        .set("watermark_interval_secs", 3600)
        .set("key", common::strings(&["word"]))
        .set("aggregates", common::strings(&["count() as n"]))
        .shuffle("feed")
        .bolt("sink", "record")
        .shuffle("agg")
        .build(&registry)
        .expect("valid");
    let running =
        topo_engine::start(Arc::new(topology), &registry, Default::default()).expect("start");
    let results = || -> Vec<(String, i64, i64)> {
        seen.lock()
            .expect("lock")
            .iter()
            .map(|(_, v)| {
                (
                    v[0].as_str().expect("word").to_string(),
                    v[1].as_int().expect("start"),
                    v[3].as_int().expect("n"),
                )
            })
            .collect()
    };
    tx.send(Some(values!["a", 1i64])).expect("send");
    tx.send(Some(values!["a", 5i64])).expect("send");
    wait_for("two tuples in [0, 10)", || {
        running.component_counts("agg").executed >= 2
    });
    assert!(results().is_empty(), "[0, 10) is still open");
    // A tuple in [20, 30): the watermark passes 10, with an hour to the next interval.
    tx.send(Some(values!["b", 25i64])).expect("send");
    wait_for("[0, 10) to fire", || !results().is_empty());
    assert_eq!(results(), [("a".to_string(), 0, 2)]);
    tx.send(None).expect("send");
    let summary = running.wait();
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(
        results(),
        [("a".to_string(), 0, 2), ("b".to_string(), 20, 1)]
    );
}
