//! `redis_stream` (XADD) and `redis` (SET / HSET / INCRBY) sinks: the executor thread
//! queues one command per tuple and defers its ack; a writer thread sends what has queued
//! as one pipeline, and a tuple is acked only once Redis confirmed its write.
//!
//! The queue is bounded, so a slow or unreachable Redis slows the topology down instead
//! of filling memory. While Redis is down the writer keeps the batch it holds and
//! retries it on a new connection: nothing is acked that was not written, and a write
//! whose reply was lost may be applied twice (at least once).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use topo_engine::{Bolt, BoltOutput, Notifier, Registry, Result, TaskContext, Tuple};

use crate::check::{Check, Checked};
use crate::link::{is_transient, Link, RedisUrl};

/// Commands one pipeline carries at most.
const PIPELINE: usize = 1024;
/// Commands queued for the writer at most (then `execute` waits: backpressure).
const QUEUE: usize = 8 * PIPELINE;
/// How long cleanup waits for queued writes.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// How long a reply may take before the connection counts as broken.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Config of the `redis_stream` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The server (default `redis://127.0.0.1:6379`).
    #[serde(default)]
    pub url: RedisUrl,
    /// The stream to append to.
    pub stream: String,
    /// The input fields to write, in order (default: every field of the input).
    pub fields: Option<Vec<String>>,
    /// Trim the stream to about this many entries (`XADD ... MAXLEN ~ n`).
    pub maxlen: Option<u64>,
}

/// What the `redis` sink does with each tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// `SET key value`.
    Set,
    /// `HSET key field value`.
    Hset,
    /// `INCRBY key value` (value 1 when no `value` field is named).
    Incrby,
}

/// Config of the `redis` sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The server (default `redis://127.0.0.1:6379`).
    #[serde(default)]
    pub url: RedisUrl,
    /// `set`, `hset` or `incrby`.
    pub command: Command,
    /// The input field holding the key.
    pub key: String,
    /// Prepended to every key (default empty).
    #[serde(default)]
    pub key_prefix: String,
    /// `hset`: the input field holding the hash field.
    pub field: Option<String>,
    /// The input field holding the value (`incrby`: the increment, default 1).
    pub value: Option<String>,
}

/// What the writer thread reports per command, in queue order.
type Outcome = std::result::Result<(), String>;

#[derive(Default)]
struct Shared {
    done: Mutex<Vec<Outcome>>,
    stop: AtomicBool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("what", &self.what)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// The executor side of a Redis sink: queues commands, keeps the deferred tuples, acks or
/// fails them as the writer reports.
struct Writer {
    tx: Option<SyncSender<redis::Cmd>>,
    shared: Arc<Shared>,
    pending: VecDeque<Tuple>,
    failed: u64,
    what: String,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(what: String, url: &RedisUrl, notifier: Notifier) -> Result<Writer> {
        let link = Link::open(&what, url, REPLY_TIMEOUT)?;
        let (tx, rx) = sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let theirs = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("redis-sink".into())
            .spawn(move || write_loop(link, rx, &theirs, &notifier))?;
        Ok(Writer {
            tx: Some(tx),
            shared,
            pending: VecDeque::new(),
            failed: 0,
            what,
            thread: Some(thread),
        })
    }

    /// Queues `cmd` for `input` and defers the input's ack.
    fn queue(&mut self, cmd: redis::Cmd, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        self.settle(out);
        let Some(tx) = &self.tx else {
            return Err(format!("{} is closed", self.what).into());
        };
        let cmd = match tx.try_send(cmd) {
            Ok(()) => None,
            Err(TrySendError::Full(cmd)) => Some(cmd),
            Err(TrySendError::Disconnected(_)) => {
                return Err(format!("{}: the writer thread is gone", self.what).into())
            }
        };
        if let Some(cmd) = cmd {
            // The queue is full: ack what is confirmed while waiting, so the writer's
            // reports do not pile up behind this wait.
            tx.send(cmd)
                .map_err(|_| format!("{}: the writer thread is gone", self.what))?;
        }
        out.defer();
        self.pending.push_back(input.clone());
        Ok(())
    }

    /// Acks (or fails) every tuple whose write the writer reported.
    fn settle(&mut self, out: &mut BoltOutput<'_>) {
        let done = std::mem::take(&mut *self.shared.done.lock().unwrap_or_else(|e| e.into_inner()));
        for outcome in done {
            let Some(t) = self.pending.pop_front() else {
                break;
            };
            match outcome {
                Ok(()) => out.ack(&t),
                Err(e) => {
                    self.failed += 1;
                    if self.failed.is_power_of_two() {
                        tracing::warn!(component = %self.what, failed = self.failed, "Redis refused a write: {e}");
                    }
                    out.fail(&t);
                }
            }
        }
    }

    /// Lets the writer send what is queued (a bounded run with acking off ends right
    /// after its last execute), for at most [`CLOSE_WAIT`]; then stops it.
    fn close(&mut self) {
        self.tx = None;
        let deadline = Instant::now() + CLOSE_WAIT;
        if let Some(t) = self.thread.take() {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.shared.stop.store(true, Ordering::Release);
            if t.is_finished() {
                let _ = t.join();
            }
        }
    }
}

/// The writer thread: one pipeline per batch of queued commands; on a broken connection
/// the batch is kept and sent again once reconnected.
fn write_loop(mut link: Link, rx: Receiver<redis::Cmd>, shared: &Shared, notifier: &Notifier) {
    let mut pipe = redis::pipe();
    loop {
        let Ok(first) = rx.recv() else {
            return;
        };
        pipe.clear();
        pipe.ignore_errors();
        pipe.add_command(first);
        let mut n = 1;
        while n < PIPELINE {
            match rx.try_recv() {
                Ok(cmd) => {
                    pipe.add_command(cmd);
                    n += 1;
                }
                Err(_) => break,
            }
        }
        let outcomes: Vec<Outcome> = loop {
            if shared.stop.load(Ordering::Acquire) {
                return;
            }
            let mut fresh = false;
            let Some(con) = link.get(&mut fresh) else {
                let wait = link.retry_at().saturating_duration_since(Instant::now());
                std::thread::sleep(wait.min(Duration::from_millis(100)));
                continue;
            };
            match pipe.query::<Vec<redis::RedisResult<redis::Value>>>(con) {
                Ok(replies) if replies.len() == n => {
                    let transient = replies
                        .iter()
                        .find_map(|r| r.as_ref().err().filter(|e| is_transient(e)));
                    if let Some(e) = transient {
                        link.broke(e);
                        continue;
                    }
                    break replies
                        .into_iter()
                        .map(|r| r.map(drop).map_err(|e| e.to_string()))
                        .collect();
                }
                Ok(replies) => {
                    let e = format!("{n} commands got {} replies", replies.len());
                    break (0..n).map(|_| Err(e.clone())).collect();
                }
                Err(e) if is_transient(&e) => link.broke(&e),
                Err(e) => {
                    let e = e.to_string();
                    break (0..n).map(|_| Err(e.clone())).collect();
                }
            }
        };
        shared
            .done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(outcomes);
        notifier.notify();
    }
}

fn value_of<'t>(input: &'t Tuple, name: &str, what: &str) -> Result<&'t topo_engine::Value> {
    input
        .field(name)
        .ok_or_else(|| format!("{what}: the input has no field `{name}`").into())
}

/// What a Redis sink writes for one input tuple.
pub trait Encode: std::fmt::Debug + Send + 'static {
    /// The type name, for errors and logs.
    const TYPE: &'static str;
    /// The server.
    fn url(&self) -> &RedisUrl;
    /// The command for `input`; `what` names the component in errors.
    fn command(&self, input: &Tuple, what: &str) -> Result<redis::Cmd>;
}

impl Encode for StreamConfig {
    const TYPE: &'static str = "redis_stream";

    fn url(&self) -> &RedisUrl {
        &self.url
    }

    fn command(&self, input: &Tuple, what: &str) -> Result<redis::Cmd> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&self.stream);
        if let Some(n) = self.maxlen {
            cmd.arg("MAXLEN").arg("~").arg(n);
        }
        cmd.arg("*");
        match &self.fields {
            Some(fields) => {
                for name in fields {
                    cmd.arg(name).arg(value_bytes(value_of(input, name, what)?));
                }
            }
            None => {
                for (name, v) in input.fields().iter().zip(input.values()) {
                    cmd.arg(name).arg(value_bytes(v));
                }
            }
        }
        Ok(cmd)
    }
}

impl Encode for KeyConfig {
    const TYPE: &'static str = "redis";

    fn url(&self) -> &RedisUrl {
        &self.url
    }

    fn command(&self, input: &Tuple, what: &str) -> Result<redis::Cmd> {
        let c = self;
        let mut key = c.key_prefix.as_bytes().to_vec();
        key.extend(value_bytes(value_of(input, &c.key, what)?));
        let value = match &c.value {
            Some(name) => Some(value_of(input, name, what)?),
            None => None,
        };
        let cmd = match c.command {
            Command::Set => {
                let mut cmd = redis::cmd("SET");
                cmd.arg(key).arg(value.map(value_bytes).unwrap_or_default());
                cmd
            }
            Command::Hset => {
                let field = c.field.as_deref().unwrap_or_default();
                let mut cmd = redis::cmd("HSET");
                cmd.arg(key)
                    .arg(value_bytes(value_of(input, field, what)?))
                    .arg(value.map(value_bytes).unwrap_or_default());
                cmd
            }
            Command::Incrby => {
                let by = match value {
                    None => 1,
                    Some(topo_engine::Value::Int(i)) => *i,
                    Some(v) => {
                        return Err(format!("{what}: INCRBY needs an integer, not {v:?}").into())
                    }
                };
                let mut cmd = redis::cmd("INCRBY");
                cmd.arg(key).arg(by);
                cmd
            }
        };
        Ok(cmd)
    }
}

/// A Redis sink: `redis_stream` with a [`StreamConfig`], `redis` with a [`KeyConfig`].
#[derive(Debug)]
pub struct RedisSink<C> {
    config: C,
    writer: Option<Writer>,
}

impl<C: Encode> Bolt for RedisSink<C> {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        let what = format!("`{}` sink `{}`", C::TYPE, ctx.component);
        self.writer = Some(Writer::start(
            what,
            self.config.url(),
            ctx.notifier.clone(),
        )?);
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(format!("`{}` sink was not prepared", C::TYPE).into());
        };
        let cmd = self.config.command(input, &writer.what)?;
        writer.queue(cmd, input, out)
    }

    fn wake(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if let Some(w) = self.writer.as_mut() {
            w.settle(out);
        }
        Ok(())
    }

    fn cleanup(&mut self) {
        if let Some(w) = self.writer.as_mut() {
            w.close();
        }
    }
}

impl Check for StreamConfig {
    fn check(&self) -> std::result::Result<(), String> {
        if self.fields.as_ref().is_some_and(Vec::is_empty) {
            return Err("`fields` is empty: name at least one input field, or leave it out to write every field".into());
        }
        Ok(())
    }
}

impl Check for KeyConfig {
    fn check(&self) -> std::result::Result<(), String> {
        check_key(self)
    }
}

fn check_key(c: &KeyConfig) -> std::result::Result<(), String> {
    match (c.command, &c.field, &c.value) {
        (Command::Hset, None, _) => {
            Err("`hset` needs `field`, the input field holding the hash field".into())
        }
        (Command::Set | Command::Hset, _, None) => Err(format!(
            "`{}` needs `value`, the input field holding the value",
            if c.command == Command::Set {
                "set"
            } else {
                "hset"
            }
        )),
        (Command::Set | Command::Incrby, Some(_), _) => Err("`field` is only for `hset`".into()),
        _ => Ok(()),
    }
}

/// The bytes Redis stores for a tuple value: strings and bytes as they are, numbers and
/// booleans as text, null as the empty string, lists and maps as JSON.
pub fn value_bytes(v: &topo_engine::Value) -> Vec<u8> {
    use topo_engine::Value;
    match v {
        Value::Null => Vec::new(),
        Value::Bool(b) => b.to_string().into_bytes(),
        Value::Int(i) => i.to_string().into_bytes(),
        Value::Float(f) => f.to_string().into_bytes(),
        Value::Str(s) => s.as_bytes().to_vec(),
        Value::Bytes(b) => b.to_vec(),
        other => serde_json::to_vec(other).unwrap_or_default(),
    }
}

/// Registers the `redis_stream` and `redis` sinks.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "redis_stream",
        "Appends every tuple to Redis stream `stream` (XADD, `fields` or every input field, optional approximate `maxlen`); acks once Redis confirmed.",
        |_: &Checked<StreamConfig>| Vec::new(),
        |Checked::<StreamConfig>(config)| Ok(RedisSink { config, writer: None }),
    );
    registry.bolt(
        "redis",
        "Writes every tuple to a Redis key: `command` = set | hset | incrby, with `key`, `field` and `value` naming input fields; acks once Redis confirmed.",
        |_: &Checked<KeyConfig>| Vec::new(),
        |Checked::<KeyConfig>(config)| Ok(RedisSink { config, writer: None }),
    );
}
