//! A bolt's life besides `execute`: ticks every period, `wake` after a notify from
//! another thread, `finish` once every upstream task ended, then `cleanup`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::{numbers, recorder, run, Log, Seen};
use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::{
    Bolt, BoltOutput, Poll, Registry, Result, Spout, SpoutOutput, TaskContext, Tuple, Value,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// Idle until `until()` holds, then done.
struct IdleUntil(Box<dyn Fn() -> bool + Send>);

impl Spout for IdleUntil {
    fn next_tuple(&mut self, _out: &mut SpoutOutput<'_>) -> Result<Poll> {
        Ok(if (self.0)() { Poll::Done } else { Poll::Idle })
    }
}

fn idle_until(r: &mut Registry, until: impl Fn() -> bool + Send + Sync + Clone + 'static) {
    r.spout(
        "idle_until",
        "idle until a condition holds",
        |_: &NoConfig| vec![StreamDecl::default_stream(["x"])],
        move |_| Ok(IdleUntil(Box::new(until.clone()))),
    );
}

/// Emits the tick number on every tick.
struct Ticker(Arc<AtomicUsize>);

impl Bolt for Ticker {
    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }

    fn tick(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        out.emit([n]);
        Ok(())
    }
}

#[test]
fn a_bolt_with_tick_secs_ticks_until_the_topology_ends() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let seen = Seen::default();
    let mut r = Registry::new();
    let t = Arc::clone(&ticks);
    idle_until(&mut r, move || t.load(Ordering::SeqCst) >= 3);
    recorder(&mut r, "record", &seen);
    let t = Arc::clone(&ticks);
    r.bolt(
        "ticker",
        "counts ticks",
        |_: &NoConfig| vec![StreamDecl::default_stream(["tick"])],
        move |_| Ok(Ticker(Arc::clone(&t))),
    );
    let topology = Topology::builder("ticks")
        .spout("idle", "idle_until")
        .bolt("ticker", "ticker")
        .tick_secs(0.02)
        .shuffle("idle")
        .bolt("sink", "record")
        .shuffle("ticker")
        .build(&r)
        .unwrap();
    run(topology, &r);
    let n = ticks.load(Ordering::SeqCst);
    assert!(n >= 3, "{n} ticks");
    let got: Vec<i64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, v)| v[0].as_int().unwrap())
        .collect();
    assert_eq!(
        got,
        (1..=n as i64).collect::<Vec<_>>(),
        "every tick's emit arrived"
    );
}

/// Sums its inputs and emits the total when the stream ends.
#[derive(Default)]
struct Total(i64);

impl Bolt for Total {
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        self.0 += input.get(0).and_then(Value::as_int).unwrap_or(0);
        Ok(())
    }

    fn finish(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        out.emit([self.0]);
        Ok(())
    }
}

#[test]
fn finish_runs_once_after_every_upstream_task_ended_and_its_emits_arrive() {
    let log = Log::default();
    let seen = Seen::default();
    let mut r = Registry::new();
    numbers(&mut r, &log);
    recorder(&mut r, "record", &seen);
    r.bolt(
        "total",
        "sums",
        |_: &NoConfig| vec![StreamDecl::default_stream(["total"])],
        |_| Ok(Total::default()),
    );
    let t = Topology::builder("finish")
        .spout("numbers", "numbers")
        .parallelism(3)
        .set("count", 1000)
        .bolt("total", "total")
        .global("numbers")
        .bolt("sink", "record")
        .parallelism(2)
        .all("total")
        .build(&r)
        .unwrap();
    run(t, &r);
    let seen = seen.lock().unwrap();
    let totals: Vec<i64> = seen.iter().map(|(_, v)| v[0].as_int().unwrap()).collect();
    assert_eq!(totals, [499_500, 499_500], "one total per sink task");
}

/// Emits what a helper thread hands it, from `wake`.
struct Woken {
    inbox: Arc<Mutex<Vec<i64>>>,
}

impl Bolt for Woken {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        let inbox = Arc::clone(&self.inbox);
        let notifier = ctx.notifier.clone();
        std::thread::spawn(move || {
            inbox.lock().unwrap().push(42);
            notifier.notify();
        });
        Ok(())
    }

    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }

    fn wake(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        for x in self.inbox.lock().unwrap().drain(..) {
            out.emit([x]);
        }
        Ok(())
    }
}

#[test]
fn notify_from_another_thread_makes_the_bolt_wake_and_emit() {
    let seen = Seen::default();
    let mut r = Registry::new();
    let s = Arc::clone(&seen);
    idle_until(&mut r, move || !s.lock().unwrap().is_empty());
    recorder(&mut r, "record", &seen);
    r.bolt(
        "woken",
        "emits from wake",
        |_: &NoConfig| vec![StreamDecl::default_stream(["x"])],
        |_| {
            Ok(Woken {
                inbox: Arc::default(),
            })
        },
    );
    let t = Topology::builder("wake")
        .spout("idle", "idle_until")
        .bolt("woken", "woken")
        .shuffle("idle")
        .bolt("sink", "record")
        .shuffle("woken")
        .build(&r)
        .unwrap();
    run(t, &r);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1, [Value::Int(42)]);
}
