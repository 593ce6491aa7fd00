//! A running test tokend: its configuration (rendered to TOML), start and stop, reload,
//! and requests over its socket, TCP port and admin socket.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::json;
use tokio::process::Child;

use crate::request::answer;
use crate::{Answer, Metrics, Output, Provider, dev_command, tokend_command, unix_request};

/// Settings of a test tokend; `to_toml` renders a full config file.
#[derive(Clone)]
pub struct TokendConfig {
    pub issuer: String,
    pub internal_url: Option<String>,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub algorithms: Option<Vec<String>>,
    pub refresh_interval: String,
    pub min_refetch_interval: String,
    pub max_stale: String,
    pub cache_file: Option<PathBuf>,
    pub socket: bool,
    /// Socket path; default `<tempdir>/tokend.sock`.
    pub socket_path: Option<PathBuf>,
    pub http: bool,
    /// Fixed TCP port (default: any free one, read from the log).
    pub http_port: Option<u16>,
    /// Extra lines appended to the `[verify]` section.
    pub verify_extra: String,
    /// Extra lines appended to the `[listen]` section.
    pub listen_extra: String,
    /// Whole extra sections appended at the end.
    pub tail: String,
    /// `[log] format`; default text.
    pub log_format: Option<String>,
    /// Extra environment variables for tokend (e.g. `NOTIFY_SOCKET`, `WATCHDOG_USEC`).
    pub env: Vec<(String, String)>,
    /// A program (and its arguments) that starts tokend: tokend's command line is appended,
    /// e.g. `systemd-socket-activate -l … --fdname=…`. Empty: tokend is started directly.
    pub launcher: Vec<String>,
}

impl TokendConfig {
    pub fn for_provider(p: &Provider) -> Self {
        Self::with_client(&p.issuer, &p.client_id, Some(p.client_secret.clone()))
    }

    /// A tokend that needs no provider: HS256 with `client_secret` as the key (ready at once),
    /// the issuer on a closed port (discovery fails quietly in the background).
    pub fn hs256(client_secret: &str) -> Self {
        Self {
            algorithms: Some(vec!["HS256".into()]),
            ..Self::with_client(
                "http://127.0.0.1:9/application/o/tokend-test/",
                "tokend-test",
                Some(client_secret.into()),
            )
        }
    }

    /// Defaults for a client of `issuer`: both listeners, hourly refresh, debug logs.
    fn with_client(issuer: &str, client_id: &str, client_secret: Option<String>) -> Self {
        Self {
            issuer: issuer.into(),
            internal_url: None,
            client_id: client_id.into(),
            client_secret,
            algorithms: None,
            refresh_interval: "1h".into(),
            min_refetch_interval: "10s".into(),
            max_stale: "24h".into(),
            cache_file: None,
            socket: true,
            socket_path: None,
            http: true,
            http_port: None,
            verify_extra: String::new(),
            listen_extra: String::new(),
            tail: String::new(),
            log_format: None,
            env: Vec::new(),
            launcher: Vec::new(),
        }
    }

    fn socket_file(&self, dir: &Path) -> PathBuf {
        self.socket_path
            .clone()
            .unwrap_or_else(|| dir.join("tokend.sock"))
    }

    pub fn to_toml(&self, dir: &Path) -> String {
        let mut t = String::from("[listen]\n");
        if self.socket {
            t += &format!("socket = {:?}\n", self.socket_file(dir));
        }
        if self.http {
            t += &format!("http = \"127.0.0.1:{}\"\n", self.http_port.unwrap_or(0));
        }
        t += &self.listen_extra;
        t += &format!(
            "\n[provider]\nissuer = {:?}\nclient_id = {:?}\n",
            self.issuer, self.client_id
        );
        if let Some(u) = &self.internal_url {
            t += &format!("internal_url = {u:?}\n");
        }
        if let Some(s) = &self.client_secret {
            std::fs::write(dir.join("client_secret"), format!("{s}\n")).expect("write secret");
            t += "client_secret_file = \"client_secret\"\n";
        }
        if let Some(a) = &self.algorithms {
            t += &format!("algorithms = {a:?}\n");
        }
        t += &format!(
            "\n[jwks]\nrefresh_interval = {:?}\nmin_refetch_interval = {:?}\nmax_stale = {:?}\n",
            self.refresh_interval, self.min_refetch_interval, self.max_stale
        );
        if let Some(c) = &self.cache_file {
            t += &format!("cache_file = {c:?}\n");
        }
        t += &format!("\n[verify]\n{}\n", self.verify_extra);
        t += "\n[log]\nlevel = \"debug\"\n";
        if let Some(f) = &self.log_format {
            t += &format!("format = {f:?}\n");
        }
        t += &self.tail;
        t
    }
}

/// A running tokend.
pub struct Tokend {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub socket: Option<PathBuf>,
    /// The admin socket: `tokend-admin.sock` beside the app socket (the default); a test that
    /// configures another path sets it here.
    pub admin_socket: Option<PathBuf>,
    pub http_addr: Option<String>,
    pub output: Output,
    http: reqwest::Client,
    /// Whether the config asks for a TCP listener (its address is read from the log).
    want_http: bool,
}

impl Tokend {
    /// Starts tokend with `cfg` in a fresh temporary directory and waits until it listens.
    pub async fn start(cfg: &TokendConfig) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        Self::start_in(cfg, dir).await
    }

    pub async fn start_in(cfg: &TokendConfig, dir: tempfile::TempDir) -> Result<Self> {
        let mut t = Self::spawn_in(cfg, dir)?;
        t.wait_listening().await?;
        Ok(t)
    }

    /// Starts tokend with `cfg` in `dir` without waiting for it to listen (a launcher such as
    /// `systemd-socket-activate` may only start it on the first connection); see
    /// [`Tokend::wait_listening`]. Call it inside a Tokio runtime (the output is read by tasks).
    pub fn spawn_in(cfg: &TokendConfig, dir: tempfile::TempDir) -> Result<Self> {
        let config_path = dir.path().join("tokend.toml");
        std::fs::write(&config_path, cfg.to_toml(dir.path()))?;
        let socket = cfg.socket.then(|| cfg.socket_file(dir.path()));
        let env: Vec<(&str, &str)> = cfg
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let launcher: Vec<&str> = cfg.launcher.iter().map(String::as_str).collect();
        Self::spawn_at(&config_path, dir, socket, cfg.http, &env, &launcher)
    }

    /// Starts tokend on an existing config file (which may be a symlink).
    pub async fn start_at(
        config_path: &Path,
        dir: tempfile::TempDir,
        socket: Option<PathBuf>,
        want_http: bool,
    ) -> Result<Self> {
        let mut t = Self::spawn_at(config_path, dir, socket, want_http, &[], &[])?;
        t.wait_listening().await?;
        Ok(t)
    }

    /// Starts tokend on `config_path` with extra `env`, through `launcher` when one is given.
    fn spawn_at(
        config_path: &Path,
        dir: tempfile::TempDir,
        socket: Option<PathBuf>,
        want_http: bool,
        env: &[(&str, &str)],
        launcher: &[&str],
    ) -> Result<Self> {
        let mut child = tokend_command(config_path, &[], env, launcher)
            .spawn()
            .context("starting tokend")?;
        let output = Output::default();
        if let Some(s) = child.stdout.take() {
            output.capture(s, "tokend");
        }
        if let Some(s) = child.stderr.take() {
            output.capture(s, "tokend");
        }
        Ok(Self {
            child: Some(child),
            admin_socket: socket
                .as_ref()
                .map(|s| s.with_file_name("tokend-admin.sock")),
            socket,
            dir,
            http_addr: None,
            output,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            want_http,
        })
    }

    /// Starts `tokend dev <args>` with `XDG_RUNTIME_DIR` in a fresh temporary directory (so
    /// the default socket is `<dir>/tokend-dev/tokend.sock`) and waits until it listens; the
    /// TCP address is read from the log, as for [`Tokend::start`]. `--http 127.0.0.1:0` is
    /// added unless `args` has `--http`.
    pub async fn start_dev(args: &[&str]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let mut t = Self::spawn_dev(args, dir)?;
        t.wait_listening().await?;
        Ok(t)
    }

    /// Starts `tokend dev <args>` in `dir` without waiting (see [`Tokend::start_dev`]).
    pub fn spawn_dev(args: &[&str], dir: tempfile::TempDir) -> Result<Self> {
        let mut child = dev_command(args, dir.path())
            .spawn()
            .context("starting tokend dev")?;
        let output = Output::default();
        if let Some(s) = child.stdout.take() {
            output.capture(s, "tokend");
        }
        if let Some(s) = child.stderr.take() {
            output.capture(s, "tokend");
        }
        let socket = args
            .iter()
            .position(|a| *a == "--socket")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.path().join("tokend-dev/tokend.sock"));
        Ok(Self {
            child: Some(child),
            admin_socket: Some(socket.with_file_name("tokend-admin.sock")),
            socket: Some(socket),
            dir,
            http_addr: None,
            output,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            want_http: true,
        })
    }

    /// Waits for the process to exit on its own (at most 15 s); returns its status.
    pub async fn wait_exit(&mut self) -> Result<ExitStatus> {
        self.terminate_wait().await
    }

    /// The config file tokend was started with (in its temporary directory).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("tokend.toml")
    }

    /// Replaces the config file the way editors and config managers do: write a temporary
    /// file beside it, then rename it over the original.
    pub fn replace_config(&self, text: &str) -> Result<()> {
        let tmp = self.dir.path().join(".tokend.toml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.config_path())?;
        Ok(())
    }

    /// `GET /metrics` over TCP: the text and its samples by `name{labels}`.
    pub async fn metrics(&self) -> Result<Metrics> {
        let a = self.get("/metrics", &[]).await?;
        if a.status != 200 {
            bail!("/metrics answered {}", a.status);
        }
        Ok(Metrics::parse(&String::from_utf8_lossy(&a.body)))
    }

    /// Waits until the socket file exists and the TCP address is logged (10 s at most).
    pub async fn wait_listening(&mut self) -> Result<()> {
        let want_http = self.want_http;
        for _ in 0..200 {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("tokend exited with {status}:\n{}", self.output.text());
            }
            let text = self.output.text();
            let socket_ok = self.socket.as_ref().is_none_or(|s| s.exists());
            if want_http && self.http_addr.is_none() {
                // Text logs say `listener=http://ADDR`, JSON logs `"listener":"http://ADDR"`.
                self.http_addr = ["listener=http://", "\"listener\":\"http://"]
                    .iter()
                    .find_map(|marker| text.split(marker).nth(1))
                    .and_then(|rest| rest.split(|c: char| c.is_whitespace() || c == '"').next())
                    .map(str::to_string);
            }
            if socket_ok && (!want_http || self.http_addr.is_some()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("tokend did not start listening:\n{}", self.output.text())
    }

    /// Polls `/readyz` until it answers 200.
    pub async fn wait_ready(&self) -> Result<()> {
        let mut last = None;
        for _ in 0..200 {
            // Connection errors are retried: a stale socket file may still be in place.
            let a = if self.http_addr.is_some() {
                self.get("/readyz", &[]).await
            } else {
                self.unix("GET", "/readyz", &[], None).await
            };
            let a = match a {
                Ok(a) => a,
                Err(e) => {
                    last = Some(e.to_string());
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if a.status == 200 {
                return Ok(());
            }
            last = Some(String::from_utf8_lossy(&a.body).to_string());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("tokend not ready: {last:?}\n{}", self.output.text())
    }

    fn url(&self, path: &str) -> Result<String> {
        let addr = self.http_addr.as_ref().context("no TCP listener")?;
        Ok(format!("http://{addr}{path}"))
    }

    /// GET over TCP.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Result<Answer> {
        let mut req = self.http.get(self.url(path)?);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send().await?).await
    }

    /// POST with a raw body over TCP.
    pub async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> Result<Answer> {
        let req = self
            .http
            .post(self.url(path)?)
            .header("content-type", "application/json")
            .body(body);
        answer(req.send().await?).await
    }

    /// POST with headers over TCP.
    pub async fn post_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Result<Answer> {
        let mut req = self.http.post(self.url(path)?).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        answer(req.send().await?).await
    }

    /// Posts a back-channel logout token the way the provider does (a form field).
    pub async fn backchannel_logout(&self, token: &str) -> Result<Answer> {
        self.post_with(
            "/auth/backchannel-logout",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("logout_token={token}"),
        )
        .await
    }

    /// POST with an empty body and one cookie (how the browser calls /auth/refresh and
    /// /auth/logout).
    pub async fn post_cookie(&self, path: &str, name: &str, value: &str) -> Result<Answer> {
        self.post_with(path, &[("cookie", &format!("{name}={value}"))], "")
            .await
    }

    /// Base URL of the TCP listener.
    pub fn base_url(&self) -> Result<String> {
        self.url("")
    }

    /// `POST /v1/verify` over TCP.
    pub async fn verify(&self, token: &str) -> Result<Answer> {
        self.post("/v1/verify", json!({"token": token}).to_string())
            .await
    }

    /// A request over the Unix socket.
    pub async fn unix(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Result<Answer> {
        let socket = self.socket.as_ref().context("no socket listener")?;
        unix_request(socket, method, path, headers, body).await
    }

    /// The admin-API client (from `tokend-shared`) on the admin socket.
    pub fn admin(&self) -> Result<tokend_shared::client::AdminClient> {
        let socket = self.admin_socket.as_ref().context("no admin socket")?;
        Ok(tokend_shared::client::AdminClient::new(socket))
    }

    /// A raw request over the admin socket (for status codes and bodies the client hides).
    pub async fn admin_unix(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Result<Answer> {
        let socket = self.admin_socket.as_ref().context("no admin socket")?;
        unix_request(socket, method, path, &[], body).await
    }

    /// `POST /v1/verify` over the Unix socket.
    pub async fn verify_unix(&self, token: &str) -> Result<Answer> {
        self.unix(
            "POST",
            "/v1/verify",
            &[("content-type", "application/json")],
            Some(json!({"token": token}).to_string()),
        )
        .await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends a signal (e.g. "TERM", "HUP") to tokend.
    pub fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().context("tokend not running")?;
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -{sig} {pid} failed");
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit (at most 15 s).
    pub async fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal("TERM")?;
        self.terminate_wait().await
    }

    /// Waits for the exit after a signal was sent (at most 15 s).
    pub async fn terminate_wait(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("tokend not running")?;
        let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
            .await
            .map_err(|_| anyhow!("tokend did not exit within 15s"))??;
        // Let the output readers drain.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(status)
    }
}

impl Drop for Tokend {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}
