//! `rolling_top`: the `n` most frequent keys over a sliding time window.
//!
//! Every input adds one to its key's count (the key is field `field`, or the first field,
//! as a string). The window is `window_secs` long and slides by whole seconds. On every
//! tick (the component's `tick_secs`) and once when the topology finishes, the bolt
//! emits the current ranking as `n` tuples or fewer, `rank, key, count`, rank 1 first;
//! ties rank by key. Emits are not anchored. With parallelism > 1 use a fields grouping
//! on the key: each task then ranks its own share of the keys.

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU64, NonZeroUsize};
use std::time::{Duration, Instant};

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::state::{TaskState, TaskStateReader};
use topo_engine::{values, Bolt, BoltOutput, Registry, Result, TaskContext, Tuple, Value};

/// Config of `rolling_top`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Field holding the key; the first field when absent.
    pub field: Option<String>,
    /// How many keys to rank (default 10).
    #[serde(default = "default_n")]
    pub n: NonZeroUsize,
    /// Length of the sliding window in seconds (default 60).
    #[serde(default = "default_window")]
    pub window_secs: NonZeroU64,
}

fn default_n() -> NonZeroUsize {
    NonZeroUsize::MIN.saturating_add(9)
}

fn default_window() -> NonZeroU64 {
    NonZeroU64::MIN.saturating_add(59)
}

/// Counts per key over the last `window` seconds, in one-second slots.
#[derive(Debug)]
pub struct Window {
    window: u64,
    slots: VecDeque<(u64, HashMap<String, u64>)>,
    totals: HashMap<String, u64>,
}

impl Window {
    /// A window `window` seconds long (at least 1).
    pub fn new(window: u64) -> Self {
        Window {
            window: window.max(1),
            slots: VecDeque::new(),
            totals: HashMap::new(),
        }
    }

    /// Counts `key` once at second `now`.
    pub fn add(&mut self, key: &str, now: u64) {
        self.evict(now);
        if self.slots.back().is_none_or(|(s, _)| *s != now) {
            self.slots.push_back((now, HashMap::new()));
        }
        if let Some((_, slot)) = self.slots.back_mut() {
            *slot.entry(key.to_string()).or_default() += 1;
        }
        *self.totals.entry(key.to_string()).or_default() += 1;
    }

    /// Drops the counts older than the window at second `now`.
    pub fn evict(&mut self, now: u64) {
        while let Some((s, _)) = self.slots.front() {
            if s + self.window > now {
                break;
            }
            let Some((_, slot)) = self.slots.pop_front() else {
                break;
            };
            for (k, c) in slot {
                if let Some(t) = self.totals.get_mut(&k) {
                    *t -= c;
                    if *t == 0 {
                        self.totals.remove(&k);
                    }
                }
            }
        }
    }

    /// Counts `key` `count` times at second `at`; seconds must not decrease from one
    /// call to the next.
    pub fn add_count(&mut self, key: &str, at: u64, count: u64) {
        if self.slots.back().is_none_or(|(s, _)| *s != at) {
            self.slots.push_back((at, HashMap::new()));
        }
        if let Some((_, slot)) = self.slots.back_mut() {
            *slot.entry(key.to_string()).or_default() += count;
        }
        *self.totals.entry(key.to_string()).or_default() += count;
    }

    /// Every key's counts as (seconds before `now`, count), oldest first.
    pub fn ages(&self, now: u64) -> HashMap<&str, Vec<(u64, u64)>> {
        let mut out: HashMap<&str, Vec<(u64, u64)>> = HashMap::new();
        for (s, slot) in &self.slots {
            for (k, c) in slot {
                out.entry(k.as_str())
                    .or_default()
                    .push((now.saturating_sub(*s), *c));
            }
        }
        out
    }

    /// The `n` keys with the highest counts, highest first, ties by key.
    pub fn top(&self, n: usize) -> Vec<(&str, u64)> {
        let mut all: Vec<(&str, u64)> = self.totals.iter().map(|(k, c)| (k.as_str(), *c)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

/// The bolt.
#[derive(Debug)]
pub struct RollingTop {
    config: Config,
    window: Window,
    start: Instant,
}

impl RollingTop {
    fn now(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    fn emit_ranking(&mut self, out: &mut BoltOutput<'_>) {
        let now = self.now();
        self.window.evict(now);
        for (rank, (key, count)) in self.window.top(self.config.n.get()).into_iter().enumerate() {
            out.emit(values![rank as i64 + 1, key, count]);
        }
    }
}

impl Bolt for RollingTop {
    fn prepare(&mut self, ctx: &TaskContext) -> Result<()> {
        self.start = Instant::now();
        crate::warn_without_ticks(ctx);
        Ok(())
    }

    fn execute(&mut self, input: &Tuple, _out: &mut BoltOutput<'_>) -> Result<()> {
        let value = match &self.config.field {
            Some(f) => input.field(f).ok_or_else(|| {
                format!(
                    "`rolling_top` has no field `{f}` in its input from `{}` (fields: {})",
                    input.source_component(),
                    input.fields().join(", ")
                )
            })?,
            None => input
                .get(0)
                .ok_or("`rolling_top` got a tuple without fields")?,
        };
        let now = self.now();
        match value {
            Value::Str(s) => self.window.add(s, now),
            other => self.window.add(&other.to_string(), now),
        }
        Ok(())
    }

    fn tick(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        self.emit_ranking(out);
        Ok(())
    }

    fn finish(&mut self, out: &mut BoltOutput<'_>) -> Result<()> {
        self.emit_ranking(out);
        Ok(())
    }

    /// Each key's counts in the window, by age in seconds, as keyed state.
    fn snapshot(&mut self, state: &mut TaskState) -> Result<()> {
        let now = self.now();
        self.window.evict(now);
        let ages: Vec<(String, Vec<(u64, u64)>)> = self
            .window
            .ages(now)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        state.put_map(ages.iter().map(|(k, v)| (k, v)))?;
        Ok(())
    }

    /// The window as it was at the checkpoint, each count as old as it was then (the
    /// time the run was down does not age it).
    fn restore(&mut self, state: &TaskStateReader) -> Result<()> {
        let entries = state.map::<String, Vec<(u64, u64)>>()?;
        let window = self.window.window;
        // The window's clock starts `window` seconds back, so every age fits in it.
        if let Some(start) = Instant::now().checked_sub(Duration::from_secs(window)) {
            self.start = start;
        }
        let now = self.now();
        let mut all: Vec<(u64, &str, u64)> = entries
            .iter()
            .flat_map(|(k, v)| {
                v.iter()
                    .map(move |&(age, c)| (now.saturating_sub(age), k.as_str(), c))
            })
            .collect();
        all.sort_unstable();
        self.window = Window::new(window);
        for (at, k, c) in all {
            self.window.add_count(k, at, c);
        }
        Ok(())
    }
}

/// Registers `rolling_top`.
pub fn register(registry: &mut Registry) {
    registry.bolt(
        "rolling_top",
        "The top `n` keys by count over the last `window_secs`, emitted on every tick as `rank, key, count`.",
        |_: &Config| vec![StreamDecl::default_stream(["rank", "key", "count"])],
        |config: Config| {
            Ok(RollingTop {
                window: Window::new(config.window_secs.get()),
                config,
                start: Instant::now(),
            })
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranking_covers_only_the_window() {
        let mut w = Window::new(3);
        for (key, at) in [("a", 0), ("b", 0), ("b", 1), ("c", 2), ("c", 2), ("c", 3)] {
            w.add(key, at);
        }
        // At second 3 the window holds seconds 1..=3: b once, c three times.
        w.evict(3);
        assert_eq!(w.top(5), [("c", 3), ("b", 1)]);
        w.evict(5);
        assert_eq!(w.top(5), [("c", 1)]);
        w.evict(6);
        assert!(w.top(5).is_empty());
    }

    #[test]
    fn ties_rank_by_key_and_n_bounds_the_ranking() {
        let mut w = Window::new(60);
        for key in ["z", "y", "x", "y", "z"] {
            w.add(key, 0);
        }
        assert_eq!(w.top(2), [("y", 2), ("z", 2)]);
    }

    /// A bolt whose window holds `counts` as (key, seconds ago, count) entries.
    fn bolt_with(window: u64, counts: &[(&str, u64, u64)]) -> RollingTop {
        let table: toml::Table = format!("window_secs = {window}").parse().expect("toml");
        let config = topo_dsl::parse_config::<Config>(&table).expect("config");
        let mut bolt = RollingTop {
            config,
            window: Window::new(window),
            start: Instant::now()
                .checked_sub(Duration::from_secs(window))
                .expect("a clock that far back"),
        };
        let now = bolt.now();
        let mut all: Vec<(u64, &str, u64)> = counts
            .iter()
            .map(|&(k, ago, c)| (now - ago, k, c))
            .collect();
        all.sort_unstable();
        for (at, k, c) in all {
            bolt.window.add_count(k, at, c);
        }
        bolt
    }

    #[test]
    fn a_restored_window_ranks_as_the_snapshot_did_and_ages_its_counts() {
        let mut old = bolt_with(10, &[("a", 9, 5), ("b", 3, 2), ("b", 0, 2), ("c", 1, 1)]);
        let mut state = TaskState::default();
        old.snapshot(&mut state).expect("snapshot");
        let mut new = bolt_with(10, &[]);
        let reader = TaskStateReader::from_state(&state, 0..topo_engine::state::KEY_GROUPS);
        new.restore(&reader).expect("restore");
        let now = new.now();
        new.window.evict(now);
        assert_eq!(new.window.top(5), [("a", 5), ("b", 4), ("c", 1)]);
        // `a`'s counts were 9 seconds old: two seconds later they left the window.
        new.window.evict(now + 2);
        assert_eq!(new.window.top(5), [("b", 4), ("c", 1)]);
    }

    #[test]
    fn a_zero_window_is_a_config_error() {
        let table: toml::Table = "window_secs = 0".parse().expect("toml");
        let err = topo_dsl::parse_config::<Config>(&table).expect_err("zero");
        assert_eq!(
            err[0].message,
            "invalid value: integer `0`, expected a nonzero u64\nin `window_secs`"
        );
    }
}
