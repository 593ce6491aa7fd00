//! Where the admin socket is: `--socket`, else `[admin] socket` (or `tokend-admin.sock` beside
//! `[listen] socket`) of `--config`, else `tokend dev`'s (`$XDG_RUNTIME_DIR/tokend-dev/`, or
//! `/tmp/tokend-dev-<uid>/`). Reads only those keys of the config, ignoring the rest, so that
//! tokentop needs nothing from the daemon's crate.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// File name of the admin socket beside the apps' socket (tokend's `ADMIN_SOCKET_NAME`).
pub const ADMIN_SOCKET_NAME: &str = "tokend-admin.sock";

/// Why no admin socket could be worked out.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} turns the admin API off ([admin] enabled = false)")]
    Disabled { path: PathBuf },
    #[error(
        "{path} has neither [admin] socket nor [listen] socket, so tokend serves no admin socket"
    )]
    NoSocket { path: PathBuf },
}

/// The few keys of tokend's configuration that locate the admin socket.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    listen: ListenPart,
    #[serde(default)]
    admin: AdminPart,
}

#[derive(Debug, Default, Deserialize)]
struct ListenPart {
    /// The apps' socket; the admin socket defaults to a file beside it.
    socket: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
struct AdminPart {
    /// `false` means tokend serves no admin API.
    #[serde(default = "yes")]
    enabled: bool,
    /// An explicit admin socket path.
    socket: Option<PathBuf>,
}

impl Default for AdminPart {
    fn default() -> Self {
        Self {
            enabled: true,
            socket: None,
        }
    }
}

fn yes() -> bool {
    true
}

/// The admin socket named by tokend's configuration text (`path` is for messages).
pub fn from_config_text(path: &Path, text: &str) -> Result<PathBuf, SocketError> {
    let cfg: ConfigFile = toml::from_str(text).map_err(|e| SocketError::Parse {
        path: path.to_path_buf(),
        message: e.message().to_string(),
    })?;
    if !cfg.admin.enabled {
        return Err(SocketError::Disabled {
            path: path.to_path_buf(),
        });
    }
    cfg.admin
        .socket
        .or_else(|| {
            cfg.listen
                .socket
                .map(|s| s.with_file_name(ADMIN_SOCKET_NAME))
        })
        .ok_or_else(|| SocketError::NoSocket {
            path: path.to_path_buf(),
        })
}

/// The admin socket named by the configuration file at `path`.
pub fn from_config_file(path: &Path) -> Result<PathBuf, SocketError> {
    let text = std::fs::read_to_string(path).map_err(|source| SocketError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    from_config_text(path, &text)
}

/// `tokend dev`'s admin socket: `$XDG_RUNTIME_DIR/tokend-dev/tokend-admin.sock`, or
/// `/tmp/tokend-dev-<uid>/tokend-admin.sock` without `XDG_RUNTIME_DIR` (as `tokend dev` picks
/// its directory); `uid` is the caller's.
pub fn dev_default(xdg_runtime_dir: Option<&std::ffi::OsStr>, uid: u32) -> PathBuf {
    let dir = match xdg_runtime_dir.filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("tokend-dev"),
        None => PathBuf::from(format!("/tmp/tokend-dev-{uid}")),
    };
    dir.join(ADMIN_SOCKET_NAME)
}

/// The caller's uid, as `id -u` prints it (the owner of `/proc/self`; no libc needed).
pub fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_admin_socket_comes_from_admin_else_beside_listen() {
        let p = Path::new("t.toml");
        let text = "[listen]\nsocket = \"/run/tokend/tokend.sock\"\n[provider]\nissuer = \"x\"\n";
        assert_eq!(
            from_config_text(p, text).unwrap(),
            PathBuf::from("/run/tokend/tokend-admin.sock")
        );
        let text = "[listen]\nsocket = \"/run/a.sock\"\n[admin]\nsocket = \"/run/ops.sock\"\n";
        assert_eq!(
            from_config_text(p, text).unwrap(),
            PathBuf::from("/run/ops.sock")
        );
        let text = "[listen]\nhttp = \"127.0.0.1:9180\"\n";
        assert!(matches!(
            from_config_text(p, text),
            Err(SocketError::NoSocket { .. })
        ));
        let text = "[listen]\nsocket = \"/run/a.sock\"\n[admin]\nenabled = false\n";
        assert!(matches!(
            from_config_text(p, text),
            Err(SocketError::Disabled { .. })
        ));
        assert!(matches!(
            from_config_text(p, "[listen"),
            Err(SocketError::Parse { .. })
        ));
    }

    #[test]
    fn the_dev_default_matches_tokend_dev() {
        assert_eq!(
            dev_default(Some("/run/user/1000".as_ref()), 1000),
            PathBuf::from("/run/user/1000/tokend-dev/tokend-admin.sock")
        );
        assert_eq!(
            dev_default(Some("".as_ref()), 1000),
            PathBuf::from("/tmp/tokend-dev-1000/tokend-admin.sock")
        );
        assert_eq!(
            dev_default(None, 0),
            PathBuf::from("/tmp/tokend-dev-0/tokend-admin.sock")
        );
    }
}
