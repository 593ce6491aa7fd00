//! End-to-end harness: starts the real `tokend` binary and a real OIDC provider
//! (panva's `oidc-provider`, laid out like Authentik, in `tests/provider/`), and talks to
//! tokend over its Unix socket and its TCP port.
//!
//! `env!("CARGO_BIN_EXE_tokend")` only exists inside the daemon package, so [`tokend_bin`]
//! (and [`tokentop_bin`], the console) builds the binary with cargo (a no-op when it is up to
//! date) and finds it in the target dir. [`tmux`] runs the console in a real terminal.

pub mod flow;
pub mod nginx;
pub mod redis_server;
pub mod tmux;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

/// The workspace root (parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Path of the `tokend` binary, built once per test process with the profile the tests
/// themselves were built with (so `cargo test --release` tests a fresh release binary, not a
/// stale one), or `E2E_TOKEND_BIN` when set.
pub fn tokend_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("E2E_TOKEND_BIN", "tokend", "tokend"))
}

/// Path of the `tokentop` binary (the console, tui/), built like [`tokend_bin`], or
/// `E2E_TOKENTOP_BIN` when set.
pub fn tokentop_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("E2E_TOKENTOP_BIN", "tokentop", "tokentop"))
}

/// `$env_var` when set; else builds `bin` of `package` with cargo (a no-op when it is up to
/// date), with the tests' own profile and target dir, and answers its path.
fn built_bin(env_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    // Test binaries live in <target>/<profile dir>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps layout")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target/<profile> layout")
        .to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(["--profile", &profile])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {bin} ({profile}) failed");
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Collected stdout+stderr of a child process.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    pub fn text(&self) -> String {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn capture(&self, stream: impl AsyncRead + Unpin + Send + 'static, echo: &'static str) {
        let out = self.0.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("E2E_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                if let Ok(mut s) = out.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
    }

    /// Fails if any of `secrets` (tokens, codes, client secrets) appears in the output.
    pub fn assert_free_of(&self, secrets: &[&str]) {
        let text = self.text();
        assert!(!text.is_empty(), "no output captured to scan");
        for s in secrets {
            assert!(s.len() >= 8, "secret too short to scan for meaningfully");
            // A token's signature part alone would be enough to leak; scan for it too.
            let parts: Vec<&str> = s.split('.').collect();
            assert!(
                !text.contains(s),
                "tokend output contains a secret:\n{text}"
            );
            if parts.len() == 3 && parts[2].len() >= 16 {
                assert!(
                    !text.contains(parts[2]),
                    "tokend output contains a token signature:\n{text}"
                );
            }
        }
    }
}

/// Options of the test provider (`tests/provider/server.mjs`).
#[derive(Default, Clone)]
pub struct ProviderOptions {
    /// Fixed port (default: any free one).
    pub port: Option<u16>,
    pub public_host: Option<String>,
    /// `http` (default) or `https`: the scheme of the public issuer (`--public-scheme`); the
    /// provider itself always listens on plain HTTP, as Authentik does behind a TLS proxy.
    pub public_scheme: Option<String>,
    pub access_ttl: Option<u64>,
    pub redirect_uris: Vec<String>,
    pub backchannel_logout_uri: Option<String>,
    pub client_secret: Option<String>,
}

/// A running OIDC provider laid out like Authentik.
pub struct Provider {
    child: Option<Child>,
    pub port: u16,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// The Authentik API token `/api/v3/events/events/` accepts (`--api-token`, else random).
    pub api_token: String,
    base: String,
    http: reqwest::Client,
    pub output: Output,
}

/// Tokens from the provider's token endpoint.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: String,
    pub id_token: String,
    pub refresh_token: Option<String>,
    pub raw: Value,
}

impl TokenSet {
    /// The tokens of a `/_test/login` answer (the token endpoint's JSON).
    fn from_answer(v: Value) -> Result<Self> {
        Ok(TokenSet {
            access_token: v["access_token"]
                .as_str()
                .context("access_token")?
                .to_string(),
            id_token: v["id_token"].as_str().context("id_token")?.to_string(),
            refresh_token: v["refresh_token"].as_str().map(str::to_string),
            raw: v,
        })
    }
}

impl Provider {
    pub async fn start() -> Result<Self> {
        Self::start_with(ProviderOptions::default()).await
    }

    /// Starts the provider; a start that hangs (seen with Node 20 about once in a hundred
    /// starts, before the keys were made as JWK directly) is retried once.
    pub async fn start_with(opts: ProviderOptions) -> Result<Self> {
        match Self::start_once(&opts).await {
            Ok(p) => Ok(p),
            Err(e) if e.to_string().contains("did not start") => {
                eprintln!("provider start hung; retrying once: {e}");
                Self::start_once(&opts).await
            }
            Err(e) => Err(e),
        }
    }

    async fn start_once(opts: &ProviderOptions) -> Result<Self> {
        let dir = workspace_root().join("tests/provider");
        if !dir.join("node_modules/oidc-provider").exists() {
            bail!(
                "tests/provider/node_modules is missing: run `npm ci --prefix tests/provider` \
                 (the README's test command does)"
            );
        }
        let mut cmd = Command::new("node");
        cmd.arg(dir.join("server.mjs"))
            .args(["--port", &opts.port.unwrap_or(0).to_string()]);
        if std::env::var_os("E2E_ECHO").is_none() {
            cmd.arg("--quiet");
        }
        if let Some(h) = &opts.public_host {
            cmd.args(["--public-host", h]);
        }
        if let Some(s) = &opts.public_scheme {
            cmd.args(["--public-scheme", s]);
        }
        if let Some(t) = opts.access_ttl {
            cmd.args(["--access-ttl", &t.to_string()]);
        }
        for r in &opts.redirect_uris {
            cmd.args(["--redirect-uri", r]);
        }
        if let Some(b) = &opts.backchannel_logout_uri {
            cmd.args(["--backchannel-logout-uri", b]);
        }
        if let Some(s) = &opts.client_secret {
            cmd.args(["--client-secret", s]);
        }
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .context("starting node (is Node.js installed?)")?;
        let output = Output::default();
        if let Some(e) = child.stderr.take() {
            output.capture(e, "provider");
        }
        let stdout = child.stdout.take().context("provider stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(15), lines.next_line())
            .await
            .map_err(|_| anyhow!("provider did not start within 15s:\n{}", output.text()))??
            .ok_or_else(|| anyhow!("provider exited:\n{}", output.text()))?;
        let ready: Value = serde_json::from_str(&first)
            .with_context(|| format!("provider ready line is not JSON: {first}"))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let port = ready["port"].as_u64().context("port")? as u16;
        Ok(Self {
            child: Some(child),
            port,
            issuer: ready["issuer"].as_str().context("issuer")?.to_string(),
            client_id: ready["client_id"]
                .as_str()
                .context("client_id")?
                .to_string(),
            client_secret: ready["client_secret"]
                .as_str()
                .context("client_secret")?
                .to_string(),
            api_token: ready["api_token"]
                .as_str()
                .context("api_token")?
                .to_string(),
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            output,
        })
    }

    /// Origin the provider listens on (always 127.0.0.1).
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn control(&self, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}/_test/{path}", self.base);
        let req = match body {
            Some(b) => self.http.post(url).json(&b),
            None => self.http.get(url),
        };
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = resp.json().await?;
        if !status.is_success() {
            bail!("provider control {path} answered {status}: {v}");
        }
        Ok(v)
    }

    /// A real authorization-code login; returns the token endpoint's answer.
    pub async fn login(&self, user: &str) -> Result<TokenSet> {
        self.login_scope(user, "openid email profile offline_access organization")
            .await
    }

    pub async fn login_scope(&self, user: &str, scope: &str) -> Result<TokenSet> {
        let v = self
            .control("login", Some(json!({"user": user, "scope": scope})))
            .await?;
        TokenSet::from_answer(v)
    }

    /// Signs `payload` with a provider key (`k1`, `k2`, `e1`), or HS256 with the client secret.
    pub async fn sign(
        &self,
        kid: &str,
        alg: &str,
        header: Value,
        payload: Value,
    ) -> Result<String> {
        let v = self
            .control(
                "sign",
                Some(json!({"kid": kid, "alg": alg, "header": header, "payload": payload})),
            )
            .await?;
        Ok(v["token"].as_str().context("token")?.to_string())
    }

    /// A realistic access-token payload for `user`, valid for 5 minutes.
    pub async fn claims_template(&self, user: &str) -> Result<Value> {
        self.control(&format!("claims-template?user={user}"), None)
            .await
    }

    pub async fn set_keys(&self, signing: &str, published: &[&str]) -> Result<()> {
        self.control(
            "keys",
            Some(json!({"signing": signing, "published": published})),
        )
        .await
        .map(drop)
    }

    pub async fn jwks_mode(&self, mode: &str) -> Result<()> {
        self.control("jwks-mode", Some(json!({"mode": mode})))
            .await
            .map(drop)
    }

    /// Makes the token endpoint answer `ms` milliseconds late (0: at once).
    pub async fn token_delay(&self, ms: u64) -> Result<()> {
        self.control("token-delay", Some(json!({"ms": ms})))
            .await
            .map(drop)
    }

    /// Makes every answer's `Date` header `seconds` off the real clock (0: the true time).
    pub async fn date_skew(&self, seconds: i64) -> Result<()> {
        self.control("date-skew", Some(json!({"seconds": seconds})))
            .await
            .map(drop)
    }

    /// Serve the published JWKs without their `alg` member (`true`) or with it (`false`).
    pub async fn jwks_strip_alg(&self, strip: bool) -> Result<()> {
        self.control("jwks-strip-alg", Some(json!({"strip": strip})))
            .await
            .map(drop)
    }

    /// A refresh grant sent directly to the provider: its HTTP status and JSON answer. Proves
    /// whether a refresh token is still alive upstream.
    pub async fn refresh_grant(&self, refresh_token: &str) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/_test/refresh", self.base))
            .json(&json!({"refresh_token": refresh_token}))
            .send()
            .await?;
        let status = resp.status().as_u16();
        Ok((status, resp.json().await?))
    }

    /// Adds Authentik events (`[{"action","user"?,"email"?,"context"?,"client_ip"?}]`) to the
    /// Events API, newer than every event before; returns their `pk`s.
    pub async fn add_events(&self, events: Value) -> Result<Vec<String>> {
        let v = self
            .control("events", Some(json!({ "events": events })))
            .await?;
        Ok(v["added"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Adds `count` events of `action` by `user`.
    pub async fn add_many_events(&self, count: usize, action: &str, user: &str) -> Result<()> {
        self.control(
            "events",
            Some(json!({"count": count, "action": action, "user": user})),
        )
        .await
        .map(drop)
    }

    /// How the Events API answers: `normal`, `unauthorized` (401), `forbidden` (403) or
    /// `error` (500).
    pub async fn events_mode(&self, mode: &str) -> Result<()> {
        self.control("events-mode", Some(json!({ "mode": mode })))
            .await
            .map(drop)
    }

    /// Zeroes the provider's counters and request records.
    pub async fn reset_stats(&self) -> Result<()> {
        self.control("stats/reset", Some(json!({}))).await.map(drop)
    }

    pub async fn stats(&self) -> Result<Value> {
        self.control("stats", None).await
    }

    /// The distinct request origins (`{"user_agent","host","x_forwarded_proto",
    /// "x_forwarded_host"}`) tokend's own requests (User-Agent `tokend/…`) brought to
    /// `endpoint` (`discovery`, `jwks`, `token`, `revocation`, `introspection`, `userinfo`).
    pub async fn seen_from_tokend(&self, endpoint: &str) -> Result<Vec<Value>> {
        let stats = self.stats().await?;
        Ok(stats["seen"][endpoint]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| {
                        e["user_agent"]
                            .as_str()
                            .is_some_and(|ua| ua.starts_with("tokend/"))
                    })
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A counter of `/_test/stats` (0 when absent).
    pub async fn stat(&self, name: &str) -> Result<u64> {
        Ok(self.stats().await?[name].as_u64().unwrap_or(0))
    }

    /// The client authentication methods the token, revocation and introspection endpoints
    /// accept (start: `client_secret_basic` only).
    pub async fn client_auth(&self, methods: &[&str]) -> Result<()> {
        self.control("client-auth", Some(json!({"methods": methods})))
            .await
            .map(drop)
    }

    /// Spoils the ID token of the next authorization-code exchange: `wrong_nonce`,
    /// `wrong_audience` (`none`: don't).
    pub async fn bad_id_token(&self, kind: &str) -> Result<()> {
        self.control("bad-id-token", Some(json!({"kind": kind})))
            .await
            .map(drop)
    }

    /// A real login in browser cookie jar `jar` (so `end_session(jar)` can end it).
    pub async fn login_in(&self, user: &str, jar: &str) -> Result<TokenSet> {
        let v = self
            .control("login", Some(json!({"user": user, "session": jar})))
            .await?;
        TokenSet::from_answer(v)
    }

    /// RP-initiated logout of browser jar `jar` at the provider; its back-channel logout is
    /// delivered before this returns. The provider's answer (`backchannel`: the deliveries).
    pub async fn end_session(&self, jar: &str) -> Result<Value> {
        self.control("end-session", Some(json!({"session": jar})))
            .await
    }

    pub async fn jwks_requests(&self) -> Result<u64> {
        self.stats().await?["jwks_requests"]
            .as_u64()
            .context("jwks_requests")
    }

    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
            let _ = c.wait().await;
        }
    }
}

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

/// An HTTP answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "body is not JSON (status {}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn reason(&self) -> String {
        self.json()["reason"].as_str().unwrap_or("").to_string()
    }
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

/// Starts `tokend` with a clean environment (no TOKEND_*/AUTHENTIK_* from the test's own).
pub fn spawn_tokend(config: &Path, args: &[&str]) -> Result<Child> {
    tokend_command(config, args, &[], &[])
        .spawn()
        .context("starting tokend")
}

/// The command that starts `tokend --config <config> <args>` with a clean environment (none of
/// the test's own TOKEND_*, AUTHENTIK_*, CREDENTIALS_DIRECTORY or systemd variables) plus
/// `env`, through `launcher` when one is given (its program and arguments come first).
pub fn tokend_command(
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    launcher: &[&str],
) -> Command {
    let mut cmd = match launcher.split_first() {
        Some((program, launcher_args)) => {
            let mut c = Command::new(program);
            c.args(launcher_args).arg(tokend_bin());
            c
        }
        None => Command::new(tokend_bin()),
    };
    cmd.arg("--config").arg(config).args(args);
    const SYSTEMD_VARS: [&str; 6] = [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
    ];
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TOKEND_")
            || k.starts_with("AUTHENTIK_")
            || k == "CREDENTIALS_DIRECTORY"
            || SYSTEMD_VARS.contains(&&*k)
        {
            cmd.env_remove(&*k);
        }
    }
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The answer of a tokend command run to its end: exit code, stdout, stderr.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tokend --config CONFIG ARGS…` to its end (30 s at most), with the tokend environment
/// cleaned as for the daemon.
pub async fn run_tokend(config: &Path, args: &[&str]) -> Result<Finished> {
    let child = tokend_command(config, args, &[], &[]).spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("tokend did not finish within 30s")??;
    Ok(Finished {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    })
}

/// The command `tokend dev <args>` (plus `--http 127.0.0.1:0` unless given) with a clean
/// environment and `XDG_RUNTIME_DIR=<runtime_dir>`.
pub fn dev_command(args: &[&str], runtime_dir: &Path) -> Command {
    let mut cmd = Command::new(tokend_bin());
    cmd.arg("dev").args(args);
    if !args.contains(&"--http") {
        cmd.args(["--http", "127.0.0.1:0"]);
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TOKEND_") || k.starts_with("AUTHENTIK_") || k.starts_with("LISTEN_") {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("XDG_RUNTIME_DIR", runtime_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `tokend check-config` on a file; returns (exit code, stdout, stderr).
pub fn check_config(config: &Path) -> Result<(i32, String, String)> {
    let mut cmd = std::process::Command::new(tokend_bin());
    cmd.arg("check-config").arg("--config").arg(config);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TOKEND_") || k.starts_with("AUTHENTIK_") {
            cmd.env_remove(&*k);
        }
    }
    let out = cmd.output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    ))
}

async fn answer(resp: reqwest::Response) -> Result<Answer> {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.bytes().await?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// One HTTP/1.1 request over a Unix socket.
pub async fn unix_request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Result<Answer> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "tokend");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// A scrape of `/metrics`.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: std::collections::HashMap<String, f64>,
}

impl Metrics {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        Self {
            text: text.to_string(),
            samples,
        }
    }

    /// The value of `key` (e.g. `tokend_codes_issued_total` or
    /// `tokend_refreshes_total{outcome="upstream"}`); 0 when absent.
    pub fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }

    /// `self[key] - before[key]`.
    pub fn delta(&self, before: &Metrics, key: &str) -> f64 {
        self.get(key) - before.get(key)
    }
}

/// Skips part of a test, loudly: under CI (`CI` set, as `.ci/run` is) a skip is a failure —
/// CI must run everything; elsewhere a `SKIP:` line goes to stderr and, when `E2E_SKIP_LOG`
/// names a file (`tests/run` sets it), to that file, which the test command summarises (the
/// test runner may hide stderr).
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIP: {test}: {why}");
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{line} — but CI is set, and CI must run every test"
    );
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("E2E_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Whether the tests run as root (as CI does): some checks (socket group, installed tools)
/// are only possible, or only required, then.
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Decodes a JWT's payload without checking anything (for test assertions only).
pub fn jwt_payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}
