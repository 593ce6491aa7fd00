//! Sockets passed by the service manager (socket activation, `sd_listen_fds(3)`): which is
//! the apps' Unix socket, which the TCP one, and which the admin API's (named `admin`).

use super::ListenError;
use std::io;

/// Listening sockets passed by the service manager (socket activation).
#[derive(Debug, Default)]
pub struct Activated {
    /// Unix stream sockets, with the name systemd gave each (`FileDescriptorName=`).
    pub unix: Vec<(std::os::unix::net::UnixListener, String)>,
    /// TCP sockets, with their names.
    pub tcp: Vec<(std::net::TcpListener, String)>,
    /// Unix stream sockets named `admin` (`systemd/tokend-admin.socket`): the admin API's,
    /// never the apps'; taken out by the crate root before the apps' listeners are bound.
    pub admin: Vec<std::os::unix::net::UnixListener>,
}

/// The `FileDescriptorName=` of the admin API's socket.
pub const ADMIN_NAME: &str = "admin";

impl Activated {
    /// Takes the sockets passed to this process: only when `LISTEN_PID` is our pid and
    /// `LISTEN_FDS` is set. `LISTEN_FDNAMES` (colon-separated) tells which is which: `unix`
    /// and `http` (the names in `systemd/tokend.socket`), `admin` (`tokend-admin.socket`: a
    /// Unix socket, or the start fails); other names go by socket type.
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
                // Never by type: an admin socket served as the apps' would answer 404, but an
                // apps' socket taken for the admin API would be the wrong fence.
                ADMIN_NAME => {
                    let l = fds.take_unix_listener(index).map_err(err)?;
                    out.admin.extend(l);
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

    /// Whether no apps' socket was passed (the admin ones are not counted).
    pub(super) fn is_empty(&self) -> bool {
        self.unix.is_empty() && self.tcp.is_empty()
    }
}
