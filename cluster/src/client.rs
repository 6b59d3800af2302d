//! The client side of the verbs that talk to the coordinator: `submit`, `list`, `kill`,
//! `activate`, `deactivate`, `rebalance`. Each opens one authenticated connection, sends
//! its request(s) and returns the answer; the CLI prints it.

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;

use crate::artifacts::file_hash;
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
}

async fn ask(conn: &mut Conn, req: &Request) -> Result<Reply, ClientError> {
    conn.send(req).await?;
    match conn.recv::<Reply>().await? {
        Some(Reply::Error { message }) => Err(ClientError::Refused(message)),
        Some(r) => Ok(r),
        None => Err(ClientError::Closed),
    }
}

async fn open(addr: SocketAddr, secret: &Secret) -> Result<Conn, ClientError> {
    Ok(control::connect(addr, secret, Role::Client).await?)
}

/// Submits topology `name` (file text `text`) to run with the executable at `binary`,
/// uploading it in chunks unless the coordinator holds its hash already.
pub async fn submit(
    addr: SocketAddr,
    secret: &Secret,
    name: &str,
    text: &str,
    binary: &Path,
) -> Result<Submitted, ClientError> {
    let read_err = |e: &dyn std::fmt::Display| ClientError::Read {
        path: binary.display().to_string(),
        message: e.to_string(),
    };
    let hash = file_hash(binary).map_err(|e| read_err(&e))?.to_string();
    let mut conn = open(addr, secret).await?;
    let present = match ask(&mut conn, &Request::HasArtifact { hash: hash.clone() }).await? {
        Reply::Artifact { present } => present,
        other => return Err(ClientError::Unexpected(format!("{other:?}"))),
    };
    if !present {
        let mut file = std::fs::File::open(binary).map_err(|e| read_err(&e))?;
        let len = file.metadata().map_err(|e| read_err(&e))?.len();
        conn.send(&Request::UploadBegin {
            hash: hash.clone(),
            len,
        })
        .await?;
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            let mut n = 0;
            while n < CHUNK_SIZE {
                match file.read(&mut buf[n..]) {
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
        match ask(&mut conn, &Request::UploadEnd).await? {
            Reply::Uploaded { .. } => {}
            other => return Err(ClientError::Unexpected(format!("{other:?}"))),
        }
    }
    let req = Request::Submit {
        name: name.to_string(),
        topology: text.to_string(),
        binary: hash.clone(),
    };
    match ask(&mut conn, &req).await? {
        Reply::Submitted { id } => Ok(Submitted {
            id,
            binary: hash,
            uploaded: !present,
        }),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Every topology the coordinator knows.
pub async fn list(addr: SocketAddr, secret: &Secret) -> Result<Vec<TopologyInfo>, ClientError> {
    let mut conn = open(addr, secret).await?;
    match ask(&mut conn, &Request::List).await? {
        Reply::Topologies { topologies } => Ok(topologies),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

async fn done(addr: SocketAddr, secret: &Secret, req: Request) -> Result<String, ClientError> {
    let mut conn = open(addr, secret).await?;
    match ask(&mut conn, &req).await? {
        Reply::Done { message } => Ok(message),
        other => Err(ClientError::Unexpected(format!("{other:?}"))),
    }
}

/// Kills topology `name` (or id): deactivates its spouts, drains for `wait_secs` (the
/// topology's message timeout when `None`), then stops it. Returns what the coordinator
/// said.
pub async fn kill(
    addr: SocketAddr,
    secret: &Secret,
    name: &str,
    wait_secs: Option<f64>,
) -> Result<String, ClientError> {
    let req = Request::Kill {
        name: name.to_string(),
        wait_secs,
    };
    done(addr, secret, req).await
}

/// Activates topology `name`'s spouts.
pub async fn activate(
    addr: SocketAddr,
    secret: &Secret,
    name: &str,
) -> Result<String, ClientError> {
    let req = Request::Activate {
        name: name.to_string(),
    };
    done(addr, secret, req).await
}

/// Deactivates topology `name`'s spouts.
pub async fn deactivate(
    addr: SocketAddr,
    secret: &Secret,
    name: &str,
) -> Result<String, ClientError> {
    let req = Request::Deactivate {
        name: name.to_string(),
    };
    done(addr, secret, req).await
}

/// Restarts topology `name` with `workers` workers.
pub async fn rebalance(
    addr: SocketAddr,
    secret: &Secret,
    name: &str,
    workers: usize,
) -> Result<String, ClientError> {
    let req = Request::Rebalance {
        name: name.to_string(),
        workers,
    };
    done(addr, secret, req).await
}

/// Runs one of the functions above to completion on a small runtime of its own (for the
/// CLI, which is not async).
pub fn block_on<F: std::future::Future>(f: F) -> std::io::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(rt.block_on(f))
}
