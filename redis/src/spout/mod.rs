//! `redis_stream`: reads a Redis stream. Without checkpoints, as a consumer group
//! ([`RedisStream`]); in a checkpointed topology, from positions it can rewind to
//! ([`RangeReader`]).
//!
//! **Why two readers.** A consumer group hands entries to its consumers as they ask, so
//! which entries a task got depends on timing: no position of one task says what it will
//! read after a rollback, and the group's own bookkeeping (the last delivered id, the
//! pending lists) moves on past a checkpoint and cannot be rolled back with it. With
//! checkpoints the spout therefore does not use the group: each task reads the whole
//! stream itself with XREAD from its own position and keeps the entries whose id maps to
//! it — a stable hash of the id ([`EntryId::owner`]) modulo the number of tasks — so the
//! tasks together emit every entry once, and a task's position (the id it has read up
//! to) defines exactly what it emits after it. The cost: every task reads every entry,
//! so parallelism above 1 on one stream spreads the emitting, not the reading.
//!
//! # Layout
//! - here: the config, entry ids, parsing replies, the registered spout
//!   ([`StreamSpout`]) that picks its reader when it opens;
//! - [`group`]: [`RedisStream`], one consumer of a consumer group (XREADGROUP, XACK,
//!   XAUTOCLAIM);
//! - [`range`]: [`RangeReader`], a task of a checkpointed topology (XREAD from a
//!   checkpointed id).

use std::collections::HashSet;
use std::fmt;

use redis::Value as Reply;
use serde::Deserialize;
use smol_str::SmolStr;
use topo_dsl::StreamDecl;
use topo_engine::{MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext, Value, Values};

use crate::check::{Check, Checked};
use crate::link::RedisUrl;

pub mod group;
pub mod range;

pub use group::RedisStream;
pub use range::RangeReader;

/// Where a new group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Start {
    /// `"$"`: entries added after the group was created.
    #[default]
    New,
    /// `"0"`: the whole stream.
    Beginning,
}

impl TryFrom<String> for Start {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        match s.as_str() {
            "$" => Ok(Start::New),
            "0" => Ok(Start::Beginning),
            _ => Err(format!(
                "`start` is \"$\" (new entries) or \"0\" (the whole stream), not {s:?}"
            )),
        }
    }
}

/// Config of the `redis_stream` spout.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The server (default `redis://127.0.0.1:6379`).
    #[serde(default)]
    pub url: RedisUrl,
    /// The stream's key.
    pub stream: String,
    /// The consumer group (created with MKSTREAM when missing; not used with checkpoints).
    pub group: String,
    /// Where a group created by the spout starts (with checkpoints: where a fresh run
    /// starts reading): `"$"` (default) or `"0"`.
    #[serde(default)]
    pub start: Start,
    /// The consumer name (default: from topology, worker and task).
    pub consumer: Option<String>,
    /// The entry's fields to emit, in order (a missing one is null).
    pub fields: Vec<String>,
    /// Also emit the entry id, as field `id` after `fields`.
    #[serde(default)]
    pub with_id: bool,
    /// Entries per read (XREADGROUP or XREAD COUNT).
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// How long a read waits for new entries when there are none (XREADGROUP BLOCK).
    #[serde(default = "default_block_ms")]
    pub block_ms: u64,
    /// Entries pending this long at another consumer are claimed (XAUTOCLAIM).
    #[serde(default = "default_claim_idle_ms")]
    pub claim_idle_ms: u64,
    /// Finish once every entry that existed when the spout opened is acked (with
    /// checkpoints: emitted).
    #[serde(default)]
    pub stop_at_end: bool,
}

fn default_batch() -> usize {
    512
}

fn default_block_ms() -> u64 {
    100
}

fn default_claim_idle_ms() -> u64 {
    30_000
}

impl Check for Config {
    fn check(&self) -> std::result::Result<(), String> {
        if self.fields.is_empty() {
            return Err("`fields` is empty: name the entry fields to emit".into());
        }
        let mut seen = HashSet::new();
        for f in &self.fields {
            if !seen.insert(f.as_str()) {
                return Err(format!("`fields` names \"{f}\" twice"));
            }
        }
        if self.with_id && seen.contains("id") {
            return Err("`with_id` emits a field \"id\", and `fields` names one too".into());
        }
        if !(1..=100_000).contains(&self.batch) {
            return Err(format!("`batch` is 1 to 100000, not {}", self.batch));
        }
        if self.claim_idle_ms == 0 {
            return Err("`claim_idle_ms` must be positive".into());
        }
        Ok(())
    }
}

impl Config {
    fn outputs(&self) -> Vec<StreamDecl> {
        let mut fields = self.fields.clone();
        if self.with_id {
            fields.push("id".into());
        }
        vec![StreamDecl::default_stream(fields)]
    }
}

/// A stream entry id, `ms-seq`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl EntryId {
    pub(crate) fn parse(b: &[u8]) -> Option<EntryId> {
        let s = std::str::from_utf8(b).ok()?;
        let (ms, seq) = s.split_once('-')?;
        Some(EntryId {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }
}

impl EntryId {
    /// The index of the task, of `tasks`, that emits this entry in a checkpointed
    /// topology: a stable hash of the id (SplitMix64's finaliser over both parts) modulo
    /// `tasks`, the same in every process and every run.
    pub fn owner(&self, tasks: usize) -> usize {
        let mut x = self.ms ^ self.seq.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        (x % tasks.max(1) as u64) as usize
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// Splits an entry reply `[id, [k, v, ...]]` into its id and its fields and values.
fn split_entry(reply: Reply) -> Option<(EntryId, Vec<Reply>)> {
    let Reply::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let kv = parts.pop()?;
    let Reply::BulkString(id_bytes) = parts.pop()? else {
        return None;
    };
    let id = EntryId::parse(&id_bytes)?;
    let kv = match kv {
        Reply::Array(kv) => kv,
        _ => Vec::new(),
    };
    Some((id, kv))
}

/// The values to emit of entry `id` with fields and values `kv`: `fields` in order (a
/// missing one is null), then the id with `with_id`.
fn entry_values(config: &Config, id: EntryId, mut kv: Vec<Reply>) -> Values {
    let mut values = Values::new();
    for name in &config.fields {
        let found = kv.chunks_exact_mut(2).find(|p| match &p[0] {
            Reply::BulkString(k) => k.as_slice() == name.as_bytes(),
            _ => false,
        });
        values.push(match found {
            Some(p) => value_of(std::mem::replace(&mut p[1], Reply::Nil)),
            None => Value::Null,
        });
    }
    if config.with_id {
        values.push(Value::Str(SmolStr::new(id.to_string())));
    }
    values
}

/// The id of the stream's last entry (`None`: the stream is empty or missing).
fn last_entry_id(con: &mut redis::Connection, stream: &str) -> redis::RedisResult<Option<EntryId>> {
    let last: Reply = redis::cmd("XREVRANGE")
        .arg(stream)
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .query(con)?;
    Ok(match last {
        Reply::Array(mut e) if !e.is_empty() => split_entry(e.swap_remove(0)).map(|(id, _)| id),
        _ => None,
    })
}

/// The entries of an XREAD or XREADGROUP reply `[[stream, [entry, ...]]]` (nil: none).
fn stream_entries(reply: Reply) -> Vec<Reply> {
    let Reply::Array(streams) = reply else {
        return Vec::new();
    };
    streams
        .into_iter()
        .find_map(|s| match s {
            Reply::Array(mut kv) if kv.len() == 2 => match kv.pop() {
                Some(Reply::Array(entries)) => Some(entries),
                _ => None,
            },
            _ => None,
        })
        .unwrap_or_default()
}

/// An entry's field value: a string when it is UTF-8, else bytes.
fn value_of(reply: Reply) -> Value {
    match reply {
        Reply::BulkString(b) => match String::from_utf8(b) {
            Ok(s) => Value::Str(SmolStr::from(s)),
            Err(e) => Value::Bytes(e.into_bytes().into()),
        },
        Reply::SimpleString(s) => Value::Str(SmolStr::from(s)),
        Reply::Int(i) => Value::Int(i),
        _ => Value::Null,
    }
}

/// The registered `redis_stream` spout: a [`RedisStream`] (a consumer group) or, in a
/// checkpointed topology, a [`RangeReader`]; which one is decided when it opens.
#[derive(Debug)]
pub struct StreamSpout {
    reader: Reader,
}

#[derive(Debug)]
enum Reader {
    /// Not opened yet.
    Closed(Config),
    Group(RedisStream),
    Range(RangeReader),
}

impl StreamSpout {
    /// A spout reading as `config` says.
    pub fn new(config: Config) -> Self {
        StreamSpout {
            reader: Reader::Closed(config),
        }
    }
}

impl Spout for StreamSpout {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        let Reader::Closed(config) = &self.reader else {
            return Err("the `redis_stream` spout was opened twice".into());
        };
        let config = config.clone();
        self.reader = if ctx.topology.settings().checkpoints.is_some() {
            Reader::Range(RangeReader::new(config))
        } else {
            Reader::Group(RedisStream::new(config))
        };
        match &mut self.reader {
            Reader::Group(r) => r.open(ctx),
            Reader::Range(r) => r.open(ctx),
            Reader::Closed(_) => Ok(()),
        }
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        match &mut self.reader {
            Reader::Group(r) => r.next_tuple(out),
            Reader::Range(r) => r.next_tuple(out),
            Reader::Closed(_) => Ok(Poll::Done),
        }
    }

    fn ack(&mut self, id: MsgId) {
        match &mut self.reader {
            Reader::Group(r) => r.ack(id),
            Reader::Range(r) => r.ack(id),
            Reader::Closed(_) => {}
        }
    }

    fn fail(&mut self, id: MsgId) {
        match &mut self.reader {
            Reader::Group(r) => r.fail(id),
            Reader::Range(r) => r.fail(id),
            Reader::Closed(_) => {}
        }
    }

    fn close(&mut self) {
        match &mut self.reader {
            Reader::Group(r) => r.close(),
            Reader::Range(r) => r.close(),
            Reader::Closed(_) => {}
        }
    }

    fn position(&mut self) -> Option<Vec<u8>> {
        match &mut self.reader {
            Reader::Range(r) => r.position(),
            _ => None,
        }
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        match &mut self.reader {
            Reader::Range(r) => r.seek(position),
            _ => Err("a `redis_stream` spout rewinds only in a checkpointed topology".into()),
        }
    }
}

/// Registers the `redis_stream` spout.
pub fn register(registry: &mut Registry) {
    registry.spout(
        "redis_stream",
        "Reads Redis stream `stream` as consumer group `group` (XREADGROUP); emits `fields` (and `id` with `with_id`); acked trees are XACKed, failed ones emitted again, idle entries of dead consumers claimed. With checkpoints: each task reads the stream itself (XREAD) from its checkpointed id, the entries whose id hashes to it.",
        |c: &Checked<Config>| c.0.outputs(),
        |Checked(config)| Ok(StreamSpout::new(config)),
    );
    registry.rewinds("redis_stream", |_: &Checked<Config>| true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_parse_and_order() {
        let a = EntryId::parse(b"1700000000000-5").expect("id");
        assert_eq!(a.to_string(), "1700000000000-5");
        assert!(a < EntryId::parse(b"1700000000001-0").expect("id"));
        assert_eq!(EntryId::parse(b"nope"), None);
    }

    #[test]
    fn a_config_is_checked_across_keys() {
        let table: toml::Table = "stream = \"s\"\ngroup = \"g\"\nfields = [\"id\"]\nwith_id = true"
            .parse()
            .expect("toml");
        let err = topo_dsl::parse_config::<Checked<Config>>(&table).expect_err("id twice");
        assert!(
            err[0].message.contains("`with_id` emits a field \"id\""),
            "{err:?}"
        );
        let table: toml::Table = "stream = \"s\"\ngroup = \"g\"\nfields = [\"a\"]\nstart = \"1\""
            .parse()
            .expect("toml");
        let err = topo_dsl::parse_config::<Checked<Config>>(&table).expect_err("bad start");
        assert!(err[0].message.contains("`start` is \"$\""), "{err:?}");
    }
}
