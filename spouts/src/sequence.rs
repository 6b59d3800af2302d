//! `sequence`: the integers `start, start+1, …` (bounded by `count`), field `n`.
//!
//! With parallelism p, task k emits the numbers at offsets k, k+p, k+2p, … so the tasks
//! together emit each number once. Offsets are the message ids; failed numbers are
//! emitted again.

use std::collections::VecDeque;

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::{MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext};

/// Config of `sequence`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How many numbers in all (over every task); unbounded when absent.
    pub count: Option<u64>,
    /// The first number (default 0).
    #[serde(default)]
    pub start: i64,
}

/// The spout.
#[derive(Debug)]
pub struct Sequence {
    config: Config,
    next: u64,
    step: u64,
    replay: VecDeque<MsgId>,
}

impl Sequence {
    /// Task `task_index` of `tasks`.
    pub fn new(config: Config, task_index: usize, tasks: usize) -> Self {
        Sequence {
            config,
            next: task_index as u64,
            step: tasks.max(1) as u64,
            replay: VecDeque::new(),
        }
    }

    /// The next offset to emit, replays first; `None` when the task is done.
    pub fn next_offset(&mut self) -> Option<u64> {
        if let Some(i) = self.replay.pop_front() {
            return Some(i);
        }
        if self.config.count.is_some_and(|n| self.next >= n) {
            return None;
        }
        let i = self.next;
        self.next += self.step;
        Some(i)
    }

    /// The number at offset `i`.
    pub fn number(&self, i: u64) -> i64 {
        self.config.start.wrapping_add(i as i64)
    }
}

impl Spout for Sequence {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        *self = Sequence::new(
            self.config.clone(),
            ctx.task_index,
            ctx.tasks_of(&ctx.component).len(),
        );
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        match self.next_offset() {
            Some(i) => {
                out.emit_id(i, [self.number(i)]);
                Ok(Poll::Ready)
            }
            None => Ok(Poll::Done),
        }
    }

    fn fail(&mut self, id: MsgId) {
        self.replay.push_back(id);
    }

    fn position(&mut self) -> Option<Vec<u8>> {
        Some(crate::file::encode_position(&[self.next]))
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let [next] = crate::file::decode_position(position)?;
        self.next = next;
        self.replay.clear();
        Ok(())
    }
}

/// Registers `sequence`.
pub fn register(registry: &mut Registry) {
    registry.spout(
        "sequence",
        "The integers from `start` (default 0), `count` of them (unbounded when absent), field `n`; failed ones are replayed.",
        |_: &Config| vec![StreamDecl::default_stream(["n"])],
        |c: Config| Ok(Sequence::new(c, 0, 1)),
    );
    registry.rewinds("sequence", |_: &Config| true);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(s: &mut Sequence) -> Vec<i64> {
        std::iter::from_fn(|| s.next_offset().map(|i| s.number(i))).collect()
    }

    #[test]
    fn tasks_split_the_range_between_them() {
        let config = Config {
            count: Some(7),
            start: 10,
        };
        let mut t0 = Sequence::new(config.clone(), 0, 3);
        let mut t2 = Sequence::new(config, 2, 3);
        assert_eq!(drain(&mut t0), [10, 13, 16]);
        assert_eq!(drain(&mut t2), [12, 15]);
    }

    #[test]
    fn a_failed_number_is_emitted_again() {
        let mut s = Sequence::new(
            Config {
                count: Some(2),
                start: 0,
            },
            0,
            1,
        );
        assert_eq!(drain(&mut s), [0, 1]);
        s.fail(1);
        assert_eq!(drain(&mut s), [1]);
    }
}
