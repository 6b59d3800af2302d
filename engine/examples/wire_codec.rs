//! Encodes and decodes batches of word-count tuples, for counting instructions per tuple
//! under callgrind: `valgrind --tool=callgrind target/release/examples/wire_codec [N]`,
//! then `callgrind_annotate --inclusive=yes` for `encode_batch_into` and `decode`.
//!
//! Each round encodes one 512-tuple batch of words (one short string each, as
//! `split_words` emits) and one 52-tuple batch of ten-word sentences, decodes both and
//! drops what it decoded. It prints the number of tuples, nothing timed.

use bytes::BytesMut;
use topo_engine::route::Inbound;
use topo_engine::wire::{encode_batch_into, DataDecoder};
use topo_engine::{StreamInfo, Tuple, Value};

const SYL: [&str; 10] = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze"];

fn word(k: u64) -> String {
    (k % 1000)
        .to_string()
        .bytes()
        .map(|d| SYL[usize::from(d - b'0')])
        .collect()
}

fn mix(x: u64) -> u64 {
    let z = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z ^ (z >> 29)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let words = StreamInfo::intern("split", "default", &["word".into()]);
    let sentences = StreamInfo::intern("sentences", "default", &["sentence".into()]);
    let mut decoder = DataDecoder::for_streams(&[words, sentences]);
    let mut out = BytesMut::new();
    let mut n = 0u64;
    let mut tuples = 0usize;
    for _ in 0..rounds {
        let mut wb = Vec::with_capacity(512);
        for _ in 0..512 {
            n += 1;
            wb.push(Tuple::new(words, 3, [Value::from(word(mix(n)).as_str())]));
        }
        let mut sb = Vec::with_capacity(52);
        for _ in 0..52 {
            let s: Vec<String> = (0..10).map(|j| word(mix(n * 10 + j))).collect();
            n += 1;
            sb.push(Tuple::new(
                sentences,
                1,
                [Value::from(s.join(" ").as_str())],
            ));
        }
        for batch in [&wb, &sb] {
            out.clear();
            if let Err(e) = encode_batch_into(batch, &mut out) {
                eprintln!("{e}");
                std::process::exit(1);
            }
            match decoder.decode(&out) {
                Ok(Inbound::Batch(back)) => tuples += back.len(),
                Ok(_) => unreachable!("a batch decodes to a batch"),
                Err(e) => {
                    eprintln!("{e}");
                    std::process::exit(1);
                }
            }
        }
    }
    println!("{tuples} tuples");
}
