//! The bridge between a worker's runtime and the transport: the one path a tuple, an
//! acker message or a spout message takes to and from a task of another worker.
//!
//! ```text
//! executor --Route::Remote--> outbound::Remote --wire::encode--> transport (frames)
//!     transport --Deliver--> inbound::Dispatcher --+--> inbox::RemoteIn (a bolt's remote
//!                                                  |    inbox, decoded on its thread)
//!                                                  +--> acker / spout inboxes (decoded here)
//!                                                  +--> grants, load reports (this worker)
//! ```
//!
//! # Layout
//! - `outbound`: the runtime's senders to tasks of other workers (per-task flow-control
//!   windows, waiting out a restarting peer, the ends of streams remembered and sent
//!   again);
//! - `inbound`: [`Dispatcher`], which hands what peers send to the local tasks on the
//!   transport's I/O thread (data batches still encoded: each task decodes its own);
//! - `inbox`: a bolt task's inbox of encoded batches from other workers, decoded a chunk
//!   at a time on the task's own thread and granted back to their senders.
//!
//! The bridge imports the runtime's types (routes, inboxes, the plan, the wire codecs)
//! and the transport, never the runtime or the executors: `launcher::worker::start`
//! plugs the two together.

mod inbound;
pub(crate) mod inbox;
pub(crate) mod outbound;

pub use inbound::Dispatcher;
