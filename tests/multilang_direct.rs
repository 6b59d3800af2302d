//! A multilang bolt that routes with direct emits, using the handshake's context to find
//! its targets' task ids; an emit to a task that does not subscribe is refused.

mod common;

use std::sync::{Arc, Mutex};

use common::strings;
use serde::Deserialize;
use topo::prelude::*;

/// Sends even numbers to the first `sink` task and odd ones to the second, on the direct
/// stream `to`; once, it also tries to send to its own task, which does not subscribe.
const ROUTER: &str = r#"

hs = read()
send({"pid": os.getpid()})
ctx = hs["context"]
assert ctx["stream->target->grouping"] == {"to": {"sink": {"type": "DIRECT"}}}, ctx
sinks = sorted(int(t) for t, c in ctx["task->component"].items() if c == "sink")
while True:
    t = read()
    if isinstance(t, list):
        continue
    if t["stream"] == "__heartbeat":
        send({"command": "sync"})
        continue
    n = t["tuple"][0]
    if n == 3 and not os.path.exists("strayed"):
        open("strayed", "w").close()
        send({"command": "emit", "stream": "to", "task": ctx["taskid"], "anchors": [t["id"]], "tuple": [n]})
        continue
    send({"command": "emit", "stream": "to", "task": sinks[n % 2], "anchors": [t["id"]], "tuple": [n]})
    send({"command": "ack", "id": t["id"]})
"#;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoConfig {}

type ByTask = Arc<Mutex<Vec<(TaskId, i64)>>>;

struct Keep {
    seen: ByTask,
    task: TaskId,
}

impl Bolt for Keep {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.task = ctx.task;
        Ok(())
    }
    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let n = input.get(0).and_then(Value::as_int).ok_or("an int")?;
        self.seen
            .lock()
            .map_err(|_| "poisoned")?
            .push((self.task, n));
        Ok(())
    }
}

#[test]
fn direct_emits_reach_the_named_task_and_a_stray_one_is_failed_and_replayed() {
    let (mut registry, _) = common::registry();
    let seen: ByTask = Arc::default();
    let keep = Arc::clone(&seen);
    registry.bolt(
        "keep_by_task",
        "Records (task, n).",
        |_: &NoConfig| Vec::new(),
        move |_: NoConfig| {
            Ok(Keep {
                seen: Arc::clone(&keep),
                task: 0,
            })
        },
    );
    let dir = tempfile::tempdir().expect("temp dir");
    common::write_python(&dir.path().join("router.py"), ROUTER);
    let mut outputs = toml::Table::new();
    outputs.insert("to".into(), strings(&["n"]));
    let topology = Topology::builder("direct")
        .spout("numbers", "sequence")
        .set("count", 8)
        .bolt("router", "multilang")
        .set("command", strings(&["python3", "router.py"]))
        .set("outputs", toml::Value::Table(outputs))
        .set("direct", strings(&["to"]))
        .shuffle("numbers")
        .bolt("sink", "keep_by_task")
        .parallelism(2)
        .direct("router", "to")
        .build(&registry)
        .expect("valid");
    let summary = common::run(topology, &registry, dir.path());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    let sinks = [3, 4]; // tasks: numbers 1, router 2, sink 3 and 4
    let mut got = seen.lock().expect("lock").clone();
    got.sort_by_key(|(_, n)| *n);
    let expect: Vec<(TaskId, i64)> = (0..8).map(|n| (sinks[(n % 2) as usize], n)).collect();
    assert_eq!(got, expect, "3 arrives once, after its replay");
    let spout = summary.counts("numbers");
    assert_eq!((spout.acked, spout.failed), (8, 1));
}
