//! Diagnostics: what is wrong, where, and how to fix it; rendered rustc/gcc style.
//!
//! ```text
//! bad.topo.toml:12:11: error: unknown input "splt"
//!    |
//! 12 | inputs = ["splt"]
//!    |           ^^^^^^
//!    = hint: did you mean "split"?
//! ```

use std::fmt::{self, Write as _};

use crate::spec::Span;

/// One problem found in a topology.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    /// What is wrong: short, lowercase, no trailing period.
    pub message: String,
    /// Where, when the spec came from a file.
    pub span: Option<Span>,
    /// How to fix it.
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic without a hint.
    pub fn new(message: impl Into<String>, span: Option<Span>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a hint if there is one.
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// Where a diagnostic points in its file: 1-based lines, columns in characters; the end is
/// exclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Line of the first character.
    pub line: usize,
    /// Column of the first character.
    pub column: usize,
    /// Line of the end.
    pub end_line: usize,
    /// Column just past the last character.
    pub end_column: usize,
}

impl Diagnostic {
    /// Where this diagnostic points in `source`, when it has a span.
    pub fn location(&self, source: &str) -> Option<Location> {
        let span = self.span?;
        let (line, column, _) = position(source, span.start);
        let (end_line, end_column, _) = position(source, span.end.max(span.start));
        Some(Location {
            line,
            column,
            end_line,
            end_column,
        })
    }
}

/// Every problem found in a topology.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Diagnostics {
    /// The problems, in source order for a file, in component order for a builder.
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    /// The messages alone, in order (what tests usually compare).
    pub fn messages(&self) -> Vec<&str> {
        self.items.iter().map(|d| d.message.as_str()).collect()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// No problems.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Renders every diagnostic against the file `file` whose text is `source`:
    /// `FILE:LINE:COL: error: MESSAGE`, the source line, a caret under the span, the hint and
    /// an empty line.
    /// Lines and columns are 1-based; columns count characters.
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = String::new();
        for d in &self.items {
            render_one(&mut out, d, file, source);
        }
        out
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.items {
            writeln!(f, "error: {}", d.message)?;
            if let Some(h) = &d.hint {
                writeln!(f, "  = hint: {h}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// 1-based line and column (in characters) of byte offset `at` in `source`, with the
/// line's text. Offsets past the end or inside a character are clamped.
pub fn position(source: &str, at: usize) -> (usize, usize, &str) {
    let mut at = at.min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    let line_start = source[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[at..].find('\n').map_or(source.len(), |i| at + i);
    let line_no = source[..line_start].matches('\n').count() + 1;
    let col = source[line_start..at].chars().count() + 1;
    let text = source[line_start..line_end].trim_end_matches('\r');
    (line_no, col, text)
}

fn render_one(out: &mut String, d: &Diagnostic, file: &str, source: &str) {
    let Some(span) = d.span else {
        let _ = writeln!(out, "{file}: error: {}", d.message);
        if let Some(h) = &d.hint {
            let _ = writeln!(out, "  = hint: {h}");
        }
        out.push('\n');
        return;
    };
    let (line, col, text) = position(source, span.start);
    let gutter = line.to_string().len();
    let pad = " ".repeat(gutter);
    // The caret covers the span's characters on its first line, at least one.
    let len = span.end.saturating_sub(span.start);
    let mut width = 0;
    let mut bytes = 0;
    for ch in text.chars().skip(col - 1) {
        if bytes >= len {
            break;
        }
        bytes += ch.len_utf8();
        width += 1;
    }
    let width = width.max(1);
    // Keep tabs so the caret lines up under them.
    let lead: String = text
        .chars()
        .take(col - 1)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    let _ = writeln!(out, "{file}:{line}:{col}: error: {}", d.message);
    let _ = writeln!(out, "{pad} |");
    let _ = writeln!(out, "{line} | {text}");
    let _ = writeln!(out, "{pad} | {lead}{}", "^".repeat(width));
    if let Some(h) = &d.hint {
        let _ = writeln!(out, "{pad} = hint: {h}");
    }
    out.push('\n');
}

/// `did you mean "x"?` for the candidate closest to `word`, if one is close enough.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean \"{c}\"?"))
}

/// The candidate closest to `word` by Jaro-Winkler similarity, if it is close (> 0.8).
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// `"a", "b" and "c"`.
pub fn quoted_list<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| format!("\"{}\"", s.as_ref()))
        .collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let src = "a = 1\nné = \"x\"\n";
        assert_eq!(position(src, 0), (1, 1, "a = 1"));
        let at = src.rfind('=').unwrap_or(0);
        assert_eq!(position(src, at), (2, 4, "né = \"x\""));
        assert_eq!(position(src, 10_000), (3, 1, ""));
    }

    #[test]
    fn renders_rustc_style() {
        let src = "[bolts.count]\ninputs = [\"splt\"]\n";
        let d = Diagnostics {
            items: vec![
                Diagnostic::new("unknown input \"splt\"", Some(Span::new(24, 30)))
                    .with_hint("did you mean \"split\"?"),
            ],
        };
        assert_eq!(
            d.render("f.toml", src),
            "f.toml:2:11: error: unknown input \"splt\"\n  |\n2 | inputs = [\"splt\"]\n  |           ^^^^^^\n  = hint: did you mean \"split\"?\n\n"
        );
    }

    #[test]
    fn locations_span_lines_and_characters() {
        let src = "[bolts.count]\ninputs = [\"splt\"]\n";
        let d = Diagnostic::new("x", Some(Span::new(24, 30)));
        assert_eq!(
            d.location(src),
            Some(Location {
                line: 2,
                column: 11,
                end_line: 2,
                end_column: 17
            })
        );
        assert_eq!(Diagnostic::new("x", None).location(src), None);
    }

    #[test]
    fn lists_and_suggestions() {
        assert_eq!(quoted_list(&["a", "b", "c"]), "\"a\", \"b\" and \"c\"");
        assert_eq!(quoted_list(&["a"]), "\"a\"");
        assert_eq!(
            did_you_mean("splt", ["split", "count"]).as_deref(),
            Some("did you mean \"split\"?")
        );
        assert_eq!(did_you_mean("zzz", ["split", "count"]), None);
    }
}
