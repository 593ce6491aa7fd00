//! Serving the router on the bound listeners: connection limit, header read timeout, the
//! peer's credentials on every request, and the graceful drain on shutdown.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use super::{Bound, remove_own_socket};
use crate::config::ListenConfig;

/// Connection limits and timeouts applied to every connection.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
}

impl From<&ListenConfig> for ServeOptions {
    fn from(cfg: &ListenConfig) -> Self {
        Self {
            max_connections: cfg.max_connections,
            header_read_timeout: cfg.header_read_timeout,
            shutdown_grace: cfg.shutdown_grace,
        }
    }
}

/// Serves `router` on every listener until `shutdown` turns true, then stops accepting and
/// lets in-flight requests finish within the grace period. Removes our socket files (not
/// those systemd passed).
pub async fn serve(
    bound: Vec<Bound>,
    router: Router,
    opts: ServeOptions,
    shutdown: watch::Receiver<bool>,
) {
    let graceful = Arc::new(GracefulShutdown::new());
    let permits = Arc::new(Semaphore::new(opts.max_connections));
    let mut accept_loops = tokio::task::JoinSet::new();
    let mut socket_files = Vec::new();
    for b in bound {
        tracing::info!(listener = %b.describe(), "listening");
        let ctx = AcceptContext {
            router: router.clone(),
            permits: permits.clone(),
            graceful: graceful.clone(),
            header_read_timeout: opts.header_read_timeout,
            shutdown: shutdown.clone(),
        };
        match b {
            Bound::Unix {
                listener,
                path,
                identity,
            } => {
                if let Some(identity) = identity {
                    socket_files.push((path, identity));
                }
                accept_loops.spawn(ctx.run(UnixAccept(listener)));
            }
            Bound::Tcp(listener) => {
                accept_loops.spawn(ctx.run(TcpAccept(listener)));
            }
        }
    }
    while accept_loops.join_next().await.is_some() {}
    // Every accept loop is done, so this is the last handle.
    let graceful = Arc::try_unwrap(graceful).unwrap_or_else(|_| GracefulShutdown::new());
    // Not accepting any more: the socket files can go now, so a restart can bind at once.
    for (path, identity) in socket_files {
        remove_own_socket(&path, identity);
    }
    let open = graceful.count();
    if open > 0 {
        tracing::info!(connections = open, grace = ?opts.shutdown_grace, "draining connections");
    }
    if tokio::time::timeout(opts.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; cutting the remaining connections");
    }
}

/// Accepting, over both kinds of listener.
trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Marked on every request, for handlers that care which listener it came through.
    const VIA: Via;
    /// The stream and, for a Unix socket, the peer's credentials (SO_PEERCRED).
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Stream, Option<Peer>)>> + Send;
}

struct UnixAccept(UnixListener);
struct TcpAccept(TcpListener);

impl Accept for UnixAccept {
    type Stream = tokio::net::UnixStream;
    const VIA: Via = Via::Unix;
    async fn accept(&self) -> io::Result<(Self::Stream, Option<Peer>)> {
        let (s, _) = self.0.accept().await?;
        // Read once per connection; the kernel recorded them at connect().
        let peer = s.peer_cred().ok().map(|c| Peer {
            uid: c.uid(),
            gid: c.gid(),
            pid: c.pid(),
        });
        Ok((s, peer))
    }
}

impl Accept for TcpAccept {
    type Stream = tokio::net::TcpStream;
    const VIA: Via = Via::Tcp;
    async fn accept(&self) -> io::Result<(Self::Stream, Option<Peer>)> {
        let (s, _) = self.0.accept().await?;
        // Small request/response exchanges: don't wait for Nagle.
        let _ = s.set_nodelay(true);
        Ok((s, None))
    }
}

struct AcceptContext {
    router: Router,
    permits: Arc<Semaphore>,
    graceful: Arc<GracefulShutdown>,
    header_read_timeout: Duration,
    shutdown: watch::Receiver<bool>,
}

impl AcceptContext {
    async fn run<A: Accept>(mut self, listener: A) {
        loop {
            if *self.shutdown.borrow() {
                return;
            }
            // Accept, then wait for a free connection slot before serving. (Taking the slot
            // first would let an idle listener hold one while it waits for a client, so with
            // two listeners the other could serve only `max_connections - 1`.) Excess clients
            // queue in the kernel's backlog, one per listener here, connected but not served.
            let stream = tokio::select! {
                s = listener.accept() => s,
                _ = self.shutdown.changed() => return,
            };
            let (stream, peer) = match stream {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // A free slot wins over a shutdown that began meanwhile: a connection accepted
            // is served (graceful shutdown then lets its request finish), unless it would
            // have to wait for a slot.
            let permit = tokio::select! {
                biased;
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = self.shutdown.changed() => return,
            };
            let service = TowerToHyperService::new(self.router.clone().map_request(
                move |mut req: http::Request<Incoming>| {
                    req.extensions_mut().insert(A::VIA);
                    if let Some(peer) = peer {
                        req.extensions_mut().insert(peer);
                    }
                    req.map(axum::body::Body::new)
                },
            ));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(self.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            let conn = self.graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                drop(permit);
            });
        }
    }
}

/// Who is at the other end of a Unix-socket connection, as the kernel says (SO_PEERCRED at
/// connect time); on every request of that connection. The admin API decides by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

/// Which listener a request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Unix,
    Tcp,
}
