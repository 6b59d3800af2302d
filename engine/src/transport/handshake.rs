//! The handshake that opens every connection: identity checks and mutual HMAC authentication.
//!
//! The worker with the lower index dials; the other accepts. Three flights:
//!
//! ```text
//! dialer (worker d)                                   acceptor (worker a)
//!   Hello{MAGIC, VERSION, fingerprint, d, nonce_d}  ->
//!                                                      checks magic, version, fingerprint,
//!                                                      that d is a known worker below a
//!                                                   <-  Hello{MAGIC, VERSION, fingerprint, a, nonce_a}
//!                                                   <-  Auth{mac_a}
//!   checks the Hello, that its worker is a,
//!   verifies mac_a
//!   Auth{mac_d}                                     ->
//!                                                      verifies mac_d
//!
//! mac_a = HMAC-SHA256(secret, "topo-auth-v1" || "acceptor" || nonce_d || nonce_a
//!                             || fingerprint || a || d)                 (integers big-endian)
//! mac_d = HMAC-SHA256(secret, "topo-auth-v1" || "dialer"   || nonce_a || nonce_d
//!                             || fingerprint || d || a)
//! ```
//!
//! The secret never crosses the wire; each side proves it knows it by answering the other's
//! fresh random challenge, and the role label keeps one side's answer from being replayed as
//! the other's. Tags are compared in constant time. Anything unexpected is a
//! [`HandshakeError`], and the connection is closed.
//!
//! [`Handshake`] is the protocol as a state machine without I/O (so it can be fuzzed);
//! [`dial`] and [`accept`] drive it over a socket.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::frame::{Frame, FrameCodec, FrameError, Hello, MAGIC, NONCE_LEN, PROTOCOL_VERSION};

type HmacSha256 = hmac::Hmac<Sha256>;

const LABEL: &[u8] = b"topo-auth-v1";

/// What both sides of a handshake must agree on, and who this side is.
#[derive(Clone)]
pub struct Identity {
    /// Fingerprint of the physical plan.
    pub fingerprint: u64,
    /// This worker's index.
    pub worker: u32,
    /// Number of workers in the topology; valid indices are `0..workers`.
    pub workers: u32,
    /// The run's shared secret.
    pub secret: Arc<[u8]>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("worker", &self.worker)
            .field("workers", &self.workers)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why a handshake failed. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The first frame's magic number is not [`MAGIC`].
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    /// The peer speaks another protocol version.
    #[error("protocol version {got}, expected {expected}")]
    BadVersion {
        /// The peer's version.
        got: u16,
        /// Ours.
        expected: u16,
    },
    /// The peer runs another topology.
    #[error("topology fingerprint {got:#018x}, expected {expected:#018x}")]
    BadFingerprint {
        /// The peer's fingerprint.
        got: u64,
        /// Ours.
        expected: u64,
    },
    /// The peer claims a worker index that may not open this connection.
    #[error("unexpected worker index {got}: {why}")]
    BadWorker {
        /// The claimed index.
        got: u32,
        /// What was expected instead.
        why: String,
    },
    /// A nonce or tag of the wrong length.
    #[error("{what} of {got} bytes, expected {NONCE_LEN}")]
    BadLength {
        /// `nonce` or `mac`.
        what: &'static str,
        /// The length received.
        got: usize,
    },
    /// The peer's answer to our challenge is wrong: it does not know the secret.
    #[error("authentication failed")]
    BadAuth,
    /// A frame that does not belong at this point of the handshake.
    #[error("unexpected {got} frame during the handshake, expected {expected}")]
    Unexpected {
        /// The frame received.
        got: &'static str,
        /// The frame expected.
        expected: &'static str,
    },
    /// The handshake was already finished or failed.
    #[error("handshake already finished")]
    Finished,
    /// The peer closed the connection.
    #[error("connection closed during the handshake")]
    Closed,
    /// The peer took longer than the handshake timeout.
    #[error("handshake timed out")]
    TimedOut,
    /// A frame could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Dialer { expect: u32 },
    Acceptor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    AwaitHello,
    AwaitAuth { peer: u32 },
    Done,
    Failed,
}

/// The handshake as a state machine: feed it the peer's frames, send what it returns.
#[derive(Debug)]
pub struct Handshake {
    id: Identity,
    role: Role,
    nonce: [u8; NONCE_LEN],
    peer_nonce: [u8; NONCE_LEN],
    state: State,
    claimed: Option<u32>,
}

/// What to do after a frame was accepted.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send these frames (possibly none), then wait for the next one.
    Continue(Vec<Frame>),
    /// Send these frames; the peer with this worker index is authenticated.
    Done {
        /// Frames still to send.
        send: Vec<Frame>,
        /// The authenticated peer's worker index.
        peer: u32,
    },
}

impl Handshake {
    /// Starts a handshake as the dialer of worker `expect`, with our challenge `nonce`.
    /// Returns the machine and the `Hello` to send first.
    pub fn dial(id: Identity, expect: u32, nonce: [u8; NONCE_LEN]) -> (Handshake, Frame) {
        let hs = Handshake {
            id,
            role: Role::Dialer { expect },
            nonce,
            peer_nonce: [0; NONCE_LEN],
            state: State::AwaitHello,
            claimed: None,
        };
        let hello = hs.hello();
        (hs, hello)
    }

    /// Starts a handshake as the acceptor, with our challenge `nonce`.
    pub fn accept(id: Identity, nonce: [u8; NONCE_LEN]) -> Handshake {
        Handshake {
            id,
            role: Role::Acceptor,
            nonce,
            peer_nonce: [0; NONCE_LEN],
            state: State::AwaitHello,
            claimed: None,
        }
    }

    /// True once the peer is authenticated.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The worker index the peer's `Hello` gave, once it passed the identity checks (not
    /// yet authenticated until [`is_done`](Self::is_done)).
    pub fn claimed_peer(&self) -> Option<u32> {
        self.claimed
    }

    fn hello(&self) -> Frame {
        Frame::Hello(Hello {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            fingerprint: self.id.fingerprint,
            worker: self.id.worker,
            nonce: Bytes::copy_from_slice(&self.nonce),
        })
    }

    /// Feeds the peer's next frame. An error ends the handshake for good.
    pub fn on_frame(&mut self, frame: Frame) -> Result<Step, HandshakeError> {
        let result = self.step(frame);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn step(&mut self, frame: Frame) -> Result<Step, HandshakeError> {
        match (self.state, frame) {
            (State::AwaitHello, Frame::Hello(hello)) => {
                let peer = self.check_hello(&hello)?;
                self.state = State::AwaitAuth { peer };
                self.claimed = Some(peer);
                match self.role {
                    Role::Acceptor => Ok(Step::Continue(vec![
                        self.hello(),
                        Frame::Auth {
                            mac: self.answer(peer),
                        },
                    ])),
                    Role::Dialer { .. } => Ok(Step::Continue(Vec::new())),
                }
            }
            (State::AwaitAuth { peer }, Frame::Auth { mac }) => {
                if mac.len() != NONCE_LEN {
                    return Err(HandshakeError::BadLength {
                        what: "mac",
                        got: mac.len(),
                    });
                }
                self.verifier(peer)
                    .verify_slice(&mac)
                    .map_err(|_| HandshakeError::BadAuth)?;
                self.state = State::Done;
                let send = match self.role {
                    Role::Dialer { .. } => vec![Frame::Auth {
                        mac: self.answer(peer),
                    }],
                    Role::Acceptor => Vec::new(),
                };
                Ok(Step::Done { send, peer })
            }
            (State::AwaitHello, other) => Err(HandshakeError::Unexpected {
                got: other.kind(),
                expected: "Hello",
            }),
            (State::AwaitAuth { .. }, other) => Err(HandshakeError::Unexpected {
                got: other.kind(),
                expected: "Auth",
            }),
            (State::Done | State::Failed, _) => Err(HandshakeError::Finished),
        }
    }

    fn check_hello(&mut self, hello: &Hello) -> Result<u32, HandshakeError> {
        if hello.magic != MAGIC {
            return Err(HandshakeError::BadMagic(hello.magic));
        }
        if hello.version != PROTOCOL_VERSION {
            return Err(HandshakeError::BadVersion {
                got: hello.version,
                expected: PROTOCOL_VERSION,
            });
        }
        if hello.fingerprint != self.id.fingerprint {
            return Err(HandshakeError::BadFingerprint {
                got: hello.fingerprint,
                expected: self.id.fingerprint,
            });
        }
        match self.role {
            Role::Dialer { expect } if hello.worker != expect => {
                return Err(HandshakeError::BadWorker {
                    got: hello.worker,
                    why: format!("dialed worker {expect}"),
                });
            }
            Role::Acceptor if hello.worker >= self.id.worker => {
                return Err(HandshakeError::BadWorker {
                    got: hello.worker,
                    why: format!("only workers below {} dial it", self.id.worker),
                });
            }
            _ => {}
        }
        if hello.worker >= self.id.workers {
            return Err(HandshakeError::BadWorker {
                got: hello.worker,
                why: format!("the topology has {} workers", self.id.workers),
            });
        }
        if hello.nonce.len() != NONCE_LEN {
            return Err(HandshakeError::BadLength {
                what: "nonce",
                got: hello.nonce.len(),
            });
        }
        self.peer_nonce.copy_from_slice(&hello.nonce);
        Ok(hello.worker)
    }

    fn role_label(&self) -> (&'static [u8], &'static [u8]) {
        match self.role {
            Role::Dialer { .. } => (b"dialer", b"acceptor"),
            Role::Acceptor => (b"acceptor", b"dialer"),
        }
    }

    /// Our answer to the peer's challenge.
    fn answer(&self, peer: u32) -> Bytes {
        let (ours, _) = self.role_label();
        let mac = mac(
            &self.id.secret,
            ours,
            &self.peer_nonce,
            &self.nonce,
            self.id.fingerprint,
            self.id.worker,
            peer,
        );
        Bytes::copy_from_slice(&mac.finalize().into_bytes())
    }

    /// The MAC the peer's answer to our challenge must equal.
    fn verifier(&self, peer: u32) -> HmacSha256 {
        let (_, theirs) = self.role_label();
        mac(
            &self.id.secret,
            theirs,
            &self.nonce,
            &self.peer_nonce,
            self.id.fingerprint,
            peer,
            self.id.worker,
        )
    }
}

/// HMAC-SHA256(secret, LABEL || role || challenge || responder_nonce || fingerprint ||
/// responder || challenger).
fn mac(
    secret: &[u8],
    role: &[u8],
    challenge: &[u8],
    responder_nonce: &[u8],
    fingerprint: u64,
    responder: u32,
    challenger: u32,
) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(LABEL);
    mac.update(role);
    mac.update(challenge);
    mac.update(responder_nonce);
    mac.update(&fingerprint.to_be_bytes());
    mac.update(&responder.to_be_bytes());
    mac.update(&challenger.to_be_bytes());
    mac
}

/// A fresh random challenge from the thread-local CSPRNG.
pub fn nonce() -> [u8; NONCE_LEN] {
    use rand::Rng;
    let mut n = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut n);
    n
}

async fn drive<R, W>(
    hs: &mut Handshake,
    reader: &mut FramedRead<R, FrameCodec>,
    writer: &mut FramedWrite<W, FrameCodec>,
) -> Result<u32, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let frame = match reader.next().await {
            Some(frame) => frame?,
            None => return Err(HandshakeError::Closed),
        };
        match hs.on_frame(frame)? {
            Step::Continue(send) => {
                for f in send {
                    writer.feed(f).await?;
                }
                writer.flush().await?;
            }
            Step::Done { send, peer } => {
                for f in send {
                    writer.feed(f).await?;
                }
                writer.flush().await?;
                return Ok(peer);
            }
        }
    }
}

/// Runs the dialer's side of the handshake with worker `expect`; no timeout (wrap it).
pub async fn dial<R, W>(
    id: Identity,
    expect: u32,
    reader: &mut FramedRead<R, FrameCodec>,
    writer: &mut FramedWrite<W, FrameCodec>,
) -> Result<u32, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut hs, hello) = Handshake::dial(id, expect, nonce());
    writer.send(hello).await?;
    drive(&mut hs, reader, writer).await
}

/// Runs the acceptor's side of the handshake; returns the peer's worker index.
pub async fn accept<R, W>(
    id: Identity,
    reader: &mut FramedRead<R, FrameCodec>,
    writer: &mut FramedWrite<W, FrameCodec>,
) -> Result<u32, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hs = Handshake::accept(id, nonce());
    drive(&mut hs, reader, writer).await
}

/// Runs the acceptor's side within `timeout`; also returns the worker index the peer
/// claimed, if it got that far, so a failure can be counted against that peer.
pub(crate) async fn accept_within<R, W>(
    id: Identity,
    timeout: std::time::Duration,
    reader: &mut FramedRead<R, FrameCodec>,
    writer: &mut FramedWrite<W, FrameCodec>,
) -> (Result<u32, HandshakeError>, Option<u32>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hs = Handshake::accept(id, nonce());
    let result = tokio::time::timeout(timeout, drive(&mut hs, reader, writer))
        .await
        .unwrap_or(Err(HandshakeError::TimedOut));
    (result, hs.claimed_peer())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(worker: u32, secret: &[u8]) -> Identity {
        Identity {
            fingerprint: 0xfeed,
            worker,
            workers: 3,
            secret: Arc::from(secret),
        }
    }

    fn run(dialer: Identity, acceptor: Identity) -> Result<(u32, u32), HandshakeError> {
        let (mut d, hello) = Handshake::dial(dialer, 2, [1; NONCE_LEN]);
        let mut a = Handshake::accept(acceptor, [2; NONCE_LEN]);
        let Step::Continue(reply) = a.on_frame(hello)? else {
            panic!("acceptor finished early")
        };
        let mut reply = reply.into_iter();
        let a_hello = reply.next().expect("hello");
        let a_auth = reply.next().expect("auth");
        assert_eq!(d.on_frame(a_hello)?, Step::Continue(vec![]));
        let Step::Done { send, peer: dp } = d.on_frame(a_auth)? else {
            panic!("dialer not done")
        };
        let d_auth = send.into_iter().next().expect("auth");
        let Step::Done { send, peer: ap } = a.on_frame(d_auth)? else {
            panic!("acceptor not done")
        };
        assert!(send.is_empty());
        Ok((dp, ap))
    }

    #[test]
    fn same_secret_authenticates_both_ways() {
        let (dp, ap) = run(id(0, b"s3cret"), id(2, b"s3cret")).expect("handshake");
        assert_eq!((dp, ap), (2, 0));
    }

    #[test]
    fn wrong_secret_fails_on_the_dialer() {
        let err = run(id(0, b"s3cret"), id(2, b"other")).expect_err("must fail");
        assert_eq!(err.to_string(), "authentication failed");
    }

    #[test]
    fn acceptor_rejects_a_higher_index() {
        let mut a = Handshake::accept(id(1, b"s"), [2; NONCE_LEN]);
        let (_, hello) = Handshake::dial(id(2, b"s"), 1, [1; NONCE_LEN]);
        let err = a.on_frame(hello).expect_err("higher index");
        assert_eq!(
            err.to_string(),
            "unexpected worker index 2: only workers below 1 dial it"
        );
        assert!(matches!(
            a.on_frame(Frame::Heartbeat),
            Err(HandshakeError::Finished)
        ));
    }

    #[test]
    fn data_before_hello_is_unexpected() {
        let mut a = Handshake::accept(id(1, b"s"), [2; NONCE_LEN]);
        let err = a.on_frame(Frame::Heartbeat).expect_err("unexpected");
        assert_eq!(
            err.to_string(),
            "unexpected Heartbeat frame during the handshake, expected Hello"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_the_handshake() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (r, w) = tokio::io::split(ours);
        let mut reader = FramedRead::new(r, FrameCodec::new(256));
        let mut writer = FramedWrite::new(w, FrameCodec::new(256));
        let timeout = std::time::Duration::from_secs(5);
        let started = tokio::time::Instant::now();
        let (result, claimed) = accept_within(id(2, b"s"), timeout, &mut reader, &mut writer).await;
        assert!(matches!(result, Err(HandshakeError::TimedOut)));
        assert_eq!(
            result.map_err(|e| e.to_string()),
            Err("handshake timed out".into())
        );
        assert_eq!(claimed, None);
        assert_eq!(started.elapsed(), timeout);
        drop(theirs);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_after_hello_is_timed_out_and_named() {
        let (ours, theirs) = tokio::io::duplex(1024);
        let (r, w) = tokio::io::split(ours);
        let mut reader = FramedRead::new(r, FrameCodec::new(256));
        let mut writer = FramedWrite::new(w, FrameCodec::new(256));
        let (_, hello) = Handshake::dial(id(1, b"s"), 2, [1; NONCE_LEN]);
        let (_their_r, their_w) = tokio::io::split(theirs);
        let mut their_writer = FramedWrite::new(their_w, FrameCodec::new(256));
        their_writer.send(hello).await.expect("hello sent");
        let timeout = std::time::Duration::from_secs(5);
        let (result, claimed) = accept_within(id(2, b"s"), timeout, &mut reader, &mut writer).await;
        assert!(matches!(result, Err(HandshakeError::TimedOut)));
        assert_eq!(claimed, Some(1));
    }

    #[test]
    fn reflected_answer_is_rejected() {
        // The acceptor's own answer, sent back to it, must not authenticate the dialer.
        let mut a = Handshake::accept(id(2, b"s"), [2; NONCE_LEN]);
        let (_, hello) = Handshake::dial(id(0, b"s"), 2, [2; NONCE_LEN]);
        let Step::Continue(reply) = a.on_frame(hello).expect("hello ok") else {
            panic!("acceptor finished early")
        };
        let auth = reply.into_iter().nth(1).expect("auth");
        assert!(matches!(a.on_frame(auth), Err(HandshakeError::BadAuth)));
    }
}
