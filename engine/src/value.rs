//! The values a tuple carries: null, bool, int, float, string, bytes, list, map.
//!
//! `Value` serializes to the natural MessagePack (and JSON) type of each variant, so a
//! string is a msgpack `str`, not a tagged enum: compact on the wire and readable by
//! multilang children.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use smol_str::SmolStr;

/// One value of a tuple.
///
/// Strings are [`SmolStr`]: up to 23 bytes live inline (no allocation), longer ones are
/// shared, so cloning a value is cheap.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// No value.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A UTF-8 string.
    Str(SmolStr),
    /// Raw bytes.
    Bytes(Bytes),
    /// A list of values.
    List(Vec<Value>),
    /// A map from string keys to values.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The float, if this is one (integers convert).
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// Feeds a stable hash of the value to `h`, the same in every process, build and
    /// run: fields grouping depends on it. Each variant adds a tag, so `Int(1)` and
    /// `Float(1.0)` or `Str("a")` and `Bytes(b"a")` hash differently.
    ///
    /// Strings and integers, the usual grouping keys, are hashed inline at the call;
    /// the other variants out of line.
    #[inline]
    pub fn stable_hash(&self, h: &mut StableHasher) {
        match self {
            Value::Str(s) => h.write_tagged(4, s.as_bytes()),
            Value::Int(i) => {
                h.write_u64(2);
                h.write_u64(*i as u64);
            }
            _ => self.stable_hash_other(h),
        }
    }

    #[inline(never)]
    fn stable_hash_other(&self, h: &mut StableHasher) {
        match self {
            Value::Null => h.write_u64(0),
            Value::Bool(b) => h.write_u64(1 | (u64::from(*b) << 8)),
            Value::Int(_) | Value::Str(_) => self.stable_hash(h),
            Value::Float(f) => {
                h.write_u64(3);
                h.write_u64(f.to_bits());
            }
            Value::Bytes(b) => h.write_tagged(5, b),
            Value::List(l) => {
                h.write_u64(6 | ((l.len() as u64) << 8));
                for v in l {
                    v.stable_hash(h);
                }
            }
            Value::Map(m) => {
                h.write_u64(7 | ((m.len() as u64) << 8));
                for (k, v) in m {
                    h.write(k.as_bytes());
                    v.stable_hash(h);
                }
            }
        }
    }
}

/// A 64-bit hash that is the same in every process, build and run (unlike std's
/// `RandomState`), fast on short keys: it takes 8 bytes at a time (little-endian, so
/// the same on every platform) with a multiply-rotate step and mixes the result once
/// in [`finish`](Self::finish).
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const K: u64 = 0x9E37_79B9_7F4A_7C15;

impl Default for StableHasher {
    fn default() -> Self {
        StableHasher(SEED)
    }
}

impl StableHasher {
    /// Adds one 64-bit word.
    #[inline]
    pub fn write_u64(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(K).rotate_left(26);
    }

    /// Adds bytes, preceded by their length (so `"ab", "c"` and `"a", "bc"` differ).
    #[inline]
    pub fn write(&mut self, bytes: &[u8]) {
        self.write_tagged(0xff, bytes);
    }

    /// Adds `tag` and the length of `bytes` as one word, then the bytes.
    #[inline]
    fn write_tagged(&mut self, tag: u8, bytes: &[u8]) {
        self.write_u64(u64::from(tag) | ((bytes.len() as u64) << 8));
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0; 8];
            w.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        let n = rest.len();
        if n >= 4 {
            // Two overlapping 4-byte reads cover 4 to 7 bytes (the length is hashed).
            let lo = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
            let hi = u32::from_le_bytes([rest[n - 4], rest[n - 3], rest[n - 2], rest[n - 1]]);
            self.write_u64(u64::from(lo) | (u64::from(hi) << 32));
        } else if n > 0 {
            let w =
                u64::from(rest[0]) | (u64::from(rest[n / 2]) << 8) | (u64::from(rest[n - 1]) << 16);
            self.write_u64(w);
        }
    }

    /// The hash so far, mixed so that every bit of it depends on every input bit (a
    /// fields grouping takes it modulo the task count).
    #[inline]
    pub fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
            Value::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Value::List(_) | Value::Map(_) => {
                f.write_str(&serde_json::to_string(self).unwrap_or_else(|_| "<unprintable>".into()))
            }
        }
    }
}

macro_rules! from_impl {
    ($($t:ty => $v:ident),* $(,)?) => {
        $(impl From<$t> for Value {
            fn from(x: $t) -> Self {
                Value::$v(x.into())
            }
        })*
    };
}

from_impl!(
    bool => Bool, i64 => Int, i32 => Int, u32 => Int, f64 => Float, f32 => Float,
    SmolStr => Str, &str => Str, String => Str, &String => Str, Bytes => Bytes, Vec<Value> => List,
    BTreeMap<String, Value> => Map,
);

impl From<u64> for Value {
    /// Values above `i64::MAX` wrap, as in Storm's Java longs.
    fn from(x: u64) -> Self {
        Value::Int(x as i64)
    }
}

impl From<usize> for Value {
    fn from(x: usize) -> Self {
        Value::Int(x as i64)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(x: Option<T>) -> Self {
        x.map_or(Value::Null, Into::into)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) => s.serialize_f64(*f),
            Value::Str(x) => s.serialize_str(x),
            Value::Bytes(b) => s.serialize_bytes(b),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
            Value::Map(m) => {
                let mut map = s.serialize_map(Some(m.len()))?;
                for (k, v) in m {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tuple value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::Int(u as i64))
    }
    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(SmolStr::new(s)))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::copy_from_slice(b)))
    }
    fn visit_byte_buf<E>(self, b: Vec<u8>) -> Result<Value, E> {
        Ok(Value::Bytes(Bytes::from(b)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(v) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::List(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, v)) = map.next_entry::<String, Value>()? {
            out.insert(k, v);
        }
        Ok(Value::Map(out))
    }
}

/// Converts a JSON value (multilang) to a tuple value.
impl From<serde_json::Value> for Value {
    fn from(j: serde_json::Value) -> Self {
        match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => n.as_u64().map_or_else(
                    || Value::Float(n.as_f64().unwrap_or(f64::NAN)),
                    |u| Value::Int(u as i64),
                ),
            },
            serde_json::Value::String(s) => Value::Str(s.into()),
            serde_json::Value::Array(a) => Value::List(a.into_iter().map(Into::into).collect()),
            serde_json::Value::Object(o) => {
                Value::Map(o.into_iter().map(|(k, v)| (k, v.into())).collect())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msgpack_round_trip_uses_native_types() {
        let v = Value::List(vec![
            Value::Str("ka".into()),
            Value::Int(-3),
            Value::Null,
            Value::Bool(true),
        ]);
        let bytes = rmp_serde::to_vec(&v).unwrap();
        // fixarray(4), fixstr "ka", negative fixint -3, nil, true
        assert_eq!(bytes, [0x94, 0xa2, b'k', b'a', 0xfd, 0xc0, 0xc3]);
        assert_eq!(rmp_serde::from_slice::<Value>(&bytes).unwrap(), v);
    }

    const PINNED: [u64; 5] = [
        6_554_612_393_815_486_714,
        14_448_421_568_819_027_191,
        16_689_488_465_648_942_526,
        1_929_496_624_925_406_823,
        12_856_705_096_613_809_704,
    ];

    #[test]
    fn stable_hash_is_pinned() {
        // Fields grouping must pick the same task in every worker process, build and
        // run: these values pin the hash (changing it is a wire-level change).
        let hash = |v: &Value| {
            let mut h = StableHasher::default();
            v.stable_hash(&mut h);
            h.finish()
        };
        let got: Vec<u64> = [
            Value::from("pemi"),
            Value::from("ok"),
            Value::from("a longer word than nine"),
            Value::Int(7),
            Value::Null,
        ]
        .iter()
        .map(hash)
        .collect();
        assert_eq!(got, PINNED);
    }

    #[test]
    fn stable_hash_separates_types_and_lengths() {
        let hash = |v: Value| {
            let mut h = StableHasher::default();
            v.stable_hash(&mut h);
            h.finish()
        };
        assert_ne!(
            hash(Value::from("a")),
            hash(Value::Bytes(Bytes::from_static(b"a")))
        );
        assert_ne!(hash(Value::from("ab")), hash(Value::from("ab\0")));
        assert_ne!(hash(Value::Int(1)), hash(Value::Float(1.0)));
        assert_ne!(hash(Value::from("")), hash(Value::Null));
        let strs = |a: &str, b: &str| {
            let mut h = StableHasher::default();
            h.write(a.as_bytes());
            h.write(b.as_bytes());
            h.finish()
        };
        assert_ne!(strs("ab", "c"), strs("a", "bc"));
    }

    #[test]
    fn stable_hash_spreads_similar_keys_over_two_tasks() {
        let mut counts = [0u32; 2];
        for i in 0..1000 {
            let mut h = StableHasher::default();
            Value::from(format!("word{i}")).stable_hash(&mut h);
            counts[(h.finish() % 2) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 400), "{counts:?}");
    }
}
