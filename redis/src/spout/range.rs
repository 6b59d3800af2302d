//! The `redis_stream` spout in a checkpointed topology: each task reads the whole stream
//! itself (XREAD from an entry id, no consumer group) and emits the entries whose id maps
//! to it ([`EntryId::owner`]), so one id is a position it can rewind to.
//!
//! A task keeps `scanned`, the id it has read up to: every entry of its own up to that id
//! is emitted or waits in its buffer. Its position is that id when the buffer is empty,
//! else the id of the last entry it emitted; seeking there reads on from the id, so every
//! entry of the task after the position is emitted again and none before it. Reads go
//! out as `XREAD COUNT batch STREAMS stream id` (memory stays bounded by `batch`); the
//! next read is sent while a batch is emitted, and a task that has caught up with the
//! stream blocks in XREAD (`block_ms`) only when no tree of its own is in flight. With
//! acking on, a failed tree is emitted again from memory; an acked one is forgotten
//! (there is no group to XACK).
//!
//! The position names the stream and the task count: a task refuses to seek to a
//! position of another stream, or of a run with another parallelism (the hash modulo
//! another count splits the stream differently, so the old positions say nothing about
//! the new tasks' shares).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use redis::Value as Reply;
use serde::{Deserialize, Serialize};
use topo_engine::{MsgId, Poll, Result, Spout, SpoutOutput, TaskContext, Values};

use super::{entry_values, last_entry_id, split_entry, stream_entries, Config, EntryId, Start};
use crate::link::Link;

/// What a task records in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    /// The stream's key.
    stream: String,
    /// The spout's task count.
    tasks: usize,
    /// This task's index.
    task: usize,
    /// Every entry of this task up to this id (`ms-seq`) was emitted, none after it.
    after: String,
}

/// A task of a `redis_stream` spout in a checkpointed topology.
pub struct RangeReader {
    config: Config,
    what: String,
    link: Option<Link>,
    acking: bool,
    task: usize,
    tasks: usize,
    /// Read up to here: every entry of this task up to it is emitted or in `buffer`.
    scanned: EntryId,
    /// The last entry emitted (or where reading started).
    emitted: EntryId,
    buffer: VecDeque<(EntryId, Values)>,
    next_msg: MsgId,
    inflight: foldhash::HashMap<MsgId, Values>,
    again: VecDeque<MsgId>,
    /// With `stop_at_end`: the stream's last id when the task opened.
    end: Option<EntryId>,
    reached_end: bool,
    /// The last read returned less than a batch: the stream's end is near.
    caught_up: bool,
    /// A read was sent and its reply not taken yet.
    sent: bool,
}

impl fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RangeReader")
            .field("what", &self.what)
            .field("task", &self.task)
            .field("tasks", &self.tasks)
            .field("scanned", &self.scanned)
            .field("emitted", &self.emitted)
            .finish()
    }
}

impl RangeReader {
    pub(super) fn new(config: Config) -> Self {
        RangeReader {
            config,
            what: String::new(),
            link: None,
            acking: true,
            task: 0,
            tasks: 1,
            scanned: EntryId::default(),
            emitted: EntryId::default(),
            buffer: VecDeque::new(),
            next_msg: 0,
            inflight: foldhash::HashMap::default(),
            again: VecDeque::new(),
            end: None,
            reached_end: false,
            caught_up: false,
            sent: false,
        }
    }

    /// Sends the next read. Returns what `next_tuple` answers when nothing was sent.
    fn send(&mut self, prefetch: bool) -> Result<Option<Poll>> {
        let Some(link) = self.link.as_mut() else {
            return Ok(Some(Poll::Done));
        };
        let mut fresh = false;
        let Some(con) = link.get(&mut fresh) else {
            return Ok(Some(Poll::Idle));
        };
        let c = &self.config;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT").arg(c.batch);
        // Block only at the stream's end with nothing else waiting on this thread.
        if self.caught_up && c.block_ms > 0 && !prefetch && self.inflight.is_empty() {
            cmd.arg("BLOCK").arg(c.block_ms);
        }
        cmd.arg("STREAMS")
            .arg(&c.stream)
            .arg(self.scanned.to_string());
        match con.send_packed_command(&cmd.get_packed_command()) {
            Ok(()) => {
                self.sent = true;
                Ok(None)
            }
            Err(e) => link.failed(&e).map(Some),
        }
    }

    /// Takes the reply of the read sent: this task's entries go to the buffer.
    fn receive(&mut self) -> Result<Poll> {
        self.sent = false;
        let Some(link) = self.link.as_mut() else {
            return Ok(Poll::Done);
        };
        let mut fresh = false;
        let Some(con) = link.get(&mut fresh) else {
            return Ok(Poll::Idle);
        };
        if fresh {
            // The read went out on a connection that is gone; it is sent again.
            return Ok(Poll::Idle);
        }
        let reply = match con.recv_response() {
            Ok(Reply::ServerError(e)) => Err(redis::RedisError::from(e)),
            other => other,
        };
        let entries = match reply {
            Ok(r) => stream_entries(r),
            Err(e) => return link.failed(&e),
        };
        let n = entries.len();
        self.caught_up = n < self.config.batch;
        let mut mine = 0;
        for e in entries {
            let Some((id, kv)) = split_entry(e) else {
                continue;
            };
            if self.end.is_some_and(|end| id > end) {
                self.reached_end = true;
                break;
            }
            self.scanned = id;
            if id.owner(self.tasks) == self.task {
                mine += 1;
                self.buffer
                    .push_back((id, entry_values(&self.config, id, kv)));
            }
        }
        if self.config.stop_at_end && (self.caught_up || self.end == Some(self.scanned)) {
            self.reached_end = true;
        }
        Ok(if mine > 0 { Poll::Ready } else { Poll::Idle })
    }

    fn emit(&mut self, values: Values, out: &mut SpoutOutput<'_>) {
        if self.acking {
            self.next_msg += 1;
            self.inflight.insert(self.next_msg, values.clone());
            out.emit_id(self.next_msg, values);
        } else {
            out.emit(values);
        }
    }
}

impl Spout for RangeReader {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        self.what = format!("`redis_stream` spout `{}`", ctx.component);
        self.acking = ctx.topology.settings().acking;
        self.task = ctx.task_index;
        self.tasks = ctx.tasks_of(&ctx.component).len().max(1);
        let read_timeout = Duration::from_millis(self.config.block_ms) + Duration::from_secs(10);
        let mut link = Link::open(&self.what, &self.config.url, read_timeout)?;
        let mut fresh = false;
        let con = link
            .get(&mut fresh)
            .ok_or_else(|| format!("{}: the connection broke at once", self.what))?;
        let last = last_entry_id(con, &self.config.stream).map_err(|e| {
            format!(
                "{} cannot read stream `{}` at {}: {e}",
                self.what, self.config.stream, self.config.url
            )
        })?;
        if self.config.stop_at_end {
            self.end = last;
            self.reached_end = last.is_none();
        }
        // A fresh run starts at the beginning or at the end; a restored one seeks next.
        self.scanned = match self.config.start {
            Start::Beginning => EntryId::default(),
            Start::New => last.unwrap_or_default(),
        };
        self.emitted = self.scanned;
        tracing::info!(
            component = %ctx.component,
            task = ctx.task,
            stream = %self.config.stream,
            from = %self.scanned,
            "Reading the stream from checkpointed positions."
        );
        self.link = Some(link);
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        while let Some(msg) = self.again.pop_front() {
            if let Some(values) = self.inflight.get(&msg) {
                out.emit_id(msg, values.clone());
                return Ok(Poll::Ready);
            }
        }
        if self.sent && self.buffer.is_empty() {
            return self.receive();
        }
        if let Some((id, values)) = self.buffer.pop_front() {
            self.emitted = id;
            self.emit(values, out);
            if !self.sent && !self.caught_up && !self.reached_end {
                self.send(true)?;
            }
            return Ok(Poll::Ready);
        }
        if self.reached_end {
            return Ok(Poll::Done);
        }
        match self.send(false)? {
            Some(poll) => Ok(poll),
            None => self.receive(),
        }
    }

    fn ack(&mut self, id: MsgId) {
        self.inflight.remove(&id);
    }

    fn fail(&mut self, id: MsgId) {
        if self.inflight.contains_key(&id) {
            self.again.push_back(id);
        }
    }

    fn close(&mut self) {
        if self.sent {
            let _ = self.receive();
        }
        self.link = None;
    }

    fn position(&mut self) -> Option<Vec<u8>> {
        let after = if self.buffer.is_empty() {
            self.scanned
        } else {
            self.emitted
        };
        let p = Position {
            stream: self.config.stream.clone(),
            tasks: self.tasks,
            task: self.task,
            after: after.to_string(),
        };
        serde_json::to_vec(&p).ok()
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let p: Position = serde_json::from_slice(position)
            .map_err(|e| format!("{}: not a position of this spout: {e}", self.what))?;
        if p.stream != self.config.stream {
            return Err(format!(
                "{}: the checkpoint's position is in stream `{}`, not `{}`",
                self.what, p.stream, self.config.stream
            )
            .into());
        }
        if p.tasks != self.tasks || p.task != self.task {
            return Err(format!(
                "{}: the checkpoint was taken with parallelism {} and the spout now has {}; \
                 its tasks split the stream by a hash of each entry id modulo their count, \
                 so it resumes only with parallelism {}",
                self.what, p.tasks, self.tasks, p.tasks
            )
            .into());
        }
        let after = EntryId::parse(p.after.as_bytes())
            .ok_or_else(|| format!("{}: bad entry id {:?} in the position", self.what, p.after))?;
        if self.sent {
            // The reply of a read sent from the old position is taken and dropped.
            let _ = self.receive();
        }
        self.scanned = after;
        self.emitted = after;
        self.buffer.clear();
        self.inflight.clear();
        self.again.clear();
        self.caught_up = false;
        self.reached_end = self.config.stop_at_end && self.end.is_none_or(|end| after >= end);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_split_ids_evenly_and_stably() {
        let mut counts = [0usize; 3];
        for ms in 1_700_000_000_000u64..1_700_000_000_100 {
            for seq in 0..100 {
                let id = EntryId { ms, seq };
                let o = id.owner(3);
                assert_eq!(o, id.owner(3));
                counts[o] += 1;
            }
        }
        for c in counts {
            assert!((3_000..3_700).contains(&c), "{counts:?}");
        }
        assert_eq!(EntryId { ms: 5, seq: 1 }.owner(1), 0);
    }

    #[test]
    fn a_position_goes_back_and_refuses_another_parallelism() {
        let table: toml::Table = "stream = \"s\"\ngroup = \"g\"\nfields = [\"a\"]"
            .parse()
            .expect("toml");
        let config = topo_dsl::parse_config::<crate::Checked<Config>>(&table)
            .expect("config")
            .0;
        let mut r = RangeReader::new(config);
        r.what = "`redis_stream` spout `in`".into();
        r.tasks = 2;
        r.scanned = EntryId { ms: 9, seq: 3 };
        r.emitted = EntryId { ms: 7, seq: 0 };
        r.buffer
            .push_back((EntryId { ms: 8, seq: 1 }, Values::new()));
        let at = r.position().expect("a position");
        assert_eq!(
            String::from_utf8_lossy(&at),
            r#"{"stream":"s","tasks":2,"task":0,"after":"7-0"}"#
        );
        r.buffer.clear();
        r.seek(&at).expect("seek");
        assert_eq!(
            (r.scanned, r.emitted),
            (EntryId { ms: 7, seq: 0 }, r.scanned)
        );
        r.tasks = 3;
        let err = r.seek(&at).expect_err("rescaled").to_string();
        assert!(
            err.starts_with(
                "`redis_stream` spout `in`: the checkpoint was taken with parallelism 2 and the spout now has 3"
            ),
            "{err}"
        );
    }
}
