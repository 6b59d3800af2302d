//! Fuzzes the worker handshake: flights cut from arbitrary bytes are fed to an acceptor and
//! to a dialer. Neither may panic, and neither may authenticate a peer that does not know
//! the secret (the fuzzer never sees it).

#![no_main]

use std::sync::Arc;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use topo_transport::handshake::Identity;
use topo_transport::secure::{flight_codec, Step};

fuzz_target!(|data: &[u8]| {
    let id = |worker| Identity {
        fingerprint: 0x7070,
        worker,
        workers: 4,
        secret: Arc::from(&b"not in the corpus"[..]),
        encrypt: data.first().is_some_and(|b| b & 1 == 1),
    };
    let mut acceptor = id(2).acceptor();
    let Ok((mut dialer, _hello)) = id(1).dialer(3) else {
        return;
    };
    let mut codec = flight_codec();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(flight)) = codec.decode_eof(&mut buf) {
        for hs in [&mut acceptor, &mut dialer] {
            if let Ok(Step::Done { .. }) = hs.read(&flight) {
                panic!("authenticated without the secret");
            }
        }
    }
});
