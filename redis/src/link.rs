//! The connection a Redis component keeps: a checked URL, reconnection with backoff and
//! one log line per outage.

use std::time::{Duration, Instant};

use serde::Deserialize;

/// The default server.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// Longest wait between two reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// First wait after a connection broke.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Redis URL, checked when the config is read (`redis://host:port/db`,
/// `redis+unix:///path`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct RedisUrl(String);

impl TryFrom<String> for RedisUrl {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        match redis::Client::open(s.as_str()) {
            Ok(_) => Ok(RedisUrl(s)),
            Err(e) => Err(format!("`{s}` is not a Redis URL: {e}")),
        }
    }
}

impl Default for RedisUrl {
    fn default() -> Self {
        RedisUrl(DEFAULT_URL.to_string())
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a component could not start on Redis.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The URL does not parse.
    #[error("{what} has a bad Redis URL `{url}`: {source}")]
    Url {
        /// The component, e.g. "`redis_stream` spout `events`".
        what: String,
        /// The URL.
        url: String,
        /// The client's reason.
        source: redis::RedisError,
    },
    /// The server did not answer.
    #[error("{what} cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The component.
        what: String,
        /// The URL.
        url: String,
        /// The client's reason.
        source: redis::RedisError,
    },
}

/// Whether `e` means the connection is gone or the server is not ready yet (restarting,
/// loading its AOF): the call is retried on a new connection.
pub fn is_transient(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.is_unrecoverable_error()
        || matches!(e.code(), Some("LOADING" | "MASTERDOWN" | "TRYAGAIN"))
}

/// One component's connection to Redis: reconnects with exponential backoff (50 ms up
/// to 2 s) after it breaks, and logs one warning when an outage starts and one line when
/// it ends.
pub struct Link {
    what: String,
    url: String,
    client: redis::Client,
    con: Option<redis::Connection>,
    read_timeout: Duration,
    down_since: Option<Instant>,
    retry_at: Instant,
    backoff: Duration,
    outages: u64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("what", &self.what)
            .field("url", &self.url)
            .field("connected", &self.con.is_some())
            .field("outages", &self.outages)
            .finish()
    }
}

impl Link {
    /// Connects to `url` now, for component `what` (named in errors and logs). A read
    /// waits at most `read_timeout` for its reply before the connection counts as broken.
    pub fn open(what: &str, url: &RedisUrl, read_timeout: Duration) -> Result<Link, LinkError> {
        let url = url.0.clone();
        let client = redis::Client::open(url.as_str()).map_err(|source| LinkError::Url {
            what: what.to_string(),
            url: url.clone(),
            source,
        })?;
        let mut link = Link {
            what: what.to_string(),
            url,
            client,
            con: None,
            read_timeout,
            down_since: None,
            retry_at: Instant::now(),
            backoff: FIRST_BACKOFF,
            outages: 0,
        };
        let con = link.connect().map_err(|source| LinkError::Connect {
            what: link.what.clone(),
            url: link.url.clone(),
            source,
        })?;
        link.con = Some(con);
        Ok(link)
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(self.read_timeout))?;
        con.set_write_timeout(Some(self.read_timeout))?;
        Ok(con)
    }

    /// The connection, reconnecting when the last one broke and the backoff has passed;
    /// `None` while Redis is unreachable. `fresh` is set when this call reconnected (the
    /// caller may need to recover what the old connection left undone).
    pub fn get(&mut self, fresh: &mut bool) -> Option<&mut redis::Connection> {
        if self.con.is_none() {
            if Instant::now() < self.retry_at {
                return None;
            }
            match self.connect() {
                Ok(con) => {
                    if let Some(since) = self.down_since.take() {
                        tracing::info!(
                            component = %self.what,
                            url = %self.url,
                            down_ms = since.elapsed().as_millis() as u64,
                            "Reconnected to Redis."
                        );
                    }
                    self.backoff = FIRST_BACKOFF;
                    self.con = Some(con);
                    *fresh = true;
                }
                Err(_) => {
                    self.retry_at = Instant::now() + self.backoff;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                    return None;
                }
            }
        }
        self.con.as_mut()
    }

    /// A call on the connection failed with `e`: a transient error drops the connection
    /// (retried later) and the caller idles (`Poll::Idle`); any other is the component's
    /// error, named.
    pub fn failed(&mut self, e: &redis::RedisError) -> topo_engine::Result<topo_engine::Poll> {
        if is_transient(e) {
            self.broke(e);
            Ok(topo_engine::Poll::Idle)
        } else {
            Err(format!("{}: {e}", self.what).into())
        }
    }

    /// The connection broke (or the server is not ready): drop it and retry later. Logs
    /// once per outage.
    pub fn broke(&mut self, e: &redis::RedisError) {
        self.con = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        if self.down_since.is_none() {
            self.down_since = Some(Instant::now());
            self.outages += 1;
            tracing::warn!(
                component = %self.what,
                url = %self.url,
                outages = self.outages,
                "Lost the connection to Redis ({e}); reconnecting with backoff."
            );
        }
    }

    /// When the next reconnection attempt is due (now when connected).
    pub fn retry_at(&self) -> Instant {
        if self.con.is_some() {
            Instant::now()
        } else {
            self.retry_at
        }
    }

    /// The component this link belongs to, as named in errors.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Outages seen so far.
    pub fn outages(&self) -> u64 {
        self.outages
    }
}
