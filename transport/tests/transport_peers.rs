//! Two workers on loopback: they connect, exchange every kind of frame, hold each other back
//! with credit, and find each other again after a restart.

mod transport_support;

use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpListener;
use topo_transport::{CloseReason, Delivery, SendError};
use transport_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_exchange_every_kind_of_frame() {
    let (mut ls, addrs) = listeners(2).await;
    let b = Worker::start(1, &addrs, ls.pop().expect("listener"), |_| {});
    let a = Worker::start(0, &addrs, ls.pop().expect("listener"), |_| {});
    expect_up(&a.inbound, 1).await;
    expect_up(&b.inbound, 0).await;
    assert!(a.transport.sender(0).is_none(), "no sender to oneself");

    let to_b = a.transport.sender(1).expect("peer 1");
    blocking(move || {
        to_b.send_data(5, Bytes::from_static(b"one"))?;
        to_b.send_acker(8, Bytes::from_static(b"ack"))?;
        to_b.send_control(0, Bytes::from_static(b"ctl"))?;
        to_b.send_data(6, Bytes::from_static(b"two"))
    })
    .await
    .expect("sent");

    // Data keeps its order; acker and control frames may overtake it (they go first).
    let mut data = Vec::new();
    let mut urgent = Vec::new();
    for _ in 0..4 {
        match b.next().await {
            Delivery::Data {
                from,
                dest_task,
                payload,
                ..
            } => data.push((from, dest_task, payload.to_vec())),
            Delivery::Acker {
                from,
                dest_task,
                payload,
            } => urgent.push(("acker", from, dest_task, payload.to_vec())),
            Delivery::Control {
                from,
                dest_task,
                payload,
            } => urgent.push(("control", from, dest_task, payload.to_vec())),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    assert_eq!(data, vec![(0, 5, b"one".to_vec()), (0, 6, b"two".to_vec())]);
    assert_eq!(
        urgent,
        vec![
            ("acker", 0, 8, b"ack".to_vec()),
            ("control", 0, 0, b"ctl".to_vec())
        ]
    );

    let to_a = b.transport.sender(0).expect("peer 0");
    blocking(move || to_a.send_data(1, Bytes::from_static(b"back")))
        .await
        .expect("sent");
    assert_eq!(expect_data(&a.inbound).await, (1, 1, b"back".to_vec()));

    let a_out = a.transport.peer_counters(1).expect("peer 1");
    let b_in = b.transport.peer_counters(0).expect("peer 0");
    assert_eq!(a_out.bytes_out(), 12);
    assert_eq!(b_in.bytes_in(), 12);
    assert_eq!(a_out.connects(), 1);

    // A clean shutdown says Goodbye: the peer sees it go, and nothing is counted as a fault.
    let late = a.transport.sender(1).expect("peer 1");
    a.transport.shutdown();
    let a_rest = a.stop().await;
    let refused = late.try_send_data(5, Bytes::from_static(b"late"));
    assert_eq!(refused, Err(SendError::Closed));
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("transport is shut down".to_string())
    );
    expect_down(&b.inbound, 0).await;
    let b_counters = b.transport.counters();
    let b_rest = b.stop().await;
    assert_eq!(b_counters.closed_total(), 0);
    expect_down(&a_rest, 1).await;
    assert!(a_rest.recv().is_err(), "inbound closes after shutdown");
    assert!(b_rest.recv().is_err(), "inbound closes after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_consume_blocks_its_sender() {
    const WINDOW: u32 = 1000;
    let (mut ls, addrs) = listeners(2).await;
    let b = Worker::start(1, &addrs, ls.pop().expect("listener"), |c| {
        c.credit_window = WINDOW
    });
    let a = Worker::start(0, &addrs, ls.pop().expect("listener"), |c| {
        c.credit_window = WINDOW
    });
    expect_up(&a.inbound, 1).await;
    expect_up(&b.inbound, 0).await;

    // Each 100-byte batch costs 120 bytes of credit: 9 fit in (overdraw by one) a 1000 window.
    let to_b = a.transport.sender(1).expect("peer 1");
    let batch = Bytes::from(vec![7u8; 100]);
    let mut sent = 0;
    loop {
        match to_b.try_send_data(3, batch.clone()) {
            Ok(()) => sent += 1,
            Err(e) => {
                assert_eq!(e, SendError::NoCredit { peer: 1 });
                assert_eq!(e.to_string(), "worker 1 granted no credit in time");
                break;
            }
        }
    }
    assert_eq!(sent, 9);
    assert!(to_b.credit() <= 0);

    // B receives all nine but consumes none: it holds their grants, so no credit flows back.
    let mut held = Vec::new();
    for _ in 0..sent {
        match b.next().await {
            Delivery::Data { grant, .. } => held.push(grant),
            other => panic!("expected Data, got {other:?}"),
        }
    }
    let held_bytes: u32 = held.iter().map(|g| g.bytes()).sum();
    assert!(
        held_bytes <= WINDOW + 120,
        "receiver holds at most one window and one frame"
    );
    assert_eq!(
        to_b.try_send_data(3, batch.clone()),
        Err(SendError::NoCredit { peer: 1 })
    );

    // A blocking send now waits for credit...
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let blocked = to_b.clone();
    let sender = std::thread::spawn(move || {
        let _ = done_tx.send(blocked.send_data(4, Bytes::from_static(b"tenth")));
    });
    assert!(done_rx.try_recv().is_err());

    // ...until B consumes: each dropped grant returns credit, a quarter window at a time.
    for grant in held {
        drop(grant);
    }
    let done = blocking(move || done_rx.recv_timeout(PATIENCE)).await;
    assert_eq!(done, Ok(Ok(())));
    sender.join().expect("sender thread");
    assert_eq!(expect_data(&b.inbound).await, (0, 4, b"tenth".to_vec()));

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_workers_are_reconnected() {
    let (mut ls, addrs) = listeners(2).await;
    let b = Worker::start(1, &addrs, ls.pop().expect("listener"), |_| {});
    let a = Worker::start(0, &addrs, ls.pop().expect("listener"), |_| {});
    expect_up(&a.inbound, 1).await;
    expect_up(&b.inbound, 0).await;

    // The acceptor (worker 1) goes away: the dialer sees it, and refuses sends meanwhile.
    b.stop().await;
    expect_down(&a.inbound, 1).await;
    let to_b = a.transport.sender(1).expect("peer 1");
    let refused = to_b.try_send_data(2, Bytes::from_static(b"lost"));
    assert_eq!(refused, Err(SendError::Disconnected { peer: 1 }));
    assert_eq!(
        refused.map_err(|e| e.to_string()),
        Err("worker 1 is not connected".to_string())
    );

    // It comes back on the same address; the dialer redials on its own.
    let b_listener = TcpListener::bind(addrs[1]).await.expect("rebind worker 1");
    let b = Worker::start(1, &addrs, b_listener, |_| {});
    expect_up(&a.inbound, 1).await;
    expect_up(&b.inbound, 0).await;
    blocking(move || to_b.send_data(2, Bytes::from_static(b"again")))
        .await
        .expect("sent");
    assert_eq!(expect_data(&b.inbound).await, (0, 2, b"again".to_vec()));

    // The dialer (worker 0) restarts: the acceptor takes its new connection.
    a.stop().await;
    expect_down(&b.inbound, 0).await;
    let a_listener = TcpListener::bind(addrs[0]).await.expect("rebind worker 0");
    let a = Worker::start(0, &addrs, a_listener, |_| {});
    expect_up(&a.inbound, 1).await;
    expect_up(&b.inbound, 0).await;
    let to_a = b.transport.sender(0).expect("peer 0");
    blocking(move || to_a.send_data(9, Bytes::from_static(b"hello again")))
        .await
        .expect("sent");
    assert_eq!(
        expect_data(&a.inbound).await,
        (1, 9, b"hello again".to_vec())
    );
    assert_eq!(b.transport.peer_counters(0).expect("peer 0").connects(), 2);
    assert_eq!(b.transport.counters().closed_total(), 0);

    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_payloads_are_refused_and_acks_bypass_credit() {
    let tweak = |c: &mut topo_transport::TransportConfig| {
        c.max_frame_len = 1024;
        c.credit_window = 100;
    };
    let (mut ls, addrs) = listeners(2).await;
    let b = Worker::start(1, &addrs, ls.pop().expect("listener"), tweak);
    let a = Worker::start(0, &addrs, ls.pop().expect("listener"), tweak);
    expect_up(&a.inbound, 1).await;
    expect_up(&b.inbound, 0).await;

    let to_b = a.transport.sender(1).expect("peer 1");
    assert_eq!(to_b.max_payload(), 1024 - 20);
    let err = to_b
        .try_send_data(1, Bytes::from(vec![0u8; 1005]))
        .expect_err("too large");
    assert_eq!(
        err,
        SendError::TooLarge {
            len: 1005,
            max: 1004
        }
    );
    assert_eq!(
        err.to_string(),
        "payload of 1005 bytes is over the maximum of 1004 bytes"
    );

    // The largest payload fits in one frame, even though it is over the whole window.
    let big = to_b.clone();
    blocking(move || big.send_data(1, Bytes::from(vec![1u8; 1004])))
        .await
        .expect("sent");
    let grant = match b.next().await {
        Delivery::Data { payload, grant, .. } => {
            assert_eq!(payload.len(), 1004);
            grant
        }
        other => panic!("expected Data, got {other:?}"),
    };

    // No credit is left while B holds the grant: data times out, acks still go through.
    let stuck = to_b.clone();
    let timed_out = blocking(move || {
        stuck.send_data_timeout(2, Bytes::from_static(b"x"), Duration::from_millis(50))
    })
    .await;
    assert_eq!(timed_out, Err(SendError::NoCredit { peer: 1 }));
    let ack = to_b.clone();
    blocking(move || ack.send_acker(8, Bytes::from_static(b"ack")))
        .await
        .expect("acks need no credit");
    match b.next().await {
        Delivery::Acker {
            from: 0,
            dest_task: 8,
            payload,
        } => assert_eq!(&payload[..], b"ack"),
        other => panic!("expected Acker, got {other:?}"),
    }

    drop(grant);
    let resumed = to_b.clone();
    blocking(move || resumed.send_data(2, Bytes::from_static(b"y")))
        .await
        .expect("credit came back");
    assert_eq!(expect_data(&b.inbound).await, (0, 2, b"y".to_vec()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn a_bad_config_is_refused_with_a_reason() {
    use topo_transport::{bind, Transport, TransportConfig};
    let listener = bind(None).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = TransportConfig::new(2, vec![addr], 1, b"s3cret".to_vec());
    assert!(
        !format!("{config:?}").contains("s3cret"),
        "the secret stays out of logs"
    );
    let err = Transport::start(config, listener, async {}).expect_err("bad index");
    assert_eq!(
        err.to_string(),
        "invalid transport config: worker index 2 is not below the number of workers 1"
    );

    let listener = bind(None).await.expect("bind");
    let config = TransportConfig::new(0, vec![addr], 1, Vec::new());
    let err = Transport::start(config, listener, async {}).expect_err("no secret");
    assert_eq!(
        err.to_string(),
        "invalid transport config: the secret is empty"
    );
}

/// Starts worker `index` on a runtime of its own, so dropping that runtime is a crash:
/// its sockets close with no `Goodbye`.
fn start_on_own_runtime(
    index: u32,
    peers: &[std::net::SocketAddr],
    listener: std::net::TcpListener,
) -> (tokio::runtime::Runtime, Worker) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let worker = {
        let _guard = rt.enter();
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        Worker::start(index, peers, listener, |_| {})
    };
    (rt, worker)
}

fn std_listener(l: TcpListener) -> std::net::TcpListener {
    let l = l.into_std().expect("std listener");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_worker_is_noticed_counted_and_reconnected_after_restart() {
    let (mut ls, addrs) = listeners(2).await;
    let (crashing, b) = start_on_own_runtime(1, &addrs, std_listener(ls.pop().expect("l")));
    let a = Worker::start(0, &addrs, ls.pop().expect("listener"), |_| {});
    expect_up(&a.inbound, 1).await;
    expect_up(&b.inbound, 0).await;
    let counters = a.transport.counters();
    let before = counters.closed_total();

    // Worker 1 dies: its runtime and every socket go at once, without a Goodbye.
    blocking(move || crashing.shutdown_timeout(PATIENCE)).await;
    expect_down(&a.inbound, 1).await;
    // Counted once: as an EOF without Goodbye, or a reset if a heartbeat was in flight.
    assert_eq!(counters.closed_total() - before, 1);
    assert_eq!(
        counters.closed(CloseReason::Dropped) + counters.closed(CloseReason::Io),
        1
    );
    drop(b);

    // `topo run` restarts it with the same address; worker 0 redials and traffic resumes.
    let listener = std::net::TcpListener::bind(addrs[1]).expect("rebind worker 1");
    listener.set_nonblocking(true).expect("nonblocking");
    let (restarted, b) = start_on_own_runtime(1, &addrs, listener);
    expect_up(&a.inbound, 1).await;
    let to_b = a.transport.sender(1).expect("peer 1");
    blocking(move || {
        assert!(to_b.wait_connected(PATIENCE));
        to_b.send_data(3, Bytes::from_static(b"after the crash"))
    })
    .await
    .expect("sent");
    expect_up(&b.inbound, 0).await;
    assert_eq!(
        expect_data(&b.inbound).await,
        (0, 3, b"after the crash".to_vec())
    );

    a.stop().await;
    b.stop().await;
    blocking(move || drop(restarted)).await;
}
