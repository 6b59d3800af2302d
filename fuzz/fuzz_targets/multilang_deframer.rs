//! Fuzzes the multilang deframer with whatever a child could write to its stdout: it must
//! never panic, never hold more than its limit, and parse each message at most three times.

#![no_main]

use libfuzzer_sys::fuzz_target;
use topo_multilang::child::{Deframer, Incoming, END};

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut d = Deframer::new(LIMIT);
    for line in text.split('\n') {
        if let Some(Incoming::Bad(bad, _)) = d.line(line) {
            assert!(bad.len() <= LIMIT);
        }
        assert!(d.pending() <= LIMIT);
        let _ = d.line(END);
    }
});
