//! Tuples: a list of values on a named stream, with field access by name and index, and
//! the batch helpers that build and clear vectors of them in place.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};

use smallvec::SmallVec;

use crate::value::Value;

/// A task's id, unique in the topology (Storm's task id).
pub type TaskId = u32;

/// A spout's id for one message it emitted reliably; given back in `ack`/`fail`.
pub type MsgId = u64;

/// The values of one tuple. Up to two live inline, with no allocation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Values(pub(crate) SmallVec<[Value; 2]>);

impl Values {
    /// No values.
    pub fn new() -> Self {
        Values(SmallVec::new())
    }

    /// Appends a value.
    pub fn push(&mut self, v: impl Into<Value>) {
        self.0.push(v.into());
    }

    /// The values as a slice.
    pub fn as_slice(&self) -> &[Value] {
        &self.0
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V: Into<Value>, const N: usize> From<[V; N]> for Values {
    fn from(a: [V; N]) -> Self {
        Values(a.into_iter().map(Into::into).collect())
    }
}

impl From<Vec<Value>> for Values {
    fn from(v: Vec<Value>) -> Self {
        Values(SmallVec::from_vec(v))
    }
}

impl FromIterator<Value> for Values {
    fn from_iter<I: IntoIterator<Item = Value>>(iter: I) -> Self {
        Values(iter.into_iter().collect())
    }
}

impl std::ops::Deref for Values {
    type Target = [Value];
    fn deref(&self) -> &[Value] {
        &self.0
    }
}

impl serde::Serialize for Values {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Values {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> serde::de::Visitor<'de> for Seq {
            type Value = Values;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of tuple values")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Values, A::Error> {
                let mut vs = SmallVec::new();
                while let Some(v) = seq.next_element::<Value>()? {
                    vs.push(v);
                }
                Ok(Values(vs))
            }
        }
        d.deserialize_seq(Seq)
    }
}

/// Builds [`Values`] from expressions of mixed types: `values!["word", 3]`.
#[macro_export]
macro_rules! values {
    ($($v:expr),* $(,)?) => {{
        let mut vs = $crate::Values::new();
        $(vs.push($v);)*
        vs
    }};
}

/// Where a tuple came from: component, stream and the stream's fields.
///
/// Interned once per distinct (component, stream, fields) for the life of the process, so
/// a tuple carries one pointer to it rather than three strings.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct StreamInfo {
    /// Emitting component id.
    pub component: String,
    /// Stream id.
    pub stream: String,
    /// Declared field names.
    pub fields: Vec<String>,
}

impl StreamInfo {
    /// The interned `StreamInfo` for these names.
    pub fn intern(component: &str, stream: &str, fields: &[String]) -> &'static StreamInfo {
        static TABLE: OnceLock<Mutex<HashSet<&'static StreamInfo>>> = OnceLock::new();
        let key = StreamInfo {
            component: component.to_string(),
            stream: stream.to_string(),
            fields: fields.to_vec(),
        };
        let mut table = TABLE
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(found) = table.get(&key) {
            return found;
        }
        let leaked: &'static StreamInfo = Box::leak(Box::new(key));
        table.insert(leaked);
        leaked
    }

    /// Index of field `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == name)
    }
}

/// Acking state of a tuple: for each spout tuple (root) whose tree it belongs to, this
/// tuple's id in that tree. Empty for untracked tuples.
pub(crate) type Anchors = SmallVec<[(u64, u64); 1]>;

/// A tuple: values on a stream, from a task.
#[derive(Debug, Clone)]
pub struct Tuple {
    pub(crate) values: Values,
    pub(crate) source: &'static StreamInfo,
    pub(crate) source_task: TaskId,
    pub(crate) anchors: Anchors,
}

impl Tuple {
    /// Makes an untracked tuple, for tests of a component's `execute` and for engines
    /// that feed components directly.
    pub fn new(
        source: &'static StreamInfo,
        source_task: TaskId,
        values: impl Into<Values>,
    ) -> Self {
        Tuple {
            values: values.into(),
            source,
            source_task,
            anchors: Anchors::new(),
        }
    }

    /// All values in field order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }

    /// Takes the values out.
    pub fn into_values(self) -> Values {
        self.values
    }

    /// The value at index `i`.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.values.0.get(i)
    }

    /// The value of field `name`.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.source.index_of(name).and_then(|i| self.get(i))
    }

    /// The string value of field `name`, if it is a string.
    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.field(name).and_then(Value::as_str)
    }

    /// The declared field names.
    pub fn fields(&self) -> &[String] {
        &self.source.fields
    }

    /// The emitting component's id.
    pub fn source_component(&self) -> &str {
        &self.source.component
    }

    /// The stream it arrived on.
    pub fn source_stream(&self) -> &str {
        &self.source.stream
    }

    /// The emitting task.
    pub fn source_task(&self) -> TaskId {
        self.source_task
    }

    /// Where it came from.
    pub fn source(&self) -> &'static StreamInfo {
        self.source
    }

    /// True when the tuple belongs to at least one tracked tree.
    pub fn is_tracked(&self) -> bool {
        !self.anchors.is_empty()
    }
}

/// `v.clear()`, but without running the drop glue of tuples that own nothing on the
/// heap: numbers and short strings (most tuples) skip the out-of-line
/// `drop_in_place::<[Value]>`, 40 instructions per tuple.
pub(crate) fn clear_batch(v: &mut Vec<Tuple>) {
    let len = v.len();
    // SAFETY: the length is set to 0 first, so a panic in a drop leaks the rest instead
    // of dropping twice; each tuple is then dropped at most once, in place.
    unsafe {
        v.set_len(0);
        let base = v.as_mut_ptr();
        for i in 0..len {
            drop_tuple(base.add(i));
        }
    }
}

/// Drops the tuple at `t` in place, skipping the drop glue when it owns nothing on the
/// heap (only inline values, inline anchors and a static reference: dropping it would
/// do nothing, so skipping is exact).
///
/// # Safety
/// `t` points to a valid tuple that is not used or dropped again.
#[inline]
pub(crate) unsafe fn drop_tuple(t: *mut Tuple) {
    fn owns_nothing(t: &Tuple) -> bool {
        !t.anchors.spilled()
            && !t.values.0.spilled()
            && t.values.iter().all(|v| match v {
                Value::Null | Value::Bool(_) | Value::Int(_) | Value::Float(_) => true,
                Value::Str(s) => !s.is_heap_allocated(),
                Value::Bytes(_) | Value::List(_) | Value::Map(_) => false,
            })
    }
    // SAFETY: the caller's.
    unsafe {
        if !owns_nothing(&*t) {
            std::ptr::drop_in_place(t);
        }
    }
}

/// `buf.push(Tuple { .. })`, but writing each field straight into the vector's next
/// slot: a `Tuple` is 128 bytes, and building it on the stack first cost two extra
/// copies of it per emit.
#[inline(always)]
pub(crate) fn push_in_place(
    buf: &mut Vec<Tuple>,
    values: Values,
    source: &'static StreamInfo,
    source_task: TaskId,
    anchors: Anchors,
) {
    if buf.len() == buf.capacity() {
        grow(buf);
    }
    let len = buf.len();
    // SAFETY: `len < capacity`, so slot `len` is allocated and holds no value; every
    // field of the `Tuple` is written before `set_len` makes the slot part of the vector,
    // and nothing between the writes can panic.
    unsafe {
        let slot = buf.as_mut_ptr().add(len);
        std::ptr::addr_of_mut!((*slot).values).write(values);
        std::ptr::addr_of_mut!((*slot).source).write(source);
        std::ptr::addr_of_mut!((*slot).source_task).write(source_task);
        std::ptr::addr_of_mut!((*slot).anchors).write(anchors);
        buf.set_len(len + 1);
    }
}

#[cold]
#[inline(never)]
fn grow(buf: &mut Vec<Tuple>) {
    buf.reserve(buf.capacity().max(16));
}
