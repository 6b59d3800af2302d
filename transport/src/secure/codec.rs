//! The codec after the handshake: another codec's bytes, plain or cut into sealed records.

use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use snow::StatelessTransportState;
use tokio_util::codec::{Decoder, Encoder};

use super::handshake::TAG_LEN;
use crate::frame::{FrameError, HEADER_LEN};

/// Largest sealed record body: Noise's message limit.
pub const MAX_RECORD_LEN: usize = 65_535;
/// Most plaintext bytes in one record.
pub const MAX_RECORD_PLAIN: usize = MAX_RECORD_LEN - TAG_LEN;

/// `inner`'s frames, plain or sealed: wraps the codec of a connection after its
/// handshake. A sealed codec is one direction of a [`Session`](super::Session): use the
/// one from [`upgrade`](super::upgrade) for reading only or for writing only.
pub struct Secure<C> {
    inner: C,
    seal: Option<Seal>,
}

struct Seal {
    keys: Arc<StatelessTransportState>,
    nonce: u64,
    /// Plaintext: what `inner` wrote (encoding) or what the records held (decoding).
    buf: BytesMut,
}

impl<C: std::fmt::Debug> std::fmt::Debug for Secure<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secure")
            .field("inner", &self.inner)
            .field("sealed", &self.seal.is_some())
            .field("nonce", &self.seal.as_ref().map(|s| s.nonce))
            .finish()
    }
}

impl<C> Secure<C> {
    /// `inner`'s bytes as they are.
    pub fn plain(inner: C) -> Self {
        Secure { inner, seal: None }
    }

    pub(super) fn sealed(inner: C, keys: Arc<StatelessTransportState>, nonce: u64) -> Self {
        Secure {
            inner,
            seal: Some(Seal {
                keys,
                nonce,
                buf: BytesMut::new(),
            }),
        }
    }

    /// True when frames are sealed.
    pub fn is_sealed(&self) -> bool {
        self.seal.is_some()
    }

    /// The wrapped codec.
    pub fn inner(&self) -> &C {
        &self.inner
    }

    /// The wrapped codec, to change its settings.
    pub fn inner_mut(&mut self) -> &mut C {
        &mut self.inner
    }
}

impl<C: Decoder<Error = FrameError>> Decoder for Secure<C> {
    type Item = C::Item;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<C::Item>, FrameError> {
        let Some(seal) = &mut self.seal else {
            return self.inner.decode(src);
        };
        loop {
            if let Some(item) = self.inner.decode(&mut seal.buf)? {
                return Ok(Some(item));
            }
            // The plaintext holds no whole frame yet: open the next record, if it is here.
            let Some(header) = src.get(..HEADER_LEN) else {
                return Ok(None);
            };
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            if len > MAX_RECORD_LEN {
                return Err(FrameError::TooLong {
                    max: MAX_RECORD_LEN,
                });
            }
            if len < TAG_LEN {
                return Err(FrameError::Unsealed);
            }
            if src.len() < HEADER_LEN + len {
                src.reserve(HEADER_LEN + len - src.len());
                return Ok(None);
            }
            let at = seal.buf.len();
            seal.buf.resize(at + len - TAG_LEN, 0);
            let n = seal
                .keys
                .read_message(
                    seal.nonce,
                    &src[HEADER_LEN..HEADER_LEN + len],
                    &mut seal.buf[at..],
                )
                .map_err(|_| FrameError::Unsealed)?;
            seal.buf.truncate(at + n);
            seal.nonce += 1;
            src.advance(HEADER_LEN + len);
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<C::Item>, FrameError> {
        if self.seal.is_none() {
            return self.inner.decode_eof(src);
        }
        if let Some(item) = self.decode(src)? {
            return Ok(Some(item));
        }
        if !src.is_empty() {
            return Err(FrameError::Truncated);
        }
        match &mut self.seal {
            Some(seal) => self.inner.decode_eof(&mut seal.buf),
            None => Ok(None),
        }
    }
}

impl<I, C: Encoder<I, Error = FrameError>> Encoder<I> for Secure<C> {
    type Error = FrameError;

    fn encode(&mut self, item: I, dst: &mut BytesMut) -> Result<(), FrameError> {
        let Some(seal) = &mut self.seal else {
            return self.inner.encode(item, dst);
        };
        seal.buf.clear();
        self.inner.encode(item, &mut seal.buf)?;
        for chunk in seal.buf.chunks(MAX_RECORD_PLAIN) {
            let len = chunk.len() + TAG_LEN;
            dst.reserve(HEADER_LEN + len);
            dst.put_u32(len as u32);
            let at = dst.len();
            dst.resize(at + len, 0);
            seal.keys
                .write_message(seal.nonce, chunk, &mut dst[at..])
                .map_err(|e| FrameError::Encode(format!("sealing a record: {e}")))?;
            seal.nonce += 1;
        }
        Ok(())
    }
}
