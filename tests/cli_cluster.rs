//! The cluster client verbs' command line: flags, checks made before any connection, and
//! exit codes (1 refused or invalid, 2 I/O or usage).

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn topo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_topo"))
        .args(args)
        .env_remove("TOPO_CLUSTER_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("run topo")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// An address where nothing listens (bound, then released).
fn closed_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(name)
        .display()
        .to_string()
}

#[test]
fn an_unreachable_coordinator_is_an_io_error() {
    let addr = closed_addr().to_string();
    for verb in [
        vec!["list", "--coordinator", &addr],
        vec!["kill", "wc", "--coordinator", &addr],
        vec!["activate", "wc", "--coordinator", &addr],
        vec!["deactivate", "wc", "--coordinator", &addr],
        vec!["rebalance", "wc", "--workers", "2", "--coordinator", &addr],
    ] {
        let out = topo(&verb);
        assert_eq!(out.status.code(), Some(2), "{verb:?}: {}", stderr(&out));
        assert!(
            stderr(&out).starts_with(&format!("error: cannot connect to {addr}: ")),
            "{verb:?}: {}",
            stderr(&out)
        );
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn an_invalid_topology_is_refused_before_any_connection() {
    let addr = closed_addr().to_string();
    let out = topo(&[
        "submit",
        &example("tests/data/broken.topo.toml"),
        "--coordinator",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid topology"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("cannot connect"), "{}", stderr(&out));
}

#[test]
fn an_unreadable_secret_file_or_binary_is_a_usage_error() {
    let addr = closed_addr().to_string();
    let out = topo(&[
        "list",
        "--coordinator",
        &addr,
        "--secret-file",
        "/nonexistent/cluster.secret",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with(
            "error: cannot read the cluster secret file /nonexistent/cluster.secret: "
        ),
        "{}",
        stderr(&out)
    );
    let empty = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(empty.path(), "\n").expect("write");
    let out = topo(&[
        "list",
        "--coordinator",
        &addr,
        "--secret-file",
        &empty.path().display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: the cluster secret file {} is empty\n",
            empty.path().display()
        )
    );
    let out = topo(&[
        "submit",
        &example("examples/wordcount.topo.toml"),
        "--binary",
        "/nonexistent/binary",
        "--coordinator",
        &addr,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("error: cannot read /nonexistent/binary: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_secret_is_never_taken_from_the_command_line() {
    let addr = closed_addr().to_string();
    let out = topo(&["list", "--coordinator", &addr, "--secret", "hunter2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unexpected argument '--secret'"),
        "{}",
        stderr(&out)
    );
    let help = topo(&["list", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in ["--coordinator <ADDR,...>", "--secret-file <PATH>", "--json"] {
        assert!(text.contains(flag), "{flag}: {text}");
    }
    assert!(text.contains("never from the\ncommand line"), "{text}");
}

#[test]
fn bad_flag_values_are_usage_errors() {
    let addr = closed_addr().to_string();
    let out = topo(&["rebalance", "wc", "--workers", "0", "--coordinator", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let out = topo(&["kill", "wc", "--wait", "soon", "--coordinator", &addr]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("invalid duration `soon`"),
        "{}",
        stderr(&out)
    );
    let out = topo(&["list", "--coordinator", "localhost"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn without_a_secret_the_coordinators_ui_is_loopback_only() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = topo(&[
        "coordinator",
        "--listen",
        &closed_addr().to_string(),
        "--state-dir",
        &dir.path().display().to_string(),
        "--ui",
        "0.0.0.0:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "error: cannot serve the web UI on 0.0.0.0:0: refusing to listen on 0.0.0.0:0 \
             without a cluster secret; pass --secret-file or set TOPO_CLUSTER_SECRET"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_ui_token_is_derived_from_the_secret_and_is_not_the_secret() {
    let dir = tempfile::tempdir().expect("temp dir");
    let token = |secret: &str| {
        let file = dir.path().join("secret");
        std::fs::write(&file, secret).expect("write the secret");
        let out = topo(&["ui-token", "--secret-file", &file.display().to_string()]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let a = token("first secret\n");
    assert_eq!(a.len(), 64, "{a}");
    assert!(a.bytes().all(|b| b.is_ascii_hexdigit()), "{a}");
    assert_eq!(
        token("first secret"),
        a,
        "the trailing line break is not the secret"
    );
    assert_ne!(token("second secret"), a);
}
