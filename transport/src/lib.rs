//! The network between workers: authenticated TCP connections carrying length-prefixed frames,
//! and the secure channel every topo connection opens with.
//!
//! The transport knows frames and peers, nothing about tuples: `Data`, `Acker` and `Control`
//! payloads are bytes the runtime encodes. Tuples between tasks of one worker never come here.
//!
//! # Layout
//! - [`frame`]: the [`Frame`] enum, its wire layout (diagram there and in the README) and
//!   [`FrameCodec`].
//! - [`secure`]: the secure channel of every topo connection, worker or control: a Noise
//!   handshake (`NNpsk0`, the shared secret as pre-shared key) as a state machine without
//!   I/O, its drivers, and the codec that seals frames after it (or leaves them plain).
//! - [`handshake`]: the worker connection's use of it: hellos with the worker index and
//!   plan fingerprint, identity checks.
//! - [`slots`]: pre-authentication slots, in all and per source address, shared with the
//!   cluster's control listener.
//! - [`counters`]: why connections closed ([`Counters`]), traffic per peer ([`PeerCounters`]).
//! - `link`: [`PeerSender`] (blocking, credit-limited), [`Delivery`], [`Deliver`],
//!   [`CreditGrant`].
//! - `peer`: one driver task per peer: dial or await, serve, reconnect.
//!
//! # Connections
//! One TCP connection per pair of workers: the worker with the lower index dials the higher
//! one, and redials with exponential backoff whenever the connection drops (the peer
//! restarted). The acceptor takes a newer authenticated connection from the same peer in
//! place of the old one. A connection that is idle for a heartbeat interval sends a
//! `Heartbeat`; one that receives nothing for the peer timeout is closed.
//!
//! At most `max_handshakes` accepted connections may be unauthenticated at a time, and at
//! most `max_handshakes_per_address` of them from one source address ([`slots`]); more
//! are closed at once (a flood, logged at most once a second), and each must finish its
//! handshake within `handshake_timeout`.
//! Every connection closed for a fault is logged once and counted once in [`Counters`].
//!
//! # Example
//! Two workers in one process; in `topo run` each is its own process.
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use bytes::Bytes;
//! use topo_transport::{bind, Delivery, Transport, TransportConfig};
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! let _tokio = rt.enter();
//! let (l0, l1) = rt.block_on(async { Ok::<_, std::io::Error>((bind(None).await?, bind(None).await?)) })?;
//! let peers = vec![l0.local_addr()?, l1.local_addr()?];
//! let secret = b"the run's secret".to_vec();
//! let config = |i| TransportConfig::new(i, peers.clone(), 0xfeed, secret.clone());
//! let (w0, _) = Transport::start(config(0), l0, std::future::pending())?;
//! let (w1, inbound) = Transport::start(config(1), l1, std::future::pending())?;
//!
//! // An executor thread of worker 0 sends a batch to task 7, which runs in worker 1.
//! let to_w1 = w0.sender(1).expect("worker 1 is a peer");
//! assert!(to_w1.wait_connected(Duration::from_secs(10)));
//! to_w1.send_data(7, Bytes::from_static(b"encoded tuples"))?;
//!
//! // Worker 1's runtime takes it, hands it to task 7, then drops the grant: credit flows back.
//! loop {
//!     match inbound.recv_timeout(Duration::from_secs(10))? {
//!         Delivery::Data { from, dest_task, payload, grant } => {
//!             assert_eq!((from, dest_task, &payload[..]), (0, 7, &b"encoded tuples"[..]));
//!             drop(grant);
//!             break;
//!         }
//!         Delivery::PeerUp { peer } => assert_eq!(peer, 0),
//!         other => panic!("unexpected {other:?}"),
//!     }
//! }
//! w0.shutdown();
//! w1.shutdown();
//! rt.block_on(async { w0.join().await; w1.join().await });
//! # Ok(()) }
//! ```

pub mod counters;
pub mod frame;
pub mod handshake;
mod link;
mod peer;
pub mod secure;
pub mod slots;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use slots::HandshakeSlots;
use tracing::{info, warn};

pub use counters::{CloseReason, Counters, PeerCounters};
pub use frame::{Frame, FrameCodec, FrameError, RawCodec, HEADER_LEN, MAX_FRAME_LEN};
pub use handshake::{HandshakeError, Identity};
pub use link::{CreditGrant, Deliver, Delivery, PeerSender, SendError};

use frame::FRAME_OVERHEAD;
use link::Link;
use peer::{Established, PeerAddr, PeerTask};

/// Settings of one worker's transport.
#[derive(Clone)]
pub struct TransportConfig {
    /// This worker's index.
    pub worker: u32,
    /// Every worker's address, indexed by worker index (this worker's own entry is unused).
    pub peers: Vec<SocketAddr>,
    /// Fingerprint of the physical plan; peers with another are refused.
    pub fingerprint: u64,
    /// The run's shared secret; never sent, only proven (the Noise pre-shared key).
    pub secret: Vec<u8>,
    /// Seal every frame after the handshake (ChaCha20-Poly1305) instead of sending it
    /// plain (default false; the topology's `encrypt`). Both sides must agree.
    pub encrypt: bool,
    /// Largest frame body after the handshake (default [`MAX_FRAME_LEN`]).
    pub max_frame_len: usize,
    /// Bytes of `Data` a peer may have in flight to this worker, unconsumed (default 4 MiB).
    pub credit_window: u32,
    /// `Data` frames each peer's send queue holds (default 1024).
    pub queue_frames: usize,
    /// Time a connection has to finish its handshake (default 5 s).
    pub handshake_timeout: Duration,
    /// Accepted connections allowed to be handshaking at once (default 64).
    pub max_handshakes: usize,
    /// Of those, how many may come from one source address (default 32), so a flood
    /// from one address leaves slots to the others.
    pub max_handshakes_per_address: usize,
    /// Idle time after which a connection sends a heartbeat (default 1 s).
    pub heartbeat_interval: Duration,
    /// Silence after which a peer is considered gone (default 10 s).
    pub peer_timeout: Duration,
    /// First and largest delay between dial attempts (default 50 ms, 2 s).
    pub connect_backoff: (Duration, Duration),
}

impl std::fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransportConfig")
            .field("worker", &self.worker)
            .field("peers", &self.peers)
            .field("fingerprint", &self.fingerprint)
            .field("secret", &"<redacted>")
            .field("encrypt", &self.encrypt)
            .field("max_frame_len", &self.max_frame_len)
            .field("credit_window", &self.credit_window)
            .field("queue_frames", &self.queue_frames)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("max_handshakes", &self.max_handshakes)
            .field(
                "max_handshakes_per_address",
                &self.max_handshakes_per_address,
            )
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("peer_timeout", &self.peer_timeout)
            .field("connect_backoff", &self.connect_backoff)
            .finish()
    }
}

impl TransportConfig {
    /// Settings with the defaults above.
    pub fn new(worker: u32, peers: Vec<SocketAddr>, fingerprint: u64, secret: Vec<u8>) -> Self {
        TransportConfig {
            worker,
            peers,
            fingerprint,
            secret,
            encrypt: false,
            max_frame_len: MAX_FRAME_LEN,
            credit_window: 4 * 1024 * 1024,
            queue_frames: 1024,
            handshake_timeout: Duration::from_secs(5),
            max_handshakes: 64,
            max_handshakes_per_address: 32,
            heartbeat_interval: Duration::from_secs(1),
            peer_timeout: Duration::from_secs(10),
            connect_backoff: (Duration::from_millis(50), Duration::from_secs(2)),
        }
    }

    fn check(&self) -> Result<(), TransportError> {
        let bad = |why: String| Err(TransportError::Config(why));
        if self.peers.len() > u32::MAX as usize || self.worker as usize >= self.peers.len() {
            return bad(format!(
                "worker index {} is not below the number of workers {}",
                self.worker,
                self.peers.len()
            ));
        }
        if self.secret.is_empty() {
            return bad("the secret is empty".into());
        }
        if self.max_frame_len <= FRAME_OVERHEAD || self.max_frame_len > u32::MAX as usize {
            return bad(format!(
                "max_frame_len {} is not between {} and {}",
                self.max_frame_len,
                FRAME_OVERHEAD + 1,
                u32::MAX
            ));
        }
        if self.credit_window == 0
            || self.queue_frames == 0
            || self.max_handshakes == 0
            || self.max_handshakes_per_address == 0
        {
            return bad(
                "credit_window, queue_frames, max_handshakes and max_handshakes_per_address must be positive"
                    .into(),
            );
        }
        if self.heartbeat_interval.is_zero() || self.peer_timeout <= self.heartbeat_interval {
            return bad("peer_timeout must be longer than a non-zero heartbeat_interval".into());
        }
        Ok(())
    }
}

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The settings are inconsistent.
    #[error("invalid transport config: {0}")]
    Config(String),
    /// The listener has no local address.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// A running transport: one worker's connections to all its peers.
#[derive(Debug)]
pub struct Transport {
    worker: u32,
    local_addr: SocketAddr,
    links: HashMap<u32, Arc<Link>>,
    addrs: HashMap<u32, Arc<PeerAddr>>,
    counters: Arc<Counters>,
    tasks: Vec<JoinHandle<()>>,
    stop: CancellationToken,
}

/// The address a worker listens on when not told otherwise: loopback, a free port.
pub const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Binds a worker's listener on `addr`, or on [`DEFAULT_LISTEN`] (127.0.0.1) when `None`.
pub async fn bind(addr: Option<SocketAddr>) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr.unwrap_or(DEFAULT_LISTEN)).await
}

impl Transport {
    /// Starts accepting on `listener` and connecting to peers, until `shutdown` completes.
    ///
    /// Must be called inside a tokio runtime. Returns the transport and the channel on which
    /// everything peers send arrives (it disconnects once the transport has shut down).
    pub fn start(
        config: TransportConfig,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(Transport, crossbeam_channel::Receiver<Delivery>), TransportError> {
        let (inbound_tx, inbound_rx) = crossbeam_channel::unbounded();
        let transport = Transport::start_with(config, listener, shutdown, Arc::new(inbound_tx))?;
        Ok((transport, inbound_rx))
    }

    /// [`Transport::start`], handing every delivery to `inbound` on the I/O threads (it
    /// is dropped once the transport has shut down) instead of into a channel.
    pub fn start_with(
        config: TransportConfig,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
        inbound: Arc<dyn Deliver>,
    ) -> Result<Transport, TransportError> {
        config.check()?;
        let local_addr = listener.local_addr()?;
        let config = Arc::new(config);
        let identity = Identity {
            fingerprint: config.fingerprint,
            worker: config.worker,
            workers: config.peers.len() as u32,
            secret: Arc::from(config.secret.as_slice()),
            encrypt: config.encrypt,
        };
        let token = CancellationToken::new();
        let counters = Arc::new(Counters::default());
        let mut tasks = Vec::new();
        let mut links = HashMap::new();
        let mut addrs = HashMap::new();
        let mut incoming = HashMap::new();

        for (peer, addr) in config.peers.iter().enumerate() {
            let peer = peer as u32;
            if peer == config.worker {
                continue;
            }
            let (queue_tx, queue_rx) = mpsc::channel(config.queue_frames);
            let (urgent_tx, urgent_rx) = mpsc::unbounded_channel();
            let link = Link::new(peer, config.max_frame_len, queue_tx, urgent_tx);
            let (in_tx, in_rx) = mpsc::channel(4);
            if peer < config.worker {
                incoming.insert(peer, in_tx);
            }
            links.insert(peer, link.clone());
            let addr = PeerAddr::new(*addr);
            addrs.insert(peer, addr.clone());
            let task = PeerTask {
                peer,
                addr,
                config: config.clone(),
                identity: identity.clone(),
                link,
                queue: queue_rx,
                urgent: urgent_rx,
                incoming: in_rx,
                inbound: Arc::clone(&inbound),
                counters: counters.clone(),
                shutdown: token.clone(),
            };
            tasks.push(tokio::spawn(task.run()));
        }
        drop(inbound);

        let stop = token.clone();
        let stop_handle = token.clone();
        tasks.push(tokio::spawn(async move {
            tokio::select! {
                _ = shutdown => stop.cancel(),
                _ = stop.cancelled() => {}
            }
        }));
        let peer_counters = links
            .iter()
            .map(|(peer, link)| (*peer, link.counters.clone()))
            .collect();
        tasks.push(tokio::spawn(accept_loop(
            listener,
            config.clone(),
            identity,
            incoming,
            peer_counters,
            counters.clone(),
            token,
        )));
        info!(worker = config.worker, addr = %local_addr, "Transport started.");
        Ok(Transport {
            worker: config.worker,
            local_addr,
            links,
            addrs,
            counters,
            tasks,
            stop: stop_handle,
        })
    }

    /// This worker's index.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A sender to worker `peer`; `None` for this worker itself or an unknown index.
    pub fn sender(&self, peer: u32) -> Option<PeerSender> {
        self.links.get(&peer).map(|l| PeerSender::new(l.clone()))
    }

    /// Tells the transport that worker `peer` now listens on `addr` (it restarted): the
    /// next dial goes there, at once if a dial is waiting out its backoff. Returns false
    /// for an unknown peer or this worker itself.
    pub fn set_peer_addr(&self, peer: u32, addr: SocketAddr) -> bool {
        match self.addrs.get(&peer) {
            Some(a) => {
                a.set(addr);
                true
            }
            None => false,
        }
    }

    /// Transport-wide counters.
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Traffic counters of worker `peer`.
    pub fn peer_counters(&self, peer: u32) -> Option<Arc<PeerCounters>> {
        self.links.get(&peer).map(|l| l.counters.clone())
    }

    /// Starts shutting down now, as if the `shutdown` future had completed: connections say
    /// `Goodbye`, senders get [`SendError::Closed`], the inbound channel disconnects.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits until the transport has shut down (after the `shutdown` future completed) and
    /// said `Goodbye` to its peers.
    pub async fn join(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: Arc<TransportConfig>,
    identity: Identity,
    incoming: HashMap<u32, mpsc::Sender<Established>>,
    peers: HashMap<u32, Arc<PeerCounters>>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let handshakes = HandshakeSlots::new(config.max_handshakes, config.max_handshakes_per_address);
    let incoming = Arc::new(incoming);
    let peers = Arc::new(peers);
    loop {
        let (stream, addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors or similar: back off instead of spinning.
                    warn!(error = %e, "Accept failed.");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        counters.count_accepted();
        let permit = match handshakes.try_take(addr.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                counters.count_closed(CloseReason::Flood);
                if let Some(not_logged) = handshakes.log_refusal() {
                    warn!(%addr, reason = %CloseReason::Flood, %why, not_logged, "Too many connections handshaking; connection closed (at most one such line a second).");
                }
                drop(stream);
                continue;
            }
        };
        let config = config.clone();
        let identity = identity.clone();
        let incoming = incoming.clone();
        let peers = peers.clone();
        let counters = counters.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let (mut reader, mut writer) = peer::framed(stream);
            let deadline = tokio::time::Instant::now() + config.handshake_timeout;
            let handshake = handshake::accept(&identity, &mut reader, &mut writer, Some(deadline));
            let (result, claimed) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = handshake => r,
            };
            drop(permit);
            match result {
                Ok((peer, session)) => {
                    counters.count_authenticated();
                    let (reader, writer) =
                        handshake::upgrade(reader, writer, session, config.max_frame_len);
                    let conn = Established {
                        peer,
                        addr,
                        reader,
                        writer,
                    };
                    if let Some(tx) = incoming.get(&peer) {
                        let _ = tx.send(conn).await;
                    }
                }
                Err(e) => {
                    let reason = CloseReason::from(&e);
                    counters.count_closed(reason);
                    if let Some(peer) = claimed.and_then(|p| peers.get(&p)) {
                        peer.count_handshake_failure();
                    }
                    warn!(%addr, claimed, %reason, error = %e, "Handshake failed; connection closed.");
                }
            }
        });
    }
}
