//! Worker identities on the secure handshake: who may dial whom, and timeouts.

use futures::SinkExt;

use super::*;
use crate::secure::Step;

fn id(worker: u32, secret: &[u8]) -> Identity {
    Identity {
        fingerprint: 0xfeed,
        worker,
        workers: 3,
        secret: Arc::from(secret),
        encrypt: false,
    }
}

/// Dialer `d` dials worker 2 at acceptor `a`: (who the dialer reached, who dialed).
fn run(dialer: Identity, acceptor: Identity) -> Result<(u32, u32), HandshakeError> {
    let (mut d, hello) = dialer.dialer(2)?;
    let mut a = acceptor.acceptor();
    let Step::Send(answer) = a.read(&hello)? else {
        panic!("acceptor finished early")
    };
    let Step::Done {
        send: Some(confirm),
        session: ds,
    } = d.read(&answer)?
    else {
        panic!("dialer not done")
    };
    let Step::Done { session: acs, .. } = a.read(&confirm)? else {
        panic!("acceptor not done")
    };
    Ok((peer_of(&ds)?, peer_of(&acs)?))
}

#[test]
fn same_secret_authenticates_both_ways() {
    let (dp, ap) = run(id(0, b"s3cret"), id(2, b"s3cret")).expect("handshake");
    assert_eq!((dp, ap), (2, 0));
}

#[test]
fn wrong_secret_fails_on_the_acceptor() {
    let err = run(id(0, b"s3cret"), id(2, b"other")).expect_err("must fail");
    assert_eq!(err.to_string(), "authentication failed (wrong secret?)");
}

#[test]
fn acceptor_rejects_a_higher_index_and_another_plan() {
    let (_, hello) = id(2, b"s").dialer(1).expect("dial");
    let mut a = id(1, b"s").acceptor();
    let err = a.read(&hello).expect_err("higher index");
    assert_eq!(
        err.to_string(),
        "unexpected worker index 2: only workers below 1 dial it"
    );
    assert!(matches!(a.read(&hello), Err(HandshakeError::Finished)));

    let mut other = id(0, b"s");
    other.fingerprint = 0xbeef;
    let (_, hello) = other.dialer(1).expect("dial");
    let err = id(1, b"s")
        .acceptor()
        .read(&hello)
        .expect_err("fingerprint");
    assert_eq!(
        err.to_string(),
        "topology fingerprint 0x000000000000beef, expected 0x000000000000feed"
    );
}

#[test]
fn the_dialer_rejects_an_acceptor_that_is_not_the_worker_it_dialed() {
    let (mut d, hello) = id(0, b"s").dialer(2).expect("dial");
    let mut a = id(1, b"s").acceptor();
    let Step::Send(answer) = a.read(&hello).expect("worker 0 may dial 1") else {
        panic!("answer")
    };
    let err = d.read(&answer).expect_err("wrong worker");
    assert_eq!(
        err.to_string(),
        "unexpected worker index 1: dialed worker 2"
    );
}

#[test]
fn plaintext_and_encrypted_workers_do_not_connect() {
    let mut sealed = id(2, b"s");
    sealed.encrypt = true;
    let err = run(id(0, b"s"), sealed).expect_err("settings differ");
    assert!(matches!(err, HandshakeError::BadAuth(_)), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_times_out_the_handshake() {
    let (ours, theirs) = tokio::io::duplex(1024);
    let (r, w) = tokio::io::split(ours);
    let (mut reader, mut writer) = framed(r, w);
    let timeout = std::time::Duration::from_secs(5);
    let started = Instant::now();
    let deadline = Some(started + timeout);
    let (result, claimed) = accept(&id(2, b"s"), &mut reader, &mut writer, deadline).await;
    assert_eq!(
        result.map(|(peer, _)| peer).map_err(|e| e.to_string()),
        Err("handshake timed out".into())
    );
    assert_eq!(claimed, None);
    assert_eq!(started.elapsed(), timeout);
    drop(theirs);
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_stops_after_hello_is_timed_out_and_named() {
    let (ours, theirs) = tokio::io::duplex(1024);
    let (r, w) = tokio::io::split(ours);
    let (mut reader, mut writer) = framed(r, w);
    let (_, hello) = id(1, b"s").dialer(2).expect("dial");
    let (_their_r, their_w) = tokio::io::split(theirs);
    let mut their_writer = FramedWrite::new(their_w, RawCodec::new(256));
    their_writer.send(hello).await.expect("hello sent");
    let deadline = Some(Instant::now() + std::time::Duration::from_secs(5));
    let (result, claimed) = accept(&id(2, b"s"), &mut reader, &mut writer, deadline).await;
    assert!(matches!(result, Err(HandshakeError::TimedOut)));
    assert_eq!(claimed, Some(1));
}
