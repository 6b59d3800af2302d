//! The client side of the verbs that talk to the coordinator: `submit`, `list`, `kill`,
//! `activate`, `deactivate`, `rebalance`. Each opens one authenticated connection, sends
//! its request(s) and returns the answer; the CLI prints it.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use crate::artifacts::{file_hash, Sha256Hex};
use crate::control::{self, Conn, ControlError, Role};
use crate::proto::{Chunk, Reply, Request, TopologyInfo, CHUNK_SIZE};
use crate::secret::Secret;

/// Why a verb failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connection failed or was refused.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The coordinator refused the request.
    #[error("the coordinator refused: {0}")]
    Refused(String),
    /// None of several coordinators accepted a connection: none leads, or none runs.
    #[error(
        "no coordinator accepted the connection ({0}); is one running, and with --etcd, \
         can it reach etcd to lead?"
    )]
    NoLeader(String),
    /// The coordinator closed the connection before it answered.
    #[error("the coordinator closed the connection before it answered")]
    Closed,
    /// It answered something that does not belong here.
    #[error("unexpected answer from the coordinator: {0}")]
    Unexpected(String),
    /// A local file could not be read.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// What `submit` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The topology's id.
    pub id: String,
    /// The binary's SHA-256.
    pub binary: String,
    /// The binary was uploaded (the coordinator did not hold it yet).
    pub uploaded: bool,
    /// The resource archive's SHA-256, when the topology has resources.
    pub resources: Option<String>,
    /// The archive was uploaded (the coordinator did not hold it yet).
    pub resources_uploaded: bool,
}

/// What `submit` sends: the topology, the executable to run it with, its resources.
#[derive(Debug, Clone, Copy)]
pub struct Submission<'a> {
    /// Its name (the file's `[topology] name` or `--name`).
    pub name: &'a str,
    /// The topology file's text.
    pub text: &'a str,
    /// The executable.
    pub binary: &'a Path,
    /// The packed resources ([`crate::archive::pack`]), if it has any.
    pub resources: Option<&'a [u8]>,
}

async fn ask(conn: &mut Conn, req: &Request) -> Result<Reply, ClientError> {
    conn.send(req).await?;
    match conn.recv::<Reply>().await? {
        Some(Reply::Error { message }) => Err(ClientError::Refused(message)),
        Some(r) => Ok(r),
        None => Err(ClientError::Closed),
    }
}

/// Connects to the first of `addrs` that accepts: the leader (standby coordinators do
/// not listen).
async fn open(addrs: &[SocketAddr], secret: &Secret) -> Result<Conn, ClientError> {
    if let [one] = addrs {
        return Ok(control::connect(*one, secret, Role::Client).await?);
    }
    let mut why = Vec::new();
    for &addr in addrs {
        match control::connect(addr, secret, Role::Client).await {
            Ok(conn) => return Ok(conn),
            // A coordinator that refused us (a wrong secret) is not a standby: say so.
            Err(
                e @ (control::ControlError::Refused { .. }
                | control::ControlError::Connect {
                    source: control::HandshakeError::PeerBadAuth { .. },
                    ..
                }),
            ) => return Err(e.into()),
            Err(e) => why.push(e.to_string()),
        }
    }
    Err(ClientError::NoLeader(why.join("; ")))
}

/// Uploads what `read` yields (`len` bytes, hashing to `hash`) unless the coordinator
/// holds it already; true when it was uploaded.
async fn upload(
    conn: &mut Conn,
    hash: &str,
    len: u64,
    resources: bool,
    mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    read_err: impl Fn(&dyn std::fmt::Display) -> ClientError,
) -> Result<bool, ClientError> {
    let has = Request::HasArtifact {
        hash: hash.to_string(),
        resources,
    };
    let present = match ask(conn, &has).await? {
        Reply::Artifact { present } => present,
        other => return Err(ClientError::Unexpected(format!("{other:?}"))),
    };
    if present {
        return Ok(false);
    }
    conn.send(&Request::UploadBegin {
        hash: hash.to_string(),
        len,
        resources,
    })
    .await?;
    let mut buf = vec![0u8; CHUNK_SIZE];
    loop {
        let mut n = 0;
        while n < CHUNK_SIZE {
            match read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(read_err(&e)),
            }
        }
        if n == 0 {
            break;
        }
        conn.send(&Request::UploadChunk {
            data: Chunk(buf[..n].to_vec()),
        })
        .await?;
        if n < CHUNK_SIZE {
            break;
        }
    }
    match ask(conn, &Request::UploadEnd).await? {
        Reply::Uploaded { .. } => Ok(true),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Submits a topology to run with its executable, uploading the executable and the
/// resource archive in chunks, each only if the coordinator does not hold its hash yet.
pub async fn submit(
    addrs: &[SocketAddr],
    secret: &Secret,
    s: Submission<'_>,
) -> Result<Submitted, ClientError> {
    let read_err = |e: &dyn std::fmt::Display| ClientError::Read {
        path: s.binary.display().to_string(),
        message: e.to_string(),
    };
    let hash = file_hash(s.binary).map_err(|e| read_err(&e))?.to_string();
    let mut file = std::fs::File::open(s.binary).map_err(|e| read_err(&e))?;
    let len = file.metadata().map_err(|e| read_err(&e))?.len();
    let mut conn = open(addrs, secret).await?;
    let uploaded = upload(&mut conn, &hash, len, false, |b| file.read(b), read_err).await?;
    let mut resources = None;
    let mut resources_uploaded = false;
    if let Some(bytes) = s.resources {
        let archive = Sha256Hex::of(bytes).to_string();
        let mut rest = bytes;
        resources_uploaded = upload(
            &mut conn,
            &archive,
            bytes.len() as u64,
            true,
            |b| rest.read(b),
            |e| ClientError::Read {
                path: "the resource archive".into(),
                message: e.to_string(),
            },
        )
        .await?;
        resources = Some(archive);
    }
    let req = Request::Submit {
        name: s.name.to_string(),
        topology: s.text.to_string(),
        binary: hash.clone(),
        resources: resources.clone(),
    };
    match ask(&mut conn, &req).await? {
        Reply::Submitted { id } => Ok(Submitted {
            id,
            binary: hash,
            uploaded,
            resources,
            resources_uploaded,
        }),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Every topology the coordinator knows.
pub async fn list(addrs: &[SocketAddr], secret: &Secret) -> Result<Vec<TopologyInfo>, ClientError> {
    let mut conn = open(addrs, secret).await?;
    match ask(&mut conn, &Request::List).await? {
        Reply::Topologies { topologies } => Ok(topologies),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

async fn done(addrs: &[SocketAddr], secret: &Secret, req: Request) -> Result<String, ClientError> {
    let mut conn = open(addrs, secret).await?;
    match ask(&mut conn, &req).await? {
        Reply::Done { message } => Ok(message),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Kills topology `name` (or id): deactivates its spouts, drains for `wait_secs` (the
/// topology's message timeout when `None`), then stops it. Returns what the coordinator
/// said.
pub async fn kill(
    addrs: &[SocketAddr],
    secret: &Secret,
    name: &str,
    wait_secs: Option<f64>,
) -> Result<String, ClientError> {
    let req = Request::Kill {
        name: name.to_string(),
        wait_secs,
    };
    done(addrs, secret, req).await
}

/// Activates topology `name`'s spouts.
pub async fn activate(
    addrs: &[SocketAddr],
    secret: &Secret,
    name: &str,
) -> Result<String, ClientError> {
    let req = Request::Activate {
        name: name.to_string(),
    };
    done(addrs, secret, req).await
}

/// Deactivates topology `name`'s spouts.
pub async fn deactivate(
    addrs: &[SocketAddr],
    secret: &Secret,
    name: &str,
) -> Result<String, ClientError> {
    let req = Request::Deactivate {
        name: name.to_string(),
    };
    done(addrs, secret, req).await
}

/// Restarts topology `name` with `workers` workers (unchanged when `None`) and each
/// component in `parallelism` with its new parallelism.
pub async fn rebalance(
    addrs: &[SocketAddr],
    secret: &Secret,
    name: &str,
    workers: Option<usize>,
    parallelism: BTreeMap<String, usize>,
) -> Result<String, ClientError> {
    let req = Request::Rebalance {
        name: name.to_string(),
        workers,
        parallelism,
    };
    done(addrs, secret, req).await
}

/// Runs one of the functions above to completion on a small runtime of its own (for the
/// CLI, which is not async).
pub fn block_on<F: std::future::Future>(f: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}
