//! Fuzzes the payloads beside data batches: acker messages, spout control, credit grants
//! and load reports. Arbitrary bytes must never make a decoder panic, and whatever decodes
//! must re-encode to a payload that decodes to the same.

#![no_main]

use libfuzzer_sys::fuzz_target;
use topo_engine::wire::payload::{
    decode_acker, decode_control, decode_grant, decode_loads, encode_acker, encode_control,
    encode_grant, encode_loads,
};

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(msgs) = decode_acker(body) {
                let again = encode_acker(&msgs).expect("acker messages encode");
                assert_eq!(decode_acker(&again).expect("re-encoded acker payload"), msgs);
            }
        }
        1 => {
            if let Ok(msg) = decode_control(body) {
                let again = encode_control(&msg).expect("a control message encodes");
                assert_eq!(decode_control(&again).expect("re-encoded control"), msg);
            }
        }
        2 => {
            if let Ok((task, batches)) = decode_grant(body) {
                let again = encode_grant(task, batches).expect("a grant encodes");
                assert_eq!(decode_grant(&again).expect("re-encoded grant"), (task, batches));
            }
        }
        _ => {
            if let Ok(pairs) = decode_loads(body) {
                let pairs: Vec<_> = pairs.collect();
                let again = encode_loads(pairs.iter().copied());
                let back: Vec<_> = decode_loads(&again).expect("re-encoded loads").collect();
                assert_eq!(back, pairs);
            }
        }
    }
});
