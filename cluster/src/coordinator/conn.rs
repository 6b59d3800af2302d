//! The coordinator's connection tasks: one per supervisor, one per client.

use super::*;

/// Serves one supervisor connection.
pub(super) async fn supervisor_conn(
    coord: Shared,
    mut reader: ConnReader,
    mut writer: ConnWriter,
    peer: SocketAddr,
) {
    let (id, slots, workers) = match reader.recv::<FromSupervisor>().await {
        Ok(Some(FromSupervisor::Register { id, slots, workers })) => (id, slots, workers),
        Ok(Some(other)) => {
            warn!(%peer, "A supervisor's first message must be `register`, not {other:?}.");
            return;
        }
        Ok(None) => return,
        Err(e) => {
            warn!(%peer, error = %e, "Lost a supervisor before it registered.");
            return;
        }
    };
    let (ctl_tx, mut ctl_rx) = mpsc::unbounded_channel();
    let (bulk_tx, mut bulk_rx) = mpsc::channel::<ToSupervisor>(4);
    let conn = {
        let mut c = lock(&coord);
        if c.taken(&id) {
            None
        } else {
            c.next_conn += 1;
            let conn = c.next_conn;
            c.register(&id, slots, workers, Link { conn, ctl: ctl_tx });
            if c.dirty {
                c.save();
            }
            Some(conn)
        }
    };
    let Some(conn) = conn else {
        warn!(supervisor = %id, %peer, "Refused a supervisor: another connected supervisor has its id.");
        let message = format!(
            "another connected supervisor has the id {id}; give each host its own --advertise address"
        );
        let _ = writer.send(&ToSupervisor::Refused { message }).await;
        return;
    };
    let sup_id = id.clone();
    let write = tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                biased;
                m = ctl_rx.recv() => m,
                m = bulk_rx.recv() => m,
            };
            let Some(msg) = msg else { break };
            if let Err(e) = writer.send(&msg).await {
                warn!(supervisor = %sup_id, error = %e, "Cannot write to a supervisor.");
                break;
            }
        }
    });
    loop {
        let msg = match reader.recv::<FromSupervisor>().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                info!(supervisor = %id, "Supervisor disconnected.");
                break;
            }
            Err(e) => {
                warn!(supervisor = %id, error = %e, "Lost a supervisor.");
                break;
            }
        };
        let mut c = lock(&coord);
        let current = c
            .supervisors
            .get(&id)
            .and_then(|s| s.link.as_ref())
            .is_some_and(|l| l.conn == conn);
        if !current {
            // Dropped for silence meanwhile, or replaced by a newer connection.
            break;
        }
        if let Some(s) = c.supervisors.get_mut(&id) {
            s.last_seen = Instant::now();
        }
        if let FromSupervisor::Fetch { hash } = &msg {
            // A binary, or else a resource archive: both are named by their hash.
            let in_archives = hash
                .parse::<Sha256Hex>()
                .is_ok_and(|h| !c.store.contains(&h) && c.archives.contains(&h));
            let store = Arc::clone(if in_archives { &c.archives } else { &c.store });
            tokio::spawn(send_artifact(store, hash.clone(), bulk_tx.clone()));
        }
        c.on_supervisor(&id, msg);
        if c.dirty {
            c.save();
        }
    }
    {
        let mut c = lock(&coord);
        if let Some(s) = c.supervisors.get_mut(&id) {
            if s.link.as_ref().is_some_and(|l| l.conn == conn) {
                s.link = None;
            }
        }
    }
    write.abort();
}

/// Streams a stored binary to a supervisor (or a standby coordinator) in chunks.
pub(super) async fn send_artifact(
    store: Arc<ArtifactStore>,
    hash: String,
    tx: mpsc::Sender<ToSupervisor>,
) {
    use tokio::io::AsyncReadExt;
    let missing = |message: String| ToSupervisor::ArtifactMissing {
        hash: hash.clone(),
        message,
    };
    let path = match hash.parse::<Sha256Hex>() {
        Ok(h) if store.contains(&h) => store.path(&h),
        Ok(_) => {
            let _ = tx.send(missing("not stored".into())).await;
            return;
        }
        Err(e) => {
            let _ = tx.send(missing(e.to_string())).await;
            return;
        }
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => {
            let _ = tx.send(missing(e.to_string())).await;
            return;
        }
    };
    let len = match file.metadata().await {
        Ok(m) => m.len(),
        Err(e) => {
            let _ = tx.send(missing(e.to_string())).await;
            return;
        }
    };
    info!(hash = %hash, len, "Sending an artifact to a supervisor.");
    let begin = ToSupervisor::ArtifactBegin {
        hash: hash.clone(),
        len,
    };
    if tx.send(begin).await.is_err() {
        return;
    }
    loop {
        let mut buf = vec![0u8; CHUNK_SIZE];
        let mut n = 0;
        while n < CHUNK_SIZE {
            match file.read(&mut buf[n..]).await {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    let _ = tx.send(missing(e.to_string())).await;
                    return;
                }
            }
        }
        if n == 0 {
            break;
        }
        buf.truncate(n);
        let chunk = ToSupervisor::ArtifactChunk {
            hash: hash.clone(),
            data: Chunk(buf),
        };
        if tx.send(chunk).await.is_err() {
            return;
        }
        if n < CHUNK_SIZE {
            break;
        }
    }
    let _ = tx.send(ToSupervisor::ArtifactEnd { hash }).await;
}

/// Serves one client connection: requests until it closes.
pub(super) async fn client_conn(
    coord: Shared,
    mut reader: ConnReader,
    mut writer: ConnWriter,
    peer: SocketAddr,
) {
    let mut upload: Option<(String, Upload)> = None;
    loop {
        let req = match reader.recv::<Request>().await {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                warn!(%peer, error = %e, "Lost a client.");
                return;
            }
        };
        let reply = match req {
            Request::HasArtifact { hash, resources } => {
                let c = lock(&coord);
                let store = if resources { &c.archives } else { &c.store };
                Some(Reply::Artifact {
                    present: hash.parse::<Sha256Hex>().is_ok_and(|h| store.contains(&h)),
                })
            }
            Request::UploadBegin {
                hash,
                len,
                resources,
            } => {
                let (store, max) = {
                    let c = lock(&coord);
                    if resources {
                        (Arc::clone(&c.archives), c.max_archive)
                    } else {
                        (Arc::clone(&c.store), u64::MAX)
                    }
                };
                match hash.parse::<Sha256Hex>() {
                    Ok(_) if len > max => {
                        warn!(%peer, hash = %hash, len, max, "Refused a resource archive over the limit.");
                        Some(Reply::Error {
                            message: format!(
                                "the resource archive is {len} bytes, over the coordinator's limit of {max} bytes (--max-archive-mib)"
                            ),
                        })
                    }
                    Ok(h) => match store.begin(&h, len) {
                        Ok(u) => {
                            if resources {
                                info!(%peer, hash = %hash, len, "Receiving a resource archive.");
                            } else {
                                info!(%peer, hash = %hash, len, "Receiving a binary.");
                            }
                            upload = Some((hash, u));
                            None
                        }
                        Err(e) => Some(Reply::Error {
                            message: e.to_string(),
                        }),
                    },
                    Err(e) => Some(Reply::Error {
                        message: e.to_string(),
                    }),
                }
            }
            Request::UploadChunk { data } => {
                if let Some((hash, u)) = upload.as_mut() {
                    // Hashing and writing a chunk blocks: let the runtime move the other tasks.
                    if let Err(e) = tokio::task::block_in_place(|| u.write(&data.0)) {
                        let message = format!("upload of {hash} failed: {e}");
                        upload = None;
                        Some(Reply::Error { message })
                    } else {
                        None
                    }
                } else {
                    None
                }
            }
            Request::UploadEnd => match upload.take() {
                Some((hash, u)) => match tokio::task::block_in_place(|| u.finish()) {
                    Ok(_) => {
                        info!(%peer, hash = %hash, "Artifact stored.");
                        Some(Reply::Uploaded { hash })
                    }
                    Err(e) => {
                        warn!(%peer, hash = %hash, error = %e, "Refused an upload.");
                        Some(Reply::Error {
                            message: e.to_string(),
                        })
                    }
                },
                None => Some(Reply::Error {
                    message: "no upload in progress (or it failed)".into(),
                }),
            },
            Request::Submit {
                name,
                topology,
                binary,
                resources,
            } => {
                let (archives, max) = {
                    let c = lock(&coord);
                    (Arc::clone(&c.archives), c.max_archive)
                };
                let checked = tokio::task::block_in_place(|| {
                    requests::check_resources(&archives, max, &topology, resources)
                });
                Some(match checked {
                    Ok((resources, requirements)) => with(&coord, |c| {
                        c.submit(name, topology, binary, resources, requirements)
                    }),
                    Err(message) => {
                        warn!(%peer, "Refused a topology: {message}");
                        Reply::Error { message }
                    }
                })
            }
            Request::List => Some(Reply::Topologies {
                topologies: lock(&coord).list(),
            }),
            Request::Kill { name, wait_secs } => Some(with(&coord, |c| c.kill(&name, wait_secs))),
            Request::Activate { name } => Some(with(&coord, |c| c.set_active(&name, true))),
            Request::Deactivate { name } => Some(with(&coord, |c| c.set_active(&name, false))),
            Request::Rebalance {
                name,
                workers,
                parallelism,
            } => Some(with(&coord, |c| c.rebalance(&name, workers, &parallelism))),
        };
        if let Some(reply) = reply {
            if let Err(e) = writer.send(&reply).await {
                warn!(%peer, error = %e, "Cannot answer a client.");
                return;
            }
        }
    }
}

/// Runs `f` on the state and saves it if it changed.
pub(super) fn with(coord: &Shared, f: impl FnOnce(&mut Coord) -> Reply) -> Reply {
    let mut c = lock(coord);
    let reply = f(&mut c);
    if c.dirty {
        c.save();
    }
    reply
}
