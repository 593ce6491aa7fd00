//! The listeners: a Unix socket (mode, group, stale-file takeover, removal on exit) and a
//! loopback TCP address, both serving the same router with hyper, bounded in connections and
//! header read time, and drained gracefully on shutdown. Sockets passed by systemd (socket
//! activation, `sd_listen_fds(3)`) are adopted instead of bound, and left to systemd.
//! Binding is here; adopting systemd's sockets in `activation`, serving in `serve`.

mod activation;
mod serve;
#[cfg(test)]
mod tests;

pub use activation::{ADMIN_NAME, Activated};
pub use serve::{Peer, ServeOptions, Via, serve};

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{TcpListener, UnixListener};

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
    if !activated.admin.is_empty() {
        // The crate root takes these out first; here they would be closed unserved.
        tracing::warn!(
            count = activated.admin.len(),
            "socket activation: an admin socket was passed where only the apps' are served; \
             not serving it"
        );
    }
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
        let adopted = adopt_unix(std_listener)?;
        tracing::info!(listener = %adopted.describe(), fd_name = %name, "adopted socket");
        if let Some(want) = &cfg.socket
            && want != &path
        {
            tracing::warn!(
                configured = %want.display(),
                adopted = %path.display(),
                "listen.socket differs from the socket systemd passed; serving the passed one"
            );
        }
        bound.push(adopted);
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

/// A Unix socket passed by systemd, ready to serve: never chmod/chown'ed, never removed.
pub fn adopt_unix(std_listener: std::os::unix::net::UnixListener) -> Result<Bound, ListenError> {
    let path = unix_listener_name(&std_listener);
    let err = |error| ListenError::Socket {
        path: path.clone(),
        error,
    };
    std_listener.set_nonblocking(true).map_err(err)?;
    let listener = UnixListener::from_std(std_listener).map_err(err)?;
    Ok(Bound::Unix {
        listener,
        path,
        identity: None,
    })
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

/// Removes our socket file at `path` unless it was replaced meanwhile (`identity` is its
/// device and inode when we bound it).
pub(super) fn remove_own_socket(path: &Path, identity: (u64, u64)) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if (meta.dev(), meta.ino()) == identity => {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove socket file");
            }
        }
        _ => {} // gone, or replaced by someone else's: leave it
    }
}
