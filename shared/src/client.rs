//! A small async client of the admin API over its Unix socket (feature `client`): one HTTP/1.1
//! connection per call (hyper over `tokio::net::UnixStream`), typed methods for every endpoint,
//! and the live stream as an iterator-like [`EventStream`].

use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::admin::{
    AuditEvent, AuditList, AuthentikEventList, AuthentikEventQuery, CodeList, JwksRefreshOutcome,
    Overview, ReloadStatus, RevokeOutcome, SessionPage, SessionQuery,
};
use crate::api::{ErrorBody, Reason, RevokeRequest};

/// What went wrong talking to the admin socket.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    /// tokend answered an error (e.g. 403 `forbidden` for a uid that is not allowed).
    #[error("tokend answered {status} {reason}: {message}")]
    Api {
        status: u16,
        reason: Reason,
        message: String,
    },
    #[error("unexpected answer ({status}): {error}")]
    Decode {
        status: u16,
        error: serde_json::Error,
    },
    #[error("query: {0}")]
    Query(String),
}

/// The admin API at one socket path. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AdminClient {
    socket: PathBuf,
}

impl AdminClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ClientError::Connect {
                path: self.socket.clone(),
                source,
            })?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "tokend-admin");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(sender.send_request(req).await?)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if status >= 400 {
            return Err(api_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|error| ClientError::Decode { status, error })
    }

    /// `GET /v1/admin/overview`.
    pub async fn overview(&self) -> Result<Overview, ClientError> {
        self.call("GET", "/v1/admin/overview", None).await
    }

    /// `GET /v1/admin/sessions?…`.
    pub async fn sessions(&self, query: &SessionQuery) -> Result<SessionPage, ClientError> {
        let q =
            serde_urlencoded::to_string(query).map_err(|e| ClientError::Query(e.to_string()))?;
        let path = if q.is_empty() {
            "/v1/admin/sessions".to_string()
        } else {
            format!("/v1/admin/sessions?{q}")
        };
        self.call("GET", &path, None).await
    }

    /// `GET /v1/admin/codes`.
    pub async fn codes(&self) -> Result<CodeList, ClientError> {
        self.call("GET", "/v1/admin/codes", None).await
    }

    /// `GET /v1/admin/events?after=…`: the ring's events after sequence number `after`.
    pub async fn events(&self, after: u64) -> Result<AuditList, ClientError> {
        self.call("GET", &format!("/v1/admin/events?after={after}"), None)
            .await
    }

    /// `GET /v1/admin/authentik/events?…`: Authentik's events as the poller holds them,
    /// newest first (404 `not_found` when `[events]` is not configured).
    pub async fn authentik_events(
        &self,
        query: &AuthentikEventQuery,
    ) -> Result<AuthentikEventList, ClientError> {
        let q =
            serde_urlencoded::to_string(query).map_err(|e| ClientError::Query(e.to_string()))?;
        let path = if q.is_empty() {
            "/v1/admin/authentik/events".to_string()
        } else {
            format!("/v1/admin/authentik/events?{q}")
        };
        self.call("GET", &path, None).await
    }

    /// `POST /v1/admin/sessions/revoke {"sid"}`.
    pub async fn revoke_session(&self, sid: &str) -> Result<RevokeOutcome, ClientError> {
        self.revoke(RevokeRequest {
            sid: Some(sid.into()),
            sub: None,
        })
        .await
    }

    /// `POST /v1/admin/sessions/revoke {"sub"}`: every session of the user.
    pub async fn revoke_user(&self, sub: &str) -> Result<RevokeOutcome, ClientError> {
        self.revoke(RevokeRequest {
            sid: None,
            sub: Some(sub.into()),
        })
        .await
    }

    async fn revoke(&self, req: RevokeRequest) -> Result<RevokeOutcome, ClientError> {
        self.call("POST", "/v1/admin/sessions/revoke", Some(json(&req)))
            .await
    }

    /// `POST /v1/admin/jwks/refresh`.
    pub async fn refresh_jwks(&self) -> Result<JwksRefreshOutcome, ClientError> {
        self.call("POST", "/v1/admin/jwks/refresh", Some(b"{}".to_vec()))
            .await
    }

    /// `POST /v1/admin/reload`: the outcome (also when the reload failed: `ok: false`).
    pub async fn reload(&self) -> Result<ReloadStatus, ClientError> {
        self.call("POST", "/v1/admin/reload", Some(b"{}".to_vec()))
            .await
    }

    /// `GET /v1/admin/events/stream`: audit events as they happen (newline-delimited JSON).
    pub async fn stream(&self) -> Result<EventStream, ClientError> {
        let resp = self.send("GET", "/v1/admin/events/stream", None).await?;
        let status = resp.status().as_u16();
        if status >= 400 {
            let bytes = resp.into_body().collect().await?.to_bytes();
            return Err(api_error(status, &bytes));
        }
        Ok(EventStream {
            body: resp.into_body(),
            buf: BytesMut::new(),
        })
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

fn api_error(status: u16, body: &[u8]) -> ClientError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => ClientError::Api {
            status,
            reason: e.reason,
            message: e.message,
        },
        Err(error) => ClientError::Decode { status, error },
    }
}

/// The live stream: one [`AuditEvent`] per line. A [`crate::AuditKind::Dropped`] event means
/// this reader fell behind and the daemon ended the stream.
pub struct EventStream {
    body: Incoming,
    buf: BytesMut,
}

impl EventStream {
    /// The next event; `Ok(None)` when the daemon ended the stream.
    pub async fn next(&mut self) -> Result<Option<AuditEvent>, ClientError> {
        loop {
            if let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                let line = &line[..nl];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(line)
                    .map(Some)
                    .map_err(|error| ClientError::Decode { status: 200, error });
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(mut data) = frame?.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buf.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}
