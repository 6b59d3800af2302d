//! Windows: lengths and slides by count or time, clocks, watermarks and late tuples —
//! the pieces every windowed bolt shares — and [`Windowed`], Storm's windowed bolt.
//!
//! Semantics (Storm's `BaseWindowedBolt`, with Flink's alignment):
//! - a window is a [`WindowSpec`]: a length and a slide, each a number of tuples or a
//!   duration ([`Length`]); a slide equal to the length tumbles;
//! - time windows are `[start, start + length)` in milliseconds, with `start` a multiple
//!   of the slide since the epoch; a window fires when time passes its end;
//! - time is processing time (a [`Clock`], the system's unless a test sets its own) or
//!   event time: a timestamp per tuple (a field or an extractor, milliseconds) and a
//!   watermark, the minimum over the upstream tasks of the latest timestamp each sent,
//!   minus a lag ([`Watermarks`]); it is recomputed every watermark interval (1 s by
//!   default; zero: after every tuple) and moves only forward;
//! - a tuple whose timestamp is behind the watermark is late: it goes to the late stream
//!   when one is declared (one field, [`LATE_FIELD`], the tuple's values as a list), else
//!   it is counted and logged, and dropped;
//! - the end of the input is the end of time: every window that holds a tuple fires.
//!
//! With acking on, Storm's checks hold ([`WindowSpec::check_acking`]): every tuple is
//! held, unacked, until it has left every window, so a count window's length and slide
//! must fit in `max_spout_pending` and a time window's in the message timeout.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use topo_dsl::Settings;

use crate::component::TaskContext;
use crate::tuple::{StreamInfo, TaskId, Tuple, Values};
use crate::value::Value;

mod windowed;

pub use windowed::{Window, WindowOutput, Windowed, WindowedBolt};

/// The field of a late stream: the late tuple's values, as a list.
pub const LATE_FIELD: &str = "late_tuple";

/// A window's length or slide: a number of tuples, or a duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// So many tuples.
    Count(u64),
    /// So many milliseconds.
    Millis(i64),
}

impl Length {
    /// A duration, in whole milliseconds.
    pub fn duration(d: Duration) -> Length {
        Length::Millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn is_zero(self) -> bool {
        matches!(self, Length::Count(0)) || matches!(self, Length::Millis(m) if m <= 0)
    }
}

impl std::fmt::Display for Length {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Length::Count(n) => write!(f, "{n} tuples"),
            Length::Millis(ms) => write!(f, "{ms} ms"),
        }
    }
}

/// A window's length and slide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// How much a window holds.
    pub length: Length,
    /// How far consecutive windows are apart.
    pub slide: Length,
}

/// A window that cannot run as configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// A zero length or slide.
    #[error("a window's length and slide must be positive (length {length}, slide {slide})")]
    Zero {
        /// The length.
        length: Length,
        /// The slide.
        slide: Length,
    },
    /// Storm's check of a count window against `max_spout_pending`.
    #[error("window count (length + slide) {count} is more than max_spout_pending {pending}: with acking on, a window holds its tuples unacked, so the spouts would stall; raise max_spout_pending or turn acking off")]
    CountOverPending {
        /// Length + slide, in tuples.
        count: u64,
        /// The topology's `max_spout_pending`.
        pending: usize,
    },
    /// Storm's check of a time window against the message timeout.
    #[error("window duration (length + slide) {millis} ms is more than the message timeout {timeout_ms} ms: with acking on, a window holds its tuples unacked, so their trees would time out; raise message_timeout_secs or turn acking off")]
    TimeOverTimeout {
        /// Length + slide, in milliseconds.
        millis: i64,
        /// The message timeout, in milliseconds.
        timeout_ms: u128,
    },
}

impl WindowSpec {
    /// A tumbling window: the slide is the length.
    pub fn tumbling(length: Length) -> WindowSpec {
        WindowSpec {
            length,
            slide: length,
        }
    }

    /// A sliding window.
    pub fn sliding(length: Length, slide: Length) -> WindowSpec {
        WindowSpec { length, slide }
    }

    /// Refuses a zero length or slide.
    pub fn check(&self) -> Result<(), WindowError> {
        if self.length.is_zero() || self.slide.is_zero() {
            return Err(WindowError::Zero {
                length: self.length,
                slide: self.slide,
            });
        }
        Ok(())
    }

    /// Storm's checks with acking on: a count window's length + slide ≤
    /// `max_spout_pending`, a time window's ≤ the message timeout. (A window mixing the
    /// two is checked on each part of its kind.)
    pub fn check_acking(&self, settings: &Settings) -> Result<(), WindowError> {
        self.check()?;
        if !settings.acking {
            return Ok(());
        }
        let counts: u64 = [self.length, self.slide]
            .iter()
            .map(|l| match l {
                Length::Count(n) => *n,
                Length::Millis(_) => 0,
            })
            .sum();
        if let Some(pending) = settings.max_spout_pending {
            if counts > pending as u64 {
                return Err(WindowError::CountOverPending {
                    count: counts,
                    pending,
                });
            }
        }
        let millis: i64 = [self.length, self.slide]
            .iter()
            .map(|l| match l {
                Length::Millis(ms) => *ms,
                Length::Count(_) => 0,
            })
            .fold(0i64, i64::saturating_add);
        let timeout_ms = settings.message_timeout.as_millis();
        if i128::from(millis) > timeout_ms as i128 {
            return Err(WindowError::TimeOverTimeout { millis, timeout_ms });
        }
        Ok(())
    }
}

/// Start of the first window of `length` sliding by `slide` (both ms, aligned to
/// multiples of `slide`) that holds `ts`, or `None` when no window does (a slide longer
/// than the length leaves gaps).
pub fn first_start(ts: i64, length: i64, slide: i64) -> Option<i64> {
    let last = ts.div_euclid(slide);
    let first = (ts - length).div_euclid(slide) + 1;
    (first <= last).then(|| first * slide)
}

/// Greatest common divisor: the pane of a window is `gcd(length, slide)`.
pub fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Processing time in milliseconds since the epoch: the system's, or one a test sets.
#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<AtomicI64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that reads `start_ms` until [`Clock::set`] or [`Clock::advance`] moves it.
    /// Clones share it.
    pub fn manual(start_ms: i64) -> Clock {
        Clock(Some(Arc::new(AtomicI64::new(start_ms))))
    }

    /// Sets a manual clock (no effect on the system clock).
    pub fn set(&self, ms: i64) {
        if let Some(c) = &self.0 {
            c.store(ms, Ordering::SeqCst);
        }
    }

    /// Moves a manual clock forward.
    pub fn advance(&self, d: Duration) {
        if let Some(c) = &self.0 {
            c.fetch_add(
                i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                Ordering::SeqCst,
            );
        }
    }

    /// Now, in milliseconds since the epoch.
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Some(c) => c.load(Ordering::SeqCst),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
        }
    }
}

/// A function from a tuple to its event time in milliseconds.
pub type Extractor = Arc<dyn Fn(&Tuple) -> Option<i64> + Send + Sync>;

/// Where a tuple's event time comes from.
#[derive(Clone)]
pub enum Timestamp {
    /// An integer field, milliseconds since the epoch.
    Field(String),
    /// A function of the tuple; `None` fails the tuple.
    Extractor(Extractor),
}

impl std::fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Timestamp::Field(name) => write!(f, "Field({name:?})"),
            Timestamp::Extractor(_) => f.write_str("Extractor"),
        }
    }
}

impl Timestamp {
    /// The tuple's event time, or why there is none.
    pub fn of(&self, t: &Tuple) -> Result<i64, String> {
        self.of_cached(t, &mut None)
    }

    /// [`Timestamp::of`], remembering where a field is in tuples from the last source
    /// seen, so that a run of tuples from one source looks the name up once.
    #[inline]
    pub fn of_cached(
        &self,
        t: &Tuple,
        at: &mut Option<(&'static StreamInfo, Option<usize>)>,
    ) -> Result<i64, String> {
        match self {
            Timestamp::Field(name) => {
                let source = t.source();
                let i = match at {
                    Some((s, i)) if std::ptr::eq(*s, source) => *i,
                    _ => {
                        let i = source.index_of(name);
                        *at = Some((source, i));
                        i
                    }
                };
                match i.and_then(|i| t.get(i)) {
                    Some(Value::Int(ms)) => Ok(*ms),
                    _ => self.of_slow(t),
                }
            }
            Timestamp::Extractor(f) => {
                f(t).ok_or_else(|| "the timestamp extractor found no timestamp".to_string())
            }
        }
    }

    /// Why a tuple has no timestamp field.
    fn of_slow(&self, t: &Tuple) -> Result<i64, String> {
        match self {
            Timestamp::Field(name) => match t.field(name) {
                Some(Value::Int(ms)) => Ok(*ms),
                Some(other) => Err(format!(
                    "timestamp field `{name}` must be an integer of milliseconds; got {other:?}"
                )),
                None => Err(format!(
                    "no timestamp field `{name}` in a tuple from `{}` (fields: {})",
                    t.source_component(),
                    t.fields().join(", ")
                )),
            },
            Timestamp::Extractor(f) => {
                f(t).ok_or_else(|| "the timestamp extractor found no timestamp".to_string())
            }
        }
    }
}

/// The watermark of one task: the minimum over its upstream tasks of the latest
/// timestamp each sent, minus the lag. An upstream task that sent nothing yet holds it
/// back (it may still send anything); it only moves forward.
#[derive(Debug, Clone)]
pub struct Watermarks {
    latest: Vec<(TaskId, i64)>,
    lag: i64,
    current: i64,
    /// Index in `latest` of the last source seen (tuples come in runs from one source).
    last: usize,
}

impl Watermarks {
    /// A tracker over `upstream` tasks with `lag`.
    pub fn new(upstream: impl IntoIterator<Item = TaskId>, lag: Duration) -> Watermarks {
        let mut latest: Vec<(TaskId, i64)> = upstream.into_iter().map(|t| (t, i64::MIN)).collect();
        latest.sort_unstable();
        latest.dedup();
        Watermarks {
            latest,
            lag: i64::try_from(lag.as_millis()).unwrap_or(i64::MAX),
            current: i64::MIN,
            last: 0,
        }
    }

    /// The upstream tasks of the task `ctx` describes: every task of every input.
    pub fn upstream(ctx: &TaskContext) -> Vec<TaskId> {
        let Some((_, me)) = ctx.topology.component(&ctx.component) else {
            return Vec::new();
        };
        me.inputs
            .iter()
            .flat_map(|i| ctx.component_tasks[i.from].iter().copied())
            .collect()
    }

    /// Records a timestamp from `task`.
    #[inline]
    pub fn observe(&mut self, task: TaskId, ts: i64) {
        let i = match self.latest.get(self.last) {
            Some((t, _)) if *t == task => self.last,
            _ => match self.latest.iter().position(|(t, _)| *t == task) {
                Some(i) => i,
                None => {
                    self.latest.push((task, i64::MIN));
                    self.latest.len() - 1
                }
            },
        };
        self.last = i;
        let slot = &mut self.latest[i].1;
        if ts > *slot {
            *slot = ts;
        }
    }

    /// Recomputes the watermark; returns it.
    pub fn advance(&mut self) -> i64 {
        let min = self
            .latest
            .iter()
            .map(|(_, ts)| *ts)
            .min()
            .unwrap_or(i64::MIN);
        if min != i64::MIN {
            self.current = self.current.max(min.saturating_sub(self.lag));
        }
        self.current
    }

    /// The end of the input: the watermark jumps to the end of time.
    pub fn finish(&mut self) -> i64 {
        self.current = i64::MAX;
        self.current
    }

    /// The current watermark (`i64::MIN` before any).
    pub fn current(&self) -> i64 {
        self.current
    }

    /// The latest timestamp each upstream task sent (`i64::MIN`: none yet), for a
    /// checkpoint.
    pub fn latest(&self) -> &[(TaskId, i64)] {
        &self.latest
    }

    /// Takes back what a checkpoint recorded: each upstream task's latest timestamp (of
    /// the tasks this tracker follows) and the watermark.
    pub fn restore(&mut self, latest: &[(TaskId, i64)], current: i64) {
        for (task, ts) in latest {
            if let Some(slot) = self.latest.iter_mut().find(|(t, _)| t == task) {
                slot.1 = slot.1.max(*ts);
            }
        }
        self.current = self.current.max(current);
    }

    /// True when `ts` is behind the watermark.
    #[inline]
    pub fn is_late(&self, ts: i64) -> bool {
        ts < self.current
    }
}

/// The values of a late-stream tuple: the late tuple's values as one list.
pub fn late_values(t: &Tuple) -> Values {
    Values::from(vec![Value::List(t.values().to_vec())])
}

/// True for counts worth a log line: 1, 2, 4, 8, …
pub fn worth_logging(n: u64) -> bool {
    n.is_power_of_two()
}

/// Checks that component `ctx.component` declares `stream` with the one field
/// [`LATE_FIELD`].
pub fn check_late_stream(ctx: &TaskContext, stream: &str) -> Result<(), String> {
    let declared = ctx
        .topology
        .component(&ctx.component)
        .and_then(|(_, c)| c.output(stream));
    match declared {
        Some(d) if d.fields == [LATE_FIELD] => Ok(()),
        Some(d) => Err(format!(
            "late stream `{stream}` of `{}` must have the one field `{LATE_FIELD}`; it has: {}",
            ctx.component,
            d.fields.join(", ")
        )),
        None => Err(format!(
            "`{}` sends late tuples to stream `{stream}`, which it does not declare",
            ctx.component
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_aligned_to_the_slide_and_hold_their_start_not_their_end() {
        assert_eq!(first_start(0, 60_000, 1000), Some(-59_000));
        assert_eq!(first_start(999, 60_000, 1000), Some(-59_000));
        assert_eq!(first_start(1000, 60_000, 1000), Some(-58_000));
        assert_eq!(first_start(-1, 10, 10), Some(-10));
        // Hopping windows of 10 every 30: 15 is in none.
        assert_eq!(first_start(15, 10, 30), None);
        assert_eq!(first_start(31, 10, 30), Some(30));
    }

    #[test]
    fn the_watermark_is_the_slowest_source_minus_the_lag_and_never_goes_back() {
        let mut w = Watermarks::new([1, 2], Duration::from_millis(5));
        w.observe(1, 100);
        assert_eq!(w.advance(), i64::MIN, "task 2 sent nothing yet");
        w.observe(2, 50);
        assert_eq!(w.advance(), 45);
        w.observe(2, 40);
        assert_eq!(w.advance(), 45);
        assert!(w.is_late(44) && !w.is_late(45));
        w.observe(2, 300);
        assert_eq!(w.advance(), 95);
    }

    #[test]
    fn storms_checks_bound_a_window_by_pending_and_timeout_with_acking_on() {
        let settings = Settings::default();
        let count = WindowSpec::sliding(Length::Count(900), Length::Count(101));
        assert_eq!(
            count.check_acking(&settings).unwrap_err().to_string(),
            "window count (length + slide) 1001 is more than max_spout_pending 1000: with acking on, a window holds its tuples unacked, so the spouts would stall; raise max_spout_pending or turn acking off"
        );
        let time = WindowSpec::tumbling(Length::Millis(20_000));
        assert_eq!(
            time.check_acking(&settings).unwrap_err().to_string(),
            "window duration (length + slide) 40000 ms is more than the message timeout 30000 ms: with acking on, a window holds its tuples unacked, so their trees would time out; raise message_timeout_secs or turn acking off"
        );
        let off = Settings {
            acking: false,
            ..Settings::default()
        };
        assert!(time.check_acking(&off).is_ok());
        assert!(WindowSpec::tumbling(Length::Count(0)).check().is_err());
    }
}
