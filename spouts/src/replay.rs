//! Replay bookkeeping shared by the line spouts: keeps what was emitted until it is acked.

use std::collections::{HashMap, VecDeque};

use topo_engine::MsgId;

/// The lines a spout emitted and has not seen acked, and the ones to emit again.
///
/// With acking off nothing is kept (no `ack` would ever free it).
#[derive(Debug, Default)]
pub(crate) struct Replay {
    track: bool,
    pending: HashMap<MsgId, String>,
    again: VecDeque<MsgId>,
}

impl Replay {
    /// A tracker that keeps lines only when `acking` is on.
    pub(crate) fn new(acking: bool) -> Self {
        Replay {
            track: acking,
            ..Replay::default()
        }
    }

    /// Remembers `line`, emitted as `id`, until it is acked.
    pub(crate) fn sent(&mut self, id: MsgId, line: &str) {
        if self.track {
            self.pending.insert(id, line.to_string());
        }
    }

    /// The tree of `id` completed.
    pub(crate) fn ack(&mut self, id: MsgId) {
        self.pending.remove(&id);
    }

    /// The tree of `id` failed: queue it to be emitted again.
    pub(crate) fn fail(&mut self, id: MsgId) {
        if self.pending.contains_key(&id) {
            self.again.push_back(id);
        }
    }

    /// The next failed line to emit again, if any.
    pub(crate) fn next(&mut self) -> Option<(MsgId, &str)> {
        while let Some(id) = self.again.pop_front() {
            if self.pending.contains_key(&id) {
                return self.pending.get(&id).map(|l| (id, l.as_str()));
            }
        }
        None
    }

    /// Forgets everything (the spout was sent back to a checkpoint's position).
    pub(crate) fn clear(&mut self) {
        self.pending.clear();
        self.again.clear();
    }

    /// Lines emitted and not acked yet.
    #[cfg(test)]
    pub(crate) fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_line_comes_back_once_and_an_acked_one_never() {
        let mut r = Replay::new(true);
        r.sent(1, "a");
        r.sent(2, "b");
        r.ack(1);
        r.fail(1);
        r.fail(2);
        assert_eq!(r.next(), Some((2, "b")));
        assert_eq!(r.next(), None);
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn nothing_is_kept_with_acking_off() {
        let mut r = Replay::new(false);
        r.sent(1, "a");
        r.fail(1);
        assert_eq!((r.pending(), r.next()), (0, None));
    }
}
