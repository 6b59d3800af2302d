//! How the runtime's messages travel between workers: the payloads of the transport's
//! `Data`, `Acker` and `Control` frames, in MessagePack (rmp-serde, structs as arrays).
//!
//! ```text
//! Data payload    = {"Batch": [[[component, stream], ...],
//!                              [[stream_index, source_task, [[root, id], ...], [value, ...]], ...]]}
//!                 | {"Eos": from_task}       the end of from_task's stream
//!                 | "Wake"                   (never sent between workers)
//! Acker payload   = [acker_msg, ...]          (the frame names the acker task)
//! Control payload = spout_msg                  (the frame names the spout task)
//! ```
//!
//! A batch names each (component, stream) it carries once; the receiver interns the
//! stream with the fields its own topology declares, so a peer cannot make it intern
//! arbitrary names: an unknown component or stream is an error, as is anything that does
//! not decode.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use topo_dsl::Topology;

use crate::route::{AckerMsg, Inbound, SpoutMsg};
use crate::tuple::{Anchors, StreamInfo, TaskId, Tuple, Values};

/// A payload that does not decode, or names what this topology does not have.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not the encoding.
    #[error("cannot decode a {what} payload: {message}")]
    Decode {
        /// Which payload.
        what: &'static str,
        /// The decoder's words.
        message: String,
    },
    /// A batch names a component or stream the topology does not declare.
    #[error(
        "a batch names stream `{stream}` of `{component}`, which the topology does not declare"
    )]
    UnknownStream {
        /// The component id.
        component: String,
        /// The stream id.
        stream: String,
    },
    /// A tuple refers to a stream index the batch does not have.
    #[error("a tuple refers to stream {0}, which its batch does not name")]
    BadStreamIndex(usize),
    /// Encoding failed (a value serde cannot write).
    #[error("cannot encode: {0}")]
    Encode(String),
}

#[derive(Serialize, Deserialize)]
struct WireTuple {
    stream: u32,
    source_task: TaskId,
    anchors: Vec<(u64, u64)>,
    values: Values,
}

#[derive(Serialize, Deserialize)]
enum Data {
    Batch {
        streams: Vec<(String, String)>,
        tuples: Vec<WireTuple>,
    },
    Eos(TaskId),
    Wake,
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, WireError> {
    rmp_serde::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| WireError::Encode(e.to_string()))
}

fn decode<'a, T: Deserialize<'a>>(what: &'static str, bytes: &'a [u8]) -> Result<T, WireError> {
    rmp_serde::from_slice(bytes).map_err(|e| WireError::Decode {
        what,
        message: e.to_string(),
    })
}

/// Encodes a data message (a batch, an end of stream) for a task of another worker.
pub fn encode_data(msg: &Inbound) -> Result<Bytes, WireError> {
    let data = match msg {
        Inbound::Batch(tuples) => {
            let mut infos: Vec<&'static StreamInfo> = Vec::new();
            let mut wire = Vec::with_capacity(tuples.len());
            for t in tuples {
                let i = match infos.iter().position(|s| std::ptr::eq(*s, t.source)) {
                    Some(i) => i,
                    None => {
                        infos.push(t.source);
                        infos.len() - 1
                    }
                };
                wire.push(WireTuple {
                    stream: i as u32,
                    source_task: t.source_task,
                    anchors: t.anchors.to_vec(),
                    values: t.values.clone(),
                });
            }
            Data::Batch {
                streams: infos
                    .iter()
                    .map(|s| (s.component.clone(), s.stream.clone()))
                    .collect(),
                tuples: wire,
            }
        }
        Inbound::Eos(from) => Data::Eos(*from),
        Inbound::Wake => Data::Wake,
    };
    encode(&data)
}

/// Decodes a data message; streams are resolved against `topology`.
pub fn decode_data(bytes: &[u8], topology: &Topology) -> Result<Inbound, WireError> {
    match decode::<Data>("data", bytes)? {
        Data::Batch { streams, tuples } => {
            let infos = streams
                .iter()
                .map(|(component, stream)| {
                    topology
                        .component(component)
                        .and_then(|(_, c)| c.output(stream))
                        .map(|decl| StreamInfo::intern(component, stream, &decl.fields))
                        .ok_or_else(|| WireError::UnknownStream {
                            component: component.clone(),
                            stream: stream.clone(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let tuples = tuples
                .into_iter()
                .map(|w| {
                    let source = *infos
                        .get(w.stream as usize)
                        .ok_or(WireError::BadStreamIndex(w.stream as usize))?;
                    Ok(Tuple {
                        values: w.values,
                        source,
                        source_task: w.source_task,
                        anchors: Anchors::from_vec(w.anchors),
                    })
                })
                .collect::<Result<Vec<_>, WireError>>()?;
            Ok(Inbound::Batch(tuples))
        }
        Data::Eos(from) => Ok(Inbound::Eos(from)),
        Data::Wake => Ok(Inbound::Wake),
    }
}

/// Encodes acker messages.
pub fn encode_acker(msgs: &[AckerMsg]) -> Result<Bytes, WireError> {
    encode(&msgs)
}

/// Decodes acker messages.
pub fn decode_acker(bytes: &[u8]) -> Result<Vec<AckerMsg>, WireError> {
    decode("acker", bytes)
}

/// Encodes a message to a spout task.
pub fn encode_control(msg: &SpoutMsg) -> Result<Bytes, WireError> {
    encode(msg)
}

/// Decodes a message to a spout task.
pub fn decode_control(bytes: &[u8]) -> Result<SpoutMsg, WireError> {
    decode("control", bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        fn component_type(&self, name: &str) -> Option<&dyn ComponentType> {
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
}
