//! Frames survive the wire unchanged, in any chunking; no input makes the decoder panic, and
//! no frames authenticate a peer that does not know the secret.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::sync::Arc;
use tokio_util::codec::{Decoder, Encoder};

use topo_transport::frame::{Frame, FrameCodec, FrameError, MAGIC, PROTOCOL_VERSION};
use topo_transport::handshake::Identity;
use topo_transport::secure::Step;

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (any::<u32>(), bytes(300))
            .prop_map(|(dest_task, payload)| Frame::Data { dest_task, payload }),
        (any::<u32>(), bytes(300))
            .prop_map(|(dest_task, payload)| Frame::Acker { dest_task, payload }),
        (any::<u32>(), bytes(300))
            .prop_map(|(dest_task, payload)| Frame::Control { dest_task, payload }),
        any::<u32>().prop_map(|bytes| Frame::Credit { bytes }),
        Just(Frame::Heartbeat),
        Just(Frame::Goodbye),
    ]
}

fn encode_all(frames: &[Frame]) -> BytesMut {
    let mut codec = FrameCodec::default();
    let mut wire = BytesMut::new();
    for f in frames {
        codec.encode(f.clone(), &mut wire).expect("encodes");
    }
    wire
}

/// Feeds `wire` to a decoder in chunks of the given sizes, then signals EOF.
fn decode_chunked(
    codec: &mut FrameCodec,
    wire: &[u8],
    chunks: &[usize],
) -> Result<Vec<Frame>, FrameError> {
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut rest = wire;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        while let Some(f) = codec.decode(&mut buf)? {
            out.push(f);
        }
    }
    while let Some(f) = codec.decode_eof(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

proptest! {
    #[test]
    fn every_frame_type_round_trips_in_any_chunking(
        frames in proptest::collection::vec(frame(), 1..12),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let wire = encode_all(&frames);
        let decoded = decode_chunked(&mut FrameCodec::default(), &wire, &chunks)
            .expect("decodes");
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn no_sequence_of_frames_or_flights_authenticates_without_the_secret(
        frames in proptest::collection::vec(frame(), 1..6),
        flights in proptest::collection::vec(bytes(120), 0..4),
    ) {
        let id = |worker| Identity {
            fingerprint: 0x7070,
            worker,
            workers: 4,
            secret: Arc::from(&b"never generated"[..]),
            encrypt: false,
        };
        let mut acceptor = id(2).acceptor();
        let (mut dialer, _) = id(1).dialer(3).expect("dial");
        let bodies = frames
            .iter()
            .map(|f| Bytes::from(f.encode_body().expect("encodes")))
            .chain(flights);
        for body in bodies {
            for hs in [&mut acceptor, &mut dialer] {
                let done = matches!(hs.read(&body), Ok(Step::Done { .. }));
                prop_assert!(!done, "authenticated without the secret");
            }
        }
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        wire in proptest::collection::vec(any::<u8>(), 0..600),
        max in 0usize..512,
        chunks in proptest::collection::vec(1usize..64, 1..4),
    ) {
        let _ = decode_chunked(&mut FrameCodec::new(max), &wire, &chunks);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bodies(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut wire = (body.len() as u32).to_be_bytes().to_vec();
        wire.extend_from_slice(&body);
        let _ = decode_chunked(&mut FrameCodec::default(), &wire, &[usize::MAX]);
    }

    #[test]
    fn decoder_never_panics_on_corrupted_frames(
        frames in proptest::collection::vec(frame(), 1..4),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut wire = encode_all(&frames).to_vec();
        for (i, b) in flips {
            let i = i.index(wire.len());
            wire[i] ^= b;
        }
        let _ = decode_chunked(&mut FrameCodec::default(), &wire, &[7]);
    }
}

#[test]
fn worker_hello_exact_bytes() {
    let id = Identity {
        fingerprint: 0x0102,
        worker: 3,
        workers: 4,
        secret: Arc::from(&b"s"[..]),
        encrypt: false,
    };
    let (_, hello) = id.dialer(0).expect("dial");
    // Hello, "TOPO", version 2, a 12-byte hello (fingerprint, worker), Noise message 1.
    let mut want = vec![0x01];
    want.extend_from_slice(&MAGIC);
    want.extend_from_slice(&PROTOCOL_VERSION.to_be_bytes());
    want.push(12);
    want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 3]);
    assert_eq!(PROTOCOL_VERSION, 2);
    assert_eq!(hello[..want.len()], want[..]);
    assert_eq!(
        hello.len(),
        want.len() + 32 + 16,
        "e and the tag of an empty payload"
    );
}

#[test]
fn credit_exact_bytes() {
    let wire = encode_all(&[Frame::Credit { bytes: 65_536 }]);
    let mut want = vec![0, 0, 0, 14, 0x81, 0xa6];
    want.extend_from_slice(b"Credit");
    want.extend_from_slice(&[0x91, 0xce, 0x00, 0x01, 0x00, 0x00]);
    assert_eq!(wire.to_vec(), want);
}

#[test]
fn encoder_refuses_a_frame_over_the_maximum() {
    let mut codec = FrameCodec::new(100);
    let frame = Frame::Control {
        dest_task: 0,
        payload: Bytes::from(vec![0u8; 100]),
    };
    let err = codec
        .encode(frame, &mut BytesMut::new())
        .expect_err("too long");
    assert_eq!(
        err.to_string(),
        "cannot encode frame: Control frame of 113 bytes is over the maximum of 100 bytes"
    );
}

#[test]
fn undecodable_body_is_an_error_not_a_panic() {
    let mut wire = vec![0, 0, 0, 3];
    wire.extend_from_slice(&[0xc1, 0xc1, 0xc1]);
    let err = decode_chunked(&mut FrameCodec::default(), &wire, &[64]).expect_err("bad body");
    assert!(
        err.to_string().starts_with("undecodable frame body: "),
        "{err}"
    );
}
