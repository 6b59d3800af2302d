//! `stdin_lines`: one tuple per line of standard input, field `line`; finishes at EOF.
//!
//! Standard input belongs to the process, so only task 0 of the component reads it; the
//! other tasks finish at once. A reader thread feeds the executor and wakes it; it reads
//! at most [`READ_AHEAD`] lines ahead of the spout, so a fast producer (`yes | topo run`)
//! waits for a slow topology instead of filling memory.
//!
//! With `workers > 1`, `topo run` gives its standard input to the worker that runs task 0
//! (a worker process cannot read a terminal, so a terminal is refused there); in a
//! cluster a worker has none, and `topo submit` refuses the spout.

use std::io::{BufRead, BufReader, Read};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::{MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext};

use crate::replay::Replay;

/// The registered type name.
pub const KIND: &str = "stdin_lines";

/// Lines the reader thread reads ahead of the spout at most.
pub const READ_AHEAD: usize = 1024;

/// `stdin_lines` takes no config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// Reads lines of `input` on a thread, at most [`READ_AHEAD`] ahead of the receiver; each
/// one is sent with `notify` called after it. The channel closes at EOF (after an `Err` if
/// reading failed).
pub fn spawn_reader<R: Read + Send + 'static>(
    input: R,
    notify: impl Fn() + Send + 'static,
) -> Receiver<std::io::Result<String>> {
    let (tx, rx) = mpsc::sync_channel(READ_AHEAD);
    std::thread::Builder::new()
        .name("stdin_lines".into())
        .spawn(move || {
            let mut reader = BufReader::new(input);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                            if buf.last() == Some(&b'\r') {
                                buf.pop();
                            }
                        }
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.send(Ok(line)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                }
                notify();
            }
            notify();
        })
        .map_or_else(
            |e| {
                let (tx, rx) = mpsc::channel();
                let _ = tx.send(Err(e));
                rx
            },
            |_| rx,
        )
}

/// The spout.
#[derive(Debug, Default)]
pub struct StdinLines {
    lines: Option<Receiver<std::io::Result<String>>>,
    line_no: u64,
    replay: Replay,
}

impl Spout for StdinLines {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        self.replay = Replay::new(ctx.topology.settings().acking);
        if ctx.task_index == 0 {
            let notifier = ctx.notifier.clone();
            self.lines = Some(spawn_reader(std::io::stdin(), move || notifier.notify()));
        }
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        if let Some((id, line)) = self.replay.next() {
            out.emit_id(id, [line]);
            return Ok(Poll::Ready);
        }
        let Some(lines) = &self.lines else {
            return Ok(Poll::Done);
        };
        match lines.try_recv() {
            Ok(Ok(line)) => {
                self.line_no += 1;
                out.emit_id(self.line_no, [line.as_str()]);
                self.replay.sent(self.line_no, &line);
                Ok(Poll::Ready)
            }
            Ok(Err(e)) => Err(format!("`stdin_lines` cannot read standard input: {e}").into()),
            Err(TryRecvError::Empty) => Ok(Poll::Idle),
            Err(TryRecvError::Disconnected) => Ok(Poll::Done),
        }
    }

    fn ack(&mut self, id: MsgId) {
        self.replay.ack(id);
    }

    fn fail(&mut self, id: MsgId) {
        self.replay.fail(id);
    }
}

/// Registers `stdin_lines`.
pub fn register(registry: &mut Registry) {
    registry.spout(
        KIND,
        "One tuple per line of standard input (field `line`); finishes at end of input.",
        |_: &Config| vec![StreamDecl::default_stream(["line"])],
        |_: Config| Ok(StdinLines::default()),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_sends_every_line_then_closes() {
        let rx = spawn_reader(std::io::Cursor::new(b"a\r\nb\n\nc".to_vec()), || {});
        let got: Vec<String> = rx.iter().map(|l| l.expect("line")).collect();
        assert_eq!(got, ["a", "b", "", "c"]);
    }
}
