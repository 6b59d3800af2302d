//! Authenticated control connections: client ↔ coordinator and coordinator ↔ supervisor.
//!
//! Every connection opens with a mutual HMAC-SHA256 challenge–response keyed with the
//! cluster [`Secret`]; the secret itself never crosses the wire. After the handshake every
//! frame carries a tag under a per-connection, per-direction session key and a sequence
//! number, so a frame that was injected, altered, replayed or reordered on the way is
//! refused rather than acted on.
//!
//! # Wire
//! ```text
//! +---- HEADER_LEN ----+------------------ length bytes ------------------+
//! | length: u32, BE    | body                                               |
//! +--------------------+----------------------------------------------------+
//!
//! handshake bodies (at most HANDSHAKE_MAX_FRAME_LEN bytes until the peer is authenticated):
//!   Hello  = 0x01 | magic "TOPC" | version u16 BE | role u8 | nonce [32]     (40 bytes)
//!   Auth   = 0x02 | mac [32]                                                 (33 bytes)
//!   Refuse = 0x03 | reason, UTF-8                                    (at most 257 bytes)
//!
//! message bodies (at most MAX_MESSAGE_LEN + TAG_LEN bytes):
//!   msgpack of the message, named fields | tag [32]
//!   tag = HMAC-SHA256(session key of this direction, seq u64 BE || msgpack)
//! ```
//!
//! # Handshake
//! ```text
//! dialer (role rd)                              acceptor (role ra)
//!   Hello{rd, nd}                            ->
//!                                            <-  Hello{ra, na}      (or Refuse: magic, version)
//!   checks magic, version
//!   Auth{mac_d}                              ->
//!                                                verifies mac_d, else Refuse{reason}, logged
//!                                            <-  Auth{mac_a}
//!   verifies mac_a, else closes
//!
//! T       = nd || na || rd || ra
//! mac_d   = HMAC-SHA256(secret, "topo-control-v1" || "dialer"   || T)
//! mac_a   = HMAC-SHA256(secret, "topo-control-v1" || "acceptor" || T)
//! key d→a = HMAC-SHA256(secret, "topo-control-v1" || "key dialer to acceptor" || T)
//! key a→d = HMAC-SHA256(secret, "topo-control-v1" || "key acceptor to dialer" || T)
//! ```
//!
//! Both nonces are fresh per connection from the thread-local CSPRNG, so no answer can be
//! replayed on another connection, and the role labels keep one side's answer from being
//! reflected as the other's. Tags are compared in constant time. The dialer proves itself
//! first, so a dialer with a wrong secret learns nothing but the refusal. The acceptor
//! never hands a connection to its caller before the dialer is authenticated: a peer that
//! fails the handshake reaches no message handler. Unauthenticated connections are bounded
//! in number ([`ListenOptions::max_handshakes`]) and time ([`HANDSHAKE_TIMEOUT`]), and run
//! beside each other, so a silent or hostile peer never holds up the next connection.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use hmac::Mac;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

use crate::secret::{check_bind, hmac, mac_with, Secret, SecretError};

/// Bytes of the length prefix before every frame body.
pub const HEADER_LEN: usize = 4;
/// Largest message (its msgpack encoding): 16 MiB.
pub const MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;
/// Bytes of the HMAC-SHA256 tag after every message.
pub const TAG_LEN: usize = 32;
/// Bytes of a handshake nonce.
pub const NONCE_LEN: usize = 32;
/// Largest frame body accepted before the peer is authenticated.
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 512;
/// Largest refusal reason sent or shown, in bytes.
pub const MAX_REASON_LEN: usize = 256;
/// How long a peer may take to finish the handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// The magic that opens every `Hello`: ASCII `TOPC`.
pub const MAGIC: [u8; 4] = *b"TOPC";
/// The control protocol version; both sides must speak the same.
pub const VERSION: u16 = 1;

const LABEL: &[u8] = b"topo-control-v1";
const HELLO: u8 = 0x01;
const AUTH: u8 = 0x02;
const REFUSE: u8 = 0x03;
const HELLO_LEN: usize = 1 + 4 + 2 + 1 + NONCE_LEN;
const AUTH_LEN: usize = 1 + TAG_LEN;

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

/// A frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix announces more than the current limit.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// The announced length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("connection closed inside a frame")]
    Truncated,
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Why a handshake failed. The acceptor logs it as the reason of the refusal.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The peer's answer to our challenge is wrong: it does not hold our secret.
    #[error("authentication failed (wrong cluster secret?)")]
    BadAuth,
    /// The acceptor's answer to our challenge is wrong.
    #[error("the {0} failed authentication (wrong cluster secret?)")]
    PeerBadAuth(Role),
    /// The first bytes are not a control `Hello`.
    #[error("not a topo control connection")]
    NotControl,
    /// The peer speaks another protocol version.
    #[error("control protocol version {got}, expected {expected}")]
    BadVersion {
        /// The peer's.
        got: u16,
        /// Ours.
        expected: u16,
    },
    /// The peer claims a role this build does not know.
    #[error("unknown role {0}")]
    UnknownRole(u8),
    /// A handshake frame of the wrong length.
    #[error("malformed {what} frame of {len} bytes")]
    Malformed {
        /// `Hello` or `Auth`.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A frame that does not belong here.
    #[error("unexpected {got} frame during the handshake, expected {expected}")]
    Unexpected {
        /// The frame received.
        got: &'static str,
        /// The frame expected.
        expected: &'static str,
    },
    /// The other side refused, with this reason (untrusted text, sanitized).
    #[error("the peer refused: {0}")]
    PeerRefused(String),
    /// The peer closed the connection.
    #[error("connection closed during the handshake")]
    Closed,
    /// The peer took longer than the handshake timeout.
    #[error("handshake timed out")]
    TimedOut,
    /// Too many connections are in their handshake at once.
    #[error("too many connections in their handshake")]
    Busy,
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Frame(FrameError::Io(e))
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
        /// The refusing side's role, if its `Hello` arrived.
        by: Option<Role>,
        /// Its reason (untrusted text, sanitized).
        reason: String,
    },
    /// A message frame failed its tag: altered, injected, replayed or reordered.
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
    Frame(#[from] FrameError),
    /// The listener's accept task stopped.
    #[error("the listener stopped")]
    ListenerClosed,
}

/// Length-prefixed frames with a maximum body length ([`HEADER_LEN`] bytes of u32 BE).
#[derive(Debug, Clone)]
struct FrameCodec {
    max: usize,
}

impl Decoder for FrameCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; HEADER_LEN];
        len_bytes.copy_from_slice(header);
        let len = u32::from_be_bytes(len_bytes) as usize;
        if len > self.max {
            return Err(FrameError::TooLarge { len, max: self.max });
        }
        if src.len() < HEADER_LEN + len {
            src.reserve(HEADER_LEN + len - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        Ok(Some(src.split_to(len)))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        if body.len() > self.max {
            return Err(FrameError::TooLarge {
                len: body.len(),
                max: self.max,
            });
        }
        dst.reserve(HEADER_LEN + body.len());
        dst.extend_from_slice(&(body.len() as u32).to_be_bytes());
        dst.extend_from_slice(&body);
        Ok(())
    }
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;
type Reader = FramedRead<BoxRead, FrameCodec>;
type Writer = FramedWrite<BoxWrite, FrameCodec>;

/// Frames a TCP stream; dropping the writer shuts down our sending side (the peer reads
/// a clean end of stream).
fn framed_tcp(stream: TcpStream) -> (Reader, Writer) {
    let (r, w) = stream.into_split();
    framed_halves(Box::new(r), Box::new(w))
}

/// Frames any stream (the tests use in-memory ones).
#[cfg(test)]
fn framed<S>(stream: S) -> (Reader, Writer)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (r, w) = tokio::io::split(stream);
    framed_halves(Box::new(r), Box::new(w))
}

fn framed_halves(r: BoxRead, w: BoxWrite) -> (Reader, Writer) {
    let codec = FrameCodec {
        max: HANDSHAKE_MAX_FRAME_LEN,
    };
    (
        FramedRead::new(r, codec.clone()),
        FramedWrite::new(w, codec),
    )
}

/// A handshake frame.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hs {
    Hello {
        magic: [u8; 4],
        version: u16,
        role: u8,
        nonce: [u8; NONCE_LEN],
    },
    Auth([u8; TAG_LEN]),
    Refuse(String),
}

impl Hs {
    fn hello(role: Role, nonce: [u8; NONCE_LEN]) -> Hs {
        Hs::Hello {
            magic: MAGIC,
            version: VERSION,
            role: role.byte(),
            nonce,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Hs::Hello { .. } => "Hello",
            Hs::Auth(_) => "Auth",
            Hs::Refuse(_) => "Refuse",
        }
    }

    fn encode(&self) -> Bytes {
        let mut out = Vec::with_capacity(HELLO_LEN);
        match self {
            Hs::Hello {
                magic,
                version,
                role,
                nonce,
            } => {
                out.push(HELLO);
                out.extend_from_slice(magic);
                out.extend_from_slice(&version.to_be_bytes());
                out.push(*role);
                out.extend_from_slice(nonce);
            }
            Hs::Auth(mac) => {
                out.push(AUTH);
                out.extend_from_slice(mac);
            }
            Hs::Refuse(reason) => {
                out.push(REFUSE);
                out.extend_from_slice(sanitize(reason).as_bytes());
            }
        }
        Bytes::from(out)
    }

    fn decode(body: &[u8]) -> Result<Hs, HandshakeError> {
        match body.first() {
            Some(&HELLO) => {
                if body.len() != HELLO_LEN {
                    return Err(HandshakeError::Malformed {
                        what: "Hello",
                        len: body.len(),
                    });
                }
                let mut magic = [0u8; 4];
                magic.copy_from_slice(&body[1..5]);
                let version = u16::from_be_bytes([body[5], body[6]]);
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(&body[8..]);
                Ok(Hs::Hello {
                    magic,
                    version,
                    role: body[7],
                    nonce,
                })
            }
            Some(&AUTH) => {
                if body.len() != AUTH_LEN {
                    return Err(HandshakeError::Malformed {
                        what: "Auth",
                        len: body.len(),
                    });
                }
                let mut mac = [0u8; TAG_LEN];
                mac.copy_from_slice(&body[1..]);
                Ok(Hs::Auth(mac))
            }
            Some(&REFUSE) => Ok(Hs::Refuse(sanitize(&String::from_utf8_lossy(&body[1..])))),
            _ => Err(HandshakeError::NotControl),
        }
    }
}

/// Untrusted text made safe to print: no control characters, at most [`MAX_REASON_LEN`]
/// bytes.
fn sanitize(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = if c.is_control() { '?' } else { c };
        if out.len() + c.len_utf8() > MAX_REASON_LEN {
            break;
        }
        out.push(c);
    }
    out
}

/// Checks a peer's `Hello`; returns its role and nonce.
fn check_hello(hs: Hs, expected: &'static str) -> Result<(Role, [u8; NONCE_LEN]), HandshakeError> {
    match hs {
        Hs::Hello {
            magic,
            version,
            role,
            nonce,
        } => {
            if magic != MAGIC {
                return Err(HandshakeError::NotControl);
            }
            if version != VERSION {
                return Err(HandshakeError::BadVersion {
                    got: version,
                    expected: VERSION,
                });
            }
            let role = Role::from_byte(role).ok_or(HandshakeError::UnknownRole(role))?;
            Ok((role, nonce))
        }
        Hs::Refuse(reason) => Err(HandshakeError::PeerRefused(reason)),
        other => Err(HandshakeError::Unexpected {
            got: other.kind(),
            expected,
        }),
    }
}

/// The handshake transcript both MACs and both session keys cover.
struct Transcript {
    bytes: Vec<u8>,
}

impl Transcript {
    fn new(nd: &[u8; NONCE_LEN], na: &[u8; NONCE_LEN], rd: Role, ra: Role) -> Transcript {
        let mut bytes = Vec::with_capacity(2 * NONCE_LEN + 2);
        bytes.extend_from_slice(nd);
        bytes.extend_from_slice(na);
        bytes.push(rd.byte());
        bytes.push(ra.byte());
        Transcript { bytes }
    }

    fn mac(&self, key: &[u8], who: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = mac_with(key);
        mac.update(LABEL);
        mac.update(who);
        mac.update(&self.bytes);
        mac
    }

    fn answer(&self, key: &[u8], who: &[u8]) -> [u8; TAG_LEN] {
        self.mac(key, who).finalize().into_bytes().into()
    }

    /// Constant-time check of the peer's answer.
    fn verify(&self, key: &[u8], who: &[u8], tag: &[u8]) -> bool {
        self.mac(key, who).verify_slice(tag).is_ok()
    }

    fn session_key(&self, key: &[u8], direction: &[u8]) -> [u8; 32] {
        hmac(key, &[LABEL, direction, &self.bytes])
    }
}

const DIALER: &[u8] = b"dialer";
const ACCEPTOR: &[u8] = b"acceptor";
const KEY_D2A: &[u8] = b"key dialer to acceptor";
const KEY_A2D: &[u8] = b"key acceptor to dialer";

/// A fresh challenge from the thread-local CSPRNG.
fn nonce() -> [u8; NONCE_LEN] {
    use rand::Rng;
    let mut n = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut n);
    n
}

async fn next_hs(reader: &mut Reader) -> Result<Hs, HandshakeError> {
    match reader.next().await {
        Some(body) => Hs::decode(&body?),
        None => Err(HandshakeError::Closed),
    }
}

/// Best effort: tell the peer why, without waiting long on a peer that does not read.
async fn refuse(writer: &mut Writer, reason: &str) {
    let frame = Hs::Refuse(reason.to_string()).encode();
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.send(frame)).await;
}

/// The dialer's side. On a refusal by the acceptor, returns `Err(Refused)` with its role.
async fn dial_handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    secret: &Secret,
    role: Role,
    acceptor_role: &mut Option<Role>,
) -> Result<(Role, Keys), HandshakeError> {
    let nd = nonce();
    writer.send(Hs::hello(role, nd).encode()).await?;
    let (ra, na) = match check_hello(next_hs(reader).await?, "Hello") {
        Ok(hello) => hello,
        Err(e @ HandshakeError::PeerRefused(_)) => return Err(e),
        Err(e) => {
            refuse(writer, &e.to_string()).await;
            return Err(e);
        }
    };
    *acceptor_role = Some(ra);
    let t = Transcript::new(&nd, &na, role, ra);
    let key = secret.key();
    writer
        .send(Hs::Auth(t.answer(key, DIALER)).encode())
        .await?;
    match next_hs(reader).await? {
        Hs::Auth(mac) if t.verify(key, ACCEPTOR, &mac) => Ok((
            ra,
            Keys {
                send: t.session_key(key, KEY_D2A),
                recv: t.session_key(key, KEY_A2D),
            },
        )),
        Hs::Auth(_) => Err(HandshakeError::PeerBadAuth(ra)),
        Hs::Refuse(reason) => Err(HandshakeError::PeerRefused(reason)),
        other => Err(HandshakeError::Unexpected {
            got: other.kind(),
            expected: "Auth",
        }),
    }
}

/// The acceptor's side; returns the authenticated dialer's role.
async fn accept_handshake(
    reader: &mut Reader,
    writer: &mut Writer,
    secret: &Secret,
    role: Role,
) -> Result<(Role, Keys), HandshakeError> {
    let (rd, nd) = check_hello(next_hs(reader).await?, "Hello")?;
    let na = nonce();
    writer.send(Hs::hello(role, na).encode()).await?;
    let t = Transcript::new(&nd, &na, rd, role);
    let key = secret.key();
    match next_hs(reader).await? {
        Hs::Auth(mac) if t.verify(key, DIALER, &mac) => {}
        Hs::Auth(_) => return Err(HandshakeError::BadAuth),
        Hs::Refuse(reason) => return Err(HandshakeError::PeerRefused(reason)),
        other => {
            return Err(HandshakeError::Unexpected {
                got: other.kind(),
                expected: "Auth",
            })
        }
    }
    writer
        .send(Hs::Auth(t.answer(key, ACCEPTOR)).encode())
        .await?;
    Ok((
        rd,
        Keys {
            send: t.session_key(key, KEY_A2D),
            recv: t.session_key(key, KEY_D2A),
        },
    ))
}

struct Keys {
    send: [u8; 32],
    recv: [u8; 32],
}

/// `msg || HMAC(key, seq || msg)`.
fn seal(key: &[u8; 32], seq: u64, mut msg: Vec<u8>) -> Bytes {
    let mut mac = mac_with(key);
    mac.update(&seq.to_be_bytes());
    mac.update(&msg);
    msg.extend_from_slice(&mac.finalize().into_bytes());
    Bytes::from(msg)
}

/// Checks the tag of a sealed body (constant time); returns the message bytes.
fn open<'a>(key: &[u8; 32], seq: u64, body: &'a [u8]) -> Result<&'a [u8], ControlError> {
    let split = body
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(ControlError::BadTag)?;
    let (msg, tag) = body.split_at(split);
    let mut mac = mac_with(key);
    mac.update(&seq.to_be_bytes());
    mac.update(msg);
    mac.verify_slice(tag).map_err(|_| ControlError::BadTag)?;
    Ok(msg)
}

/// The receiving half of a [`Conn`].
pub struct ConnReader {
    inner: Reader,
    key: [u8; 32],
    seq: u64,
}

/// The sending half of a [`Conn`].
pub struct ConnWriter {
    inner: Writer,
    key: [u8; 32],
    seq: u64,
}

impl fmt::Debug for ConnReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnReader")
            .field("seq", &self.seq)
            .finish()
    }
}

impl fmt::Debug for ConnWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnWriter")
            .field("seq", &self.seq)
            .finish()
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
        let msg = open(&self.key, self.seq, &body)?;
        self.seq += 1;
        rmp_serde::from_slice(msg)
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
        let body = seal(&self.key, self.seq, bytes);
        self.seq += 1;
        self.inner.send(body).await?;
        Ok(())
    }
}

/// An authenticated control connection.
#[derive(Debug)]
pub struct Conn {
    reader: ConnReader,
    writer: ConnWriter,
    peer: SocketAddr,
    peer_role: Role,
}

impl Conn {
    fn new(mut reader: Reader, writer: Writer, keys: Keys, peer: SocketAddr, role: Role) -> Conn {
        reader.decoder_mut().max = MAX_MESSAGE_LEN + TAG_LEN;
        let mut writer = writer;
        writer.encoder_mut().max = MAX_MESSAGE_LEN + TAG_LEN;
        Conn {
            reader: ConnReader {
                inner: reader,
                key: keys.recv,
                seq: 0,
            },
            writer: ConnWriter {
                inner: writer,
                key: keys.send,
                seq: 0,
            },
            peer,
            peer_role: role,
        }
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
    let mut acceptor = None;
    let attempt = async {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = framed_tcp(stream);
        let (ra, keys) =
            dial_handshake(&mut reader, &mut writer, secret, role, &mut acceptor).await?;
        Ok(Conn::new(reader, writer, keys, addr, ra))
    };
    let result = match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::TimedOut),
    };
    result.map_err(|source| match source {
        HandshakeError::PeerRefused(reason) => ControlError::Refused {
            by: acceptor,
            reason,
        },
        source => ControlError::Connect { addr, source },
    })
}

#[cfg(test)]
async fn dial_on<S>(
    stream: S,
    peer: SocketAddr,
    secret: &Secret,
    role: Role,
    acceptor: &mut Option<Role>,
) -> Result<Conn, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = framed(stream);
    let (ra, keys) = dial_handshake(&mut reader, &mut writer, secret, role, acceptor).await?;
    Ok(Conn::new(reader, writer, keys, peer, ra))
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
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            role: Role::Coordinator,
            handshake_timeout: HANDSHAKE_TIMEOUT,
            max_handshakes: 64,
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
    let slots = Arc::new(Semaphore::new(options.max_handshakes));
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
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            refused.fetch_add(1, Ordering::Relaxed);
            let reason = HandshakeError::Busy.to_string();
            tracing::warn!("refused {peer}: {reason}");
            // A fresh socket's send buffer is empty: this never blocks, and is best effort.
            let body = Hs::Refuse(reason).encode();
            let mut frame = (body.len() as u32).to_be_bytes().to_vec();
            frame.extend_from_slice(&body);
            let _ = stream.try_write(&frame);
            continue;
        };
        let (secret, options, tx, refused) =
            (secret.clone(), options.clone(), tx.clone(), refused.clone());
        pending.spawn(async move {
            let (mut reader, mut writer) = framed_tcp(stream);
            let handshake = accept_handshake(&mut reader, &mut writer, &secret, options.role);
            let result = tokio::time::timeout(options.handshake_timeout, handshake)
                .await
                .unwrap_or(Err(HandshakeError::TimedOut));
            drop(permit);
            match result {
                Ok((role, keys)) => {
                    let conn = Conn::new(reader, writer, keys, peer, role);
                    let _ = tx.send((conn, role, peer)).await;
                }
                Err(e) => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("refused {peer}: {e}");
                    if !matches!(e, HandshakeError::Closed | HandshakeError::PeerRefused(_)) {
                        refuse(&mut writer, &e.to_string()).await;
                    }
                }
            }
        });
    }
}

/// Runs the acceptor's handshake over any stream (for the tests).
#[cfg(test)]
async fn accept_on<S>(
    stream: S,
    peer: SocketAddr,
    secret: &Secret,
    role: Role,
) -> Result<Conn, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = framed(stream);
    let (rd, keys) = accept_handshake(&mut reader, &mut writer, secret, role).await?;
    Ok(Conn::new(reader, writer, keys, peer, rd))
}

#[cfg(test)]
mod tests;
