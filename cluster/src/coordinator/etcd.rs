//! The coordinator's state and leadership in etcd (`topo coordinator --etcd`).
//!
//! # Keys (under `--etcd-prefix`, default `/topo`)
//! - `PREFIX/leader`: the leader's [`LeaderInfo`] (JSON), put with the leader's lease, so it
//!   disappears when the lease lapses.
//! - `PREFIX/state`: what `state.json` holds in file mode (JSON).
//! - `PREFIX/writer`: the control address of the coordinator that last wrote the state.
//!
//! # Election
//! A coordinator grants itself a lease of `--lease-secs` and puts the leader key with it
//! only if the key does not exist (a transaction on its create revision). Until that
//! succeeds it is a standby: it watches the leader key and tries again when the key is
//! deleted (the leader's lease lapsed or was revoked), and at least every lease period.
//! The leader keeps its lease alive every quarter of the period (a failed keep-alive is
//! tried on the next member); when a keep-alive is
//! refused (the lease expired) or none succeeded for a whole period (etcd unreachable,
//! the process paused), it has lost the lead.
//!
//! # Writes
//! Every write of the state is a transaction guarded by the leader key's lease being this
//! coordinator's: a deposed leader's write changes nothing, whatever it believes.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, PutOptions, Txn, TxnOp, WatchOptions,
};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

/// How to reach etcd and how long a leader's lease lasts.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// The endpoints (`http://127.0.0.1:2379`); the client fails over between them.
    pub endpoints: Vec<String>,
    /// The prefix of every key (`/topo`).
    pub prefix: String,
    /// The lease's time to live.
    pub lease_secs: u64,
    /// An etcd user and password, when etcd has authentication enabled.
    pub user: Option<(String, String)>,
}

/// What the leader publishes under `PREFIX/leader`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderInfo {
    /// Where supervisors and clients reach its control port.
    pub control: String,
    /// Where its web UI is served, if it has one.
    pub ui: Option<String>,
}

/// Until when the lease is surely alive, as this process measures it: the start of the
/// last acknowledged keep-alive plus the time to live. Reading it never blocks on etcd.
#[derive(Debug, Clone)]
pub(crate) struct LeaseClock(Arc<Mutex<Instant>>);

impl LeaseClock {
    /// Whether the lease is still surely held now.
    pub(crate) fn held(&self) -> bool {
        Instant::now() < *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn extend_to(&self, until: Instant) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = until;
    }
}

/// A write that did not happen.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The leader key is not held with this coordinator's lease any more.
    #[error("this coordinator is no longer the leader (its lease lapsed); the write was refused")]
    Deposed,
    /// etcd did not answer (retried).
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
}

/// The lead, once won: the client, the lease, the keys.
pub struct Leadership {
    client: Client,
    lease: i64,
    ttl: Duration,
    leader_key: String,
    state_key: String,
    writer_key: String,
    me: LeaderInfo,
    clock: LeaseClock,
    rotation: Rotation,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("lease", &self.lease)
            .field("leader_key", &self.leader_key)
            .finish_non_exhaustive()
    }
}

/// Connects to etcd at `endpoints` (an error names them).
async fn connect(opts: &EtcdOptions, endpoints: &[String]) -> anyhow::Result<Client> {
    let mut co = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(1), Duration::from_secs(2));
    if let Some((user, password)) = &opts.user {
        co = co.with_user(user.clone(), password.clone());
    }
    Client::connect(endpoints, Some(co))
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to etcd at {}: {e}", endpoints.join(",")))
}

/// A client of the next endpoint after a failure: a call that failed on one member is
/// tried on another rather than on the same connection again.
#[derive(Debug, Clone)]
struct Rotation {
    opts: EtcdOptions,
    next: usize,
}

impl Rotation {
    async fn next_client(&mut self) -> Option<Client> {
        let n = self.opts.endpoints.len();
        self.next = (self.next + 1) % n;
        let one = [self.opts.endpoints[self.next].clone()];
        match connect(&self.opts, &one).await {
            Ok(c) => Some(c),
            Err(e) => {
                warn!(error = %e, "Cannot reach this etcd member; trying the next.");
                None
            }
        }
    }
}

impl Leadership {
    /// Waits as a standby until this coordinator leads, then publishes `me` as the
    /// leader. Errors reaching etcd are logged and retried; only bad options (no
    /// endpoints, a zero lease) fail.
    pub async fn acquire(opts: &EtcdOptions, me: LeaderInfo) -> anyhow::Result<Leadership> {
        if opts.endpoints.is_empty() {
            anyhow::bail!("--etcd names no endpoint");
        }
        if opts.lease_secs == 0 {
            anyhow::bail!("--lease-secs must be at least 1");
        }
        let prefix = opts.prefix.trim_end_matches('/');
        let leader_key = format!("{prefix}/leader");
        let value = serde_json::to_vec(&me)?;
        let mut logged_standby = false;
        // Each attempt talks to one member, the next after a failure: a dead member is
        // not dialed again and again.
        let mut member = 0;
        loop {
            let one = [opts.endpoints[member % opts.endpoints.len()].clone()];
            match Self::campaign(opts, &one, &leader_key, &value).await {
                Ok(Campaign::Won(client, lease, granted_at)) => {
                    let ttl = Duration::from_secs(opts.lease_secs);
                    info!(control = %me.control, lease, "Leading: this coordinator holds the etcd lease.");
                    return Ok(Leadership {
                        client,
                        lease,
                        ttl,
                        state_key: format!("{prefix}/state"),
                        writer_key: format!("{prefix}/writer"),
                        leader_key,
                        me,
                        clock: LeaseClock(Arc::new(Mutex::new(granted_at + ttl))),
                        rotation: Rotation {
                            opts: opts.clone(),
                            next: member % opts.endpoints.len(),
                        },
                    });
                }
                Ok(Campaign::Lost(mut client, leader)) => {
                    if !logged_standby {
                        info!(leader = %leader, "Standby: another coordinator leads; watching for its lease to lapse.");
                        logged_standby = true;
                    }
                    // Wakes on the key's deletion, or after a lease period at most.
                    let watched = async {
                        let mut stream = client
                            .watch(leader_key.as_str(), None::<WatchOptions>)
                            .await?;
                        while let Some(resp) = stream.message().await? {
                            if resp
                                .events()
                                .iter()
                                .any(|e| e.event_type() == EventType::Delete)
                            {
                                return Ok::<(), etcd_client::Error>(());
                            }
                        }
                        Ok(())
                    };
                    let waited = Duration::from_secs(opts.lease_secs);
                    if let Ok(Err(_)) = tokio::time::timeout(waited, watched).await {
                        member += 1;
                    }
                }
                Err(e) => {
                    member += 1;
                    warn!(error = %e, "Cannot reach etcd to campaign for the lead; retrying.");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn campaign(
        opts: &EtcdOptions,
        endpoints: &[String],
        leader_key: &str,
        value: &[u8],
    ) -> anyhow::Result<Campaign> {
        let mut client = connect(opts, endpoints).await?;
        let granted_at = Instant::now();
        let lease = client.lease_grant(opts.lease_secs as i64, None).await?.id();
        let txn = Txn::new()
            .when([Compare::create_revision(leader_key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                leader_key,
                value.to_vec(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(leader_key, None)]);
        let resp = client.txn(txn).await?;
        if resp.succeeded() {
            return Ok(Campaign::Won(client, lease, granted_at));
        }
        let _ = client.lease_revoke(lease).await;
        let leader = resp
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                etcd_client::TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                _ => None,
            })
            .unwrap_or_default();
        Ok(Campaign::Lost(client, leader))
    }

    /// The lease's clock, for what must stop the moment the lease may have lapsed.
    pub(crate) fn clock(&self) -> LeaseClock {
        self.clock.clone()
    }

    /// The key the state lives under.
    pub(crate) fn state_key(&self) -> &str {
        &self.state_key
    }

    /// Keeps the lease alive every quarter of its period (a failed keep-alive is tried on
    /// the next member); completes (with why) once the
    /// lead is lost: a keep-alive refused, or none acknowledged for a whole period.
    pub(crate) fn keep_alive(&self) -> impl Future<Output = String> + Send + 'static {
        let mut client = self.client.clone();
        let mut rotation = self.rotation.clone();
        let lease = self.lease;
        let ttl = self.ttl;
        let clock = self.clock.clone();
        async move {
            let mut every = tokio::time::interval(ttl / 4);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut keeper = None;
            loop {
                every.tick().await;
                if !clock.held() {
                    return format!(
                        "no keep-alive of its lease was acknowledged for {} s",
                        ttl.as_secs()
                    );
                }
                let sent = Instant::now();
                let beat = async {
                    if keeper.is_none() {
                        keeper = Some(client.lease_keep_alive(lease).await?);
                    }
                    let Some((k, stream)) = keeper.as_mut() else {
                        unreachable!("set above");
                    };
                    k.keep_alive().await?;
                    Ok::<_, etcd_client::Error>(stream.message().await?.map(|r| r.ttl()))
                };
                let answered = tokio::time::timeout(ttl / 4, beat).await;
                let failed = !matches!(answered, Ok(Ok(Some(_))));
                match answered {
                    Ok(Ok(Some(left))) if left > 0 => {
                        // Only while still surely held: a late answer after a pause
                        // does not revive a lapsed lease on this side.
                        if clock.held() {
                            clock.extend_to(sent + ttl);
                        }
                    }
                    Ok(Ok(Some(_))) => return "etcd says its lease expired".to_string(),
                    Ok(Ok(None)) => keeper = None,
                    Ok(Err(e)) => {
                        warn!(error = %e, "A keep-alive of the lease failed; retrying.");
                        keeper = None;
                    }
                    Err(_) => keeper = None,
                }
                if failed {
                    if let Some(c) = rotation.next_client().await {
                        client = c;
                    }
                }
            }
        }
    }

    /// The state stored under `PREFIX/state` (`None`: none yet).
    pub(crate) async fn load(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        let resp = self
            .client
            .get(self.state_key.as_str(), None)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read {} from etcd: {e}", self.state_key))?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    /// Writes `state` under `PREFIX/state` (and this coordinator as its writer) only if
    /// the leader key still carries this coordinator's lease.
    pub(crate) async fn save(&mut self, state: &[u8]) -> Result<(), WriteError> {
        let txn = Txn::new()
            .when([Compare::lease(
                self.leader_key.as_str(),
                CompareOp::Equal,
                self.lease,
            )])
            .and_then([
                TxnOp::put(self.state_key.as_str(), state.to_vec(), None),
                TxnOp::put(self.writer_key.as_str(), self.me.control.clone(), None),
            ]);
        match self.client.txn(txn).await {
            Ok(r) if r.succeeded() => Ok(()),
            Ok(_) => Err(WriteError::Deposed),
            Err(e) => {
                if let Some(c) = self.rotation.next_client().await {
                    self.client = c;
                }
                Err(e.into())
            }
        }
    }

    /// Gives up the lead at once (the leader key goes with the lease).
    pub(crate) async fn resign(&mut self) {
        let _ = self.client.lease_revoke(self.lease).await;
    }
}

/// What etcd holds now: the leader's [`LeaderInfo`] (if one leads) and the state. For a
/// standby, which reads and never writes.
pub(crate) async fn peek(
    opts: &EtcdOptions,
) -> anyhow::Result<(Option<LeaderInfo>, Option<Vec<u8>>)> {
    let prefix = opts.prefix.trim_end_matches('/');
    let mut last = None;
    for endpoint in &opts.endpoints {
        let got = async {
            let mut client = connect(opts, std::slice::from_ref(endpoint)).await?;
            let leader = client.get(format!("{prefix}/leader"), None).await?;
            let state = client.get(format!("{prefix}/state"), None).await?;
            let leader = match leader.kvs().first() {
                Some(kv) => Some(serde_json::from_slice::<LeaderInfo>(kv.value())?),
                None => None,
            };
            anyhow::Ok((leader, state.kvs().first().map(|kv| kv.value().to_vec())))
        };
        match got.await {
            Ok(found) => return Ok(found),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("--etcd names no endpoint")))
}

enum Campaign {
    /// Won: the client, the lease, when it was granted.
    Won(Client, i64, Instant),
    /// Another leads: what it published.
    Lost(Client, String),
}
