//! Two workers of one topology in one process, connected by the real transport over
//! loopback TCP (through `launcher::worker::start`, the bridge worker processes use):
//! tuples, acks and end-of-stream cross between them, and the word count
//! comes out right.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{numbers, recorder, Log, Seen};
use topo_dsl::Topology;
use topo_engine::launcher::worker;
use topo_engine::transport::{Deliver, Transport, TransportConfig};
use topo_engine::{RunOptions, TaskId};

#[test]
fn a_topology_split_over_two_workers_runs_through_the_transport() {
    two_workers(3000, RunOptions::default());
}

#[test]
fn tiny_queues_hold_remote_batches_back_without_losing_or_reordering_any() {
    let options = RunOptions {
        batch_size: 16,
        queue_batches: 1,
        ..RunOptions::default()
    };
    two_workers(20_000, options);
}

fn two_workers(count: i64, base: RunOptions) {
    let log = Log::default();
    let seen = Seen::default();
    let mut r = topo_engine::Registry::new();
    numbers(&mut r, &log);
    recorder(&mut r, "record", &seen);
    // numbers 1, 2 and sink 3..=6 alternate between the workers; ackers 7 (w0), 8 (w1).
    let topology = Arc::new(
        Topology::builder("tcp")
            .workers(2)
            .spout("numbers", "numbers")
            .parallelism(2)
            .set("count", count)
            .bolt("sink", "record")
            .parallelism(4)
            .fields("numbers", ["n"])
            .build(&r)
            .unwrap(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _in_rt = rt.enter();
    let listeners: Vec<_> = (0..2)
        .map(|_| {
            rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap()
        })
        .collect();
    let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut transports = Vec::new();
    for (w, listener) in listeners.into_iter().enumerate() {
        let config = TransportConfig::new(w as u32, addrs.clone(), 42, b"secret".to_vec());
        let mut stop = stop_rx.clone();
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let dispatcher = worker::Dispatcher::new();
        let sink = Arc::clone(&dispatcher) as Arc<dyn Deliver>;
        let transport = Transport::start_with(config, listener, shutdown, sink).unwrap();
        transports.push((transport, dispatcher));
    }
    for (w, (t, _)) in transports.iter().enumerate() {
        let peer = t.sender(1 - w as u32).unwrap();
        assert!(
            peer.wait_connected(Duration::from_secs(10)),
            "worker {w} connected"
        );
    }
    let mut workers = Vec::new();
    for (transport, dispatcher) in &transports {
        let running = worker::start(
            Arc::clone(&topology),
            &r,
            transport,
            dispatcher,
            base.clone(),
        )
        .unwrap();
        workers.push(running);
    }
    for w in &workers {
        if !w.wait_timeout(Duration::from_secs(60)) {
            w.stop();
        }
    }
    let summaries: Vec<_> = workers.into_iter().map(|w| w.wait()).collect();
    let _ = stop_tx.send(true);
    for (t, _) in transports {
        rt.block_on(t.join());
    }

    let acked: u64 = summaries.iter().map(|s| s.counts("numbers").acked).sum();
    let failed: u64 = summaries.iter().map(|s| s.counts("numbers").failed).sum();
    assert_eq!((acked, failed), (count as u64, 0));
    let seen = seen.lock().unwrap();
    let values: BTreeSet<i64> = seen.iter().map(|(_, v)| v[0].as_int().unwrap()).collect();
    assert_eq!(seen.len(), count as usize);
    assert_eq!(values.len(), count as usize);
    // Fields grouping and one connection per pair keep each key's order.
    let mut last = std::collections::HashMap::new();
    for (task, v) in seen.iter() {
        let n = v[0].as_int().unwrap();
        let spout_task = n % 2;
        if let Some(prev) = last.insert((*task, spout_task), n) {
            assert!(prev < n, "task {task} got {n} after {prev}");
        }
    }
    let tasks: BTreeSet<TaskId> = seen.iter().map(|(t, _)| *t).collect();
    assert_eq!(tasks, BTreeSet::from([3, 4, 5, 6]));
    for (w, s) in summaries.iter().enumerate() {
        let sink = s.component("sink").unwrap();
        let tasks: Vec<TaskId> = sink.tasks.iter().map(|t| t.task).collect();
        assert_eq!(
            tasks,
            [[3, 5], [4, 6]][w],
            "a worker's summary has its own tasks"
        );
        assert!(
            s.counts("__acker").acked > 0,
            "worker {w}'s acker tracked trees"
        );
    }
}
