//! Every payload kind that crosses a connection between workers, and the codecs of the
//! small ones.
//!
//! The transport's frames (`transport::frame`) carry a destination task and an opaque
//! payload; this table is what the runtime puts in them. Task ids start at 1, so two
//! ids no task has are reserved for messages to the receiving worker itself.
//!
//! | frame     | `dest_task`          | payload                                  | codec |
//! |-----------|----------------------|------------------------------------------|-------|
//! | `Data`    | a bolt task          | a batch of tuples                        | `0xc1` [`BATCH_TAG`], then runs of tuples ([`encode_batch_into`](super::encode_batch_into)) |
//! | `Data`    | a bolt task          | the end of an upstream task's stream     | MessagePack `{"Eos": from_task}` |
//! | `Data`    | a bolt task          | a checkpoint barrier from an upstream task, in order with its batches | MessagePack `{"Barrier": [from_task, checkpoint]}` |
//! | `Acker`   | an acker task        | acker messages (init, xor, fail)         | `0xc1` [`ACKER_TAG`], then per message a kind byte and little-endian fields ([`encode_acker`]) |
//! | `Control` | a spout task         | one spout message (acked, failed, activate, deactivate, stop, checkpoint) | MessagePack of `SpoutMsg` ([`encode_control`]) |
//! | `Control` | [`GRANT_TASK`] (0)   | a grant of per-task flow control         | MessagePack `[task u32, batches u32]` ([`encode_grant`]) |
//! | `Control` | [`REPORT_TASK`] (`u32::MAX`) | the sender's bolt tasks' loads   | `(task u32 BE, load u16 BE) ...`, load `0..=1024` ([`encode_loads`]) |
//!
//! ```text
//! Data    = 0xc1 batch                      a batch (see encode_batch_into)
//!         | {"Eos": from_task}              from_task's stream ended
//!         | {"Barrier": [from_task, id]}    checkpoint id's barrier from from_task
//!         | "Wake"                          (a local notifier; never sent between workers)
//! Acker   = 0xc1 (1 root:u64 xor:u64 spout:u32 | 2 root:u64 xor:u64 | 3 root:u64) ...
//! Control = spout_msg                       to a spout task, e.g. {"Acked": [root, ...]}
//!         | [task, batches]                 to GRANT_TASK
//!         | (task:u32 BE, load:u16 BE) ...  to REPORT_TASK
//! ```
//!
//! `0xc1` is never the first byte of MessagePack, so a batch and an end of stream cannot be
//! mistaken for each other. A payload that does not decode is a [`WireError`]: the
//! receiving worker drops it, logs and counts it, and keeps running.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::WireError;
use crate::route::{AckerMsg, Inbound, SpoutMsg};
use crate::tuple::TaskId;

/// First byte of a batch payload: `0xc1` is never the start of MessagePack, so a batch
/// and the MessagePack data messages cannot be mistaken for each other.
pub const BATCH_TAG: u8 = 0xc1;

/// First byte of an acker payload (like [`BATCH_TAG`], never the start of MessagePack).
pub const ACKER_TAG: u8 = 0xc1;

/// The `Control` frame's task id that carries a grant of per-task flow control (no task
/// has it).
pub const GRANT_TASK: TaskId = 0;

/// The `Control` frame's task id that carries a load report (no task has it).
pub const REPORT_TASK: TaskId = u32::MAX;

/// Bytes per task in a load report.
pub const LOAD_ENTRY: usize = 6;

/// A data payload other than a batch.
#[derive(Serialize, Deserialize)]
enum Data {
    Eos(TaskId),
    Wake,
    Barrier(TaskId, u64),
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, WireError> {
    rmp_serde::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| WireError::Encode(e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Decode {
        what,
        message: e.to_string(),
    })
}

/// Appends a data message that is not a batch (an end of stream, a wake) to `out`.
pub(super) fn encode_signal(msg: &Inbound, out: &mut BytesMut) -> Result<(), WireError> {
    let data = match msg {
        Inbound::Eos(from) => Data::Eos(*from),
        Inbound::Wake => Data::Wake,
        Inbound::Barrier { from, id } => Data::Barrier(*from, *id),
        Inbound::Batch(_) => return Err(WireError::Encode("a batch is not a signal".into())),
    };
    out.extend_from_slice(&encode(&data)?);
    Ok(())
}

/// Decodes a data message that does not start with [`BATCH_TAG`].
pub(super) fn decode_signal(bytes: &[u8]) -> Result<Inbound, WireError> {
    Ok(match decode::<Data>("data", bytes)? {
        Data::Eos(from) => Inbound::Eos(from),
        Data::Wake => Inbound::Wake,
        Data::Barrier(from, id) => Inbound::Barrier { from, id },
    })
}

/// Encodes acker messages: [`ACKER_TAG`], then per message a kind byte and its fields,
/// little-endian: `1 root:u64 xor:u64 spout:u32` (init), `2 root:u64 xor:u64` (xor),
/// `3 root:u64` (fail).
pub fn encode_acker(msgs: &[AckerMsg]) -> Result<Bytes, WireError> {
    let mut out = BytesMut::with_capacity(1 + msgs.len() * 21);
    out.put_u8(ACKER_TAG);
    for m in msgs {
        match *m {
            AckerMsg::Init { root, xor, spout } => {
                out.put_u8(1);
                out.put_u64_le(root);
                out.put_u64_le(xor);
                out.put_u32_le(spout);
            }
            AckerMsg::Xor { root, xor } => {
                out.put_u8(2);
                out.put_u64_le(root);
                out.put_u64_le(xor);
            }
            AckerMsg::Fail { root } => {
                out.put_u8(3);
                out.put_u64_le(root);
            }
        }
    }
    Ok(out.freeze())
}

/// Decodes acker messages.
pub fn decode_acker(bytes: &[u8]) -> Result<Vec<AckerMsg>, WireError> {
    let bad = |message: &str| WireError::Decode {
        what: "acker",
        message: message.to_owned(),
    };
    let Some((&ACKER_TAG, mut rest)) = bytes.split_first() else {
        return Err(bad("not an acker payload"));
    };
    // Takes `N` bytes off the front of `rest`.
    fn take<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
        let (head, tail) = rest.split_first_chunk::<N>()?;
        *rest = tail;
        Some(*head)
    }
    let ends_early = || bad("the payload ends early");
    // The smallest message (a fail) takes 9 bytes.
    let mut msgs = Vec::with_capacity(rest.len() / 9);
    while let Some([kind]) = take::<1>(&mut rest) {
        let root = u64::from_le_bytes(take(&mut rest).ok_or_else(ends_early)?);
        msgs.push(match kind {
            1 => {
                let xor = u64::from_le_bytes(take(&mut rest).ok_or_else(ends_early)?);
                let spout = u32::from_le_bytes(take(&mut rest).ok_or_else(ends_early)?);
                AckerMsg::Init { root, xor, spout }
            }
            2 => AckerMsg::Xor {
                root,
                xor: u64::from_le_bytes(take(&mut rest).ok_or_else(ends_early)?),
            },
            3 => AckerMsg::Fail { root },
            _ => return Err(bad("unknown acker message kind")),
        });
    }
    Ok(msgs)
}

/// Encodes a message to a spout task.
pub fn encode_control(msg: &SpoutMsg) -> Result<Bytes, WireError> {
    encode(msg)
}

/// Decodes a message to a spout task.
pub fn decode_control(bytes: &[u8]) -> Result<SpoutMsg, WireError> {
    decode("control", bytes)
}

/// Encodes a grant of `batches` for task `task` (a `Control` payload to [`GRANT_TASK`]).
pub fn encode_grant(task: TaskId, batches: u32) -> Result<Bytes, WireError> {
    encode(&(task, batches))
}

/// Decodes a grant: (task, batches).
pub fn decode_grant(payload: &[u8]) -> Result<(TaskId, u32), WireError> {
    decode("grant", payload)
}

/// Encodes a load report (a `Control` payload to [`REPORT_TASK`]): each task's load,
/// `0..=1024`.
pub fn encode_loads(loads: impl ExactSizeIterator<Item = (TaskId, u16)>) -> Bytes {
    let mut b = BytesMut::with_capacity(loads.len() * LOAD_ENTRY);
    for (task, load) in loads {
        b.put_u32(task);
        b.put_u16(load);
    }
    b.freeze()
}

/// Decodes a load report into (task, load) pairs; loads are as sent (the receiver
/// clamps them).
pub fn decode_loads(payload: &[u8]) -> Result<impl Iterator<Item = (TaskId, u16)> + '_, WireError> {
    if !payload.len().is_multiple_of(LOAD_ENTRY) {
        return Err(WireError::Decode {
            what: "load report",
            message: format!(
                "a load report is {} bytes, not a multiple of {LOAD_ENTRY}",
                payload.len()
            ),
        });
    }
    Ok(payload.chunks_exact(LOAD_ENTRY).map(|e| {
        (
            u32::from_be_bytes([e[0], e[1], e[2], e[3]]),
            u16::from_be_bytes([e[4], e[5]]),
        )
    }))
}
