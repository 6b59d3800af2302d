//! A multilang child that crashes or hangs mid-run: the topology keeps going, the
//! child is replaced, and the tuples it had are replayed.

mod common;

use common::strings;
use topo::prelude::*;

/// Passes `n` on, except that the first time it sees 7 it exits, and the first time it
/// sees 13 it stops reading (marker files make each happen once, across children).
const FLAKY: &str = r#"

def once(name):
    try:
        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False

hs = read()
send({"pid": os.getpid()})
while True:
    t = read()
    if isinstance(t, list):
        continue
    if t["stream"] == "__heartbeat":
        send({"command": "sync"})
        continue
    n = t["tuple"][0]
    if n == 7 and once("crashed"):
        os._exit(1)
    if n == 13 and once("hung"):
        threading.Event().wait()
    send({"command": "emit", "anchors": [t["id"]], "tuple": [n], "need_task_ids": False})
    send({"command": "ack", "id": t["id"]})
"#;

#[test]
fn a_crashing_and_a_hanging_child_are_replaced_and_their_tuples_replayed() {
    let (registry, seen) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    common::write_python(&dir.path().join("flaky.py"), FLAKY);
    let topology = Topology::builder("faults")
        .message_timeout_secs(60.0)
        .spout("numbers", "sequence")
        .set("count", 20)
        .bolt("flaky", "multilang")
        .set("command", strings(&["python3", "flaky.py"]))
        .set("outputs", strings(&["n"]))
        .set("heartbeat_secs", 0.1)
        .set("timeout_secs", 2.0)
        .shuffle("numbers")
        .bolt("sink", "record")
        .shuffle("flaky")
        .build(&registry)
        .expect("valid");
    let summary = common::run(topology, &registry, dir.path());
    let mut got: Vec<i64> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, v)| v[0].as_int().expect("int"))
        .collect();
    got.sort();
    assert_eq!(
        got,
        (0..20).collect::<Vec<_>>(),
        "every number exactly once"
    );
    assert!(dir.path().join("crashed").exists() && dir.path().join("hung").exists());
    let spout = summary.counts("numbers");
    assert_eq!(spout.acked, 20);
    assert!(spout.failed >= 2, "7 and 13 failed at least: {spout:?}");
    assert_eq!(
        spout.failed_by.timeout, 0,
        "failed by the bolt, not by timeouts"
    );
}

/// Emits 0..10 with ids and exits once all are acked; the first child to reach 5 stops
/// answering instead.
const HANGING_SPOUT: &str = r#"

read()
send({"pid": os.getpid()})
todo, pending = list(range(10)), set()
while True:
    cmd = read()
    if cmd["command"] == "next":
        if todo:
            n = todo.pop(0)
            if n == 5 and not os.path.exists("hung"):
                open("hung", "w").close()
                threading.Event().wait()
            pending.add(n)
            send({"command": "emit", "id": "n%d" % n, "tuple": [n], "need_task_ids": False})
        elif not pending:
            sys.exit(0)
    elif cmd["command"] == "ack":
        pending.discard(int(cmd["id"][1:]))
    elif cmd["command"] == "fail":
        n = int(cmd["id"][1:])
        pending.discard(n)
        todo.append(n)
    send({"command": "sync"})
"#;

#[test]
fn a_hanging_spout_child_is_replaced_and_the_topology_finishes() {
    let (registry, seen) = common::registry();
    let dir = tempfile::tempdir().expect("temp dir");
    common::write_python(&dir.path().join("spout.py"), HANGING_SPOUT);
    let topology = Topology::builder("spout_faults")
        .spout("numbers", "multilang_spout")
        .set("command", strings(&["python3", "spout.py"]))
        .set("outputs", strings(&["n"]))
        .set("timeout_secs", 1.0)
        .bolt("sink", "record")
        .shuffle("numbers")
        .build(&registry)
        .expect("valid");
    let summary = common::run(topology, &registry, dir.path());
    let mut got: Vec<i64> = seen
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, v)| v[0].as_int().expect("int"))
        .collect();
    got.sort();
    // The first child sent 0..4, hung, and was killed; its successor starts over.
    let mut expect: Vec<i64> = (0..10).chain(0..5).collect();
    expect.sort();
    assert_eq!(got, expect);
    assert_eq!(summary.counts("numbers").acked, 15);
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
}
