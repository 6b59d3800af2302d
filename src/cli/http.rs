//! The CLI's HTTP client (hyper, HTTP/1.1) for the verbs that read a `topo` server's
//! JSON API: `topo top` and `topo tap`.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;

/// A client of one server, with its own single-threaded runtime: the CLI is not async.
pub(crate) struct Client {
    addr: String,
    rt: tokio::runtime::Runtime,
    /// Sent as `Authorization: Bearer TOKEN` when set.
    token: Option<String>,
}

impl Client {
    /// A client of the server at `addr` (`HOST:PORT`).
    pub(crate) fn new(addr: &str) -> Result<Client, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        Ok(Client {
            addr: addr.to_string(),
            rt,
            token: None,
        })
    }

    /// The same client, sending `token` with every request (a coordinator's UI token).
    pub(crate) fn with_token(self, token: String) -> Client {
        Client {
            token: Some(token),
            ..self
        }
    }

    /// `GET path`, its JSON body decoded.
    pub(crate) fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, String> {
        let body = self.rt.block_on(async {
            let mut res = self.send(path).await?;
            let mut body = Vec::new();
            while let Some(frame) = res.frame().await {
                let frame = frame.map_err(|e| self.broken(path, &e))?;
                if let Some(data) = frame.data_ref() {
                    body.extend_from_slice(data);
                }
            }
            Ok::<_, String>(body)
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            format!(
                "http://{}{path} answered what is not the expected JSON: {e}",
                self.addr
            )
        })
    }

    /// `GET path`, calling `line` with every line of the body as it arrives, until the
    /// body ends or `line` returns false.
    pub(crate) fn stream_lines(
        &self,
        path: &str,
        mut line: impl FnMut(&str) -> bool,
    ) -> Result<(), String> {
        self.rt.block_on(async {
            let mut res = self.send(path).await?;
            let mut pending: Vec<u8> = Vec::new();
            while let Some(frame) = res.frame().await {
                let frame = frame.map_err(|e| self.broken(path, &e))?;
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                    let text = String::from_utf8_lossy(&pending[..end]).into_owned();
                    pending.drain(..=end);
                    if !line(&text) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    /// Sends `GET path`; a status other than 200 is an error that quotes the body.
    async fn send(&self, path: &str) -> Result<hyper::Response<hyper::body::Incoming>, String> {
        let url = format!("http://{}{path}", self.addr);
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.addr))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("cannot reach {}: {e}", self.addr))?;
        tokio::spawn(conn);
        let mut req = Request::get(path).header(hyper::header::HOST, &self.addr);
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("{url}: {e}"))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if res.status() != StatusCode::OK {
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
                .unwrap_or_default();
            // The API's errors are `{"message": "…"}`: the message says it all.
            let message = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("message")?.as_str().map(str::to_string));
            return Err(message.unwrap_or_else(|| format!("{url}: HTTP {status}: {body}")));
        }
        Ok(res)
    }

    fn broken(&self, path: &str, e: &hyper::Error) -> String {
        format!("http://{}{path}: the answer broke off: {e}", self.addr)
    }
}
