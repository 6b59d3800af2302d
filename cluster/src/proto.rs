//! The messages on the control connections: client ↔ coordinator and supervisor ↔
//! coordinator (each one msgpack frame of [`crate::control`], named fields).
//!
//! # Client ↔ coordinator
//! One request, one reply, except an upload, whose chunks are not answered:
//! ```text
//! client                                      coordinator
//!   HasArtifact {hash, resources}           ->  (the binary, then the archive if any)
//!                                           <-  Artifact {present}
//!   UploadBegin {hash, len, resources}      ->  (only when not present)
//!   UploadChunk {data} ...                  ->  (1 MiB each)
//!   UploadEnd                               ->
//!                                           <-  Uploaded {hash} | Error
//!   Submit {name, topology, binary, resources} ->
//!                                           <-  Submitted {id} | Error
//!   List | Kill | Activate | Deactivate | Rebalance ->
//!                                           <-  Topologies | Done | Error
//! ```
//!
//! # Supervisor ↔ coordinator
//! The supervisor dials and sends `Register` (its id, slots and the workers it runs now,
//! so a restarted coordinator rebuilds its view), then a `Heartbeat` every second. The
//! coordinator sends assignments; the supervisor fetches a binary or resource archive it
//! lacks (`Fetch`, answered by chunks), starts the worker, and relays its control lines both ways
//! (`Worker` messages wrap the launcher's [`ToWorker`] / [`FromWorker`]).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use topo_engine::launcher::worker::{FromWorker, ToWorker};
use topo_engine::summary::{CheckpointSummary, RunSummary};

/// Bytes of one artifact chunk on the wire.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// Raw bytes, sent as one msgpack `bin` (not an array of integers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Chunk(pub Vec<u8>);

impl Serialize for Chunk {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Chunk;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Chunk, E> {
                Ok(Chunk(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Chunk, E> {
                Ok(Chunk(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Chunk, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = a.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Chunk(out))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A value carried as its JSON text: the launcher's worker messages are internally
/// tagged enums holding socket addresses, which do not survive a round trip through a
/// non-self-describing format's buffered content; as JSON they are what the worker wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Json<T>(pub T);

impl<T: Serialize> Serialize for Json<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(&self.0).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Json<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text)
            .map(Json)
            .map_err(serde::de::Error::custom)
    }
}

/// A client's request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Does the coordinator hold this binary (or resource archive)?
    HasArtifact {
        /// Its SHA-256, lowercase hex.
        hash: String,
        /// Asked of the resource archives.
        #[serde(default)]
        resources: bool,
    },
    /// An upload of a binary (or a resource archive) follows in chunks.
    UploadBegin {
        /// Its SHA-256, lowercase hex.
        hash: String,
        /// Its length in bytes.
        len: u64,
        /// It is a resource archive (stored apart, held to the archive size limit).
        #[serde(default)]
        resources: bool,
    },
    /// The next piece of the upload (not answered).
    UploadChunk {
        /// The bytes.
        data: Chunk,
    },
    /// The upload is complete: the coordinator verifies the hash.
    UploadEnd,
    /// Run a topology with a binary the coordinator holds.
    Submit {
        /// Its name (the file's `[topology] name` or `--name`).
        name: String,
        /// The topology file's text.
        topology: String,
        /// The binary's SHA-256, lowercase hex.
        binary: String,
        /// The resource archive's SHA-256, when the topology has resources.
        #[serde(default)]
        resources: Option<String>,
    },
    /// Every topology.
    List,
    /// Deactivate, drain, stop.
    Kill {
        /// The topology's name or id.
        name: String,
        /// Seconds to drain; the topology's message timeout when absent.
        wait_secs: Option<f64>,
    },
    /// Activate the spouts again.
    Activate {
        /// The topology's name or id.
        name: String,
    },
    /// Stop calling the spouts.
    Deactivate {
        /// The topology's name or id.
        name: String,
    },
    /// Restart with another number of workers, or other components' parallelism.
    Rebalance {
        /// The topology's name or id.
        name: String,
        /// The new number of workers (unchanged when absent).
        #[serde(default)]
        workers: Option<usize>,
        /// Component id -> its new parallelism (the others unchanged).
        #[serde(default)]
        parallelism: BTreeMap<String, usize>,
    },
}

/// The coordinator's reply to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Whether the artifact is stored.
    Artifact {
        /// It is.
        present: bool,
    },
    /// The upload verified and is stored.
    Uploaded {
        /// Its hash.
        hash: String,
    },
    /// The topology is accepted and being placed.
    Submitted {
        /// Its id, `NAME-<unix time>`.
        id: String,
    },
    /// Every topology the coordinator knows.
    Topologies {
        /// Newest last.
        topologies: Vec<TopologyInfo>,
    },
    /// The request was carried out.
    Done {
        /// What happened, one line.
        message: String,
    },
    /// The request was refused.
    Error {
        /// Why, one line.
        message: String,
    },
}

/// Where a topology is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Its spouts run.
    Active,
    /// Its spouts are deactivated.
    Inactive,
    /// Being killed: deactivated, draining.
    Killing,
    /// Being rebalanced: then started again with another number of workers or other
    /// parallelism. A checkpointed topology waits for its next committed checkpoint and
    /// restarts from it; any other is deactivated and drained first.
    Rebalancing,
    /// Killed by a client.
    Killed,
    /// A bounded topology whose spouts were all done; every worker sent its summary.
    Finished,
    /// A worker cannot run it (the reason is in `error`).
    Failed,
}

impl Status {
    /// Lowercase name as in `topo list`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
            Status::Killing => "killing",
            Status::Rebalancing => "rebalancing",
            Status::Killed => "killed",
            Status::Finished => "finished",
            Status::Failed => "failed",
        }
    }

    /// Its workers should be running.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Status::Active | Status::Inactive | Status::Killing | Status::Rebalancing
        )
    }
}

/// One topology, for `topo list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopologyInfo {
    /// `NAME-<unix time>`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Where it is in its life.
    pub status: Status,
    /// Number of workers.
    pub workers: usize,
    /// Seconds since it was submitted.
    pub uptime_secs: f64,
    /// The binary's SHA-256.
    pub binary: String,
    /// The resource archive's SHA-256 (`[topology] resources`).
    #[serde(default)]
    pub resources: Option<String>,
    /// The SHA-256 of its `python_requirements` file: its virtualenv's name on every
    /// supervisor.
    #[serde(default)]
    pub requirements: Option<String>,
    /// Each worker: where it runs.
    pub assignments: Vec<WorkerInfo>,
    /// Each component's counts (the sum over the current incarnation of every worker, or
    /// the final summary once it ended).
    pub components: Vec<ComponentInfo>,
    /// Component id -> its parallelism (tasks), as its file says now.
    #[serde(default)]
    pub parallelism: BTreeMap<String, usize>,
    /// A checkpointed topology's checkpoint figures (the last committed id, its
    /// duration and size, failures, rollbacks) over its whole life.
    #[serde(default)]
    pub checkpoints: Option<CheckpointSummary>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Where one worker of a topology runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its index.
    pub worker: usize,
    /// The supervisor it is assigned to (its id: its advertised IP and listen port).
    pub supervisor: Option<String>,
    /// Where its transport listens.
    pub addr: Option<SocketAddr>,
    /// Its tasks run.
    pub running: bool,
    /// Times it was started again (by its supervisor, or on another one).
    pub restarts: u32,
}

/// One component's counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentInfo {
    /// Its id.
    pub id: String,
    /// `spout` or `bolt`.
    pub kind: String,
    /// Tuples emitted.
    pub emitted: u64,
    /// Spouts: trees acked; bolts: inputs acked.
    pub acked: u64,
    /// Spouts: trees failed; bolts: inputs failed.
    pub failed: u64,
}

/// What a supervisor sends the coordinator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FromSupervisor {
    /// The first message on every connection.
    Register {
        /// Its id: its listen address.
        id: String,
        /// Workers it may run at once.
        slots: usize,
        /// The workers it runs now.
        workers: Vec<WorkerReport>,
    },
    /// Every second.
    Heartbeat,
    /// Send me this binary (or resource archive).
    Fetch {
        /// Its SHA-256.
        hash: String,
    },
    /// It started a (new incarnation of a) worker and sent it `Start`.
    Started {
        /// The topology id.
        topology: String,
        /// The worker index.
        worker: usize,
    },
    /// It cannot run an assigned worker.
    Refused {
        /// The topology id.
        topology: String,
        /// The worker index.
        worker: usize,
        /// Why.
        message: String,
    },
    /// A worker's control line.
    Worker {
        /// The topology id.
        topology: String,
        /// The worker index.
        worker: usize,
        /// What it said.
        msg: Json<FromWorker>,
    },
}

/// What a supervisor knows of a worker it runs (sent in `Register`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReport {
    /// The topology id.
    pub topology: String,
    /// The worker index.
    pub worker: usize,
    /// Where it listens, once it said.
    pub addr: Option<SocketAddr>,
    /// It said its tasks run.
    pub running: bool,
    /// Its summary, if it sent one.
    pub summary: Option<RunSummary>,
}

/// A supervisor that hears nothing from its coordinator this long drops the connection
/// and dials the coordinators again (a hung or partitioned leader).
pub const COORDINATOR_SILENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// What the coordinator sends a supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToSupervisor {
    /// Registration accepted.
    Registered,
    /// Every second: the coordinator runs (a supervisor that hears nothing for
    /// [`COORDINATOR_SILENCE`] dials again, the leader may have changed).
    Alive,
    /// Run this worker (fetch the binary first if it is not stored).
    Assign {
        /// What to run.
        assignment: Assignment,
    },
    /// Stop this worker (kill it) and forget it.
    Stop {
        /// The topology id.
        topology: String,
        /// The worker index.
        worker: usize,
    },
    /// A control line for a worker.
    Worker {
        /// The topology id.
        topology: String,
        /// The worker index.
        worker: usize,
        /// What to tell it.
        msg: Json<ToWorker>,
    },
    /// A binary asked for with `Fetch` follows in chunks.
    ArtifactBegin {
        /// Its hash.
        hash: String,
        /// Its length in bytes.
        len: u64,
    },
    /// The next piece of a binary asked for with `Fetch`.
    ArtifactChunk {
        /// Its hash.
        hash: String,
        /// The bytes.
        data: Chunk,
    },
    /// The last piece was sent.
    ArtifactEnd {
        /// Its hash.
        hash: String,
    },
    /// The coordinator cannot send it.
    ArtifactMissing {
        /// Its hash.
        hash: String,
        /// Why.
        message: String,
    },
    /// Registration refused (another connected supervisor has this id); the connection
    /// closes next.
    Refused {
        /// Why.
        message: String,
    },
}

/// One worker to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The topology id (also the workers' `TOPO_RUN_ID`); a supervisor makes it a
    /// directory name, so one that is not a valid id fails to decode.
    #[serde(deserialize_with = "topology_id")]
    pub topology: String,
    /// The worker index.
    pub worker: usize,
    /// The binary's SHA-256: the only artifact it may execute for this worker.
    pub binary: String,
    /// The resource archive's SHA-256: unpacked into the topology's work directory
    /// before the worker starts there.
    #[serde(default)]
    pub resources: Option<String>,
    /// The topology file's text.
    pub text: String,
    /// The plan's fingerprint.
    pub fingerprint: u64,
    /// Start its spouts deactivated.
    pub inactive: bool,
    /// Resume from this committed checkpoint (a checkpointed topology rolled back).
    #[serde(default)]
    pub restore: Option<u64>,
}

/// Deserializes a topology id, refusing one that is not allowed ([`topo_dsl::check_id`]).
fn topology_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let id = String::deserialize(d)?;
    topo_dsl::check_id(&id).map_err(serde::de::Error::custom)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_assignment_whose_id_is_a_path_does_not_decode() {
        let a = Assignment {
            topology: "../../etc".into(),
            worker: 0,
            binary: "00".repeat(32),
            resources: None,
            text: String::new(),
            fingerprint: 1,
            inactive: false,
            restore: None,
        };
        let bytes = rmp_serde::to_vec_named(&a).unwrap();
        let err = rmp_serde::from_slice::<Assignment>(&bytes).unwrap_err();
        assert!(
            err.to_string()
                .contains("invalid topology id \"../../etc\": \".\" is not allowed"),
            "{err}"
        );
        let ok = Assignment {
            topology: "wc-1764650000".into(),
            ..a
        };
        assert_eq!(round_trip(&ok), ok);
    }

    fn round_trip<T: Serialize + serde::de::DeserializeOwned>(v: &T) -> T {
        let bytes = rmp_serde::to_vec_named(v).unwrap();
        rmp_serde::from_slice(&bytes).unwrap()
    }

    #[test]
    fn a_chunk_is_one_bin_and_round_trips() {
        let req = Request::UploadChunk {
            data: Chunk(vec![0, 200, 255, 7]),
        };
        let bytes = rmp_serde::to_vec_named(&req).unwrap();
        // bin8 marker, length 4, the bytes themselves.
        assert!(bytes.windows(6).any(|w| w == [0xc4, 4, 0, 200, 255, 7]));
        assert_eq!(round_trip(&req), req);
    }

    #[test]
    fn relayed_worker_messages_round_trip() {
        let to = ToSupervisor::Worker {
            topology: "t-1".into(),
            worker: 2,
            msg: Json(ToWorker::Peers {
                addrs: vec!["127.0.0.2:4000".parse().unwrap()],
            }),
        };
        assert_eq!(round_trip(&to), to);
        let from = FromSupervisor::Worker {
            topology: "t-1".into(),
            worker: 0,
            msg: Json(FromWorker::Listening {
                addr: "127.0.0.3:4001".parse().unwrap(),
            }),
        };
        assert_eq!(round_trip(&from), from);
        let list = Reply::Topologies {
            topologies: vec![TopologyInfo {
                id: "t-1".into(),
                name: "t".into(),
                status: Status::Active,
                workers: 1,
                uptime_secs: 1.5,
                binary: "ab".into(),
                resources: Some("cd".into()),
                requirements: None,
                assignments: vec![WorkerInfo {
                    worker: 0,
                    supervisor: Some("127.0.0.2:7001".into()),
                    addr: Some("127.0.0.2:4000".parse().unwrap()),
                    running: true,
                    restarts: 0,
                }],
                components: Vec::new(),
                parallelism: BTreeMap::from([("count".to_string(), 4)]),
                checkpoints: Some(CheckpointSummary {
                    completed: 3,
                    last_completed: Some(3),
                    last_duration_ms: Some(12.5),
                    ..CheckpointSummary::default()
                }),
                error: None,
            }],
        };
        assert_eq!(round_trip(&list), list);
    }
}
