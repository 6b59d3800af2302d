//! `tcp_lines`: listens on a TCP address; every line a client sends is a tuple, field `line`.
//!
//! The socket is polled without blocking on the executor thread, so no thread is left
//! behind when the task stops. With parallelism p, task k listens on port + k (port 0:
//! every task gets its own ephemeral port). `connections = n` makes the spout finish
//! after n clients have sent something and closed, for bounded runs; by default it never
//! ends. A connection that closes without sending a byte (a port scanner, a health check)
//! does not count.
//!
//! Bounded against hostile clients: a line longer than `max_line_bytes` is dropped (and
//! counted, the first one logged) without being buffered; at most `max_clients` are
//! connected (a new one then takes the place of the one idle longest); a client silent
//! for `idle_timeout_secs` is closed; each byte is scanned for a newline once; and when
//! the process runs out of file descriptors, accepting pauses while the clients already
//! connected are still served.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::{MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext};

use crate::replay::Replay;

/// Config of `tcp_lines`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on, e.g. `"127.0.0.1:7000"`.
    pub listen: SocketAddr,
    /// Finish after this many clients have sent something and closed; never when absent.
    pub connections: Option<u64>,
    /// Longest line kept, in bytes (default 1 MiB); longer ones are dropped.
    #[serde(default = "default_max_line")]
    pub max_line_bytes: usize,
    /// Most clients connected at once (default 1024).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
    /// A client that sends nothing for this long is closed (default 300; 0: never).
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
}

fn default_max_line() -> usize {
    Limits::default().max_line
}

fn default_max_clients() -> usize {
    Limits::default().max_clients
}

fn default_idle() -> u64 {
    300
}

/// The bounds of a [`LineServer`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest line kept, in bytes.
    pub max_line: usize,
    /// Most clients at once.
    pub max_clients: usize,
    /// Silence after which a client is closed.
    pub idle_timeout: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: 1 << 20,
            max_clients: 1024,
            idle_timeout: Some(Duration::from_secs(300)),
        }
    }
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    /// Dropping the rest of an over-long line, up to its newline.
    skipping: bool,
    /// It sent at least one byte.
    spoke: bool,
    last_active: Instant,
}

/// A non-blocking line server: accepts clients and splits what they send into lines.
pub struct LineServer {
    listener: TcpListener,
    clients: Vec<Client>,
    closed: u64,
    limits: Limits,
    dropped: u64,
    accept_errors: u64,
    evicted: u64,
}

impl std::fmt::Debug for LineServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineServer")
            .field("listener", &self.listener)
            .field("clients", &self.clients.len())
            .field("closed", &self.closed)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl LineServer {
    /// Listens on `addr` with the default [`Limits`].
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        Self::with_limits(addr, Limits::default())
    }

    /// Listens on `addr` with `limits`.
    pub fn with_limits(addr: SocketAddr, limits: Limits) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("`tcp_lines` cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        Ok(LineServer {
            listener,
            clients: Vec::new(),
            closed: 0,
            limits,
            dropped: 0,
            accept_errors: 0,
            evicted: 0,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Clients that sent something and closed, so far (what `connections` counts).
    pub fn closed(&self) -> u64 {
        self.closed
    }

    /// Over-long lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.clients.len() >= self.limits.max_clients.max(1) {
                        // Full: the client silent longest makes room.
                        if let Some(i) =
                            (0..self.clients.len()).min_by_key(|&i| self.clients[i].last_active)
                        {
                            self.clients.swap_remove(i);
                            self.evicted += 1;
                            if self.evicted.is_power_of_two() {
                                tracing::warn!(
                                    evicted = self.evicted,
                                    max_clients = self.limits.max_clients,
                                    "`tcp_lines` is full; closed the client idle longest."
                                );
                            }
                        }
                    }
                    self.clients.push(Client {
                        stream,
                        buf: Vec::new(),
                        scanned: 0,
                        skipping: false,
                        spoke: false,
                        last_active: Instant::now(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of file descriptors (EMFILE, ENFILE), or a connection reset
                    // before it was accepted: stop accepting for this poll and serve the
                    // clients already connected.
                    self.accept_errors += 1;
                    if self.accept_errors.is_power_of_two() {
                        tracing::warn!(
                            errors = self.accept_errors,
                            "`tcp_lines` cannot accept a connection: {e}"
                        );
                    }
                    return;
                }
            }
        }
    }

    /// Accepts waiting clients and appends every complete line received to `lines`.
    pub fn poll(&mut self, lines: &mut Vec<String>) -> std::io::Result<()> {
        self.accept();
        let now = Instant::now();
        let max_line = self.limits.max_line;
        let mut chunk = [0u8; 8192];
        let mut i = 0;
        while i < self.clients.len() {
            let client = &mut self.clients[i];
            let mut open = true;
            // Read at most a few chunks per client per poll, so one fast client cannot
            // starve the others (or grow the buffer past the line bound unchecked).
            for _ in 0..16 {
                match client.stream.read(&mut chunk) {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(n) => {
                        client.spoke = true;
                        client.last_active = now;
                        take(client, &chunk[..n], max_line, lines, &mut self.dropped);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            }
            let idle = self
                .limits
                .idle_timeout
                .is_some_and(|t| now.duration_since(client.last_active) >= t);
            if open && !idle {
                i += 1;
            } else {
                if !client.buf.is_empty() && !client.skipping {
                    lines.push(decode(&client.buf));
                }
                if client.spoke {
                    self.closed += 1;
                }
                self.clients.swap_remove(i);
            }
        }
        Ok(())
    }
}

/// Appends `data` to a client's buffer and moves its complete lines to `lines`; each byte
/// is scanned once. A line over `max_line` bytes is dropped as it arrives.
fn take(
    client: &mut Client,
    data: &[u8],
    max_line: usize,
    lines: &mut Vec<String>,
    dropped: &mut u64,
) {
    let mut data = data;
    if client.skipping {
        match data.iter().position(|&b| b == b'\n') {
            Some(pos) => {
                client.skipping = false;
                data = &data[pos + 1..];
            }
            None => return,
        }
    }
    client.buf.extend_from_slice(data);
    let mut start = 0;
    while let Some(pos) = client.buf[client.scanned..]
        .iter()
        .position(|&b| b == b'\n')
    {
        let end = client.scanned + pos;
        if end - start > max_line {
            over_long(dropped);
        } else {
            lines.push(decode(&client.buf[start..end]));
        }
        start = end + 1;
        client.scanned = start;
    }
    client.buf.drain(..start);
    client.scanned = client.buf.len();
    if client.buf.len() > max_line {
        over_long(dropped);
        client.buf = Vec::new();
        client.scanned = 0;
        client.skipping = true;
    }
}

fn over_long(dropped: &mut u64) {
    *dropped += 1;
    if *dropped == 1 {
        tracing::warn!("`tcp_lines` dropped a line longer than `max_line_bytes` (further ones are only counted).");
    }
}

fn decode(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// The spout.
#[derive(Debug)]
pub struct TcpLines {
    config: Config,
    server: Option<LineServer>,
    received: std::collections::VecDeque<String>,
    scratch: Vec<String>,
    next_id: MsgId,
    replay: Replay,
}

impl Spout for TcpLines {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        let mut addr = self.config.listen;
        if addr.port() != 0 {
            let port = u16::try_from(usize::from(addr.port()) + ctx.task_index).map_err(|_| {
                format!(
                    "`tcp_lines` task {} has no port past {addr}",
                    ctx.task_index
                )
            })?;
            addr.set_port(port);
        }
        let limits = Limits {
            max_line: self.config.max_line_bytes,
            max_clients: self.config.max_clients,
            idle_timeout: (self.config.idle_timeout_secs > 0)
                .then(|| Duration::from_secs(self.config.idle_timeout_secs)),
        };
        let server = LineServer::with_limits(addr, limits)?;
        if let Ok(bound) = server.local_addr() {
            tracing::info!(component = %ctx.component, task = ctx.task, %bound, "Listening for lines.");
        }
        self.server = Some(server);
        self.replay = Replay::new(ctx.topology.settings().acking);
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        if let Some((id, line)) = self.replay.next() {
            out.emit_id(id, [line]);
            return Ok(Poll::Ready);
        }
        let Some(server) = self.server.as_mut() else {
            return Ok(Poll::Done);
        };
        if self.received.is_empty() {
            server.poll(&mut self.scratch)?;
            self.received.extend(self.scratch.drain(..));
        }
        match self.received.pop_front() {
            Some(line) => {
                self.next_id += 1;
                out.emit_id(self.next_id, [line.as_str()]);
                self.replay.sent(self.next_id, &line);
                Ok(Poll::Ready)
            }
            None if self
                .config
                .connections
                .is_some_and(|n| server.closed() >= n) =>
            {
                Ok(Poll::Done)
            }
            None => Ok(Poll::Idle),
        }
    }

    fn ack(&mut self, id: MsgId) {
        self.replay.ack(id);
    }

    fn fail(&mut self, id: MsgId) {
        self.replay.fail(id);
    }

    fn close(&mut self) {
        if let Some(s) = self.server.take() {
            if s.dropped() > 0 {
                tracing::warn!(
                    dropped = s.dropped(),
                    "`tcp_lines` dropped over-long lines."
                );
            }
        }
    }
}

/// Registers `tcp_lines`.
pub fn register(registry: &mut Registry) {
    registry.spout(
        "tcp_lines",
        "Listens on `listen`; every line a client sends is a tuple (field `line`); `connections` bounds the run; lines, clients and idle time are bounded.",
        |_: &Config| vec![StreamDecl::default_stream(["line"])],
        |config: Config| {
            Ok(TcpLines {
                config,
                server: None,
                received: Default::default(),
                scratch: Vec::new(),
                next_id: 0,
                replay: Replay::new(true),
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn lines_from_every_client_arrive_and_closes_are_counted() {
        let mut server = LineServer::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = server.local_addr().expect("addr");
        let mut a = TcpStream::connect(addr).expect("connect");
        a.write_all(b"one\r\ntwo\nthr").expect("write");
        drop(a);
        let mut lines = Vec::new();
        // The server polls without blocking; poll until the closed client is seen.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while server.closed() < 1 && std::time::Instant::now() < deadline {
            server.poll(&mut lines).expect("poll");
        }
        assert_eq!(lines, ["one", "two", "thr"]);
    }

    #[test]
    fn a_taken_address_is_named_in_the_error() {
        let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr");
        let err = LineServer::bind(addr).expect_err("address in use");
        assert!(
            err.to_string()
                .starts_with(&format!("`tcp_lines` cannot listen on {addr}: ")),
            "{err}"
        );
    }
}
