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
use std::mem::MaybeUninit;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use smol_str::SmolStr;
use topo_dsl::Topology;

use crate::executor::push_in_place;
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
    /// `SHORT_STR + k`: a string of `k < 32` bytes follows.
    pub(super) const SHORT_STR: u8 = 32;
}

/// Lists and maps nest at most this deep in a batch (a decoder's stack is finite).
pub const MAX_DEPTH: usize = 64;

/// Encodes a batch of tuples for one task into `out` (appended).
///
/// ```text
/// batch   = 0xc1, varint n_tuples, run ...   (the runs hold n_tuples tuples in all)
/// run     = varint source_index, [source], varint n_anchors, varint n_values,
///           varint n_run, tuple * n_run     (n_run >= 1)
/// source  = str component, str stream, varint source_task
///                                          (present when source_index is the number of
///                                          sources the batch named so far: a new one)
/// tuple   = (root u64 LE, id u64 LE) * n_anchors, value * n_values
/// value   = 0 null | 1 false | 2 true | 3 zigzag-varint int | 4 f64 LE | 5 str | 6 bytes
///         | 7 varint n, value * n | 8 varint n, (str key, value) * n
///         | 32 + k, k bytes         (k < 32: a short string, UTF-8)
/// str     = varint length, bytes             varint = LEB128, at most 10 bytes
/// ```
///
/// A run is consecutive tuples of one source with as many anchors and values each, so
/// what repeats is written once: a batch of words from one task is a single run, which
/// names its source. The encoder writes `n_run` as three bytes (LEB128 with padding, so
/// it can fill it in at the end of the run) and starts a new run after 2^21 - 1 tuples;
/// a tuple with neither anchors nor values is a run of its own, so every tuple takes at
/// least one byte and `n_tuples` is bounded by the payload's length.
pub fn encode_batch_into(tuples: &[Tuple], out: &mut BytesMut) -> Result<(), WireError> {
    let start = out.len();
    let written = encode_runs(tuples, out);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// Writes the batch in one pass: each tuple first makes sure of the most room it can
/// take (the rest of the batch is written without capacity checks), and whatever the
/// batch needs beyond what `out` has is reserved as the batch goes.
#[inline(always)]
fn encode_runs(tuples: &[Tuple], out: &mut BytesMut) -> Result<(), WireError> {
    // Sources are (stream, task) pairs; a batch from one executor has one or a few.
    let mut sources: SmallVec<[(&'static StreamInfo, TaskId); 2]> = SmallVec::new();
    out.reserve(24 + tuples.len() * 8);
    let mut w = Put {
        buf: out.spare_capacity_mut(),
        n: 0,
    };
    w.u8(BATCH_TAG);
    w.varint(tuples.len() as u64);
    // The run being written: its key and where its length goes.
    let mut run: Option<(&'static StreamInfo, TaskId, usize, usize)> = None;
    let mut run_at = 0;
    let mut run_len: u32 = 0;
    for (i, t) in tuples.iter().enumerate() {
        let key = (t.source, t.source_task, t.anchors.len(), t.values.len());
        let mut need = 16 * key.2;
        for v in t.values.iter() {
            need += value_room(v);
        }
        // As if the tuple began a run that names a new source.
        let head = RUN_HEAD_MAX + 3 * 10 + key.0.component.len() + key.0.stream.len();
        if w.buf.len() - w.n < need + head {
            if run.take().is_some() {
                w.patch_run(run_at, run_len);
            }
            let n = w.n;
            // SAFETY: `Put` wrote its slice of the spare capacity from the start, every
            // byte below `n` (the run's length was filled in just above).
            unsafe { out.advance_mut(n) };
            out.reserve((need + head).max((tuples.len() - i) * 8));
            w = Put {
                buf: out.spare_capacity_mut(),
                n: 0,
            };
        }
        let extends = run.is_some_and(|r| {
            std::ptr::eq(r.0, key.0) && r.1 == key.1 && r.2 == key.2 && r.3 == key.3
        }) && run_len < MAX_RUN
            && key.2 + key.3 > 0;
        if extends {
            run_len += 1;
        } else {
            if run.is_some() {
                w.patch_run(run_at, run_len);
            }
            let same = |s: &(&'static StreamInfo, TaskId)| std::ptr::eq(s.0, key.0) && s.1 == key.1;
            match sources.iter().position(same) {
                Some(k) => w.varint(k as u64),
                None => {
                    w.varint(sources.len() as u64);
                    w.bytes(key.0.component.as_bytes());
                    w.bytes(key.0.stream.as_bytes());
                    w.varint(u64::from(key.1));
                    sources.push((key.0, key.1));
                }
            }
            w.varint(key.2 as u64);
            w.varint(key.3 as u64);
            run_at = w.n;
            w.slice(&[0; 3]);
            run = Some(key);
            run_len = 1;
        }
        for &(root, id) in &t.anchors {
            let mut pair = [0; 16];
            pair[..8].copy_from_slice(&root.to_le_bytes());
            pair[8..].copy_from_slice(&id.to_le_bytes());
            w.slice(&pair);
        }
        for v in t.values.iter() {
            w.value(v, 0)?;
        }
    }
    if run.is_some() {
        w.patch_run(run_at, run_len);
    }
    let n = w.n;
    // SAFETY: as above; on an error (returned above) nothing of this chunk is committed.
    unsafe { out.advance_mut(n) };
    Ok(())
}

/// Tuples in a run at most: its length is written as three bytes of LEB128.
const MAX_RUN: u32 = (1 << 21) - 1;

/// A run's header at most: three varints and the three-byte length.
const RUN_HEAD_MAX: usize = 3 * 10 + 3;

/// Strings shorter than this are written with their length in the tag.
const SHORT_STR: usize = 32;

/// The most bytes `v` can take.
#[inline(always)]
fn value_room(v: &Value) -> usize {
    match v {
        Value::Str(s) => 11 + s.len(),
        Value::Null | Value::Bool(_) => 1,
        _ => nested_room(v, 0),
    }
}

/// The most bytes `v` can take when written at nesting `depth` (deeper than
/// [`MAX_DEPTH`] is an error, written as nothing).
fn nested_room(v: &Value, depth: usize) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(_) => 11,
        Value::Float(_) => 9,
        Value::Str(s) => 11 + s.len(),
        Value::Bytes(b) => 11 + b.len(),
        Value::List(_) | Value::Map(_) if depth >= MAX_DEPTH => 0,
        Value::List(l) => 11 + l.iter().map(|v| nested_room(v, depth + 1)).sum::<usize>(),
        Value::Map(m) => {
            11 + m
                .iter()
                .map(|(k, v)| 10 + k.len() + nested_room(v, depth + 1))
                .sum::<usize>()
        }
    }
}

/// Writes into room reserved beforehand (the spare capacity of a `BytesMut`): each write
/// is a store and a bounds check, not a capacity check and a length update.
struct Put<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    /// Bytes written, from the start of `buf`.
    n: usize,
}

impl Put<'_> {
    #[inline(always)]
    fn u8(&mut self, b: u8) {
        self.buf[self.n] = MaybeUninit::new(b);
        self.n += 1;
    }

    #[inline(always)]
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.u8(v as u8);
    }

    #[inline(always)]
    fn slice(&mut self, b: &[u8]) {
        self.buf[self.n..self.n + b.len()].write_copy_of_slice(b);
        self.n += b.len();
    }

    /// `slice(b)` for fewer than 32 bytes, as a few word-sized copies (overlapping
    /// where `b` is not a whole number of words) rather than a call to `memcpy`.
    #[inline(always)]
    fn short(&mut self, b: &[u8]) {
        let n = b.len();
        let at = self.n;
        if n >= 8 {
            let mut i = 0;
            while i + 8 < n {
                self.buf[at + i..at + i + 8].write_copy_of_slice(&b[i..i + 8]);
                i += 8;
            }
            self.buf[at + n - 8..at + n].write_copy_of_slice(&b[n - 8..]);
        } else if n >= 4 {
            self.buf[at..at + 4].write_copy_of_slice(&b[..4]);
            self.buf[at + n - 4..at + n].write_copy_of_slice(&b[n - 4..]);
        } else {
            for (i, &c) in b.iter().enumerate() {
                self.buf[at + i] = MaybeUninit::new(c);
            }
        }
        self.n += n;
    }

    #[inline(always)]
    fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.slice(b);
    }

    #[inline(always)]
    fn u64_le(&mut self, v: u64) {
        self.slice(&v.to_le_bytes());
    }

    /// Writes `len` as three bytes of LEB128 at `at`.
    #[inline(always)]
    fn patch_run(&mut self, at: usize, len: u32) {
        let b = [
            (len as u8) | 0x80,
            ((len >> 7) as u8) | 0x80,
            ((len >> 14) as u8) & 0x7f,
        ];
        self.buf[at..at + 3].write_copy_of_slice(&b);
    }

    #[inline(always)]
    fn value(&mut self, v: &Value, depth: usize) -> Result<(), WireError> {
        if let Value::Str(s) = v {
            let b = s.as_bytes();
            if b.len() < SHORT_STR {
                self.u8(tag::SHORT_STR + b.len() as u8);
                self.short(b);
                return Ok(());
            }
        }
        self.value_slow(v, depth)
    }

    fn value_slow(&mut self, v: &Value, depth: usize) -> Result<(), WireError> {
        match v {
            Value::Null => self.u8(tag::NULL),
            Value::Bool(false) => self.u8(tag::FALSE),
            Value::Bool(true) => self.u8(tag::TRUE),
            Value::Int(i) => {
                self.u8(tag::INT);
                self.varint(((*i << 1) ^ (*i >> 63)) as u64);
            }
            Value::Float(f) => {
                self.u8(tag::FLOAT);
                self.u64_le(f.to_bits());
            }
            Value::Str(s) => {
                self.u8(tag::STR);
                self.bytes(s.as_bytes());
            }
            Value::Bytes(b) => {
                self.u8(tag::BYTES);
                self.bytes(b);
            }
            Value::List(_) | Value::Map(_) if depth >= MAX_DEPTH => {
                return Err(WireError::Encode(format!(
                    "values nest deeper than {MAX_DEPTH} lists and maps"
                )));
            }
            Value::List(l) => {
                self.u8(tag::LIST);
                self.varint(l.len() as u64);
                for v in l {
                    self.value(v, depth + 1)?;
                }
            }
            Value::Map(m) => {
                self.u8(tag::MAP);
                self.varint(m.len() as u64);
                for (k, v) in m {
                    self.bytes(k.as_bytes());
                    self.value(v, depth + 1)?;
                }
            }
        }
        Ok(())
    }
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
        utf8(b).ok_or_else(|| self.bad("a string that is not UTF-8"))
    }

    /// Reads a value; short strings come from (or go to) `strs`.
    #[inline(always)]
    fn value(&mut self, strs: &mut ValueCache, depth: usize) -> Result<Value, WireError> {
        let t = self.u8()?;
        if t.wrapping_sub(tag::SHORT_STR) < SHORT_STR as u8 {
            let b = self.take(usize::from(t - tag::SHORT_STR))?;
            return match strs.get(b) {
                Some(v) => Ok(v),
                None => Err(self.bad("a string that is not UTF-8")),
            };
        }
        self.value_slow(t, strs, depth)
    }

    /// Reads a tuple's value straight into `dst` (a slot of its `Values`): a short string
    /// found in `strs` is one 40-byte copy from the cache, with no `Value` or `Result`
    /// of it built on the stack in between.
    #[inline(always)]
    fn value_into(
        &mut self,
        strs: &mut ValueCache,
        dst: &mut MaybeUninit<Value>,
    ) -> Result<(), WireError> {
        let t = self.u8()?;
        let n = t.wrapping_sub(tag::SHORT_STR);
        if n < SHORT_STR as u8 {
            let b = self.take(usize::from(n))?;
            if b.len() <= STR_CACHED {
                let slot = strs.slot(b);
                if !slot.holds(b) && !slot.fill(b) {
                    return Err(self.bad("a string that is not UTF-8"));
                }
                slot.copy_to(dst);
                return Ok(());
            }
            return match utf8(b) {
                Some(s) => {
                    dst.write(Value::Str(SmolStr::new(s)));
                    Ok(())
                }
                None => Err(self.bad("a string that is not UTF-8")),
            };
        }
        dst.write(self.value_slow(t, strs, 0)?);
        Ok(())
    }

    fn value_slow(
        &mut self,
        t: u8,
        strs: &mut ValueCache,
        depth: usize,
    ) -> Result<Value, WireError> {
        Ok(match t {
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
                    l.push(self.value(strs, depth + 1)?);
                }
                Value::List(l)
            }
            tag::MAP => {
                let n = self.count(2)?;
                let mut m = BTreeMap::new();
                for _ in 0..n {
                    let k = self.str()?.to_owned();
                    let v = self.value(strs, depth + 1)?;
                    m.insert(k, v);
                }
                Value::Map(m)
            }
            t => return Err(self.bad(format!("unknown value tag {t}"))),
        })
    }
}

/// Recently decoded short strings as ready `Value`s, so that a repeated word is copied
/// into its tuple from a line written long ago instead of being built anew: building an
/// inline `SmolStr` writes the bytes with narrow stores and reads them back as words, a
/// store-forwarding stall, and a string found here needs no UTF-8 check either.
///
/// Direct-mapped; a miss builds the string and takes the slot. A slot's key is the
/// string's length and two words that together hold all its bytes (strings of up to
/// 16 bytes; longer ones are not cached), so a hit compares three numbers.
struct ValueCache {
    slots: Box<[ValueSlot]>,
}

/// One cache line: the key and the value.
#[repr(align(64))]
struct ValueSlot {
    len: usize,
    lo: u64,
    hi: u64,
    /// Always a `Value::Str` of at most [`STR_CACHED`] bytes, built by
    /// `SmolStr::new_inline`: it owns no heap memory (see [`ValueSlot::copy_to`]).
    v: Value,
}

impl Default for ValueSlot {
    fn default() -> Self {
        // The empty string's slot, keyed (0, 0, 0) as `key` keys it.
        ValueSlot {
            len: 0,
            lo: 0,
            hi: 0,
            v: Value::Str(SmolStr::new_inline("")),
        }
    }
}

/// Slots in a [`ValueCache`] (a power of two; 64 bytes each).
const STR_SLOTS: usize = 4096;

/// Strings up to this long are cached.
const STR_CACHED: usize = 16;

impl ValueCache {
    fn new() -> Self {
        ValueCache {
            slots: std::iter::repeat_with(ValueSlot::default)
                .take(STR_SLOTS)
                .collect(),
        }
    }

    /// The slot `b` (at most [`STR_CACHED`] bytes) maps to.
    #[inline(always)]
    fn slot(&mut self, b: &[u8]) -> &mut ValueSlot {
        let (lo, hi) = key(b);
        let h = (lo ^ hi.rotate_left(29) ^ b.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        &mut self.slots[(h >> 40) as usize & (STR_SLOTS - 1)]
    }

    /// `b` as a `Value::Str`, or `None` if it is not UTF-8.
    #[inline(always)]
    fn get(&mut self, b: &[u8]) -> Option<Value> {
        if b.len() > STR_CACHED {
            return utf8(b).map(|s| Value::Str(SmolStr::new(s)));
        }
        let slot = self.slot(b);
        if !slot.holds(b) && !slot.fill(b) {
            return None;
        }
        Some(slot.v.clone())
    }
}

impl ValueSlot {
    /// Whether the slot holds `b` (at most [`STR_CACHED`] bytes).
    #[inline(always)]
    fn holds(&self, b: &[u8]) -> bool {
        let (lo, hi) = key(b);
        self.len == b.len() && self.lo == lo && self.hi == hi
    }

    /// Makes the slot hold `b` (at most [`STR_CACHED`] bytes); false if `b` is not UTF-8.
    #[cold]
    #[inline(never)]
    fn fill(&mut self, b: &[u8]) -> bool {
        let Some(s) = utf8(b) else {
            return false;
        };
        let (lo, hi) = key(b);
        *self = ValueSlot {
            len: b.len(),
            lo,
            hi,
            v: Value::Str(SmolStr::new_inline(s)),
        };
        true
    }

    /// Writes a clone of the slot's value to `dst`, as one copy of its 40 bytes.
    #[inline(always)]
    fn copy_to(&self, dst: &mut MaybeUninit<Value>) {
        // SAFETY: `v` is a `Value::Str` whose `SmolStr` is inline (`new_inline`, and the
        // default slot's): it owns nothing, so its bytes are a clone of it, and dropping
        // either copy frees nothing. Source and destination are valid for one `Value`
        // and do not overlap (`dst` is exclusively borrowed).
        unsafe { std::ptr::copy_nonoverlapping(&self.v, dst.as_mut_ptr(), 1) }
    }
}

/// Two words holding every byte of `b` (at most 16 bytes): with its length, an exact key.
#[inline(always)]
fn key(b: &[u8]) -> (u64, u64) {
    let n = b.len();
    let word = |i: usize| {
        let mut w = [0; 8];
        w.copy_from_slice(&b[i..i + 8]);
        u64::from_le_bytes(w)
    };
    let half = |i: usize| {
        let mut w = [0; 4];
        w.copy_from_slice(&b[i..i + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    if n >= 8 {
        (word(0), word(n - 8))
    } else if n >= 4 {
        (half(0), half(n - 4))
    } else if n > 0 {
        (
            u64::from(b[0]) | (u64::from(b[n / 2]) << 8) | (u64::from(b[n - 1]) << 16),
            0,
        )
    } else {
        (0, 0)
    }
}

/// The little-endian `u64` in `b` (8 bytes).
#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(b);
    u64::from_le_bytes(w)
}

/// `b` as a `str` if it is UTF-8 (ASCII checked first: `from_utf8` costs three times as
/// much on words).
#[inline(always)]
fn utf8(b: &[u8]) -> Option<&str> {
    if b.is_ascii() {
        // SAFETY: ASCII is UTF-8 (checked just above).
        return Some(unsafe { std::str::from_utf8_unchecked(b) });
    }
    std::str::from_utf8(b).ok()
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
    strs: ValueCache,
}

/// A data message as [`DataDecoder::begin`] finds it.
#[derive(Debug)]
pub enum Begun {
    /// A batch, read as far as its count of tuples: [`DataDecoder::decode_some`]
    /// decodes the tuples.
    Batch(BatchCursor),
    /// Any other message, decoded.
    Other(Inbound),
}

/// How far a batch has been decoded, so that it can be decoded a few tuples at a time
/// (each chunk executed while it is still in the cache) with
/// [`DataDecoder::decode_some`]. Only meaningful with the payload it was begun on.
#[derive(Debug)]
pub struct BatchCursor {
    /// Where the next run or tuple starts in the payload.
    pos: usize,
    /// Tuples still to decode.
    left: usize,
    /// Sources the batch named so far.
    sources: SmallVec<[(&'static StreamInfo, TaskId); 2]>,
    /// The run being decoded.
    run: Option<Run>,
}

/// A run: every tuple of it has this source and as many anchors and values.
#[derive(Debug, Clone, Copy)]
struct Run {
    source: &'static StreamInfo,
    task: TaskId,
    anchors: usize,
    values: usize,
    /// Its tuples still to decode.
    left: usize,
}

impl BatchCursor {
    /// Tuples of the batch not decoded yet.
    pub fn left(&self) -> usize {
        self.left
    }
}

impl DataDecoder {
    /// A decoder for `topology`'s streams.
    pub fn new(topology: Arc<Topology>) -> Self {
        DataDecoder {
            topology: Some(topology),
            streams: Vec::new(),
            strs: ValueCache::new(),
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
            strs: ValueCache::new(),
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
        let mut tuples = Vec::new();
        Ok(self
            .decode_into(bytes, &mut tuples)?
            .unwrap_or(Inbound::Batch(tuples)))
    }

    /// Decodes a data message, appending a batch's tuples to `tuples` (a recycled
    /// vector saves an allocation per batch) and returning `None`; any other message is
    /// returned. On an error `tuples` is as it was.
    pub fn decode_into(
        &mut self,
        bytes: &[u8],
        tuples: &mut Vec<Tuple>,
    ) -> Result<Option<Inbound>, WireError> {
        match self.begin(bytes)? {
            Begun::Batch(mut c) => {
                self.decode_some(bytes, &mut c, tuples, usize::MAX)?;
                Ok(None)
            }
            Begun::Other(m) => Ok(Some(m)),
        }
    }

    /// Starts on a data message: a batch's count of tuples is read (and checked against
    /// the payload's length) and its tuples are left to [`DataDecoder::decode_some`];
    /// any other message is decoded whole.
    pub fn begin(&mut self, bytes: &[u8]) -> Result<Begun, WireError> {
        if bytes.first() != Some(&BATCH_TAG) {
            return match decode::<Data>("data", bytes)? {
                Data::Eos(from) => Ok(Begun::Other(Inbound::Eos(from))),
                Data::Wake => Ok(Begun::Other(Inbound::Wake)),
            };
        }
        let mut r = Reader {
            buf: bytes,
            pos: 1,
            what: "data",
        };
        // Every tuple takes at least a byte (see `encode_batch_into`).
        let left = r.count(1)?;
        Ok(Begun::Batch(BatchCursor {
            pos: r.pos,
            left,
            sources: SmallVec::new(),
            run: None,
        }))
    }

    /// Appends up to `max` more tuples of the batch `cursor` reads in `bytes` (the
    /// payload it was begun on) to `tuples`; `Ok(true)` once the whole batch is decoded
    /// and nothing follows it. On an error `tuples` is as it was before this call (what
    /// earlier calls appended stays) and the rest of the batch cannot be decoded.
    pub fn decode_some(
        &mut self,
        bytes: &[u8],
        cursor: &mut BatchCursor,
        tuples: &mut Vec<Tuple>,
        max: usize,
    ) -> Result<bool, WireError> {
        let len = tuples.len();
        let done = self.fill(bytes, cursor, tuples, max);
        if done.is_err() {
            tuples.truncate(len);
            // Nothing more comes out of this batch.
            cursor.left = 0;
            cursor.run = None;
            cursor.pos = bytes.len();
        }
        done
    }

    fn fill(
        &mut self,
        bytes: &[u8],
        c: &mut BatchCursor,
        tuples: &mut Vec<Tuple>,
        max: usize,
    ) -> Result<bool, WireError> {
        let mut r = Reader {
            buf: bytes,
            pos: c.pos,
            what: "data",
        };
        let mut room = max;
        tuples.reserve(c.left.min(max));
        let done = loop {
            let run = match c.run {
                Some(run) if run.left > 0 => run,
                _ => {
                    if c.left == 0 {
                        if r.left() != 0 {
                            return Err(bad(format!("{} bytes after the last tuple", r.left())));
                        }
                        break true;
                    }
                    if room == 0 {
                        break false;
                    }
                    self.run_head(&mut r, c)?
                }
            };
            let n = run.left.min(room);
            if n == 0 {
                break false;
            }
            decode_run(&mut r, &mut self.strs, run, n, tuples)?;
            c.run = Some(Run {
                left: run.left - n,
                ..run
            });
            c.left -= n;
            room -= n;
        };
        c.pos = r.pos;
        Ok(done)
    }

    /// Reads a run's header.
    fn run_head(&mut self, r: &mut Reader<'_>, c: &mut BatchCursor) -> Result<Run, WireError> {
        let i = r.varint()?;
        let (source, task) = match c.sources.get(i as usize) {
            Some(&s) => s,
            None if i == c.sources.len() as u64 => {
                let component = r.str()?;
                let stream = r.str()?;
                let task = r.varint()?;
                let task = TaskId::try_from(task).map_err(|_| bad("a task id over 32 bits"))?;
                let s = (self.stream(component, stream)?, task);
                c.sources.push(s);
                s
            }
            None => return Err(WireError::BadStreamIndex(i as usize)),
        };
        let na = r.count(16)?;
        let nv = r.count(1)?;
        let k = r.varint()?;
        let left = c.left;
        if k == 0 || k > left as u64 {
            return Err(bad(format!("a run of {k} tuples with {left} to go")));
        }
        let k = k as usize;
        // Both counts are bounded by the payload's length: no overflow.
        let width = (16 * na + nv) as u64;
        if width.saturating_mul(k as u64) > r.left() as u64 {
            return Err(bad(format!(
                "a run of {k} tuples of {width} bytes or more with {} bytes left",
                r.left()
            )));
        }
        Ok(Run {
            source,
            task,
            anchors: na,
            values: nv,
            left: k,
        })
    }
}

/// Decodes `n` tuples of `run` into `tuples`, each written where it lives: its fields
/// straight into the vector's next slot, its values straight into its `Values`.
#[inline(always)]
fn decode_run(
    r: &mut Reader<'_>,
    strs: &mut ValueCache,
    run: Run,
    n: usize,
    tuples: &mut Vec<Tuple>,
) -> Result<(), WireError> {
    let nv = run.values;
    for _ in 0..n {
        let anchors = match run.anchors {
            0 => Anchors::new(),
            na => {
                let mut anchors = Anchors::new();
                if na > 1 {
                    anchors.reserve_exact(na);
                }
                // One checked read for all of them.
                for pair in r.take(16 * na)?.chunks_exact(16) {
                    let (root, id) = pair.split_at(8);
                    anchors.push((le64(root), le64(id)));
                }
                anchors
            }
        };
        push_in_place(tuples, Values::new(), run.source, run.task, anchors);
        let last = tuples.len() - 1;
        let values = &mut tuples[last].values.0;
        if nv > 2 {
            values.reserve_exact(nv);
        }
        for j in 0..nv {
            // SAFETY: the capacity is at least `nv` (inline for two, reserved above for
            // more), so slot `j` is allocated, and it holds no value: the length is `j`.
            let slot = unsafe { &mut *values.as_mut_ptr().add(j).cast::<MaybeUninit<Value>>() };
            r.value_into(strs, slot)?;
            // SAFETY: slots below `j + 1` hold values (written just above), so an error
            // at the next value drops what was decoded of this tuple.
            unsafe { values.set_len(j + 1) };
        }
    }
    Ok(())
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
        // One tuple: a run of a new source 0 (`s`, `default`, task 3), 1 anchor, 2 values,
        // length 1 in 3 bytes.
        let mut want = vec![BATCH_TAG, 1, 0, 1, b's', 7];
        want.extend_from_slice(b"default");
        want.extend_from_slice(&[3, 1, 2, 0x81, 0x80, 0]);
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&[tag::SHORT_STR + 2, b'k', b'a', tag::INT, 3]);
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
            err(&[BATCH_TAG, 0, 0]),
            "cannot decode a data payload: 1 bytes after the last tuple"
        );
        assert_eq!(
            err(&[BATCH_TAG, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            "cannot decode a data payload: a number over 64 bits"
        );
        // One tuple: a run of a new source 0 (`s`, `default`, task 1), no anchors, one
        // value, length 1.
        let mut b = vec![BATCH_TAG, 1, 0, 1, b's', 7];
        b.extend_from_slice(b"default");
        b.extend_from_slice(&[1, 0, 1, 1, tag::STR, 2, 0xff, 0xfe]);
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a string that is not UTF-8"
        );
        let at = b.len() - 4;
        b[at] = tag::SHORT_STR + 2;
        b.remove(at + 1);
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a string that is not UTF-8"
        );
        b.truncate(at);
        b.extend_from_slice(&[9]);
        assert_eq!(err(&b), "cannot decode a data payload: unknown value tag 9");
        b[at] = 64;
        assert_eq!(
            err(&b),
            "cannot decode a data payload: unknown value tag 64"
        );
        b[at - 1] = 2;
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a run of 2 tuples with 1 to go"
        );
        b[at - 1] = 0;
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a run of 0 tuples with 1 to go"
        );
        b[at - 1] = 1;
        b[at - 2] = 2;
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a run of 1 tuples of 2 bytes or more with 1 bytes left"
        );
        b[at - 2] = 9;
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a count of 9 with 2 bytes left"
        );
        b[at - 3] = 1;
        b[at - 2] = 1;
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a count of 1 with 3 bytes left"
        );
        // Index 1 while the batch named one source: neither known nor the next new one.
        assert_eq!(
            err(&[BATCH_TAG, 1, 2, 0, 0, 1, 0]),
            "a tuple refers to stream 2, which its batch does not name"
        );
        assert_eq!(
            err(&[BATCH_TAG, 1, 0, 1, b'x', 1, b'y', 1, 0, 0, 1]),
            "a batch names stream `y` of `x`, which the topology does not declare"
        );
        // Two tuples of 16 anchor bytes and a value each, with 20 bytes left.
        b.truncate(at - 3);
        b.extend_from_slice(&[1, 1, 2]);
        b.extend_from_slice(&[0; 20]);
        b[1] = 2;
        assert_eq!(
            err(&b),
            "cannot decode a data payload: a run of 2 tuples of 17 bytes or more with 20 bytes left"
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
        let mut b = vec![BATCH_TAG, 1, 0, 1, b's', 7];
        b.extend_from_slice(b"default");
        b.extend_from_slice(&[1, 0, 1, 1]);
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

    #[test]
    fn decode_into_appends_and_leaves_the_vector_as_it_was_on_an_error() {
        let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let batch = |w: &str| {
            encode_data(&Inbound::Batch(vec![Tuple::new(
                info,
                1,
                [Value::from(w), Value::from(1)],
            )]))
            .unwrap()
        };
        let mut d = DataDecoder::new(Arc::new(topology()));
        let mut v = Vec::new();
        assert!(d.decode_into(&batch("ka"), &mut v).unwrap().is_none());
        assert!(d.decode_into(&batch("lo"), &mut v).unwrap().is_none());
        let words: Vec<_> = v.iter().map(|t| t.values()[0].clone()).collect();
        assert_eq!(words, [Value::from("ka"), Value::from("lo")]);
        let bad = batch("mi");
        let err = d.decode_into(&bad[..bad.len() - 1], &mut v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot decode a data payload: the payload ends early"
        );
        assert_eq!(v.len(), 2);
        let eos = encode_data(&Inbound::Eos(4)).unwrap();
        assert!(matches!(
            d.decode_into(&eos, &mut v).unwrap(),
            Some(Inbound::Eos(4))
        ));
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn a_batch_decodes_a_chunk_at_a_time_and_an_error_drops_only_its_chunk() {
        let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let tuples: Vec<Tuple> = (0..10)
            .map(|i| {
                let mut t = Tuple::new(info, 1, [Value::from(format!("w{i}").as_str()), i.into()]);
                // Three runs: tuples 4 and 5 are anchored.
                if (4..6).contains(&i) {
                    t.anchors.push((i as u64, 7));
                }
                t
            })
            .collect();
        let bytes = encode_data(&Inbound::Batch(tuples.clone())).unwrap();
        let mut d = DataDecoder::new(Arc::new(topology()));
        let chunks = |d: &mut DataDecoder, bytes: &[u8], got: &mut Vec<Tuple>| {
            let Begun::Batch(mut c) = d.begin(bytes).unwrap() else {
                panic!("not a batch");
            };
            assert_eq!(c.left(), 10);
            let mut sizes = Vec::new();
            loop {
                let before = got.len();
                let done = d.decode_some(bytes, &mut c, got, 3);
                sizes.push(got.len() - before);
                match done {
                    Ok(false) => {}
                    Ok(true) => return (sizes, None),
                    Err(e) => return (sizes, Some(e.to_string())),
                }
            }
        };
        let mut got = Vec::new();
        assert_eq!(chunks(&mut d, &bytes, &mut got), (vec![3, 3, 3, 1], None));
        for (a, b) in got.iter().zip(&tuples) {
            assert_eq!(a.values(), b.values());
            assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
        }
        assert_eq!(got.len(), 10);
        // The batch ends after tuple 8's word: the chunk of tuples 6 to 8 is dropped whole.
        let w8 = [tag::SHORT_STR + 2, b'w', b'8'];
        let Some(at) = bytes.windows(3).position(|w| w == w8) else {
            panic!("no w8 in {bytes:?}");
        };
        let mut got = Vec::new();
        assert_eq!(
            chunks(&mut d, &bytes[..at + 3], &mut got),
            (
                vec![3, 3, 0],
                Some("cannot decode a data payload: the payload ends early".into())
            )
        );
        let words: Vec<_> = got.iter().map(|t| t.values()[0].clone()).collect();
        let want: Vec<_> = (0..6)
            .map(|i| Value::from(format!("w{i}").as_str()))
            .collect();
        assert_eq!(words, want);
        // Not a batch: decoded whole.
        assert!(matches!(
            d.begin(&encode_data(&Inbound::Eos(3)).unwrap()).unwrap(),
            Begun::Other(Inbound::Eos(3))
        ));
    }

    #[test]
    fn strings_around_the_short_tag_and_the_cache_round_trip() {
        let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let mut words: Vec<String> = (0..40).map(|n| "x".repeat(n)).collect();
        words.extend(["é".into(), "naïve".into(), "ka".into(), "kb".into()]);
        words.extend((0..40).map(|n| "é".repeat(n)));
        let mut d = DataDecoder::new(Arc::new(topology()));
        // Twice: the second pass finds the short ones in the decoder's cache.
        for _ in 0..2 {
            let tuples: Vec<Tuple> = words
                .iter()
                .map(|w| Tuple::new(info, 1, [Value::from(w.as_str()), Value::Null]))
                .collect();
            let bytes = encode_data(&Inbound::Batch(tuples)).unwrap();
            let Inbound::Batch(back) = d.decode(&bytes).unwrap() else {
                panic!("not a batch");
            };
            let got: Vec<&str> = back.iter().filter_map(|t| t.values()[0].as_str()).collect();
            assert_eq!(got, words);
        }
    }

    #[test]
    fn a_batch_larger_than_the_room_reserved_first_round_trips_after_what_was_there() {
        let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let long = "kalominupe".repeat(10);
        let tuples: Vec<Tuple> = (0..3000)
            .map(|i| {
                let mut t = Tuple::new(info, 1, [Value::from(long.as_str()), Value::from(i)]);
                t.anchors.push((i as u64, 7));
                t
            })
            .collect();
        let mut out = BytesMut::from(&b"before"[..]);
        encode_batch_into(&tuples, &mut out).unwrap();
        assert_eq!(&out[..6], b"before");
        let Inbound::Batch(back) = decode_data(&out[6..], &topology()).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(back.len(), tuples.len());
        for (a, b) in back.iter().zip(&tuples) {
            assert_eq!(a.values(), b.values());
            assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
        }
        // A batch that cannot be encoded leaves `out` as it was.
        let mut deep = Value::Null;
        for _ in 0..=MAX_DEPTH {
            deep = Value::List(vec![deep]);
        }
        let mut bad = tuples;
        bad.push(Tuple::new(info, 1, [deep, Value::Null]));
        let mut out = BytesMut::from(&b"before"[..]);
        assert!(encode_batch_into(&bad, &mut out).is_err());
        assert_eq!(&out[..], b"before");
    }

    #[test]
    fn a_cached_string_is_never_mistaken_for_another() {
        // Same length, same first and last words: only the middle differs.
        let mut c = ValueCache::new();
        for w in [
            "abcdefghijklmnop",
            "abcdefghXjklmnop",
            "abc",
            "aXc",
            "ab",
            "abb",
        ] {
            assert_eq!(c.get(w.as_bytes()), Some(Value::from(w)));
            assert_eq!(c.get(w.as_bytes()), Some(Value::from(w)));
        }
        assert_eq!(c.get(b"\xff"), None);
        assert_eq!(c.get(&[0xc3]), None);
    }

    /// Tuples of a few shapes and words, in runs: what a bolt's batches look like.
    fn any_run_tuples() -> impl Strategy<Value = Vec<Tuple>> {
        let words = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
        let counts = StreamInfo::intern("b", "default", &["word".into(), "n".into()]);
        let shape = (any::<bool>(), 1u32..3, 0usize..3, 0usize..3, 1usize..40);
        proptest::collection::vec((shape, any::<u64>()), 0..8).prop_map(move |runs| {
            let vocab = [
                "ka",
                "lo",
                "pemi",
                "",
                "kalomi",
                "é",
                "kalominupe-rasitovuze",
            ];
            let mut tuples = Vec::new();
            for ((first, task, na, nv, len), seed) in runs {
                for i in 0..len as u64 {
                    let x = seed.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    let values: Vec<Value> = (0..nv)
                        .map(|k| Value::from(vocab[((x >> (8 * k)) % 7) as usize]))
                        .collect();
                    let mut t = Tuple::new(if first { words } else { counts }, task, values);
                    t.anchors = (0..na).map(|k| (x, k as u64)).collect();
                    tuples.push(t);
                }
            }
            tuples
        })
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn runs_of_tuples_round_trip(tuples in any_run_tuples()) {
            let bytes = encode_data(&Inbound::Batch(tuples.clone())).unwrap();
            let mut d = DataDecoder::new(Arc::new(topology()));
            let mut back = Vec::new();
            // Twice into one vector: the second time through the string cache.
            for _ in 0..2 {
                prop_assert!(d.decode_into(&bytes, &mut back).unwrap().is_none());
            }
            prop_assert_eq!(back.len(), 2 * tuples.len());
            for (a, b) in back.iter().zip(tuples.iter().chain(&tuples)) {
                prop_assert!(std::ptr::eq(a.source, b.source));
                prop_assert_eq!(a.source_task, b.source_task);
                prop_assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
                prop_assert_eq!(a.values(), b.values());
            }
        }

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
