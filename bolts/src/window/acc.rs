//! Group keys and the accumulators of `window_aggregate`'s functions.

use std::hash::{BuildHasher, Hash, Hasher};

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use topo_engine::{Result, Tuple, Value, Values};

use super::config::{Aggregate, Function};

/// A group's key: the values of the key fields.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Key(pub(super) SmallVec<[Value; 1]>);

impl Key {
    /// True when the key is these values.
    #[inline]
    fn is(&self, values: &[&Value]) -> bool {
        self.0.len() == values.len() && self.0.iter().zip(values).all(|(a, b)| same(a, b))
    }
}

/// `a == b`, with strings and integers (the usual keys) compared inline.
#[inline]
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x.as_str() == y.as_str(),
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => a == b,
    }
}

/// Hashes a key value, strings and integers (the usual keys) inline.
#[inline]
fn hash_value<H: Hasher>(v: &Value, h: &mut H) {
    match v {
        Value::Str(s) => s.as_str().hash(h),
        Value::Int(i) => i.hash(h),
        other => hash_other(other, h),
    }
}

fn hash_other<H: Hasher>(v: &Value, h: &mut H) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => b.hash(h),
        Value::Int(i) => i.hash(h),
        Value::Float(f) => f.to_bits().hash(h),
        Value::Str(s) => s.as_str().hash(h),
        Value::Bytes(b) => b.hash(h),
        Value::List(l) => l.iter().for_each(|v| hash_value(v, h)),
        Value::Map(m) => m.iter().for_each(|(k, v)| {
            k.hash(h);
            hash_value(v, h);
        }),
    }
}

/// How group keys are hashed: once per input tuple, from its field values, and never
/// again (a group keeps its hash from pane to window).
#[derive(Debug, Clone, Default)]
pub(super) struct KeyHasher(foldhash::fast::RandomState);

impl KeyHasher {
    /// The hash of a key's values.
    #[inline]
    pub(super) fn hash<'a>(&self, values: impl IntoIterator<Item = &'a Value>) -> u64 {
        let mut h = self.0.build_hasher();
        values.into_iter().for_each(|v| hash_value(v, &mut h));
        h.finish()
    }
}

/// One key's aggregates in a pane or window; in a pane with acking on, also the pane's
/// tuples of the key (held until they leave every window).
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub(super) hash: u64,
    pub(super) key: Key,
    pub(super) acc: Acc,
    pub(super) held: Vec<Tuple>,
}

/// Groups by key. A lookup takes the hash and borrowed values, so a tuple's key is
/// cloned only when it is new to the pane.
#[derive(Debug, Default)]
pub(super) struct Groups(HashTable<Group>);

impl Groups {
    /// The group of `key` (values of a tuple), hashed `hash`.
    #[inline]
    pub(super) fn find_mut(&mut self, hash: u64, key: &[&Value]) -> Option<&mut Group> {
        self.0.find_mut(hash, |g| g.hash == hash && g.key.is(key))
    }

    /// The group of `like`'s key.
    #[inline]
    pub(super) fn get(&self, like: &Group) -> Option<&Group> {
        self.0
            .find(like.hash, |g| g.hash == like.hash && g.key == like.key)
    }

    /// The group of `like`'s key, to change.
    #[inline]
    pub(super) fn get_mut(&mut self, like: &Group) -> Option<&mut Group> {
        self.0
            .find_mut(like.hash, |g| g.hash == like.hash && g.key == like.key)
    }

    /// Adds a group whose key is not here yet.
    #[inline]
    pub(super) fn insert(&mut self, g: Group) -> &mut Group {
        self.0.insert_unique(g.hash, g, |g| g.hash).into_mut()
    }

    /// Removes the group of `like`'s key.
    pub(super) fn remove(&mut self, like: &Group) {
        if let Ok(e) = self
            .0
            .find_entry(like.hash, |g| g.hash == like.hash && g.key == like.key)
        {
            e.remove();
        }
    }

    /// Merges `g`'s aggregates into the group of its key (a copy of it when new).
    pub(super) fn merge(&mut self, g: &Group) {
        match self.get_mut(g) {
            Some(r) => r.acc.merge(&g.acc),
            None => {
                self.insert(Group {
                    hash: g.hash,
                    key: g.key.clone(),
                    acc: g.acc.clone(),
                    held: Vec::new(),
                });
            }
        }
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Group> {
        self.0.iter()
    }

    pub(super) fn clear(&mut self) {
        self.0.clear();
    }

    pub(super) fn into_iter(self) -> impl Iterator<Item = Group> {
        self.0.into_iter()
    }
}

/// A running sum: integers exactly (wrapping, so subtraction undoes addition), floats
/// apart.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Sum {
    int: i64,
    float: f64,
    floats: u64,
    n: u64,
}

impl Sum {
    pub(super) fn value(&self) -> Value {
        if self.floats == 0 {
            Value::Int(self.int)
        } else {
            Value::Float(self.int as f64 + self.float)
        }
    }
}

/// One aggregate's state for one key in one pane (or window).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Slot {
    Count(u64),
    Sum(Sum),
    Min(Option<Value>),
    Max(Option<Value>),
}

/// Aggregates of one key: how many tuples, and each aggregate's slot (none when
/// `count()` is the only one).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(super) struct Acc {
    pub(super) n: u64,
    slots: Vec<Slot>,
}

fn compare(a: &Value, b: &Value) -> Result<std::cmp::Ordering, String> {
    let order = match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        _ => match (a.as_float(), b.as_float()) {
            (Some(x), Some(y)) => x.partial_cmp(&y),
            _ => None,
        },
    };
    order.ok_or_else(|| format!("cannot compare {a} with {b}"))
}

impl Acc {
    /// An accumulator of `count()` alone that has seen `n` tuples.
    pub(super) fn counted(n: u64) -> Acc {
        Acc {
            n,
            slots: Vec::new(),
        }
    }
    pub(super) fn new(aggs: &[Aggregate], fast: bool) -> Acc {
        let slots = if fast {
            Vec::new()
        } else {
            aggs.iter()
                .map(|a| match a.function {
                    Function::Count => Slot::Count(0),
                    Function::Sum | Function::Avg => Slot::Sum(Sum::default()),
                    Function::Min => Slot::Min(None),
                    Function::Max => Slot::Max(None),
                })
                .collect()
        };
        Acc { n: 0, slots }
    }

    pub(super) fn add(&mut self, args: &[Value]) -> Result<(), String> {
        self.n += 1;
        for (slot, v) in self.slots.iter_mut().zip(args) {
            if matches!(v, Value::Null) {
                continue;
            }
            match slot {
                Slot::Count(c) => *c += 1,
                Slot::Sum(s) => {
                    match v {
                        Value::Int(i) => s.int = s.int.wrapping_add(*i),
                        Value::Float(f) => {
                            s.float += f;
                            s.floats += 1;
                        }
                        other => return Err(format!("`sum`/`avg` needs numbers; got {other}")),
                    }
                    s.n += 1;
                }
                Slot::Min(m) => {
                    if m.as_ref()
                        .map_or(Ok(true), |cur| compare(v, cur).map(|o| o.is_lt()))?
                    {
                        *m = Some(v.clone());
                    }
                }
                Slot::Max(m) => {
                    if m.as_ref()
                        .map_or(Ok(true), |cur| compare(v, cur).map(|o| o.is_gt()))?
                    {
                        *m = Some(v.clone());
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn merge(&mut self, other: &Acc) {
        self.n += other.n;
        for (a, b) in self.slots.iter_mut().zip(&other.slots) {
            match (a, b) {
                (Slot::Count(x), Slot::Count(y)) => *x += y,
                (Slot::Sum(x), Slot::Sum(y)) => {
                    x.int = x.int.wrapping_add(y.int);
                    x.float += y.float;
                    x.floats += y.floats;
                    x.n += y.n;
                }
                (Slot::Min(x), Slot::Min(Some(y)))
                    if x.as_ref()
                        .is_none_or(|cur| compare(y, cur).is_ok_and(|o| o.is_lt())) =>
                {
                    *x = Some(y.clone());
                }
                (Slot::Max(x), Slot::Max(Some(y)))
                    if x.as_ref()
                        .is_none_or(|cur| compare(y, cur).is_ok_and(|o| o.is_gt())) =>
                {
                    *x = Some(y.clone());
                }
                _ => {}
            }
        }
    }

    /// Takes a pane back out (only for `count`, `sum` and `avg`).
    pub(super) fn subtract(&mut self, other: &Acc) {
        self.n -= other.n;
        for (a, b) in self.slots.iter_mut().zip(&other.slots) {
            match (a, b) {
                (Slot::Count(x), Slot::Count(y)) => *x -= y,
                (Slot::Sum(x), Slot::Sum(y)) => {
                    x.int = x.int.wrapping_sub(y.int);
                    x.floats -= y.floats;
                    x.n -= y.n;
                    // Exactly zero once no float is left, whatever the rounding on the way.
                    x.float = if x.floats == 0 {
                        0.0
                    } else {
                        x.float - y.float
                    };
                }
                _ => {}
            }
        }
    }

    pub(super) fn push_results(&self, aggs: &[Aggregate], out: &mut Values) {
        if self.slots.is_empty() {
            out.push(self.n);
            return;
        }
        for (a, slot) in aggs.iter().zip(&self.slots) {
            out.push(match slot {
                Slot::Count(_) if a.arg.is_none() => Value::from(self.n),
                Slot::Count(c) => Value::from(*c),
                Slot::Sum(s) if a.function == Function::Avg => {
                    if s.n == 0 {
                        Value::Null
                    } else {
                        Value::Float((s.int as f64 + s.float) / s.n as f64)
                    }
                }
                Slot::Sum(s) => s.value(),
                Slot::Min(m) | Slot::Max(m) => m.clone().unwrap_or(Value::Null),
            });
        }
    }
}
