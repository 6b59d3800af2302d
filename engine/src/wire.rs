//! How the runtime's messages travel between workers: the payloads of the transport's
//! `Data`, `Acker` and `Control` frames. A batch of tuples has its own compact binary
//! codec (no serde per tuple, see [`encode_batch_into`]), and so do acker messages;
//! everything else is MessagePack
//! (rmp-serde, structs as arrays).
//!
//! ```text
//! Data payload    = 0xc1 batch                (see encode_batch_into)
//!                 | {"Eos": from_task}       the end of from_task's stream
//!                 | "Wake"                   (never sent between workers)
//! Acker payload   = 0xc1 (kind, fields) ...   (see encode_acker; the frame names the acker)
//! Control payload = spout_msg                  (the frame names the spout task)
//! ```
//!
//! A batch names each (component, stream, source task) it carries once; the receiver
//! interns the stream with the fields its own topology declares, so a peer cannot make it
//! intern arbitrary names: an unknown component or stream is an error, as is anything that
//! does not decode (checked lengths and counts, UTF-8 strings, bounded nesting).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use smol_str::SmolStr;
use topo_dsl::Topology;

use crate::route::{AckerMsg, Inbound, SpoutMsg};
use crate::tuple::{Anchors, StreamInfo, TaskId, Tuple, Values};
use crate::value::Value;

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

#[derive(Serialize, Deserialize)]
enum Data {
    Eos(TaskId),
    Wake,
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, WireError> {
    rmp_serde::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| WireError::Encode(e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Decode {
        what,
        message: e.to_string(),
    })
}

/// First byte of a batch payload: `0xc1` is never the start of MessagePack, so a batch
/// and the MessagePack data messages cannot be mistaken for each other.
pub const BATCH_TAG: u8 = 0xc1;

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
}

/// Lists and maps nest at most this deep in a batch (a decoder's stack is finite).
pub const MAX_DEPTH: usize = 64;

#[inline(always)]
fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[inline]
fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_value(out: &mut BytesMut, v: &Value, depth: usize) -> Result<(), WireError> {
    match v {
        Value::Null => out.put_u8(tag::NULL),
        Value::Bool(false) => out.put_u8(tag::FALSE),
        Value::Bool(true) => out.put_u8(tag::TRUE),
        Value::Int(i) => {
            out.put_u8(tag::INT);
            put_varint(out, ((*i << 1) ^ (*i >> 63)) as u64);
        }
        Value::Float(f) => {
            out.put_u8(tag::FLOAT);
            out.put_u64_le(f.to_bits());
        }
        Value::Str(s) => {
            out.put_u8(tag::STR);
            put_bytes(out, s.as_bytes());
        }
        Value::Bytes(b) => {
            out.put_u8(tag::BYTES);
            put_bytes(out, b);
        }
        Value::List(_) | Value::Map(_) if depth >= MAX_DEPTH => {
            return Err(WireError::Encode(format!(
                "values nest deeper than {MAX_DEPTH} lists and maps"
            )));
        }
        Value::List(l) => {
            out.put_u8(tag::LIST);
            put_varint(out, l.len() as u64);
            for v in l {
                put_value(out, v, depth + 1)?;
            }
        }
        Value::Map(m) => {
            out.put_u8(tag::MAP);
            put_varint(out, m.len() as u64);
            for (k, v) in m {
                put_bytes(out, k.as_bytes());
                put_value(out, v, depth + 1)?;
            }
        }
    }
    Ok(())
}

/// Encodes a batch of tuples for one task into `out` (appended).
///
/// ```text
/// batch   = 0xc1, varint n_sources, source * n_sources, varint n_tuples, tuple * n_tuples
/// source  = str component, str stream, varint source_task
/// tuple   = varint source_index, varint n_anchors, (root u64 LE, id u64 LE) * n_anchors,
///           varint n_values, value * n_values
/// value   = 0 null | 1 false | 2 true | 3 zigzag-varint int | 4 f64 LE | 5 str | 6 bytes
///         | 7 varint n, value * n | 8 varint n, (str key, value) * n
/// str     = varint length, bytes             varint = LEB128, at most 10 bytes
/// ```
pub fn encode_batch_into(tuples: &[Tuple], out: &mut BytesMut) -> Result<(), WireError> {
    // Sources are (stream, task) pairs; a batch from one executor has one or a few.
    let mut sources: SmallVec<[(&'static StreamInfo, TaskId); 2]> = SmallVec::new();
    let same = |a: &(&'static StreamInfo, TaskId), t: &Tuple| {
        std::ptr::eq(a.0, t.source) && a.1 == t.source_task
    };
    for t in tuples {
        if !sources.last().is_some_and(|s| same(s, t)) && !sources.iter().any(|s| same(s, t)) {
            sources.push((t.source, t.source_task));
        }
    }
    let start = out.len();
    // A guess that is right for short words: tag, indexes, counts, one short string.
    out.reserve(16 + tuples.len() * 16);
    out.put_u8(BATCH_TAG);
    put_varint(out, sources.len() as u64);
    for (s, task) in &sources {
        put_bytes(out, s.component.as_bytes());
        put_bytes(out, s.stream.as_bytes());
        put_varint(out, u64::from(*task));
    }
    put_varint(out, tuples.len() as u64);
    let mut last = 0;
    for t in tuples {
        if !same(&sources[last], t) {
            last = sources.iter().position(|s| same(s, t)).unwrap_or(0);
        }
        put_varint(out, last as u64);
        put_varint(out, t.anchors.len() as u64);
        for &(root, id) in &t.anchors {
            out.put_u64_le(root);
            out.put_u64_le(id);
        }
        put_varint(out, t.values.len() as u64);
        for v in t.values.iter() {
            if let Err(e) = put_value(out, v, 0) {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Reads a batch; every read is checked, so garbage is an error, never a panic.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Which payload, for errors.
    what: &'static str,
}

fn bad(message: impl Into<String>) -> WireError {
    WireError::Decode {
        what: "data",
        message: message.into(),
    }
}

impl<'a> Reader<'a> {
    fn bad(&self, message: impl Into<String>) -> WireError {
        WireError::Decode {
            what: self.what,
            message: message.into(),
        }
    }

    #[inline(always)]
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, WireError> {
        match self.buf.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(self.bad("the payload ends early")),
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        let b = self.u8()?;
        if b < 0x80 {
            return Ok(u64::from(b));
        }
        let mut v = u64::from(b & 0x7f);
        let mut shift = 7;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(self.bad("a number over 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    /// A count of items that take at least `min` bytes each.
    #[inline(always)]
    fn count(&mut self, min: u64) -> Result<usize, WireError> {
        let n = self.varint()?;
        if n.saturating_mul(min) > self.left() as u64 {
            return Err(self.bad(format!("a count of {n} with {} bytes left", self.left())));
        }
        Ok(n as usize)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if n > self.left() {
            return Err(self.bad("the payload ends early"));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    #[inline]
    fn u64_le(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        let mut w = [0; 8];
        w.copy_from_slice(b);
        Ok(u64::from_le_bytes(w))
    }

    #[inline(always)]
    fn str(&mut self) -> Result<&'a str, WireError> {
        let n = self.count(1)?;
        let b = self.take(n)?;
        if b.is_ascii() {
            // SAFETY: ASCII is UTF-8 (checked just above; `from_utf8` costs three times
            // as much on words).
            return Ok(unsafe { std::str::from_utf8_unchecked(b) });
        }
        std::str::from_utf8(b).map_err(|_| self.bad("a string that is not UTF-8"))
    }

    fn value(&mut self, depth: usize) -> Result<Value, WireError> {
        Ok(match self.u8()? {
            tag::STR => Value::Str(SmolStr::new(self.str()?)),
            tag::NULL => Value::Null,
            tag::FALSE => Value::Bool(false),
            tag::TRUE => Value::Bool(true),
            tag::INT => {
                let z = self.varint()?;
                Value::Int(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            tag::FLOAT => Value::Float(f64::from_bits(self.u64_le()?)),
            tag::BYTES => {
                let n = self.count(1)?;
                Value::Bytes(Bytes::copy_from_slice(self.take(n)?))
            }
            tag::LIST | tag::MAP if depth >= MAX_DEPTH => {
                return Err(self.bad(format!(
                    "values nest deeper than {MAX_DEPTH} lists and maps"
                )))
            }
            tag::LIST => {
                let n = self.count(1)?;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(self.value(depth + 1)?);
                }
                Value::List(l)
            }
            tag::MAP => {
                let n = self.count(2)?;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = self.str()?.to_owned();
                    let v = self.value(depth + 1)?;
                    m.insert(k, v);
                }
                Value::Map(m)
            }
            t => return Err(self.bad(format!("unknown value tag {t}"))),
        })
    }
}

/// Decodes batches and data messages for one worker, caching the streams it resolved.
///
/// Streams are resolved against the topology, so a peer cannot make a worker intern
/// names the topology does not declare.
pub struct DataDecoder {
    /// `None`: only the streams given to [`DataDecoder::for_streams`] are known.
    topology: Option<Arc<Topology>>,
    /// (component, stream) -> interned stream, for every stream seen so far.
    streams: Vec<(String, String, &'static StreamInfo)>,
}

impl DataDecoder {
    /// A decoder for `topology`'s streams.
    pub fn new(topology: Arc<Topology>) -> Self {
        DataDecoder {
            topology: Some(topology),
            streams: Vec::new(),
        }
    }

    /// A decoder that knows exactly these streams (for tests and fuzzing).
    pub fn for_streams(streams: &[&'static StreamInfo]) -> Self {
        DataDecoder {
            topology: None,
            streams: streams
                .iter()
                .map(|s| (s.component.clone(), s.stream.clone(), *s))
                .collect(),
        }
    }

    fn stream(&mut self, component: &str, stream: &str) -> Result<&'static StreamInfo, WireError> {
        if let Some((_, _, info)) = self
            .streams
            .iter()
            .find(|(c, s, _)| c == component && s == stream)
        {
            return Ok(info);
        }
        let info = self
            .topology
            .as_ref()
            .and_then(|t| t.component(component))
            .and_then(|(_, c)| c.output(stream))
            .map(|decl| StreamInfo::intern(component, stream, &decl.fields))
            .ok_or_else(|| WireError::UnknownStream {
                component: component.to_owned(),
                stream: stream.to_owned(),
            })?;
        // Only declared streams get here, so the cache is bounded by the topology.
        self.streams
            .push((component.to_owned(), stream.to_owned(), info));
        Ok(info)
    }

    /// Decodes a data message (a batch, an end of stream).
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Inbound, WireError> {
        if bytes.first() == Some(&BATCH_TAG) {
            return self.decode_batch(&bytes[1..]).map(Inbound::Batch);
        }
        match decode::<Data>("data", bytes)? {
            Data::Eos(from) => Ok(Inbound::Eos(from)),
            Data::Wake => Ok(Inbound::Wake),
        }
    }

    fn decode_batch(&mut self, buf: &[u8]) -> Result<Vec<Tuple>, WireError> {
        let mut r = Reader {
            buf,
            pos: 0,
            what: "data",
        };
        // A source takes at least 3 bytes, a tuple at least 3.
        let n = r.count(3)?;
        let mut sources: SmallVec<[(&'static StreamInfo, TaskId); 2]> = SmallVec::with_capacity(n);
        for _ in 0..n {
            let component = r.str()?;
            let stream = r.str()?;
            let task = r.varint()?;
            let task = TaskId::try_from(task).map_err(|_| bad("a task id over 32 bits"))?;
            sources.push((self.stream(component, stream)?, task));
        }
        let n = r.count(3)?;
        let mut tuples = Vec::with_capacity(n);
        for _ in 0..n {
            let i = r.varint()?;
            let &(source, source_task) = sources
                .get(i as usize)
                .ok_or(WireError::BadStreamIndex(i as usize))?;
            let na = r.count(16)?;
            let mut anchors = Anchors::new();
            if na > 1 {
                anchors.reserve_exact(na);
            }
            for _ in 0..na {
                let root = r.u64_le()?;
                let id = r.u64_le()?;
                anchors.push((root, id));
            }
            let nv = r.count(1)?;
            let mut values = SmallVec::new();
            if nv > 2 {
                values.reserve_exact(nv);
            }
            for _ in 0..nv {
                values.push(r.value(0)?);
            }
            tuples.push(Tuple {
                values: Values(values),
                source,
                source_task,
                anchors,
            });
        }
        if r.left() != 0 {
            return Err(bad(format!("{} bytes after the last tuple", r.left())));
        }
        Ok(tuples)
    }
}

/// Encodes a data message (a batch, an end of stream) for a task of another worker,
/// appending it to `out`.
pub fn encode_data_into(msg: &Inbound, out: &mut BytesMut) -> Result<(), WireError> {
    match msg {
        Inbound::Batch(tuples) => encode_batch_into(tuples, out),
        Inbound::Eos(from) => {
            out.extend_from_slice(&encode(&Data::Eos(*from))?);
            Ok(())
        }
        Inbound::Wake => {
            out.extend_from_slice(&encode(&Data::Wake)?);
            Ok(())
        }
    }
}

/// Encodes a data message (a batch, an end of stream) for a task of another worker.
pub fn encode_data(msg: &Inbound) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    encode_data_into(msg, &mut out)?;
    Ok(out.freeze())
}

/// Decodes a data message; streams are resolved against `topology`. A worker decodes
/// with one [`DataDecoder`], which remembers the streams it resolved.
pub fn decode_data(bytes: &[u8], topology: &Topology) -> Result<Inbound, WireError> {
    DataDecoder::new(Arc::new(topology.clone())).decode(bytes)
}

/// First byte of an acker payload (like [`BATCH_TAG`], never the start of MessagePack).
pub const ACKER_TAG: u8 = 0xc1;

/// Encodes acker messages: [`ACKER_TAG`], then per message a kind byte and its fields,
/// little-endian: `1 root:u64 xor:u64 spout:u32` (init), `2 root:u64 xor:u64` (xor),
/// `3 root:u64` (fail).
pub fn encode_acker(msgs: &[AckerMsg]) -> Result<Bytes, WireError> {
    let mut out = BytesMut::with_capacity(1 + msgs.len() * 21);
    out.put_u8(ACKER_TAG);
    for m in msgs {
        match *m {
            AckerMsg::Init { root, xor, spout } => {
                out.put_u8(1);
                out.put_u64_le(root);
                out.put_u64_le(xor);
                out.put_u32_le(spout);
            }
            AckerMsg::Xor { root, xor } => {
                out.put_u8(2);
                out.put_u64_le(root);
                out.put_u64_le(xor);
            }
            AckerMsg::Fail { root } => {
                out.put_u8(3);
                out.put_u64_le(root);
            }
        }
    }
    Ok(out.freeze())
}

/// Decodes acker messages.
pub fn decode_acker(bytes: &[u8]) -> Result<Vec<AckerMsg>, WireError> {
    let bad = |message: &str| WireError::Decode {
        what: "acker",
        message: message.to_owned(),
    };
    let Some((&ACKER_TAG, rest)) = bytes.split_first() else {
        return Err(bad("not an acker payload"));
    };
    let mut r = Reader {
        buf: rest,
        pos: 0,
        what: "acker",
    };
    // The smallest message (a fail) takes 9 bytes.
    let mut msgs = Vec::with_capacity(rest.len() / 9);
    while r.left() > 0 {
        let kind = r.u8()?;
        let root = r.u64_le()?;
        msgs.push(match kind {
            1 => {
                let xor = r.u64_le()?;
                let spout = r.take(4)?;
                AckerMsg::Init {
                    root,
                    xor,
                    spout: u32::from_le_bytes([spout[0], spout[1], spout[2], spout[3]]),
                }
            }
            2 => AckerMsg::Xor {
                root,
                xor: r.u64_le()?,
            },
            3 => AckerMsg::Fail { root },
            _ => return Err(bad("unknown acker message kind")),
        });
    }
    Ok(msgs)
}

/// Encodes a message to a spout task.
pub fn encode_control(msg: &SpoutMsg) -> Result<Bytes, WireError> {
    encode(msg)
}

/// Decodes a message to a spout task.
pub fn decode_control(bytes: &[u8]) -> Result<SpoutMsg, WireError> {
    decode("control", bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;
    use topo_dsl::{Catalog, ComponentType, ConfigIssue, Kind, StreamDecl};

    struct T(Kind);
    impl ComponentType for T {
        fn kind(&self) -> Kind {
            self.0
        }
        fn description(&self) -> &str {
            ""
        }
        fn configure(&self, _: &toml::Table) -> Result<Vec<StreamDecl>, Vec<ConfigIssue>> {
            Ok(vec![StreamDecl::default_stream(["word", "n"])])
        }
    }
    struct Types;
    impl Catalog for Types {
        fn component_type(&self, name: &str) -> Option<&dyn ComponentType> {
            match name {
                "src" => Some(&T(Kind::Spout)),
                _ => Some(&T(Kind::Bolt)),
            }
        }
        fn type_names(&self) -> Vec<String> {
            vec!["src".into(), "b".into()]
        }
    }

    fn topology() -> Topology {
        Topology::builder("w")
            .spout("s", "src")
            .bolt("b", "b")
            .shuffle("s")
            .build(&Types)
            .unwrap()
    }

    #[test]
    fn a_batch_round_trips_with_its_acking_state() {
        let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let mut t = Tuple::new(info, 1, [Value::from("pemi"), Value::from(3)]);
        t.anchors.push((0xdead_beef, 0x1234));
        let u = Tuple::new(info, 2, [Value::from("ka"), Value::Null]);
        let bytes = encode_data(&Inbound::Batch(vec![t, u])).unwrap();
        let Inbound::Batch(back) = decode_data(&bytes, &topology()).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(back.len(), 2);
        assert!(
            std::ptr::eq(back[0].source, info),
            "re-interned to the same stream"
        );
        assert_eq!(back[0].values(), [Value::from("pemi"), Value::from(3)]);
        assert_eq!(back[0].anchors.as_slice(), [(0xdead_beef, 0x1234)]);
        assert_eq!(back[1].source_task(), 2);
        assert!(!back[1].is_tracked());
    }

    #[test]
    fn end_of_stream_has_exact_bytes() {
        let bytes = encode_data(&Inbound::Eos(7)).unwrap();
        // {"Eos": 7}: fixmap(1), fixstr "Eos", positive fixint 7.
        assert_eq!(&bytes[..], [0x81, 0xa3, b'E', b'o', b's', 0x07]);
        assert!(matches!(
            decode_data(&bytes, &topology()).unwrap(),
            Inbound::Eos(7)
        ));
    }

    #[test]
    fn acker_and_control_messages_round_trip() {
        let msgs = [
            AckerMsg::Init {
                root: 1,
                xor: 2,
                spout: 3,
            },
            AckerMsg::Fail { root: 9 },
        ];
        let b = encode_acker(&msgs).unwrap();
        assert_eq!(decode_acker(&b).unwrap(), msgs.to_vec());
        let b = encode_control(&SpoutMsg::Acked(vec![7, 8])).unwrap();
        assert_eq!(decode_control(&b).unwrap(), SpoutMsg::Acked(vec![7, 8]));
    }

    #[test]
    fn hostile_payloads_are_errors() {
        let t = topology();
        assert!(matches!(
            decode_data(b"\xc1garbage", &t),
            Err(WireError::Decode { what: "data", .. })
        ));
        let info = StreamInfo::intern("nope", "default", &[]);
        let bytes = encode_data(&Inbound::Batch(vec![Tuple::new(info, 1, Values::new())])).unwrap();
        assert_eq!(
            decode_data(&bytes, &t).unwrap_err().to_string(),
            "a batch names stream `default` of `nope`, which the topology does not declare"
        );
        assert!(decode_acker(&[0x92, 0xc1]).is_err());
    }

    #[test]
    fn a_batch_has_exact_bytes() {
        let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let mut t = Tuple::new(info, 3, [Value::from("ka"), Value::from(-2)]);
        t.anchors.push((1, 2));
        let bytes = encode_data(&Inbound::Batch(vec![t])).unwrap();
        let mut want = vec![BATCH_TAG, 1, 1, b's', 7];
        want.extend_from_slice(b"default");
        want.extend_from_slice(&[3, 1, 0, 1]);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&[2, tag::STR, 2, b'k', b'a', tag::INT, 3]);
        assert_eq!(&bytes[..], want);
    }

    #[test]
    fn acker_messages_have_exact_bytes_and_garbage_is_an_error() {
        let b = encode_acker(&[AckerMsg::Fail { root: 0x0102 }]).unwrap();
        assert_eq!(&b[..], [ACKER_TAG, 3, 2, 1, 0, 0, 0, 0, 0, 0]);
        let err = |b: &[u8]| decode_acker(b).unwrap_err().to_string();
        assert_eq!(
            err(&b[..5]),
            "cannot decode an acker payload: the payload ends early"
        );
        assert_eq!(
            err(&[ACKER_TAG, 9, 0, 0, 0, 0, 0, 0, 0, 0]),
            "cannot decode an acker payload: unknown acker message kind"
        );
        assert_eq!(
            err(&[0x91, 0x00]),
            "cannot decode an acker payload: not an acker payload"
        );
        assert_eq!(decode_acker(&[ACKER_TAG]).unwrap(), []);
    }

    #[test]
    fn garbage_batches_say_what_is_wrong() {
        let t = topology();
        let err = |b: &[u8]| decode_data(b, &t).unwrap_err().to_string();
        assert_eq!(
            err(&[BATCH_TAG, 1]),
            "cannot decode a data payload: a count of 1 with 0 bytes left"
        );
        assert_eq!(
            err(&[BATCH_TAG, 0, 0, 0]),
            "cannot decode a data payload: 1 bytes after the last tuple"
        );
        assert_eq!(
            err(&[BATCH_TAG, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            "cannot decode a data payload: a number over 64 bits"
        );
        let mut b = vec![BATCH_TAG, 1, 1, b's', 7];
        b.extend_from_slice(b"default");
        b.extend_from_slice(&[1, 1, 0, 0, 1, tag::STR, 2, 0xff, 0xfe]);
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a string that is not UTF-8"
        );
        b.truncate(b.len() - 4);
        b.extend_from_slice(&[9]);
        assert_eq!(err(&b), "cannot decode a data payload: unknown value tag 9");
        b.truncate(b.len() - 4);
        b.extend_from_slice(&[5, 0, 0, 1, 0]);
        assert_eq!(
            err(&b),
            "a tuple refers to stream 5, which its batch does not name"
        );
    }

    #[test]
    fn nesting_is_bounded_both_ways() {
        let mut v = Value::Null;
        for _ in 0..=MAX_DEPTH {
            v = Value::List(vec![v]);
        }
        let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let err =
            encode_data(&Inbound::Batch(vec![Tuple::new(info, 1, [v, Value::Null])])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot encode: values nest deeper than 64 lists and maps"
        );
        let mut b = vec![BATCH_TAG, 1, 1, b's', 7];
        b.extend_from_slice(b"default");
        b.extend_from_slice(&[1, 1, 0, 0, 1]);
        for _ in 0..100_000 {
            b.extend_from_slice(&[tag::LIST, 1]);
        }
        b.push(tag::NULL);
        assert_eq!(
            decode_data(&b, &topology()).unwrap_err().to_string(),
            "cannot decode a data payload: values nest deeper than 64 lists and maps"
        );
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            // NaN != NaN: compare floats by their bits below instead.
            any::<f64>()
                .prop_filter("not NaN", |f| !f.is_nan())
                .prop_map(Value::Float),
            ".{0,40}".prop_map(|s: String| Value::from(s.as_str())),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|b| Value::Bytes(Bytes::from(b))),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::btree_map(".{0,8}", inner, 0..4).prop_map(Value::Map),
            ]
        })
    }

    fn any_tuple() -> impl Strategy<Value = Tuple> {
        let words = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let counts = StreamInfo::intern("b", "default", &["word".into(), "n".into()]);
        (
            any::<bool>(),
            1u32..5,
            proptest::collection::vec((any::<u64>(), any::<u64>()), 0..3),
            proptest::collection::vec(any_value(), 0..4),
        )
            .prop_map(move |(first, task, anchors, values)| {
                let mut t = Tuple::new(if first { words } else { counts }, task, values);
                t.anchors = Anchors::from_vec(anchors);
                t
            })
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn batches_round_trip(tuples in proptest::collection::vec(any_tuple(), 0..20)) {
            let bytes = encode_data(&Inbound::Batch(tuples.clone())).unwrap();
            let Inbound::Batch(back) = decode_data(&bytes, &topology()).unwrap() else {
                panic!("not a batch");
            };
            prop_assert_eq!(back.len(), tuples.len());
            for (a, b) in back.iter().zip(&tuples) {
                prop_assert!(std::ptr::eq(a.source, b.source));
                prop_assert_eq!(a.source_task, b.source_task);
                prop_assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
                prop_assert_eq!(a.values(), b.values());
            }
        }

        #[test]
        fn damaged_batches_are_errors_or_batches(
            tuples in proptest::collection::vec(any_tuple(), 1..6),
            cut in any::<prop::sample::Index>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut bytes = encode_data(&Inbound::Batch(tuples)).unwrap().to_vec();
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            let t = topology();
            let _ = decode_data(&bytes, &t);
            let _ = decode_data(&bytes[..cut.index(bytes.len())], &t);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = vec![BATCH_TAG];
            b.extend_from_slice(&body);
            let _ = decode_data(&b, &topology());
        }
    }
}
