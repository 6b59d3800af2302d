//! Frames survive the wire unchanged, in any chunking; no input makes the decoder panic, and
//! no frames authenticate a peer that does not know the secret.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use std::sync::Arc;
use tokio_util::codec::{Decoder, Encoder};

use topo_engine::transport::frame::{Frame, FrameCodec, FrameError, Hello, MAGIC};
use topo_engine::transport::handshake::{Handshake, Identity, Step};

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u16>(),
            any::<u64>(),
            any::<u32>(),
            bytes(40)
        )
            .prop_map(
                |(magic, version, fingerprint, worker, nonce)| Frame::Hello(Hello {
                    magic,
                    version,
                    fingerprint,
                    worker,
                    nonce,
                })
            ),
        bytes(40).prop_map(|mac| Frame::Auth { mac }),
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
    fn no_sequence_of_frames_authenticates_without_the_secret(
        frames in proptest::collection::vec(frame(), 1..6),
        nonce in any::<[u8; 32]>(),
    ) {
        let id = |worker| Identity {
            fingerprint: 0x7070,
            worker,
            workers: 4,
            secret: Arc::from(&b"never generated"[..]),
        };
        let mut acceptor = Handshake::accept(id(2), nonce);
        let (mut dialer, _) = Handshake::dial(id(1), 3, nonce);
        for f in frames {
            for hs in [&mut acceptor, &mut dialer] {
                let done = matches!(hs.on_frame(f.clone()), Ok(Step::Done { .. }));
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
fn hello_exact_bytes() {
    let frame = Frame::Hello(Hello {
        magic: MAGIC,
        version: 1,
        fingerprint: 0x0102,
        worker: 3,
        nonce: Bytes::from_static(&[0xaa; 32]),
    });
    let mut want = vec![0, 0, 0, 52];
    // {"Hello": [0x544f504f, 1, 0x0102, 3, bin8(32)]}
    want.extend_from_slice(&[0x81, 0xa5]);
    want.extend_from_slice(b"Hello");
    want.extend_from_slice(&[
        0x95, 0xce, b'T', b'O', b'P', b'O', 0x01, 0xcd, 0x01, 0x02, 0x03,
    ]);
    want.extend_from_slice(&[0xc4, 32]);
    want.extend_from_slice(&[0xaa; 32]);
    let wire = encode_all(std::slice::from_ref(&frame));
    assert_eq!(wire.to_vec(), want);
    let back = decode_chunked(&mut FrameCodec::default(), &want, &[5]).expect("decodes");
    assert_eq!(back, vec![frame]);
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
