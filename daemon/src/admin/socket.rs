//! Where the admin API listens: the socket systemd passed under the name `admin`
//! (`systemd/tokend-admin.socket`, whose file PID 1 creates with its group and mode outside the
//! sandbox), else the one tokend binds at `admin.socket` — with the start checks that keep
//! `peer_check = "socket_permissions"` from opening it to every local user, and the start log.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::{Config, PeerCheck};
use crate::listen::{self, Bound, ListenError};

/// Why the admin socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum AdminSocketError {
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error(
        "admin socket passed by systemd: it has no file (an abstract or unnamed socket), so no \
         file permissions fence it, and [admin] peer_check = \"socket_permissions\" would let \
         anyone who finds it in; give tokend-admin.socket a path \
         (ListenStream=/run/tokend/tokend-admin.sock) or use peer_check = \"credentials\""
    )]
    NoFile,
    #[error(
        "admin socket {path} passed by systemd has mode {mode:04o}: every local user may \
         connect, and with [admin] peer_check = \"socket_permissions\" every local user would \
         administer tokend; set SocketMode=0660 and SocketGroup=tokend-admin in \
         tokend-admin.socket"
    )]
    OpenToAll { path: PathBuf, mode: u32 },
    /// `error` is in the message, not a `source`, as in `ListenError` (issue #10).
    #[error("admin socket {path} passed by systemd: cannot read its permissions: {error}")]
    Stat {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// The admin API's listeners: those systemd passed (`passed`, the sockets named `admin`), else
/// the one `config` asks tokend to bind; `None` when the admin API is off. Logs which, how it is
/// fenced, and why it is off.
pub fn open(
    config: &Config,
    passed: Vec<std::os::unix::net::UnixListener>,
) -> Result<Option<Vec<Bound>>, AdminSocketError> {
    let admin = &config.admin;
    let configured = config.admin_socket();
    if !passed.is_empty() && !admin.enabled {
        tracing::warn!(
            "admin API off (admin.enabled = false), yet systemd passed an admin socket \
             (tokend-admin.socket): not serving it; connections to it wait unanswered — disable \
             the socket unit"
        );
        return Ok(None);
    }
    if admin.peer_check == PeerCheck::Credentials
        && (!passed.is_empty() || configured.is_some())
        && in_user_namespace()
    {
        tracing::warn!(
            "tokend runs in a user namespace (systemd's PrivateUsers=): it sees every admin \
             peer but root and its own user as uid 65534 (nobody) and refuses them under \
             [admin] peer_check = \"credentials\"; to let a group of operators in, use \
             tokend-admin.socket with peer_check = \"socket_permissions\" (README \"Admin API\")"
        );
    }
    if !passed.is_empty() {
        let mut bound = Vec::new();
        for listener in passed {
            bound.push(adopt(config, listener)?);
        }
        return Ok(Some(bound));
    }
    let Some(path) = configured else {
        tracing::info!(
            "admin API off: {}",
            if admin.enabled {
                "there is no listen.socket to put it beside; set admin.socket to a path to serve \
                 it (or pass one: tokend-admin.socket)"
            } else {
                "admin.enabled = false"
            }
        );
        return Ok(None);
    };
    let bound = listen::bind_unix(&path, admin.socket_mode, admin.socket_group.as_ref())?;
    tracing::info!(
        socket = %path.display(),
        mode = %format!("{:04o}", admin.socket_mode),
        peer_check = %admin.peer_check.name(),
        "admin API on its own socket"
    );
    Ok(Some(vec![bound]))
}

/// One passed admin socket, checked and logged; never chmod/chown'ed, never removed.
fn adopt(
    config: &Config,
    listener: std::os::unix::net::UnixListener,
) -> Result<Bound, AdminSocketError> {
    let check = config.admin.peer_check;
    let path = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf));
    let Some(path) = path else {
        if check == PeerCheck::SocketPermissions {
            return Err(AdminSocketError::NoFile);
        }
        return Ok(listen::adopt_unix(listener)?);
    };
    let meta = std::fs::metadata(&path).map_err(|error| AdminSocketError::Stat {
        path: path.clone(),
        error,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    // connect(2) needs write permission on the socket file.
    if check == PeerCheck::SocketPermissions && mode & 0o002 != 0 {
        return Err(AdminSocketError::OpenToAll { path, mode });
    }
    if let Some(want) = config.admin_socket()
        && want != path
    {
        tracing::warn!(
            configured = %want.display(),
            adopted = %path.display(),
            "the admin socket's path in the configuration differs from the socket systemd \
             passed; serving the passed one (tokentop finds the configured one)"
        );
    }
    tracing::info!(
        socket = %path.display(),
        fd_name = %listen::ADMIN_NAME,
        mode = %format!("{mode:04o}"),
        peer_check = %check.name(),
        "admin API on the socket systemd passed"
    );
    Ok(listen::adopt_unix(listener)?)
}

/// Whether this process runs in a user namespace that does not map every uid: then peers
/// outside it appear as `nobody` (`/proc/self/uid_map` is `0 0 4294967295` in the initial one).
fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(map) => map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}
