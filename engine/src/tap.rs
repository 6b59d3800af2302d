//! Taps: a live sample of the tuples a component's tasks emit (`topo tap`, Storm's event
//! inspector). A task with no tap attached pays one relaxed atomic load per flush.
//!
//! Each task has a [`TapSlot`]. [`Taps::attach`] switches the slots of a component's
//! tasks on and gives them a bounded channel; at its next flush an executor sees the flag
//! and, until the tap is dropped, offers each emit to the channel: a record is built only
//! when the channel has room, so a tapped task slows down by at most the channel's
//! capacity of records per read, and a slow reader gets a sample, not a backlog.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_channel::{Receiver, Sender};
use serde::{Deserialize, Serialize};

use topo_dsl::Topology;

use crate::tuple::{Anchors, StreamInfo, TaskId, Values};

/// Why a tap cannot be attached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    /// No such component.
    #[error("no component `{component}` (the components: {known})")]
    UnknownComponent {
        /// The name asked for.
        component: String,
        /// The topology's components, comma-separated.
        known: String,
    },
    /// The component does not declare that stream.
    #[error("`{component}` has no stream `{stream}` (it declares: {declared})")]
    UnknownStream {
        /// The component.
        component: String,
        /// The stream asked for.
        stream: String,
        /// Its streams, comma-separated.
        declared: String,
    },
}

/// Checks that `topology` has `component` and, when given, that it declares `stream`.
pub fn check(topology: &Topology, component: &str, stream: Option<&str>) -> Result<(), TapError> {
    let Some(c) = topology.components().iter().find(|c| c.id == component) else {
        let known: Vec<&str> = topology
            .components()
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        return Err(TapError::UnknownComponent {
            component: component.to_string(),
            known: known.join(", "),
        });
    };
    match stream {
        Some(s) if c.output(s).is_none() => {
            let declared: Vec<&str> = c.outputs.iter().map(|o| o.name.as_str()).collect();
            Err(TapError::UnknownStream {
                component: component.to_string(),
                stream: s.to_string(),
                declared: if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                },
            })
        }
        _ => Ok(()),
    }
}

/// Records a tap holds for its reader before tasks skip emits.
pub const TAP_CAPACITY: usize = 256;

/// One emitted tuple, as `topo tap` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TapRecord {
    /// The emitting component.
    pub component: String,
    /// The stream it was emitted on.
    pub stream: String,
    /// The emitting task.
    pub task: TaskId,
    /// The values by field name (JSON: numbers, strings, booleans, null; bytes as arrays).
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// With acking on: the tuple's id in each tree it belongs to, by the tree's root id
    /// (for a spout's emit, the root is the tuple's own id), both in hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub anchors: BTreeMap<String, String>,
}

/// Where a task's emits go while a tap is attached.
#[derive(Clone)]
pub(crate) struct TapSink {
    /// Which attach it belongs to: a tap detaches only its own sink.
    id: u64,
    /// Only this stream (all streams when `None`).
    stream: Option<String>,
    tx: Sender<TapRecord>,
}

impl TapSink {
    /// Offers an emit: sent when it is on the tapped stream and the channel has room.
    pub(crate) fn offer(
        &self,
        task: TaskId,
        info: &StreamInfo,
        values: &Values,
        anchors: &Anchors,
    ) {
        if self.tx.is_full() || self.stream.as_ref().is_some_and(|s| *s != info.stream) {
            return;
        }
        let fields = info
            .fields
            .iter()
            .zip(values.as_slice())
            .map(|(f, v)| (f.clone(), serde_json::to_value(v).unwrap_or_default()))
            .collect();
        let anchors = anchors
            .iter()
            .map(|(root, id)| (format!("{root:016x}"), format!("{id:016x}")))
            .collect();
        let _ = self.tx.try_send(TapRecord {
            component: info.component.clone(),
            stream: info.stream.clone(),
            task,
            fields,
            anchors,
        });
    }
}

/// A task's tap switch: the flag an executor loads once per flush, and the sink it then
/// takes.
#[derive(Default)]
pub(crate) struct TapSlot {
    on: AtomicBool,
    sink: Mutex<Option<TapSink>>,
}

impl TapSlot {
    /// The sink to offer emits to until the next flush, or `None` (the common case: one
    /// relaxed load).
    #[inline]
    pub(crate) fn sink(&self) -> Option<TapSink> {
        if !self.on.load(Ordering::Relaxed) {
            return None;
        }
        self.sink.lock().ok().and_then(|s| s.clone())
    }

    fn set(&self, sink: TapSink) {
        if let Ok(mut s) = self.sink.lock() {
            *s = Some(sink);
        }
        self.on.store(true, Ordering::Relaxed);
    }

    /// Switches the slot off if attach `id`'s sink is still the one in it (a later tap
    /// that replaced it stays).
    fn clear(&self, id: u64) {
        if let Ok(mut s) = self.sink.lock() {
            if s.as_ref().is_some_and(|x| x.id == id) {
                *s = None;
                self.on.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// The tap slots of one process's tasks, by component.
#[derive(Default)]
pub struct Taps {
    slots: Mutex<Vec<(String, Arc<TapSlot>)>>,
    /// The id of the last attach.
    attached: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Taps").finish_non_exhaustive()
    }
}

impl Taps {
    /// The slot of a new task of `component`.
    pub(crate) fn slot(&self, component: &str) -> Arc<TapSlot> {
        let slot = Arc::new(TapSlot::default());
        if let Ok(mut s) = self.slots.lock() {
            s.push((component.to_string(), Arc::clone(&slot)));
        }
        slot
    }

    /// Taps every task of `component` here (only `stream` when given) until the returned
    /// [`Tap`] is dropped. A second tap of the same component replaces the first.
    pub fn attach(&self, component: &str, stream: Option<&str>) -> Tap {
        let (tx, rx) = crossbeam_channel::bounded(TAP_CAPACITY);
        let id = self.attached.fetch_add(1, Ordering::Relaxed) + 1;
        let sink = TapSink {
            id,
            stream: stream.map(str::to_string),
            tx,
        };
        let slots: Vec<Arc<TapSlot>> = self
            .slots
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|(c, _)| c == component)
                    .map(|(_, slot)| Arc::clone(slot))
                    .collect()
            })
            .unwrap_or_default();
        for slot in &slots {
            slot.set(sink.clone());
        }
        Tap {
            rx,
            id,
            slots,
            detach: None,
        }
    }
}

/// Attaches taps to one running topology's tasks in this process, from any thread.
#[derive(Clone)]
pub struct TapPoint {
    topology: Arc<Topology>,
    taps: Arc<Taps>,
}

impl std::fmt::Debug for TapPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TapPoint")
            .field("topology", &self.topology.name())
            .finish()
    }
}

impl TapPoint {
    pub(crate) fn new(topology: Arc<Topology>, taps: Arc<Taps>) -> TapPoint {
        TapPoint { topology, taps }
    }

    /// Taps every task of `component` (only `stream` when given) until the returned
    /// [`Tap`] is dropped; an unknown component or stream is an error.
    pub fn attach(&self, component: &str, stream: Option<&str>) -> Result<Tap, TapError> {
        check(&self.topology, component, stream)?;
        Ok(self.taps.attach(component, stream))
    }
}

/// An attached tap: its records arrive on [`Tap::records`]; dropping it detaches it.
pub struct Tap {
    rx: Receiver<TapRecord>,
    /// The attach it is, in its slots' sinks.
    id: u64,
    slots: Vec<Arc<TapSlot>>,
    /// Detaches a tap of tasks in other processes ([`Tap::relayed`]).
    detach: Option<Box<dyn FnOnce() + Send>>,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("tasks", &self.slots.len())
            .finish()
    }
}

impl Tap {
    /// A tap of tasks in other processes: records arrive on `rx`, and `detach` runs when
    /// it is dropped (see [`crate::launcher::relay`]).
    pub fn relayed(rx: Receiver<TapRecord>, detach: impl FnOnce() + Send + 'static) -> Tap {
        Tap {
            rx,
            id: 0,
            slots: Vec::new(),
            detach: Some(Box::new(detach)),
        }
    }

    /// The records, as the tapped tasks emit them.
    pub fn records(&self) -> &Receiver<TapRecord> {
        &self.rx
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        for slot in &self.slots {
            slot.clear(self.id);
        }
        if let Some(detach) = self.detach.take() {
            detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Value;

    #[test]
    fn a_tap_gets_the_emits_of_its_stream_by_field_name_until_dropped() {
        let taps = Taps::default();
        let slot = taps.slot("split");
        let other = taps.slot("count");
        assert!(slot.sink().is_none(), "off until attached");
        let tap = taps.attach("split", Some("default"));
        assert!(other.sink().is_none(), "another component stays off");
        let sink = slot.sink().expect("on");
        let info = StreamInfo::intern("split", "default", &["word".to_string()]);
        let side = StreamInfo::intern("split", "side", &["word".to_string()]);
        let values: Values = vec![Value::from("cow")].into();
        let anchors: Anchors = [(0xab, 0xcd)].into_iter().collect();
        sink.offer(3, info, &values, &anchors);
        sink.offer(3, side, &values, &anchors);
        let got: Vec<TapRecord> = tap.records().try_iter().collect();
        assert_eq!(got.len(), 1, "only the tapped stream");
        assert_eq!(
            serde_json::to_string(&got[0]).expect("json"),
            r#"{"component":"split","stream":"default","task":3,"fields":{"word":"cow"},"anchors":{"00000000000000ab":"00000000000000cd"}}"#
        );
        drop(tap);
        assert!(slot.sink().is_none(), "off once dropped");

        // A tap dropped after a second one replaced it leaves the second attached.
        let first = taps.attach("split", None);
        let second = taps.attach("split", None);
        drop(first);
        let sink = slot.sink().expect("the second tap is still on");
        sink.offer(3, info, &values, &anchors);
        assert_eq!(second.records().try_iter().count(), 1);
    }
}
