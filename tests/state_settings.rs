//! The settings of a checkpointed topology: `checkpoint_interval_secs`, `state_backend`,
//! `state_url`, `state_dir`, and the spouts it may use (only those that rewind).

use std::process::Command;

use topo_dsl::{StateBackend, Topology};

fn messages(text: &str) -> Vec<(String, Option<String>)> {
    match topo_dsl::load(text, &topo::default_registry()) {
        Ok(_) => panic!("validated:\n{text}"),
        Err(d) => d.items.into_iter().map(|d| (d.message, d.hint)).collect(),
    }
}

const BODY: &str = "[spouts.lines]\ntype = \"file_lines\"\npath = \"in.txt\"\n\
                    [bolts.count]\ntype = \"word_count\"\ninputs = [{ from = \"lines\", fields = [\"line\"] }]\n";

#[test]
fn checkpoint_settings_are_read_and_defaulted() {
    let text = format!("[topology]\ncheckpoint_interval_secs = 0.5\n{BODY}");
    let t = topo_dsl::load(&text, &topo::default_registry()).expect("valid");
    let c = t.settings().checkpoints.as_ref().expect("checkpointed");
    assert_eq!(c.interval.as_millis(), 500);
    assert_eq!(c.backend, StateBackend::Local { dir: None });

    let text = format!(
        "[topology]\ncheckpoint_interval_secs = 1\nstate_backend = \"redis\"\n\
         state_url = \"redis://127.0.0.1:6379/0\"\n{BODY}"
    );
    let t = topo_dsl::load(&text, &topo::default_registry()).expect("valid");
    assert_eq!(
        t.settings().checkpoints.as_ref().map(|c| c.backend.clone()),
        Some(StateBackend::Redis {
            url: "redis://127.0.0.1:6379/0".into()
        })
    );

    let t = topo_dsl::load(BODY, &topo::default_registry()).expect("valid");
    assert_eq!(t.settings().checkpoints, None);
}

#[test]
fn wrong_state_settings_are_reported_with_hints() {
    let got = messages(&format!(
        "[topology]\ncheckpoint_interval_secs = 0\nstate_backend = \"redsi\"\n{BODY}"
    ));
    assert_eq!(
        got,
        [
            (
                "\"checkpoint_interval_secs\" must be a positive number of seconds up to 31536000, not 0".into(),
                None
            ),
            (
                "unknown state backend \"redsi\"".into(),
                Some("did you mean \"redis\"?".into())
            ),
        ]
    );
    let got = messages(&format!(
        "[topology]\ncheckpoint_interval_secs = 1\nstate_backend = \"redis\"\n{BODY}"
    ));
    assert_eq!(
        got,
        [(
            "state_backend = \"redis\" needs \"state_url\"".into(),
            Some("e.g. state_url = \"redis://127.0.0.1:6379/0\"".into())
        )]
    );
    let got = messages(&format!("[topology]\nstate_dir = \"st\"\n{BODY}"));
    assert_eq!(
        got,
        [(
            "\"state_dir\" is set but the topology does not checkpoint".into(),
            Some("set \"checkpoint_interval_secs\" to take checkpoints".into())
        )]
    );
}

#[test]
fn the_builder_writes_the_same_settings() {
    let t = Topology::builder("t")
        .checkpoint_interval_secs(2.0)
        .state_dir("st")
        .spout("lines", "sequence")
        .topology()
        .build(&topo::default_registry())
        .expect("valid");
    assert_eq!(
        t.settings().checkpoints.as_ref().map(|c| c.backend.clone()),
        Some(StateBackend::Local {
            dir: Some("st".into())
        })
    );
}

#[test]
fn topo_validate_refuses_a_checkpointed_topology_with_a_spout_that_cannot_rewind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tcp.topo.toml");
    std::fs::write(
        &path,
        "[topology]\ncheckpoint_interval_secs = 1\n\
         [spouts.net]\ntype = \"tcp_lines\"\nlisten = \"127.0.0.1:0\"\n\
         [bolts.print]\ntype = \"console\"\ninputs = [\"net\"]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_topo"))
        .arg("validate")
        .arg(&path)
        .output()
        .expect("topo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "tcp.topo.toml:4:1: error: spout \"net\": type \"tcp_lines\" cannot rewind, so a checkpointed topology cannot replay it after a failure"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "= hint: use a spout that rewinds (file_lines, multilang, random_sentences, redis_stream, sequence), or remove \"checkpoint_interval_secs\""
        ),
        "{stderr}"
    );
}
