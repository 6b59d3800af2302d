//! `file_lines`: one tuple per line of a text file, replayed when it fails.
//!
//! Line numbers count from 1 and are the message ids. With parallelism p, task k emits the
//! lines whose number n has `n % p == k`, so every line is emitted by exactly one task.
//! At the end of the file the spout finishes, unless `follow = true`, which tails it.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::{MsgId, Poll, Registry, Result, Spout, SpoutOutput, TaskContext};

use crate::replay::Replay;

/// Config of `file_lines`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The file, relative to the topology file's folder.
    pub path: PathBuf,
    /// Keep reading lines appended to the file instead of finishing at its end.
    #[serde(default)]
    pub follow: bool,
}

/// Reads the lines of one file that belong to one task.
#[derive(Debug)]
pub struct LineReader {
    reader: BufReader<File>,
    follow: bool,
    /// Lines read so far (the number of the last one).
    line_no: u64,
    task_index: u64,
    tasks: u64,
    partial: Vec<u8>,
    /// Bytes of the file read into `partial` or past it.
    offset: u64,
}

impl LineReader {
    /// Opens `path` for task `task_index` of `tasks`.
    pub fn open(path: &Path, follow: bool, task_index: usize, tasks: usize) -> Result<Self> {
        let file = File::open(path)
            .map_err(|e| format!("`file_lines` cannot open `{}`: {e}", path.display()))?;
        Ok(LineReader {
            reader: BufReader::new(file),
            follow,
            line_no: 0,
            task_index: task_index as u64,
            tasks: tasks.max(1) as u64,
            partial: Vec::new(),
            offset: 0,
        })
    }

    /// Where the next line starts: its byte offset and the number of lines before it.
    pub fn position(&self) -> (u64, u64) {
        (self.offset - self.partial.len() as u64, self.line_no)
    }

    /// Goes to a [`LineReader::position`].
    pub fn seek(&mut self, (offset, line_no): (u64, u64)) -> Result<()> {
        self.reader.seek(SeekFrom::Start(offset))?;
        self.offset = offset;
        self.line_no = line_no;
        self.partial.clear();
        Ok(())
    }

    /// The next line of this task with its number, or `None` at the end of the file (for
    /// now, when following).
    pub fn next_line(&mut self) -> Result<Option<(u64, String)>> {
        loop {
            let n = self.reader.read_until(b'\n', &mut self.partial)?;
            self.offset += n as u64;
            let complete = self.partial.last() == Some(&b'\n');
            if n == 0 && self.partial.is_empty() {
                return Ok(None);
            }
            if !complete && self.follow {
                // A line being written: wait for its end.
                return Ok(None);
            }
            let mut bytes = std::mem::take(&mut self.partial);
            if bytes.last() == Some(&b'\n') {
                bytes.pop();
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
            }
            self.line_no += 1;
            if self.line_no % self.tasks == self.task_index {
                let line = String::from_utf8(bytes)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                return Ok(Some((self.line_no, line)));
            }
        }
    }
}

/// The spout.
#[derive(Debug)]
pub struct FileLines {
    config: Config,
    reader: Option<LineReader>,
    replay: Replay,
}

impl Spout for FileLines {
    fn open(&mut self, ctx: &TaskContext) -> Result<()> {
        let path = ctx.resolve(&self.config.path);
        let tasks = ctx.tasks_of(&ctx.component).len();
        self.reader = Some(LineReader::open(
            &path,
            self.config.follow,
            ctx.task_index,
            tasks,
        )?);
        self.replay = Replay::new(ctx.topology.settings().acking);
        Ok(())
    }

    fn next_tuple(&mut self, out: &mut SpoutOutput<'_>) -> Result<Poll> {
        if let Some((id, line)) = self.replay.next() {
            out.emit_id(id, [line]);
            return Ok(Poll::Ready);
        }
        let Some(reader) = self.reader.as_mut() else {
            return Ok(Poll::Done);
        };
        match reader.next_line()? {
            Some((id, line)) => {
                out.emit_id(id, [line.as_str()]);
                self.replay.sent(id, &line);
                Ok(Poll::Ready)
            }
            None if self.config.follow => Ok(Poll::Idle),
            None => Ok(Poll::Done),
        }
    }

    fn ack(&mut self, id: MsgId) {
        self.replay.ack(id);
    }

    fn fail(&mut self, id: MsgId) {
        self.replay.fail(id);
    }

    fn position(&mut self) -> Option<Vec<u8>> {
        let (offset, line) = self.reader.as_ref()?.position();
        Some(encode_position(&[offset, line]))
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let [offset, line] = decode_position(position)?;
        self.replay.clear();
        match self.reader.as_mut() {
            Some(r) => r.seek((offset, line)),
            None => Err("`file_lines` cannot seek before it is open".into()),
        }
    }
}

/// A spout position made of `N` integers: each little-endian.
pub(crate) fn encode_position(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Reads back what [`encode_position`] wrote.
pub(crate) fn decode_position<const N: usize>(bytes: &[u8]) -> Result<[u64; N]> {
    if bytes.len() != N * 8 {
        return Err(format!("a position of {} bytes, not {}", bytes.len(), N * 8).into());
    }
    let mut out = [0; N];
    for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut w = [0; 8];
        w.copy_from_slice(c);
        *o = u64::from_le_bytes(w);
    }
    Ok(out)
}

/// Registers `file_lines`.
pub fn register(registry: &mut Registry) {
    registry.spout(
        "file_lines",
        "One tuple per line of a text file (`path`), message id = line number; failed lines are replayed; `follow` tails the file.",
        |_: &Config| vec![StreamDecl::default_stream(["line"])],
        |config: Config| {
            Ok(FileLines {
                config,
                reader: None,
                replay: Replay::new(true),
            })
        },
    );
    registry.rewinds("file_lines", |_: &Config| true);
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn all(r: &mut LineReader) -> Vec<(u64, String)> {
        std::iter::from_fn(|| r.next_line().expect("read")).collect()
    }

    #[test]
    fn lines_are_numbered_from_one_and_split_over_tasks() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"a\nb\r\nc\nd\ne").expect("write");
        let mut one = LineReader::open(f.path(), false, 0, 1).expect("open");
        let got: Vec<_> = all(&mut one).into_iter().map(|(n, _)| n).collect();
        assert_eq!(got, [1, 2, 3, 4, 5]);
        let mut t1 = LineReader::open(f.path(), false, 1, 2).expect("open");
        assert_eq!(
            all(&mut t1),
            [(1, "a".to_string()), (3, "c".into()), (5, "e".into())]
        );
        let mut t0 = LineReader::open(f.path(), false, 0, 2).expect("open");
        assert_eq!(all(&mut t0), [(2, "b".to_string()), (4, "d".into())]);
    }

    #[test]
    fn following_waits_for_the_end_of_a_line_being_written() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"one\ntw").expect("write");
        f.flush().expect("flush");
        let mut r = LineReader::open(f.path(), true, 0, 1).expect("open");
        assert_eq!(r.next_line().expect("read"), Some((1, "one".into())));
        assert_eq!(r.next_line().expect("read"), None);
        f.write_all(b"o\nthree\n").expect("write");
        f.flush().expect("flush");
        assert_eq!(r.next_line().expect("read"), Some((2, "two".into())));
        assert_eq!(r.next_line().expect("read"), Some((3, "three".into())));
        assert_eq!(r.next_line().expect("read"), None);
    }

    #[test]
    fn a_reader_sent_back_to_a_position_reads_the_same_lines_again() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"a\nbb\r\nccc\nd\n").expect("write");
        let mut r = LineReader::open(f.path(), false, 1, 2).expect("open");
        assert_eq!(r.next_line().expect("read"), Some((1, "a".into())));
        let at = r.position();
        assert_eq!(at, (2, 1));
        let rest = all(&mut r);
        assert_eq!(rest, [(3, "ccc".to_string())]);
        r.seek(at).expect("seek");
        assert_eq!(all(&mut r), rest);
        assert_eq!(
            decode_position::<2>(&encode_position(&[7, 9])).expect("decode"),
            [7, 9]
        );
    }

    #[test]
    fn a_missing_file_is_named_in_the_error() {
        let err = LineReader::open(Path::new("/nonexistent/x.txt"), false, 0, 1)
            .expect_err("missing file");
        assert_eq!(
            err.to_string(),
            "`file_lines` cannot open `/nonexistent/x.txt`: No such file or directory (os error 2)"
        );
    }
}
