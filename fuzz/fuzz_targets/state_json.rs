//! Fuzzes the coordinator's `state.json` loading: arbitrary bytes as the file, then the
//! loaded state taken over and ticked (`topo_cluster::fuzzing::state_json`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("topo-fuzz-state-{}", std::process::id()));
    if std::fs::create_dir_all(&dir).is_ok() {
        topo_cluster::fuzzing::state_json(&dir, data);
    }
});
