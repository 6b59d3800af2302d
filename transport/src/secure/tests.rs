//! The secure channel's handshake and codec, without sockets: outcomes, attacks, records.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder};

use super::*;
use crate::frame::{FrameError, RawCodec};

const PROFILE: Profile = Profile {
    magic: *b"TEST",
    version: 2,
    purpose: "test",
    secret: "test secret",
    encrypt: true,
};

/// Accepts any hello and names the peer after it.
fn anyone() -> Check {
    Arc::new(|hello: &[u8]| Ok(String::from_utf8_lossy(hello).into_owned()))
}

fn dialer(profile: Profile, secret: &[u8]) -> (Handshake, Bytes) {
    Handshake::dial(
        profile,
        &Psk::derive(secret, profile.purpose),
        b"dialer",
        anyone(),
    )
    .expect("dial")
}

fn acceptor(profile: Profile, secret: &[u8]) -> Handshake {
    Handshake::accept(
        profile,
        &Psk::derive(secret, profile.purpose),
        b"acceptor",
        anyone(),
    )
}

fn send(step: Step) -> Bytes {
    match step {
        Step::Send(flight) => flight,
        other => panic!("expected a flight to send, got {other:?}"),
    }
}

/// A whole handshake: (dialer's session, acceptor's session, the flights in order).
fn handshake(d: Profile, a: Profile) -> Result<(Session, Session, Vec<Bytes>), HandshakeError> {
    let (mut dial, hello) = dialer(d, b"s3cret");
    let mut accept = acceptor(a, b"s3cret");
    let answer = send(accept.read(&hello)?);
    let Step::Done {
        send: Some(confirm),
        session: ds,
    } = dial.read(&answer)?
    else {
        panic!("the dialer is done after the Answer")
    };
    let Step::Done {
        send: None,
        session: acs,
    } = accept.read(&confirm)?
    else {
        panic!("the acceptor is done after the Confirm")
    };
    assert!(dial.is_done() && accept.is_done());
    Ok((ds, acs, vec![hello, answer, confirm]))
}

#[test]
fn the_same_secret_authenticates_both_ways_with_these_flights() {
    let (ds, acs, flights) = handshake(PROFILE, PROFILE).expect("handshake");
    assert_eq!(ds.peer_hello(), b"acceptor");
    assert_eq!(acs.peer_hello(), b"dialer");
    // Hello: type, magic, version, hello, then Noise's e (32) and the tag of an empty payload.
    let hello = &flights[0];
    assert_eq!(&hello[..8], &[0x01, b'T', b'E', b'S', b'T', 0, 2, 6]);
    assert_eq!(&hello[8..14], b"dialer");
    assert_eq!(hello.len(), 14 + 32 + 16);
    // Answer: type, the clear hello, Noise's e (32), the hello sealed (8 + 16).
    let answer = &flights[1];
    assert_eq!(&answer[..10], b"\x02\x08acceptor");
    assert_eq!(answer.len(), 10 + 32 + 8 + 16);
    // Confirm: type, a tag.
    assert_eq!((flights[2][0], flights[2].len()), (0x03, 17));
}

#[test]
fn a_wrong_secret_is_refused_by_the_acceptor_at_the_hello() {
    let (_, hello) = dialer(PROFILE, b"wrong");
    let mut accept = acceptor(PROFILE, b"right");
    let err = accept.read(&hello).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "authentication failed (wrong test secret?)"
    );
    assert!(matches!(accept.read(&hello), Err(HandshakeError::Finished)));
}

#[test]
fn an_acceptor_with_a_wrong_secret_is_refused_by_the_dialer() {
    // An acceptor whose key differs answers a Hello it could not check (it pretends).
    let (mut dial, _) = dialer(PROFILE, b"right");
    let (_, other_hello) = dialer(PROFILE, b"wrong");
    let mut impostor = acceptor(PROFILE, b"wrong");
    let answer = send(impostor.read(&other_hello).expect("its own dialer"));
    let err = dial.read(&answer).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "the acceptor failed authentication (wrong test secret?)"
    );
}

#[test]
fn a_replayed_hello_gets_an_answer_but_never_authenticates() {
    let (_, _, flights) = handshake(PROFILE, PROFILE).expect("handshake");
    // A recording of the whole dialer side, replayed to a fresh acceptor.
    let mut victim = acceptor(PROFILE, b"s3cret");
    let answer = send(victim.read(&flights[0]).expect("message 1 replays"));
    assert_ne!(answer, flights[1], "the acceptor's ephemeral key is fresh");
    let err = victim.read(&flights[2]).expect_err("the old Confirm");
    assert!(matches!(err, HandshakeError::BadAuth(_)), "{err}");
    assert!(!victim.is_done());
}

#[test]
fn anything_the_peer_binds_differently_fails_authentication() {
    // Another purpose, or another encryption setting: another prologue.
    let plain = Profile {
        encrypt: false,
        ..PROFILE
    };
    let err = handshake(plain, PROFILE).expect_err("encrypt differs");
    assert!(matches!(err, HandshakeError::BadAuth(_)), "{err}");
    // A Hello altered on the way (its clear hello): the prologue differs.
    let (_, hello) = dialer(PROFILE, b"s3cret");
    let mut altered = hello.to_vec();
    altered[8] ^= 0x20;
    let err = acceptor(PROFILE, b"s3cret")
        .read(&altered)
        .expect_err("altered");
    assert!(matches!(err, HandshakeError::BadAuth(_)), "{err}");
}

#[test]
fn an_answer_whose_clear_hello_was_altered_is_refused() {
    let (mut dial, hello) = dialer(PROFILE, b"s3cret");
    let mut accept = acceptor(PROFILE, b"s3cret");
    let mut answer = send(accept.read(&hello).expect("answer")).to_vec();
    answer[2] = b'X';
    let err = dial.read(&answer).expect_err("altered");
    assert_eq!(
        err.to_string(),
        "the Xcceptor failed authentication (wrong test secret?)"
    );
}

#[test]
fn precise_refusals_come_before_any_cryptography() {
    let mut hello = dialer(PROFILE, b"s").1.to_vec();
    hello[1] = b'X';
    let err = acceptor(PROFILE, b"s").read(&hello).expect_err("magic");
    assert_eq!(err.to_string(), "not a topo test connection");

    let mut hello = dialer(PROFILE, b"s").1.to_vec();
    hello[6] = 9;
    let err = acceptor(PROFILE, b"s").read(&hello).expect_err("version");
    assert_eq!(err.to_string(), "test protocol version 9, expected 2");

    let picky: Check = Arc::new(|_: &[u8]| Err(HandshakeError::UnknownRole(7)));
    let mut accept = Handshake::accept(PROFILE, &Psk::derive(b"s", "test"), b"a", picky);
    let err = accept.read(&dialer(PROFILE, b"s").1).expect_err("role");
    assert_eq!(err.to_string(), "unknown role 7");

    for (body, want) in [
        (&b""[..], "not a topo test connection"),
        (&b"\x01TE"[..], "malformed Hello frame of 3 bytes"),
        (&b"\x03abc"[..], "malformed Confirm frame of 4 bytes"),
        (
            &[0x03; 17][..],
            "unexpected Confirm frame during the handshake, expected Hello",
        ),
        (&b"GET / HTTP/1.1"[..], "not a topo test connection"),
    ] {
        let err = acceptor(PROFILE, b"s").read(body).expect_err("refused");
        assert_eq!(err.to_string(), want, "{body:?}");
    }
}

#[test]
fn a_refusal_carries_the_hello_and_a_sanitized_reason() {
    let accept = acceptor(PROFILE, b"s");
    let flight = accept.refusal("bad\x1b[2Jthing\n");
    assert_eq!(&flight[..], b"\x04\x08acceptorbad?[2Jthing?");
    let (mut dial, _) = dialer(PROFILE, b"s");
    match dial.read(&flight).expect_err("refused") {
        HandshakeError::PeerRefused { hello, reason } => {
            assert_eq!(
                (&hello[..], reason.as_str()),
                (&b"acceptor"[..], "bad?[2Jthing?")
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(refusal(b"", &"x".repeat(1000)).len(), 2 + MAX_REASON_LEN);
}

/// Sealed codecs for both directions of one session pair.
fn sealed_pair(max: usize) -> (Secure<RawCodec>, Secure<RawCodec>) {
    let (ds, acs, _) = handshake(PROFILE, PROFILE).expect("handshake");
    let sealed = |s: Session, send: bool| {
        let nonce = if send { s.send_nonce } else { s.recv_nonce };
        Secure::sealed(RawCodec::new(max), s.keys.clone(), nonce)
    };
    (sealed(ds, true), sealed(acs, false))
}

#[test]
fn sealed_frames_round_trip_across_records_and_hide_their_bytes() {
    let (mut tx, mut rx) = sealed_pair(1 << 20);
    let big = Bytes::from(vec![0x5a; 200_000]);
    let mut wire = BytesMut::new();
    tx.encode(Bytes::from_static(b"hello"), &mut wire)
        .expect("small");
    tx.encode(big.clone(), &mut wire).expect("big");
    // 1 record for the small one, 4 for 200,004 bytes.
    assert_eq!(wire.len(), (4 + 9 + 16) + 4 * (4 + 16) + 200_004);
    assert!(
        !wire.windows(5).any(|w| w == b"hello"),
        "plaintext on the wire"
    );
    // Byte by byte, as a slow socket delivers it.
    let mut src = BytesMut::new();
    let mut got = Vec::new();
    for b in wire {
        src.extend_from_slice(&[b]);
        while let Some(frame) = rx.decode(&mut src).expect("opens") {
            got.push(frame.freeze());
        }
    }
    assert_eq!(got, vec![Bytes::from_static(b"hello"), big]);
    assert_eq!(rx.decode_eof(&mut src).expect("clean end"), None);
}

#[test]
fn altered_replayed_reordered_or_truncated_records_are_refused() {
    let records = |n: usize| {
        let (mut tx, rx) = sealed_pair(1024);
        let mut wire = Vec::new();
        for i in 0..n {
            let mut one = BytesMut::new();
            tx.encode(Bytes::from(vec![i as u8; 10]), &mut one)
                .expect("encode");
            wire.push(one);
        }
        (wire, rx)
    };
    let open_all = |rx: &mut Secure<RawCodec>, wire: Vec<BytesMut>| {
        let mut src = BytesMut::new();
        for r in wire {
            src.extend_from_slice(&r);
        }
        let mut n = 0;
        loop {
            match rx.decode(&mut src) {
                Ok(Some(_)) => n += 1,
                Ok(None) => return rx.decode_eof(&mut src).map(|_| n),
                Err(e) => return Err(e),
            }
        }
    };
    let (wire, mut rx) = records(3);
    assert_eq!(open_all(&mut rx, wire).expect("in order"), 3);

    let (mut wire, mut rx) = records(3);
    wire.swap(1, 2);
    assert!(matches!(open_all(&mut rx, wire), Err(FrameError::Unsealed)));

    let (mut wire, mut rx) = records(2);
    let first = wire[0].clone();
    wire.insert(1, first);
    assert!(matches!(open_all(&mut rx, wire), Err(FrameError::Unsealed)));

    let (mut wire, mut rx) = records(2);
    wire[1][10] ^= 1;
    assert!(matches!(open_all(&mut rx, wire), Err(FrameError::Unsealed)));

    let (mut wire, mut rx) = records(2);
    wire[1].truncate(20);
    assert!(matches!(
        open_all(&mut rx, wire),
        Err(FrameError::Truncated)
    ));

    let (_, mut rx) = records(0);
    let mut src = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 1][..]);
    let err = rx.decode(&mut src).expect_err("too long");
    assert_eq!(
        err.to_string(),
        "frame length over the maximum of 65535 bytes"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary flights never panic and never authenticate, on either side.
    #[test]
    fn arbitrary_flights_are_refused(flights in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..4)) {
        let mut accept = acceptor(PROFILE, b"not in the input");
        let (mut dial, _) = dialer(PROFILE, b"not in the input");
        for flight in &flights {
            for hs in [&mut accept, &mut dial] {
                let done = matches!(hs.read(flight), Ok(Step::Done { .. }));
                prop_assert!(!done, "authenticated without the secret");
            }
        }
    }

    /// A well-formed Hello with a guessed Noise message (right length) is refused.
    #[test]
    fn a_guessed_first_message_is_refused(message in proptest::collection::vec(any::<u8>(), 48)) {
        let (_, hello) = dialer(PROFILE, b"s");
        let mut forged = hello[..14].to_vec();
        forged.extend_from_slice(&message);
        let err = acceptor(PROFILE, b"s").read(&forged).expect_err("guessed");
        prop_assert!(matches!(err, HandshakeError::BadAuth(_)), "{}", err);
    }
}
