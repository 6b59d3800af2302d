//! Round trips, exact bytes and hostile input of every payload codec.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use topo_dsl::Topology;

use super::decode::ValueCache;
use super::payload::{decode_grant, decode_loads, encode_grant, encode_loads};
use super::*;
use crate::route::{AckerMsg, Inbound, SpoutMsg};
use crate::tuple::{Anchors, StreamInfo, Tuple, Values};
use crate::value::Value;
use topo_dsl::{Catalog, ComponentType, ConfigIssue, Kind, StreamDecl};

struct T(Kind);
impl ComponentType for T {
    fn kind(&self) -> Kind {
        self.0
    }
    fn description(&self) -> &str {
        ""
    }
    fn configure(&self, _: &toml::Table) -> Result<Vec<StreamDecl>, Vec<ConfigIssue>> {
        Ok(vec![StreamDecl::default_stream(["word", "n"])])
    }
}
struct Types;
impl Catalog for Types {
    fn component_type(&self, _: Kind, name: &str) -> Option<&dyn ComponentType> {
        match name {
            "src" => Some(&T(Kind::Spout)),
            _ => Some(&T(Kind::Bolt)),
        }
    }
    fn type_names(&self) -> Vec<String> {
        vec!["src".into(), "b".into()]
    }
}

fn topology() -> Topology {
    Topology::builder("w")
        .spout("s", "src")
        .bolt("b", "b")
        .shuffle("s")
        .build(&Types)
        .unwrap()
}

#[test]
fn a_batch_round_trips_with_its_acking_state() {
    let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let mut t = Tuple::new(info, 1, [Value::from("pemi"), Value::from(3)]);
    t.anchors.push((0xdead_beef, 0x1234));
    let u = Tuple::new(info, 2, [Value::from("ka"), Value::Null]);
    let bytes = encode_data(&Inbound::Batch(vec![t, u])).unwrap();
    let Inbound::Batch(back) = decode_data(&bytes, &topology()).unwrap() else {
        panic!("not a batch");
    };
    assert_eq!(back.len(), 2);
    assert!(
        std::ptr::eq(back[0].source, info),
        "re-interned to the same stream"
    );
    assert_eq!(back[0].values(), [Value::from("pemi"), Value::from(3)]);
    assert_eq!(back[0].anchors.as_slice(), [(0xdead_beef, 0x1234)]);
    assert_eq!(back[1].source_task(), 2);
    assert!(!back[1].is_tracked());
}

#[test]
fn end_of_stream_has_exact_bytes() {
    let bytes = encode_data(&Inbound::Eos(7)).unwrap();
    // {"Eos": 7}: fixmap(1), fixstr "Eos", positive fixint 7.
    assert_eq!(&bytes[..], [0x81, 0xa3, b'E', b'o', b's', 0x07]);
    assert!(matches!(
        decode_data(&bytes, &topology()).unwrap(),
        Inbound::Eos(7)
    ));
}

#[test]
fn a_barrier_has_exact_bytes() {
    let bytes = encode_data(&Inbound::Barrier { from: 7, id: 300 }).unwrap();
    // {"Barrier": [7, 300]}: fixmap(1), fixstr "Barrier", fixarray(2), fixint 7, uint16 300.
    let mut want = vec![0x81, 0xa7];
    want.extend_from_slice(b"Barrier");
    want.extend_from_slice(&[0x92, 0x07, 0xcd, 0x01, 0x2c]);
    assert_eq!(&bytes[..], want);
    assert!(matches!(
        decode_data(&bytes, &topology()).unwrap(),
        Inbound::Barrier { from: 7, id: 300 }
    ));
}

#[test]
fn acker_and_control_messages_round_trip() {
    let msgs = [
        AckerMsg::Init {
            root: 1,
            xor: 2,
            spout: 3,
        },
        AckerMsg::Fail { root: 9 },
    ];
    let b = encode_acker(&msgs).unwrap();
    assert_eq!(decode_acker(&b).unwrap(), msgs.to_vec());
    let b = encode_control(&SpoutMsg::Acked(vec![7, 8])).unwrap();
    assert_eq!(decode_control(&b).unwrap(), SpoutMsg::Acked(vec![7, 8]));
}

#[test]
fn hostile_payloads_are_errors() {
    let t = topology();
    assert!(matches!(
        decode_data(b"\xc1garbage", &t),
        Err(WireError::Decode { what: "data", .. })
    ));
    let info = StreamInfo::intern("nope", "default", &[]);
    let bytes = encode_data(&Inbound::Batch(vec![Tuple::new(info, 1, Values::new())])).unwrap();
    assert_eq!(
        decode_data(&bytes, &t).unwrap_err().to_string(),
        "a batch names stream `default` of `nope`, which the topology does not declare"
    );
    assert!(decode_acker(&[0x92, 0xc1]).is_err());
}

#[test]
fn a_batch_has_exact_bytes() {
    let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let mut t = Tuple::new(info, 3, [Value::from("ka"), Value::from(-2)]);
    t.anchors.push((1, 2));
    let bytes = encode_data(&Inbound::Batch(vec![t])).unwrap();
    // One tuple: a run of a new source 0 (`s`, `default`, task 3), 1 anchor, 2 values,
    // length 1 in 3 bytes.
    let mut want = vec![BATCH_TAG, 1, 0, 1, b's', 7];
    want.extend_from_slice(b"default");
    want.extend_from_slice(&[3, 1, 2, 0x81, 0x80, 0]);
    want.extend_from_slice(&1u64.to_le_bytes());
    want.extend_from_slice(&2u64.to_le_bytes());
    want.extend_from_slice(&[tag::SHORT_STR + 2, b'k', b'a', tag::INT, 3]);
    assert_eq!(&bytes[..], want);
}

#[test]
fn acker_messages_have_exact_bytes_and_garbage_is_an_error() {
    let b = encode_acker(&[AckerMsg::Fail { root: 0x0102 }]).unwrap();
    assert_eq!(&b[..], [ACKER_TAG, 3, 2, 1, 0, 0, 0, 0, 0, 0]);
    let err = |b: &[u8]| decode_acker(b).unwrap_err().to_string();
    assert_eq!(
        err(&b[..5]),
        "cannot decode an acker payload: the payload ends early"
    );
    assert_eq!(
        err(&[ACKER_TAG, 9, 0, 0, 0, 0, 0, 0, 0, 0]),
        "cannot decode an acker payload: unknown acker message kind"
    );
    assert_eq!(
        err(&[0x91, 0x00]),
        "cannot decode an acker payload: not an acker payload"
    );
    assert_eq!(decode_acker(&[ACKER_TAG]).unwrap(), []);
}

#[test]
fn garbage_batches_say_what_is_wrong() {
    let t = topology();
    let err = |b: &[u8]| decode_data(b, &t).unwrap_err().to_string();
    assert_eq!(
        err(&[BATCH_TAG, 1]),
        "cannot decode a data payload: a count of 1 with 0 bytes left"
    );
    assert_eq!(
        err(&[BATCH_TAG, 0, 0]),
        "cannot decode a data payload: 1 bytes after the last tuple"
    );
    assert_eq!(
        err(&[BATCH_TAG, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
        "cannot decode a data payload: a number over 64 bits"
    );
    // One tuple: a run of a new source 0 (`s`, `default`, task 1), no anchors, one
    // value, length 1.
    let mut b = vec![BATCH_TAG, 1, 0, 1, b's', 7];
    b.extend_from_slice(b"default");
    b.extend_from_slice(&[1, 0, 1, 1, tag::STR, 2, 0xff, 0xfe]);
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a string that is not UTF-8"
    );
    let at = b.len() - 4;
    b[at] = tag::SHORT_STR + 2;
    b.remove(at + 1);
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a string that is not UTF-8"
    );
    b.truncate(at);
    b.extend_from_slice(&[9]);
    assert_eq!(err(&b), "cannot decode a data payload: unknown value tag 9");
    b[at] = 64;
    assert_eq!(
        err(&b),
        "cannot decode a data payload: unknown value tag 64"
    );
    b[at - 1] = 2;
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a run of 2 tuples with 1 to go"
    );
    b[at - 1] = 0;
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a run of 0 tuples with 1 to go"
    );
    b[at - 1] = 1;
    b[at - 2] = 2;
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a run of 1 tuples of 2 bytes or more with 1 bytes left"
    );
    b[at - 2] = 9;
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a count of 9 with 2 bytes left"
    );
    b[at - 3] = 1;
    b[at - 2] = 1;
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a count of 1 with 3 bytes left"
    );
    // Index 1 while the batch named one source: neither known nor the next new one.
    assert_eq!(
        err(&[BATCH_TAG, 1, 2, 0, 0, 1, 0]),
        "a tuple refers to stream 2, which its batch does not name"
    );
    assert_eq!(
        err(&[BATCH_TAG, 1, 0, 1, b'x', 1, b'y', 1, 0, 0, 1]),
        "a batch names stream `y` of `x`, which the topology does not declare"
    );
    // Two tuples of 16 anchor bytes and a value each, with 20 bytes left.
    b.truncate(at - 3);
    b.extend_from_slice(&[1, 1, 2]);
    b.extend_from_slice(&[0; 20]);
    b[1] = 2;
    assert_eq!(
        err(&b),
        "cannot decode a data payload: a run of 2 tuples of 17 bytes or more with 20 bytes left"
    );
}

#[test]
fn nesting_is_bounded_both_ways() {
    let mut v = Value::Null;
    for _ in 0..=MAX_DEPTH {
        v = Value::List(vec![v]);
    }
    let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let err =
        encode_data(&Inbound::Batch(vec![Tuple::new(info, 1, [v, Value::Null])])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot encode: values nest deeper than 64 lists and maps"
    );
    let mut b = vec![BATCH_TAG, 1, 0, 1, b's', 7];
    b.extend_from_slice(b"default");
    b.extend_from_slice(&[1, 0, 1, 1]);
    for _ in 0..100_000 {
        b.extend_from_slice(&[tag::LIST, 1]);
    }
    b.push(tag::NULL);
    assert_eq!(
        decode_data(&b, &topology()).unwrap_err().to_string(),
        "cannot decode a data payload: values nest deeper than 64 lists and maps"
    );
}

fn any_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        // NaN != NaN: compare floats by their bits below instead.
        any::<f64>()
            .prop_filter("not NaN", |f| !f.is_nan())
            .prop_map(Value::Float),
        ".{0,40}".prop_map(|s: String| Value::from(s.as_str())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::Bytes(Bytes::from(b))),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
            proptest::collection::btree_map(".{0,8}", inner, 0..4).prop_map(Value::Map),
        ]
    })
}

fn any_tuple() -> impl Strategy<Value = Tuple> {
    let words = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let counts = StreamInfo::intern("b", "default", &["word".into(), "n".into()]);
    (
        any::<bool>(),
        1u32..5,
        proptest::collection::vec((any::<u64>(), any::<u64>()), 0..3),
        proptest::collection::vec(any_value(), 0..4),
    )
        .prop_map(move |(first, task, anchors, values)| {
            let mut t = Tuple::new(if first { words } else { counts }, task, values);
            t.anchors = Anchors::from_vec(anchors);
            t
        })
}

#[test]
fn decode_into_appends_and_leaves_the_vector_as_it_was_on_an_error() {
    let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let batch = |w: &str| {
        encode_data(&Inbound::Batch(vec![Tuple::new(
            info,
            1,
            [Value::from(w), Value::from(1)],
        )]))
        .unwrap()
    };
    let mut d = DataDecoder::new(Arc::new(topology()));
    let mut v = Vec::new();
    assert!(d.decode_into(&batch("ka"), &mut v).unwrap().is_none());
    assert!(d.decode_into(&batch("lo"), &mut v).unwrap().is_none());
    let words: Vec<_> = v.iter().map(|t| t.values()[0].clone()).collect();
    assert_eq!(words, [Value::from("ka"), Value::from("lo")]);
    let bad = batch("mi");
    let err = d.decode_into(&bad[..bad.len() - 1], &mut v).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decode a data payload: the payload ends early"
    );
    assert_eq!(v.len(), 2);
    let eos = encode_data(&Inbound::Eos(4)).unwrap();
    assert!(matches!(
        d.decode_into(&eos, &mut v).unwrap(),
        Some(Inbound::Eos(4))
    ));
    assert_eq!(v.len(), 2);
}

#[test]
fn a_batch_decodes_a_chunk_at_a_time_and_an_error_drops_only_its_chunk() {
    let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let tuples: Vec<Tuple> = (0..10)
        .map(|i| {
            let mut t = Tuple::new(info, 1, [Value::from(format!("w{i}").as_str()), i.into()]);
            // Three runs: tuples 4 and 5 are anchored.
            if (4..6).contains(&i) {
                t.anchors.push((i as u64, 7));
            }
            t
        })
        .collect();
    let bytes = encode_data(&Inbound::Batch(tuples.clone())).unwrap();
    let mut d = DataDecoder::new(Arc::new(topology()));
    let chunks = |d: &mut DataDecoder, bytes: &[u8], got: &mut Vec<Tuple>| {
        let Begun::Batch(mut c) = d.begin(bytes).unwrap() else {
            panic!("not a batch");
        };
        assert_eq!(c.left(), 10);
        let mut sizes = Vec::new();
        loop {
            let before = got.len();
            let done = d.decode_some(bytes, &mut c, got, 3);
            sizes.push(got.len() - before);
            match done {
                Ok(false) => {}
                Ok(true) => return (sizes, None),
                Err(e) => return (sizes, Some(e.to_string())),
            }
        }
    };
    let mut got = Vec::new();
    assert_eq!(chunks(&mut d, &bytes, &mut got), (vec![3, 3, 3, 1], None));
    for (a, b) in got.iter().zip(&tuples) {
        assert_eq!(a.values(), b.values());
        assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
    }
    assert_eq!(got.len(), 10);
    // The batch ends after tuple 8's word: the chunk of tuples 6 to 8 is dropped whole.
    let w8 = [tag::SHORT_STR + 2, b'w', b'8'];
    let Some(at) = bytes.windows(3).position(|w| w == w8) else {
        panic!("no w8 in {bytes:?}");
    };
    let mut got = Vec::new();
    assert_eq!(
        chunks(&mut d, &bytes[..at + 3], &mut got),
        (
            vec![3, 3, 0],
            Some("cannot decode a data payload: the payload ends early".into())
        )
    );
    let words: Vec<_> = got.iter().map(|t| t.values()[0].clone()).collect();
    let want: Vec<_> = (0..6)
        .map(|i| Value::from(format!("w{i}").as_str()))
        .collect();
    assert_eq!(words, want);
    // Not a batch: decoded whole.
    assert!(matches!(
        d.begin(&encode_data(&Inbound::Eos(3)).unwrap()).unwrap(),
        Begun::Other(Inbound::Eos(3))
    ));
}

#[test]
fn strings_around_the_short_tag_and_the_cache_round_trip() {
    let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let mut words: Vec<String> = (0..40).map(|n| "x".repeat(n)).collect();
    words.extend(["é".into(), "naïve".into(), "ka".into(), "kb".into()]);
    words.extend((0..40).map(|n| "é".repeat(n)));
    let mut d = DataDecoder::new(Arc::new(topology()));
    // Twice: the second pass finds the short ones in the decoder's cache.
    for _ in 0..2 {
        let tuples: Vec<Tuple> = words
            .iter()
            .map(|w| Tuple::new(info, 1, [Value::from(w.as_str()), Value::Null]))
            .collect();
        let bytes = encode_data(&Inbound::Batch(tuples)).unwrap();
        let Inbound::Batch(back) = d.decode(&bytes).unwrap() else {
            panic!("not a batch");
        };
        let got: Vec<&str> = back.iter().filter_map(|t| t.values()[0].as_str()).collect();
        assert_eq!(got, words);
    }
}

#[test]
fn a_batch_larger_than_the_room_reserved_first_round_trips_after_what_was_there() {
    let info = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let long = "kalominupe".repeat(10);
    let tuples: Vec<Tuple> = (0..3000)
        .map(|i| {
            let mut t = Tuple::new(info, 1, [Value::from(long.as_str()), Value::from(i)]);
            t.anchors.push((i as u64, 7));
            t
        })
        .collect();
    let mut out = BytesMut::from(&b"before"[..]);
    encode_batch_into(&tuples, &mut out).unwrap();
    assert_eq!(&out[..6], b"before");
    let Inbound::Batch(back) = decode_data(&out[6..], &topology()).unwrap() else {
        panic!("not a batch");
    };
    assert_eq!(back.len(), tuples.len());
    for (a, b) in back.iter().zip(&tuples) {
        assert_eq!(a.values(), b.values());
        assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
    }
    // A batch that cannot be encoded leaves `out` as it was.
    let mut deep = Value::Null;
    for _ in 0..=MAX_DEPTH {
        deep = Value::List(vec![deep]);
    }
    let mut bad = tuples;
    bad.push(Tuple::new(info, 1, [deep, Value::Null]));
    let mut out = BytesMut::from(&b"before"[..]);
    assert!(encode_batch_into(&bad, &mut out).is_err());
    assert_eq!(&out[..], b"before");
}

#[test]
fn a_cached_string_is_never_mistaken_for_another() {
    // Same length, same first and last words: only the middle differs.
    let mut c = ValueCache::new();
    for w in [
        "abcdefghijklmnop",
        "abcdefghXjklmnop",
        "abc",
        "aXc",
        "ab",
        "abb",
    ] {
        assert_eq!(c.get(w.as_bytes()), Some(Value::from(w)));
        assert_eq!(c.get(w.as_bytes()), Some(Value::from(w)));
    }
    assert_eq!(c.get(b"\xff"), None);
    assert_eq!(c.get(&[0xc3]), None);
}

/// Tuples of a few shapes and words, in runs: what a bolt's batches look like.
fn any_run_tuples() -> impl Strategy<Value = Vec<Tuple>> {
    let words = StreamInfo::intern("s", "default", &["word".into(), "n".into()]);
    let counts = StreamInfo::intern("b", "default", &["word".into(), "n".into()]);
    let shape = (any::<bool>(), 1u32..3, 0usize..3, 0usize..3, 1usize..40);
    proptest::collection::vec((shape, any::<u64>()), 0..8).prop_map(move |runs| {
        let vocab = [
            "ka",
            "lo",
            "pemi",
            "",
            "kalomi",
            "é",
            "kalominupe-rasitovuze",
        ];
        let mut tuples = Vec::new();
        for ((first, task, na, nv, len), seed) in runs {
            for i in 0..len as u64 {
                let x = seed.wrapping_add(i).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let values: Vec<Value> = (0..nv)
                    .map(|k| Value::from(vocab[((x >> (8 * k)) % 7) as usize]))
                    .collect();
                let mut t = Tuple::new(if first { words } else { counts }, task, values);
                t.anchors = (0..na).map(|k| (x, k as u64)).collect();
                tuples.push(t);
            }
        }
        tuples
    })
}

use proptest::prelude::*;

proptest! {
    #[test]
    fn runs_of_tuples_round_trip(tuples in any_run_tuples()) {
        let bytes = encode_data(&Inbound::Batch(tuples.clone())).unwrap();
        let mut d = DataDecoder::new(Arc::new(topology()));
        let mut back = Vec::new();
        // Twice into one vector: the second time through the string cache.
        for _ in 0..2 {
            prop_assert!(d.decode_into(&bytes, &mut back).unwrap().is_none());
        }
        prop_assert_eq!(back.len(), 2 * tuples.len());
        for (a, b) in back.iter().zip(tuples.iter().chain(&tuples)) {
            prop_assert!(std::ptr::eq(a.source, b.source));
            prop_assert_eq!(a.source_task, b.source_task);
            prop_assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
            prop_assert_eq!(a.values(), b.values());
        }
    }

    #[test]
    fn batches_round_trip(tuples in proptest::collection::vec(any_tuple(), 0..20)) {
        let bytes = encode_data(&Inbound::Batch(tuples.clone())).unwrap();
        let Inbound::Batch(back) = decode_data(&bytes, &topology()).unwrap() else {
            panic!("not a batch");
        };
        prop_assert_eq!(back.len(), tuples.len());
        for (a, b) in back.iter().zip(&tuples) {
            prop_assert!(std::ptr::eq(a.source, b.source));
            prop_assert_eq!(a.source_task, b.source_task);
            prop_assert_eq!(a.anchors.as_slice(), b.anchors.as_slice());
            prop_assert_eq!(a.values(), b.values());
        }
    }

    #[test]
    fn damaged_batches_are_errors_or_batches(
        tuples in proptest::collection::vec(any_tuple(), 1..6),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = encode_data(&Inbound::Batch(tuples)).unwrap().to_vec();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x;
        }
        let t = topology();
        let _ = decode_data(&bytes, &t);
        let _ = decode_data(&bytes[..cut.index(bytes.len())], &t);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut b = vec![BATCH_TAG];
        b.extend_from_slice(&body);
        let _ = decode_data(&b, &topology());
    }
}

fn any_acker_msg() -> impl Strategy<Value = AckerMsg> {
    prop_oneof![
        (any::<u64>(), any::<u64>(), any::<u32>()).prop_map(|(root, xor, spout)| AckerMsg::Init {
            root,
            xor,
            spout
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(root, xor)| AckerMsg::Xor { root, xor }),
        any::<u64>().prop_map(|root| AckerMsg::Fail { root }),
    ]
}

fn any_spout_msg() -> impl Strategy<Value = SpoutMsg> {
    prop_oneof![
        proptest::collection::vec(any::<u64>(), 0..16).prop_map(SpoutMsg::Acked),
        proptest::collection::vec(any::<u64>(), 0..16).prop_map(SpoutMsg::Failed),
        Just(SpoutMsg::Activate),
        Just(SpoutMsg::Deactivate),
        Just(SpoutMsg::Stop),
        Just(SpoutMsg::Wake),
    ]
}

// The payloads other than data batches: what a peer that passed the handshake (or a bug)
// can put in front of the acker, a spout's control inbox and the flow control. Arbitrary
// and damaged bytes must be an error or a well-formed message, never a panic, and never a
// huge allocation taken from a length the sender chose.
proptest! {
    #[test]
    fn acker_payloads_round_trip(msgs in proptest::collection::vec(any_acker_msg(), 0..32)) {
        let bytes = encode_acker(&msgs).unwrap();
        prop_assert_eq!(decode_acker(&bytes).unwrap(), msgs);
    }

    #[test]
    fn hostile_acker_payloads_are_errors_or_messages(
        msgs in proptest::collection::vec(any_acker_msg(), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut bytes = vec![ACKER_TAG];
        bytes.extend_from_slice(&body);
        if let Ok(decoded) = decode_acker(&bytes) {
            // Whatever decodes holds no more messages than the bytes could carry.
            prop_assert!(decoded.len() <= body.len() / 9);
        }
        let _ = decode_acker(&body);
        let mut damaged = encode_acker(&msgs).unwrap().to_vec();
        for (at, x) in flips {
            let i = at.index(damaged.len());
            damaged[i] ^= x;
        }
        let _ = decode_acker(&damaged);
        let _ = decode_acker(&damaged[..cut.index(damaged.len())]);
    }

    #[test]
    fn spout_control_round_trips(msg in any_spout_msg()) {
        let bytes = encode_control(&msg).unwrap();
        prop_assert_eq!(decode_control(&bytes).unwrap(), msg);
    }

    #[test]
    fn hostile_spout_control_is_an_error_or_a_message(
        msg in any_spout_msg(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let _ = decode_control(&body);
        let mut damaged = encode_control(&msg).unwrap().to_vec();
        for (at, x) in flips {
            let i = at.index(damaged.len());
            damaged[i] ^= x;
        }
        let _ = decode_control(&damaged);
        let _ = decode_control(&damaged[..cut.index(damaged.len())]);
    }

    #[test]
    fn grants_and_load_reports_round_trip_and_refuse_garbage(
        task in any::<u32>(),
        batches in any::<u32>(),
        loads in proptest::collection::vec((any::<u32>(), any::<u16>()), 0..16),
        body in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        prop_assert_eq!(decode_grant(&encode_grant(task, batches).unwrap()).unwrap(), (task, batches));
        let report = encode_loads(loads.iter().copied());
        prop_assert_eq!(decode_loads(&report).unwrap().collect::<Vec<_>>(), loads);
        let _ = decode_grant(&body);
        if let Ok(pairs) = decode_loads(&body) {
            prop_assert_eq!(pairs.count(), body.len() / 6);
        }
    }
}

#[test]
fn a_control_payload_claiming_a_huge_list_is_refused_without_allocating_it() {
    // MessagePack: enum variant `Acked` as a map { "Acked": array32 of 2^32-1 elements }.
    let mut bytes = vec![0x81, 0xa5];
    bytes.extend_from_slice(b"Acked");
    bytes.extend_from_slice(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
    assert!(decode_control(&bytes).is_err());
}
