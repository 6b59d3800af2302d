//! The `redis_stream` spout without checkpoints: one consumer of a consumer group; with
//! acking on, an acked tree is XACKed and a failed one emitted again.
//!
//! Parallelism p makes p consumers of the group. Each task reads from its executor thread
//! over one connection, one pipeline per batch: the XACKs of the trees acked since the
//! last one go first, then the read (`XREADGROUP ... COUNT batch`). The pipeline for the
//! next batch goes out when the task emits the first entry of a batch, and its replies
//! are read once that batch is emitted, so Redis serves a read while the task emits. After every
//! (re)connection a task first reads its own pending entries (id `0`), so a task that
//! restarted, or whose read reply was lost with a connection, emits them again.
//! Entries pending at a consumer that went away (a worker killed, a task moved) are
//! claimed by live consumers with XAUTOCLAIM once idle for `claim_idle_ms`. With acking
//! off the reads use NOACK: an entry is delivered at most once.
//!
//! The task's read position is explicit ([`RedisStream::position`]): the id of the last
//! entry it read from the group.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::time::{Duration, Instant};

use redis::Value as Reply;
use topo_engine::{MsgId, Poll, Result, Spout, SpoutOutput, TaskContext, Values};

use super::{entry_values, last_entry_id, split_entry, stream_entries, Config, EntryId, Start};
use crate::link::{is_transient, Link};

struct Inflight {
    id: EntryId,
    values: Values,
}

/// What a read asked for, to know how to take its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    /// New entries (`>`).
    New,
    /// This consumer's own pending entries after a cursor.
    History,
    /// XAUTOCLAIM.
    Claim,
    /// XPENDING up to the end (stop_at_end).
    EndCheck,
}

/// A pipeline sent and not answered yet.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// The read it ends with, if any.
    read: Option<Read>,
    /// How many of `to_ack` its XACK carries (the first ones).
    acks: usize,
    /// How many replies it gets.
    replies: usize,
}

/// The spout.
pub struct RedisStream {
    config: Config,
    what: String,
    link: Option<Link>,
    consumer: String,
    acking: bool,
    next_msg: MsgId,
    inflight: foldhash::HashMap<MsgId, Inflight>,
    inflight_ids: foldhash::HashSet<EntryId>,
    buffer: VecDeque<(EntryId, Values)>,
    again: VecDeque<MsgId>,
    to_ack: Vec<EntryId>,
    history: Option<EntryId>,
    position: EntryId,
    end: Option<EntryId>,
    reached_end: bool,
    finished: bool,
    claim_cursor: EntryId,
    next_claim: Instant,
    next_end_check: Instant,
    sent: Option<Sent>,
    id_text: String,
}

impl fmt::Debug for RedisStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStream")
            .field("what", &self.what)
            .field("consumer", &self.consumer)
            .field("position", &self.position)
            .field("inflight", &self.inflight.len())
            .finish()
    }
}

impl RedisStream {
    pub(super) fn new(config: Config) -> Self {
        RedisStream {
            config,
            what: String::new(),
            link: None,
            consumer: String::new(),
            acking: true,
            next_msg: 0,
            inflight: foldhash::HashMap::default(),
            inflight_ids: foldhash::HashSet::default(),
            buffer: VecDeque::new(),
            again: VecDeque::new(),
            to_ack: Vec::new(),
            history: None,
            position: EntryId::default(),
            end: None,
            reached_end: false,
            finished: false,
            claim_cursor: EntryId::default(),
            next_claim: Instant::now(),
            next_end_check: Instant::now(),
            sent: None,
            id_text: String::new(),
        }
    }

    /// The id of the last entry this task read from the group (`0-0` before the first).
    pub fn position(&self) -> EntryId {
        self.position
    }

    /// The consumer name this task reads as.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    fn claim_every(&self) -> Duration {
        Duration::from_millis((self.config.claim_idle_ms / 2).clamp(10, 5_000))
    }

    fn create_group(config: &Config, con: &mut redis::Connection) -> redis::RedisResult<()> {
        let start = match config.start {
            Start::New => "$",
            Start::Beginning => "0",
        };
        let r: redis::RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&config.stream)
            .arg(&config.group)
            .arg(start)
            .arg("MKSTREAM")
            .query(con);
        match r {
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            other => other,
        }
    }

    fn emit(&mut self, id: EntryId, values: Values, out: &mut SpoutOutput<'_>) {
        if self.acking {
            self.next_msg += 1;
            let msg = self.next_msg;
            self.inflight.insert(
                msg,
                Inflight {
                    id,
                    values: values.clone(),
                },
            );
            self.inflight_ids.insert(id);
            out.emit_id(msg, values);
        } else {
            out.emit(values);
        }
    }

    /// The id and values of an entry reply `[id, [k, v, ...]]`.
    fn entry(&self, reply: Reply) -> Option<(EntryId, Values)> {
        let (id, kv) = split_entry(reply)?;
        Some((id, entry_values(&self.config, id, kv)))
    }

    /// Takes the entries of a read or claim: the ones not in flight here go to the buffer.
    /// Returns how many there were and the last id.
    fn take_entries(&mut self, entries: Vec<Reply>) -> (usize, Option<EntryId>) {
        let n = entries.len();
        let mut last = None;
        for e in entries {
            if let Some((id, values)) = self.entry(e) {
                last = Some(id);
                if !self.inflight_ids.contains(&id) {
                    self.buffer.push_back((id, values));
                }
            }
        }
        (n, last)
    }

    /// Whether a read of new entries may go out now, before the buffer is empty: the
    /// next read would be one (no history to read again, no claim due, the end not
    /// reached).
    fn prefetch_due(&self) -> bool {
        self.history.is_none()
            && !self.reached_end
            && !(self.acking && Instant::now() >= self.next_claim)
    }

    /// Sends the pending XACKs and, unless entries still wait in the buffer, a read, a
    /// claim or an end check, as one pipeline; [`RedisStream::receive`] takes the
    /// replies. With `prefetch` the read of new entries goes out although the buffer
    /// still holds some, so Redis serves it while they are emitted. Returns what
    /// `next_tuple` answers when nothing was sent.
    fn send(&mut self, prefetch: bool) -> Result<Option<Poll>> {
        let now = Instant::now();
        let mut fresh = false;
        let Some(link) = self.link.as_mut() else {
            return Ok(Some(Poll::Done));
        };
        let Some(con) = link.get(&mut fresh) else {
            return Ok(Some(Poll::Idle));
        };
        if fresh && self.acking {
            // What the old connection read and never delivered is pending here.
            self.history = Some(EntryId::default());
        }
        let c = &self.config;
        let mut pipe = redis::pipe();
        let acks = self.to_ack.len();
        if acks > 0 {
            let cmd = pipe.cmd("XACK").arg(&c.stream).arg(&c.group);
            for id in &self.to_ack {
                self.id_text.clear();
                let _ = write!(self.id_text, "{id}");
                cmd.arg(self.id_text.as_str());
            }
        }
        let read = if !self.buffer.is_empty() && !prefetch {
            // Only the acks: entries read earlier still wait to be emitted.
            None
        } else if self.acking && now >= self.next_claim {
            pipe.cmd("XAUTOCLAIM")
                .arg(&c.stream)
                .arg(&c.group)
                .arg(&self.consumer)
                .arg(c.claim_idle_ms)
                .arg(self.claim_cursor.to_string())
                .arg("COUNT")
                .arg(c.batch);
            Some(Read::Claim)
        } else if let Some(cursor) = self.history {
            pipe.cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&c.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(c.batch)
                .arg("STREAMS")
                .arg(&c.stream)
                .arg(cursor.to_string());
            Some(Read::History)
        } else if !self.reached_end {
            let cmd = pipe
                .cmd("XREADGROUP")
                .arg("GROUP")
                .arg(&c.group)
                .arg(&self.consumer)
                .arg("COUNT")
                .arg(c.batch);
            // Block only when nothing else waits on this thread: no trees in flight whose
            // acks would wait, no bounded run that must notice its end, no entries to emit.
            if c.block_ms > 0 && !c.stop_at_end && !prefetch && self.inflight.is_empty() {
                cmd.arg("BLOCK").arg(c.block_ms);
            }
            if !self.acking {
                cmd.arg("NOACK");
            }
            cmd.arg("STREAMS").arg(&c.stream).arg(">");
            Some(Read::New)
        } else {
            if now < self.next_end_check && acks == 0 {
                return Ok(Some(Poll::Idle));
            }
            self.next_end_check = now + Duration::from_millis(20);
            let end = self.end.map_or("0-0".to_string(), |e| e.to_string());
            pipe.cmd("XPENDING")
                .arg(&c.stream)
                .arg(&c.group)
                .arg("-")
                .arg(end)
                .arg(1);
            Some(Read::EndCheck)
        };
        let replies = usize::from(acks > 0) + usize::from(read.is_some());
        if replies == 0 {
            return Ok(Some(Poll::Idle));
        }
        match con.send_packed_command(&pipe.get_packed_pipeline()) {
            Ok(()) => {
                self.sent = Some(Sent {
                    read,
                    acks,
                    replies,
                });
                Ok(None)
            }
            Err(e) => link.failed(&e).map(Some),
        }
    }

    /// Takes the replies of what [`RedisStream::send`] sent (waiting for them): the acks
    /// it carried are done, the entries it read go to the buffer.
    fn receive(&mut self) -> Result<Poll> {
        let Some(sent) = self.sent.take() else {
            return Ok(Poll::Idle);
        };
        let Some(link) = self.link.as_mut() else {
            return Ok(Poll::Done);
        };
        let mut fresh = false;
        let Some(con) = link.get(&mut fresh) else {
            return Ok(Poll::Idle);
        };
        if fresh {
            // The request went out on a connection that is gone: its replies with it.
            if self.acking {
                self.history = Some(EntryId::default());
            }
            return Ok(Poll::Idle);
        }
        let mut reply = Reply::Nil;
        let mut failed = None;
        for _ in 0..sent.replies {
            match con.recv_response() {
                Ok(Reply::ServerError(e)) => {
                    // Read every reply first, so the connection stays in step.
                    failed.get_or_insert(redis::RedisError::from(e));
                }
                Ok(r) => reply = r,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            let c = &self.config;
            if is_transient(&e) {
                link.broke(&e);
                return Ok(Poll::Idle);
            }
            if e.code() == Some("NOGROUP") {
                tracing::warn!(component = %self.what, stream = %c.stream, group = %c.group, "The group is gone; creating it again.");
                if let Err(e) = Self::create_group(c, con) {
                    return Err(
                        format!("{}: cannot create group `{}`: {e}", self.what, c.group).into(),
                    );
                }
                return Ok(Poll::Idle);
            }
            return Err(format!("{}: {e}", self.what).into());
        }
        self.to_ack.drain(..sent.acks);
        let Some(read) = sent.read else {
            return Ok(Poll::Ready);
        };
        match read {
            Read::Claim => {
                let mut parts = match reply {
                    Reply::Array(p) => p.into_iter(),
                    _ => Vec::new().into_iter(),
                };
                let cursor = parts.next().and_then(|c| match c {
                    Reply::BulkString(b) => EntryId::parse(&b),
                    _ => None,
                });
                let entries = match parts.next() {
                    Some(Reply::Array(e)) => e,
                    _ => Vec::new(),
                };
                let (n, _) = self.take_entries(entries);
                if n > 0 {
                    tracing::debug!(component = %self.what, claimed = n, "Claimed entries idle at other consumers.");
                }
                match cursor {
                    Some(c) if c != EntryId::default() => self.claim_cursor = c,
                    _ => {
                        self.claim_cursor = EntryId::default();
                        self.next_claim = Instant::now() + self.claim_every();
                    }
                }
                Ok(Poll::Ready)
            }
            Read::History | Read::New => {
                let entries = stream_entries(reply);
                let (n, last) = self.take_entries(entries);
                if read == Read::History {
                    self.history = last.filter(|_| n > 0);
                } else if let Some(last) = last {
                    self.position = last;
                    if self.config.stop_at_end && self.end.is_none_or(|e| last >= e) {
                        self.reached_end = true;
                    }
                } else if self.config.stop_at_end {
                    self.reached_end = true;
                }
                Ok(if n > 0 || sent.acks > 0 {
                    Poll::Ready
                } else {
                    Poll::Idle
                })
            }
            Read::EndCheck => {
                let clear = matches!(&reply, Reply::Array(p) if p.is_empty());
                if clear && self.inflight.is_empty() && self.buffer.is_empty() {
                    self.finished = true;
                    return Ok(Poll::Done);
                }
                Ok(Poll::Idle)
            }
        }
    }
}

impl Spout for RedisStream {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        self.what = format!("`redis_stream` spout `{}`", ctx.component);
        self.acking = ctx.topology.settings().acking;
        self.consumer = match &self.config.consumer {
            // Several tasks cannot share one consumer name.
            Some(c) if ctx.tasks_of(&ctx.component).len() > 1 => format!("{c}-{}", ctx.task_index),
            Some(c) => c.clone(),
            None => format!(
                "{}-{}-w{}-t{}",
                ctx.topology.name(),
                ctx.component,
                ctx.worker,
                ctx.task
            ),
        };
        let read_timeout = Duration::from_millis(self.config.block_ms) + Duration::from_secs(10);
        let mut link = Link::open(&self.what, &self.config.url, read_timeout)?;
        let mut fresh = false;
        let con = link
            .get(&mut fresh)
            .ok_or_else(|| format!("{}: the connection broke at once", self.what))?;
        Self::create_group(&self.config, con).map_err(|e| {
            format!(
                "{} cannot create group `{}` on `{}` at {}: {e}",
                self.what, self.config.group, self.config.stream, self.config.url
            )
        })?;
        if self.config.stop_at_end {
            self.end = last_entry_id(con, &self.config.stream)
                .map_err(|e| format!("{}: {e}", self.what))?;
            self.reached_end = self.end.is_none();
        }
        if self.acking {
            self.history = Some(EntryId::default());
            self.next_claim = Instant::now() + self.claim_every();
        }
        tracing::info!(
            component = %ctx.component,
            task = ctx.task,
            consumer = %self.consumer,
            stream = %self.config.stream,
            group = %self.config.group,
            "Reading the stream."
        );
        self.link = Some(link);
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        if self.finished {
            return Ok(Poll::Done);
        }
        while let Some(msg) = self.again.pop_front() {
            if let Some(p) = self.inflight.get(&msg) {
                out.emit_id(msg, p.values.clone());
                return Ok(Poll::Ready);
            }
        }
        // A reply is taken once its entries are needed, or before acks pile up.
        if self.sent.is_some() && (self.buffer.is_empty() || self.to_ack.len() >= self.config.batch)
        {
            return self.receive();
        }
        // Acks go out once a batch of them is due even while entries wait to be emitted.
        if self.to_ack.len() < self.config.batch {
            if let Some((id, values)) = self.buffer.pop_front() {
                self.emit(id, values, out);
                if self.sent.is_none() && self.prefetch_due() {
                    self.send(true)?;
                }
                return Ok(Poll::Ready);
            }
        }
        match self.send(false)? {
            Some(poll) => Ok(poll),
            None => self.receive(),
        }
    }

    fn ack(&mut self, id: MsgId) {
        if let Some(p) = self.inflight.remove(&id) {
            self.inflight_ids.remove(&p.id);
            self.to_ack.push(p.id);
        }
    }

    fn fail(&mut self, id: MsgId) {
        if self.inflight.contains_key(&id) {
            self.again.push_back(id);
        }
    }

    fn close(&mut self) {
        // Acks still owed are sent once; what is not acked stays pending in the group.
        if self.sent.is_some() {
            let _ = self.receive();
        }
        if let (Some(link), false) = (self.link.as_mut(), self.to_ack.is_empty()) {
            let mut fresh = false;
            if let Some(con) = link.get(&mut fresh) {
                let mut cmd = redis::cmd("XACK");
                cmd.arg(&self.config.stream).arg(&self.config.group);
                for id in &self.to_ack {
                    cmd.arg(id.to_string());
                }
                let _: redis::RedisResult<Reply> = cmd.query(con);
            }
        }
        self.link = None;
    }
}
