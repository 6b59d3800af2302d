//! A strict parser of the Prometheus text exposition format (0.0.4), for tests: every
//! line must be a comment, a `# HELP`/`# TYPE` line or a well-formed sample; a family's
//! `# TYPE` comes once and before its samples; no series appears twice.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap, HashSet};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// A parsed exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Family name -> type.
    pub types: HashMap<String, String>,
}

impl Exposition {
    /// Sum of the samples named `name` whose labels include every pair of `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.matching(name, with).map(|s| s.value).sum()
    }

    /// The samples named `name` whose labels include every pair of `with`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && with
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let ok_first = |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
    matches!(chars.next(), Some(c) if ok_first(c))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s.parse::<f64>().map_err(|_| format!("bad value `{s}`")),
    }
}

/// The family a sample name belongs to, given the declared types.
fn family<'a>(name: &'a str, types: &HashMap<String, String>) -> &'a str {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if matches!(
                types.get(base).map(String::as_str),
                Some("histogram" | "summary")
            ) {
                return base;
            }
        }
    }
    name
}

/// Parses `text`, or says which line is wrong and why.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen_series = HashSet::new();
    let mut families_with_samples = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let err = |m: String| format!("line {}: {m}: {line:?}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix('#') {
            let mut words = rest.trim_start().splitn(3, ' ');
            match words.next() {
                Some("HELP") => {
                    let name = words.next().unwrap_or("");
                    if !is_name(name, true) {
                        return Err(err("bad metric name in HELP".into()));
                    }
                }
                Some("TYPE") => {
                    let name = words.next().unwrap_or("");
                    let kind = words.next().unwrap_or("");
                    if !is_name(name, true) {
                        return Err(err("bad metric name in TYPE".into()));
                    }
                    if !matches!(
                        kind,
                        "counter" | "gauge" | "histogram" | "summary" | "untyped"
                    ) {
                        return Err(err(format!("unknown type `{kind}`")));
                    }
                    if families_with_samples.contains(name) {
                        return Err(err("TYPE after the family's samples".into()));
                    }
                    if out
                        .types
                        .insert(name.to_string(), kind.to_string())
                        .is_some()
                    {
                        return Err(err("second TYPE for one family".into()));
                    }
                }
                _ => {}
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| err("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, true) {
            return Err(err("bad metric name".into()));
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            rest = r;
            loop {
                if let Some(r) = rest.strip_prefix('}') {
                    rest = r;
                    break;
                }
                let eq = rest
                    .find('=')
                    .ok_or_else(|| err("label without `=`".into()))?;
                let key = &rest[..eq];
                if !is_name(key, false) {
                    return Err(err(format!("bad label name `{key}`")));
                }
                rest = rest[eq + 1..]
                    .strip_prefix('"')
                    .ok_or_else(|| err("label value not quoted".into()))?;
                let mut value = String::new();
                let mut chars = rest.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => return Err(err("bad escape in label value".into())),
                        },
                        Some((j, '"')) => break j,
                        Some((_, c)) => value.push(c),
                        None => return Err(err("unterminated label value".into())),
                    }
                };
                if labels.insert(key.to_string(), value).is_some() {
                    return Err(err(format!("label `{key}` twice")));
                }
                rest = &rest[end + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else if !rest.starts_with('}') {
                    return Err(err("expected `,` or `}` after a label".into()));
                }
            }
        }
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| err("no space before the value".into()))?;
        let mut parts = rest.split(' ');
        let value = parse_value(parts.next().unwrap_or("")).map_err(err)?;
        if let Some(ts) = parts.next() {
            ts.parse::<i64>()
                .map_err(|_| err(format!("bad timestamp `{ts}`")))?;
        }
        if parts.next().is_some() {
            return Err(err("trailing text".into()));
        }
        let fam = family(name, &out.types).to_string();
        if out.types.get(&fam).map(String::as_str) == Some("histogram")
            && name.ends_with("_bucket")
            && !labels.contains_key("le")
        {
            return Err(err("histogram bucket without `le`".into()));
        }
        families_with_samples.insert(fam);
        if !seen_series.insert(format!("{name}{labels:?}")) {
            return Err(err("series appears twice".into()));
        }
        out.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Ok(out)
}

#[test]
fn the_parser_is_strict() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\",y=\"a\\\"b\"} 3\n\
                # TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.5\nh_count 2\n";
    let e = parse(good).unwrap();
    assert_eq!(e.sum("a_total", &[("y", "a\"b")]), 3.0);
    assert_eq!(e.types["h"], "histogram");
    for bad in [
        "a_total 1 2 3\n",
        "a-b 1\n",
        "a{x=1} 1\n",
        "a{x=\"1\" 1\n",
        "a 1\na 2\n",
        "# TYPE a counter\n# TYPE a gauge\n",
        "a 1\n# TYPE a counter\n",
        "# TYPE a blob\n",
        "a one\n",
        "# TYPE h histogram\nh_bucket 1\n",
    ] {
        assert!(parse(bad).is_err(), "{bad:?} parsed");
    }
}
