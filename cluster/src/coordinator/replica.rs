//! Standbys hold the leader's artifacts: while it waits for the lead, a standby copies
//! every binary and resource archive the state in etcd names from the leader, so that it
//! can serve them to supervisors once it leads.
//!
//! The standby dials the leader's control address (published in etcd) as a coordinator
//! and asks `Fetch {hash}` for each artifact it lacks, as a supervisor does; the leader
//! answers with the same chunks ([`super::conn::send_artifact`]) and serves a coordinator
//! nothing else.

use super::*;

use crate::control;
use crate::proto::FromSupervisor;
use etcd::{EtcdOptions, LeaderInfo, Leadership};

/// How often a standby looks for artifacts it lacks.
const EVERY: Duration = Duration::from_secs(2);

/// Waits as a standby until this coordinator leads ([`Leadership::acquire`]), meanwhile
/// copying the leader's artifacts into `opts.state_dir`.
pub async fn stand_by(
    etcd: &EtcdOptions,
    me: LeaderInfo,
    opts: &CoordinatorOptions,
) -> anyhow::Result<Leadership> {
    std::fs::create_dir_all(&opts.state_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", opts.state_dir.display()))?;
    let store = Arc::new(ArtifactStore::open(&opts.state_dir)?);
    let archives = Arc::new(ArtifactStore::open_in(
        &opts.state_dir,
        "archives",
        "archive-transfers.json",
    )?);
    let copying = async {
        loop {
            if let Err(e) = copy_missing(etcd, &me, opts, &store, &archives).await {
                warn!(error = %e, "Cannot copy the leader's artifacts yet; retrying.");
            }
            tokio::time::sleep(EVERY).await;
        }
    };
    tokio::select! {
        lead = Leadership::acquire(etcd, me.clone()) => lead,
        never = copying => never,
    }
}

/// One round: the artifacts the state names that this standby lacks, fetched from the
/// leader.
async fn copy_missing(
    etcd: &EtcdOptions,
    me: &LeaderInfo,
    opts: &CoordinatorOptions,
    store: &Arc<ArtifactStore>,
    archives: &Arc<ArtifactStore>,
) -> anyhow::Result<()> {
    let (leader, state) = etcd::peek(etcd).await?;
    let Some(leader) = leader.filter(|l| l.control != me.control) else {
        return Ok(());
    };
    let saved = persist::parse_etcd("state", state.as_deref())?;
    let mut wanted: Vec<(Sha256Hex, &Arc<ArtifactStore>)> = Vec::new();
    for r in &saved.topologies {
        if let Ok(h) = r.binary.parse::<Sha256Hex>() {
            wanted.push((h, store));
        }
        if let Some(h) = r.resources.as_ref().and_then(|h| h.parse().ok()) {
            wanted.push((h, archives));
        }
    }
    wanted.retain(|(h, s)| !s.contains(h));
    wanted.sort_by(|a, b| a.0.cmp(&b.0));
    wanted.dedup_by(|a, b| a.0 == b.0);
    if wanted.is_empty() {
        return Ok(());
    }
    let addr: SocketAddr = leader.control.parse()?;
    let conn = control::connect(addr, &opts.secret, Role::Coordinator).await?;
    let (mut reader, mut writer) = conn.split();
    for (hash, into) in wanted {
        let fetch = FromSupervisor::Fetch {
            hash: hash.as_str().to_string(),
        };
        writer.send(&fetch).await?;
        let mut upload: Option<Upload> = None;
        loop {
            match reader.recv::<ToSupervisor>().await? {
                Some(ToSupervisor::ArtifactBegin { len, .. }) => {
                    upload = Some(into.begin(&hash, len)?);
                }
                Some(ToSupervisor::ArtifactChunk { data, .. }) => {
                    let Some(u) = upload.as_mut() else {
                        anyhow::bail!("a chunk before the artifact began");
                    };
                    u.write(&data.0)?;
                }
                Some(ToSupervisor::ArtifactEnd { .. }) => {
                    let Some(u) = upload.take() else {
                        anyhow::bail!("an artifact ended before it began");
                    };
                    u.finish()?;
                    info!(hash = %hash.short(), leader = %leader.control, "Copied an artifact from the leader.");
                    break;
                }
                Some(ToSupervisor::ArtifactMissing { message, .. }) => {
                    warn!(hash = %hash.short(), message = %message, "The leader cannot send an artifact.");
                    break;
                }
                Some(_) => {}
                None => anyhow::bail!("the leader closed the connection"),
            }
        }
    }
    Ok(())
}

/// The leader's side: a standby's connection, answered with artifacts only.
pub(super) async fn standby_conn(
    coord: Shared,
    mut reader: ConnReader,
    mut writer: ConnWriter,
    peer: SocketAddr,
) {
    let (tx, mut rx) = mpsc::channel::<ToSupervisor>(4);
    let write = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if writer.send(&msg).await.is_err() {
                break;
            }
        }
    });
    while let Ok(Some(msg)) = reader.recv::<FromSupervisor>().await {
        let FromSupervisor::Fetch { hash } = msg else {
            warn!(%peer, "A standby coordinator asked for something other than an artifact.");
            break;
        };
        let store = {
            let c = lock(&coord);
            let in_archives = hash
                .parse::<Sha256Hex>()
                .is_ok_and(|h| !c.store.contains(&h) && c.archives.contains(&h));
            Arc::clone(if in_archives { &c.archives } else { &c.store })
        };
        // One at a time: the standby reads each to its end before asking the next.
        conn::send_artifact(store, hash, tx.clone()).await;
    }
    drop(tx);
    let _ = write.await;
}
