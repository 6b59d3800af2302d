//! The runtime's messages as transport payloads: what goes inside the `Data`, `Acker`
//! and `Control` frames between workers.
//!
//! Every payload kind that crosses a connection, with its codec, is listed in the table
//! of [`payload`]. A batch of tuples has its own compact binary codec (no serde per
//! tuple), and so do acker messages and load reports; the rest is MessagePack
//! (rmp-serde, structs as arrays).
//!
//! A batch names each (component, stream, source task) it carries once; the receiver
//! interns the stream with the fields its own topology declares, so a peer cannot make it
//! intern arbitrary names: an unknown component or stream is an error, as is anything that
//! does not decode (checked lengths and counts, UTF-8 strings, bounded nesting).
//!
//! # Layout
//! - [`payload`]: the table of payload kinds, their tags and reserved tasks, and the
//!   small codecs (end of stream, acker messages, spout control, grants, load reports);
//! - `encode`: the batch encoder ([`encode_batch_into`]), [`encode_data`];
//! - `decode`: the batch decoder ([`DataDecoder`], a chunk at a time) with its cache of
//!   recently decoded strings, [`decode_data`];
//! - here: [`WireError`] and the value tags both halves of the batch codec share.

mod decode;
mod encode;
pub mod payload;
#[cfg(test)]
mod tests;

pub use decode::{decode_data, BatchCursor, Begun, DataDecoder};
pub use encode::{encode_batch_into, encode_data, encode_data_into};
pub use payload::{
    decode_acker, decode_control, encode_acker, encode_control, ACKER_TAG, BATCH_TAG,
};

/// A payload that does not decode, or names what this topology does not have.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not the encoding.
    #[error("cannot decode {} {what} payload: {message}", article(what))]
    Decode {
        /// Which payload.
        what: &'static str,
        /// The decoder's words.
        message: String,
    },
    /// A batch names a component or stream the topology does not declare.
    #[error(
        "a batch names stream `{stream}` of `{component}`, which the topology does not declare"
    )]
    UnknownStream {
        /// The component id.
        component: String,
        /// The stream id.
        stream: String,
    },
    /// A tuple refers to a stream index the batch does not have.
    #[error("a tuple refers to stream {0}, which its batch does not name")]
    BadStreamIndex(usize),
    /// Encoding failed (a value serde cannot write).
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Value tags of the batch codec.
mod tag {
    pub(super) const NULL: u8 = 0;
    pub(super) const FALSE: u8 = 1;
    pub(super) const TRUE: u8 = 2;
    pub(super) const INT: u8 = 3;
    pub(super) const FLOAT: u8 = 4;
    pub(super) const STR: u8 = 5;
    pub(super) const BYTES: u8 = 6;
    pub(super) const LIST: u8 = 7;
    pub(super) const MAP: u8 = 8;
    /// `SHORT_STR + k`: a string of `k < 32` bytes follows.
    pub(super) const SHORT_STR: u8 = 32;
}

/// Strings shorter than this are written with their length in the tag.
const SHORT_STR: usize = 32;

/// Lists and maps nest at most this deep in a batch (a decoder's stack is finite).
pub const MAX_DEPTH: usize = 64;
