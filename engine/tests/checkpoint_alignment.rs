//! Barrier alignment: two spouts at very different rates feed one bolt, and every
//! committed checkpoint holds, for each spout, exactly the tuples it emitted before its
//! barrier — none after (the fast spout's later tuples were held while the slow spout's
//! barrier was on its way), none missing.
//!
//! And what a task holds while it aligns is bounded: behind a slow bolt, the checkpoint is
//! declined rather than the fast input buffered without end, and the run goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use topo_dsl::{StreamDecl, Topology};
use topo_engine::state::{Backend, CheckpointStore, LocalBackend, TaskState, TaskStateReader};
use topo_engine::{
    Bolt, BoltOutput, Poll, Registry, Result, RunOptions, RunSummary, Spout, SpoutOutput,
    TaskContext, Tuple, Value,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PacedConfig {
    /// Numbers to emit.
    count: u64,
    /// Microseconds between two numbers.
    every_us: u64,
}

/// Emits 0, 1, 2, ... at one number every `every_us` on average (what is due at each
/// call); its position is the next number.
struct Paced {
    config: PacedConfig,
    next: u64,
    started: Instant,
}

impl Spout for Paced {
    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        if self.next == self.config.count {
            return Ok(Poll::Done);
        }
        let due = (self.started.elapsed().as_micros() as u64 / self.config.every_us.max(1))
            .min(self.config.count);
        if due <= self.next {
            return Ok(Poll::Idle);
        }
        while self.next < due {
            out.emit([Value::Int(self.next as i64)]);
            self.next += 1;
        }
        Ok(Poll::Ready)
    }

    fn position(&mut self) -> Option<Vec<u8>> {
        Some(self.next.to_le_bytes().to_vec())
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        self.next = u64::from_le_bytes(position.try_into().map_err(|_| "bad position")?);
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

/// Counts the numbers of each source component, checking they come in order.
#[derive(Default)]
struct Tally {
    counts: BTreeMap<String, u64>,
}

impl Bolt for Tally {
    fn prepare(&mut self, _ctx: &TaskContext) -> Result<()> {
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let n = input.get(0).and_then(Value::as_int).ok_or("not a number")? as u64;
        let seen = self
            .counts
            .entry(input.source_component().to_string())
            .or_insert(0);
        if n != *seen {
            return Err(format!("{} came after {seen} numbers", n).into());
        }
        *seen += 1;
        Ok(())
    }

    fn snapshot(&mut self, state: &mut TaskState) -> Result<()> {
        state.put_task(&self.counts)?;
        Ok(())
    }

    fn restore(&mut self, state: &TaskStateReader) -> Result<()> {
        self.counts = state.task()?.unwrap_or_default();
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayConfig {
    /// Microseconds each tuple takes.
    takes_us: u64,
}

/// Passes each number on after `takes_us`: a slow bolt.
struct Relay {
    takes: Duration,
}

impl Bolt for Relay {
    fn prepare(&mut self, _ctx: &TaskContext) -> Result<()> {
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        std::thread::sleep(self.takes);
        out.emit(input.values().to_vec());
        Ok(())
    }
}

fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.spout(
        "paced",
        "Numbers at a pace.",
        |_: &PacedConfig| vec![StreamDecl::default_stream(["n"])],
        |config: PacedConfig| {
            Ok(Paced {
                config,
                next: 0,
                started: Instant::now(),
            })
        },
    );
    registry.rewinds("paced", |_: &PacedConfig| true);
    registry.bolt(
        "relay",
        "Passes numbers on, slowly.",
        |_: &RelayConfig| vec![StreamDecl::default_stream(["n"])],
        |config: RelayConfig| {
            Ok(Relay {
                takes: Duration::from_micros(config.takes_us),
            })
        },
    );
    registry.bolt(
        "tally",
        "Counts numbers per source.",
        |_: &NoConfig| Vec::new(),
        |_: NoConfig| Ok(Tally::default()),
    );
    registry
}

#[test]
fn no_tuple_after_a_barrier_is_in_its_checkpoint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = registry();
    // About two seconds each: 40,000 numbers at 20 kHz, 100 at 50 Hz.
    let topology = Topology::builder("aligned")
        .acking(false)
        .checkpoint_interval_secs(0.2)
        .state_dir("state")
        .spout("fast", "paced")
        .set("count", 40_000)
        .set("every_us", 50)
        .spout("slow", "paced")
        .set("count", 100)
        .set("every_us", 20_000)
        .bolt("tally", "tally")
        .shuffle("fast")
        .shuffle("slow")
        .build(&registry)
        .expect("valid topology");
    let summary = run(topology, &registry, dir.path());
    assert_eq!(summary.counts("tally").executed, 40_100, "{summary}");
    assert_eq!(summary.counts("tally").failed, 0, "in order: {summary}");
    let figures = summary.checkpoints.expect("checkpoint figures");
    assert!(figures.completed >= 2, "{figures:?}");
    assert_eq!(figures.failed, 0, "{figures:?}");

    every_checkpoint_holds_what_came_before_its_barriers(
        &dir.path().join("state"),
        &[("fast", "fast"), ("slow", "slow")],
    );
}

/// Runs `topology` in `dir` to its end (stopped after a minute) and returns its summary.
fn run(topology: Topology, registry: &Registry, dir: &std::path::Path) -> RunSummary {
    let options = RunOptions {
        base_dir: dir.to_path_buf(),
        ..RunOptions::default()
    };
    let running = topo_engine::start(Arc::new(topology), registry, options).expect("start");
    if !running.wait_timeout(Duration::from_secs(60)) {
        running.stop();
    }
    running.wait()
}

/// Checks each committed checkpoint in `state`: for each `(spout, via)`, the tally
/// counted, from component `via`, exactly the numbers the spout emitted before its
/// barrier.
fn every_checkpoint_holds_what_came_before_its_barriers(
    state: &std::path::Path,
    sources: &[(&str, &str)],
) {
    let backend = LocalBackend::open(state).expect("open the state");
    let store = CheckpointStore::new(Arc::new(backend.clone()));
    for id in backend.committed().expect("list") {
        let r = store.read(id).expect("a committed checkpoint verifies");
        let position = |spout: &str| {
            let p = r.reader(spout, 0, 1);
            u64::from_le_bytes(
                p.position()
                    .expect("a position")
                    .try_into()
                    .expect("8 bytes"),
            )
        };
        let counts: BTreeMap<String, u64> = r
            .reader("tally", 0, 1)
            .task()
            .expect("decode")
            .expect("the tally's state");
        for &(spout, via) in sources {
            let got = counts.get(via).copied().unwrap_or(0);
            assert_eq!(
                got,
                position(spout),
                "checkpoint {id}: the tally counted {got} numbers of `{spout}`, which emitted {} before its barrier",
                position(spout)
            );
        }
    }
}

#[test]
fn behind_a_slow_bolt_a_task_declines_the_checkpoint_rather_than_hold_without_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let registry = registry();
    // `slow` emits 8,000 numbers as fast as it may into a relay that takes half a
    // millisecond on each: the relay's barriers lag its full queue (4,096 numbers) by
    // two seconds, well within the checkpoint timeout, while `fast` sends ~100,000
    // numbers a second straight to the tally — more than it may hold while it waits for
    // the relay's barrier. (Once `slow` ended, no checkpoint starts: none may commit.)
    let topology = Topology::builder("declined")
        .acking(false)
        .checkpoint_interval_secs(0.2)
        .state_dir("state")
        .spout("fast", "paced")
        .set("count", 300_000)
        .set("every_us", 10)
        .spout("slow", "paced")
        .set("count", 8_000)
        .set("every_us", 1)
        .bolt("relay", "relay")
        .set("takes_us", 500)
        .shuffle("slow")
        .bolt("tally", "tally")
        .shuffle("fast")
        .shuffle("relay")
        .build(&registry)
        .expect("valid topology");
    let summary = run(topology, &registry, dir.path());
    assert_eq!(summary.counts("tally").executed, 308_000, "{summary}");
    assert_eq!(summary.counts("tally").failed, 0, "in order: {summary}");
    let figures = summary.checkpoints.expect("checkpoint figures");
    assert!(
        figures.failed >= 1,
        "no checkpoint was declined: {figures:?}"
    );
    every_checkpoint_holds_what_came_before_its_barriers(
        &dir.path().join("state"),
        &[("fast", "fast"), ("slow", "relay")],
    );
}
