//! The bolt side driven against real Python children (standard library only).

use std::sync::mpsc::Receiver;

use topo_dsl::{parse_config, StreamDecl};
use topo_engine::{StreamInfo, Values};

use super::*;

/// A stdlib-only multilang bolt: upper-cases `word`, then emits the task ids its first
/// emit went to, then acks; `fail` fails, `crash` exits, `hang` stops answering, `stale`
/// acks and then emits anchored to what it acked, `big` emits a 4 KiB word.
/// (After [`crate::PYTHON_PRELUDE`].)
const ECHO: &str = r#"
hs = read()
open(os.path.join(hs["pidDir"], str(os.getpid())), "w").close()
send({"pid": os.getpid()})
send({"command": "log", "msg": "hello from " + hs["context"]["componentid"], "level": 3})
while True:
    t = read()
    if t["stream"] == "__heartbeat":
        send({"command": "sync"})
        continue
    if t["stream"] == "__tick":
        send({"command": "emit", "tuple": ["tick %s" % t["tuple"][0]], "need_task_ids": False})
        send({"command": "ack", "id": t["id"]})
        continue
    word = t["tuple"][0]
    if word == "crash":
        sys.exit(3)
    if word == "hang":
        threading.Event().wait()
    if word == "fail":
        send({"command": "fail", "id": t["id"]})
        continue
    if word == "stale":
        send({"command": "ack", "id": t["id"]})
        send({"command": "emit", "anchors": [t["id"]], "tuple": ["late"], "need_task_ids": False})
        continue
    if word == "big":
        send({"command": "emit", "anchors": [t["id"]], "tuple": ["x" * 4096], "need_task_ids": False})
        continue
    send({"command": "emit", "anchors": [t["id"]], "tuple": [word.upper()]})
    ids = read_ids()
    send({"command": "emit", "anchors": [t["id"]], "tuple": [json.dumps(ids)], "need_task_ids": False})
    send({"command": "emit", "stream": "nope", "tuple": [1]})
    send({"command": "ack", "id": t["id"]})
"#;

#[derive(Debug, Default)]
struct Recorder {
    emits: Vec<(Vec<String>, String, Values)>,
    acked: Vec<String>,
    failed: Vec<String>,
}

fn first(t: &Tuple) -> String {
    t.get(0).map(|v| v.to_string()).unwrap_or_default()
}

impl Collector for Recorder {
    fn emit(
        &mut self,
        anchors: &[&Tuple],
        stream: &str,
        _direct: Option<TaskId>,
        values: Values,
    ) -> Vec<TaskId> {
        self.emits.push((
            anchors.iter().map(|t| first(t)).collect(),
            stream.into(),
            values,
        ));
        vec![4, 6]
    }
    fn ack(&mut self, t: &Tuple) {
        self.acked.push(first(t));
    }
    fn fail(&mut self, t: &Tuple) {
        self.failed.push(first(t));
    }
}

struct Harness {
    core: BoltCore,
    woken: Receiver<()>,
    rec: Recorder,
    _dir: tempfile::TempDir,
}

fn harness(extra: &str) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("echo.py"),
        format!("{}\n{ECHO}", crate::PYTHON_PRELUDE),
    )
    .expect("script");
    let table: toml::Table = format!(
        "command = ['python3', 'echo.py']\noutputs = {{ default = ['word'], other = ['a', 'b'] }}\n{extra}"
    )
    .parse()
    .expect("toml");
    let config: Config = parse_config(&table).expect("config");
    let setup = Setup {
        component: "split".into(),
        task: 5,
        dir: dir.path().to_path_buf(),
        conf: json!({"topology.name": "t"}),
        context: json!({"taskid": 5, "componentid": "split"}),
        direct_targets: Default::default(),
    };
    let (tx, woken) = mpsc::channel();
    let wake: Wake = Arc::new(move || {
        let _ = tx.send(());
    });
    let mut core = BoltCore::new(config, setup, wake);
    core.start().expect("start");
    Harness {
        core,
        woken,
        rec: Recorder::default(),
        _dir: dir,
    }
}

impl Harness {
    fn send(&mut self, word: &str) {
        let info = StreamInfo::intern("spout", "default", &["word".to_string()]);
        self.core
            .send_tuple(&Tuple::new(info, 1, [word]))
            .expect("send");
    }

    /// Handles the child's messages until `done` holds; fails after 20 s of silence.
    fn until(&mut self, done: impl Fn(&Recorder) -> bool) {
        loop {
            self.core.pump(&mut self.rec);
            if done(&self.rec) {
                return;
            }
            self.woken
                .recv_timeout(Duration::from_secs(20))
                .expect("the child went silent");
        }
    }
}

#[test]
fn emits_are_anchored_answered_with_task_ids_and_acks_arrive() {
    let mut h = harness("");
    h.send("ka");
    h.send("fail");
    h.until(|r| r.acked.len() + r.failed.len() == 2);
    assert_eq!(
        h.rec.emits,
        [
            (vec!["ka".into()], "default".into(), Values::from(["KA"])),
            (
                vec!["ka".into()],
                "default".into(),
                Values::from(["[4, 6]"])
            ),
        ],
        "the undeclared stream `nope` is refused"
    );
    assert_eq!(
        (h.rec.acked.as_slice(), h.rec.failed.as_slice()),
        (&["ka".to_string()][..], &["fail".to_string()][..])
    );
    assert_eq!(h.core.in_flight(), 0);
}

#[test]
fn a_tick_reaches_the_child_and_its_ack_is_not_a_tuple() {
    let mut h = harness("");
    h.core.send_tick(2.0).expect("tick");
    h.until(|r| !r.emits.is_empty());
    assert_eq!(h.rec.emits[0].2, Values::from(["tick 2.0"]));
    h.send("lo");
    h.until(|r| r.acked.len() == 1);
    assert!(h.rec.failed.is_empty());
}

#[test]
fn a_crashed_child_fails_its_tuples_and_is_started_again() {
    let mut h = harness("");
    let first_pid = h.core.pid();
    h.send("crash");
    h.until(|r| r.failed.len() == 1);
    assert_eq!(h.rec.failed, ["crash"]);
    assert_eq!(h.core.pid(), None);
    h.send("mi");
    assert_ne!(h.core.pid(), first_pid);
    h.until(|r| r.acked.len() == 1);
    assert_eq!(
        (h.rec.acked.as_slice(), h.core.starts),
        (&["mi".to_string()][..], 2)
    );
}

#[test]
fn a_hung_child_is_killed_by_the_heartbeat_and_its_tuples_fail() {
    let mut h = harness("heartbeat_secs = 0.1\ntimeout_secs = 3");
    let pid = h.core.pid().expect("running");
    h.send("nu");
    h.send("hang");
    h.send("pe");
    h.until(|r| r.failed.len() == 2);
    assert_eq!(h.rec.acked, ["nu"]);
    assert_eq!(h.rec.failed, ["hang", "pe"]);
    assert_eq!(h.core.pid(), None);
    // The process group is gone.
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(!alive, "the hung child {pid} still runs");
    h.send("ra");
    h.until(|r| r.acked.len() == 2);
}

#[test]
fn a_child_that_cannot_start_is_named_in_the_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table: toml::Table = "command = ['./nope.sh']".parse().expect("toml");
    let config: Config = parse_config(&table).expect("config");
    let setup = Setup {
        component: "x".into(),
        task: 1,
        dir: dir.path().to_path_buf(),
        conf: json!({}),
        context: json!({}),
        direct_targets: Default::default(),
    };
    let mut core = BoltCore::new(config, setup, Arc::new(|| {}));
    let err = core.start().expect_err("no such program").to_string();
    assert_eq!(
        err,
        format!(
            "cannot start `./nope.sh` in `{}`: No such file or directory (os error 2)",
            dir.path().display()
        )
    );
}

#[test]
fn a_child_that_exits_in_the_handshake_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    let table: toml::Table = "command = ['python3', '-c', 'import sys; sys.exit(4)']"
        .parse()
        .expect("toml");
    let config: Config = parse_config(&table).expect("config");
    let setup = Setup {
        component: "x".into(),
        task: 1,
        dir: dir.path().to_path_buf(),
        conf: json!({}),
        context: json!({}),
        direct_targets: Default::default(),
    };
    let mut core = BoltCore::new(config, setup, Arc::new(|| {}));
    let err = core.start().expect_err("exits").to_string();
    assert_eq!(
        err,
        "`python3 -c import sys; sys.exit(4)` exited during the handshake (exit status: 4)"
    );
}

#[derive(serde::Deserialize)]
struct NoConfig {}

struct Never;

impl topo_engine::Spout for Never {
    fn next_tuple(&mut self, _out: &mut topo_engine::SpoutOutput<'_>) -> Result<topo_engine::Poll> {
        Ok(topo_engine::Poll::Done)
    }
}

struct Discard;

impl topo_engine::Bolt for Discard {
    fn execute(&mut self, _input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn the_context_describes_the_topology_as_storm_does() {
    use topo_dsl::Topology;
    let mut registry = topo_engine::Registry::new();
    crate::register(&mut registry);
    registry.spout(
        "lines",
        "test lines",
        |_: &NoConfig| vec![StreamDecl::default_stream(["line"])],
        |_| Ok(Never),
    );
    registry.bolt(
        "word_count",
        "test counts",
        |_: &NoConfig| vec![StreamDecl::default_stream(["word", "count"])],
        |_| Ok(Discard),
    );
    let topology = Topology::builder("wc")
        .spout("src", "lines")
        .parallelism(2)
        .bolt("split", "multilang")
        .set(
            "command",
            toml::Value::Array(vec!["python3".into(), "split.py".into()]),
        )
        .set("outputs", toml::Value::Array(vec!["word".into()]))
        .shuffle("src")
        .bolt("count", "word_count")
        .fields("split", ["word"])
        .build(&registry)
        .expect("valid");
    let tasks = vec![vec![1, 2], vec![3], vec![4]];
    let ctx = context_json(&topology, "split", 3, &tasks);
    assert_eq!(
        ctx,
        json!({
            "taskid": 3,
            "componentid": "split",
            "task->component": {"1": "src", "2": "src", "3": "split", "4": "count"},
            "stream->target->grouping": {"default": {"count": {"type": "FIELDS", "fields": ["word"]}}},
            "streams": ["default"],
            "stream->outputfields": {"default": ["word"]},
            "source->stream->grouping": {"src": {"default": {"type": "SHUFFLE"}}},
            "source->stream->fields": {"src": {"default": ["line"]}},
        })
    );
    let conf = conf_json(
        &topology,
        "split",
        &"'pystorm.log.level' = 'debug'".parse().expect("toml"),
    );
    assert_eq!(conf["topology.name"], json!("wc"));
    assert_eq!(conf["topology.message.timeout.secs"], json!(30));
    assert_eq!(conf["pystorm.log.level"], json!("debug"));
}

#[test]
fn at_max_pending_the_bolt_waits_for_the_child() {
    let mut h = harness("max_pending = 2");
    for word in ["ka", "lo", "mi", "nu"] {
        h.send(word);
        h.core.wait_for_room(&mut h.rec);
        assert!(h.core.in_flight() < 2, "{}", h.core.in_flight());
    }
    h.core.drain(&mut h.rec);
    assert_eq!(h.core.in_flight(), 0);
    assert_eq!(h.rec.acked, ["ka", "lo", "mi", "nu"]);
}

#[test]
fn a_child_that_closes_its_output_but_runs_on_is_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = r#"
import json, os, sys, threading
sys.stdin.readline(); sys.stdin.readline()
sys.stdout.write(json.dumps({"pid": os.getpid()}) + "\nend\n")
sys.stdout.flush()
os.close(1)
threading.Event().wait()
"#;
    std::fs::write(dir.path().join("mute.py"), script).expect("script");
    let table: toml::Table = "command = ['python3', 'mute.py']".parse().expect("toml");
    let config: Config = parse_config(&table).expect("config");
    let setup = Setup {
        component: "mute".into(),
        task: 1,
        dir: dir.path().to_path_buf(),
        conf: json!({}),
        context: json!({}),
        direct_targets: Default::default(),
    };
    let (tx, woken) = mpsc::channel();
    let mut h = Harness {
        core: BoltCore::new(
            config,
            setup,
            Arc::new(move || {
                let _ = tx.send(());
            }),
        ),
        woken,
        rec: Recorder::default(),
        _dir: dir,
    };
    h.core.start().expect("start");
    let pid = h.core.pid().expect("running");
    h.send("ka");
    h.until(|r| r.failed.len() == 1);
    let alive = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    assert!(!alive, "the mute child {pid} still runs");
}

#[test]
fn an_emit_anchored_to_a_tuple_already_acked_is_an_error_not_an_unanchored_emit() {
    let mut h = harness("");
    h.send("stale");
    h.send("ka");
    h.until(|r| r.acked.len() == 2);
    assert_eq!(h.rec.acked, ["stale", "ka"]);
    assert!(
        h.rec
            .emits
            .iter()
            .all(|(_, _, v)| v != &Values::from(["late"])),
        "the stale emit was dropped: {:?}",
        h.rec.emits
    );
    assert_eq!(h.rec.emits.len(), 2, "ka's two emits: {:?}", h.rec.emits);
}

#[test]
fn a_message_over_the_limit_kills_the_child_fails_its_tuples_and_a_new_one_starts() {
    let mut h = harness("max_message_bytes = 1024");
    let first_pid = h.core.pid();
    h.send("big");
    h.until(|r| r.failed.len() == 1);
    assert_eq!(h.rec.failed, ["big"]);
    assert_eq!(h.core.pid(), None);
    assert!(h.rec.emits.is_empty());
    h.send("mi");
    assert_ne!(h.core.pid(), first_pid);
    h.until(|r| r.acked.len() == 1);
    assert_eq!(
        (h.rec.acked.as_slice(), h.core.starts),
        (&["mi".to_string()][..], 2)
    );
}
