//! Fuzzes the messages of an authenticated control connection: arbitrary bytes decoded as
//! every request, reply and supervisor message (`topo_cluster::fuzzing::control_message`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    topo_cluster::fuzzing::control_message(data);
});
