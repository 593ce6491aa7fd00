//! The listeners: a Unix socket (mode, group, stale-file takeover, removal on exit) and a
//! loopback TCP address, both serving the same router with hyper, bounded in connections and
//! header read time, and drained gracefully on shutdown. Sockets passed by systemd (socket
//! activation, `sd_listen_fds(3)`) are adopted instead of bound, and left to systemd.

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
    /// `error` is shown in the message and deliberately not a `source`: printed with its
    /// chain, the OS error would appear twice (issue #10).
    #[error("socket {path}: {error}")]
    Socket { path: PathBuf, error: io::Error },
    #[error(
        "socket {path}: the directory {dir} does not exist; create it, owned by the user tokend \
         runs as (`install -d -m 0755 -o <user> {dir}`), or run tokend from \
         systemd/tokend.service, whose RuntimeDirectory=tokend creates /run/tokend"
    )]
    SocketDirectoryMissing { path: PathBuf, dir: PathBuf },
    #[error("socket_group {group:?}: no such group")]
    NoSuchGroup { group: String },
    #[error("http {addr}: {error}")]
    Tcp {
        addr: std::net::SocketAddr,
        error: io::Error,
    },
    #[error("socket activation: passed socket #{index} (name {name:?}): {error}")]
    Activation {
        index: usize,
        name: String,
        error: io::Error,
    },
    #[error("socket activation: passed TCP socket (name {name:?}): {error}")]
    ActivatedAddress { name: String, error: io::Error },
    #[error(
        "socket activation: passed TCP socket {addr} is not a loopback address; tokend is a \
         local sidecar. Set `allow_non_loopback = true` if you really mean it"
    )]
    ActivatedNonLoopback { addr: std::net::SocketAddr },
}

/// The name `tokend dev` gives the TCP listener it binds before start (to learn the port of
/// `127.0.0.1:0` for its issuer's redirect URI); not systemd's.
pub const DEV_NAME: &str = "tokend-dev";

/// A bound listener, ready to accept.
pub enum Bound {
    Unix {
        listener: UnixListener,
        /// Where the socket is, for logs (`@name` for an abstract one).
        path: PathBuf,
        /// Device and inode of our socket file, so only our own file is removed at exit;
        /// `None` for a socket passed by systemd, which owns the file.
        identity: Option<(u64, u64)>,
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

/// Adopts the sockets systemd passed (if any) and binds what the configuration asks for and
/// systemd did not pass.
pub fn bind_all(cfg: &ListenConfig) -> Result<Vec<Bound>, ListenError> {
    bind_with(cfg, Activated::from_env()?)
}

/// Listening sockets passed by the service manager (socket activation).
#[derive(Debug, Default)]
pub struct Activated {
    /// Unix stream sockets, with the name systemd gave each (`FileDescriptorName=`).
    pub unix: Vec<(std::os::unix::net::UnixListener, String)>,
    /// TCP sockets, with their names.
    pub tcp: Vec<(std::net::TcpListener, String)>,
}

impl Activated {
    /// Takes the sockets passed to this process: only when `LISTEN_PID` is our pid and
    /// `LISTEN_FDS` is set. `LISTEN_FDNAMES` (colon-separated) tells which is which: `unix`
    /// and `http` (the names in `systemd/tokend.socket`); other names go by socket type.
    /// `LISTEN_PID` and `LISTEN_FDS` are unset afterwards (by `listenfd`), so nothing we start
    /// would take them for its own; a leftover `LISTEN_FDNAMES` means nothing without them
    /// (unsetting it ourselves would need `unsafe`, forbidden here).
    pub fn from_env() -> Result<Self, ListenError> {
        let for_us = std::env::var("LISTEN_PID")
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            == Some(std::process::id());
        // listenfd also accepts an absent LISTEN_PID (its catflap extension); systemd's rule
        // is stricter, so check first.
        if !for_us || std::env::var_os("LISTEN_FDS").is_none() {
            return Ok(Self::default());
        }
        let names = std::env::var("LISTEN_FDNAMES").ok();
        Self::take(listenfd::ListenFd::from_env(), names.as_deref())
    }

    fn take(mut fds: listenfd::ListenFd, names: Option<&str>) -> Result<Self, ListenError> {
        let mut names: Vec<&str> = names.map(|n| n.split(':').collect()).unwrap_or_default();
        if !names.is_empty() && names.len() != fds.len() {
            tracing::warn!(
                fds = fds.len(),
                names = names.len(),
                "LISTEN_FDNAMES does not match LISTEN_FDS; telling the sockets apart by type"
            );
            names.clear();
        }
        let mut out = Self::default();
        for index in 0..fds.len() {
            let name = names.get(index).copied().unwrap_or("");
            let err = |error| ListenError::Activation {
                index,
                name: name.to_string(),
                error,
            };
            match name {
                "unix" => {
                    let l = fds.take_unix_listener(index).map_err(err)?;
                    out.unix.extend(l.map(|l| (l, name.to_string())));
                }
                "http" => {
                    let l = fds.take_tcp_listener(index).map_err(err)?;
                    out.tcp.extend(l.map(|l| (l, name.to_string())));
                }
                // Unnamed (or named after the unit): by type. A wrong type leaves the fd in
                // place, so the second try still sees it.
                _ => {
                    if let Ok(Some(l)) = fds.take_tcp_listener(index) {
                        out.tcp.push((l, name.to_string()));
                    } else if let Some(l) = fds.take_unix_listener(index).map_err(|_| {
                        err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "neither a Unix stream socket nor a TCP socket",
                        ))
                    })? {
                        out.unix.push((l, name.to_string()));
                    }
                }
            }
        }
        Ok(out)
    }

    fn is_empty(&self) -> bool {
        self.unix.is_empty() && self.tcp.is_empty()
    }
}

/// Adopts `activated` and binds what `cfg` asks for that is not among it: a passed Unix socket
/// stands in for `listen.socket`, a passed TCP socket for `listen.http`. Passed sockets are
/// served even when the configuration does not name that kind of listener (the socket unit
/// asked for them); they are never chmod/chown'ed or removed.
pub fn bind_with(cfg: &ListenConfig, activated: Activated) -> Result<Vec<Bound>, ListenError> {
    let mut bound = Vec::new();
    match bind_into(cfg, activated, &mut bound) {
        Ok(()) => Ok(bound),
        Err(e) => {
            // A failed start leaves no socket file of ours behind (issue #10).
            release(&bound);
            Err(e)
        }
    }
}

/// Removes the socket files we bound among `bound` (not those systemd passed): for a start
/// that fails after binding.
pub fn release(bound: &[Bound]) {
    for b in bound {
        if let Bound::Unix {
            path,
            identity: Some(identity),
            ..
        } = b
        {
            remove_own_socket(path, *identity);
        }
    }
}

fn bind_into(
    cfg: &ListenConfig,
    activated: Activated,
    bound: &mut Vec<Bound>,
) -> Result<(), ListenError> {
    let have_unix = !activated.unix.is_empty();
    let have_tcp = !activated.tcp.is_empty();
    let by_dev = activated.unix.is_empty() && activated.tcp.iter().all(|(_, n)| n == DEV_NAME);
    if !activated.is_empty() && !by_dev {
        tracing::info!(
            unix = activated.unix.len(),
            tcp = activated.tcp.len(),
            "socket activation: adopting the sockets systemd passed"
        );
    }
    for (std_listener, name) in activated.unix {
        let path = unix_listener_name(&std_listener);
        let err = |error| ListenError::Socket {
            path: path.clone(),
            error,
        };
        std_listener.set_nonblocking(true).map_err(err)?;
        let listener = UnixListener::from_std(std_listener).map_err(err)?;
        tracing::info!(listener = %format!("unix:{}", path.display()), fd_name = %name, "adopted socket");
        if let Some(want) = &cfg.socket
            && want != &path
        {
            tracing::warn!(
                configured = %want.display(),
                adopted = %path.display(),
                "listen.socket differs from the socket systemd passed; serving the passed one"
            );
        }
        bound.push(Bound::Unix {
            listener,
            path,
            identity: None,
        });
    }
    if !have_unix && let Some(path) = &cfg.socket {
        bound.push(bind_unix(path, cfg.socket_mode, cfg.socket_group.as_ref())?);
    }
    for (std_listener, name) in activated.tcp {
        let addr = std_listener
            .local_addr()
            .map_err(|error| ListenError::ActivatedAddress {
                name: name.clone(),
                error,
            })?;
        if !addr.ip().is_loopback() && !cfg.allow_non_loopback {
            return Err(ListenError::ActivatedNonLoopback { addr });
        }
        let err = |error| ListenError::Tcp { addr, error };
        std_listener.set_nonblocking(true).map_err(err)?;
        let listener = TcpListener::from_std(std_listener).map_err(err)?;
        tracing::info!(listener = %format!("http://{addr}"), fd_name = %name, "adopted socket");
        if let Some(want) = cfg.http
            && (want.ip() != addr.ip() || (want.port() != 0 && want.port() != addr.port()))
        {
            tracing::warn!(
                configured = %want,
                adopted = %addr,
                "listen.http differs from the socket systemd passed; serving the passed one"
            );
        }
        bound.push(Bound::Tcp(listener));
    }
    if !have_tcp && let Some(addr) = cfg.http {
        let std_listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|error| ListenError::Tcp { addr, error })?;
        let listener = TcpListener::from_std(std_listener)
            .map_err(|error| ListenError::Tcp { addr, error })?;
        bound.push(Bound::Tcp(listener));
    }
    Ok(())
}

/// A passed Unix socket's address, for logs: its path, `@name` if abstract, `?` if unnamed.
fn unix_listener_name(l: &std::os::unix::net::UnixListener) -> PathBuf {
    let Ok(addr) = l.local_addr() else {
        return PathBuf::from("?");
    };
    if let Some(p) = addr.as_pathname() {
        return p.to_path_buf();
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::linux::net::SocketAddrExt;
        if let Some(name) = addr.as_abstract_name() {
            return PathBuf::from(format!("@{}", String::from_utf8_lossy(name)));
        }
    }
    PathBuf::from("?")
}

/// Binds a Unix socket at `path` (taking over a stale file), sets its mode and group.
pub fn bind_unix(path: &Path, mode: u32, group: Option<&GroupSpec>) -> Result<Bound, ListenError> {
    let sock_err = |error| ListenError::Socket {
        path: path.to_path_buf(),
        error,
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
    let listener = UnixListener::bind(path).map_err(|e| match path.parent() {
        Some(dir) if e.kind() == io::ErrorKind::NotFound && !dir.is_dir() => {
            ListenError::SocketDirectoryMissing {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            }
        }
        _ => sock_err(e),
    })?;
    // From here on the file is ours: a failure removes it again.
    let created = |e: ListenError| {
        let _ = std::fs::remove_file(path);
        e
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(sock_err)
        .map_err(created)?;
    if let Some(group) = group {
        let gid = match group {
            GroupSpec::Id(gid) => *gid,
            GroupSpec::Name(name) => nix::unistd::Group::from_name(name)
                .ok()
                .flatten()
                .map(|g| g.gid.as_raw())
                .ok_or_else(|| ListenError::NoSuchGroup {
                    group: name.clone(),
                })
                .map_err(created)?,
        };
        std::os::unix::fs::chown(path, None, Some(gid))
            .map_err(sock_err)
            .map_err(created)?;
    }
    let meta = std::fs::metadata(path).map_err(sock_err).map_err(created)?;
    Ok(Bound::Unix {
        listener,
        path: path.to_path_buf(),
        identity: Some((meta.dev(), meta.ino())),
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::Config;

    fn listen_config(dir: &Path, http: &str) -> ListenConfig {
        let text = format!(
            "[listen]\nsocket = {:?}\nsocket_mode = \"0666\"\nhttp = {http:?}\n\n\
             [provider]\nissuer = \"https://auth.example.com/application/o/x/\"\nclient_id = \"x\"\n",
            dir.join("configured.sock")
        );
        Config::from_toml(&text, Path::new("test.toml"), dir, std::iter::empty())
            .expect("valid config")
            .listen
    }

    async fn get_over_unix(path: &Path) -> String {
        let mut s = tokio::net::UnixStream::connect(path)
            .await
            .expect("connect");
        s.write_all(b"GET /ping HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn adopted_sockets_are_served_untouched_and_left_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let passed = dir.path().join("passed.sock");
        let unix = std::os::unix::net::UnixListener::bind(&passed).expect("bind");
        std::fs::set_permissions(&passed, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let tcp_addr = tcp.local_addr().expect("addr");
        let activated = Activated {
            unix: vec![(unix, "unix".into())],
            tcp: vec![(tcp, "http".into())],
        };
        let cfg = listen_config(dir.path(), "127.0.0.1:1");
        let bound = bind_with(&cfg, activated).expect("adopt");
        assert_eq!(
            bound.len(),
            2,
            "passed sockets stand in for the configured ones"
        );
        assert!(!dir.path().join("configured.sock").exists());
        assert_eq!(bound[1].describe(), format!("http://{tcp_addr}"));
        let mode = std::fs::metadata(&passed)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(
            mode, 0o600,
            "an adopted socket's mode is systemd's business"
        );

        let router = Router::new().route("/ping", axum::routing::get(|| async { "pong" }));
        let (stop_tx, stop_rx) = watch::channel(false);
        let server = tokio::spawn(serve(bound, router, ServeOptions::from(&cfg), stop_rx));
        let answer = get_over_unix(&passed).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("pong"), "{answer}");
        stop_tx.send(true).expect("stop");
        server.await.expect("server");
        assert!(passed.exists(), "an adopted socket file is left to systemd");
    }

    #[tokio::test]
    async fn what_systemd_did_not_pass_is_bound_as_configured() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let activated = Activated {
            unix: vec![],
            tcp: vec![(tcp, "http".into())],
        };
        let cfg = listen_config(dir.path(), "127.0.0.1:1");
        let bound = bind_with(&cfg, activated).expect("bind");
        assert_eq!(bound.len(), 2);
        let configured = dir.path().join("configured.sock");
        let mode = std::fs::metadata(&configured)
            .expect("bound")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o666, "our own socket gets the configured mode");
        assert!(matches!(
            &bound[0],
            Bound::Unix {
                identity: Some(_),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_passed_non_loopback_tcp_socket_needs_allow_non_loopback() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tcp = std::net::TcpListener::bind("0.0.0.0:0").expect("bind tcp");
        let activated = Activated {
            unix: vec![],
            tcp: vec![(tcp, "http".into())],
        };
        let cfg = listen_config(dir.path(), "127.0.0.1:1");
        assert!(matches!(
            bind_with(&cfg, activated),
            Err(ListenError::ActivatedNonLoopback { .. })
        ));
    }
}
