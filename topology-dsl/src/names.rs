//! Topology names and ids: the characters and length allowed, checked wherever one enters.
//!
//! A name becomes part of paths (the cluster's `DIR/work/<id>/`) and of ids
//! (`<name>-<unix time>[-n]`), so it is a single path component by construction: ASCII
//! letters, digits, `_` and `-`, 1 to [`MAX_NAME_LEN`] bytes. No `.`, `/`, `\`, spaces
//! or control characters; a name cannot be `.`/`..` or absolute.

/// Longest topology name, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Longest topology id (`<name>-<unix time>[-n]`), in bytes.
pub const MAX_ID_LEN: usize = 100;

/// A topology name or id that is not allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid topology {what} \"{shown}\": {why}")]
pub struct NameError {
    /// `name` or `id`.
    pub what: &'static str,
    /// The value, escaped and shortened for printing.
    pub shown: String,
    /// What rule it breaks.
    pub why: String,
}

/// The hint shown with a bad name.
pub const NAME_RULE: &str =
    "names use ascii letters, digits, \"_\" and \"-\", at most 64 characters";

impl NameError {
    /// The rule broken, without the general hint (diagnostics show that as their hint).
    pub fn why_short(&self) -> &str {
        self.why.split("; ").next().unwrap_or(&self.why)
    }
}

fn check(value: &str, what: &'static str, max: usize) -> Result<(), NameError> {
    let fail = |why: String| NameError {
        what,
        shown: value
            .chars()
            .take(80)
            .collect::<String>()
            .escape_debug()
            .to_string(),
        why,
    };
    if value.is_empty() {
        return Err(fail("it is empty".into()));
    }
    if value.len() > max {
        return Err(fail(format!("{} bytes, at most {max}", value.len())));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(fail(format!(
            "{:?} is not allowed; {NAME_RULE}",
            c.escape_debug().to_string()
        )));
    }
    Ok(())
}

/// Checks a topology name: ASCII letters, digits, `_`, `-`, 1 to [`MAX_NAME_LEN`] bytes.
pub fn check_name(name: &str) -> Result<(), NameError> {
    check(name, "name", MAX_NAME_LEN)
}

/// Checks a topology id (a name with a `-<unix time>[-n]` suffix): the same characters,
/// 1 to [`MAX_ID_LEN`] bytes.
pub fn check_id(id: &str) -> Result<(), NameError> {
    check(id, "id", MAX_ID_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for ok in [
            "wordcount",
            "file_wordcount",
            "a-1",
            "X",
            &"n".repeat(MAX_NAME_LEN),
        ] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_id("wordcount-1764650000-2"), Ok(()));
    }

    #[test]
    fn paths_and_odd_characters_are_refused_with_the_reason() {
        let err = check_name("../../x").expect_err("traversal");
        assert_eq!(
            err.to_string(),
            "invalid topology name \"../../x\": \".\" is not allowed; names use ascii letters, digits, \"_\" and \"-\", at most 64 characters"
        );
        for bad in ["/etc/passwd", "a b", "..", "a\\b", "ünï", "a\nb", ""] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        let long = "n".repeat(MAX_NAME_LEN + 1);
        assert_eq!(
            check_name(&long).expect_err("long").why,
            format!("{} bytes, at most {MAX_NAME_LEN}", MAX_NAME_LEN + 1)
        );
        assert!(check_id(&"i".repeat(MAX_ID_LEN + 1)).is_err());
        assert_eq!(check_name("").expect_err("empty").why, "it is empty");
    }
}
