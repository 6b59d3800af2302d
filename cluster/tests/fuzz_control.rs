//! The fuzz targets' bodies on every `cargo test`: control messages after authentication
//! and `state.json` loading, fed random bytes and mutations of valid inputs (a bounded
//! count; cargo-fuzz needs a nightly toolchain, see `fuzz/`). Nothing may panic.

use proptest::prelude::*;
use topo_cluster::fuzzing;
use topo_cluster::proto::{FromSupervisor, Request, ToSupervisor};

/// Valid encodings of a few messages: the seeds the mutations start from.
fn control_seeds() -> Vec<Vec<u8>> {
    vec![
        enc(&Request::List),
        enc(&Request::Kill {
            name: "wordcount".into(),
            wait_secs: Some(2.5),
        }),
        enc(&Request::Submit {
            name: "wordcount".into(),
            topology: "[topology]\nname = \"wordcount\"\n".into(),
            binary: "00".repeat(32),
            resources: Some("11".repeat(32)),
        }),
        enc(&FromSupervisor::Register {
            id: "127.0.0.2:7100".into(),
            slots: 4,
            workers: Vec::new(),
        }),
        enc(&ToSupervisor::Stop {
            topology: "wordcount-1764650000".into(),
            worker: 1,
        }),
    ]
}

fn enc<T: serde::Serialize>(value: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(value).expect("encode")
}

/// A `state.json` a coordinator wrote: one supervisor, one running topology.
const STATE: &str = r#"{
  "supervisors": [{"id": "127.0.0.2:7100", "slots": 4}],
  "topologies": [{
    "id": "wc-1764650000", "name": "wc", "status": "active", "workers": 2,
    "binary": "0000000000000000000000000000000000000000000000000000000000000000",
    "text": "[topology]\nname = \"wc\"\nworkers = 2\n", "fingerprint": 7,
    "submitted": 1764650000.5, "ended": null,
    "assignments": ["127.0.0.2:7100", null], "addrs": ["127.0.0.2:41000", null],
    "starts": [1, 0], "finishing": false, "kill_at": null, "message_timeout_secs": 30.0,
    "components": [], "error": null, "rebalance": null
  }]
}
"#;

fn mutate(mut data: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(at, byte, op) in edits {
        let at = if data.is_empty() { 0 } else { at % data.len() };
        match op % 4 {
            0 if !data.is_empty() => data[at] = byte,
            1 => data.insert(at.min(data.len()), byte),
            2 if !data.is_empty() => {
                data.remove(at);
            }
            _ => data.truncate(at),
        }
    }
    data
}

#[test]
fn the_seed_state_loads_so_mutations_start_from_a_valid_file() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("state.json"), STATE).expect("write");
    let saved: serde_json::Value = serde_json::from_str(STATE).expect("json");
    assert_eq!(saved["topologies"][0]["workers"], 2);
    fuzzing::state_json(dir.path(), STATE.as_bytes());
    // The coordinator took it over and saved it again (ticked, supervisor dropped).
    let text = std::fs::read_to_string(dir.path().join("state.json")).expect("read");
    assert!(text.contains("wc-1764650000"), "{text}");
    assert!(
        !text.contains("\"127.0.0.2:7100\","),
        "the dropped supervisor is gone: {text}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_bytes_as_control_messages(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        fuzzing::control_message(&data);
    }

    #[test]
    fn mutated_control_messages(
        seed in 0usize..5,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let seeds = control_seeds();
        fuzzing::control_message(&mutate(seeds[seed % seeds.len()].clone(), &edits));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn mutated_state_files(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4),
    ) {
        let dir = tempfile::tempdir().expect("dir");
        fuzzing::state_json(dir.path(), &mutate(STATE.as_bytes().to_vec(), &edits));
    }

    #[test]
    fn state_files_with_odd_numbers(
        workers in any::<u64>(),
        assignments in 0usize..4,
        timeout in any::<f64>(),
    ) {
        let text = STATE
            .replace("\"workers\": 2", &format!("\"workers\": {workers}"))
            .replace("\"message_timeout_secs\": 30.0", &format!("\"message_timeout_secs\": {timeout:?}"))
            .replace(
                "\"assignments\": [\"127.0.0.2:7100\", null]",
                &format!("\"assignments\": [{}]", vec!["null"; assignments].join(", ")),
            );
        let dir = tempfile::tempdir().expect("dir");
        fuzzing::state_json(dir.path(), text.as_bytes());
    }
}
