//! The checkpoint coordinator of a run in one process: a thread that starts a
//! checkpoint every interval, sends its trigger to the spout tasks and commits it once
//! every task confirmed. (With worker processes, `topo run`'s supervisor coordinates.)

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::route::SpoutMsg;
use crate::state::{Confirm, Coordinator};
use crate::summary::{CheckpointFigures, CheckpointSummary};
use crate::tuple::TaskId;

/// Starts the coordinator thread; it ends when `done` disconnects (every task ended) and
/// returns the figures of the run's checkpoints.
pub(super) fn spawn(
    mut coordinator: Coordinator,
    interval: Duration,
    spouts: Vec<(TaskId, Sender<SpoutMsg>)>,
    confirms: Receiver<Confirm>,
    done: Receiver<()>,
    stop: crate::stop::StopHandle,
    figures: Arc<Mutex<CheckpointFigures>>,
) -> std::io::Result<JoinHandle<CheckpointSummary>> {
    std::thread::Builder::new()
        .name("checkpoints".into())
        .spawn(move || {
            let mut next = Instant::now() + interval;
            let mut triggering = true;
            loop {
                let wait = next.saturating_duration_since(Instant::now());
                crossbeam_channel::select! {
                    recv(confirms) -> c => {
                        if let Ok(c) = c {
                            if coordinator.confirm(c).is_some() {
                                if let Ok(mut f) = figures.lock() {
                                    *f = coordinator.figures();
                                }
                            }
                        }
                    }
                    recv(done) -> d => {
                        if d.is_err() {
                            break;
                        }
                    }
                    default(wait) => {}
                }
                let now = Instant::now();
                if now < next {
                    continue;
                }
                next = now + interval;
                if !triggering || stop.is_stopping() {
                    continue;
                }
                if let Some(id) = coordinator.start(now) {
                    // A spout whose task ended takes no more checkpoints: neither does
                    // the run.
                    if spouts
                        .iter()
                        .any(|(_, s)| s.send(SpoutMsg::Checkpoint(id)).is_err())
                    {
                        coordinator.abandon();
                        triggering = false;
                    }
                }
            }
            // Confirmations that raced the end.
            for c in confirms.try_iter() {
                coordinator.confirm(c);
            }
            coordinator.abandon();
            if let Ok(mut f) = figures.lock() {
                *f = coordinator.figures();
            }
            coordinator.summary()
        })
}
