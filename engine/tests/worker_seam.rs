//! Two workers of one plan, each started on its own with `RunOptions::worker`, reaching
//! each other's tasks through `RemoteSender`s (here: straight into the other worker's
//! inboxes, where a transport would serialize). Groupings, acking and end-of-stream work
//! across the seam.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{numbers, recorder, Log, Seen};
use crossbeam_channel::Sender;
use topo_dsl::Topology;
use topo_engine::route::{AckerIn, Gone, Inbound, RemoteSender, SpoutMsg};
use topo_engine::runtime::{Inboxes, Remotes};
use topo_engine::{RunOptions, TaskId};

/// Every task's inbox, filled once both workers started; senders wait for it.
struct Directory<T> {
    map: Mutex<HashMap<TaskId, Sender<T>>>,
    filled: Condvar,
}

impl<T> Directory<T> {
    fn new() -> Arc<Self> {
        Arc::new(Directory {
            map: Mutex::new(HashMap::new()),
            filled: Condvar::new(),
        })
    }

    fn add(&self, inboxes: &[(TaskId, Sender<T>)]) {
        let mut map = self.map.lock().unwrap();
        for (t, s) in inboxes {
            map.insert(*t, s.clone());
        }
        self.filled.notify_all();
    }
}

impl<T: Send> RemoteSender<T> for Directory<T> {
    fn send(&self, to: TaskId, msg: T) -> Result<(), Gone> {
        let mut map = self.map.lock().unwrap();
        loop {
            if let Some(s) = map.get(&to) {
                let s = s.clone();
                drop(map);
                return s.send(msg).map_err(|_| Gone(to));
            }
            map = self.filled.wait(map).unwrap();
        }
    }
}

#[test]
fn two_workers_started_separately_run_one_topology_through_the_seam() {
    let log = Log::default();
    let seen = Seen::default();
    let mut r = topo_engine::Registry::new();
    numbers(&mut r, &log);
    recorder(&mut r, "record", &seen);
    let t = Arc::new(
        Topology::builder("two")
            .workers(2)
            .spout("numbers", "numbers")
            .parallelism(2)
            .set("count", 400)
            .bolt("sink", "record")
            .parallelism(4)
            .fields("numbers", ["n"])
            .build(&r)
            .unwrap(),
    );
    let data = Directory::<Inbound>::new();
    let ackers = Directory::<AckerIn>::new();
    let spouts = Directory::<SpoutMsg>::new();
    let remotes = Remotes {
        data: data.clone(),
        acker: ackers.clone(),
        spout: spouts.clone(),
    };
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let options = RunOptions {
                worker: Some(w),
                remote: Some(remotes.clone()),
                ..RunOptions::default()
            };
            topo_engine::start(Arc::clone(&t), &r, options).unwrap()
        })
        .collect();
    for w in &workers {
        let Inboxes {
            data: d,
            ackers: a,
            spouts: s,
        } = w.inboxes();
        data.add(d);
        ackers.add(a);
        spouts.add(s);
    }
    assert_eq!(workers[0].acker_count() + workers[1].acker_count(), 2);
    for w in &workers {
        if !w.wait_timeout(Duration::from_secs(60)) {
            w.stop();
        }
    }
    let summaries: Vec<_> = workers.into_iter().map(|w| w.wait()).collect();
    let acked: u64 = summaries.iter().map(|s| s.counts("numbers").acked).sum();
    assert_eq!(acked, 400);
    let seen = seen.lock().unwrap();
    let values: BTreeSet<i64> = seen.iter().map(|(_, v)| v[0].as_int().unwrap()).collect();
    assert_eq!((seen.len(), values.len()), (400, 400));
    let tasks: BTreeSet<TaskId> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(tasks, BTreeSet::from([3, 4, 5, 6]), "tasks of both workers");
}

#[test]
fn a_worker_that_must_reach_another_without_a_transport_refuses_to_start() {
    let log = Log::default();
    let seen = Seen::default();
    let mut r = topo_engine::Registry::new();
    numbers(&mut r, &log);
    recorder(&mut r, "record", &seen);
    let t = Topology::builder("two")
        .workers(2)
        .spout("numbers", "numbers")
        .bolt("sink", "record")
        .shuffle("numbers")
        .build(&r)
        .unwrap();
    let options = RunOptions {
        worker: Some(0),
        ..RunOptions::default()
    };
    let err = topo_engine::start(Arc::new(t), &r, options).unwrap_err();
    // Tasks: numbers 1 (worker 0), sink 2 (worker 1), ackers 3 (worker 0), 4 (worker 1).
    assert_eq!(
        err.to_string(),
        "task 4 runs in worker 1, and no transport reaches other workers"
    );
}
