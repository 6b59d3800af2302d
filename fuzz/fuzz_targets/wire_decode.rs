//! Fuzzes the data payload decoder (batches of tuples, ends of stream): arbitrary bytes must
//! never make it panic, and every batch it yields must survive a re-encode and decode.

#![no_main]

use libfuzzer_sys::fuzz_target;
use topo_engine::route::Inbound;
use topo_engine::wire::{encode_data, DataDecoder, BATCH_TAG};
use topo_engine::StreamInfo;

fuzz_target!(|data: &[u8]| {
    let streams = [
        StreamInfo::intern("s", "default", &["word".into()]),
        StreamInfo::intern("b", "counts", &["word".into(), "n".into()]),
    ];
    let mut decoder = DataDecoder::for_streams(&streams);
    // Mostly batches: the first byte chooses between the batch codec and MessagePack.
    let mut payload = Vec::with_capacity(data.len() + 1);
    if data.first().is_some_and(|b| b & 1 == 0) {
        payload.push(BATCH_TAG);
    }
    payload.extend_from_slice(data.get(1..).unwrap_or_default());
    let Ok(Inbound::Batch(tuples)) = decoder.decode(&payload) else {
        return;
    };
    let again = encode_data(&Inbound::Batch(tuples.clone())).expect("a decoded batch re-encodes");
    let Ok(Inbound::Batch(back)) = decoder.decode(&again) else {
        panic!("a re-encoded batch does not decode");
    };
    assert_eq!(back.len(), tuples.len());
    for (a, b) in back.iter().zip(&tuples) {
        assert!(std::ptr::eq(a.source(), b.source()));
        assert_eq!(a.source_task(), b.source_task());
        // Floats compare by bits: NaN is a valid value on the wire.
        let bits = |t: &topo_engine::Tuple| format!("{:?}", t.values());
        assert_eq!(bits(a), bits(b));
    }
});
