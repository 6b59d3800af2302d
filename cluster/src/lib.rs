//! topo's cluster mode: a coordinator and supervisors that run topologies across hosts.
//!
//! A coordinator keeps the cluster's state (supervisors, topologies, assignments) on disk
//! and plans workers onto supervisors; each host runs a supervisor that fetches the
//! topology's executable once, verifies it, and runs its assigned workers. Clients
//! (`topo submit|list|kill|...`) talk to the coordinator. Every control connection is
//! authenticated with the shared cluster secret; nothing runs for a peer that fails.
//!
//! # Layout
//! - [`secret`]: the cluster [`Secret`](secret::Secret) (`--secret-file` or
//!   `TOPO_CLUSTER_SECRET`), [`check_bind`](secret::check_bind) (no secret, loopback only),
//!   per-topology worker keys ([`topology_key`](secret::Secret::topology_key)), which
//!   each supervisor derives for its workers.
//! - [`control`]: authenticated, framed control connections:
//!   [`connect`](control::connect), [`Listener`](control::Listener), [`Conn`](control::Conn).
//! - [`artifacts`]: the content-addressed artifact store (SHA-256), chunked uploads,
//!   verification before execution, transfer counters.
//! - [`archive`]: resource archives (`[topology] resources`): deterministic packing,
//!   checks that refuse hostile entries, unpacking into a work directory.
//! - [`state`]: crash-safe JSON state files ([`save_atomic`](state::save_atomic),
//!   [`save_keeping_previous`](state::save_keeping_previous), [`load`](state::load)).
//! - [`proto`]: the messages on the control connections (client, supervisor, relayed
//!   worker lines).
//! - [`coordinator`]: the coordinator daemon, [`coordinator::serve`] on a listener until
//!   a shutdown signal ([`coordinator::serve_with`] hands a [`coordinator::Handle`] to
//!   what runs beside it: the web UI); inside it `persist` (`state.json`), `machine` (the state
//!   machine), `requests` (client requests) and `conn` (connection tasks).
//!   [`schedule`]: placing workers on supervisors' slots.
//! - [`supervisor`]: the supervisor daemon: fetches binaries, runs and restarts workers.
//! - [`fuzzing`]: entry points for fuzzing control messages and `state.json` loading.
//! - [`client`]: the client side of `submit`, `list`, `kill`, `activate`, `deactivate`,
//!   `rebalance`.
//!
//! # Example
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use topo_cluster::control::{connect, Listener, Role};
//! use topo_cluster::secret::Secret;
//!
//! let rt = tokio::runtime::Runtime::new()?;
//! rt.block_on(async {
//!     let secret = Secret::from_bytes("correct horse battery staple");
//!     let listener = Listener::bind("127.0.0.1:0".parse()?, &secret).await?;
//!     let mut client = connect(listener.local_addr(), &secret, Role::Client).await?;
//!     let (mut server, role, _peer) = listener.accept().await?;
//!     assert_eq!(role, Role::Client);
//!     client.send(&"hello").await?;
//!     assert_eq!(server.recv::<String>().await?, Some("hello".to_string()));
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(()) }
//! ```

pub mod archive;
pub mod artifacts;
pub mod client;
pub mod control;
pub mod coordinator;
pub mod fuzzing;
pub mod proto;
pub mod schedule;
pub mod secret;
pub mod state;
pub mod supervisor;
