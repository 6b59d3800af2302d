//! Drives a [`Handshake`] over framed halves, and upgrades them to the session's codec.

use std::time::Duration;

use tokio::time::Instant;

use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::codec::Secure;
use super::flight_codec;
use super::handshake::{Handshake, HandshakeError, Session, Step};
use crate::frame::RawCodec;

/// Frames the halves of a fresh connection for its handshake (small flights only).
pub fn framed<R, W>(read: R, write: W) -> (FramedRead<R, RawCodec>, FramedWrite<W, RawCodec>) {
    (
        FramedRead::new(read, flight_codec()),
        FramedWrite::new(write, flight_codec()),
    )
}

/// Sends `first` (the dialer's `Hello`) if any, then feeds the peer's flights to `hs` and
/// sends its answers until the peer is authenticated, or `deadline` passes
/// ([`HandshakeError::TimedOut`]). On failure it tells the peer why ([`refuse`]).
pub async fn run<R, W>(
    hs: &mut Handshake,
    first: Option<bytes::Bytes>,
    reader: &mut FramedRead<R, RawCodec>,
    writer: &mut FramedWrite<W, RawCodec>,
    deadline: Option<Instant>,
) -> Result<Session, HandshakeError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let flights = async {
        if let Some(hello) = first {
            writer.send(hello).await?;
        }
        loop {
            let body = match reader.next().await {
                Some(body) => body?,
                None => return Err(HandshakeError::Closed),
            };
            match hs.read(&body)? {
                Step::Send(flight) => writer.send(flight).await?,
                Step::Done { send, session } => {
                    if let Some(flight) = send {
                        writer.send(flight).await?;
                    }
                    return Ok(session);
                }
            }
        }
    };
    let result = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, flights)
            .await
            .unwrap_or(Err(HandshakeError::TimedOut)),
        None => flights.await,
    };
    if let Err(e) = &result {
        refuse(hs, writer, e).await;
    }
    result
}

/// Best effort: tells the peer why the handshake failed (a `Refuse` with our hello),
/// unless it left or refused us; waits at most a second for a peer that does not read.
async fn refuse<W>(hs: &Handshake, writer: &mut FramedWrite<W, RawCodec>, error: &HandshakeError)
where
    W: AsyncWrite + Unpin,
{
    if error.tells_peer() {
        let flight = hs.refusal(&error.to_string());
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.send(flight)).await;
    }
}

/// The halves after a handshake, with `codec` for frames: sealed under the session's
/// keys when its profile encrypts, plain otherwise. Bytes already read stay buffered.
pub fn upgrade<R, W, C>(
    reader: FramedRead<R, RawCodec>,
    writer: FramedWrite<W, RawCodec>,
    session: Session,
    codec: impl Fn() -> C,
) -> (FramedRead<R, Secure<C>>, FramedWrite<W, Secure<C>>) {
    if session.encrypt {
        let Session {
            keys,
            send_nonce,
            recv_nonce,
            ..
        } = session;
        let reader = reader.map_decoder(|_| Secure::sealed(codec(), keys.clone(), recv_nonce));
        let writer = writer.map_encoder(|_| Secure::sealed(codec(), keys, send_nonce));
        (reader, writer)
    } else {
        (
            reader.map_decoder(|_| Secure::plain(codec())),
            writer.map_encoder(|_| Secure::plain(codec())),
        )
    }
}
