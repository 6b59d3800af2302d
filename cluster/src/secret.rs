//! The shared cluster secret: where it comes from, what it may bind, and the keys derived from it.
//!
//! Every daemon and client of one cluster holds the same secret, read from `--secret-file
//! PATH` or the environment variable [`ENV_VAR`] (the file wins). It never goes into argv,
//! onto the wire, or into a log: control connections prove knowledge of it through the Noise
//! pre-shared key derived from it (see [`control`](crate::control)), and each topology's
//! workers get a key derived from it ([`Secret::derive`]) rather than the secret itself.
//!
//! Without a secret a cluster can still run on one machine: the handshake runs with a key
//! derived from an empty secret, and [`check_bind`] refuses every address but loopback.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// The environment variable that holds the secret when no `--secret-file` is given.
pub const ENV_VAR: &str = "TOPO_CLUSTER_SECRET";

type HmacSha256 = hmac::Hmac<Sha256>;

/// Why a secret could not be loaded or an address may not be bound.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The secret file could not be read.
    #[error("cannot read the cluster secret file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The secret file holds nothing but a line break.
    #[error("the cluster secret file {0} is empty")]
    EmptyFile(PathBuf),
    /// The environment variable is set but empty.
    #[error("{ENV_VAR} is set but empty")]
    EmptyEnv,
    /// A non-loopback address without a secret.
    #[error(
        "refusing to listen on {0} without a cluster secret; pass --secret-file or set {ENV_VAR}"
    )]
    NoSecret(SocketAddr),
}

/// The cluster secret, or none (loopback-only clusters).
///
/// `Debug` never shows the bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret {
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = if self.is_set() {
            "<redacted>"
        } else {
            "<none>"
        };
        f.debug_tuple("Secret").field(&shown).finish()
    }
}

impl Secret {
    /// No secret: handshakes run with an empty key, and only loopback may be bound.
    pub fn none() -> Secret {
        Secret { key: None }
    }

    /// A secret from bytes already in memory (tests, embedding). Empty bytes are no secret.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Secret {
        let bytes = bytes.into();
        Secret {
            key: (!bytes.is_empty()).then_some(bytes),
        }
    }

    /// Loads the secret from `file` if given, else from [`ENV_VAR`], else [`Secret::none`].
    ///
    /// One trailing line break (`\n` or `\r\n`) is trimmed; a secret that is empty after
    /// that is an error, not "no secret", so a misconfigured file never silently disables
    /// authentication.
    pub fn load(file: Option<&Path>) -> Result<Secret, SecretError> {
        Secret::load_from(file, std::env::var_os(ENV_VAR))
    }

    /// [`Secret::load`] with the environment variable's value passed in.
    pub fn load_from(file: Option<&Path>, env: Option<OsString>) -> Result<Secret, SecretError> {
        if let Some(path) = file {
            let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
                path: path.to_path_buf(),
                source,
            })?;
            let bytes = trim_line_break(bytes);
            if bytes.is_empty() {
                return Err(SecretError::EmptyFile(path.to_path_buf()));
            }
            if let Some(warning) = exposure(path) {
                tracing::warn!("{warning}");
            }
            return Ok(Secret { key: Some(bytes) });
        }
        match env {
            Some(value) => {
                let bytes = trim_line_break(os_bytes(value));
                if bytes.is_empty() {
                    return Err(SecretError::EmptyEnv);
                }
                Ok(Secret { key: Some(bytes) })
            }
            None => Ok(Secret::none()),
        }
    }

    /// True when a secret is configured.
    pub fn is_set(&self) -> bool {
        self.key.is_some()
    }

    /// The HMAC key: the secret, or empty without one.
    pub(crate) fn key(&self) -> &[u8] {
        self.key.as_deref().unwrap_or_default()
    }

    /// A key for one purpose, HMAC-SHA256(secret, `label`): 32 bytes.
    pub fn derive(&self, label: &str) -> Vec<u8> {
        hmac(self.key(), &[label.as_bytes()]).to_vec()
    }

    /// The key topology `id`'s workers authenticate each other with,
    /// `derive("topology:<id>")`: a worker holds a key good for its own topology only.
    /// Each supervisor derives it for the workers it starts; it never travels between
    /// the coordinator and a supervisor.
    pub fn topology_key(&self, id: &str) -> Vec<u8> {
        self.derive(&format!("topology:{id}"))
    }
}

/// Refuses to bind `addr` without a secret unless it is a loopback address.
pub fn check_bind(addr: SocketAddr, secret: &Secret) -> Result<(), SecretError> {
    if secret.is_set() || addr.ip().to_canonical().is_loopback() {
        Ok(())
    } else {
        Err(SecretError::NoSecret(addr))
    }
}

/// A warning when the secret file at `path` may be read by users other than its owner
/// (group or other permission bits set), as `ssh` warns about private keys.
pub fn exposure(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then(|| {
            format!(
                "the cluster secret file {} is readable by others (mode {mode:03o}); chmod 600 it",
                path.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = mac_with(key);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A fresh HMAC-SHA256 keyed with `key`.
pub(crate) fn mac_with(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"))
}

fn trim_line_break(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

#[cfg(unix)]
fn os_bytes(value: OsString) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    value.into_vec()
}

#[cfg(not(unix))]
fn os_bytes(value: OsString) -> Vec<u8> {
    value.to_string_lossy().into_owned().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(f.path(), content).expect("write");
        f
    }

    #[test]
    fn the_file_wins_over_the_environment_and_loses_its_line_break() {
        let f = file(b"from-file\r\n");
        let s = Secret::load_from(Some(f.path()), Some("from-env".into())).expect("load");
        assert_eq!(s.key(), b"from-file");
        let s = Secret::load_from(None, Some("from-env\n".into())).expect("load");
        assert_eq!(s.key(), b"from-env");
    }

    #[test]
    fn only_one_line_break_is_trimmed() {
        let f = file(b"two\n\n");
        let s = Secret::load_from(Some(f.path()), None).expect("load");
        assert_eq!(s.key(), b"two\n");
    }

    #[test]
    fn neither_is_no_secret() {
        let s = Secret::load_from(None, None).expect("load");
        assert_eq!(s, Secret::none());
        assert!(!s.is_set());
        assert_eq!(s.key(), b"");
    }

    #[test]
    fn empty_sources_are_errors_not_silence() {
        let f = file(b"\n");
        let err = Secret::load_from(Some(f.path()), None).expect_err("empty file");
        assert_eq!(
            err.to_string(),
            format!("the cluster secret file {} is empty", f.path().display())
        );
        let err = Secret::load_from(None, Some("".into())).expect_err("empty env");
        assert_eq!(err.to_string(), "TOPO_CLUSTER_SECRET is set but empty");
        let err = Secret::load_from(Some(Path::new("/nonexistent/secret")), None)
            .expect_err("missing file");
        assert!(err
            .to_string()
            .starts_with("cannot read the cluster secret file /nonexistent/secret: "));
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_file_others_can_read_is_flagged() {
        use std::os::unix::fs::PermissionsExt;
        let f = file(b"s");
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o600)).expect("chmod");
        assert_eq!(exposure(f.path()), None);
        std::fs::set_permissions(f.path(), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(
            exposure(f.path()),
            Some(format!(
                "the cluster secret file {} is readable by others (mode 644); chmod 600 it",
                f.path().display()
            ))
        );
        // Still loaded: the warning is advice, not a refusal.
        assert!(Secret::load_from(Some(f.path()), None)
            .expect("load")
            .is_set());
    }

    #[test]
    fn debug_never_shows_the_bytes() {
        let s = Secret::from_bytes("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(\"<redacted>\")");
        assert_eq!(format!("{:?}", Secret::none()), "Secret(\"<none>\")");
    }

    #[test]
    fn without_a_secret_only_loopback_may_be_bound() {
        let none = Secret::none();
        for ok in [
            "127.0.0.1:7000",
            "127.0.0.4:0",
            "[::1]:7000",
            "[::ffff:127.0.0.2]:1",
        ] {
            let addr: SocketAddr = ok.parse().expect("addr");
            assert!(check_bind(addr, &none).is_ok(), "{ok}");
        }
        let err = check_bind("10.0.0.5:7000".parse().expect("addr"), &none).expect_err("lan");
        assert_eq!(
            err.to_string(),
            "refusing to listen on 10.0.0.5:7000 without a cluster secret; \
             pass --secret-file or set TOPO_CLUSTER_SECRET"
        );
        assert!(check_bind("0.0.0.0:7000".parse().expect("addr"), &none).is_err());
        let secret = Secret::from_bytes("s");
        assert!(check_bind("0.0.0.0:7000".parse().expect("addr"), &secret).is_ok());
    }

    #[test]
    fn derived_keys_differ_by_label_and_secret() {
        let a = Secret::from_bytes("a");
        let b = Secret::from_bytes("b");
        assert_eq!(a.derive("topology:x").len(), 32);
        assert_eq!(a.derive("topology:x"), a.derive("topology:x"));
        assert_ne!(a.derive("topology:x"), a.derive("topology:y"));
        assert_ne!(a.derive("topology:x"), b.derive("topology:x"));
        assert_ne!(a.derive("topology:x"), Secret::none().derive("topology:x"));
    }
}
