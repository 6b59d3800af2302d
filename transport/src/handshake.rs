//! The handshake that opens every worker connection: the [`secure`](crate::secure)
//! channel's, with worker identities.
//!
//! The worker with the lower index dials; the other accepts. Each side's hello is
//!
//! ```text
//! fingerprint u64 BE | worker u32 BE                                  (12 bytes)
//! ```
//!
//! The acceptor refuses a dialer that runs another plan (fingerprint), claims an index
//! that may not dial it (not below its own) or that does not exist; the dialer refuses an
//! acceptor that is not the worker it dialed. Both prove the run's secret through the
//! Noise pre-shared key ([`Psk::derive`] with purpose `worker`), under [`MAGIC`] and
//! [`PROTOCOL_VERSION`]. With [`Identity::encrypt`] the frames that follow are sealed.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::frame::{FrameCodec, RawCodec, MAGIC, PROTOCOL_VERSION};
use crate::secure::{self, Check, Handshake, Profile, Psk, Secure, Session};

pub use crate::secure::HandshakeError;

/// Bytes of a worker's hello.
pub const HELLO_LEN: usize = 12;

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
    /// Whether frames after the handshake are sealed (the topology's `encrypt`).
    pub encrypt: bool,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("worker", &self.worker)
            .field("workers", &self.workers)
            .field("secret", &"<redacted>")
            .field("encrypt", &self.encrypt)
            .finish()
    }
}

/// A worker connection's framed halves after the handshake.
pub type Reader<R> = FramedRead<R, Secure<FrameCodec>>;
/// See [`Reader`].
pub type Writer<W> = FramedWrite<W, Secure<FrameCodec>>;

impl Identity {
    /// The secure channel's settings for worker connections.
    pub fn profile(&self) -> Profile {
        Profile {
            magic: MAGIC,
            version: PROTOCOL_VERSION,
            purpose: "worker",
            secret: "secret",
            encrypt: self.encrypt,
        }
    }

    fn psk(&self) -> Psk {
        Psk::derive(&self.secret, "worker")
    }

    /// This worker's hello.
    pub fn hello(&self) -> [u8; HELLO_LEN] {
        hello(self.fingerprint, self.worker)
    }

    /// Judges the hello of a peer: the one we dialed (`Some(expect)`) or one that dials us.
    fn check(&self, expect: Option<u32>) -> Check {
        let (fingerprint, me, workers) = (self.fingerprint, self.worker, self.workers);
        Arc::new(move |bytes: &[u8]| {
            let (got, worker) = parse_hello(bytes)?;
            if got != fingerprint {
                return Err(HandshakeError::BadFingerprint {
                    got,
                    expected: fingerprint,
                });
            }
            let bad = |why: String| Err(HandshakeError::BadWorker { got: worker, why });
            match expect {
                Some(expect) if worker != expect => return bad(format!("dialed worker {expect}")),
                None if worker >= me => return bad(format!("only workers below {me} dial it")),
                _ => {}
            }
            if worker >= workers {
                return bad(format!("the topology has {workers} workers"));
            }
            Ok(format!("worker {worker}"))
        })
    }

    /// A dialer's handshake with worker `expect`, and the `Hello` to send first.
    pub fn dialer(&self, expect: u32) -> Result<(Handshake, bytes::Bytes), HandshakeError> {
        Handshake::dial(
            self.profile(),
            &self.psk(),
            &self.hello(),
            self.check(Some(expect)),
        )
    }

    /// An acceptor's handshake.
    pub fn acceptor(&self) -> Handshake {
        Handshake::accept(self.profile(), &self.psk(), &self.hello(), self.check(None))
    }
}

/// A worker's hello: `fingerprint u64 BE | worker u32 BE`.
pub fn hello(fingerprint: u64, worker: u32) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[..8].copy_from_slice(&fingerprint.to_be_bytes());
    out[8..].copy_from_slice(&worker.to_be_bytes());
    out
}

/// The fingerprint and worker index of a hello.
pub fn parse_hello(bytes: &[u8]) -> Result<(u64, u32), HandshakeError> {
    let bad = || HandshakeError::Malformed {
        what: "worker hello",
        len: bytes.len(),
    };
    let fingerprint = bytes.get(..8).ok_or_else(bad)?;
    let worker = bytes.get(8..HELLO_LEN).ok_or_else(bad)?;
    if bytes.len() != HELLO_LEN {
        return Err(bad());
    }
    Ok((
        u64::from_be_bytes(fingerprint.try_into().map_err(|_| bad())?),
        u32::from_be_bytes(worker.try_into().map_err(|_| bad())?),
    ))
}

fn peer_of(session: &Session) -> Result<u32, HandshakeError> {
    parse_hello(session.peer_hello()).map(|(_, worker)| worker)
}

/// A fresh connection's halves, framed for the handshake.
pub fn framed<R, W>(read: R, write: W) -> (FramedRead<R, RawCodec>, FramedWrite<W, RawCodec>) {
    secure::framed(read, write)
}

/// The halves after a handshake, framing [`Frame`](crate::Frame)s of at most
/// `max_frame_len` bytes, sealed when the session encrypts.
pub fn upgrade<R, W>(
    reader: FramedRead<R, RawCodec>,
    writer: FramedWrite<W, RawCodec>,
    session: Session,
    max_frame_len: usize,
) -> (Reader<R>, Writer<W>) {
    secure::upgrade(reader, writer, session, || FrameCodec::new(max_frame_len))
}

/// Runs the dialer's side with worker `expect` until `deadline`. Returns the session
/// (the peer is `expect`).
pub async fn dial<R, W>(
    id: &Identity,
    expect: u32,
    reader: &mut FramedRead<R, RawCodec>,
    writer: &mut FramedWrite<W, RawCodec>,
    deadline: Option<Instant>,
) -> Result<Session, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut hs, hello) = id.dialer(expect)?;
    secure::run(&mut hs, Some(hello), reader, writer, deadline).await
}

/// Runs the acceptor's side until `deadline`; returns the peer's worker index and the
/// session, and the worker index the peer claimed, if it got that far, so a failure can
/// be counted against that peer.
pub async fn accept<R, W>(
    id: &Identity,
    reader: &mut FramedRead<R, RawCodec>,
    writer: &mut FramedWrite<W, RawCodec>,
    deadline: Option<Instant>,
) -> (Result<(u32, Session), HandshakeError>, Option<u32>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut hs = id.acceptor();
    let result = secure::run(&mut hs, None, reader, writer, deadline)
        .await
        .and_then(|session| Ok((peer_of(&session)?, session)));
    let claimed = hs
        .peer_hello()
        .and_then(|h| parse_hello(h).ok())
        .map(|(_, worker)| worker);
    (result, claimed)
}

#[cfg(test)]
mod tests;
