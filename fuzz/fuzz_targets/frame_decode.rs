//! Fuzzes the frame decoder: arbitrary bytes, in arbitrary chunks, with an arbitrary maximum.
//! It must never panic, and every frame it yields must survive a re-encode and decode.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};
use topo_transport::frame::FrameCodec;

fuzz_target!(|data: &[u8]| {
    let Some((&[chunk, max], wire)) = data.split_first_chunk::<2>() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let max = usize::from(max) * 64;
    let mut codec = FrameCodec::new(max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut ok = true;
    'feed: for piece in wire.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => {
                    ok = false;
                    break 'feed;
                }
            }
        }
    }
    if ok {
        loop {
            match codec.decode_eof(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) | Err(_) => break,
            }
        }
    }
    for frame in frames {
        let mut out = BytesMut::new();
        // Re-encoding is canonical and may differ in size from what was read (an enum by
        // index, an array of bytes for a bin), so it gets the default maximum.
        let mut enc = FrameCodec::default();
        enc.encode(frame.clone(), &mut out)
            .expect("a decoded frame re-encodes");
        let back = enc
            .decode(&mut out)
            .expect("a re-encoded frame decodes")
            .expect("a whole frame");
        assert_eq!(back, frame);
    }
});
