//! The batch decoder: a `Data` payload into tuples, a chunk at a time, with a cache of
//! recently decoded short strings.

use std::mem::MaybeUninit;
use std::sync::Arc;

use bytes::Bytes;
use smallvec::SmallVec;
use smol_str::SmolStr;
use std::collections::BTreeMap;
use topo_dsl::Topology;

use super::payload::{self, BATCH_TAG};
use super::{tag, WireError, MAX_DEPTH, SHORT_STR};
use crate::route::Inbound;
use crate::tuple::{push_in_place, Anchors, StreamInfo, TaskId, Tuple, Values};
use crate::value::Value;

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
pub(super) struct ValueCache {
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
    pub(super) fn new() -> Self {
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
    pub(super) fn get(&mut self, b: &[u8]) -> Option<Value> {
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
            return payload::decode_signal(bytes).map(Begun::Other);
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

/// Decodes a data message; streams are resolved against `topology`. A worker decodes
/// with one [`DataDecoder`], which remembers the streams it resolved.
pub fn decode_data(bytes: &[u8], topology: &Topology) -> Result<Inbound, WireError> {
    DataDecoder::new(Arc::new(topology.clone())).decode(bytes)
}
