//! The HTTP/1.1 client of bench/'s tools: one keep-alive connection to tokend (TCP or its Unix
//! socket) or to the test provider, reopened when the server closed it.

use anyhow::{Context, Result};
use bytes::Bytes;
use http::HeaderMap;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// An answer: status, headers, body.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The value of cookie `name` among the `Set-Cookie` headers.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.headers.get_all("set-cookie").iter().find_map(|v| {
            v.to_str()
                .ok()?
                .split(';')
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_string)
        })
    }

    /// The first `Set-Cookie` whose name contains `part`, as `name=value`.
    pub fn cookie_pair(&self, part: &str) -> Option<String> {
        self.headers.get_all("set-cookie").iter().find_map(|v| {
            let pair = v.to_str().ok()?.split(';').next()?;
            let (name, _) = pair.split_once('=')?;
            name.contains(part).then(|| pair.to_string())
        })
    }

    pub fn location(&self) -> Option<&str> {
        self.headers.get("location").and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One keep-alive HTTP/1.1 connection.
pub struct Conn {
    addr: String,
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    /// `addr` is `host:port`, or `unix:/path` for tokend's Unix socket.
    pub async fn open(addr: &str) -> Result<Self> {
        let sender = if let Some(path) = addr.strip_prefix("unix:") {
            let stream = tokio::net::UnixStream::connect(path)
                .await
                .with_context(|| format!("connect {addr}"))?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        } else {
            let stream = tokio::net::TcpStream::connect(addr)
                .await
                .with_context(|| format!("connect {addr}"))?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            sender
        };
        Ok(Self {
            addr: addr.to_string(),
            sender,
        })
    }

    /// `method path` with a bearer token and a JSON body, both optional: status and body.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Result<(u16, Bytes)> {
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("authorization", a))
            .into_iter()
            .collect();
        let body = body.map(|v| ("application/json", Bytes::from(v.to_string())));
        let a = self.request(method, path, &headers, body).await?;
        Ok((a.status, a.body))
    }

    /// `method path` with `headers` and an optional body of a content type.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, Bytes)>,
    ) -> Result<Answer> {
        if self.sender.ready().await.is_err() {
            *self = Self::open(&self.addr).await?;
        }
        let host = if self.addr.starts_with("unix:") {
            "localhost"
        } else {
            &self.addr
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let body = match body {
            Some((content_type, bytes)) => {
                req = req.header("content-type", content_type);
                Full::new(bytes)
            }
            None => Full::new(Bytes::new()),
        };
        let res = self.sender.send_request(req.body(body)?).await?;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}
