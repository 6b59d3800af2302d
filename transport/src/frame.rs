//! Frames on the wire between two workers, and the codecs that read and write them.
//!
//! Every frame is a 4-byte big-endian length followed by that many bytes of body.
//! [`RawCodec`] is that framing alone (`tokio_util`'s [`LengthDelimitedCodec`] with an
//! explicit maximum body length); every connection of topo, worker or control, uses it,
//! for its handshake flights ([`secure`](crate::secure)) and after. On a worker
//! connection, after the handshake, a body is one [`Frame`] encoded with `rmp-serde`
//! (MessagePack, structs as arrays, enum variants externally tagged by name):
//!
//! ```text
//! +---- HEADER_LEN ----+------------------ length bytes ------------------+
//! | length: u32, BE    | body: MessagePack of one Frame                     |
//! | 0 ..= max_frame_len|                                                    |
//! +--------------------+----------------------------------------------------+
//!
//! body, by variant (fixarray = MessagePack array of the listed fields):
//!   Data      {"Data":   [dest_task u32, payload bin]}
//!   Acker     {"Acker":  [dest_task u32, payload bin]}
//!   Control   {"Control":[dest_task u32, payload bin]}
//!   Credit    {"Credit": [bytes u32]}
//!   "Heartbeat"
//!   "Goodbye"
//! ```
//!
//! When the topology sets `encrypt = true`, these bytes (length prefixes included) are
//! the plaintext of sealed records ([`secure::Secure`](crate::secure::Secure)); otherwise
//! they go on the socket as they are.
//!
//! A `Data` frame carries one batch of tuples for one destination task, already encoded by
//! the runtime: the transport never looks inside a payload. `Acker` and `Control` frames are
//! addressed to a task the same way; task ids start at 1, so `dest_task` 0 may stand for the
//! receiving worker itself.
//!
//! The codec writes and reads `Data`, `Acker` and `Control` frames without serde (the same
//! bytes): the payload is copied once when written and not at all when read (it is a
//! slice of the read buffer). Other frames, and bodies it does not recognize, go through
//! rmp-serde.
//!
//! Decoding never panics: a length over the maximum, a body that is not exactly one
//! `Frame`, or a stream that ends inside a frame is a [`FrameError`].

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

/// Bytes of the length prefix before every frame body.
pub const HEADER_LEN: usize = 4;

/// Default largest frame body accepted after the handshake: 16 MiB.
pub const MAX_FRAME_LEN: usize = 16 * 1024 * 1024;

/// Largest frame body accepted before a peer has authenticated: a handshake flight, at
/// most a `Refuse` with the longest hello and reason. An unauthenticated peer may not make
/// a process buffer more.
pub const HANDSHAKE_MAX_FRAME_LEN: usize = 512;

/// The magic number that opens a worker connection's `Hello`: ASCII `TOPO`.
pub const MAGIC: [u8; 4] = *b"TOPO";

/// The worker protocol version this build speaks. Peers must speak exactly the same one.
/// Version 2: the Noise handshake ([`secure`](crate::secure)) and optional encryption.
pub const PROTOCOL_VERSION: u16 = 2;

/// One message between two workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// A batch of encoded tuples for one task of the receiving worker. Costs credit.
    Data {
        /// The task the tuples are for.
        dest_task: u32,
        /// The runtime's encoding of the batch.
        payload: Bytes,
    },
    /// Acker traffic (init, ack, fail, complete). Not flow-controlled.
    Acker {
        /// The acker task (or spout task) the message is for.
        dest_task: u32,
        /// The runtime's encoding of the acker message.
        payload: Bytes,
    },
    /// A control message of the runtime (acks to spouts, shutdown). Not flow-controlled.
    Control {
        /// The task the message is for; 0 for the receiving worker itself.
        dest_task: u32,
        /// The runtime's encoding of the control message.
        payload: Bytes,
    },
    /// The receiver consumed `bytes` of `Data` payload: the sender may send that much more.
    Credit {
        /// Payload bytes granted.
        bytes: u32,
    },
    /// I am alive. Sent when a connection has been idle for a heartbeat interval.
    Heartbeat,
    /// I am shutting down on purpose; close this connection without counting an error.
    Goodbye,
}

impl Frame {
    /// A short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Frame::Data { .. } => "Data",
            Frame::Acker { .. } => "Acker",
            Frame::Control { .. } => "Control",
            Frame::Credit { .. } => "Credit",
            Frame::Heartbeat => "Heartbeat",
            Frame::Goodbye => "Goodbye",
        }
    }

    /// Encodes the body (without the length prefix).
    pub fn encode_body(&self) -> Result<Vec<u8>, FrameError> {
        rmp_serde::to_vec(self).map_err(|e| FrameError::Encode(e.to_string()))
    }

    /// Decodes a body (without the length prefix); it must hold exactly one frame.
    pub fn decode_body(body: &[u8]) -> Result<Frame, FrameError> {
        let mut rest = body;
        let frame = {
            let mut de = rmp_serde::Deserializer::new(&mut rest);
            Frame::deserialize(&mut de).map_err(|e| FrameError::Undecodable(e.to_string()))?
        };
        if !rest.is_empty() {
            return Err(FrameError::Undecodable(format!(
                "{} trailing bytes after a {} frame",
                rest.len(),
                frame.kind()
            )));
        }
        Ok(frame)
    }
}

/// Why a frame could not be read or written. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is over the maximum.
    #[error("frame length over the maximum of {max} bytes")]
    TooLong {
        /// The maximum in force.
        max: usize,
    },
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// A sealed record failed decryption: altered, injected, replayed or reordered.
    #[error("a sealed record failed authentication (altered, injected, replayed or reordered)")]
    Unsealed,
    /// The body is not exactly one frame.
    #[error("undecodable frame body: {0}")]
    Undecodable(String),
    /// The frame could not be encoded (only a body over the maximum can do that).
    #[error("cannot encode frame: {0}")]
    Encode(String),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Length-prefixed bodies ([`HEADER_LEN`] bytes of u32 BE, then the body) with a
/// maximum body length: the framing of every topo connection.
#[derive(Debug)]
pub struct RawCodec {
    framing: LengthDelimitedCodec,
    /// True once the framing consumed a header whose body has not fully arrived.
    in_frame: bool,
}

impl RawCodec {
    /// A codec that accepts bodies up to `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        let framing = LengthDelimitedCodec::builder()
            .length_field_offset(0)
            .length_field_type::<u32>()
            .length_adjustment(0)
            .num_skip(HEADER_LEN)
            .max_frame_length(max_frame_len)
            .big_endian()
            .new_codec();
        RawCodec {
            framing,
            in_frame: false,
        }
    }

    /// The largest body this codec accepts or writes.
    pub fn max_frame_len(&self) -> usize {
        self.framing.max_frame_length()
    }

    /// Changes the largest body.
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.framing.set_max_frame_length(max);
    }

    /// Writes `head` and `tail` as one body.
    fn put(&self, head: &[u8], tail: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        let len = head.len() + tail.len();
        if len > self.max_frame_len() {
            return Err(FrameError::Encode(format!(
                "a body of {len} bytes is over the maximum of {} bytes",
                self.max_frame_len()
            )));
        }
        dst.reserve(HEADER_LEN + len);
        dst.put_u32(len as u32);
        dst.extend_from_slice(head);
        dst.extend_from_slice(tail);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = BytesMut;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        let before = src.len();
        match self.framing.decode(src) {
            Ok(Some(body)) => {
                self.in_frame = false;
                Ok(Some(body))
            }
            Ok(None) => {
                if src.len() < before {
                    self.in_frame = true;
                }
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(FrameError::TooLong {
                max: self.max_frame_len(),
            }),
            Err(e) => Err(FrameError::Io(e)),
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, FrameError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.in_frame => Ok(None),
            None => Err(FrameError::Truncated),
        }
    }
}

impl Encoder<Bytes> for RawCodec {
    type Error = FrameError;

    fn encode(&mut self, body: Bytes, dst: &mut BytesMut) -> Result<(), FrameError> {
        self.put(&body, &[], dst)
    }
}

impl Encoder<&[u8]> for RawCodec {
    type Error = FrameError;

    fn encode(&mut self, body: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.put(body, &[], dst)
    }
}

/// Reads and writes [`Frame`]s: [`RawCodec`] framing, `rmp-serde` bodies.
#[derive(Debug)]
pub struct FrameCodec {
    raw: RawCodec,
}

impl FrameCodec {
    /// A codec that accepts bodies up to `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        FrameCodec {
            raw: RawCodec::new(max_frame_len),
        }
    }

    /// The largest body this codec accepts or writes.
    pub fn max_frame_len(&self) -> usize {
        self.raw.max_frame_len()
    }

    /// Changes the largest body.
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.raw.set_max_frame_len(max);
    }
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec::new(MAX_FRAME_LEN)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.raw.decode(src)?.map(parse).transpose()
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.raw.decode_eof(src)?.map(parse).transpose()
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        if let Frame::Data { dest_task, payload }
        | Frame::Acker { dest_task, payload }
        | Frame::Control { dest_task, payload } = &frame
        {
            // The same bytes as rmp-serde writes, without copying the payload twice.
            let mut head = [0u8; FRAME_OVERHEAD];
            let n = payload_head(frame.kind(), *dest_task, payload.len(), &mut head);
            return self.raw.put(&head[..n], payload, dst).map_err(|_| {
                FrameError::Encode(format!(
                    "{} frame of {} bytes is over the maximum of {} bytes",
                    frame.kind(),
                    n + payload.len(),
                    self.max_frame_len()
                ))
            });
        }
        let body = frame.encode_body()?;
        self.raw.put(&body, &[], dst).map_err(|_| {
            FrameError::Encode(format!(
                "{} frame of {} bytes is over the maximum of {} bytes",
                frame.kind(),
                body.len(),
                self.max_frame_len()
            ))
        })
    }
}

/// One body as a frame: payload frames without serde, the others with it.
fn parse(body: BytesMut) -> Result<Frame, FrameError> {
    match payload_frame(&body) {
        Some((kind, dest_task, start)) => Ok(kind.frame(dest_task, body.freeze().slice(start..))),
        None => Frame::decode_body(&body),
    }
}

/// The frames that carry a payload, for the codec's fast path.
#[derive(Debug, Clone, Copy)]
enum PayloadKind {
    Data,
    Acker,
    Control,
}

impl PayloadKind {
    fn frame(self, dest_task: u32, payload: Bytes) -> Frame {
        match self {
            PayloadKind::Data => Frame::Data { dest_task, payload },
            PayloadKind::Acker => Frame::Acker { dest_task, payload },
            PayloadKind::Control => Frame::Control { dest_task, payload },
        }
    }
}

/// Writes what rmp-serde writes before the payload of a `Data`, `Acker` or `Control`
/// frame: `{name: [dest_task, bin]}` with the shortest encodings; returns its length.
fn payload_head(name: &str, dest_task: u32, len: usize, out: &mut [u8; FRAME_OVERHEAD]) -> usize {
    let mut n = 0;
    let mut put = |b: &[u8]| {
        out[n..n + b.len()].copy_from_slice(b);
        n += b.len();
    };
    put(&[0x81, 0xa0 | name.len() as u8]);
    put(name.as_bytes());
    put(&[0x92]);
    match dest_task {
        0..=0x7f => put(&[dest_task as u8]),
        0x80..=0xff => put(&[0xcc, dest_task as u8]),
        0x100..=0xffff => {
            put(&[0xcd]);
            put(&(dest_task as u16).to_be_bytes());
        }
        _ => {
            put(&[0xce]);
            put(&dest_task.to_be_bytes());
        }
    }
    match len {
        0..=0xff => put(&[0xc4, len as u8]),
        0x100..=0xffff => {
            put(&[0xc5]);
            put(&(len as u16).to_be_bytes());
        }
        _ => {
            put(&[0xc6]);
            put(&(len as u32).to_be_bytes());
        }
    }
    n
}

/// Recognizes the body of a `Data`, `Acker` or `Control` frame as rmp-serde writes it:
/// its kind, destination task and where the payload starts (it runs to the end). Any
/// other body, or one with bytes after the payload, is left to rmp-serde.
fn payload_frame(body: &[u8]) -> Option<(PayloadKind, u32, usize)> {
    let (kind, mut at) = match body {
        [0x81, 0xa4, b'D', b'a', b't', b'a', 0x92, ..] => (PayloadKind::Data, 7),
        [0x81, 0xa5, b'A', b'c', b'k', b'e', b'r', 0x92, ..] => (PayloadKind::Acker, 8),
        [0x81, 0xa7, b'C', b'o', b'n', b't', b'r', b'o', b'l', 0x92, ..] => {
            (PayloadKind::Control, 10)
        }
        _ => return None,
    };
    let mut be = |n: usize| -> Option<u32> {
        let bytes = body.get(at..at + n)?;
        at += n;
        Some(bytes.iter().fold(0u32, |v, &b| (v << 8) | u32::from(b)))
    };
    let dest_task = match be(1)? {
        t @ 0..=0x7f => t,
        0xcc => be(1)?,
        0xcd => be(2)?,
        0xce => be(4)?,
        _ => return None,
    };
    let len = match be(1)? {
        0xc4 => be(1)?,
        0xc5 => be(2)?,
        0xc6 => be(4)?,
        _ => return None,
    };
    (body.len().checked_sub(at)? == len as usize).then_some((kind, dest_task, at))
}

/// Most bytes a `Data`, `Acker` or `Control` frame body takes beyond its payload.
///
/// Map header, variant name (`"Control"` is the longest), array header, task id and bin
/// header: at most 1 + 8 + 1 + 5 + 5 bytes.
pub const FRAME_OVERHEAD: usize = 20;

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: &Frame) -> Vec<u8> {
        let mut dst = BytesMut::new();
        FrameCodec::default()
            .encode(frame.clone(), &mut dst)
            .expect("encodes");
        dst.to_vec()
    }

    #[test]
    fn data_frame_exact_bytes() {
        let frame = Frame::Data {
            dest_task: 7,
            payload: Bytes::from_static(b"hi"),
        };
        let mut want = vec![0, 0, 0, 12];
        want.extend_from_slice(&[0x81, 0xa4, b'D', b'a', b't', b'a', 0x92, 0x07, 0xc4, 0x02]);
        want.extend_from_slice(b"hi");
        assert_eq!(encode(&frame), want);
    }

    #[test]
    fn payload_frames_take_the_fast_path_with_rmp_serde_bytes() {
        for dest_task in [0, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000, u32::MAX] {
            for len in [0, 1, 0xff, 0x100, 0xffff, 0x1_0000] {
                let payload = Bytes::from(vec![7u8; len]);
                for frame in [
                    Frame::Data {
                        dest_task,
                        payload: payload.clone(),
                    },
                    Frame::Acker {
                        dest_task,
                        payload: payload.clone(),
                    },
                    Frame::Control {
                        dest_task,
                        payload: payload.clone(),
                    },
                ] {
                    let body = frame.encode_body().expect("encodes");
                    let wire = encode(&frame);
                    assert_eq!(
                        wire[HEADER_LEN..],
                        body[..],
                        "{} {dest_task} {len}",
                        frame.kind()
                    );
                    assert!(
                        payload_frame(&body).is_some(),
                        "fast path for {}",
                        frame.kind()
                    );
                    let mut src = BytesMut::from(&wire[..]);
                    let back = FrameCodec::default().decode(&mut src).expect("decodes");
                    assert_eq!(back, Some(frame));
                }
            }
        }
    }

    #[test]
    fn a_payload_frame_with_trailing_bytes_is_still_an_error() {
        let mut body = Frame::Data {
            dest_task: 1,
            payload: Bytes::from_static(b"ab"),
        }
        .encode_body()
        .expect("encodes");
        body.push(0xc0);
        assert!(payload_frame(&body).is_none());
        let mut src = BytesMut::new();
        src.extend_from_slice(&(body.len() as u32).to_be_bytes());
        src.extend_from_slice(&body);
        let err = FrameCodec::default()
            .decode(&mut src)
            .expect_err("trailing");
        assert_eq!(
            err.to_string(),
            "undecodable frame body: 1 trailing bytes after a Data frame"
        );
    }

    #[test]
    fn heartbeat_exact_bytes() {
        let mut want = vec![0, 0, 0, 10, 0xa9];
        want.extend_from_slice(b"Heartbeat");
        assert_eq!(encode(&Frame::Heartbeat), want);
    }

    #[test]
    fn frame_overhead_bounds_every_payload_frame() {
        let payload = Bytes::from(vec![0u8; 70_000]);
        let dest_task = u32::MAX;
        let frames = [
            Frame::Data {
                dest_task,
                payload: payload.clone(),
            },
            Frame::Acker {
                dest_task,
                payload: payload.clone(),
            },
            Frame::Control { dest_task, payload },
        ];
        let worst = frames
            .iter()
            .map(|f| f.encode_body().expect("encodes").len() - 70_000)
            .max();
        assert_eq!(worst, Some(FRAME_OVERHEAD));
    }

    #[test]
    fn truncated_frame_then_eof_is_an_error() {
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::from(&[0u8, 0, 0, 100, 1, 2][..]);
        assert!(codec.decode(&mut src).expect("no error yet").is_none());
        let err = codec.decode_eof(&mut src).expect_err("truncated");
        assert_eq!(err.to_string(), "stream ended inside a frame");
    }

    #[test]
    fn header_only_then_eof_is_an_error() {
        let mut codec = FrameCodec::default();
        let mut src = BytesMut::from(&[0u8, 0, 0, 100][..]);
        assert!(codec.decode(&mut src).expect("no error yet").is_none());
        assert!(src.is_empty());
        assert!(matches!(
            codec.decode_eof(&mut src),
            Err(FrameError::Truncated)
        ));
    }

    #[test]
    fn over_length_prefix_is_an_error() {
        let mut codec = FrameCodec::new(1024);
        let mut src = BytesMut::from(&[0u8, 0, 4, 1][..]);
        let err = codec.decode(&mut src).expect_err("too long");
        assert_eq!(
            err.to_string(),
            "frame length over the maximum of 1024 bytes"
        );
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut body = Frame::Goodbye.encode_body().expect("encodes");
        body.push(0xc0);
        let err = Frame::decode_body(&body).expect_err("trailing");
        assert_eq!(
            err.to_string(),
            "undecodable frame body: 1 trailing bytes after a Goodbye frame"
        );
    }
}
