//! Fuzzes the cluster's control handshake: arbitrary bytes are everything a peer sends to a
//! coordinator's acceptor. It may not panic, and may not authenticate a peer that does not
//! know the secret (the fuzzer never sees it).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;
use topo_cluster::control::{accept_on, Role};
use topo_cluster::secret::Secret;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (mut peer, ours) = tokio::io::duplex(1 << 16);
        if peer.write_all(data).await.is_err() || peer.shutdown().await.is_err() {
            return;
        }
        let secret = Secret::from_bytes("not in the corpus");
        let peer_addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        if accept_on(ours, peer_addr, &secret, Role::Coordinator)
            .await
            .is_ok()
        {
            panic!("authenticated without the secret");
        }
    });
});
