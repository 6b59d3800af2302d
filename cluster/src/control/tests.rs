//! Tests of the control connection: handshake outcomes, hostile peers, tampered frames.

use std::sync::Mutex as StdMutex;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Ping {
    n: u32,
    text: String,
}

fn ping(n: u32) -> Ping {
    Ping {
        n,
        text: format!("ping {n}"),
    }
}

fn secret(s: &str) -> Secret {
    Secret::from_bytes(s)
}

async fn listener(secret: &Secret, options: ListenOptions) -> Listener {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    Listener::from_tcp(tcp, secret, options).expect("listener")
}

/// Every log line written while the returned guard lives (current-thread runtime only).
#[derive(Clone, Default)]
struct Logs(Arc<StdMutex<Vec<u8>>>);

impl Logs {
    fn capture() -> (Logs, tracing::subscriber::DefaultGuard) {
        let logs = Logs::default();
        let sink = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || sink.clone())
            .finish();
        (logs, tracing::subscriber::set_default(subscriber))
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("logs")).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("logs").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads one raw frame body; `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Option<Vec<u8>> {
    let mut header = [0u8; HEADER_LEN];
    r.read_exact(&mut header).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(header) as usize];
    r.read_exact(&mut body).await.ok()?;
    Some(body)
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, body: &[u8]) {
    w.write_all(&(body.len() as u32).to_be_bytes())
        .await
        .expect("write header");
    w.write_all(body).await.expect("write body");
}

/// The reason of a `Refuse` flight body (its sender's hello skipped).
fn reason_of(body: &[u8]) -> String {
    assert_eq!(body.first(), Some(&0x04), "not a Refuse frame: {body:?}");
    let n = body[1] as usize;
    String::from_utf8(body[2 + n..].to_vec()).expect("utf-8 reason")
}

/// What a raw peer gets back: the refusal reason, then the end of the stream.
async fn refusal<R: AsyncRead + Unpin>(r: &mut R) -> String {
    let body = read_frame(r).await.expect("a refusal frame");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).await.expect("read to the end");
    assert!(rest.is_empty(), "bytes after the refusal");
    reason_of(&body)
}

/// A `Hello` flight of a dialer with role `role` that holds `secret`.
fn hello(role: Role, secret: &Secret) -> Vec<u8> {
    let (_, flight) =
        Handshake::dial(PROFILE, &psk(secret), &[role.byte()], check()).expect("dial");
    flight.to_vec()
}

/// Bytes of a control `Hello`: type, magic, version, role, Noise message 1.
const HELLO_LEN: usize = 1 + 4 + 2 + 2 + 48;
/// Bytes of a control `Answer`: type, role, Noise message 2 with the role.
const ANSWER_LEN: usize = 1 + 2 + 32 + 1 + 16;

/// Proves the listener still serves: a right client connects and round-trips a message.
async fn serves(l: &Listener, s: &Secret) {
    let mut client = connect(l.local_addr(), s, Role::Client)
        .await
        .expect("a right client connects");
    let (mut conn, role, _) = l.accept().await.expect("accepted");
    assert_eq!(role, Role::Client);
    client.send(&ping(7)).await.expect("send");
    assert_eq!(conn.recv::<Ping>().await.expect("recv"), Some(ping(7)));
}

#[tokio::test]
async fn a_right_secret_connects_both_ways_and_exchanges_messages() {
    let s = secret("s3cret");
    let l = listener(&s, ListenOptions::default()).await;
    let mut client = connect(l.local_addr(), &s, Role::Supervisor)
        .await
        .expect("connect");
    let (mut server, role, peer) = l.accept().await.expect("accept");
    assert_eq!(role, Role::Supervisor);
    assert_eq!(server.peer_role(), Role::Supervisor);
    assert_eq!(client.peer_role(), Role::Coordinator);
    assert_eq!(client.peer_addr(), l.local_addr());
    assert_eq!(server.peer_addr(), peer);

    client.send(&ping(1)).await.expect("send");
    assert_eq!(server.recv::<Ping>().await.expect("recv"), Some(ping(1)));
    server.send(&ping(2)).await.expect("send");
    assert_eq!(client.recv::<Ping>().await.expect("recv"), Some(ping(2)));

    // Split halves keep the sequence numbers going.
    let (mut cr, mut cw) = client.split();
    let (mut sr, mut sw) = server.split();
    for n in 3..6 {
        cw.send(&ping(n)).await.expect("send");
        sw.send(&ping(n + 100)).await.expect("send");
    }
    for n in 3..6 {
        assert_eq!(sr.recv::<Ping>().await.expect("recv"), Some(ping(n)));
        assert_eq!(cr.recv::<Ping>().await.expect("recv"), Some(ping(n + 100)));
    }
    drop(cw);
    assert_eq!(sr.recv::<Ping>().await.expect("clean end"), None);
    assert_eq!(l.refused(), 0);
}

#[tokio::test]
async fn without_a_secret_loopback_peers_still_authenticate() {
    let l = listener(&Secret::none(), ListenOptions::default()).await;
    serves(&l, &Secret::none()).await;
    // ...but a peer that has a secret is not one of them.
    let err = connect(l.local_addr(), &secret("s"), Role::Client)
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the coordinator refused the connection: authentication failed (wrong cluster secret?)"
    );
}

#[tokio::test]
async fn a_wrong_secret_is_refused_on_both_sides_logged_and_the_listener_serves_on() {
    let (logs, _guard) = Logs::capture();
    let s = secret("right");
    let l = listener(&s, ListenOptions::default()).await;
    let err = connect(l.local_addr(), &secret("wrong"), Role::Client)
        .await
        .expect_err("must be refused");
    assert_eq!(
        err.to_string(),
        "the coordinator refused the connection: authentication failed (wrong cluster secret?)"
    );
    assert!(matches!(
        err,
        ControlError::Refused {
            by: Some(Role::Coordinator),
            ..
        }
    ));
    assert_eq!(l.refused(), 1);
    let line = logs
        .text()
        .lines()
        .find(|l| l.contains("refused 127.0.0.1:"))
        .map(str::to_string)
        .expect("the refusal is logged");
    assert!(line.contains("WARN"), "{line}");
    assert!(
        line.ends_with(": authentication failed (wrong cluster secret?)"),
        "{line}"
    );
    // The refused peer never came out of accept: the next accepted one is the right client.
    serves(&l, &s).await;
    assert_eq!(l.refused(), 1);
}

#[tokio::test]
async fn the_dialer_refuses_an_acceptor_that_does_not_know_the_secret() {
    // An impostor that answers the handshake with a made-up tag.
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let impostor = tokio::spawn(async move {
        let (mut stream, _) = tcp.accept().await.expect("accept");
        let hello = read_frame(&mut stream).await.expect("hello");
        assert_eq!(hello.len(), HELLO_LEN);
        // An Answer of the right shape that no key made.
        let mut answer = vec![0x02, 1, 3];
        answer.extend_from_slice(&[9; 32 + 1 + 16]);
        write_frame(&mut stream, &answer).await;
        // The dialer tells it why, and closes.
        refusal(&mut stream).await
    });
    let err = connect(addr, &secret("s"), Role::Client)
        .await
        .expect_err("impostor");
    assert_eq!(
        err.to_string(),
        format!("cannot connect to {addr}: the coordinator failed authentication (wrong cluster secret?)")
    );
    assert_eq!(
        impostor.await.expect("impostor"),
        "the coordinator failed authentication (wrong cluster secret?)"
    );
}

#[tokio::test]
async fn garbage_bytes_are_refused_and_the_listener_serves_on() {
    let s = secret("s");
    let l = listener(&s, ListenOptions::default()).await;

    let mut http = TcpStream::connect(l.local_addr()).await.expect("connect");
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    assert_eq!(
        refusal(&mut http).await,
        "frame length over the maximum of 512 bytes"
    );

    let mut junk = TcpStream::connect(l.local_addr()).await.expect("connect");
    write_frame(&mut junk, &[0x42; 40]).await;
    assert_eq!(refusal(&mut junk).await, "not a topo control connection");

    let mut bad_magic = TcpStream::connect(l.local_addr()).await.expect("connect");
    let mut flight = hello(Role::Client, &s);
    flight[1] = b'X';
    write_frame(&mut bad_magic, &flight).await;
    assert_eq!(
        refusal(&mut bad_magic).await,
        "not a topo control connection"
    );

    let mut future = TcpStream::connect(l.local_addr()).await.expect("connect");
    let mut flight = hello(Role::Client, &s);
    flight[6] = 9;
    write_frame(&mut future, &flight).await;
    assert_eq!(
        refusal(&mut future).await,
        "control protocol version 9, expected 2"
    );

    let mut stranger = TcpStream::connect(l.local_addr()).await.expect("connect");
    let mut flight = hello(Role::Client, &s);
    flight[8] = 77;
    write_frame(&mut stranger, &flight).await;
    assert_eq!(refusal(&mut stranger).await, "unknown role 77");

    let mut short = TcpStream::connect(l.local_addr()).await.expect("connect");
    write_frame(&mut short, &[0x01, b'T', b'O']).await;
    assert_eq!(
        refusal(&mut short).await,
        "malformed Hello frame of 3 bytes"
    );

    // Another Hello instead of the Confirm after a good Hello.
    let mut eager = TcpStream::connect(l.local_addr()).await.expect("connect");
    write_frame(&mut eager, &hello(Role::Client, &s)).await;
    assert_eq!(
        read_frame(&mut eager).await.map(|b| b.len()),
        Some(ANSWER_LEN)
    );
    write_frame(&mut eager, &hello(Role::Client, &s)).await;
    assert_eq!(
        refusal(&mut eager).await,
        "unexpected Hello frame during the handshake, expected Confirm"
    );

    assert_eq!(l.refused(), 7);
    serves(&l, &s).await;
}

#[tokio::test]
async fn a_truncated_handshake_is_refused_and_the_listener_serves_on() {
    let (logs, _guard) = Logs::capture();
    let s = secret("s");
    let l = listener(&s, ListenOptions::default()).await;
    let mut half = TcpStream::connect(l.local_addr()).await.expect("connect");
    let hello = hello(Role::Client, &s);
    half.write_all(&(hello.len() as u32).to_be_bytes())
        .await
        .expect("header");
    half.write_all(&hello[..20]).await.expect("half a hello");
    half.shutdown().await.expect("shutdown");
    assert_eq!(refusal(&mut half).await, "stream ended inside a frame");
    assert!(logs.text().contains(": stream ended inside a frame"));

    // A peer that leaves between the flights is refused too, with nothing to tell it.
    let mut gone = TcpStream::connect(l.local_addr()).await.expect("connect");
    write_frame(&mut gone, &hello).await;
    assert_eq!(
        read_frame(&mut gone).await.map(|b| b.len()),
        Some(ANSWER_LEN)
    );
    gone.shutdown().await.expect("shutdown");
    assert_eq!(read_frame(&mut gone).await, None);
    serves(&l, &s).await;
    assert!(logs
        .text()
        .contains(": connection closed during the handshake"));
    assert_eq!(l.refused(), 2);
}

#[tokio::test]
async fn a_silent_peer_times_out_without_holding_up_the_next_connection() {
    let s = secret("s");
    let options = ListenOptions {
        handshake_timeout: Duration::from_millis(300),
        ..ListenOptions::default()
    };
    let l = listener(&s, options).await;
    let mut silent = TcpStream::connect(l.local_addr()).await.expect("connect");
    // While the silent peer hangs, a right client gets through.
    serves(&l, &s).await;
    assert_eq!(refusal(&mut silent).await, "handshake timed out");
    assert_eq!(l.refused(), 1);
}

#[tokio::test]
async fn the_dialer_gives_up_on_a_silent_acceptor() {
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let holder = tokio::spawn(async move {
        let (mut stream, _) = tcp.accept().await.expect("accept");
        let hello = read_frame(&mut stream).await.expect("hello");
        (hello.len(), refusal(&mut stream).await)
    });
    let err = connect_within(addr, &secret("s"), Role::Client, Duration::from_millis(300))
        .await
        .expect_err("silent");
    assert_eq!(
        err.to_string(),
        format!("cannot connect to {addr}: handshake timed out")
    );
    // It sent its Hello, then said why it gave up.
    assert_eq!(
        holder.await.expect("holder"),
        (HELLO_LEN, "handshake timed out".to_string())
    );
}

#[tokio::test]
async fn too_many_pending_handshakes_are_refused_at_once() {
    let s = secret("s");
    let options = ListenOptions {
        max_handshakes: 1,
        ..ListenOptions::default()
    };
    let l = listener(&s, options).await;
    let mut first = TcpStream::connect(l.local_addr()).await.expect("connect");
    // The first holds the only slot once its Hello was answered.
    write_frame(&mut first, &hello(Role::Client, &s)).await;
    assert_eq!(
        read_frame(&mut first).await.map(|b| b.len()),
        Some(ANSWER_LEN)
    );
    let err = connect(l.local_addr(), &s, Role::Client)
        .await
        .expect_err("no slot");
    assert_eq!(
        err.to_string(),
        "the peer refused the connection: too many connections in their handshake"
    );
    assert_eq!(l.refused(), 1);
    drop(first);
}

#[tokio::test]
async fn a_non_loopback_address_without_a_secret_is_not_bound() {
    let err = Listener::bind("10.0.0.5:7000".parse().expect("addr"), &Secret::none())
        .await
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        "refusing to listen on 10.0.0.5:7000 without a cluster secret; \
         pass --secret-file or set TOPO_CLUSTER_SECRET"
    );
    let l = Listener::bind("127.0.0.3:0".parse().expect("addr"), &Secret::none())
        .await
        .expect("loopback is fine");
    assert_eq!(l.local_addr().ip().to_string(), "127.0.0.3");
}

#[tokio::test]
async fn an_oversized_message_is_not_sent_and_an_oversized_frame_not_read() {
    let s = secret("s");
    let l = listener(&s, ListenOptions::default()).await;
    let mut client = connect(l.local_addr(), &s, Role::Client)
        .await
        .expect("connect");
    let (mut server, _, _) = l.accept().await.expect("accept");
    let big = serde_bytes_like(MAX_MESSAGE_LEN + 1);
    let err = client.send(&big).await.expect_err("too large");
    assert!(err
        .to_string()
        .ends_with("bytes exceeds the limit of 16777216"));
    // The limit itself is fine (a 1 MiB chunk is far below it).
    client
        .send(&serde_bytes_like(1024 * 1024))
        .await
        .expect("1 MiB");
    let got: Vec<u8> = server.recv().await.expect("recv").expect("message");
    assert_eq!(got.len(), 1024 * 1024);

    let mut codec = RawCodec::new(100);
    let mut buf = bytes::BytesMut::from(&[0u8, 0, 0, 101, 1, 2][..]);
    let err = tokio_util::codec::Decoder::decode(&mut codec, &mut buf).expect_err("too large");
    assert_eq!(
        err.to_string(),
        "frame length over the maximum of 100 bytes"
    );
}

/// A msgpack `bin` of `n` bytes (serialized as bytes, not as an array of integers).
fn serde_bytes_like(n: usize) -> Bin {
    Bin(vec![7; n])
}

#[derive(Debug)]
struct Bin(Vec<u8>);

impl Serialize for Bin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

#[test]
fn handshake_frames_have_these_exact_bytes() {
    let hello = hello(Role::Supervisor, &secret("s"));
    assert_eq!(
        &hello[..9],
        &[0x01, b'T', b'O', b'P', b'C', 0x00, 0x02, 0x01, 0x02]
    );
    assert_eq!(hello.len(), HELLO_LEN);

    // Refusal text is sanitized: no control characters, bounded length.
    let refuse = secure::refusal(&[3], "bad\x1b[2Jthing\n");
    assert_eq!(&refuse[..], b"\x04\x01\x03bad?[2Jthing?");
    let long = secure::refusal(&[], &"x".repeat(1000));
    assert_eq!(long.len(), 2 + MAX_REASON_LEN);
}

/// Two in-memory connections joined by a relay that forwards frames and lets the test see
/// (and change) the dialer's.
struct Relay {
    dialer: DuplexStream,
    acceptor: DuplexStream,
    captured: Arc<StdMutex<Vec<Vec<u8>>>>,
}

/// What the relay does to one of the dialer's frames.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Flip a bit.
    Alter(usize),
    /// Send it twice.
    Replay(usize),
    /// Leave it out.
    Drop(usize),
}

fn relay(tamper: Option<Tamper>) -> Relay {
    let (dialer, mut d_side) = tokio::io::duplex(1 << 16);
    let (acceptor, mut a_side) = tokio::io::duplex(1 << 16);
    let captured = Arc::new(StdMutex::new(Vec::new()));
    let seen = captured.clone();
    tokio::spawn(async move {
        let (mut dr, mut dw) = tokio::io::split(&mut d_side);
        let (mut ar, mut aw) = tokio::io::split(&mut a_side);
        let up = async {
            let mut i = 0;
            while let Some(mut body) = read_frame(&mut dr).await {
                seen.lock().expect("captured").push(body.clone());
                match tamper {
                    Some(Tamper::Alter(at)) if at == i => body[0] ^= 0x01,
                    Some(Tamper::Replay(at)) if at == i => write_frame(&mut aw, &body).await,
                    Some(Tamper::Drop(at)) if at == i => {
                        i += 1;
                        continue;
                    }
                    _ => {}
                }
                write_frame(&mut aw, &body).await;
                i += 1;
            }
            let _ = aw.shutdown().await;
        };
        let down = async {
            while let Some(body) = read_frame(&mut ar).await {
                write_frame(&mut dw, &body).await;
            }
            let _ = dw.shutdown().await;
        };
        tokio::join!(up, down);
    });
    Relay {
        dialer,
        acceptor,
        captured,
    }
}

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1))
}

async fn pair(r: Relay, s: &Secret) -> (Conn, Conn, Arc<StdMutex<Vec<Vec<u8>>>>) {
    let (s1, s2) = (s.clone(), s.clone());
    let acceptor =
        tokio::spawn(async move { accept_on(r.acceptor, local(), &s2, Role::Coordinator).await });
    let dialer = dial_on(r.dialer, local(), &s1, Role::Client)
        .await
        .expect("dial");
    let acceptor = acceptor.await.expect("join").expect("accept");
    (dialer, acceptor, r.captured)
}

#[tokio::test]
async fn a_message_altered_replayed_or_dropped_on_the_way_is_refused() {
    let s = secret("s");
    // Dialer frames: 0 Hello, 1 Confirm, 2 the first message, 3 the second.
    for tamper in [Tamper::Alter(2), Tamper::Replay(2), Tamper::Drop(2)] {
        let (mut dialer, mut acceptor, _) = pair(relay(Some(tamper)), &s).await;
        dialer.send(&ping(1)).await.expect("send");
        dialer.send(&ping(2)).await.expect("send");
        let mut got = Vec::new();
        let err = loop {
            match acceptor.recv::<Ping>().await {
                Ok(Some(p)) => got.push(p),
                Ok(None) => panic!("{tamper:?}: clean end"),
                Err(e) => break e,
            }
        };
        assert_eq!(
            err.to_string(),
            "control frame failed authentication (altered, replayed or reordered)",
            "{tamper:?}"
        );
        // A replay delivers the original once, then is refused; the others deliver nothing.
        let want = match tamper {
            Tamper::Replay(_) => vec![ping(1)],
            _ => Vec::new(),
        };
        assert_eq!(got, want, "{tamper:?}");
    }
}

#[tokio::test]
async fn messages_are_not_readable_on_the_wire() {
    let s = secret("s");
    let (mut dialer, mut acceptor, captured) = pair(relay(None), &s).await;
    let secret_text = "the launch code is 0000";
    dialer
        .send(&Ping {
            n: 1,
            text: secret_text.into(),
        })
        .await
        .expect("send");
    let got: Ping = acceptor.recv().await.expect("recv").expect("a message");
    assert_eq!(got.text, secret_text);
    let wire = captured.lock().expect("captured").concat();
    assert!(
        !wire.windows(8).any(|w| w == &secret_text.as_bytes()[..8]),
        "plaintext on the wire"
    );
}

#[tokio::test]
async fn nonces_are_fresh_and_a_recorded_handshake_cannot_be_replayed() {
    let s = secret("s");
    let (mut d1, mut a1, first) = pair(relay(None), &s).await;
    d1.send(&ping(1)).await.expect("send");
    assert_eq!(a1.recv::<Ping>().await.expect("recv"), Some(ping(1)));
    let (_d2, _a2, second) = pair(relay(None), &s).await;
    let first = first.lock().expect("captured").clone();
    let second = second.lock().expect("captured").clone();
    assert_ne!(
        first[0][9..],
        second[0][9..],
        "dialer ephemeral keys repeat"
    );
    assert_ne!(first[1], second[1], "dialer confirmations repeat");

    // Replay the first connection's Hello and Confirm to a fresh acceptor.
    let (mut attacker, victim) = tokio::io::duplex(1 << 16);
    let acceptor =
        tokio::spawn(async move { accept_on(victim, local(), &s, Role::Coordinator).await });
    write_frame(&mut attacker, &first[0]).await;
    assert_eq!(
        read_frame(&mut attacker).await.map(|b| b.len()),
        Some(ANSWER_LEN)
    );
    write_frame(&mut attacker, &first[1]).await;
    let err = acceptor.await.expect("join").expect_err("replay refused");
    assert!(matches!(err, HandshakeError::BadAuth(_)), "{err}");
}

mod arbitrary_bytes {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `data` to an acceptor as everything a peer ever sends, then ends the stream.
    fn accept_bytes(data: Vec<u8>) -> Result<Conn, HandshakeError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (mut peer, ours) = tokio::io::duplex(1 << 16);
            peer.write_all(&data).await.expect("write");
            peer.shutdown().await.expect("shutdown");
            let result = accept_on(
                ours,
                local(),
                &secret("not in the input"),
                Role::Coordinator,
            )
            .await;
            drop(peer);
            result
        })
    }

    /// A Hello whose header the acceptor accepts and whose Noise message is `guess`: a
    /// peer that speaks the protocol but guesses the key.
    fn guessed_hello(guess: &[u8]) -> Vec<u8> {
        let mut hello = hello(Role::Client, &secret("s"))[..9].to_vec();
        hello.extend_from_slice(guess);
        let mut data = (hello.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(&hello);
        data
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn no_bytes_authenticate_without_the_secret(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert!(accept_bytes(data).is_err());
        }

        #[test]
        fn no_guessed_first_message_authenticates(
            key in proptest::array::uniform32(any::<u8>()),
            tag in proptest::array::uniform16(any::<u8>()),
        ) {
            let err = accept_bytes(guessed_hello(&[&key[..], &tag[..]].concat()))
                .expect_err("guessed");
            prop_assert!(matches!(err, HandshakeError::BadAuth(_)), "{}", err);
        }
    }
}
