//! Fuzzing entry points: the messages of an authenticated control connection and the
//! coordinator's `state.json`, each from arbitrary bytes. None may panic.
//!
//! The cargo-fuzz targets `control_message` and `state_json` in `fuzz/` call these.
//! libFuzzer needs a nightly toolchain, so `cluster/tests/fuzz_control.rs` also drives
//! them on every `cargo test` with a bounded number of random and mutated inputs.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::proto::{FromSupervisor, Reply, Request, ToSupervisor};

/// Decodes `data` as each message a control connection carries once authenticated, as
/// `ConnReader::recv` does; what decodes must encode again to bytes that decode to the
/// same encoding.
pub fn control_message(data: &[u8]) {
    round_trip::<Request>(data);
    round_trip::<Reply>(data);
    round_trip::<FromSupervisor>(data);
    round_trip::<ToSupervisor>(data);
}

fn round_trip<T: Serialize + DeserializeOwned>(data: &[u8]) {
    let Ok(value) = rmp_serde::from_slice::<T>(data) else {
        return;
    };
    let bytes = rmp_serde::to_vec_named(&value).expect("a decoded message encodes");
    let again: T = rmp_serde::from_slice(&bytes).expect("an encoded message decodes");
    let bytes_again = rmp_serde::to_vec_named(&again).expect("encodes");
    assert_eq!(bytes, bytes_again, "decode and encode are inverse");
}

/// Loads `data` as `DIR/state.json` the way a starting coordinator does, in `dir` (an
/// empty directory the caller owns); a state that loads is taken over and ticked once.
pub fn state_json(dir: &Path, data: &[u8]) {
    crate::coordinator::fuzz_state(dir, data);
}
