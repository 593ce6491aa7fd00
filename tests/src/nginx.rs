//! A real nginx (Debian package) for the forward-auth tests (issue #13), run in the foreground
//! (`nginx -p <dir> -c <conf> -g 'daemon off;'`) on a free loopback port with
//! `docs/forward-auth/nginx.conf` — that file exactly, only its `@@…@@` placeholders replaced —
//! pid, logs and temporary files inside a temp dir; killed when dropped. [`EchoApp`] is the
//! protected app: it answers every request with the headers it received, as JSON.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::process::{Child, Command};

use crate::{free_port, is_root, skip, workspace_root};

/// The committed, documented nginx configuration the tests run.
pub fn config_template() -> PathBuf {
    workspace_root().join("docs/forward-auth/nginx.conf")
}

/// The path of `nginx` (Debian installs it in /usr/sbin, often not on a user's PATH).
fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// A running nginx of the test's own.
pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Nginx {
    /// Starts nginx with the committed config, `@@TOKEND_SOCKET@@` → `socket`, `@@APP_PORT@@`
    /// → `app_port`, `@@LISTEN_PORT@@` → a free port; waits until it accepts connections.
    /// `None` (after a loud skip) when nginx is absent and the tests do not run as root (as
    /// root, `tests/run` installs it, so its absence is a failure).
    pub async fn start(test: &str, socket: &Path, app_port: u16) -> Result<Option<Self>> {
        let Some(bin) = binary() else {
            anyhow::ensure!(
                !is_root(),
                "nginx is not installed (tests/run installs it as root)"
            );
            skip(test, "nginx is not installed (apt-get install nginx)");
            return Ok(None);
        };
        let template = std::fs::read_to_string(config_template())?;
        let port = free_port()?;
        let conf = template
            .replace("@@TOKEND_SOCKET@@", &socket.display().to_string())
            .replace("@@APP_PORT@@", &app_port.to_string())
            .replace("@@LISTEN_PORT@@", &port.to_string());
        anyhow::ensure!(!conf.contains("@@"), "a placeholder was left: {conf}");
        let dir = tempfile::tempdir()?;
        // nginx's workers run as www-data when nginx is root: they read nothing here but may
        // buffer into the temporary directories nginx makes (and chowns) inside.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf)?;
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting nginx")?;
        let mut nginx = Self { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = nginx.child.try_wait()? {
                bail!("nginx exited with {status}:\n{}", nginx.error_log());
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Some(nginx));
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on {port}:\n{}", nginx.error_log());
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// nginx's error log (its alerts when it cannot start, auth_request's errors).
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

/// The protected app: answers every request `200` with
/// `{"method", "path", "headers": [[name, value], …]}` (values as received, lossily UTF-8),
/// and counts the requests that reached it.
pub struct EchoApp {
    pub port: u16,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl EchoApp {
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let port = listener.local_addr()?.port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let headers: Vec<(String, String)> = req
                                .headers()
                                .iter()
                                .map(|(n, v)| {
                                    (
                                        n.as_str().to_string(),
                                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                                    )
                                })
                                .collect();
                            let body = json!({
                                "method": req.method().as_str(),
                                "path": req.uri().path(),
                                "headers": headers,
                            });
                            async move {
                                hyper::Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(Bytes::from(body.to_string())))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { port, hits, task })
    }

    /// Requests that reached the app.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for EchoApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}
