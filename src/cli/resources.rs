//! A topology's `resources` and `python_requirements` on the command line: checked by
//! `topo validate`, packed by `topo submit`, and resolved by `topo run` against the
//! topology file's folder (with the virtualenv in a cache folder).

use std::path::{Path, PathBuf};

use topo_dsl::Topology;
use topo_engine::launcher::{process, venv};

use super::{EXIT_INVALID, EXIT_USAGE};

/// The component types whose `command` runs a program of the user's.
const MULTILANG: [&str; 2] = ["multilang", "multilang_spout"];

/// Extensions of the scripts a multilang `command` names.
const SCRIPTS: [&str; 10] = [
    "py", "rb", "js", "pl", "sh", "php", "lua", "r", "jar", "mjs",
];

/// The folder the topology file `file` is in: what its relative paths resolve against.
pub(crate) fn base_dir(file: &Path) -> PathBuf {
    if file.as_os_str() == "-" {
        return PathBuf::from(".");
    }
    file.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// What is wrong (errors) or suspicious (warnings) with a topology's resources.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) errors: Vec<String>,
    pub(crate) warnings: Vec<String>,
}

/// Every resource must exist under `base`, the requirements file must be a file, and a
/// multilang `command` naming a script that is not among the resources is warned about
/// (it would be missing on a cluster's hosts).
pub(crate) fn check(t: &Topology, base: &Path) -> Findings {
    let mut out = Findings::default();
    let r = t.resources();
    for path in &r.paths {
        if std::fs::symlink_metadata(base.join(path)).is_err() {
            out.errors.push(format!(
                "resource \"{path}\" does not exist in {}",
                base.display()
            ));
        }
    }
    if let Some(req) = &r.python_requirements {
        if !base.join(req).is_file() {
            out.errors.push(format!(
                "python_requirements \"{req}\" is not a file in {}",
                base.display()
            ));
        }
    }
    for c in t.components() {
        if !MULTILANG.contains(&c.type_name.as_str()) {
            continue;
        }
        let Some(command) = c.config.get("command").and_then(|v| v.as_array()) else {
            continue;
        };
        for arg in command.iter().filter_map(|v| v.as_str()) {
            if names_a_file(arg, base) && !r.covers(arg) {
                out.warnings.push(format!(
                    "component \"{}\": its command names \"{arg}\", which is not among the \
                     resources; in a cluster it will be missing (add it to [topology] resources)",
                    c.id
                ));
            }
        }
    }
    out
}

/// True when a command-line word looks like a script of the topology's folder: a
/// relative path with a `/`, a script's extension, or a file that exists there.
fn names_a_file(arg: &str, base: &Path) -> bool {
    if arg.starts_with('-') || arg.is_empty() || Path::new(arg).is_absolute() {
        return false;
    }
    let script = Path::new(arg)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| SCRIPTS.contains(&e.to_ascii_lowercase().as_str()));
    arg.contains('/') || script || base.join(arg).is_file()
}

/// Prints the findings for `shown`; [`EXIT_INVALID`] when there are errors.
pub(crate) fn report(shown: &str, f: &Findings) -> Result<(), i32> {
    for w in &f.warnings {
        eprintln!("warning: {shown}: {w}");
    }
    for e in &f.errors {
        eprintln!("error: {shown}: {e}");
    }
    if f.errors.is_empty() {
        Ok(())
    } else {
        Err(EXIT_INVALID)
    }
}

/// The resources of `t` packed for `topo submit`, `None` when it has none.
pub(crate) fn pack(t: &Topology, base: &Path, max: u64) -> Result<Option<Vec<u8>>, i32> {
    if t.resources().paths.is_empty() {
        return Ok(None);
    }
    topo_cluster::archive::pack(base, &t.resources().paths, max)
        .map(Some)
        .map_err(|e| {
            eprintln!("error: {e}");
            match e {
                topo_cluster::archive::ArchiveError::Io { .. } => EXIT_USAGE,
                _ => EXIT_INVALID,
            }
        })
}

/// Where `topo run` keeps what it builds once: `TOPO_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/topo`, else `~/.cache/topo`.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TOPO_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("topo");
    }
    std::env::var_os("HOME")
        .map_or_else(std::env::temp_dir, PathBuf::from)
        .join(".cache")
        .join("topo")
}

/// `topo run`'s side: the resources exist, and with `python_requirements` the
/// virtualenv (built once in the cache folder) comes first on the `PATH` of every
/// worker and multilang child of this run.
pub(crate) fn prepare_run(t: &Topology, file: &Path) -> Result<(), i32> {
    let base = base_dir(file);
    report(&file.display().to_string(), &check(t, &base))?;
    let Some(req) = &t.resources().python_requirements else {
        return Ok(());
    };
    let root = cache_dir().join("venvs");
    match venv::ensure(&root, &base.join(req), venv::DEFAULT_TIMEOUT) {
        Ok(v) => {
            if v.built {
                eprintln!(
                    "Built the Python virtualenv of {req} in {}",
                    v.dir.display()
                );
            }
            process::set_path_prefix(v.bin());
            Ok(())
        }
        Err(e) => {
            eprintln!("error: python_requirements {req}: {e}");
            Err(EXIT_USAGE)
        }
    }
}
