//! One peer's connection driver: dial or await the connection, run it, reconnect.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::counters::{CloseReason, Counters};
use super::frame::{Frame, FrameError, RawCodec};
use super::handshake::{self, Identity, Reader, Writer};
use super::link::{data_cost, CreditGrant, CreditReturn, Deliver, Delivery, Link};
use super::TransportConfig;

/// An authenticated connection, ready to carry frames.
#[derive(Debug)]
pub(crate) struct Established {
    pub(crate) peer: u32,
    pub(crate) addr: SocketAddr,
    pub(crate) reader: Reader<OwnedReadHalf>,
    pub(crate) writer: Writer<OwnedWriteHalf>,
}

/// Splits a fresh socket into halves framed for the handshake (small flights only).
pub(crate) fn framed(
    stream: TcpStream,
) -> (
    FramedRead<OwnedReadHalf, RawCodec>,
    FramedWrite<OwnedWriteHalf, RawCodec>,
) {
    // Small frames go out at once; batching is done by the writer's flush policy.
    let _ = stream.set_nodelay(true);
    let (r, w) = stream.into_split();
    handshake::framed(r, w)
}

/// A peer's address, which changes when the peer restarts on another port.
#[derive(Debug)]
pub(crate) struct PeerAddr {
    addr: std::sync::Mutex<SocketAddr>,
    changed: tokio::sync::Notify,
}

impl PeerAddr {
    pub(crate) fn new(addr: SocketAddr) -> Arc<PeerAddr> {
        Arc::new(PeerAddr {
            addr: std::sync::Mutex::new(addr),
            changed: tokio::sync::Notify::new(),
        })
    }

    pub(crate) fn get(&self) -> SocketAddr {
        *self
            .addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set(&self, addr: SocketAddr) {
        *self
            .addr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = addr;
        self.changed.notify_one();
    }
}

/// Everything a peer's driver needs.
pub(crate) struct PeerTask {
    pub(crate) peer: u32,
    /// The peer's address; the runtime may change it (the peer restarted elsewhere).
    pub(crate) addr: Arc<PeerAddr>,
    pub(crate) config: Arc<TransportConfig>,
    pub(crate) identity: Identity,
    pub(crate) link: Arc<Link>,
    pub(crate) queue: mpsc::Receiver<Frame>,
    /// Acker and control frames: unbounded, written ahead of data.
    pub(crate) urgent: mpsc::UnboundedReceiver<Frame>,
    /// Connections the listener accepted and authenticated from this peer (acceptor side).
    pub(crate) incoming: mpsc::Receiver<Established>,
    pub(crate) inbound: Arc<dyn Deliver>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) shutdown: CancellationToken,
}

/// Why a dial attempt failed.
enum Dial {
    /// No TCP connection (the peer is not listening yet, or gone): logged by the caller.
    Unreachable(String),
    /// The handshake failed: already logged and counted.
    Refused,
}

enum End {
    /// Shutdown or Goodbye: nothing to count.
    Clean,
    /// The transport is shutting down.
    Shutdown,
    /// A newer connection from the peer replaces this one.
    Replaced(Box<Established>),
    /// Something went wrong; counted and logged.
    Failed(CloseReason, String),
}

impl PeerTask {
    fn dials(&self) -> bool {
        self.config.worker < self.peer
    }

    /// Runs until shutdown: keeps one authenticated connection to the peer up.
    pub(crate) async fn run(mut self) {
        let mut backoff = self.config.connect_backoff.0;
        let mut failures = 0u32;
        let mut next: Option<Established> = None;
        loop {
            let conn = match next.take() {
                Some(conn) => conn,
                None if self.dials() => {
                    let attempt = tokio::select! {
                        _ = self.shutdown.cancelled() => break,
                        r = self.dial() => r,
                    };
                    match attempt {
                        Ok(conn) => conn,
                        Err(e) => {
                            failures += 1;
                            if let Dial::Unreachable(e) = e {
                                if failures == 1 {
                                    info!(peer = self.peer, addr = %self.addr.get(), error = %e, "Cannot reach worker, retrying.");
                                } else {
                                    debug!(peer = self.peer, addr = %self.addr.get(), error = %e, failures, "Cannot reach worker, retrying.");
                                }
                            }
                            tokio::select! {
                                _ = self.shutdown.cancelled() => break,
                                _ = tokio::time::sleep(backoff) => {}
                                // A new address: dial it now, from the shortest backoff.
                                _ = self.addr.changed.notified() => {
                                    backoff = self.config.connect_backoff.0;
                                    continue;
                                }
                            }
                            backoff = (backoff * 2).min(self.config.connect_backoff.1);
                            continue;
                        }
                    }
                }
                None => tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    conn = self.incoming.recv() => match conn {
                        Some(conn) => conn,
                        None => break,
                    },
                },
            };
            failures = 0;
            let started = tokio::time::Instant::now();
            match self.serve(conn).await {
                End::Shutdown => break,
                End::Replaced(conn) => next = Some(*conn),
                End::Clean | End::Failed(..) => {
                    // A connection that failed soon after it was made backs off before the
                    // next dial, so a peer that keeps closing us is not redialed in a loop.
                    if started.elapsed() >= self.config.connect_backoff.1 {
                        backoff = self.config.connect_backoff.0;
                    } else if self.dials() {
                        tokio::select! {
                            _ = self.shutdown.cancelled() => break,
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(self.config.connect_backoff.1);
                    }
                }
            }
        }
        self.link.close();
        self.queue.close();
        self.urgent.close();
    }

    /// Dials the peer and runs the handshake, within the handshake timeout.
    async fn dial(&self) -> Result<Established, Dial> {
        let stream = tokio::time::timeout(
            self.config.handshake_timeout,
            TcpStream::connect(self.addr.get()),
        )
        .await
        .map_err(|_| Dial::Unreachable("connect timed out".into()))?
        .map_err(|e| Dial::Unreachable(e.to_string()))?;
        let (mut reader, mut writer) = framed(stream);
        let deadline = tokio::time::Instant::now() + self.config.handshake_timeout;
        let result = handshake::dial(
            &self.identity,
            self.peer,
            &mut reader,
            &mut writer,
            Some(deadline),
        )
        .await;
        match result {
            Ok(session) => {
                self.counters.count_authenticated();
                let (reader, writer) =
                    handshake::upgrade(reader, writer, session, self.config.max_frame_len);
                Ok(Established {
                    peer: self.peer,
                    addr: self.addr.get(),
                    reader,
                    writer,
                })
            }
            Err(e) => {
                let reason = CloseReason::from(&e);
                self.counters.count_closed(reason);
                self.link.counters.count_handshake_failure();
                warn!(peer = self.peer, addr = %self.addr.get(), %reason, error = %e, "Handshake with worker failed; connection closed.");
                Err(Dial::Refused)
            }
        }
    }

    /// Carries frames over one connection until it ends.
    async fn serve(&mut self, conn: Established) -> End {
        let Established {
            peer,
            addr,
            reader,
            mut writer,
        } = conn;
        // Frames queued while disconnected were refused; drop leftovers of the last
        // connection, which the restarted peer would not know what to do with.
        self.drop_queued();
        let window = self.config.credit_window;
        let owed = CreditReturn::new(window);
        self.link.set_connected(window);
        self.link.counters.count_connect();
        info!(peer, %addr, "Worker connected.");
        self.inbound.deliver(Delivery::PeerUp { peer });

        let mut read = tokio::spawn(read_loop(
            peer,
            reader,
            self.link.clone(),
            owed.clone(),
            self.inbound.clone(),
            self.config.peer_timeout,
        ));
        let mut heartbeat = tokio::time::interval(self.config.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        heartbeat.tick().await;
        let mut idle = true;
        let dials = self.dials();
        let mut read_done = false;
        let end = loop {
            let step = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => {
                    // Write what is already queued, then say Goodbye; give up after a second.
                    let mut last = Vec::new();
                    while let Ok(f) = self.urgent.try_recv() {
                        last.push(f);
                    }
                    while let Ok(f) = self.queue.try_recv() {
                        last.push(f);
                    }
                    last.push(Frame::Goodbye);
                    let counters = &self.link.counters;
                    let bye = async {
                        for frame in last {
                            let payload = payload_len(&frame);
                            writer.feed(frame).await?;
                            counters.count_out(payload);
                        }
                        writer.flush().await
                    };
                    let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
                    break End::Shutdown;
                }
                r = &mut read => {
                    read_done = true;
                    break match r {
                        Ok(end) => end,
                        Err(e) => End::Failed(CloseReason::Io, e.to_string()),
                    };
                }
                conn = self.incoming.recv(), if !dials => match conn {
                    Some(conn) => break End::Replaced(Box::new(conn)),
                    None => break End::Shutdown,
                },
                _ = owed.ready.notified() => {
                    let bytes = owed.take();
                    if bytes == 0 {
                        continue;
                    }
                    self.write(&mut writer, vec![Frame::Credit { bytes }]).await.map(|()| true)
                }
                frame = self.urgent.recv() => {
                    let Some(frame) = frame else { break End::Shutdown };
                    let mut batch = vec![frame];
                    while batch.len() < 256 {
                        match self.urgent.try_recv() {
                            Ok(f) => batch.push(f),
                            Err(_) => break,
                        }
                    }
                    self.write(&mut writer, batch).await.map(|()| true)
                }
                frame = self.queue.recv() => {
                    let Some(frame) = frame else { break End::Shutdown };
                    // Batch what is already queued into one write; flush when it is empty.
                    let mut batch = vec![frame];
                    while batch.len() < 256 {
                        match self.queue.try_recv() {
                            Ok(f) => batch.push(f),
                            Err(_) => break,
                        }
                    }
                    self.write(&mut writer, batch).await.map(|()| true)
                }
                _ = heartbeat.tick() => {
                    // Heartbeat only a connection that wrote nothing for a whole interval.
                    if std::mem::replace(&mut idle, true) {
                        self.write(&mut writer, vec![Frame::Heartbeat]).await.map(|()| false)
                    } else {
                        Ok(false)
                    }
                }
            };
            match step {
                Ok(true) => idle = false,
                Ok(false) => {}
                Err(end) => break end,
            }
        };
        if !read_done {
            // Wait for the reader to stop, so nothing it read follows our PeerDown.
            read.abort();
            let _ = read.await;
        }
        self.link.set_disconnected();
        self.drop_queued();
        self.link.counters.count_disconnect();
        match &end {
            End::Failed(reason, error) => {
                self.counters.count_closed(*reason);
                self.link.counters.count_fault();
                warn!(peer, %addr, %reason, %error, "Connection to worker closed.");
            }
            End::Replaced(_) => {
                self.counters.count_closed(CloseReason::Replaced);
                info!(peer, %addr, "Worker reconnected; old connection closed.");
            }
            End::Clean | End::Shutdown => info!(peer, %addr, "Worker disconnected."),
        }
        self.inbound.deliver(Delivery::PeerDown { peer });
        end
    }

    async fn write(
        &self,
        writer: &mut Writer<OwnedWriteHalf>,
        batch: Vec<Frame>,
    ) -> Result<(), End> {
        let counters = &self.link.counters;
        let io = async {
            for frame in batch {
                let payload = payload_len(&frame);
                writer.feed(frame).await?;
                counters.count_out(payload);
            }
            writer.flush().await
        };
        let result: Result<(), FrameError> = tokio::select! {
            r = io => r,
            _ = self.shutdown.cancelled() => return Err(End::Shutdown),
        };
        result.map_err(|e| End::Failed(CloseReason::from(&e), e.to_string()))
    }

    fn drop_queued(&mut self) {
        let mut n = 0;
        while self.urgent.try_recv().is_ok() {
            n += 1;
        }
        while self.queue.try_recv().is_ok() {
            n += 1;
        }
        if n > 0 {
            self.link.counters.count_dropped(n);
            debug!(
                peer = self.peer,
                frames = n,
                "Dropped frames queued for a closed connection."
            );
        }
    }
}

/// Bytes of runtime payload a frame carries, for the traffic counters.
fn payload_len(frame: &Frame) -> usize {
    match frame {
        Frame::Data { payload, .. }
        | Frame::Acker { payload, .. }
        | Frame::Control { payload, .. } => payload.len(),
        _ => 0,
    }
}

async fn read_loop(
    peer: u32,
    mut reader: Reader<OwnedReadHalf>,
    link: Arc<Link>,
    owed: Arc<CreditReturn>,
    inbound: Arc<dyn Deliver>,
    peer_timeout: Duration,
) -> End {
    let counters = link.counters.clone();
    loop {
        let frame = match tokio::time::timeout(peer_timeout, reader.next()).await {
            Err(_) => {
                return End::Failed(
                    CloseReason::PeerTimeout,
                    format!("no frame for {peer_timeout:?}"),
                )
            }
            Ok(None) => return End::Failed(CloseReason::Dropped, "closed without Goodbye".into()),
            Ok(Some(Err(e))) => return End::Failed(CloseReason::from(&e), e.to_string()),
            Ok(Some(Ok(frame))) => frame,
        };
        let delivered = match frame {
            Frame::Data { dest_task, payload } => {
                counters.count_in(payload.len());
                let grant = CreditGrant::new(owed.clone(), data_cost(payload.len()));
                inbound.deliver(Delivery::Data {
                    from: peer,
                    dest_task,
                    payload,
                    grant,
                })
            }
            Frame::Acker { dest_task, payload } => {
                counters.count_in(payload.len());
                inbound.deliver(Delivery::Acker {
                    from: peer,
                    dest_task,
                    payload,
                })
            }
            Frame::Control { dest_task, payload } => {
                counters.count_in(payload.len());
                inbound.deliver(Delivery::Control {
                    from: peer,
                    dest_task,
                    payload,
                })
            }
            Frame::Credit { bytes } => {
                counters.count_in(0);
                link.add_credit(bytes);
                true
            }
            Frame::Heartbeat => {
                counters.count_in(0);
                true
            }
            Frame::Goodbye => return End::Clean,
        };
        if !delivered {
            // The runtime dropped its receiver: it is shutting down.
            return End::Shutdown;
        }
    }
}
