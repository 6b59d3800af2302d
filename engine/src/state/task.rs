//! A task's side of checkpoints: what it restores at its start, and the writer thread
//! that stores its parts off the task's thread and confirms them to the coordinator.
//!
//! A task snapshots between two inputs (`Bolt::snapshot` serialises its state into a
//! [`TaskState`]: a copy) and hands the result to the writer; writing the part (a file
//! written, synced and renamed) happens on the writer's thread while the task goes on.

use std::time::Duration;

use crossbeam_channel::Sender;

use super::coordinator::Confirm;
use super::store::CheckpointStore;
use super::{TaskState, TaskStateReader};

/// One part to write.
struct Job {
    id: u64,
    component: String,
    index: usize,
    tasks: usize,
    state: Result<TaskState, String>,
    alignment: Duration,
}

/// Writes parts and confirms them, on a thread of its own; the thread ends once every
/// task's handle is dropped.
#[derive(Clone)]
pub(crate) struct PartWriter {
    tx: Sender<Job>,
}

impl PartWriter {
    /// Starts the writer thread: parts go to `store`, confirmations to `confirm`.
    pub(crate) fn start(store: CheckpointStore, confirm: Sender<Confirm>) -> std::io::Result<Self> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        std::thread::Builder::new()
            .name("checkpoint-writer".into())
            .spawn(move || {
                for job in rx {
                    let part = job.state.and_then(|s| {
                        store
                            .write_part(job.id, &job.component, job.index, job.tasks, &s)
                            .map_err(|e| e.to_string())
                    });
                    let _ = confirm.send(Confirm {
                        id: job.id,
                        part,
                        alignment_secs: job.alignment.as_secs_f64(),
                    });
                }
            })?;
        Ok(PartWriter { tx })
    }
}

/// What one task of a checkpointed topology gets: the state it restores, and where its
/// parts go.
pub(crate) struct TaskCheckpoint {
    pub(crate) component: String,
    pub(crate) index: usize,
    pub(crate) tasks: usize,
    pub(crate) writer: PartWriter,
    /// The state of the checkpoint the run resumes from (`None`: a fresh start).
    pub(crate) restore: Option<TaskStateReader>,
}

impl TaskCheckpoint {
    /// Hands the task's part of checkpoint `id` (or why it has none) to the writer.
    pub(crate) fn submit(&self, id: u64, state: Result<TaskState, String>, alignment: Duration) {
        let _ = self.writer.tx.send(Job {
            id,
            component: self.component.clone(),
            index: self.index,
            tasks: self.tasks,
            state,
            alignment,
        });
    }
}
