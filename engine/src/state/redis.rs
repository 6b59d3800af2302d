//! Checkpoints in Redis (`state_backend = "redis"`): a server every host reaches, so a
//! worker that moves finds its state.
//!
//! Under the prefix `topo:state:TOPOLOGY:`, checkpoint `N` keeps each part in the string
//! `chk:N:part:NAME`, the names of its parts in the set `chk:N:parts`, and, once
//! committed, its manifest in `chk:N:manifest`; the set `committed` lists the committed
//! ids. A commit writes the manifest and adds the id in one `MULTI`/`EXEC`, so a reader
//! sees both or neither.

use std::sync::Mutex;

use super::backend::Backend;
use super::StateError;

/// How long opening a connection may take: a server that does not answer fails the
/// checkpoint rather than stalling its caller.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Checkpoints of one topology in a Redis server.
pub struct RedisBackend {
    client: redis::Client,
    prefix: String,
    /// One connection, opened on first use and again after an error.
    con: Mutex<Option<redis::Connection>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn err(e: redis::RedisError) -> StateError {
    StateError::Backend(format!("redis: {e}"))
}

impl RedisBackend {
    /// The checkpoints of `topology` at `url` (`redis://HOST:PORT/DB`); connects on first
    /// use.
    pub fn open(url: &str, topology: &str) -> Result<Self, StateError> {
        let client = redis::Client::open(url).map_err(err)?;
        Ok(RedisBackend {
            client,
            prefix: format!("topo:state:{topology}:"),
            con: Mutex::new(None),
        })
    }

    fn key(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// Runs `f` on the connection (opened if needed; dropped after an error, so the next
    /// call reconnects).
    fn with<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> Result<T, StateError> {
        let mut guard = self.con.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some(
                self.client
                    .get_connection_with_timeout(CONNECT_TIMEOUT)
                    .map_err(err)?,
            );
        }
        let Some(con) = guard.as_mut() else {
            return Err(StateError::Backend("redis: not connected".into()));
        };
        let r = f(con);
        if r.is_err() {
            *guard = None;
        }
        r.map_err(err)
    }
}

impl Backend for RedisBackend {
    fn put_part(&self, id: u64, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let part = self.key(&format!("chk:{id}:part:{name}"));
        let parts = self.key(&format!("chk:{id}:parts"));
        self.with(|con| {
            redis::pipe()
                .atomic()
                .set(&part, bytes)
                .ignore()
                .sadd(&parts, name)
                .ignore()
                .query(con)
        })
    }

    fn get_part(&self, id: u64, name: &str) -> Result<Vec<u8>, StateError> {
        let key = self.key(&format!("chk:{id}:part:{name}"));
        let got: Option<Vec<u8>> = self.with(|con| redis::cmd("GET").arg(&key).query(con))?;
        got.ok_or_else(|| StateError::Backend(format!("redis: no key `{key}`")))
    }

    fn put_manifest(&self, id: u64, bytes: &[u8]) -> Result<(), StateError> {
        let manifest = self.key(&format!("chk:{id}:manifest"));
        let committed = self.key("committed");
        self.with(|con| {
            redis::pipe()
                .atomic()
                .set(&manifest, bytes)
                .ignore()
                .sadd(&committed, id)
                .ignore()
                .query(con)
        })
    }

    fn committed(&self) -> Result<Vec<u64>, StateError> {
        let key = self.key("committed");
        self.with(|con| redis::cmd("SMEMBERS").arg(&key).query(con))
    }

    fn get_manifest(&self, id: u64) -> Result<Vec<u8>, StateError> {
        let key = self.key(&format!("chk:{id}:manifest"));
        let got: Option<Vec<u8>> = self.with(|con| redis::cmd("GET").arg(&key).query(con))?;
        got.ok_or_else(|| StateError::Backend(format!("redis: no key `{key}`")))
    }

    fn remove(&self, id: u64) -> Result<(), StateError> {
        let parts = self.key(&format!("chk:{id}:parts"));
        let names: Vec<String> = self.with(|con| redis::cmd("SMEMBERS").arg(&parts).query(con))?;
        let mut keys: Vec<String> = names
            .iter()
            .map(|n| self.key(&format!("chk:{id}:part:{n}")))
            .collect();
        keys.push(parts);
        keys.push(self.key(&format!("chk:{id}:manifest")));
        let committed = self.key("committed");
        self.with(|con| {
            redis::pipe()
                .atomic()
                .srem(&committed, id)
                .ignore()
                .del(&keys)
                .ignore()
                .query(con)
        })
    }
}
