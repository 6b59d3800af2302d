//! Tests of the coordinator's state machine, requests and persistence.

use super::rebalance::rewrite;
use super::*;
use topo_engine::launcher::worker::hex;

const TEXT: &str = "[topology]\nname = \"t\"\nworkers = 2\n\n[spouts.s]\ntype = \"sequence\"\n";

/// A coordinator with supervisors `ids` registered, each with its channel.
fn coord(
    dir: &std::path::Path,
    ids: &[&str],
) -> (Coord, Vec<mpsc::UnboundedReceiver<ToSupervisor>>) {
    let mut c = Coord::new(
        dir.join("state.json"),
        Arc::new(ArtifactStore::open(dir).unwrap()),
        Duration::from_secs(60),
    );
    let rx = ids
        .iter()
        .map(|id| connect(&mut c, id, Vec::new()))
        .collect();
    (c, rx)
}

fn connect(
    c: &mut Coord,
    id: &str,
    workers: Vec<WorkerReport>,
) -> mpsc::UnboundedReceiver<ToSupervisor> {
    let (tx, rx) = mpsc::unbounded_channel();
    c.next_conn += 1;
    let conn = c.next_conn;
    c.register(id, 4, workers, Link { conn, ctl: tx });
    rx
}

fn drain(rx: &mut mpsc::UnboundedReceiver<ToSupervisor>) -> Vec<ToSupervisor> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn assigned(msgs: &[ToSupervisor]) -> Vec<usize> {
    msgs.iter()
        .filter_map(|m| match m {
            ToSupervisor::Assign { assignment } => Some(assignment.worker),
            _ => None,
        })
        .collect()
}

fn said(c: &mut Coord, sup: &str, id: &str, worker: usize, msg: FromWorker) {
    c.on_supervisor(
        sup,
        FromSupervisor::Worker {
            topology: id.into(),
            worker,
            msg: Json(msg),
        },
    );
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 2], port))
}

fn submitted(c: &mut Coord) -> String {
    let hash = c.store.insert(b"a binary").unwrap().to_string();
    match c.submit("t".into(), TEXT.into(), hash, None, None) {
        Reply::Submitted { id } => id,
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_id_is_taken_while_its_supervisor_is_connected() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = coord(dir.path(), &["a"]);
    assert!(c.taken("a"));
    assert!(!c.taken("b"));
    if let Some(s) = c.supervisors.get_mut("a") {
        s.link = None;
    }
    assert!(
        !c.taken("a"),
        "a disconnected supervisor's id is free again"
    );
}

/// What a supervisor is told about a topology names no key: each supervisor derives the
/// worker key from the cluster secret and the topology id itself.
#[test]
fn the_messages_to_a_supervisor_carry_no_worker_key() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = coord(dir.path(), &["a", "b"]);
    let id = submitted(&mut c);
    said(&mut c, "a", &id, 0, FromWorker::Listening { addr: addr(1) });
    said(&mut c, "b", &id, 1, FromWorker::Listening { addr: addr(2) });
    let msgs: Vec<ToSupervisor> = rx.iter_mut().flat_map(drain).collect();
    assert_eq!(assigned(&msgs).len(), 2);
    let secret = Secret::from_bytes("s");
    let key = secret.topology_key(&id);
    for m in &msgs {
        // As the control channel encodes them.
        let bytes = rmp_serde::to_vec_named(m).unwrap();
        assert!(!bytes.windows(key.len()).any(|w| w == key), "{m:?}");
        assert!(
            !bytes.windows(64).any(|w| w == hex(&key).as_bytes()),
            "{m:?}"
        );
        if let ToSupervisor::Assign { assignment } = m {
            let fields = serde_json::to_value(assignment).unwrap();
            let mut names: Vec<&str> = fields
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            names.sort_unstable();
            assert_eq!(
                names,
                [
                    "binary",
                    "fingerprint",
                    "inactive",
                    "resources",
                    "restore",
                    "text",
                    "topology",
                    "worker"
                ]
            );
        }
    }
}

#[test]
fn a_silent_supervisors_worker_moves_and_its_peer_learns_the_new_address() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = coord(dir.path(), &["a", "b", "c"]);
    let id = submitted(&mut c);
    let mut on: Vec<Vec<ToSupervisor>> = rx.iter_mut().map(drain).collect();
    assert_eq!(assigned(&on[0]), [0]);
    assert_eq!(assigned(&on[1]), [1]);
    assert!(assigned(&on[2]).is_empty());
    said(&mut c, "a", &id, 0, FromWorker::Listening { addr: addr(1) });
    said(&mut c, "b", &id, 1, FromWorker::Listening { addr: addr(2) });
    said(&mut c, "a", &id, 0, FromWorker::Running);
    said(&mut c, "b", &id, 1, FromWorker::Running);
    on = rx.iter_mut().map(drain).collect();
    assert!(matches!(
        &on[0][..],
        [ToSupervisor::Worker { worker: 0, .. }]
    ));

    // b goes silent: its worker 1 goes to c (it runs none of t), a hears of the move.
    c.supervisors.get_mut("b").unwrap().last_seen -= Duration::from_secs(61);
    c.tick();
    on = rx.iter_mut().map(drain).collect();
    assert_eq!(assigned(&on[2]), [1]);
    assert!(!c.supervisors.contains_key("b"));
    // A line from b's old worker is not its own any more.
    said(&mut c, "b", &id, 1, FromWorker::Listening { addr: addr(9) });
    assert!(rx.iter_mut().map(drain).all(|m| m.is_empty()));
    c.on_supervisor(
        "c",
        FromSupervisor::Started {
            topology: id.clone(),
            worker: 1,
        },
    );
    said(&mut c, "c", &id, 1, FromWorker::Listening { addr: addr(3) });
    on = rx.iter_mut().map(drain).collect();
    let moved = ToWorker::PeerMoved {
        worker: 1,
        addr: addr(3),
    };
    assert!(
        on[0]
            .iter()
            .any(|m| matches!(m, ToSupervisor::Worker { worker: 0, msg, .. } if msg.0 == moved)),
        "{:?}",
        on[0]
    );
    assert!(on[2].iter().any(|m| matches!(
        m,
        ToSupervisor::Worker {
            worker: 1,
            msg: Json(ToWorker::Peers { .. }),
            ..
        }
    )));
    let t = &c.list()[0];
    assert_eq!(t.assignments[1].supervisor.as_deref(), Some("c"));
}

#[test]
fn a_restarted_coordinator_rebuilds_a_topology_from_the_registrations() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = coord(dir.path(), &["a", "b"]);
    let id = submitted(&mut c);
    said(&mut c, "a", &id, 0, FromWorker::Listening { addr: addr(1) });
    said(&mut c, "b", &id, 1, FromWorker::Listening { addr: addr(2) });
    c.save();

    // A new coordinator from the saved state: nothing is sent until both report.
    let saved: Saved = crate::state::load(&dir.path().join("state.json"))
        .unwrap()
        .unwrap();
    let (mut c2, _) = coord(dir.path(), &[]);
    for r in saved.topologies {
        c2.topologies.insert(r.id.clone(), Topology::new(r));
    }
    let report = |w: usize, port: u16| WorkerReport {
        topology: id.clone(),
        worker: w,
        addr: Some(addr(port)),
        running: true,
        summary: None,
    };
    let mut a = connect(&mut c2, "a", vec![report(0, 1)]);
    let mut b = connect(&mut c2, "b", vec![report(1, 2)]);
    let (a, b) = (drain(&mut a), drain(&mut b));
    assert!(
        assigned(&a).is_empty() && assigned(&b).is_empty(),
        "{a:?} {b:?}"
    );
    assert!(!a
        .iter()
        .chain(&b)
        .any(|m| matches!(m, ToSupervisor::Stop { .. })));
    let t = &c2.list()[0];
    assert_eq!(t.status, Status::Active);
    assert!(t.assignments.iter().all(|w| w.running));
    // Both spouts report done: the new coordinator ends the run.
    said(
        &mut c2,
        "a",
        &id,
        0,
        FromWorker::Status { spouts_done: true },
    );
    said(
        &mut c2,
        "b",
        &id,
        1,
        FromWorker::Status { spouts_done: true },
    );
    c2.tick();
    assert!(c2.topologies[&id].session.finishing());
}

#[test]
fn a_rebalanced_file_keeps_its_values_with_the_new_workers() {
    let text =
        "# comment\n[topology]\nname = \"t\"\nworkers = 3\n\n[spouts.s]\ntype = \"sequence\"\n";
    let out = rewrite(text, Some(2), &BTreeMap::new()).unwrap();
    let (spec, diags) = topo_dsl::parse(&out);
    assert!(diags.is_empty(), "{out}");
    assert_eq!(spec.workers, Some(2));
    assert_eq!(spec.name.as_deref(), Some("t"));
    assert_eq!(spec.components.len(), 1);
}

#[test]
fn a_rebalanced_file_sets_the_parallelism_of_spouts_and_bolts() {
    let text = "[topology]\nname = \"t\"\n\n[spouts.s]\ntype = \"sequence\"\n\n\
                [bolts.b]\ntype = \"map\"\nparallelism = 2\ninputs = [\"s\"]\n";
    let ask = BTreeMap::from([("s".to_string(), 3), ("b".to_string(), 5)]);
    let out = rewrite(text, None, &ask).unwrap();
    let (spec, diags) = topo_dsl::parse(&out);
    assert!(diags.is_empty(), "{out}");
    assert_eq!(spec.workers, None);
    let p: Vec<_> = spec.components.iter().map(|c| c.parallelism).collect();
    assert_eq!(p, [Some(3), Some(5)]);
    let err = rewrite(text, None, &BTreeMap::from([("x".to_string(), 1)])).unwrap_err();
    assert_eq!(err, "no table for component `x` in the topology file");
}

fn refusal(reply: Reply) -> String {
    match reply {
        Reply::Error { message } => message,
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_rebalance_the_coordinator_cannot_carry_out_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = coord(dir.path(), &["a", "b"]);
    let id = submitted(&mut c);
    let p = |c: &str, n: usize| BTreeMap::from([(c.to_string(), n)]);
    let none = BTreeMap::new();
    let cases = [
        (
            c.rebalance("t", None, &none),
            "nothing to rebalance: give --workers N or --parallelism COMPONENT=N".to_string(),
        ),
        (
            c.rebalance("t", Some(0), &none),
            "a topology needs at least 1 worker".into(),
        ),
        (
            c.rebalance("t", None, &p("x", 2)),
            format!("topology {id} has no component `x` (it has s)"),
        ),
        (
            c.rebalance("t", None, &p("s", 0)),
            "the parallelism of `s` must be at least 1".into(),
        ),
        (
            c.rebalance("t", None, &p("s", 10_001)),
            "parallelism 10001 of `s` is above the limit of 10000".into(),
        ),
        (
            c.rebalance("nope", None, &p("s", 2)),
            "no topology named nope".into(),
        ),
    ];
    for (reply, want) in cases {
        assert_eq!(refusal(reply), want);
    }
    let t = &c.topologies[&id];
    assert_eq!(t.record.status, Status::Active);
    assert!(t.record.rebalance.is_none());
}

#[test]
fn a_topology_without_checkpoints_drains_then_restarts_with_its_new_parallelism() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = coord(dir.path(), &["a", "b"]);
    let id = submitted(&mut c);
    let ask = BTreeMap::from([("s".to_string(), 3)]);
    match c.rebalance("t", None, &ask) {
        Reply::Done { message } => assert_eq!(
            message,
            format!(
                "rebalancing {id} to s=3: spouts deactivated, restarting in 30 s; the \
                 topology takes no checkpoints, so its bolts' in-memory state starts empty"
            )
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(c.topologies[&id].record.status, Status::Rebalancing);
    for r in &mut rx {
        drain(r);
    }
    // The drain is over.
    if let Some(t) = c.topologies.get_mut(&id) {
        t.record.kill_at = Some(now_secs() - 1.0);
    }
    c.tick();
    let t = &c.topologies[&id];
    assert_eq!(t.record.status, Status::Active);
    assert_eq!(t.record.workers, 2);
    // Each worker index stays on its supervisor: stopped, then assigned again there.
    let msgs: Vec<Vec<ToSupervisor>> = rx.iter_mut().map(drain).collect();
    for (sup, m) in msgs.iter().enumerate() {
        assert!(
            matches!(m[0], ToSupervisor::Stop { worker, .. } if worker == sup),
            "{m:?}"
        );
        assert_eq!(assigned(m), [sup]);
    }
    let listed = c.list();
    assert_eq!(
        listed[0].parallelism,
        BTreeMap::from([("s".to_string(), 3)])
    );
    // The new file is the persisted one.
    let saved = persist::load(&dir.path().join("state.json")).unwrap();
    let (spec, _) = topo_dsl::parse(&saved.topologies[0].text);
    assert_eq!(spec.components[0].parallelism, Some(3));
}

#[test]
fn a_submitted_name_that_is_a_path_is_refused_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = coord(dir.path(), &["a"]);
    let hash = c.store.insert(b"a binary").unwrap().to_string();
    for (name, why) in [
        ("../../x", "\".\" is not allowed"),
        ("/tmp/evil", "\"/\" is not allowed"),
        ("", "it is empty"),
    ] {
        match c.submit(name.into(), TEXT.into(), hash.clone(), None, None) {
            Reply::Error { message } => assert_eq!(
                message.split("; ").next().unwrap(),
                format!("invalid topology name \"{name}\": {why}")
            ),
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(c.topologies.is_empty());
}

#[test]
fn a_failed_save_stays_dirty_and_the_next_tick_retries_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut c, _rx) = coord(dir.path(), &["a"]);
    // A directory where the temporary file goes makes every write fail, even for root.
    let tmp = crate::state::tmp_path(&path);
    std::fs::create_dir(&tmp).unwrap();
    c.save();
    assert!(c.dirty, "a failed save must leave the state dirty");
    assert!(!path.exists());
    c.tick();
    assert!(c.dirty);
    std::fs::remove_dir(&tmp).unwrap();
    c.tick();
    assert!(!c.dirty, "the tick after the fault retried and saved");
    let saved: Saved = crate::state::load(&path).unwrap().unwrap();
    assert_eq!(saved.supervisors.len(), 1);
}

#[test]
fn the_previous_state_is_kept_and_a_corrupt_file_says_how_to_recover() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let (mut c, _rx) = coord(dir.path(), &["a"]);
    c.save();
    let id = submitted(&mut c);
    c.save();
    let prev: Saved = crate::state::load(&persist::prev_path(&path))
        .unwrap()
        .unwrap();
    assert!(
        prev.topologies.is_empty(),
        "prev holds the state before the submit"
    );
    assert_eq!(persist::load(&path).unwrap().topologies[0].id, id);

    std::fs::write(&path, b"{\"supervisors\": [").unwrap();
    let err = persist::load(&path).unwrap_err().to_string();
    let prev = persist::prev_path(&path);
    assert!(
        err.starts_with(&format!("cannot parse {}: ", path.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!("copy {} ", prev.display())),
        "the error names the previous good state: {err}"
    );

    // A state file naming a topology whose id is a path is refused the same way.
    let mut evil = prev_state_with_id("../../etc");
    evil.push('\n');
    std::fs::write(&path, evil).unwrap();
    let err = persist::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "bad state in {}: invalid topology id \"../../etc\"",
            path.display()
        )),
        "{err}"
    );
}

/// A `state.json` with one topology of id `id`.
fn prev_state_with_id(id: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, _rx) = coord(dir.path(), &[]);
    let real = submitted(&mut c);
    let mut t = c.topologies.remove(&real).unwrap();
    t.record.id = id.into();
    c.topologies.insert(id.into(), t);
    c.save();
    std::fs::read_to_string(dir.path().join("state.json")).unwrap()
}

#[tokio::test]
async fn a_panicking_background_task_ends_the_coordinator_with_an_error() {
    let task = tokio::spawn(async { panic!("tick went wrong") });
    let err = background_failed("ticker", task.await);
    assert_eq!(
        err.to_string(),
        "the coordinator's ticker task stopped (it panicked: tick went wrong); the coordinator cannot go on"
    );
}

/// A coordinator served on `127.0.0.1:0` in `dir`: its address, the sender that stops
/// it, and its task.
async fn served(
    dir: &std::path::Path,
    secret: &Secret,
) -> (
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = Listener::from_tcp(tcp, secret, Default::default()).unwrap();
    let addr = listener.local_addr();
    let opts = CoordinatorOptions {
        listen: addr,
        state_dir: dir.to_path_buf(),
        secret: secret.clone(),
        supervisor_timeout: Duration::from_secs(5),
        max_archive_bytes: crate::archive::DEFAULT_MAX_BYTES,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, opts, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_sockets_from_one_address_locks_nobody_else_out() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Secret::from_bytes("s");
    let (addr, stop, server) = served(dir.path(), &secret).await;
    let mut flood = Vec::new();
    for _ in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.9:0".parse().unwrap()).unwrap();
        flood.push(socket.connect(addr).await.unwrap());
    }
    // While the flood holds on: a supervisor registers and `topo list` is answered.
    let started = Instant::now();
    let mut sup = crate::control::connect(addr, &secret, Role::Supervisor)
        .await
        .expect("a supervisor gets through the flood");
    sup.send(&FromSupervisor::Register {
        id: "127.0.0.2:7100".into(),
        slots: 1,
        workers: Vec::new(),
    })
    .await
    .unwrap();
    let mut client = crate::control::connect(addr, &secret, Role::Client)
        .await
        .expect("a client gets through the flood");
    client.send(&Request::List).await.unwrap();
    let reply: Option<Reply> = client.recv().await.unwrap();
    assert!(matches!(reply, Some(Reply::Topologies { .. })), "{reply:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no wait for the flood's handshakes to time out: {:?}",
        started.elapsed()
    );
    drop(flood);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn serve_takes_a_listener_and_stops_on_its_shutdown_signal() {
    let dir = tempfile::tempdir().unwrap();
    let secret = Secret::none();
    let (addr, stop, server) = served(dir.path(), &secret).await;
    let mut conn = crate::control::connect(addr, &secret, Role::Client)
        .await
        .unwrap();
    conn.send(&Request::List).await.unwrap();
    let reply: Option<Reply> = conn.recv().await.unwrap();
    assert!(matches!(reply, Some(Reply::Topologies { .. })), "{reply:?}");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after its shutdown signal")
        .unwrap()
        .unwrap();
}

/// A checkpointed topology: refused with a local state backend; with Redis, a worker
/// its supervisor restarted on its own, or a dropped supervisor, rolls every worker back
/// (each stopped and assigned again), and what an old incarnation still relays before
/// the new one started is dropped.
#[test]
fn a_lost_worker_of_a_checkpointed_topology_rolls_every_worker_back() {
    let dir = tempfile::tempdir().unwrap();
    let (mut c, mut rx) = coord(dir.path(), &["a", "b"]);
    let hash = c.store.insert(b"a binary").unwrap().to_string();
    let local = format!("{TEXT}\n").replace(
        "workers = 2\n",
        "workers = 2\ncheckpoint_interval_secs = 1\n",
    );
    match c.submit("t".into(), local.clone(), hash.clone(), None, None) {
        Reply::Error { message } => assert!(message.contains("redis"), "{message}"),
        other => panic!("{other:?}"),
    }
    let text = local.replace(
        "checkpoint_interval_secs = 1\n",
        "checkpoint_interval_secs = 1\nstate_backend = \"redis\"\nstate_url = \"redis://127.0.0.1:1\"\n",
    );
    let id = match c.submit("t".into(), text, hash, None, None) {
        Reply::Submitted { id } => id,
        other => panic!("{other:?}"),
    };
    let started = |c: &mut Coord, sup: &str, worker: usize| {
        c.on_supervisor(
            sup,
            FromSupervisor::Started {
                topology: id.clone(),
                worker,
            },
        )
    };
    let on: Vec<Vec<ToSupervisor>> = rx.iter_mut().map(drain).collect();
    assert_eq!(assigned(&on[0]).len() + assigned(&on[1]).len(), 2);
    let sup_of = |w: usize| {
        if assigned(&on[0]).contains(&w) {
            "a"
        } else {
            "b"
        }
    };
    let (s0, s1) = (sup_of(0), sup_of(1));
    started(&mut c, s0, 0);
    started(&mut c, s1, 1);
    said(&mut c, s0, &id, 0, FromWorker::Listening { addr: addr(1) });
    said(&mut c, s1, &id, 1, FromWorker::Listening { addr: addr(2) });
    assert!(c.topologies[&id].session.worker(1).addr.is_some());
    rx.iter_mut().for_each(|r| drop(drain(r)));

    // Supervisor s0 restarted worker 0 on its own: every worker is stopped and assigned
    // again.
    started(&mut c, s0, 0);
    let msgs: Vec<ToSupervisor> = rx.iter_mut().flat_map(drain).collect();
    let stopped = msgs
        .iter()
        .filter(|m| matches!(m, ToSupervisor::Stop { .. }))
        .count();
    assert_eq!(stopped, 2, "{msgs:?}");
    let mut again = assigned(&msgs);
    again.sort_unstable();
    assert_eq!(again, [0, 1]);
    assert!(c.topologies[&id].session.worker(1).addr.is_none());
    // The old worker 1 still speaks before its new incarnation started: dropped.
    said(&mut c, s1, &id, 1, FromWorker::Listening { addr: addr(3) });
    assert!(c.topologies[&id].session.worker(1).addr.is_none());
    started(&mut c, s1, 1);
    said(&mut c, s1, &id, 1, FromWorker::Listening { addr: addr(4) });
    assert_eq!(c.topologies[&id].session.worker(1).addr, Some(addr(4)));
    started(&mut c, s0, 0);
    rx.iter_mut().for_each(|r| drop(drain(r)));

    // Supervisor s1 is dropped: worker 0 is stopped and assigned again on s0, worker 1
    // placed there too.
    c.drop_supervisor(s1);
    let survivor = if s0 == "a" { 0 } else { 1 };
    let msgs = drain(&mut rx[survivor]);
    let mut again = assigned(&msgs);
    again.sort_unstable();
    assert_eq!(again, [0, 1], "{msgs:?}");
    assert!(msgs
        .iter()
        .any(|m| matches!(m, ToSupervisor::Stop { worker: 0, .. })));
}
