//! `window_aggregate`: per-key aggregates over tumbling or sliding windows, by count or
//! time, in processing or event time, computed by panes.
//!
//! A window of length L sliding by S is cut into panes of `gcd(L, S)`: every window
//! boundary is a pane boundary, so a tuple updates one pane (one hash-map entry), not
//! each of the L / S windows it belongs to. A window's result combines its panes; when
//! every aggregate can be taken back out (`count`, `sum`, `avg`), a running total per
//! key adds the pane that enters and subtracts the pane that leaves, so a sliding window
//! costs about what a tumbling one does. `min` and `max` merge the window's panes.
//!
//! Output: the key fields, `window_start`, `window_end` (milliseconds; end exclusive),
//! then the aggregates, one tuple per key with a tuple in the window. Late tuples (behind
//! the watermark) go to stream `late` as one field `late_tuple`. With acking on, each
//! input is held until its last window fired, and each result is anchored to the
//! window's tuples of its key.
//!
//! # Layout
//! - `config.rs`: the config (`window`, `key`, `aggregates`, `time`, …) and its checks;
//! - `acc.rs`: group keys, the tables that find a group by a hash computed once per
//!   tuple, and the accumulators of the aggregate functions;
//! - `state.rs`: the windows in a checkpoint (keyed pane aggregates, task bookkeeping);
//! - `mod.rs`: panes, the bolt, and its registration.

use std::collections::BTreeMap;
use std::time::Duration;

use smallvec::SmallVec;
use topo_dsl::DEFAULT_STREAM;
use topo_engine::state::{TaskState, TaskStateReader};
use topo_engine::window::{
    check_late_stream, first_start, gcd, late_values, worth_logging, Clock, Length, Watermarks,
};
use topo_engine::{
    Bolt, BoltOutput, Registry, Result, StreamInfo, TaskContext, Tuple, Value, Values,
};

mod acc;
mod config;
mod state;

use acc::{Acc, Group, Groups, Key, KeyHasher};
pub use config::{Aggregate, Config, Function, LATE_STREAM};
use state::Moved;

/// The aggregates of one pane, per key, and (acking on) the tuples it holds per key.
#[derive(Debug, Default)]
struct Pane {
    groups: Groups,
    /// Holds tuples (acking on).
    tracked: bool,
    first_ts: i64,
    last_ts: i64,
}

/// Where the fields a tuple is read by are, for tuples of one source.
#[derive(Debug)]
struct Fields {
    source: &'static StreamInfo,
    ts: Option<usize>,
    key: SmallVec<[Option<usize>; 2]>,
}

/// The bolt.
#[derive(Debug)]
pub struct WindowAggregate {
    config: Config,
    /// Pane length: milliseconds (time windows) or tuples (count windows).
    pane: i64,
    /// Every aggregate can be subtracted: keep a running window.
    invertible: bool,
    /// `count()` is the only aggregate: no slots, no arguments.
    fast: bool,
    clock: Clock,
    watermarks: Watermarks,
    fields: Option<Fields>,
    args: Vec<Value>,
    /// The pane being filled, and its index.
    hot: Pane,
    hot_idx: Option<i64>,
    panes: BTreeMap<i64, Pane>,
    /// Running window (invertible aggregates): the panes `lo..hi` summed per key.
    running: Groups,
    hasher: KeyHasher,
    lo: i64,
    hi: i64,
    /// The newest pane a tuple went to.
    newest: i64,
    /// Time windows: start of the next window to fire.
    next: Option<i64>,
    /// Time windows: every window that starts before it has fired.
    fired: i64,
    /// Count windows: tuples so far.
    arrived: u64,
    /// After a rescaled resume, what the old owners of this task's key groups had done
    /// (see `state.rs`); empty otherwise.
    moved: Moved,
    /// A tuple before it may be late for its key group's old owner (`i64::MIN`: none).
    late_below: i64,
    /// A window starting before it may have fired for a key group (`i64::MIN`: none).
    fired_below: i64,
    component: String,
    task: u32,
    task_index: usize,
    tasks: usize,
    late: u64,
}

impl WindowAggregate {
    /// A bolt for `config`.
    pub fn new(config: Config) -> Self {
        Self::with_clock(config, Clock::system())
    }

    /// A bolt whose processing time is `clock`'s (for tests).
    pub fn with_clock(config: Config, clock: Clock) -> Self {
        let (l, s) = match (config.window.length, config.window.slide) {
            (Length::Millis(l), Length::Millis(s)) => (l as u64, s as u64),
            (Length::Count(l), Length::Count(s)) => (l, s),
            _ => (1, 1),
        };
        let invertible = config
            .aggregates
            .iter()
            .all(|a| matches!(a.function, Function::Count | Function::Sum | Function::Avg));
        let fast = config
            .aggregates
            .iter()
            .all(|a| a.function == Function::Count && a.arg.is_none())
            && config.aggregates.len() == 1;
        WindowAggregate {
            pane: gcd(l, s).max(1) as i64,
            invertible,
            fast,
            clock,
            watermarks: Watermarks::new([], config.lag),
            fields: None,
            args: Vec::new(),
            hot: Pane::default(),
            hot_idx: None,
            panes: BTreeMap::new(),
            running: Groups::default(),
            hasher: KeyHasher::default(),
            lo: i64::MIN,
            hi: i64::MIN,
            newest: i64::MIN,
            next: None,
            fired: i64::MIN,
            arrived: 0,
            moved: Moved::default(),
            late_below: i64::MIN,
            fired_below: i64::MIN,
            component: String::new(),
            task: 0,
            task_index: 0,
            tasks: 1,
            late: 0,
            config,
        }
    }

    fn lengths(&self) -> (i64, i64) {
        match (self.config.window.length, self.config.window.slide) {
            (Length::Millis(l), Length::Millis(s)) => (l, s),
            (Length::Count(l), Length::Count(s)) => (l as i64, s as i64),
            _ => (1, 1),
        }
    }

    /// Looks up the field positions for tuples from `t`'s source, unless the last
    /// tuple came from there too.
    #[inline]
    fn fields_of(&mut self, t: &Tuple) -> Result<()> {
        if self
            .fields
            .as_ref()
            .is_some_and(|f| std::ptr::eq(f.source, t.source()))
        {
            return Ok(());
        }
        self.look_up_fields(t)
    }

    #[cold]
    fn look_up_fields(&mut self, t: &Tuple) -> Result<()> {
        let source = t.source();
        {
            let ts = match &self.config.timestamp_field {
                Some(name) => Some(source.index_of(name).ok_or_else(|| {
                    format!(
                        "`window_aggregate` has no timestamp field `{name}` in its input from `{}` (fields: {})",
                        source.component,
                        source.fields.join(", ")
                    )
                })?),
                None => None,
            };
            let key = self.config.key.iter().map(|k| source.index_of(k)).collect();
            self.fields = Some(Fields { source, ts, key });
        }
        Ok(())
    }

    /// Makes pane `idx` the hot one.
    fn switch_to(&mut self, idx: i64) {
        if let Some(old) = self.hot_idx {
            let pane = std::mem::take(&mut self.hot);
            self.panes.insert(old, pane);
        }
        self.hot = self.panes.remove(&idx).unwrap_or_default();
        self.hot_idx = Some(idx);
    }

    /// Puts the hot pane back with the others (before a window reads them).
    fn park_hot(&mut self) {
        if let Some(idx) = self.hot_idx.take() {
            let pane = std::mem::take(&mut self.hot);
            self.panes.insert(idx, pane);
        }
    }

    /// Adds `input` (time or arrival `ts`) to pane `idx`.
    /// The caller has looked up the fields of `input`'s source ([`Self::fields_of`]).
    fn add(&mut self, input: &Tuple, idx: i64, ts: i64, out: &mut BoltOutput<'_>) -> Result<()> {
        let Some(fields) = self.fields.as_ref() else {
            return Err("`window_aggregate`: fields not looked up".into());
        };
        let missing = |i: usize| -> topo_engine::Error {
            format!(
                "`window_aggregate` has no key field `{}` in its input from `{}`",
                self.config.key[i],
                input.source_component()
            )
            .into()
        };
        // One key field (the usual case) needs no list.
        let one: [&Value; 1];
        let many: SmallVec<[&Value; 2]>;
        let key: &[&Value] = match fields.key.as_slice() {
            [at] => {
                one = [at.and_then(|at| input.get(at)).ok_or_else(|| missing(0))?];
                &one
            }
            ats => {
                let mut k = SmallVec::new();
                for (i, at) in ats.iter().enumerate() {
                    k.push(at.and_then(|at| input.get(at)).ok_or_else(|| missing(i))?);
                }
                many = k;
                &many
            }
        };
        if !self.fast {
            self.args.clear();
            for a in &self.config.aggregates {
                let v = match &a.arg {
                    None => Value::Null,
                    Some(e) => e.eval(&|name| input.field(name))?,
                };
                self.args.push(v);
            }
        }
        if self.hot_idx != Some(idx) {
            self.switch_to(idx);
            self.hot.first_ts = ts;
            self.hot.last_ts = ts;
        }
        let hash = self.hasher.hash(key.iter().copied());
        let pane = &mut self.hot;
        let group = match pane.groups.find_mut(hash, key) {
            Some(g) => {
                if self.fast {
                    g.acc.n += 1;
                } else {
                    g.acc.add(&self.args)?;
                }
                g
            }
            None => {
                let acc = if self.fast {
                    Acc::counted(1)
                } else {
                    let mut acc = Acc::new(&self.config.aggregates, false);
                    acc.add(&self.args)?;
                    acc
                };
                pane.groups.insert(Group {
                    hash,
                    key: Key(key.iter().map(|v| (*v).clone()).collect()),
                    acc,
                    held: Vec::new(),
                })
            }
        };
        if input.is_tracked() {
            out.defer();
            group.held.push(input.clone());
            pane.tracked = true;
        }
        pane.first_ts = pane.first_ts.min(ts);
        pane.last_ts = pane.last_ts.max(ts);
        Ok(())
    }

    /// Drops pane `idx` (its tuples left every window: acked).
    fn drop_pane(pane: Pane, out: &mut BoltOutput<'_>) {
        if !pane.tracked {
            return;
        }
        for g in pane.groups.into_iter() {
            for t in &g.held {
                out.ack(t);
            }
        }
    }

    /// Drops the panes before `until` (their tuples left every window: acked), taking
    /// them out of the running window.
    fn retire(&mut self, until: i64, out: &mut BoltOutput<'_>) {
        let gone: Vec<i64> = self.panes.range(..until).map(|(i, _)| *i).collect();
        for i in gone {
            if let Some(pane) = self.panes.remove(&i) {
                if self.invertible && i >= self.lo && i < self.hi {
                    for g in pane.groups.iter() {
                        if let Some(r) = self.running.get_mut(g) {
                            r.acc.subtract(&g.acc);
                            if r.acc.n == 0 {
                                self.running.remove(g);
                            }
                        }
                    }
                }
                Self::drop_pane(pane, out);
            }
        }
        self.lo = self.lo.max(until);
        self.hi = self.hi.max(self.lo);
    }

    /// Emits the window of panes `a..b` (`start..end` in ms); then drops the panes
    /// before `keep_from`, the next window's first.
    fn fire(
        &mut self,
        a: i64,
        b: i64,
        keep_from: i64,
        start: i64,
        end: i64,
        out: &mut BoltOutput<'_>,
    ) {
        self.park_hot();
        self.retire(a, out);
        let mut merged = Groups::default();
        if self.invertible {
            for (_, pane) in self.panes.range(self.hi.max(a)..b) {
                for g in pane.groups.iter() {
                    self.running.merge(g);
                }
            }
            self.hi = self.hi.max(b);
        } else {
            for (_, pane) in self.panes.range(a..b) {
                for g in pane.groups.iter() {
                    merged.merge(g);
                }
            }
        }
        let window = if self.invertible {
            &self.running
        } else {
            &merged
        };
        let tracked = self.panes.range(a..b).any(|(_, p)| p.tracked);
        let width = self.config.key.len() + 2 + self.config.aggregates.len();
        let mut anchors: Vec<&Tuple> = Vec::new();
        // Only just after a rescaled resume: keys whose old owner wrote this window.
        let resumed = start < self.fired_below;
        for g in window.iter() {
            if resumed && self.fired_before_resume(&g.key, start) {
                continue;
            }
            // Exactly the room the result needs: one allocation, no growing.
            let mut values = Values::from(Vec::with_capacity(width));
            for v in &g.key.0 {
                values.push(v.clone());
            }
            values.push(start);
            values.push(end);
            g.acc.push_results(&self.config.aggregates, &mut values);
            if tracked {
                anchors.clear();
                for (_, p) in self.panes.range(a..b) {
                    if let Some(held) = p.groups.get(g) {
                        anchors.extend(held.held.iter());
                    }
                }
            }
            out.emit_anchored(&anchors, DEFAULT_STREAM, values);
        }
        self.retire(keep_from, out);
    }

    /// Fires every time window whose end `progress` passed.
    fn fire_due(&mut self, progress: i64, out: &mut BoltOutput<'_>) {
        let (l, s) = self.lengths();
        while let Some(start) = self.next {
            let end = start.saturating_add(l);
            if end > progress {
                break;
            }
            let (a, b) = (start.div_euclid(self.pane), end.div_euclid(self.pane));
            let after = start.saturating_add(s);
            self.fire(a, b, after.div_euclid(self.pane), start, end, out);
            self.fired = after;
            // The next window that holds a pane.
            let first = self
                .panes
                .range(after.div_euclid(self.pane)..)
                .next()
                .map(|(i, _)| *i);
            self.next = first
                .and_then(|i| first_start(i * self.pane, l, s))
                .map(|f| f.max(after));
            if self.next.is_none() {
                self.clear(out);
            }
        }
    }

    /// Every pane is done: acks what they hold.
    fn clear(&mut self, out: &mut BoltOutput<'_>) {
        self.park_hot();
        for (_, pane) in std::mem::take(&mut self.panes) {
            Self::drop_pane(pane, out);
        }
        self.running.clear();
        self.lo = i64::MIN;
        self.hi = i64::MIN;
    }

    fn late(&mut self, input: &Tuple, ts: i64, out: &mut BoltOutput<'_>) {
        self.late += 1;
        out.emit_to(LATE_STREAM, late_values(input));
        if worth_logging(self.late) {
            tracing::debug!(component = %self.component, task = self.task, late = self.late, ts, watermark = self.watermarks.current(), "Late tuple sent to stream `late`.");
        }
    }

    fn execute_time(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        self.fields_of(input)?;
        let at = self.fields.as_ref().and_then(|f| f.ts);
        let ts = match self.config.timestamp_field {
            Some(_) => {
                match at.and_then(|i| input.get(i)) {
                    Some(Value::Int(ts)) => *ts,
                    other => {
                        return Err(format!(
                            "`window_aggregate` needs an integer timestamp (ms) in field `{}`; got {other:?}",
                            self.config.timestamp_field.as_deref().unwrap_or_default()
                        )
                        .into())
                    }
                }
            }
            None => self.clock.now_ms(),
        };
        let event = self.config.timestamp_field.is_some();
        if event {
            self.watermarks.observe(input.source_task(), ts);
            if self.watermarks.is_late(ts)
                || (ts < self.late_below && self.late_for_old_owner(input, ts))
            {
                self.late(input, ts, out);
                return Ok(());
            }
        }
        let idx = ts.div_euclid(self.pane);
        // Event time entered a newer pane: the watermark may pass a window's end now.
        let newer = idx > self.newest;
        self.newest = self.newest.max(idx);
        if self.hot_idx != Some(idx) {
            let (l, s) = self.lengths();
            // Panes are whole parts of every window they are in: one check per pane.
            let Some(first) = first_start(idx * self.pane, l, s) else {
                return Ok(());
            };
            self.next = Some(self.next.map_or(first, |n| n.min(first)));
        }
        self.add(input, idx, ts, out)?;
        if !event {
            self.fire_due(ts, out);
        } else if newer || self.config.watermark_interval.is_zero() {
            let wm = self.watermarks.advance();
            self.fire_due(wm, out);
        }
        Ok(())
    }

    fn execute_count(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        let (l, s) = self.lengths();
        let i = self.arrived as i64;
        let c = i + 1;
        let fires_at = (c + s - 1) / s * s;
        if c + l <= fires_at {
            // Between hopping windows: in none.
            self.arrived += 1;
            return Ok(());
        }
        let now = self.clock.now_ms();
        self.fields_of(input)?;
        self.add(input, i.div_euclid(self.pane), now, out)?;
        self.arrived += 1;
        if c % s == 0 {
            let (a, b) = ((c - l).div_euclid(self.pane), c.div_euclid(self.pane));
            self.park_hot();
            let start = self
                .panes
                .range(a..b)
                .next()
                .map_or(now, |(_, p)| p.first_ts);
            let end = self
                .panes
                .range(a..b)
                .next_back()
                .map_or(now, |(_, p)| p.last_ts)
                + 1;
            let keep_from = (c + s - l).div_euclid(self.pane);
            self.fire(a, b, keep_from, start, end, out);
        }
        Ok(())
    }
}

impl Bolt for WindowAggregate {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.config.window.check_acking(ctx.topology.settings())?;
        check_late_stream(ctx, LATE_STREAM)?;
        self.component = ctx.component.clone();
        self.task = ctx.task;
        self.task_index = ctx.task_index;
        self.tasks = ctx.tasks_of(&ctx.component).len();
        self.watermarks = Watermarks::new(Watermarks::upstream(ctx), self.config.lag);
        Ok(())
    }

    fn tick_interval(&self) -> Option<Duration> {
        if matches!(self.config.window.length, Length::Count(_)) {
            return None;
        }
        let every = match (
            self.config.timestamp_field.is_some(),
            self.config.window.slide,
        ) {
            (false, Length::Millis(s)) => self
                .config
                .watermark_interval
                .min(Duration::from_millis(s as u64)),
            _ => self.config.watermark_interval,
        };
        (!every.is_zero()).then_some(every)
    }

    fn execute(&mut self, input: &Tuple, out: &mut BoltOutput<'_>) -> Result<()> {
        match self.config.window.length {
            Length::Millis(_) => self.execute_time(input, out),
            Length::Count(_) => self.execute_count(input, out),
        }
    }

    fn tick(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if matches!(self.config.window.length, Length::Count(_)) {
            return Ok(());
        }
        let progress = if self.config.timestamp_field.is_some() {
            self.watermarks.advance()
        } else {
            self.clock.now_ms()
        };
        self.fire_due(progress, out);
        Ok(())
    }

    /// The panes' aggregates per key (keyed state), the watermark and the window
    /// bookkeeping (task state).
    fn snapshot(&mut self, state: &mut TaskState) -> Result<()> {
        self.snapshot_windows(state)
    }

    /// The windows as they were at the checkpoint, for the keys this task owns now.
    fn restore(&mut self, state: &TaskStateReader) -> Result<()> {
        self.restore_windows(state)
    }

    fn finish(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        if matches!(self.config.window.length, Length::Millis(_)) {
            self.watermarks.finish();
            self.fire_due(i64::MAX, out);
        }
        // A partial count window never fires; what it holds is done.
        self.clear(out);
        Ok(())
    }
}

/// Registers `window_aggregate`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "window_aggregate",
        "Per-key count/sum/min/max/avg over tumbling or sliding windows by time or count, in processing or event time; late tuples on stream `late`.",
        Config::outputs,
        |c: Config| Ok(WindowAggregate::new(c)),
    );
}

#[cfg(test)]
mod tests;
