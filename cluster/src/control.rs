//! Authenticated, encrypted control connections: client ↔ coordinator and coordinator ↔
//! supervisor.
//!
//! Every connection opens with the secure channel of `topo-transport`
//! ([`topo_transport::secure`]): a Noise `NNpsk0` handshake whose pre-shared key is derived
//! from the cluster [`Secret`] (purpose `control`), so the secret itself never crosses the
//! wire. Each side's hello is its [`Role`]. After the handshake every message is sealed
//! (ChaCha20-Poly1305 under Noise transport nonces): a frame that was injected, altered,
//! replayed, dropped or reordered on the way fails to open and is refused rather than acted
//! on ([`ControlError::BadTag`]), and nothing of a message is readable on the wire.
//!
//! # Wire
//! ```text
//! handshake (magic "TOPC", version 2; flights as in topo_transport::secure):
//!   Hello   = 0x01 | "TOPC" | version u16 BE | 1 | dialer role u8 | Noise message 1
//!   Answer  = 0x02 | 1 | acceptor role u8 | Noise message 2 (payload: the role again)
//!   Confirm = 0x03 | the dialer's first transport message (a tag)
//!   Refuse  = 0x04 | n | sender's role [n] | reason, UTF-8
//!   role: 1 client, 2 supervisor, 3 coordinator
//!
//! messages: sealed records (topo_transport::secure::Secure) whose plaintext is
//!   length u32 BE | msgpack of the message, named fields (at most MAX_MESSAGE_LEN bytes)
//! ```
//!
//! The acceptor refuses a dialer whose first message does not prove the key (a `Refuse`
//! with the reason, logged), and trusts it only after its `Confirm`, so a recorded
//! handshake replayed gains nothing. The acceptor never hands a connection to its caller
//! before the dialer is authenticated: a peer that fails the handshake reaches no message
//! handler. Unauthenticated connections are bounded in number
//! ([`ListenOptions::max_handshakes`], and per source address
//! [`ListenOptions::max_handshakes_per_address`], so a flood from one address cannot lock
//! the others out) and time ([`HANDSHAKE_TIMEOUT`]), and run beside each other, so a
//! silent or hostile peer never holds up the next connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{FramedRead, FramedWrite};

use topo_transport::secure::{self, Check, Handshake, Profile, Psk, Secure, Session};
use topo_transport::slots::HandshakeSlots;
use topo_transport::RawCodec;

pub use topo_transport::secure::MAX_REASON_LEN;
pub use topo_transport::secure::{HandshakeError, MAX_FLIGHT_LEN as HANDSHAKE_MAX_FRAME_LEN};
pub use topo_transport::{FrameError, HEADER_LEN};

use crate::secret::{check_bind, Secret, SecretError};

/// Largest message (its msgpack encoding): 16 MiB.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;
/// How long a peer may take to finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The magic that opens every `Hello`: ASCII `TOPC`.
pub const MAGIC: [u8; 4] = *b"TOPC";
/// The control protocol version; both sides must speak the same. Version 2: Noise.
pub const VERSION: u16 = 2;

/// The secure channel's settings for control connections: always encrypted.
pub const PROFILE: Profile = Profile {
    magic: MAGIC,
    version: VERSION,
    purpose: "control",
    secret: "cluster secret",
    encrypt: true,
};

/// Who is on the other end of a control connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A `topo submit|list|kill|...` client.
    Client,
    /// A supervisor daemon.
    Supervisor,
    /// The coordinator daemon.
    Coordinator,
}

impl Role {
    fn byte(self) -> u8 {
        match self {
            Role::Client => 1,
            Role::Supervisor => 2,
            Role::Coordinator => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Client),
            2 => Some(Role::Supervisor),
            3 => Some(Role::Coordinator),
            _ => None,
        }
    }

    /// The role a hello names, if it is one.
    fn from_hello(hello: &[u8]) -> Result<Role, HandshakeError> {
        match hello {
            [b] => Role::from_byte(*b).ok_or(HandshakeError::UnknownRole(*b)),
            _ => Err(HandshakeError::Malformed {
                what: "role",
                len: hello.len(),
            }),
        }
    }

    /// Lowercase name: `client`, `supervisor`, `coordinator`.
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Supervisor => "supervisor",
            Role::Coordinator => "coordinator",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What can go wrong on a control connection.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No secret and a non-loopback address.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The TCP connection or our side of the handshake failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialed.
        addr: SocketAddr,
        /// Why.
        source: HandshakeError,
    },
    /// The other side refused us during the handshake.
    #[error("the {} refused the connection: {reason}", by.map_or("peer", Role::name))]
    Refused {
        /// The refusing side's role, if it said (unauthenticated).
        by: Option<Role>,
        /// Its reason (untrusted text, sanitized).
        reason: String,
    },
    /// A message frame failed to open: altered, injected, replayed or reordered.
    #[error("control frame failed authentication (altered, replayed or reordered)")]
    BadTag,
    /// A message too large to send.
    #[error("message of {len} bytes exceeds the limit of {MAX_MESSAGE_LEN}")]
    TooLarge {
        /// Its encoded length.
        len: usize,
    },
    /// A message could not be encoded.
    #[error("cannot encode a control message: {0}")]
    Encode(String),
    /// An authenticated message is not what the receiver expects.
    #[error("malformed control message: {0}")]
    Decode(String),
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(FrameError),
    /// The listener's accept task stopped.
    #[error("the listener stopped")]
    ListenerClosed,
}

impl From<FrameError> for ControlError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::Unsealed => ControlError::BadTag,
            e => ControlError::Frame(e),
        }
    }
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
type Reader = FramedRead<BoxRead, Secure<RawCodec>>;
type Writer = FramedWrite<BoxWrite, Secure<RawCodec>>;

fn psk(secret: &Secret) -> Psk {
    Psk::derive(secret.key(), PROFILE.purpose)
}

/// Judges a peer's hello: it must name a role.
fn check() -> Check {
    Arc::new(|hello: &[u8]| Role::from_hello(hello).map(|r| r.name().to_string()))
}

/// Runs one side of the handshake over `r`/`w` (the dialer when `dial`) until `deadline`;
/// tells the peer why when it fails; on success the connection, sealed.
async fn handshake(
    r: BoxRead,
    w: BoxWrite,
    peer: SocketAddr,
    secret: &Secret,
    role: Role,
    dial: bool,
    deadline: Option<tokio::time::Instant>,
) -> Result<Conn, HandshakeError> {
    let (mut reader, mut writer) = secure::framed(r, w);
    let (mut hs, first) = if dial {
        let (hs, hello) = Handshake::dial(PROFILE, &psk(secret), &[role.byte()], check())?;
        (hs, Some(hello))
    } else {
        (
            Handshake::accept(PROFILE, &psk(secret), &[role.byte()], check()),
            None,
        )
    };
    let session = secure::run(&mut hs, first, &mut reader, &mut writer, deadline).await?;
    Conn::new(reader, writer, session, peer)
}

/// The receiving half of a [`Conn`].
pub struct ConnReader {
    inner: Reader,
}

/// The sending half of a [`Conn`].
pub struct ConnWriter {
    inner: Writer,
}

impl fmt::Debug for ConnReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnReader").finish_non_exhaustive()
    }
}

impl fmt::Debug for ConnWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnWriter").finish_non_exhaustive()
    }
}

impl ConnReader {
    /// The next message; `None` when the peer closed the connection cleanly.
    ///
    /// Cancel-safe: it may be used in `tokio::select!`.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ControlError> {
        let Some(body) = self.inner.next().await else {
            return Ok(None);
        };
        let body = body?;
        rmp_serde::from_slice(&body)
            .map(Some)
            .map_err(|e| ControlError::Decode(e.to_string()))
    }
}

impl ConnWriter {
    /// Sends one message (msgpack with named fields) and flushes.
    pub async fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), ControlError> {
        let bytes =
            rmp_serde::to_vec_named(msg).map_err(|e| ControlError::Encode(e.to_string()))?;
        if bytes.len() > MAX_MESSAGE_LEN {
            return Err(ControlError::TooLarge { len: bytes.len() });
        }
        self.inner.send(Bytes::from(bytes)).await?;
        Ok(())
    }
}

/// An authenticated, encrypted control connection.
#[derive(Debug)]
pub struct Conn {
    reader: ConnReader,
    writer: ConnWriter,
    peer: SocketAddr,
    peer_role: Role,
}

impl Conn {
    fn new(
        reader: FramedRead<BoxRead, RawCodec>,
        writer: FramedWrite<BoxWrite, RawCodec>,
        session: Session,
        peer: SocketAddr,
    ) -> Result<Conn, HandshakeError> {
        let peer_role = Role::from_hello(session.peer_hello())?;
        let (reader, writer) =
            secure::upgrade(reader, writer, session, || RawCodec::new(MAX_MESSAGE_LEN));
        Ok(Conn {
            reader: ConnReader { inner: reader },
            writer: ConnWriter { inner: writer },
            peer,
            peer_role,
        })
    }

    /// Sends one message; see [`ConnWriter::send`].
    pub async fn send<T: Serialize + ?Sized>(&mut self, msg: &T) -> Result<(), ControlError> {
        self.writer.send(msg).await
    }

    /// Receives one message; see [`ConnReader::recv`].
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ControlError> {
        self.reader.recv().await
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// The peer's authenticated role.
    pub fn peer_role(&self) -> Role {
        self.peer_role
    }

    /// Splits into a reader and a writer for separate tasks. Dropping the writer ends the
    /// peer's stream cleanly (its `recv` returns `None`).
    pub fn split(self) -> (ConnReader, ConnWriter) {
        (self.reader, self.writer)
    }
}

/// Dials `addr` as `role` and authenticates both ways within [`HANDSHAKE_TIMEOUT`].
pub async fn connect(addr: SocketAddr, secret: &Secret, role: Role) -> Result<Conn, ControlError> {
    connect_within(addr, secret, role, HANDSHAKE_TIMEOUT).await
}

/// [`connect`] with another timeout for the TCP connect and the handshake together.
pub async fn connect_within(
    addr: SocketAddr,
    secret: &Secret,
    role: Role,
    timeout: Duration,
) -> Result<Conn, ControlError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let attempt = async {
        let stream = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
            .await
            .map_err(|_| HandshakeError::TimedOut)??;
        stream.set_nodelay(true)?;
        let (r, w) = stream.into_split();
        handshake(
            Box::new(r),
            Box::new(w),
            addr,
            secret,
            role,
            true,
            Some(deadline),
        )
        .await
    };
    let result = attempt.await;
    result.map_err(|source| match source {
        HandshakeError::PeerRefused { hello, reason } => ControlError::Refused {
            by: Role::from_hello(&hello).ok(),
            reason,
        },
        source => ControlError::Connect { addr, source },
    })
}

/// Splits any stream into boxed halves.
fn halves<S>(stream: S) -> (BoxRead, BoxWrite)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(stream);
    (Box::new(r), Box::new(w))
}

#[cfg(test)]
async fn dial_on<S>(
    stream: S,
    peer: SocketAddr,
    secret: &Secret,
    role: Role,
) -> Result<Conn, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = halves(stream);
    handshake(r, w, peer, secret, role, true, None).await
}

/// How a [`Listener`] treats connections before they are authenticated.
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// The role this side announces (the coordinator's by default).
    pub role: Role,
    /// How long a peer may take to finish the handshake.
    pub handshake_timeout: Duration,
    /// How many connections may be in their handshake at once; more are refused at once.
    pub max_handshakes: usize,
    /// Of those, how many may come from one source address, so that a flood from one
    /// address leaves slots for the others.
    pub max_handshakes_per_address: usize,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            role: Role::Coordinator,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_handshakes: 64,
            max_handshakes_per_address: 16,
        }
    }
}

type Accepted = (Conn, Role, SocketAddr);

/// Accepts control connections and hands out only those that authenticated.
///
/// Handshakes run in a background task, each beside the others; a failed one is logged at
/// WARN (`refused ADDR: REASON`), the peer gets a `Refuse` frame with the reason, and the
/// listener keeps accepting. Dropping the listener stops it and every pending handshake.
#[derive(Debug)]
pub struct Listener {
    accepted: Mutex<mpsc::Receiver<Accepted>>,
    local: SocketAddr,
    refused: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Binds `addr` as the coordinator; without a secret only loopback is allowed.
    pub async fn bind(addr: SocketAddr, secret: &Secret) -> Result<Listener, ControlError> {
        Listener::bind_with(addr, secret, ListenOptions::default()).await
    }

    /// [`Listener::bind`] with options.
    pub async fn bind_with(
        addr: SocketAddr,
        secret: &Secret,
        options: ListenOptions,
    ) -> Result<Listener, ControlError> {
        check_bind(addr, secret)?;
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|source| ControlError::Bind { addr, source })?;
        Listener::from_tcp(tcp, secret, options)
    }

    /// Serves an already bound socket (tests bind `127.0.0.1:0`). Checks its address as
    /// [`Listener::bind`] does.
    pub fn from_tcp(
        tcp: TcpListener,
        secret: &Secret,
        options: ListenOptions,
    ) -> Result<Listener, ControlError> {
        let local = tcp.local_addr().map_err(|source| ControlError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        check_bind(local, secret)?;
        let (tx, rx) = mpsc::channel(16);
        let refused = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(tcp, secret.clone(), options, tx, refused.clone()));
        Ok(Listener {
            accepted: Mutex::new(rx),
            local,
            refused,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How many connections were refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// The next authenticated connection: the connection, the peer's role and address.
    pub async fn accept(&self) -> Result<(Conn, Role, SocketAddr), ControlError> {
        self.accepted
            .lock()
            .await
            .recv()
            .await
            .ok_or(ControlError::ListenerClosed)
    }
}

async fn serve(
    tcp: TcpListener,
    secret: Secret,
    options: ListenOptions,
    tx: mpsc::Sender<Accepted>,
    refused: Arc<AtomicU64>,
) {
    let secret = Arc::new(secret);
    let slots = HandshakeSlots::new(options.max_handshakes, options.max_handshakes_per_address);
    let mut pending = JoinSet::new();
    loop {
        while pending.try_join_next().is_some() {}
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // EMFILE and friends pass; back off instead of spinning on them.
                tracing::warn!(error = %e, "Accept failed.");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let permit = match slots.try_take(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                refused.fetch_add(1, Ordering::Relaxed);
                let reason = HandshakeError::Busy(why).to_string();
                if let Some(not_logged) = slots.log_refusal() {
                    tracing::warn!(
                        not_logged,
                        "refused {peer}: {reason} (at most one such line a second)"
                    );
                }
                // A fresh socket's send buffer is empty: this never blocks, and is best effort.
                let body = secure::refusal(&[], &reason);
                let mut frame = (body.len() as u32).to_be_bytes().to_vec();
                frame.extend_from_slice(&body);
                let _ = stream.try_write(&frame);
                continue;
            }
        };
        let (secret, options, tx, refused) =
            (secret.clone(), options.clone(), tx.clone(), refused.clone());
        pending.spawn(async move {
            let (r, w) = stream.into_split();
            let deadline = tokio::time::Instant::now() + options.handshake_timeout;
            let (r, w): (BoxRead, BoxWrite) = (Box::new(r), Box::new(w));
            let result = handshake(r, w, peer, &secret, options.role, false, Some(deadline)).await;
            drop(permit);
            match result {
                Ok(conn) => {
                    let role = conn.peer_role();
                    let _ = tx.send((conn, role, peer)).await;
                }
                Err(e) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("refused {peer}: {e}");
                }
            }
        });
    }
}

/// Runs the acceptor's side of the handshake over any stream (a pipe, an in-memory
/// stream: the fuzz target feeds it arbitrary bytes), without a timeout (wrap it).
/// `peer` is what [`Conn::peer_addr`] will report.
pub async fn accept_on<S>(
    stream: S,
    peer: SocketAddr,
    secret: &Secret,
    role: Role,
) -> Result<Conn, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = halves(stream);
    handshake(r, w, peer, secret, role, false, None).await
}

#[cfg(test)]
mod tests;
