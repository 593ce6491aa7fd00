//! The listeners: a Unix socket (mode, group, stale-file takeover, removal on exit) and a
//! loopback TCP address, both serving the same router with hyper, bounded in connections and
//! header read time, and drained gracefully on shutdown.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
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

use crate::config::{GroupSpec, ListenConfig};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("socket {path}: another process is serving on it")]
    SocketInUse { path: PathBuf },
    #[error("socket {path}: exists and is not a socket; not removing it")]
    NotASocket { path: PathBuf },
    #[error("socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("socket_group {group:?}: no such group")]
    NoSuchGroup { group: String },
    #[error("http {addr}: {source}")]
    Tcp {
        addr: std::net::SocketAddr,
        source: io::Error,
    },
}

/// A bound listener, ready to accept.
pub enum Bound {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// Device and inode of our socket file, so only our own file is removed at exit.
        identity: (u64, u64),
    },
    Tcp(TcpListener),
}

impl Bound {
    pub fn describe(&self) -> String {
        match self {
            Bound::Unix { path, .. } => format!("unix:{}", path.display()),
            Bound::Tcp(l) => l
                .local_addr()
                .map_or_else(|_| "tcp:?".into(), |a| format!("http://{a}")),
        }
    }
}

/// Binds what the configuration asks for.
pub fn bind_all(cfg: &ListenConfig) -> Result<Vec<Bound>, ListenError> {
    let mut bound = Vec::new();
    if let Some(path) = &cfg.socket {
        bound.push(bind_unix(path, cfg.socket_mode, cfg.socket_group.as_ref())?);
    }
    if let Some(addr) = cfg.http {
        let std_listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| ListenError::Tcp { addr, source })?;
        let listener = TcpListener::from_std(std_listener)
            .map_err(|source| ListenError::Tcp { addr, source })?;
        bound.push(Bound::Tcp(listener));
    }
    Ok(bound)
}

fn bind_unix(path: &Path, mode: u32, group: Option<&GroupSpec>) -> Result<Bound, ListenError> {
    let sock_err = |source| ListenError::Socket {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ListenError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(ListenError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
            // Nobody answers: the file of a dead process. Take it over.
            Err(_) => {
                tracing::info!(path = %path.display(), "removing stale socket file");
                std::fs::remove_file(path).map_err(sock_err)?;
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(sock_err(e)),
    }
    let listener = UnixListener::bind(path).map_err(sock_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(sock_err)?;
    if let Some(group) = group {
        let gid = match group {
            GroupSpec::Id(gid) => *gid,
            GroupSpec::Name(name) => nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| ListenError::NoSuchGroup {
                    group: name.clone(),
                })?,
        };
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(sock_err)?;
    }
    let meta = std::fs::metadata(path).map_err(sock_err)?;
    Ok(Bound::Unix {
        listener,
        path: path.to_path_buf(),
        identity: (meta.dev(), meta.ino()),
    })
}

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
/// lets in-flight requests finish within the grace period. Removes our socket files.
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
                socket_files.push((path, identity));
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

fn remove_own_socket(path: &Path, identity: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if (meta.dev(), meta.ino()) == identity => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove socket file");
            }
        }
        _ => {} // gone, or replaced by someone else's: leave it
    }
}

/// Accepting, over both kinds of listener.
trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Marked on every request, for handlers that care which listener it came through.
    const VIA: Via;
    fn accept(&self) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

struct UnixAccept(UnixListener);
struct TcpAccept(TcpListener);

impl Accept for UnixAccept {
    type Stream = tokio::net::UnixStream;
    const VIA: Via = Via::Unix;
    async fn accept(&self) -> io::Result<Self::Stream> {
        self.0.accept().await.map(|(s, _)| s)
    }
}

impl Accept for TcpAccept {
    type Stream = tokio::net::TcpStream;
    const VIA: Via = Via::Tcp;
    async fn accept(&self) -> io::Result<Self::Stream> {
        let (s, _) = self.0.accept().await?;
        // Small request/response exchanges: don't wait for Nagle.
        let _ = s.set_nodelay(true);
        Ok(s)
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
            // Wait for a free connection slot before accepting: excess clients queue in the
            // kernel's backlog instead of being served half-way.
            let permit = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = self.shutdown.changed() => return,
            };
            let stream = tokio::select! {
                s = listener.accept() => s,
                _ = self.shutdown.changed() => return,
            };
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let service = TowerToHyperService::new(self.router.clone().map_request(
                |mut req: http::Request<Incoming>| {
                    req.extensions_mut().insert(A::VIA);
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

/// Which listener a request came through; handlers that must answer only locally-authorized
/// callers (the admin API) check it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Unix,
    Tcp,
}
