//! The files a topology ships with it: `resources` and `python_requirements` in
//! `[topology]`, as paths relative to the topology file, checked for their form.
//!
//! Whether they exist is a question for the file system, asked by `topo validate`,
//! `topo run` and `topo submit`; here a path only has to stay inside the topology's
//! folder: relative, no `..`, no empty component.

use std::path::{Component as PathPart, Path};

/// The `resources` and `python_requirements` of a topology.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    /// Files and folders relative to the topology file, as written (a trailing `/` kept).
    pub paths: Vec<String>,
    /// A pip requirements file among `paths`.
    pub python_requirements: Option<String>,
}

impl Resources {
    /// No resources and no requirements.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.python_requirements.is_none()
    }

    /// True when `path` (relative to the topology file) is one of the resources or lies
    /// in a resource folder; compared by path components, so `./a//b` is `a/b`.
    pub fn covers(&self, path: &str) -> bool {
        let Some(wanted) = normal_parts(path) else {
            return false;
        };
        self.paths.iter().any(|r| {
            normal_parts(r).is_some_and(|parts| wanted.starts_with(&parts) && !parts.is_empty())
        })
    }
}

/// The normal components of a relative path; `None` when it is absolute or has `..`.
fn normal_parts(path: &str) -> Option<Vec<&str>> {
    let mut out = Vec::new();
    for part in Path::new(path).components() {
        match part {
            PathPart::Normal(p) => out.push(p.to_str()?),
            PathPart::CurDir => {}
            PathPart::ParentDir | PathPart::RootDir | PathPart::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Checks that `path` names something inside the topology's folder: relative, without
/// `..`, not the folder itself. The error says which rule it breaks.
pub fn check_resource_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("it is empty".into());
    }
    if path.contains('\0') || path.contains('\\') {
        return Err("it holds a NUL or a backslash".into());
    }
    if Path::new(path).is_absolute() {
        return Err("it is absolute; resources are relative to the topology file".into());
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, PathPart::ParentDir))
    {
        return Err("it goes up with \"..\"; resources stay in the topology file's folder".into());
    }
    match normal_parts(path) {
        Some(parts) if !parts.is_empty() => Ok(()),
        _ => Err("it names the topology file's folder itself; list what is in it".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_folder() {
        for ok in ["multilang/", "data/lookup.csv", "./split.py", "a/./b"] {
            assert_eq!(check_resource_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "it is empty"),
            ("/etc/passwd", "it is absolute"),
            ("../evil", "it goes up"),
            ("a/../../b", "it goes up"),
            (".", "it names the topology file's folder"),
            ("a\\b", "backslash"),
        ] {
            let err = check_resource_path(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn a_file_is_covered_by_itself_or_its_folder() {
        let r = Resources {
            paths: vec!["multilang/".into(), "data/lookup.csv".into()],
            python_requirements: None,
        };
        assert!(r.covers("multilang/split.py"));
        assert!(r.covers("./multilang//split.py"));
        assert!(r.covers("data/lookup.csv"));
        assert!(!r.covers("data/other.csv"));
        assert!(!r.covers("split.py"));
        assert!(!r.covers("multilang/../split.py"));
        assert!(!r.covers("multilangx/split.py"));
    }
}
