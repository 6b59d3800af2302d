//! topo's HTTP server: the web UI, the JSON API (`/api/v1/…`) and Prometheus `/metrics`,
//! on one port, for `topo run --ui` / `--metrics-addr` and `topo coordinator --ui`.
//!
//! Only the supervising process (or the coordinator) serves HTTP: workers report
//! snapshots to it and never link this crate's code paths, and the engine crate stays
//! free of a web stack.
//!
//! # Layout
//! - [`api`]: the JSON documents, shared by the server and its clients.
//! - [`board`]: the [`Board`](board::Board), which turns worker snapshots into those
//!   documents (rates, 1 min / 10 min / whole-run tables, workers, failures, plan).
//! - [`server`]: the axum router and the server ([`serve`](server::serve)): a deadline
//!   per request, several clients at once, prompt shutdown.
//! - [`tap`]: the streaming endpoint of `topo tap`, a live sample of a component's
//!   tuples, from tasks in this process or relayed from worker processes.
//! - `ui` (private): the page's assets, compiled in.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use topo_web::board::Board;
//! use topo_web::server::{router, serve, App};
//!
//! let board = Arc::new(Board::new("run", false));
//! let app = App { board, metrics: None, actions: None };
//! let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
//! let server = serve(listener, router(app)).unwrap();
//! println!("serving at http://{}/", server.local_addr());
//! server.shutdown();
//! ```

pub mod api;
pub mod board;
pub mod server;
pub mod tap;
mod ui;
