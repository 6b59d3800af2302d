//! The batch encoder: tuples for one task into a `Data` payload, in one pass.

use std::mem::MaybeUninit;

use bytes::{BufMut, Bytes, BytesMut};
use smallvec::SmallVec;

use super::payload::{self, BATCH_TAG};
use super::{tag, WireError, MAX_DEPTH, SHORT_STR};
use crate::route::Inbound;
use crate::tuple::{StreamInfo, TaskId, Tuple};
use crate::value::Value;

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

/// Encodes a data message (a batch, an end of stream) for a task of another worker,
/// appending it to `out`.
pub fn encode_data_into(msg: &Inbound, out: &mut BytesMut) -> Result<(), WireError> {
    match msg {
        Inbound::Batch(tuples) => encode_batch_into(tuples, out),
        Inbound::Eos(_) | Inbound::Wake | Inbound::Barrier { .. } => {
            payload::encode_signal(msg, out)
        }
    }
}

/// Encodes a data message (a batch, an end of stream) for a task of another worker.
pub fn encode_data(msg: &Inbound) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    encode_data_into(msg, &mut out)?;
    Ok(out.freeze())
}
