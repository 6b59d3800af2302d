//! A rewinding multilang spout (`rewinds = true`): the `position` and `seek` exchanges
//! with its child.
//!
//! ```text
//! engine → child   {"command": "position"}
//! child → engine   {"command": "position", "position": <any JSON value>}
//!
//! engine → child   {"command": "seek", "position": <a value the child reported>}
//! child → engine   {"command": "sync"}
//! ```
//!
//! Each message is followed by a line `end`, as every multilang message is. `position`
//! is asked at a checkpoint, between two `next`s (after the last one's `sync`), and is
//! answered by the position message alone: everything the child emitted before it is
//! before that position. `seek` comes right after the handshake of a run restored from a
//! checkpoint, before the first `next`. The answers are bounded like every message
//! (`max_message_bytes`), and the position is stored in the checkpoint as JSON.
//!
//! A child that exited with status 0 (its stream ended) is recorded as ended: a run
//! restored from such a checkpoint does not start it again.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value as Json};

use super::SpoutCore;
use crate::child::Incoming;
use crate::protocol::log_message;

/// What a rewinding spout task records in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Recorded {
    /// The position the child reported.
    At(Json),
    /// The child's stream ended (it exited with status 0).
    Ended,
}

impl SpoutCore {
    /// Asks the child for its position; the bytes to record in a checkpoint.
    pub fn position(&mut self) -> Result<Vec<u8>, String> {
        let recorded = if self.finished {
            Recorded::Ended
        } else {
            if self.awaiting_sync {
                return Err("the child has not answered its last command yet".into());
            }
            Recorded::At(self.exchange(&json!({"command": "position"}), "position")?)
        };
        serde_json::to_vec(&recorded).map_err(|e| e.to_string())
    }

    /// Sends the child back to a position [`SpoutCore::position`] recorded.
    pub fn seek(&mut self, position: &[u8]) -> Result<(), String> {
        let recorded: Recorded = serde_json::from_slice(position)
            .map_err(|e| format!("not a position of a multilang spout: {e}"))?;
        match recorded {
            Recorded::Ended => {
                // Everything it emitted is in the checkpoint already.
                self.child = None;
                self.finished = true;
            }
            Recorded::At(at) => {
                self.exchange(&json!({"command": "seek", "position": at}), "sync")?;
            }
        }
        self.queued.clear();
        self.ids.clear();
        Ok(())
    }

    /// Sends `cmd` and reads until the child's answer, a message whose command is
    /// `answer`: its `position` (null for a `sync`). Logs are passed on; anything else
    /// breaks the protocol, and the child is lost.
    fn exchange(&mut self, cmd: &Json, answer: &str) -> Result<Json, String> {
        let Some(child) = &self.child else {
            return Err("the child is not running".into());
        };
        child.send(cmd);
        let (component, task) = (self.setup.component.clone(), self.setup.task);
        let broken = loop {
            let msg = self
                .child
                .as_ref()
                .and_then(|c| c.recv(self.config.timeout()));
            match msg {
                Some(Incoming::Msg(mut m)) => {
                    match m.get("command").and_then(Json::as_str).unwrap_or("") {
                        c if c == answer => {
                            return Ok(m.get_mut("position").map(Json::take).unwrap_or_default())
                        }
                        "log" => log_message(&component, task, &m),
                        other => {
                            break format!("it answered {cmd} with {other:?} instead of {answer:?}")
                        }
                    }
                }
                Some(Incoming::Bad(text, e)) => {
                    break format!("it answered {cmd} with {text:?}, which is not JSON: {e}")
                }
                Some(Incoming::TooLarge(n)) => {
                    break format!(
                        "it answered {cmd} with more than {n} bytes, over `max_message_bytes`"
                    )
                }
                Some(Incoming::Closed) => break format!("it exited instead of answering {cmd}"),
                None => break format!("it did not answer {cmd} in time"),
            }
        };
        tracing::error!(
            component,
            task,
            "Multilang spout broke the protocol: {broken}."
        );
        self.lose();
        Err(broken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_recorded_as_tagged_json() {
        let at = serde_json::to_vec(&Recorded::At(json!({"n": 7}))).expect("json");
        assert_eq!(at, br#"{"at":{"n":7}}"#);
        assert_eq!(
            serde_json::to_vec(&Recorded::Ended).expect("json"),
            br#""ended""#
        );
    }
}
