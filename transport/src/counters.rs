//! Counters of the transport: why connections closed, and traffic per peer.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use super::frame::FrameError;
use super::handshake::HandshakeError;

/// Why the transport closed a connection. Each closed connection counts exactly one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Too many connections were already handshaking (flood protection).
    Flood,
    /// The handshake did not finish within the handshake timeout.
    HandshakeTimeout,
    /// The first flight was not a worker `Hello` (another magic, or not a handshake).
    BadMagic,
    /// The `Hello` had another protocol version.
    BadVersion,
    /// The `Hello` had another topology fingerprint.
    BadFingerprint,
    /// The `Hello` named a worker that may not open this connection.
    BadWorker,
    /// The peer failed the Noise handshake (it does not know the secret, or replayed a
    /// recorded `Hello`), refused us, or a sealed record failed to decrypt.
    BadAuth,
    /// A frame that does not belong where it came (e.g. data before the handshake).
    Unexpected,
    /// A length prefix over the maximum.
    TooLong,
    /// The stream ended inside a frame.
    Truncated,
    /// A body that is not a frame.
    Undecodable,
    /// The peer sent nothing for the peer timeout (no heartbeat).
    PeerTimeout,
    /// The peer closed the connection without saying `Goodbye`.
    Dropped,
    /// The socket failed.
    Io,
    /// A newer connection from the same peer replaced this one (the peer restarted).
    Replaced,
}

impl CloseReason {
    /// Every reason, in counter order.
    pub const ALL: [CloseReason; 15] = [
        CloseReason::Flood,
        CloseReason::HandshakeTimeout,
        CloseReason::BadMagic,
        CloseReason::BadVersion,
        CloseReason::BadFingerprint,
        CloseReason::BadWorker,
        CloseReason::BadAuth,
        CloseReason::Unexpected,
        CloseReason::TooLong,
        CloseReason::Truncated,
        CloseReason::Undecodable,
        CloseReason::PeerTimeout,
        CloseReason::Dropped,
        CloseReason::Io,
        CloseReason::Replaced,
    ];

    /// The reason's name in logs and metrics, snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Flood => "flood",
            CloseReason::HandshakeTimeout => "handshake_timeout",
            CloseReason::BadMagic => "bad_magic",
            CloseReason::BadVersion => "bad_version",
            CloseReason::BadFingerprint => "bad_fingerprint",
            CloseReason::BadWorker => "bad_worker",
            CloseReason::BadAuth => "bad_auth",
            CloseReason::Unexpected => "unexpected_frame",
            CloseReason::TooLong => "frame_too_long",
            CloseReason::Truncated => "truncated_frame",
            CloseReason::Undecodable => "undecodable_frame",
            CloseReason::PeerTimeout => "peer_timeout",
            CloseReason::Dropped => "dropped",
            CloseReason::Io => "io",
            CloseReason::Replaced => "replaced",
        }
    }

    fn index(self) -> usize {
        CloseReason::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&FrameError> for CloseReason {
    fn from(e: &FrameError) -> Self {
        match e {
            FrameError::TooLong { .. } => CloseReason::TooLong,
            FrameError::Truncated => CloseReason::Truncated,
            FrameError::Undecodable(_) => CloseReason::Undecodable,
            FrameError::Unsealed => CloseReason::BadAuth,
            FrameError::Encode(_) | FrameError::Io(_) => CloseReason::Io,
        }
    }
}

impl From<&HandshakeError> for CloseReason {
    fn from(e: &HandshakeError) -> Self {
        match e {
            HandshakeError::Foreign(_) => CloseReason::BadMagic,
            HandshakeError::BadVersion { .. } => CloseReason::BadVersion,
            HandshakeError::BadFingerprint { .. } => CloseReason::BadFingerprint,
            HandshakeError::BadWorker { .. } | HandshakeError::UnknownRole(_) => {
                CloseReason::BadWorker
            }
            HandshakeError::BadAuth(_)
            | HandshakeError::PeerBadAuth { .. }
            | HandshakeError::PeerRefused { .. } => CloseReason::BadAuth,
            HandshakeError::Malformed { .. } => CloseReason::Undecodable,
            HandshakeError::Unexpected { .. } | HandshakeError::Finished => CloseReason::Unexpected,
            HandshakeError::Closed => CloseReason::Dropped,
            HandshakeError::TimedOut => CloseReason::HandshakeTimeout,
            HandshakeError::Busy(_) => CloseReason::Flood,
            HandshakeError::Noise(_) => CloseReason::Io,
            HandshakeError::Frame(f) => CloseReason::from(f),
        }
    }
}

/// Transport-wide counters; cheap to read from any thread.
#[derive(Debug, Default)]
pub struct Counters {
    accepted: AtomicU64,
    authenticated: AtomicU64,
    closed: [AtomicU64; CloseReason::ALL.len()],
}

impl Counters {
    /// TCP connections accepted on the listener (before any check).
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections, dialed or accepted, whose handshake succeeded.
    pub fn authenticated(&self) -> u64 {
        self.authenticated.load(Ordering::Relaxed)
    }

    /// Connections closed for this reason.
    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason.index()].load(Ordering::Relaxed)
    }

    /// Connections closed for any reason but a clean `Goodbye` or shutdown.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Connections that failed their handshake (including floods and timeouts).
    pub fn handshake_failures(&self) -> u64 {
        use CloseReason::*;
        [
            Flood,
            HandshakeTimeout,
            BadMagic,
            BadVersion,
            BadFingerprint,
            BadWorker,
            BadAuth,
        ]
        .into_iter()
        .map(|r| self.closed(r))
        .sum()
    }

    pub(crate) fn count_accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_authenticated(&self) {
        self.authenticated.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_closed(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Traffic counters of one peer, over all its connections.
#[derive(Debug, Default)]
pub struct PeerCounters {
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    connects: AtomicU64,
    disconnects: AtomicU64,
    faults: AtomicU64,
    handshake_failures: AtomicU64,
    dropped_frames: AtomicU64,
}

impl PeerCounters {
    /// Frames received after the handshake (all kinds).
    pub fn frames_in(&self) -> u64 {
        self.frames_in.load(Ordering::Relaxed)
    }

    /// Frames written after the handshake (all kinds).
    pub fn frames_out(&self) -> u64 {
        self.frames_out.load(Ordering::Relaxed)
    }

    /// Payload bytes received in `Data`, `Acker` and `Control` frames.
    pub fn bytes_in(&self) -> u64 {
        self.bytes_in.load(Ordering::Relaxed)
    }

    /// Payload bytes written in `Data`, `Acker` and `Control` frames.
    pub fn bytes_out(&self) -> u64 {
        self.bytes_out.load(Ordering::Relaxed)
    }

    /// Connections to this peer that completed the handshake.
    pub fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    /// Authenticated connections to this peer that ended, cleanly or not.
    pub fn disconnects(&self) -> u64 {
        self.disconnects.load(Ordering::Relaxed)
    }

    /// Authenticated connections to this peer closed for a fault (not `Goodbye`/shutdown).
    pub fn faults(&self) -> u64 {
        self.faults.load(Ordering::Relaxed)
    }

    /// Handshakes with this peer that failed: dialing it, or after it named itself when it
    /// dialed us.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }

    /// Queued outbound frames thrown away because their connection ended first.
    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames.load(Ordering::Relaxed)
    }

    pub(crate) fn count_in(&self, payload: usize) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(payload as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_out(&self, payload: usize) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
        self.bytes_out.fetch_add(payload as u64, Ordering::Relaxed);
    }

    pub(crate) fn count_connect(&self) {
        self.connects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_disconnect(&self) {
        self.disconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_fault(&self) {
        self.faults.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_handshake_failure(&self) {
        self.handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_dropped(&self, n: u64) {
        self.dropped_frames.fetch_add(n, Ordering::Relaxed);
    }
}
