//! Bad input at a live worker's port — garbage, bad frames, bad handshakes, a flood — closes
//! that connection, is counted exactly once, and the legitimate peers never notice.

mod transport_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use topo_transport::frame::{Frame, FrameCodec, HANDSHAKE_MAX_FRAME_LEN, MAGIC, PROTOCOL_VERSION};
use topo_transport::handshake::{self, Identity, Reader, Writer};
use topo_transport::{CloseReason, Counters, Delivery};
use transport_support::*;

/// Worker 2 is the target; worker 0 its legitimate peer; worker 1's address is dead, so a
/// test can pose as worker 1.
struct Cluster {
    a: Worker,
    b: Worker,
    exchanged: u32,
}

async fn cluster(tweak_b: impl FnOnce(&mut topo_transport::TransportConfig)) -> Cluster {
    let (mut ls, addrs) = listeners(3).await;
    let dead = ls.remove(1);
    drop(dead);
    let b = Worker::start(2, &addrs, ls.pop().expect("listener"), tweak_b);
    let a = Worker::start(0, &addrs, ls.pop().expect("listener"), |_| {});
    expect_up(&a.inbound, 2).await;
    expect_up(&b.inbound, 0).await;
    Cluster { a, b, exchanged: 0 }
}

impl Cluster {
    fn addr(&self) -> SocketAddr {
        self.b.transport.local_addr()
    }

    fn counters(&self) -> Arc<Counters> {
        self.b.transport.counters()
    }

    /// The legitimate pair still exchanges frames both ways, in order and intact.
    async fn assert_healthy(&mut self) {
        self.exchanged += 1;
        let n = self.exchanged;
        let to_b = self.a.transport.sender(2).expect("peer 2");
        let to_a = self.b.transport.sender(0).expect("peer 0");
        blocking(move || {
            to_b.send_data(n, Bytes::from(format!("to b {n}")))?;
            to_a.send_data(n, Bytes::from(format!("to a {n}")))
        })
        .await
        .expect("sent");
        assert_eq!(
            expect_data(&self.b.inbound).await,
            (0, n, format!("to b {n}").into_bytes())
        );
        assert_eq!(
            expect_data(&self.a.inbound).await,
            (2, n, format!("to a {n}").into_bytes())
        );
        let b_side = self.b.transport.peer_counters(0).expect("peer 0");
        assert_eq!(
            b_side.connects(),
            1,
            "the legitimate connection was never replaced"
        );
    }

    async fn stop(self) {
        self.a.stop().await;
        self.b.stop().await;
    }
}

fn snapshot(c: &Counters) -> Vec<u64> {
    CloseReason::ALL.iter().map(|r| c.closed(*r)).collect()
}

/// Asserts that exactly `n` connections closed since `before`, all for `reason`.
fn assert_closed(c: &Counters, before: &[u64], reason: CloseReason, n: u64) {
    let after = snapshot(c);
    for (i, r) in CloseReason::ALL.iter().enumerate() {
        let want = if *r == reason { n } else { 0 };
        assert_eq!(after[i] - before[i], want, "connections closed for {r}");
    }
}

/// Reads until the worker closes the connection (EOF or reset).
async fn until_closed(stream: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Err(_) => panic!("the worker did not close the connection"),
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => {}
        }
    }
}

/// Sends `bytes` on a fresh connection, ends the write side, and waits for the close.
async fn send_raw(addr: SocketAddr, bytes: &[u8]) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    until_closed(&mut s).await;
}

fn framed(bytes: &Frame) -> Vec<u8> {
    let mut codec = FrameCodec::default();
    let mut dst = bytes::BytesMut::new();
    tokio_util::codec::Encoder::encode(&mut codec, bytes.clone(), &mut dst).expect("encodes");
    dst.to_vec()
}

/// A body with its length prefix.
fn raw(body: &[u8]) -> Vec<u8> {
    let mut v = (body.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

fn identity(worker: u32, fingerprint: u64, secret: &[u8]) -> Identity {
    Identity {
        fingerprint,
        worker,
        workers: 3,
        secret: Arc::from(secret),
        encrypt: false,
    }
}

/// A real `Hello` flight of `worker` (right secret) with the given magic and version.
fn hello(magic: [u8; 4], version: u16, fingerprint: u64, worker: u32) -> Vec<u8> {
    let (_, flight) = identity(worker, fingerprint, SECRET)
        .dialer(2)
        .expect("dial");
    let mut body = flight.to_vec();
    body[1..5].copy_from_slice(&magic);
    body[5..7].copy_from_slice(&version.to_be_bytes());
    raw(&body)
}

/// A deterministic stream of "random" bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

type Halves = (Reader<OwnedReadHalf>, Writer<OwnedWriteHalf>);

/// Connects as `id` to `addr` and runs the handshake with worker `expect`.
async fn dial_as(id: &Identity, addr: SocketAddr, expect: u32) -> Halves {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (r, w) = stream.into_split();
    let (mut reader, mut writer) = handshake::framed(r, w);
    let session = handshake::dial(id, expect, &mut reader, &mut writer, None)
        .await
        .expect("the right secret authenticates");
    handshake::upgrade(reader, writer, session, topo_transport::MAX_FRAME_LEN)
}

/// Connects and authenticates as worker 1 with the right secret.
async fn pose_as_worker_1(c: &Cluster) -> Halves {
    let halves = dial_as(&identity(1, FINGERPRINT, SECRET), c.addr(), 2).await;
    expect_up(&c.b.inbound, 1).await;
    halves
}

/// Writes raw bytes after an authenticated handshake, half-closes, waits for the close.
async fn after_handshake(c: &Cluster, bytes: &[u8]) {
    let (mut reader, writer) = pose_as_worker_1(c).await;
    let mut w = writer.into_inner();
    let _ = w.write_all(bytes).await;
    let _ = w.shutdown().await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, reader.next()).await {}
    expect_down(&c.b.inbound, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_before_the_handshake_is_closed_and_counted_once() {
    let mut c = cluster(|_| {}).await;
    let counters = c.counters();

    let cases: Vec<(&str, Vec<u8>, CloseReason)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            CloseReason::TooLong,
        ),
        (
            "a length prefix over the maximum",
            u32::MAX.to_be_bytes().to_vec(),
            CloseReason::TooLong,
        ),
        (
            "a length prefix just over the handshake maximum",
            (HANDSHAKE_MAX_FRAME_LEN as u32 + 1).to_be_bytes().to_vec(),
            CloseReason::TooLong,
        ),
        (
            "a truncated frame",
            vec![0, 0, 0, 50, 1, 2, 3],
            CloseReason::Truncated,
        ),
        ("a truncated header", vec![0, 0], CloseReason::Truncated),
        (
            "a malformed Hello",
            vec![0, 0, 0, 3, 0x01, 0xc1, 0xc1],
            CloseReason::Undecodable,
        ),
        (
            "data before the handshake",
            framed(&Frame::Data {
                dest_task: 1,
                payload: Bytes::from_static(b"x"),
            }),
            CloseReason::BadMagic,
        ),
        (
            "a Confirm before the Hello",
            raw(&[0x03; 17]),
            CloseReason::Unexpected,
        ),
        (
            "a wrong magic",
            hello(*b"HTTP", PROTOCOL_VERSION, FINGERPRINT, 1),
            CloseReason::BadMagic,
        ),
        (
            "a wrong version",
            hello(MAGIC, PROTOCOL_VERSION + 1, FINGERPRINT, 1),
            CloseReason::BadVersion,
        ),
        (
            "a wrong fingerprint",
            hello(MAGIC, PROTOCOL_VERSION, FINGERPRINT ^ 1, 1),
            CloseReason::BadFingerprint,
        ),
        (
            "a worker that may not dial",
            hello(MAGIC, PROTOCOL_VERSION, FINGERPRINT, 2),
            CloseReason::BadWorker,
        ),
        (
            "a worker that does not exist",
            hello(MAGIC, PROTOCOL_VERSION, FINGERPRINT, 9),
            CloseReason::BadWorker,
        ),
        ("nothing at all", Vec::new(), CloseReason::Dropped),
    ];
    for (what, bytes, reason) in cases {
        let before = snapshot(&counters);
        send_raw(c.addr(), &bytes).await;
        println!("{what}: closed for {reason}");
        assert_closed(&counters, &before, reason, 1);
        c.assert_healthy().await;
    }

    // Random bytes: whatever they look like, each connection is closed and counted once.
    for seed in 1..=20 {
        let before = counters.closed_total();
        send_raw(c.addr(), &noise(seed, 300)).await;
        assert_eq!(
            counters.closed_total() - before,
            1,
            "random bytes, seed {seed}"
        );
    }
    c.assert_healthy().await;
    assert_eq!(
        counters.authenticated(),
        1,
        "only the legitimate connection"
    );
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_or_a_replayed_hello_is_closed_and_counted_once() {
    let mut c = cluster(|_| {}).await;
    let counters = c.counters();
    let before = snapshot(&counters);

    // A dialer with another secret: refused at its Hello, and told why.
    let mut s = TcpStream::connect(c.addr()).await.expect("connect");
    let (_, hello) = identity(1, FINGERPRINT, b"wrong").dialer(2).expect("dial");
    s.write_all(&raw(&hello)).await.expect("hello sent");
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, s.read_to_end(&mut reply)).await;
    assert_eq!(
        &reply[4..6],
        &[0x04, 12],
        "a Refuse with the worker's hello"
    );
    assert!(
        reply.ends_with(b"authentication failed (wrong secret?)"),
        "{reply:?}"
    );

    // A Hello recorded from a worker that knows the secret, replayed: the worker
    // answers, but the replayer cannot produce the Confirm for its fresh key.
    let mut s = TcpStream::connect(c.addr()).await.expect("connect");
    let (_, hello) = identity(1, FINGERPRINT, SECRET).dialer(2).expect("dial");
    s.write_all(&raw(&hello)).await.expect("hello sent");
    let mut header = [0u8; 4];
    s.read_exact(&mut header).await.expect("an answer");
    let mut answer = vec![0u8; u32::from_be_bytes(header) as usize];
    s.read_exact(&mut answer).await.expect("an answer");
    assert_eq!(answer[0], 0x02, "an Answer");
    let mut confirm = vec![0x03];
    confirm.extend_from_slice(&[0u8; 16]);
    s.write_all(&raw(&confirm)).await.expect("confirm sent");
    until_closed(&mut s).await;

    assert_closed(&counters, &before, CloseReason::BadAuth, 2);
    let claimed = c.b.transport.peer_counters(1).expect("worker 1");
    assert_eq!(
        claimed.handshake_failures(),
        2,
        "counted against the worker it claimed"
    );
    assert_eq!(claimed.connects(), 0);
    c.assert_healthy().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_connections_refuse_injected_or_replayed_records() {
    let encrypt = |cfg: &mut topo_transport::TransportConfig| cfg.encrypt = true;
    let (mut ls, addrs) = listeners(3).await;
    drop(ls.remove(1));
    let b = Worker::start(2, &addrs, ls.pop().expect("listener"), encrypt);
    let a = Worker::start(0, &addrs, ls.pop().expect("listener"), encrypt);
    expect_up(&a.inbound, 2).await;
    expect_up(&b.inbound, 0).await;
    let counters = b.transport.counters();
    let mut sealed = identity(1, FINGERPRINT, SECRET);
    sealed.encrypt = true;

    // Plaintext frames after a sealed handshake are not records that open.
    let before = snapshot(&counters);
    let (mut reader, writer) = dial_as(&sealed, b.transport.local_addr(), 2).await;
    expect_up(&b.inbound, 1).await;
    let mut w = writer.into_inner();
    let _ = w.write_all(&framed(&Frame::Heartbeat)).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, reader.next()).await {}
    expect_down(&b.inbound, 1).await;
    assert_closed(&counters, &before, CloseReason::BadAuth, 1);

    // A sealed record sent twice: the second has a used nonce.
    let before = snapshot(&counters);
    let (mut reader, mut writer) = dial_as(&sealed, b.transport.local_addr(), 2).await;
    expect_up(&b.inbound, 1).await;
    let mut record = bytes::BytesMut::new();
    tokio_util::codec::Encoder::encode(writer.encoder_mut(), Frame::Heartbeat, &mut record)
        .expect("seals");
    let mut w = writer.into_inner();
    let _ = w.write_all(&record).await;
    let _ = w.write_all(&record).await;
    while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, reader.next()).await {}
    expect_down(&b.inbound, 1).await;
    assert_closed(&counters, &before, CloseReason::BadAuth, 1);

    // The legitimate sealed pair still talks.
    let to_b = a.transport.sender(2).expect("peer 2");
    blocking(move || to_b.send_data(5, Bytes::from_static(b"sealed")))
        .await
        .expect("sent");
    assert_eq!(expect_data(&b.inbound).await, (0, 5, b"sealed".to_vec()));
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_after_the_handshake_are_closed_and_counted_once() {
    let mut c = cluster(|_| {}).await;
    let counters = c.counters();
    let cases: Vec<(&str, Vec<u8>, CloseReason)> = vec![
        (
            "a length prefix over the maximum",
            (topo_transport::MAX_FRAME_LEN as u32 + 1)
                .to_be_bytes()
                .to_vec(),
            CloseReason::TooLong,
        ),
        (
            "a truncated frame",
            vec![0, 0, 0, 40, 1, 2],
            CloseReason::Truncated,
        ),
        (
            "an undecodable body",
            vec![0, 0, 0, 2, 0x92, 0xc1],
            CloseReason::Undecodable,
        ),
        (
            "a second Hello",
            hello(MAGIC, PROTOCOL_VERSION, FINGERPRINT, 1),
            CloseReason::Undecodable,
        ),
        (
            "a crash (EOF without Goodbye)",
            Vec::new(),
            CloseReason::Dropped,
        ),
    ];
    for (what, bytes, reason) in cases {
        let before = snapshot(&counters);
        after_handshake(&c, &bytes).await;
        println!("{what}: closed for {reason}");
        assert_closed(&counters, &before, reason, 1);
        c.assert_healthy().await;
    }

    // A clean Goodbye is not a fault.
    let before = snapshot(&counters);
    after_handshake(&c, &framed(&Frame::Goodbye)).await;
    assert_eq!(snapshot(&counters), before);
    let posing = c.b.transport.peer_counters(1).expect("worker 1");
    assert_eq!((posing.connects(), posing.faults()), (6, 5));
    let legit = c.b.transport.peer_counters(0).expect("worker 0");
    assert_eq!(legit.faults(), 0);
    c.assert_healthy().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_connections_is_closed_and_counted_once_each() {
    const FLOOD: u64 = 200;
    let mut c = cluster(|cfg| {
        cfg.max_handshakes = 16;
        cfg.handshake_timeout = Duration::from_secs(1);
    })
    .await;
    let counters = c.counters();
    let before = snapshot(&counters);
    let accepted = counters.accepted();

    let mut conns = Vec::new();
    for _ in 0..FLOOD {
        conns.push(TcpStream::connect(c.addr()).await.expect("connect"));
    }
    // While the flood is still open, the legitimate pair goes on as before.
    c.assert_healthy().await;
    for s in &mut conns {
        until_closed(s).await;
    }

    let after = snapshot(&counters);
    let delta = |r: CloseReason| {
        let i = CloseReason::ALL
            .iter()
            .position(|x| *x == r)
            .expect("reason");
        after[i] - before[i]
    };
    let flood = delta(CloseReason::Flood);
    let timed_out = delta(CloseReason::HandshakeTimeout);
    assert!(flood > 0, "connections over the limit are refused at once");
    assert!(timed_out > 0, "silent connections time out");
    assert_eq!(flood + timed_out, FLOOD);
    assert_eq!(counters.closed_total() - before.iter().sum::<u64>(), FLOOD);
    assert_eq!(counters.accepted() - accepted, FLOOD);
    c.assert_healthy().await;

    // Once the flood is gone, a peer can still connect and authenticate.
    let before = snapshot(&counters);
    after_handshake(&c, &framed(&Frame::Goodbye)).await;
    assert_eq!(snapshot(&counters), before);
    c.assert_healthy().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_is_timed_out() {
    let (mut ls, addrs) = listeners(2).await;
    let b = Worker::start(1, &addrs, ls.pop().expect("listener"), |cfg| {
        cfg.heartbeat_interval = Duration::from_millis(100);
        cfg.peer_timeout = Duration::from_millis(300);
    });
    drop(ls);
    let counters = b.transport.counters();
    let before = snapshot(&counters);

    let mut id = identity(0, FINGERPRINT, SECRET);
    id.workers = 2;
    let (mut reader, writer) = dial_as(&id, b.transport.local_addr(), 1).await;
    expect_up(&b.inbound, 0).await;
    // Worker 1 heartbeats its idle connection; this peer never answers.
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(PATIENCE, reader.next()).await {
        assert_eq!(frame, Frame::Heartbeat);
    }
    expect_down(&b.inbound, 0).await;
    assert_closed(&counters, &before, CloseReason::PeerTimeout, 1);
    drop(writer);
    b.stop().await;
}

#[test]
fn inbound_is_a_plain_std_channel() {
    // The runtime's executors are std threads: Delivery must cross threads.
    fn assert_send<T: Send>() {}
    assert_send::<Delivery>();
    assert_send::<topo_transport::PeerSender>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_silent_sockets_from_one_address_does_not_stop_a_restarted_worker() {
    let mut c = cluster(|_| {}).await;
    // 1,000 silent sockets from one address, all held open: without a share per address
    // they would hold every slot for the handshake timeout.
    let mut flood = Vec::new();
    for _ in 0..1000 {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.9:0".parse().expect("addr"))
            .expect("bind 127.0.0.9");
        flood.push(socket.connect(c.addr()).await.expect("connect"));
    }
    // Worker 1 restarts and reconnects from its own address while the flood holds on.
    let started = std::time::Instant::now();
    after_handshake(&c, &framed(&Frame::Goodbye)).await;
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the reconnect did not wait for the flood's handshakes to time out: {:?}",
        started.elapsed()
    );
    c.assert_healthy().await;
    drop(flood);
    c.stop().await;
}
