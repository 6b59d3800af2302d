//! One secure channel for every connection: a Noise handshake, then frames sealed or plain.
//!
//! Worker connections ([`handshake`](crate::handshake)) and the cluster's control
//! connections (`topo-cluster`'s `control`) both open with this handshake and differ only
//! by their [`Profile`]: the magic and version of their `Hello`, the purpose that keys the
//! pre-shared key and the prologue, what each side says about itself (its *hello*: a worker
//! index and plan fingerprint, or a control role), and whether the frames that follow are
//! encrypted. Control connections always are; worker connections when the topology sets
//! `encrypt = true`.
//!
//! # Protocol
//! `Noise_NNpsk0_25519_ChaChaPoly_SHA256` ([`PATTERN`]): ephemeral X25519 keys on both
//! sides, the pre-shared key mixed in before the first message, ChaCha20-Poly1305 and
//! SHA-256. The pre-shared key is [`Psk::derive`]: HMAC-SHA256(secret, `"topo-noise-psk-v2"
//! || 0x00 || purpose`), so a key for worker connections is no key for control ones. The
//! prologue (hashed into the handshake by both sides, never sent) is
//!
//! ```text
//! "topo-secure-v2" || len u8 || purpose || encrypt u8 || the Hello flight's header
//! ```
//!
//! so a peer that sees another purpose, another encryption setting, or a `Hello` altered on
//! the way (magic, version, the dialer's hello) fails authentication.
//!
//! # Wire
//! Each flight is one body of the length-prefixed framing ([`RawCodec`], 4-byte big-endian
//! length), at most [`MAX_FLIGHT_LEN`] bytes until the peer is authenticated:
//!
//! ```text
//! dialer                                              acceptor
//!   Hello   = 0x01 | magic [4] | version u16 BE
//!             | n u8 | dialer hello [n]
//!             | Noise message 1 (psk, e): 48 bytes  ->
//!                                                     checks magic, version, hello;
//!                                                     message 1 proves the key
//!                                                  <- Answer  = 0x02 | n u8 | acceptor hello [n]
//!                                                               | Noise message 2 (e, ee),
//!                                                                 payload = acceptor hello
//!   checks the hello; message 2 proves the key
//!   and answers our fresh ephemeral key
//!   Confirm = 0x03 | first transport message
//!             (nonce 0, empty): 16 bytes           ->
//!                                                     proves the dialer is live: done
//!
//! either side, instead of its next flight:
//!   Refuse  = 0x04 | n u8 | sender's hello [n] | reason, UTF-8 (at most 256 bytes)
//! ```
//!
//! The acceptor trusts the dialer only after `Confirm`: message 1 alone could be a
//! recording of an earlier connection (NNpsk0's first message is replayable), but a
//! replayer cannot answer the acceptor's fresh ephemeral key, so a replayed `Hello` gains
//! an `Answer` it cannot use and a refusal. The dialer trusts the acceptor after `Answer`,
//! which is bound to the dialer's fresh ephemeral key. Both hellos travel in clear
//! (identity checks give precise refusals before any cryptography) and are authenticated:
//! the dialer's through the prologue, the acceptor's as the encrypted payload of message 2,
//! which must equal the clear copy. `Refuse` frames are not authenticated; they only say
//! why a connection closes.
//!
//! After the handshake the connection carries its own codec's frames (worker
//! [`Frame`](crate::Frame)s, control messages) either plain or **sealed** ([`Secure`]): the
//! codec's bytes, length prefixes included, cut into records of at most 65,519 bytes
//! (Noise's 65,535-byte message limit less the 16-byte tag), each
//!
//! ```text
//! length u32 BE (17 ..= 65,535) | ChaCha20-Poly1305(plaintext) with its tag
//! ```
//!
//! under Noise transport nonces counting from 0 per direction (the dialer's first is the
//! `Confirm`). A record that was altered, injected, dropped, replayed or reordered fails
//! to decrypt and closes the connection ([`FrameError::Unsealed`]).
//!
//! # Layout
//! - `handshake`: [`Handshake`], the protocol as a state machine without I/O (fuzzed by
//!   `fuzz/fuzz_targets/handshake.rs` and a proptest), [`HandshakeError`], [`Session`].
//! - `codec`: [`Secure`], the plain or sealed codec around another codec.
//! - `drive`: [`run`] drives a handshake over framed halves, within a deadline, and tells
//!   the peer why it failed; [`upgrade`] turns the halves into the session's codec.

mod codec;
mod drive;
mod handshake;

pub use codec::{Secure, MAX_RECORD_LEN, MAX_RECORD_PLAIN};
pub use drive::{framed, run, upgrade};
pub use handshake::{refusal, Check, Handshake, HandshakeError, Session, Step};

use hmac::{KeyInit, Mac};

use crate::frame::RawCodec;

/// The Noise protocol every topo connection speaks.
pub const PATTERN: &str = "Noise_NNpsk0_25519_ChaChaPoly_SHA256";

/// Largest handshake flight: a `Refuse` with the longest hello and reason.
pub const MAX_FLIGHT_LEN: usize = crate::frame::HANDSHAKE_MAX_FRAME_LEN;

/// Longest hello a side may say about itself.
pub const MAX_HELLO_LEN: usize = 64;

/// Longest refusal reason sent or shown, in bytes.
pub const MAX_REASON_LEN: usize = 256;

/// How one kind of connection uses the secure channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// Opens the `Hello`: tells a connection of this kind from anything else.
    pub magic: [u8; 4],
    /// Both sides must speak exactly this version.
    pub version: u16,
    /// What the connection is for (`worker`, `control`): keys the pre-shared key and the
    /// prologue, and names the connection in errors.
    pub purpose: &'static str,
    /// What the shared secret is called in errors (`cluster secret`).
    pub secret: &'static str,
    /// True: every frame after the handshake is sealed; false: plain.
    pub encrypt: bool,
}

/// The Noise pre-shared key of one purpose.
#[derive(Clone)]
pub struct Psk([u8; 32]);

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Psk(<redacted>)")
    }
}

impl Psk {
    /// HMAC-SHA256(secret, `"topo-noise-psk-v2" || 0x00 || purpose`). An empty secret
    /// gives a key too (loopback-only clusters without a secret).
    pub fn derive(secret: &[u8], purpose: &str) -> Psk {
        let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"topo-noise-psk-v2\0");
        mac.update(purpose.as_bytes());
        Psk(mac.finalize().into_bytes().into())
    }
}

/// A codec for handshake flights: the shared framing with the pre-authentication limit.
pub fn flight_codec() -> RawCodec {
    RawCodec::new(MAX_FLIGHT_LEN)
}

#[cfg(test)]
mod tests;
