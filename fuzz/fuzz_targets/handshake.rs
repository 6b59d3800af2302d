//! Fuzzes the handshake: frames decoded from arbitrary bytes are fed to an acceptor and to a
//! dialer. Neither may panic, and neither may authenticate a peer that does not know the
//! secret (the fuzzer never sees it).

#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use topo_engine::transport::frame::{FrameCodec, HANDSHAKE_MAX_FRAME_LEN};
use topo_engine::transport::handshake::{Handshake, Identity, Step};

fuzz_target!(|data: &[u8]| {
    let id = |worker| Identity {
        fingerprint: 0x7070,
        worker,
        workers: 4,
        secret: Arc::from(&b"not in the corpus"[..]),
    };
    let mut acceptor = Handshake::accept(id(2), [7; 32]);
    let (mut dialer, _hello) = Handshake::dial(id(1), 3, [8; 32]);
    let mut codec = FrameCodec::new(HANDSHAKE_MAX_FRAME_LEN);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode_eof(&mut buf) {
        for hs in [&mut acceptor, &mut dialer] {
            if let Ok(Step::Done { .. }) = hs.on_frame(frame.clone()) {
                panic!("authenticated without the secret");
            }
        }
    }
});
