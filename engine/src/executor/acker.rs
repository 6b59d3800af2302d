//! The acker executor: applies acker messages, tells spout tasks about their trees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use crate::acker::{Acker, Outcome};
use crate::route::{AckerIn, Route, SpoutMsg};
use crate::summary::{Counts, SharedCounts};
use crate::tuple::TaskId;

/// Everything an acker task runs with.
pub(crate) struct AckerExecutor {
    pub(crate) task: TaskId,
    pub(crate) inbox: Receiver<AckerIn>,
    /// Spout control routes by task id.
    pub(crate) spouts: Vec<Option<Route<SpoutMsg>>>,
    /// How often the oldest bucket of pending trees is dropped.
    pub(crate) rotate_every: Duration,
    pub(crate) shared: Arc<SharedCounts>,
}

impl AckerExecutor {
    /// Runs until told to stop; returns its counts.
    pub(crate) fn run(self) -> Counts {
        let mut acker = Acker::default();
        let mut counts = Counts::default();
        let mut next_rotate = Instant::now() + self.rotate_every;
        let mut published = Instant::now();
        // Per spout task: (acked roots, failed roots) of the current batch.
        let mut out: Vec<(Vec<u64>, Vec<u64>)> = vec![Default::default(); self.spouts.len()];
        // The spout tasks with something in `out`.
        let mut touched: Vec<TaskId> = Vec::new();
        loop {
            match self.inbox.recv_deadline(next_rotate) {
                Ok(AckerIn::Batch(msgs)) => {
                    for m in msgs {
                        counts.executed += 1;
                        match acker.apply(m) {
                            Some(Outcome::Acked { spout, root }) => {
                                counts.acked += 1;
                                if let Some(o) = out.get_mut(spout as usize) {
                                    if o.0.is_empty() && o.1.is_empty() {
                                        touched.push(spout);
                                    }
                                    o.0.push(root);
                                }
                            }
                            Some(Outcome::Failed { spout, root }) => {
                                counts.failed += 1;
                                counts.failed_by.explicit += 1;
                                if let Some(o) = out.get_mut(spout as usize) {
                                    if o.0.is_empty() && o.1.is_empty() {
                                        touched.push(spout);
                                    }
                                    o.1.push(root);
                                }
                            }
                            None => {}
                        }
                    }
                    for task in touched.drain(..) {
                        let (acked, failed) = &mut out[task as usize];
                        let Some(route) = self.spouts.get(task as usize).and_then(Option::as_ref)
                        else {
                            acked.clear();
                            failed.clear();
                            continue;
                        };
                        if !acked.is_empty() {
                            let _ = route.send(task, SpoutMsg::Acked(std::mem::take(acked)));
                        }
                        if !failed.is_empty() {
                            let _ = route.send(task, SpoutMsg::Failed(std::mem::take(failed)));
                        }
                    }
                }
                Ok(AckerIn::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if now.saturating_duration_since(published) >= crate::metrics::PUBLISH_EVERY {
                self.shared.publish(&counts);
                published = now;
            }
            if now >= next_rotate {
                let dropped = acker.rotate();
                if dropped > 0 {
                    tracing::debug!(task = self.task, dropped, "Acker dropped stale trees.");
                }
                next_rotate = now + self.rotate_every;
                self.shared.publish(&counts);
            }
        }
        self.shared.publish(&counts);
        counts
    }
}
