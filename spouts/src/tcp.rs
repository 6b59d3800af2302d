//! `tcp_lines`: listens on a TCP address; every line a client sends is a tuple, field `line`.
//!
//! The socket is polled without blocking on the executor thread, so no thread is left
//! behind when the task stops. With parallelism p, task k listens on port + k (port 0:
//! every task gets its own ephemeral port). `connections = n` makes the spout finish
//! after n clients have connected and closed, for bounded runs; by default it never ends.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};

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
    /// Finish after this many connections have closed; never when absent.
    pub connections: Option<u64>,
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// A non-blocking line server: accepts clients and splits what they send into lines.
pub struct LineServer {
    listener: TcpListener,
    clients: Vec<Client>,
    closed: u64,
}

impl std::fmt::Debug for LineServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineServer")
            .field("listener", &self.listener)
            .field("clients", &self.clients.len())
            .field("closed", &self.closed)
            .finish()
    }
}

impl LineServer {
    /// Listens on `addr`.
    pub fn bind(addr: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind(addr)
            .map_err(|e| format!("`tcp_lines` cannot listen on {addr}: {e}"))?;
        listener.set_nonblocking(true)?;
        Ok(LineServer {
            listener,
            clients: Vec::new(),
            closed: 0,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Connections closed so far.
    pub fn closed(&self) -> u64 {
        self.closed
    }

    /// Accepts waiting clients and appends every complete line received to `lines`.
    pub fn poll(&mut self, lines: &mut Vec<String>) -> std::io::Result<()> {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(true)?;
                    self.clients.push(Client {
                        stream,
                        buf: Vec::new(),
                    });
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        let mut chunk = [0u8; 8192];
        let mut i = 0;
        while i < self.clients.len() {
            let client = &mut self.clients[i];
            let mut open = true;
            loop {
                match client.stream.read(&mut chunk) {
                    Ok(0) => {
                        open = false;
                        break;
                    }
                    Ok(n) => client.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => {
                        open = false;
                        break;
                    }
                }
            }
            let mut start = 0;
            while let Some(pos) = client.buf[start..].iter().position(|&b| b == b'\n') {
                lines.push(decode(&client.buf[start..start + pos]));
                start += pos + 1;
            }
            client.buf.drain(..start);
            if open {
                i += 1;
            } else {
                if !client.buf.is_empty() {
                    lines.push(decode(&client.buf));
                }
                self.clients.swap_remove(i);
                self.closed += 1;
            }
        }
        Ok(())
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
        let server = LineServer::bind(addr)?;
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
        self.server = None;
    }
}

/// Registers `tcp_lines`.
pub fn register(registry: &mut Registry) {
    registry.spout(
        "tcp_lines",
        "Listens on `listen`; every line a client sends is a tuple (field `line`); `connections` bounds the run.",
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
