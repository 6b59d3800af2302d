//! Stopping a running topology from any thread: [`StopHandle`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::route::SpoutMsg;
use crate::tuple::TaskId;

/// Stops a running topology from any thread: spouts are deactivated, pending trees drain
/// (bounded by the message timeout), then the streams end.
#[derive(Clone, Debug)]
pub struct StopHandle {
    spouts: Arc<Vec<(TaskId, Sender<SpoutMsg>)>>,
    stopped: Arc<AtomicBool>,
}

impl StopHandle {
    /// A handle over these spout tasks' control inboxes.
    pub(crate) fn new(spouts: Vec<(TaskId, Sender<SpoutMsg>)>) -> StopHandle {
        StopHandle {
            spouts: Arc::new(spouts),
            stopped: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The spout tasks' control inboxes.
    pub(crate) fn spouts(&self) -> &[(TaskId, Sender<SpoutMsg>)] {
        &self.spouts
    }

    /// Starts stopping; returns at once. Calling it again does nothing.
    pub fn stop(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        for (_, s) in self.spouts.iter() {
            let _ = s.send(SpoutMsg::Stop);
        }
    }

    /// True once [`StopHandle::stop`] was called.
    pub fn is_stopping(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    /// Deactivates every spout: `next_tuple` is not called until [`StopHandle::activate`].
    pub fn deactivate(&self) {
        for (_, s) in self.spouts.iter() {
            let _ = s.send(SpoutMsg::Deactivate);
        }
    }

    /// Activates every spout again.
    pub fn activate(&self) {
        for (_, s) in self.spouts.iter() {
            let _ = s.send(SpoutMsg::Activate);
        }
    }
}
