//! Helpers shared by the transport tests: start workers on loopback, await what they receive.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use crossbeam_channel::Receiver;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use topo_transport::{Delivery, Transport, TransportConfig};

pub(crate) const FINGERPRINT: u64 = 0x7070_7070;
pub(crate) const SECRET: &[u8] = b"test secret";

/// Longest a test waits for something that should happen promptly; reaching it fails the test.
pub(crate) const PATIENCE: Duration = Duration::from_secs(20);

/// A running transport and its inbound channel.
pub(crate) struct Worker {
    pub(crate) transport: Transport,
    pub(crate) inbound: Receiver<Delivery>,
    stop: oneshot::Sender<()>,
}

impl Worker {
    /// Starts worker `index` of `peers` on `listener`, with the test settings changed by `tweak`.
    pub(crate) fn start(
        index: u32,
        peers: &[SocketAddr],
        listener: TcpListener,
        tweak: impl FnOnce(&mut TransportConfig),
    ) -> Worker {
        let mut config = TransportConfig::new(index, peers.to_vec(), FINGERPRINT, SECRET.to_vec());
        config.connect_backoff = (Duration::from_millis(20), Duration::from_millis(200));
        tweak(&mut config);
        let (stop, stopped) = oneshot::channel();
        let (transport, inbound) = Transport::start(config, listener, async {
            let _ = stopped.await;
        })
        .expect("transport starts");
        Worker {
            transport,
            inbound,
            stop,
        }
    }

    /// Shuts the transport down and waits for it; returns what was still to be received.
    pub(crate) async fn stop(self) -> Receiver<Delivery> {
        let _ = self.stop.send(());
        self.transport.join().await;
        self.inbound
    }

    /// The next thing received, or a test failure after [`PATIENCE`].
    pub(crate) async fn next(&self) -> Delivery {
        next(&self.inbound).await
    }
}

/// The next item on `rx`, waiting on a blocking thread.
pub(crate) async fn next(rx: &Receiver<Delivery>) -> Delivery {
    let rx = rx.clone();
    tokio::task::spawn_blocking(move || rx.recv_timeout(PATIENCE))
        .await
        .expect("receiver thread")
        .expect("something arrives")
}

/// Binds `n` loopback listeners on free ports.
pub(crate) async fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
    let mut ls = Vec::new();
    let mut addrs = Vec::new();
    for _ in 0..n {
        let l = topo_transport::bind(None).await.expect("bind");
        let addr = l.local_addr().expect("local addr");
        assert!(
            addr.ip().is_loopback(),
            "workers listen on loopback by default"
        );
        addrs.push(addr);
        ls.push(l);
    }
    (ls, addrs)
}

/// Asserts the next item is `PeerUp` for `peer`.
pub(crate) async fn expect_up(rx: &Receiver<Delivery>, peer: u32) {
    match next(rx).await {
        Delivery::PeerUp { peer: p } if p == peer => {}
        other => panic!("expected PeerUp {{ peer: {peer} }}, got {other:?}"),
    }
}

/// Asserts the next item is `PeerDown` for `peer`.
pub(crate) async fn expect_down(rx: &Receiver<Delivery>, peer: u32) {
    match next(rx).await {
        Delivery::PeerDown { peer: p } if p == peer => {}
        other => panic!("expected PeerDown {{ peer: {peer} }}, got {other:?}"),
    }
}

/// Asserts the next item is a `Data` frame and returns (from, task, payload).
pub(crate) async fn expect_data(rx: &Receiver<Delivery>) -> (u32, u32, Vec<u8>) {
    match next(rx).await {
        Delivery::Data {
            from,
            dest_task,
            payload,
            ..
        } => (from, dest_task, payload.to_vec()),
        other => panic!("expected Data, got {other:?}"),
    }
}

/// Runs a blocking send on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("sender thread")
}
