//! `tokend dev`: tokend on embedded defaults with a built-in development issuer, so a fresh
//! clone sees tokend do its whole job without Authentik. [`run`] starts the issuer's own HTTP
//! server on loopback (`server`, `login`), builds the configuration around it (`config`), and
//! runs the ordinary daemon ([`crate::run_with`]) with the `/dev/*` routes (`routes`) added.
//! tokend reaches the issuer through its normal discovery and JWKS code. Nothing here exists
//! unless the `dev` subcommand runs.
//!
//! Files: `issuer` (state and token minting), `keys` (the ephemeral RS256 key), `server`
//! (discovery, JWKS, token, revocation, end-session), `login` (authorize and the login page),
//! `routes` (`/dev/token`, `/dev/logout`, the dev app), `config`, `banner`.

mod banner;
mod config;
mod issuer;
mod keys;
mod login;
mod routes;
mod server;

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use issuer::{CLIENT_ID, DEV_PREFIX};
pub use routes::{DEFAULT_TTL, MAX_TTL};

use crate::listen::{Activated, DEV_NAME};
use crate::{Hooks, run_with};

/// The default `--http`.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9180";

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error(
        "{what} {addr} is not a loopback address: tokend dev listens on loopback only \
         (127.0.0.1 or ::1); it is not for production"
    )]
    NotLoopback {
        what: &'static str,
        addr: SocketAddr,
    },
    #[error("dev directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "dev directory {path} is not a directory owned by this user; remove it or set \
         XDG_RUNTIME_DIR"
    )]
    DirOwner { path: PathBuf },
    #[error("http {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("dev issuer: cannot listen on loopback: {0}")]
    IssuerBind(std::io::Error),
    #[error("invalid configuration: {message}")]
    Config { message: String },
    #[error("cannot make the dev signing key")]
    Key,
    #[error("cannot sign a dev token")]
    Sign,
    #[error("the operating system's random source failed")]
    Random,
    #[error("request to tokend failed: {0}")]
    Http(String),
    #[error("no live dev session has this sid")]
    UnknownSession,
    #[error("tokend refused the logout token (HTTP {0})")]
    LogoutRefused(u16),
    #[error(transparent)]
    Run(#[from] crate::Error),
}

/// `tokend dev`'s command line.
#[derive(Debug, Clone, Default)]
pub struct DevOptions {
    /// A configuration file to use with the dev issuer in place of its `[provider]`.
    pub config: Option<PathBuf>,
    /// TCP address (default: the file's `listen.http`, else [`DEFAULT_HTTP`]).
    pub http: Option<SocketAddr>,
    /// Unix socket (default: the file's `listen.socket`, else `tokend.sock` in [`dev_dir`]).
    pub socket: Option<PathBuf>,
}

/// `$XDG_RUNTIME_DIR/tokend-dev`, or `/tmp/tokend-dev-<uid>` without it.
pub fn dev_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("tokend-dev"),
        None => PathBuf::from(format!("/tmp/tokend-dev-{}", nix::unistd::getuid())),
    }
}

/// Creates `dir` (mode 0700) or checks that it is ours, and makes it 0700.
fn prepare_dir(dir: &Path) -> Result<(), DevError> {
    let err = |source| DevError::Dir {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(err(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(err)?;
    if !meta.is_dir() || meta.uid() != nix::unistd::getuid().as_raw() {
        return Err(DevError::DirOwner {
            path: dir.to_path_buf(),
        });
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    Ok(())
}

fn check_loopback(what: &'static str, addr: SocketAddr) -> Result<(), DevError> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(DevError::NotLoopback { what, addr })
    }
}

/// Runs tokend with the dev issuer until `shutdown` resolves.
pub async fn run(
    opts: DevOptions,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), DevError> {
    let (file_http, file_socket) = match &opts.config {
        Some(f) => config::file_listen(f)?,
        None => (None, None),
    };
    if let Some(addr) = file_http {
        check_loopback("listen.http of the configuration file", addr)?;
    }
    let http = match opts.http {
        Some(addr) => {
            check_loopback("--http", addr)?;
            addr
        }
        None => match file_http {
            Some(addr) => addr,
            None => DEFAULT_HTTP.parse().map_err(|_| DevError::Config {
                message: "bad default address".into(),
            })?,
        },
    };
    let dir = dev_dir();
    prepare_dir(&dir)?;
    // The last run's JWKS cache holds another ephemeral key of another issuer port: useless,
    // and tokend would warn about it at every start.
    let _ = std::fs::remove_file(dir.join("jwks.json"));
    let socket = opts
        .socket
        .or(file_socket)
        .unwrap_or_else(|| dir.join("tokend.sock"));

    // tokend's TCP listener is bound first: `127.0.0.1:0` gets its port, which the dev
    // client's redirect URI and the back-channel logout need.
    let tcp = std::net::TcpListener::bind(http)
        .map_err(|source| DevError::Bind { addr: http, source })?;
    let http = tcp
        .local_addr()
        .map_err(|source| DevError::Bind { addr: http, source })?;

    let issuer_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DevError::IssuerBind)?;
    let issuer_addr = issuer_listener.local_addr().map_err(DevError::IssuerBind)?;
    let issuer = Arc::new(issuer::DevIssuer::new(
        format!("http://{issuer_addr}"),
        format!("http://{http}"),
    )?);
    let (stop_issuer, mut issuer_stopped) = tokio::sync::watch::channel(false);
    let issuer_server = tokio::spawn(
        axum::serve(issuer_listener, server::router(issuer.clone()))
            .with_graceful_shutdown(async move {
                let _ = issuer_stopped.changed().await;
            })
            .into_future(),
    );

    let listen = config::DevListen {
        http,
        socket: socket.clone(),
        dir,
    };
    let cfg = config::build(opts.config.as_deref(), &issuer, &listen)?;
    let loader: crate::ConfigLoader = {
        let issuer = issuer.clone();
        let listen = listen.clone();
        Arc::new(move |path: &Path| {
            config::build(Some(path), &issuer, &listen).map_err(|e| {
                crate::config::ConfigError::Invalid {
                    key: "tokend dev",
                    message: e.to_string(),
                }
            })
        })
    };
    let admin_socket = cfg.admin_socket();
    let text = banner::banner(
        http,
        &socket,
        admin_socket.as_deref(),
        &issuer.issuer,
        opts.config.as_deref(),
    );
    let hooks = Hooks {
        routes: routes::routes(issuer.clone()),
        loader,
        activated: Activated {
            tcp: vec![(tcp, DEV_NAME.to_string())],
            ..Activated::default()
        },
        on_listening: Some(Box::new(move || {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        })),
    };
    tracing::warn!(issuer = %issuer.issuer, "tokend dev: development issuer, not for production");
    let result = run_with(cfg, shutdown, hooks).await;
    let _ = stop_issuer.send(true);
    let _ = issuer_server.await;
    result.map_err(DevError::from)
}
