//! Python virtualenvs for a topology's `python_requirements`: one per distinct
//! requirements file (by the SHA-256 of its bytes) under a root folder, built once with
//! `python3 -m venv` and pip, shared by every topology that asks for the same packages.
//!
//! ```text
//! ROOT/
//!   <sha256>/            the virtualenv (bin/python3, lib/…); complete when it holds
//!   <sha256>/.topo-ready   this marker, written last
//!   <sha256>.lock        taken (flock) while one is built, so concurrent builds wait
//!   <sha256>.log         what venv and pip printed during the last build
//! ```
//!
//! Workers and multilang children then run with `ROOT/<sha256>/bin` first on `PATH`, so
//! `command = ["python3", "split.py"]` gets the topology's packages. pip runs with what a
//! worker's environment keeps plus this process's `PIP_*` variables, proxies and
//! certificate bundles, so `PIP_INDEX_URL`, `PIP_FIND_LINKS` and `PIP_NO_INDEX` configure
//! where packages come from, and no secret reaches a package's setup code.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use std::ffi::OsString;

use sha2::{Digest, Sha256};
use tracing::info;

use super::process::KEPT_ENV;

/// The default time a build (venv and pip together) may take.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The file whose presence says a virtualenv is complete.
const READY: &str = ".topo-ready";

/// Lines of pip's output an error shows.
const TAIL_LINES: usize = 12;

/// Why a virtualenv could not be had.
#[derive(Debug, thiserror::Error)]
pub enum VenvError {
    /// The requirements file cannot be read.
    #[error("cannot read the python_requirements file {}: {source}", path.display())]
    Requirements {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A step failed or could not start.
    #[error("{step} failed: {why}\n{tail}(full output in {})", log.display())]
    Step {
        /// `python3 -m venv` or `pip install`.
        step: &'static str,
        /// Its exit status, or why it did not run.
        why: String,
        /// The last lines of its output.
        tail: String,
        /// Where all of it is.
        log: PathBuf,
    },
    /// A file operation in the root failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> VenvError + 'a {
    move |source| VenvError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The SHA-256 of a requirements file's bytes, in hex: its virtualenv's name.
pub fn requirements_hash(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A virtualenv ready to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venv {
    /// Its folder.
    pub dir: PathBuf,
    /// The SHA-256 of its requirements.
    pub hash: String,
    /// It was built now (not found complete).
    pub built: bool,
}

impl Venv {
    /// Its `bin/`, to put first on `PATH`.
    pub fn bin(&self) -> PathBuf {
        self.dir.join("bin")
    }
}

/// The virtualenv of the requirements file `requirements` under `root`: found complete,
/// or built now (`python3 -m venv`, then `pip install -r`), all within `timeout`. Another
/// process or thread building the same one is waited for.
pub fn ensure(root: &Path, requirements: &Path, timeout: Duration) -> Result<Venv, VenvError> {
    let bytes = std::fs::read(requirements).map_err(|source| VenvError::Requirements {
        path: requirements.to_path_buf(),
        source,
    })?;
    let hash = requirements_hash(&bytes);
    std::fs::create_dir_all(root).map_err(io("cannot create", root))?;
    let root = std::fs::canonicalize(root).map_err(io("cannot resolve", root))?;
    let dir = root.join(&hash);
    let lock_path = root.join(format!("{hash}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io("cannot create", &lock_path))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is closed.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io("cannot lock", &lock_path)(
            std::io::Error::last_os_error(),
        ));
    }
    if dir.join(READY).is_file() {
        touch(&dir);
        return Ok(Venv {
            dir,
            hash,
            built: false,
        });
    }
    // A build cut short (a crash, a timeout) left a folder without the marker.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io("cannot remove", &dir))?;
    }
    // pip reads the file from the venv's root: a copy, so the one given may go away.
    let log = root.join(format!("{hash}.log"));
    let started = Instant::now();
    info!(venv = %dir.display(), "Building a Python virtualenv for the topology's requirements.");
    let deadline = started + timeout;
    // Without pip in the venv (ensurepip costs seconds per venv): the host's pip
    // installs into it with `--python` when it is recent enough (22.3), else the venv
    // gets a pip of its own.
    run(
        "python3 -m venv",
        Command::new("python3")
            .args(["-m", "venv", "--without-pip"])
            .arg(&dir),
        &log,
        deadline,
        timeout,
    )?;
    let req_copy = dir.join("requirements.txt");
    std::fs::write(&req_copy, &bytes).map_err(io("cannot write", &req_copy))?;
    let python = dir.join("bin").join("python3");
    let mut pip = if host_pip_targets_others() {
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "pip", "--python"]).arg(&python);
        cmd
    } else {
        run(
            "python3 -m ensurepip",
            Command::new(&python).args(["-m", "ensurepip", "--default-pip"]),
            &log,
            deadline,
            timeout,
        )?;
        let mut cmd = Command::new(&python);
        cmd.args(["-m", "pip"]);
        cmd
    };
    run(
        "pip install",
        pip.args(["install", "--disable-pip-version-check", "--no-input"])
            .arg("-r")
            .arg(&req_copy)
            .current_dir(&dir),
        &log,
        deadline,
        timeout,
    )?;
    let ready = dir.join(READY);
    std::fs::write(&ready, &hash).map_err(io("cannot write", &ready))?;
    info!(venv = %dir.display(), secs = started.elapsed().as_secs_f64(), "Python virtualenv ready.");
    Ok(Venv {
        dir,
        hash,
        built: true,
    })
}

/// True when the host's `python3 -m pip` takes `--python` (pip 22.3 and later), so it
/// can install into a venv that has no pip of its own.
fn host_pip_targets_others() -> bool {
    let Ok(out) = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    else {
        return false;
    };
    // "pip 23.2.1 from /usr/lib/python3/dist-packages/pip (python 3.11)"
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.split_whitespace().nth(1).unwrap_or("");
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    out.status.success() && (major, minor) >= (22, 3)
}

/// Marks a virtualenv used now (its marker's time), for [`collect_garbage`].
fn touch(dir: &Path) {
    let ready = dir.join(READY);
    if let Ok(f) = std::fs::File::options().append(true).open(&ready) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Variables a build keeps besides [`KEPT_ENV`]: proxies and certificate bundles pip
/// may need to reach an index; every `PIP_*` variable is kept too.
const BUILD_ENV: [&str; 10] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
];

/// The environment of a build step out of `vars` (this process's): what a worker keeps,
/// pip's own settings and the proxies. A package's setup code runs in it, so nothing
/// secret the supervisor holds (`TOPO_CLUSTER_SECRET`) is passed on.
fn build_env(vars: impl Iterator<Item = (OsString, OsString)>) -> Vec<(OsString, OsString)> {
    vars.filter(|(k, _)| {
        k.to_str().is_some_and(|k| {
            KEPT_ENV.contains(&k) || BUILD_ENV.contains(&k) || k.starts_with("PIP_")
        })
    })
    .collect()
}

/// Runs one build step with its output appended to `log`, killed at `deadline`.
fn run(
    step: &'static str,
    cmd: &mut Command,
    log: &Path,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), VenvError> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io("cannot write", log))?;
    let err = out.try_clone().map_err(io("cannot write", log))?;
    let fail = |why: String| VenvError::Step {
        step,
        why,
        tail: tail(log),
        log: log.to_path_buf(),
    };
    let mut child = cmd
        .env_clear()
        .envs(build_env(std::env::vars_os()))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(fail(status.to_string())),
            Ok(None) if Instant::now() >= deadline => {
                // SAFETY: signalling the process group the child leads.
                unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
                let _ = child.wait();
                return Err(fail(format!(
                    "it did not finish within {:?} (the virtualenv timeout); killed",
                    timeout
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(fail(e.to_string())),
        }
    }
}

/// The last [`TAIL_LINES`] lines of `log`, each indented, ending with a line break.
fn tail(log: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let _ = f.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(TAIL_LINES);
    lines[start..]
        .iter()
        .map(|l| format!("  | {l}\n"))
        .collect()
}

/// Removes the virtualenvs under `root` whose hash is not in `keep`, except the `newest`
/// most recently used of them; returns the hashes removed. One being built (locked) is
/// left alone.
pub fn collect_garbage(
    root: &Path,
    keep: &std::collections::HashSet<String>,
    newest: usize,
) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut unused: Vec<(std::time::SystemTime, String)> = entries
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_str()?.to_string();
            let is_hash = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_hash || keep.contains(&name) {
                return None;
            }
            let used = std::fs::metadata(e.path().join(READY))
                .and_then(|m| m.modified())
                .ok()?;
            Some((used, name))
        })
        .collect();
    unused.sort();
    let drop = unused.len().saturating_sub(newest);
    let mut removed = Vec::new();
    for (_, hash) in unused.into_iter().take(drop) {
        let lock_path = root.join(format!("{hash}.lock"));
        let Ok(lock) = std::fs::File::options().write(true).open(&lock_path) else {
            continue;
        };
        // SAFETY: a non-blocking flock on a descriptor we own.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        if std::fs::remove_dir_all(root.join(&hash)).is_ok() {
            let _ = std::fs::remove_file(root.join(format!("{hash}.log")));
            removed.push(hash);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_pip_is_a_clear_error_and_leaves_no_ready_venv() {
        let root = tempfile::tempdir().expect("dir");
        let req = root.path().join("requirements.txt");
        // An option pip does not know fails at once, without the network.
        std::fs::write(&req, "--no-such-pip-option\n").expect("write");
        let err = ensure(&root.path().join("venvs"), &req, DEFAULT_TIMEOUT).expect_err("fails");
        let text = err.to_string();
        assert!(
            text.starts_with("pip install failed: exit status: "),
            "{text}"
        );
        assert!(text.contains("no-such-pip-option"), "{text}");
        assert!(text.contains("(full output in "), "{text}");
        let hash = requirements_hash(b"--no-such-pip-option\n");
        assert!(!root.path().join("venvs").join(&hash).join(READY).exists());
    }

    #[test]
    fn a_build_gets_pips_settings_and_no_secret() {
        let vars = [
            ("PATH", "/usr/bin"),
            ("PIP_INDEX_URL", "https://mirror.example/simple"),
            ("HTTPS_PROXY", "http://proxy:3128"),
            ("TOPO_CLUSTER_SECRET", "hunter2"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let kept: Vec<String> = build_env(vars.into_iter())
            .into_iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(kept, ["PATH", "PIP_INDEX_URL", "HTTPS_PROXY"]);
    }

    #[test]
    fn a_step_past_the_timeout_is_killed_with_a_clear_error() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("x.log");
        let timeout = Duration::from_millis(200);
        let started = Instant::now();
        let err = run(
            "pip install",
            Command::new("sh").args(["-c", "echo resolving; sleep 30"]),
            &log,
            started + timeout,
            timeout,
        )
        .expect_err("timed out");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "killed, not waited for"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "pip install failed: it did not finish within 200ms (the virtualenv timeout); \
                 killed\n  | resolving\n(full output in {})",
                log.display()
            )
        );
    }

    #[test]
    fn an_empty_requirements_file_builds_once_and_is_found_again() {
        let root = tempfile::tempdir().expect("dir");
        let req = root.path().join("requirements.txt");
        std::fs::write(&req, "# nothing\n").expect("write");
        let venvs = root.path().join("venvs");
        let first = ensure(&venvs, &req, DEFAULT_TIMEOUT).expect("built");
        assert!(first.built);
        assert!(first.bin().join("python3").exists());
        let again = ensure(&venvs, &req, DEFAULT_TIMEOUT).expect("found");
        assert!(!again.built);
        assert_eq!(again.dir, first.dir);
        // Unused and beyond the newest 0: collected.
        let keep = std::collections::HashSet::new();
        assert_eq!(collect_garbage(&venvs, &keep, 1), Vec::<String>::new());
        assert_eq!(collect_garbage(&venvs, &keep, 0), vec![first.hash.clone()]);
        assert!(!first.dir.exists());
    }
}
