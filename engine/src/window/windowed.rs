//! [`Windowed`]: a [`WindowedBolt`] run as a bolt — buffering, firing, evicting and acking.

use std::collections::VecDeque;
use std::time::Duration;

use topo_dsl::DEFAULT_STREAM;

use super::{
    check_late_stream, first_start, late_values, worth_logging, Clock, Length, Timestamp,
    Watermarks, WindowSpec,
};
use crate::component::{Bolt, BoltOutput, Result, TaskContext};
use crate::tuple::{StreamInfo, TaskId, Tuple, Values};

/// A bolt that processes windows of tuples rather than single tuples (Storm's
/// `IWindowedBolt`). Wrap it in [`Windowed`] to run it.
pub trait WindowedBolt: Send + 'static {
    /// Called once before the first window.
    fn prepare(&mut self, _ctx: &TaskContext) -> Result<()> {
        Ok(())
    }

    /// Processes one window as it fires. What it emits through `out` is anchored to every
    /// tuple of the window. `Err` fails the window's tuples.
    fn execute(&mut self, window: &Window<'_>, out: &mut WindowOutput<'_, '_>) -> Result<()>;

    /// Called once when the task stops.
    fn cleanup(&mut self) {}
}

/// One window as it fires.
#[derive(Debug)]
pub struct Window<'a> {
    tuples: Vec<&'a Tuple>,
    new: Vec<&'a Tuple>,
    expired: &'a [Tuple],
    start: i64,
    end: i64,
}

impl<'a> Window<'a> {
    /// Every tuple in the window, oldest first.
    pub fn tuples(&self) -> &[&'a Tuple] {
        &self.tuples
    }

    /// The tuples that were in no window fired before.
    pub fn new_tuples(&self) -> &[&'a Tuple] {
        &self.new
    }

    /// The tuples that left the windows since the last one fired.
    pub fn expired(&self) -> &'a [Tuple] {
        self.expired
    }

    /// Start, in milliseconds (inclusive). A count window's: its first tuple's time.
    pub fn start(&self) -> i64 {
        self.start
    }

    /// End, in milliseconds (exclusive). A count window's: its last tuple's time + 1.
    pub fn end(&self) -> i64 {
        self.end
    }
}

/// A windowed bolt's collector: emits anchored to the window's tuples.
pub struct WindowOutput<'o, 'a> {
    out: &'o mut BoltOutput<'a>,
    anchors: &'o [&'o Tuple],
}

impl WindowOutput<'_, '_> {
    /// Emits on the default stream, anchored to every tuple of the window.
    pub fn emit(&mut self, values: impl Into<Values>) {
        self.out.emit_anchored(self.anchors, DEFAULT_STREAM, values);
    }

    /// Emits on `stream`, anchored to every tuple of the window.
    pub fn emit_to(&mut self, stream: &str, values: impl Into<Values>) -> &[TaskId] {
        self.out.emit_anchored(self.anchors, stream, values)
    }

    /// Emits without anchoring.
    pub fn emit_unanchored(&mut self, stream: &str, values: impl Into<Values>) -> &[TaskId] {
        self.out.emit_unanchored(stream, values)
    }
}

/// A buffered tuple.
#[derive(Debug)]
struct Entry {
    ts: i64,
    tuple: Tuple,
    /// Was in a window that fired.
    seen: bool,
    /// A window with it failed: its tree is failed, so it is not acked when it leaves.
    failed: bool,
}

/// Runs a [`WindowedBolt`] as a [`Bolt`]. Each input is held (its ack deferred) until it
/// has left every window it belongs to; then it is acked.
///
/// ```
/// use std::time::Duration;
/// use topo_engine::window::{Length, Window, WindowOutput, WindowSpec, Windowed, WindowedBolt};
/// use topo_engine::Result;
///
/// struct Sum;
/// impl WindowedBolt for Sum {
///     fn execute(&mut self, w: &Window<'_>, out: &mut WindowOutput<'_, '_>) -> Result<()> {
///         let sum: i64 = w.tuples().iter().filter_map(|t| t.get(0)?.as_int()).sum();
///         out.emit([w.start(), w.end(), sum]);
///         Ok(())
///     }
/// }
///
/// // Sums over 10 s of event time, every 2 s; timestamps in field `ts`, 500 ms of lag.
/// let spec = WindowSpec::sliding(
///     Length::duration(Duration::from_secs(10)),
///     Length::duration(Duration::from_secs(2)),
/// );
/// let bolt = Windowed::new(Sum, spec)
///     .timestamp_field("ts")
///     .lag(Duration::from_millis(500))
///     .late_stream("late");
/// ```
pub struct Windowed<B> {
    bolt: B,
    spec: WindowSpec,
    timestamp: Option<Timestamp>,
    lag: Duration,
    interval: Duration,
    late_stream: Option<String>,
    clock: Clock,
    // State.
    component: String,
    task: TaskId,
    watermarks: Watermarks,
    /// Event time: admitted, not yet behind the watermark, sorted by time.
    pending: VecDeque<Entry>,
    /// Released tuples, in time order.
    buf: VecDeque<Entry>,
    expired: Vec<Tuple>,
    /// Tuples released so far (count slides).
    released: u64,
    /// Time slides: the next window start (time lengths) or end (count lengths) to fire.
    next: Option<i64>,
    late: u64,
    errors: u64,
    /// Where the timestamp field is in tuples from the last source seen.
    ts_at: Option<(&'static StreamInfo, Option<usize>)>,
}

impl<B: WindowedBolt> Windowed<B> {
    /// `bolt` over `spec`, in processing time on the system clock.
    pub fn new(bolt: B, spec: WindowSpec) -> Self {
        Windowed {
            bolt,
            spec,
            timestamp: None,
            lag: Duration::ZERO,
            interval: Duration::from_secs(1),
            late_stream: None,
            clock: Clock::system(),
            component: String::new(),
            task: 0,
            watermarks: Watermarks::new([], Duration::ZERO),
            pending: VecDeque::new(),
            buf: VecDeque::new(),
            expired: Vec::new(),
            released: 0,
            next: None,
            late: 0,
            errors: 0,
            ts_at: None,
        }
    }

    /// Event time from an integer field (milliseconds).
    pub fn timestamp_field(mut self, name: &str) -> Self {
        self.timestamp = Some(Timestamp::Field(name.to_string()));
        self
    }

    /// Event time from a function of the tuple (milliseconds).
    pub fn timestamp_extractor(
        mut self,
        f: impl Fn(&Tuple) -> Option<i64> + Send + Sync + 'static,
    ) -> Self {
        self.timestamp = Some(Timestamp::Extractor(std::sync::Arc::new(f)));
        self
    }

    /// How far behind the latest timestamps the watermark trails (default 0).
    pub fn lag(mut self, lag: Duration) -> Self {
        self.lag = lag;
        self
    }

    /// How often the watermark is recomputed, and processing-time windows checked
    /// without input (default 1 s; zero: after every tuple).
    pub fn watermark_interval(mut self, every: Duration) -> Self {
        self.interval = every;
        self
    }

    /// Sends late tuples to `stream` (declared with the one field `late_tuple`).
    pub fn late_stream(mut self, stream: &str) -> Self {
        self.late_stream = Some(stream.to_string());
        self
    }

    /// Processing time from `clock` (tests set their own).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Releases event-time tuples behind the watermark, oldest first, and fires what is due.
    fn release_due(&mut self, out: &mut BoltOutput<'_>) {
        let wm = self.watermarks.current();
        while self.pending.front().is_some_and(|e| e.ts < wm) {
            if let Some(e) = self.pending.pop_front() {
                self.release(e, out);
            }
        }
        self.fire_due(wm, out);
    }

    /// A tuple enters the windows (in time order).
    fn release(&mut self, e: Entry, out: &mut BoltOutput<'_>) {
        self.released += 1;
        match (self.spec.length, self.spec.slide) {
            (Length::Count(l), Length::Count(s)) => {
                // Hopping count windows leave gaps: a tuple in none is done at once.
                let i = self.released;
                let fires_at = i.div_ceil(s) * s;
                if i + l <= fires_at {
                    self.done(e, out);
                    return;
                }
                self.buf.push_back(e);
                if i.is_multiple_of(s) {
                    self.fire_count(out);
                }
            }
            (Length::Millis(_), Length::Count(s)) => {
                self.buf.push_back(e);
                if self.released.is_multiple_of(s) {
                    self.fire_count(out);
                }
            }
            (Length::Millis(l), Length::Millis(s)) => match first_start(e.ts, l, s) {
                None => self.done(e, out),
                Some(start) => {
                    self.next = Some(self.next.map_or(start, |n| n.min(start)));
                    self.buf.push_back(e);
                }
            },
            (Length::Count(_), Length::Millis(s)) => {
                if self.next.is_none() {
                    self.next = Some((e.ts.div_euclid(s) + 1).saturating_mul(s));
                }
                self.buf.push_back(e);
            }
        }
    }

    /// A tuple that left every window: acked (unless a window of it failed).
    fn done(&mut self, e: Entry, out: &mut BoltOutput<'_>) {
        if !e.failed {
            out.ack(&e.tuple);
        }
        self.expired.push(e.tuple);
    }

    /// Moves the oldest `n` buffered tuples out of the windows.
    fn evict_front(&mut self, n: usize, out: &mut BoltOutput<'_>) {
        for _ in 0..n {
            if let Some(e) = self.buf.pop_front() {
                self.done(e, out);
            }
        }
    }

    /// A count slide is due: fire the window ending at the newest tuple.
    fn fire_count(&mut self, out: &mut BoltOutput<'_>) {
        let Some(last) = self.buf.back().map(|e| e.ts) else {
            return;
        };
        let end = last.saturating_add(1);
        match self.spec.length {
            Length::Count(l) => {
                let over = self.buf.len().saturating_sub(l as usize);
                self.evict_front(over, out);
                let start = self.buf.front().map_or(last, |e| e.ts);
                self.fire(0, self.buf.len(), start, end, out);
                // Only the newest `l - s` are in the next window: the rest are done now.
                let Length::Count(s) = self.spec.slide else {
                    return;
                };
                let keep = l.saturating_sub(s) as usize;
                let over = self.buf.len().saturating_sub(keep);
                self.evict_front(over, out);
            }
            Length::Millis(l) => {
                let start = end.saturating_sub(l);
                let over = self.buf.iter().take_while(|e| e.ts < start).count();
                self.evict_front(over, out);
                self.fire(0, self.buf.len(), start, end, out);
            }
        }
    }

    /// Fires every time-slid window whose end `progress` passed.
    fn fire_due(&mut self, progress: i64, out: &mut BoltOutput<'_>) {
        let Length::Millis(s) = self.spec.slide else {
            return;
        };
        match self.spec.length {
            Length::Millis(l) => {
                while let Some(start) = self.next {
                    let end = start.saturating_add(l);
                    if end > progress {
                        break;
                    }
                    let over = self.buf.iter().take_while(|e| e.ts < start).count();
                    self.evict_front(over, out);
                    let n = self.buf.iter().take_while(|e| e.ts < end).count();
                    if n > 0 {
                        self.fire(0, n, start, end, out);
                    }
                    // What the next window starts after is done now.
                    let after = start.saturating_add(s);
                    let over = self.buf.iter().take_while(|e| e.ts < after).count();
                    self.evict_front(over, out);
                    // The next window that holds a tuple.
                    self.next = self
                        .buf
                        .front()
                        .and_then(|e| first_start(e.ts, l, s).map(|f| f.max(after)));
                    if self.next.is_none() {
                        // Nothing left in any window: whatever remains is done.
                        let n = self.buf.len();
                        self.evict_front(n, out);
                    }
                }
            }
            Length::Count(l) => {
                while let Some(end) = self.next {
                    if end > progress {
                        break;
                    }
                    let n = self.buf.iter().take_while(|e| e.ts < end).count();
                    let over = n.saturating_sub(l as usize);
                    self.evict_front(over, out);
                    let n = n - over;
                    if self.buf.iter().take(n).any(|e| !e.seen) {
                        let start = self.buf.front().map_or(end, |e| e.ts);
                        self.fire(0, n, start, end, out);
                    }
                    self.next = self.buf.iter().find(|e| !e.seen).map(|e| {
                        (e.ts.div_euclid(s) + 1)
                            .saturating_mul(s)
                            .max(end.saturating_add(s))
                    });
                }
            }
        }
    }

    /// Calls the bolt with `buf[from..to]`.
    fn fire(&mut self, from: usize, to: usize, start: i64, end: i64, out: &mut BoltOutput<'_>) {
        let expired = std::mem::take(&mut self.expired);
        let r = {
            let tuples: Vec<&Tuple> = self.buf.range(from..to).map(|e| &e.tuple).collect();
            let new: Vec<&Tuple> = self
                .buf
                .range(from..to)
                .filter(|e| !e.seen)
                .map(|e| &e.tuple)
                .collect();
            let window = Window {
                tuples,
                new,
                expired: &expired,
                start,
                end,
            };
            let mut wout = WindowOutput {
                out: &mut *out,
                anchors: &window.tuples,
            };
            self.bolt.execute(&window, &mut wout)
        };
        let failed = r.is_err();
        if let Err(e) = r {
            self.errors += 1;
            if worth_logging(self.errors) {
                tracing::warn!(component = %self.component, task = self.task, errors = self.errors, start, end, "A window failed; its tuples are failed: {e}");
            }
        }
        for e in self.buf.range_mut(from..to) {
            e.seen = true;
            if failed && !e.failed {
                e.failed = true;
                out.fail(&e.tuple);
            }
        }
    }

    fn late(&mut self, input: &Tuple, ts: i64, out: &mut BoltOutput<'_>) {
        self.late += 1;
        match &self.late_stream {
            Some(stream) => {
                out.emit_to(stream, late_values(input));
            }
            None => {
                if worth_logging(self.late) {
                    tracing::warn!(component = %self.component, task = self.task, late = self.late, ts, watermark = self.watermarks.current(), "A tuple behind the watermark was dropped.");
                }
            }
        }
    }
}

impl<B: WindowedBolt> Bolt for Windowed<B> {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.spec.check_acking(ctx.topology.settings())?;
        if let Some(stream) = &self.late_stream {
            check_late_stream(ctx, stream)?;
        }
        self.component = ctx.component.clone();
        self.task = ctx.task;
        self.watermarks = Watermarks::new(Watermarks::upstream(ctx), self.lag);
        self.bolt.prepare(ctx)
    }

    fn tick_interval(&self) -> Option<Duration> {
        let interval = match self.spec.slide {
            Length::Millis(s) if self.timestamp.is_none() => {
                self.interval.min(Duration::from_millis(s as u64))
            }
            _ => self.interval,
        };
        (!interval.is_zero()).then_some(interval)
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let Some(stamp) = &self.timestamp else {
            let now = self.clock.now_ms();
            out.defer();
            let e = Entry {
                ts: now,
                tuple: input.clone(),
                seen: false,
                failed: false,
            };
            self.release(e, out);
            self.fire_due(now, out);
            return Ok(());
        };
        let ts = stamp.of_cached(input, &mut self.ts_at)?;
        self.watermarks.observe(input.source_task(), ts);
        if self.watermarks.is_late(ts) {
            self.late(input, ts, out);
            return Ok(());
        }
        out.defer();
        let e = Entry {
            ts,
            tuple: input.clone(),
            seen: false,
            failed: false,
        };
        // Sorted by time, stable: mostly an append.
        if self.pending.back().is_none_or(|p| p.ts <= ts) {
            self.pending.push_back(e);
        } else {
            let at = self.pending.partition_point(|p| p.ts <= ts);
            self.pending.insert(at, e);
        }
        if self.interval.is_zero() {
            self.watermarks.advance();
            self.release_due(out);
        }
        Ok(())
    }

    fn tick(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if self.timestamp.is_some() {
            self.watermarks.advance();
            self.release_due(out);
        } else {
            let now = self.clock.now_ms();
            self.fire_due(now, out);
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        self.watermarks.finish();
        self.release_due(out);
        self.fire_due(i64::MAX, out);
        // What no window will ever hold again (a partial count window) is done.
        let n = self.buf.len();
        self.evict_front(n, out);
        Ok(())
    }

    fn cleanup(&mut self) {
        self.bolt.cleanup();
    }
}
