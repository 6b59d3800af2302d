//! The handshake as a state machine without I/O: feed it the peer's flights, send what it
//! returns.

use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use snow::params::NoiseParams;
use snow::StatelessTransportState;

use super::{Profile, Psk, MAX_HELLO_LEN, MAX_REASON_LEN, PATTERN};
use crate::frame::FrameError;
use crate::slots::NoSlot;

const HELLO: u8 = 0x01;
const ANSWER: u8 = 0x02;
const CONFIRM: u8 = 0x03;
const REFUSE: u8 = 0x04;
/// Bytes of an X25519 public key.
const DH_LEN: usize = 32;
/// Bytes of a ChaCha20-Poly1305 tag.
pub(super) const TAG_LEN: usize = 16;
/// Type byte, magic, version, hello length.
const HELLO_HEAD: usize = 1 + 4 + 2 + 1;

static PARAMS: LazyLock<NoiseParams> = LazyLock::new(|| {
    PATTERN
        .parse()
        .unwrap_or_else(|e| unreachable!("{PATTERN} is a valid Noise pattern: {e}"))
});

/// Judges the hello a peer says about itself (before any cryptography, so refusals are
/// precise); returns how to name the peer in messages (`coordinator`, `worker 2`).
pub type Check = Arc<dyn Fn(&[u8]) -> Result<String, HandshakeError> + Send + Sync>;

/// Why a handshake failed. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The first flight is not this kind of connection's `Hello` (another magic, or
    /// not a handshake at all).
    #[error("not a topo {0} connection")]
    Foreign(&'static str),
    /// The peer speaks another protocol version.
    #[error("{purpose} protocol version {got}, expected {expected}")]
    BadVersion {
        /// The connection's purpose.
        purpose: &'static str,
        /// The peer's version.
        got: u16,
        /// Ours.
        expected: u16,
    },
    /// A flight or hello of the wrong length.
    #[error("malformed {what} frame of {len} bytes")]
    Malformed {
        /// Which flight or field.
        what: &'static str,
        /// Its length.
        len: usize,
    },
    /// A flight that does not belong at this point.
    #[error("unexpected {got} frame during the handshake, expected {expected}")]
    Unexpected {
        /// The flight received.
        got: &'static str,
        /// The flight expected.
        expected: &'static str,
    },
    /// A worker runs another topology.
    #[error("topology fingerprint {got:#018x}, expected {expected:#018x}")]
    BadFingerprint {
        /// The peer's fingerprint.
        got: u64,
        /// Ours.
        expected: u64,
    },
    /// A worker claims an index that may not open this connection.
    #[error("unexpected worker index {got}: {why}")]
    BadWorker {
        /// The claimed index.
        got: u32,
        /// What was expected instead.
        why: String,
    },
    /// A control peer claims a role this build does not know.
    #[error("unknown role {0}")]
    UnknownRole(u8),
    /// The dialer's first message does not prove the key, or its `Confirm` does not
    /// (a replayed `Hello`): it does not hold our secret.
    #[error("authentication failed (wrong {0}?)")]
    BadAuth(&'static str),
    /// The acceptor's `Answer` does not prove the key.
    #[error("the {peer} failed authentication (wrong {secret}?)")]
    PeerBadAuth {
        /// How the acceptor named itself.
        peer: String,
        /// What the secret is called.
        secret: &'static str,
    },
    /// The other side refused, with this reason (untrusted text, sanitized).
    #[error("the peer refused: {reason}")]
    PeerRefused {
        /// The refusing side's hello (unauthenticated; may be empty).
        hello: Bytes,
        /// Its reason.
        reason: String,
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
    /// Too many connections are in their handshake at once, in all or from this address.
    #[error("{0}")]
    Busy(NoSlot),
    /// The Noise library refused an operation (a bug, not the peer's doing).
    #[error("noise: {0}")]
    Noise(String),
    /// A flight could not be read or written.
    #[error(transparent)]
    Frame(#[from] FrameError),
}

impl From<std::io::Error> for HandshakeError {
    fn from(e: std::io::Error) -> Self {
        HandshakeError::Frame(FrameError::Io(e))
    }
}

impl HandshakeError {
    /// True when the peer should be told (a `Refuse`): not when it left or refused us.
    pub fn tells_peer(&self) -> bool {
        !matches!(
            self,
            HandshakeError::Closed
                | HandshakeError::PeerRefused { .. }
                | HandshakeError::Frame(FrameError::Io(_))
        )
    }
}

fn noise_error(e: snow::Error) -> HandshakeError {
    HandshakeError::Noise(e.to_string())
}

/// A finished handshake: the keys of both directions and what the peer said about itself.
pub struct Session {
    pub(super) keys: Arc<StatelessTransportState>,
    pub(super) send_nonce: u64,
    pub(super) recv_nonce: u64,
    pub(super) encrypt: bool,
    peer_hello: Bytes,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("send_nonce", &self.send_nonce)
            .field("recv_nonce", &self.recv_nonce)
            .field("encrypt", &self.encrypt)
            .field("peer_hello", &self.peer_hello)
            .finish()
    }
}

impl Session {
    /// True when the frames after the handshake are sealed (the profile's setting).
    pub fn encrypts(&self) -> bool {
        self.encrypt
    }

    /// The authenticated peer's hello.
    pub fn peer_hello(&self) -> &[u8] {
        &self.peer_hello
    }
}

/// What to do after a flight was accepted.
#[derive(Debug)]
pub enum Step {
    /// Send this flight, then wait for the peer's next one.
    Send(Bytes),
    /// The peer is authenticated: send `send` if any, then use the session.
    Done {
        /// A last flight to send (the dialer's `Confirm`).
        send: Option<Bytes>,
        /// The keys and the peer's hello.
        session: Session,
    },
}

enum State {
    /// Acceptor: waiting for the dialer's `Hello`.
    AwaitHello,
    /// Dialer: waiting for the acceptor's `Answer`.
    AwaitAnswer(Box<snow::HandshakeState>),
    /// Acceptor: the Noise handshake is done; waiting for the dialer's `Confirm`.
    AwaitConfirm(Box<StatelessTransportState>),
    Done,
    Failed,
}

/// One side of a handshake.
pub struct Handshake {
    profile: Profile,
    psk: Psk,
    own: Bytes,
    check: Check,
    state: State,
    peer_hello: Option<Bytes>,
}

impl std::fmt::Debug for Handshake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::AwaitHello => "AwaitHello",
            State::AwaitAnswer(_) => "AwaitAnswer",
            State::AwaitConfirm(_) => "AwaitConfirm",
            State::Done => "Done",
            State::Failed => "Failed",
        };
        f.debug_struct("Handshake")
            .field("profile", &self.profile)
            .field("state", &state)
            .field("peer_hello", &self.peer_hello)
            .finish()
    }
}

/// A flight, parsed (not yet judged).
enum Flight<'a> {
    Hello {
        head: &'a [u8],
        version: u16,
        hello: &'a [u8],
        message: &'a [u8],
    },
    Answer {
        hello: &'a [u8],
        message: &'a [u8],
    },
    Confirm(&'a [u8]),
    Refuse {
        hello: &'a [u8],
        reason: String,
    },
}

impl Flight<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Flight::Hello { .. } => "Hello",
            Flight::Answer { .. } => "Answer",
            Flight::Confirm(_) => "Confirm",
            Flight::Refuse { .. } => "Refuse",
        }
    }
}

/// Splits `n u8 | hello [n] | rest`.
fn hello_and_rest<'a>(
    what: &'static str,
    body: &'a [u8],
    at: usize,
) -> Result<(&'a [u8], &'a [u8]), HandshakeError> {
    let bad = || HandshakeError::Malformed {
        what,
        len: body.len(),
    };
    let n = *body.get(at).ok_or_else(bad)? as usize;
    let hello = body.get(at + 1..at + 1 + n).ok_or_else(bad)?;
    if n > MAX_HELLO_LEN {
        return Err(bad());
    }
    Ok((hello, &body[at + 1 + n..]))
}

fn parse<'a>(profile: &Profile, body: &'a [u8]) -> Result<Flight<'a>, HandshakeError> {
    let malformed = |what| HandshakeError::Malformed {
        what,
        len: body.len(),
    };
    match body.first() {
        Some(&HELLO) => {
            if body.len() < HELLO_HEAD {
                return Err(malformed("Hello"));
            }
            if body[1..5] != profile.magic {
                return Err(HandshakeError::Foreign(profile.purpose));
            }
            let version = u16::from_be_bytes([body[5], body[6]]);
            let (hello, message) = hello_and_rest("Hello", body, HELLO_HEAD - 1)?;
            Ok(Flight::Hello {
                head: &body[..HELLO_HEAD + hello.len()],
                version,
                hello,
                message,
            })
        }
        Some(&ANSWER) => {
            let (hello, message) = hello_and_rest("Answer", body, 1)?;
            if message.len() != DH_LEN + hello.len() + TAG_LEN {
                return Err(malformed("Answer"));
            }
            Ok(Flight::Answer { hello, message })
        }
        Some(&CONFIRM) => {
            if body.len() != 1 + TAG_LEN {
                return Err(malformed("Confirm"));
            }
            Ok(Flight::Confirm(&body[1..]))
        }
        Some(&REFUSE) => {
            let (hello, reason) = hello_and_rest("Refuse", body, 1)?;
            Ok(Flight::Refuse {
                hello,
                reason: sanitize(&String::from_utf8_lossy(reason)),
            })
        }
        _ => Err(HandshakeError::Foreign(profile.purpose)),
    }
}

/// Untrusted text made safe to print: no control characters, at most [`MAX_REASON_LEN`]
/// bytes.
pub(super) fn sanitize(text: &str) -> String {
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

/// `purpose || encrypt || the Hello's header`, as both sides hash it.
fn prologue(profile: &Profile, head: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(32 + head.len());
    p.extend_from_slice(b"topo-secure-v2");
    p.push(profile.purpose.len() as u8);
    p.extend_from_slice(profile.purpose.as_bytes());
    p.push(u8::from(profile.encrypt));
    p.extend_from_slice(head);
    p
}

fn builder<'a>(psk: &'a Psk, prologue: &'a [u8]) -> Result<snow::Builder<'a>, HandshakeError> {
    snow::Builder::new(PARAMS.clone())
        .psk(0, &psk.0)
        .and_then(|b| b.prologue(prologue))
        .map_err(noise_error)
}

/// A `Refuse` flight from a side that says `hello` about itself.
pub fn refusal(hello: &[u8], reason: &str) -> Bytes {
    let hello = &hello[..hello.len().min(MAX_HELLO_LEN)];
    let reason = sanitize(reason);
    let mut out = BytesMut::with_capacity(2 + hello.len() + reason.len());
    out.put_u8(REFUSE);
    out.put_u8(hello.len() as u8);
    out.extend_from_slice(hello);
    out.extend_from_slice(reason.as_bytes());
    out.freeze()
}

impl Handshake {
    /// Starts a handshake as the dialer that says `hello` about itself; `check` judges the
    /// acceptor's. Returns the machine and the `Hello` flight to send first.
    pub fn dial(
        profile: Profile,
        psk: &Psk,
        hello: &[u8],
        check: Check,
    ) -> Result<(Handshake, Bytes), HandshakeError> {
        if hello.len() > MAX_HELLO_LEN {
            return Err(HandshakeError::Malformed {
                what: "own hello",
                len: hello.len(),
            });
        }
        let mut flight = BytesMut::with_capacity(HELLO_HEAD + hello.len() + DH_LEN + TAG_LEN);
        flight.put_u8(HELLO);
        flight.extend_from_slice(&profile.magic);
        flight.put_u16(profile.version);
        flight.put_u8(hello.len() as u8);
        flight.extend_from_slice(hello);
        let prologue = prologue(&profile, &flight);
        let mut noise = builder(psk, &prologue)?
            .build_initiator()
            .map_err(noise_error)?;
        let mut message = [0u8; DH_LEN + TAG_LEN];
        let n = noise
            .write_message(&[], &mut message)
            .map_err(noise_error)?;
        flight.extend_from_slice(&message[..n]);
        let hs = Handshake {
            profile,
            psk: psk.clone(),
            own: Bytes::copy_from_slice(hello),
            check,
            state: State::AwaitAnswer(Box::new(noise)),
            peer_hello: None,
        };
        Ok((hs, flight.freeze()))
    }

    /// Starts a handshake as the acceptor that says `hello` about itself; `check` judges
    /// the dialer's.
    pub fn accept(profile: Profile, psk: &Psk, hello: &[u8], check: Check) -> Handshake {
        Handshake {
            profile,
            psk: psk.clone(),
            own: Bytes::copy_from_slice(&hello[..hello.len().min(MAX_HELLO_LEN)]),
            check,
            state: State::AwaitHello,
            peer_hello: None,
        }
    }

    /// True once the peer is authenticated.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The hello the peer sent, once it passed `check` (authenticated only once
    /// [`is_done`](Self::is_done)).
    pub fn peer_hello(&self) -> Option<&[u8]> {
        self.peer_hello.as_deref()
    }

    /// A `Refuse` flight with our hello and `reason`.
    pub fn refusal(&self, reason: &str) -> Bytes {
        refusal(&self.own, reason)
    }

    /// Feeds the peer's next flight. An error ends the handshake for good.
    pub fn read(&mut self, body: &[u8]) -> Result<Step, HandshakeError> {
        let state = std::mem::replace(&mut self.state, State::Failed);
        let result = self.step(state, body);
        if let Ok(Step::Done { .. }) = result {
            self.state = State::Done;
        }
        result
    }

    fn step(&mut self, state: State, body: &[u8]) -> Result<Step, HandshakeError> {
        let expected = match &state {
            State::AwaitHello => "Hello",
            State::AwaitAnswer(_) => "Answer",
            State::AwaitConfirm(_) => "Confirm",
            State::Done | State::Failed => return Err(HandshakeError::Finished),
        };
        let flight = parse(&self.profile, body)?;
        match (state, flight) {
            (
                State::AwaitHello,
                Flight::Hello {
                    head,
                    version,
                    hello,
                    message,
                },
            ) => {
                if version != self.profile.version {
                    return Err(HandshakeError::BadVersion {
                        purpose: self.profile.purpose,
                        got: version,
                        expected: self.profile.version,
                    });
                }
                (self.check)(hello)?;
                self.peer_hello = Some(Bytes::copy_from_slice(hello));
                if message.len() != DH_LEN + TAG_LEN {
                    return Err(HandshakeError::Malformed {
                        what: "Hello",
                        len: body.len(),
                    });
                }
                let prologue = prologue(&self.profile, head);
                let mut noise = builder(&self.psk, &prologue)?
                    .build_responder()
                    .map_err(noise_error)?;
                let mut payload = [0u8; TAG_LEN];
                noise
                    .read_message(message, &mut payload)
                    .map_err(|_| HandshakeError::BadAuth(self.profile.secret))?;
                let mut answer = BytesMut::with_capacity(2 + 2 * self.own.len() + DH_LEN + TAG_LEN);
                answer.put_u8(ANSWER);
                answer.put_u8(self.own.len() as u8);
                answer.extend_from_slice(&self.own);
                let at = answer.len();
                answer.resize(at + DH_LEN + self.own.len() + TAG_LEN, 0);
                let n = noise
                    .write_message(&self.own, &mut answer[at..])
                    .map_err(noise_error)?;
                answer.truncate(at + n);
                let keys = noise.into_stateless_transport_mode().map_err(noise_error)?;
                self.state = State::AwaitConfirm(Box::new(keys));
                Ok(Step::Send(answer.freeze()))
            }
            (State::AwaitAnswer(mut noise), Flight::Answer { hello, message }) => {
                let peer = (self.check)(hello)?;
                self.peer_hello = Some(Bytes::copy_from_slice(hello));
                let bad = || HandshakeError::PeerBadAuth {
                    peer: peer.clone(),
                    secret: self.profile.secret,
                };
                let mut payload = [0u8; MAX_HELLO_LEN + TAG_LEN];
                let n = noise
                    .read_message(message, &mut payload)
                    .map_err(|_| bad())?;
                if payload[..n] != *hello {
                    return Err(bad());
                }
                let keys = noise.into_stateless_transport_mode().map_err(noise_error)?;
                let mut confirm = [0u8; 1 + TAG_LEN];
                confirm[0] = CONFIRM;
                keys.write_message(0, &[], &mut confirm[1..])
                    .map_err(noise_error)?;
                Ok(Step::Done {
                    send: Some(Bytes::copy_from_slice(&confirm)),
                    session: Session {
                        keys: Arc::new(keys),
                        send_nonce: 1,
                        recv_nonce: 0,
                        encrypt: self.profile.encrypt,
                        peer_hello: Bytes::copy_from_slice(hello),
                    },
                })
            }
            (State::AwaitConfirm(keys), Flight::Confirm(tag)) => {
                keys.read_message(0, tag, &mut [])
                    .map_err(|_| HandshakeError::BadAuth(self.profile.secret))?;
                Ok(Step::Done {
                    send: None,
                    session: Session {
                        keys: Arc::from(keys),
                        send_nonce: 0,
                        recv_nonce: 1,
                        encrypt: self.profile.encrypt,
                        peer_hello: self.peer_hello.clone().unwrap_or_default(),
                    },
                })
            }
            (_, Flight::Refuse { hello, reason }) => Err(HandshakeError::PeerRefused {
                hello: Bytes::copy_from_slice(hello),
                reason,
            }),
            (_, other) => Err(HandshakeError::Unexpected {
                got: other.kind(),
                expected,
            }),
        }
    }
}
