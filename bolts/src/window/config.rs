//! `window_aggregate`'s config: the window, the key, the aggregates, time and lateness.

use std::time::Duration;

use serde::Deserialize;
use topo_dsl::StreamDecl;
use topo_engine::window::{Length, WindowSpec, LATE_FIELD};
use topo_engine::Result;

use crate::expr::Expr;

/// The stream late tuples go to.
pub const LATE_STREAM: &str = "late";

/// `window = { ... }`: a length and an optional slide, in seconds or in tuples.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowTable {
    length_secs: Option<f64>,
    slide_secs: Option<f64>,
    length_count: Option<u64>,
    slide_count: Option<u64>,
}

fn millis(what: &str, secs: f64) -> Result<i64, String> {
    let ms = secs * 1000.0;
    if !(ms >= 1.0 && ms.fract() == 0.0 && ms < 1e15) {
        return Err(format!(
            "`{what}` must be a positive whole number of milliseconds; got {secs}"
        ));
    }
    Ok(ms as i64)
}

impl TryFrom<WindowTable> for WindowSpec {
    type Error = String;
    fn try_from(w: WindowTable) -> Result<Self, String> {
        match (w.length_secs, w.slide_secs, w.length_count, w.slide_count) {
            (Some(l), s, None, None) => {
                let length = millis("length_secs", l)?;
                let slide = s.map_or(Ok(length), |s| millis("slide_secs", s))?;
                Ok(WindowSpec::sliding(Length::Millis(length), Length::Millis(slide)))
            }
            (None, None, Some(l), s) => {
                let slide = s.unwrap_or(l);
                if l == 0 || slide == 0 {
                    return Err("`length_count` and `slide_count` must be positive".into());
                }
                Ok(WindowSpec::sliding(Length::Count(l), Length::Count(slide)))
            }
            (None, _, None, _) => Err("`window` needs `length_secs` or `length_count`".into()),
            _ => Err("`window` is by time (`length_secs`, `slide_secs`) or by count (`length_count`, `slide_count`), not both".into()),
        }
    }
}

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Tuples (`count()`), or non-null values (`count(x)`).
    Count,
    /// Sum of numbers.
    Sum,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// Mean of numbers (a float).
    Avg,
}

/// One aggregate: `count() as n`, `sum(bytes * 8) as bits`.
#[derive(Debug, Clone)]
pub struct Aggregate {
    /// The output field.
    pub name: String,
    /// The function.
    pub function: Function,
    /// Its argument (`None` only for `count()`).
    pub arg: Option<Expr>,
}

impl TryFrom<String> for Aggregate {
    type Error = String;
    fn try_from(src: String) -> Result<Self, String> {
        let bad = || {
            format!("`{src}`: expected `FUNCTION(ARG) as NAME`, FUNCTION one of count, sum, min, max, avg")
        };
        let (call, name) = src.rsplit_once(" as ").ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad());
        }
        let call = call.trim();
        let (f, rest) = call.split_once('(').ok_or_else(bad)?;
        let inner = rest.strip_suffix(')').ok_or_else(bad)?.trim();
        let function = match f.trim() {
            "count" => Function::Count,
            "sum" => Function::Sum,
            "min" => Function::Min,
            "max" => Function::Max,
            "avg" => Function::Avg,
            _ => return Err(bad()),
        };
        let arg = if inner.is_empty() {
            if function != Function::Count {
                return Err(format!("`{src}`: `{}` needs an argument", f.trim()));
            }
            None
        } else {
            Some(Expr::parse(inner).map_err(|e| format!("`{src}`: {e}"))?)
        };
        Ok(Aggregate {
            name: name.to_string(),
            function,
            arg,
        })
    }
}

impl<'de> Deserialize<'de> for Aggregate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Aggregate::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    window: WindowTable,
    timestamp_field: Option<String>,
    lag_secs: Option<f64>,
    watermark_interval_secs: Option<f64>,
    #[serde(default)]
    key: Vec<String>,
    aggregates: Vec<Aggregate>,
}

/// Config of `window_aggregate`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawConfig")]
pub struct Config {
    /// Length and slide.
    pub window: WindowSpec,
    /// Event time from this integer field (ms); processing time when absent.
    pub timestamp_field: Option<String>,
    /// How far the watermark trails the latest timestamps.
    pub lag: Duration,
    /// How often the watermark is recomputed (zero: after every tuple); it is also
    /// recomputed whenever a tuple goes to a newer pane than any before.
    pub watermark_interval: Duration,
    /// The fields grouped by (none: one group).
    pub key: Vec<String>,
    /// What is computed per key and window.
    pub aggregates: Vec<Aggregate>,
}

impl TryFrom<RawConfig> for Config {
    type Error = String;
    fn try_from(raw: RawConfig) -> Result<Self, String> {
        let window = WindowSpec::try_from(raw.window)?;
        if raw.timestamp_field.is_some() && matches!(window.length, Length::Count(_)) {
            return Err("count windows count tuples as they arrive: `timestamp_field` needs a time window (`length_secs`)".into());
        }
        let secs = |what: &str, v: Option<f64>, default: f64| {
            let v = v.unwrap_or(default);
            if v.is_finite() && v >= 0.0 {
                Ok(Duration::from_secs_f64(v))
            } else {
                Err(format!("`{what}` must be a number of seconds ≥ 0; got {v}"))
            }
        };
        let lag = secs("lag_secs", raw.lag_secs, 0.0)?;
        let watermark_interval = secs("watermark_interval_secs", raw.watermark_interval_secs, 1.0)?;
        if raw.aggregates.is_empty() {
            return Err("`aggregates` needs at least one aggregate, e.g. \"count() as n\"".into());
        }
        let mut names: Vec<&str> = raw.key.iter().map(String::as_str).collect();
        names.extend(["window_start", "window_end"]);
        for a in &raw.aggregates {
            if names.contains(&a.name.as_str()) {
                return Err(format!("output field `{}` appears twice", a.name));
            }
            names.push(&a.name);
        }
        Ok(Config {
            window,
            timestamp_field: raw.timestamp_field,
            lag,
            watermark_interval,
            key: raw.key,
            aggregates: raw.aggregates,
        })
    }
}

impl Config {
    /// The streams the bolt declares: the results, and `late`.
    pub fn outputs(&self) -> Vec<StreamDecl> {
        let mut fields = self.key.clone();
        fields.extend(["window_start".to_string(), "window_end".to_string()]);
        fields.extend(self.aggregates.iter().map(|a| a.name.clone()));
        vec![
            StreamDecl::default_stream(fields),
            StreamDecl::named(LATE_STREAM, [LATE_FIELD]),
        ]
    }
}
