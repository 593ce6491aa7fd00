//! A real `redis-server` for the tests of the Redis store (issue #12): on a free loopback port,
//! in a temp dir, no persistence; stopped and started again on the same port at will, killed
//! when dropped. `raw` is a plain client of the `redis` crate for looking at what tokend wrote.
//! [`RedisServer::start_tls`]: one speaking only TLS, its certificate (127.0.0.1 and localhost)
//! signed by a private CA made for the test with the `openssl` CLI.
//! [`pair`]: two tokends with the login flow on one such Redis, as behind a load balancer.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

use crate::flow::FRONTEND;
use crate::{Provider, ProviderOptions, Tokend, TokendConfig, free_port, is_root, skip};

/// A running (or stopped) redis-server of the test's own.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    /// TLS only (`--port 0 --tls-port`), with `ca.pem`, `server.pem`, `server.key` in `dir`.
    tls: bool,
}

/// The path of `name` on `$PATH`, if installed.
pub(crate) fn binary_named(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join(name))
        .find(|p| p.is_file())
}

/// The path of `redis-server`, if installed.
fn binary() -> Option<PathBuf> {
    binary_named("redis-server")
}

/// Runs `openssl` with `args` in `dir`; fails with its output.
fn openssl(dir: &std::path::Path, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    anyhow::ensure!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// A private CA (`ca.pem`) and a server certificate for 127.0.0.1 and localhost signed by it
/// (`server.pem`, `server.key`), valid one day, in `dir`. Good for client authentication too:
/// the nodes of a TLS Redis Cluster present it to each other on the cluster bus, which always
/// verifies the connecting node's certificate.
pub(crate) fn make_certificates(dir: &std::path::Path) -> Result<()> {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=tokend test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca)?;
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr)?;
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    )
}

impl RedisServer {
    /// Starts one; `None` (after a loud skip) when `redis-server` is absent and the tests do
    /// not run as root (as root, `tests/run` installs it, so its absence is a failure).
    pub async fn start(test: &str) -> Result<Option<Self>> {
        if binary().is_none() {
            anyhow::ensure!(
                !is_root(),
                "redis-server is not installed (tests/run installs it as root)"
            );
            skip(
                test,
                "redis-server is not installed (apt-get install redis-server)",
            );
            return Ok(None);
        }
        let mut server = Self {
            child: None,
            port: free_port()?,
            dir: tempfile::tempdir()?,
            tls: false,
        };
        server.restart().await?;
        Ok(Some(server))
    }

    /// Starts one speaking only TLS, its certificate signed by a CA of the test's own
    /// ([`Self::ca_file`]); `None` (after a loud skip) as [`Self::start`], or when the
    /// `openssl` CLI is absent.
    pub async fn start_tls(test: &str) -> Result<Option<Self>> {
        if binary_named("openssl").is_none() {
            anyhow::ensure!(
                !is_root(),
                "openssl is not installed (tests/run installs it as root)"
            );
            skip(test, "openssl is not installed (apt-get install openssl)");
            return Ok(None);
        }
        if binary().is_none() {
            return Self::start(test).await;
        }
        let mut server = Self {
            child: None,
            port: free_port()?,
            dir: tempfile::tempdir()?,
            tls: true,
        };
        make_certificates(server.dir.path())?;
        server.restart().await?;
        Ok(Some(server))
    }

    /// The private CA's certificate (PEM) of a [`Self::start_tls`] server.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// `redis://127.0.0.1:<port>`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: as a crash would), and waits until it is gone.
    pub async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().await?;
        }
        Ok(())
    }

    /// Starts the server again on the same port (empty: there is no persistence).
    pub async fn restart(&mut self) -> Result<()> {
        self.kill().await?;
        let port = self.port.to_string();
        let listen: Vec<&str> = if self.tls {
            vec![
                "--port",
                "0",
                "--tls-port",
                &port,
                "--tls-cert-file",
                "server.pem",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.pem",
                "--tls-auth-clients",
                "no",
            ]
        } else {
            vec!["--port", &port]
        };
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        answers_ping(&self.url(), self.tls.then(|| self.ca_file()).as_deref()).await
    }

    /// A plain connection for looking at the keys and values.
    pub async fn raw(&self) -> Result<redis::aio::MultiplexedConnection> {
        connect(&self.url(), self.tls.then(|| self.ca_file()).as_deref()).await
    }

    /// Every key with its TTL in ms (`PTTL`) and the bytes of its value (strings as they
    /// are, hashes as all their fields and values).
    pub async fn dump(&self) -> Result<Vec<(String, i64, Vec<u8>)>> {
        let mut c = self.raw().await?;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await?;
        let mut out = Vec::new();
        for k in keys {
            let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut c).await?;
            let kind: String = redis::cmd("TYPE").arg(&k).query_async(&mut c).await?;
            let bytes = match kind.as_str() {
                "string" => {
                    redis::cmd("GET")
                        .arg(&k)
                        .query_async::<Vec<u8>>(&mut c)
                        .await?
                }
                "hash" => redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async::<Vec<Vec<u8>>>(&mut c)
                    .await?
                    .concat(),
                _ => Vec::new(),
            };
            out.push((k, ttl, bytes));
        }
        Ok(out)
    }
}

/// A provider, and two tokends (A, B) with the login flow and one Redis store; both have A's
/// callback URL as their redirect URI, as instances behind one load balancer would.
pub struct Pair {
    pub provider: Provider,
    pub a: Tokend,
    pub b: Tokend,
    pub _key_dir: tempfile::TempDir,
}

/// `timeout` is `store.timeout`: the contest of 1,000 redemptions on a debug build sharing two
/// cores needs more than the default 500ms for some calls (they would answer 503).
pub async fn pair(redis: &RedisServer, timeout: &str) -> anyhow::Result<Pair> {
    pair_with(
        &format!("kind = \"redis\"\nurl = {:?}\n", redis.url()),
        timeout,
        "",
    )
    .await
}

/// [`pair`] with `store` as the `[store]` lines naming the Redis (kind, url, …; the sealing
/// key and `timeout` are added) and `extra` as more sections after it.
pub async fn pair_with(store: &str, timeout: &str, extra: &str) -> anyhow::Result<Pair> {
    let key_dir = tempfile::tempdir()?;
    let key_file = key_dir.path().join("store.key");
    std::fs::write(
        &key_file,
        "5f1c0a7e93b24d68a0c1e2f3041526374859a6b7c8d9eafb0c1d2e3f40516273\n",
    )?;
    let port = free_port()?;
    let callback = format!("http://127.0.0.1:{port}/auth/callback");
    let provider = Provider::start_with(ProviderOptions {
        redirect_uris: vec![callback.clone()],
        ..Default::default()
    })
    .await?;
    let mut cfg = TokendConfig::for_provider(&provider);
    cfg.http_port = Some(port);
    cfg.tail = format!(
        "\n[flow]\nredirect_uri = {callback:?}\nfrontend_url = {FRONTEND:?}\n\n[store]\n\
         {store}encryption_key_file = {key_file:?}\ntimeout = {timeout:?}\n{extra}"
    );
    let a = Tokend::start(&cfg).await?;
    cfg.http_port = Some(free_port()?);
    let b = Tokend::start(&cfg).await?;
    a.wait_ready().await?;
    b.wait_ready().await?;
    Ok(Pair {
        provider,
        a,
        b,
        _key_dir: key_dir,
    })
}

/// A plain connection to the redis-server at `url`; a `rediss://` one is checked against the
/// CA certificates in `ca`.
pub(crate) async fn connect(
    url: &str,
    ca: Option<&std::path::Path>,
) -> Result<redis::aio::MultiplexedConnection> {
    let client = match ca {
        Some(ca) => redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(ca)?),
            },
        )?,
        None => redis::Client::open(url)?,
    };
    Ok(client.get_multiplexed_async_connection().await?)
}

/// Waits (up to 10 s) until the redis-server at `url` answers `PING`.
pub(crate) async fn answers_ping(url: &str, ca: Option<&std::path::Path>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = connect(url, ca).await
            && redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok()
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "redis-server did not answer");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Redeems `code` `n` times at once, spread over `instances` in turn: how many won (200),
/// how many were told `code_already_redeemed` (410), and every other `(status, reason)`.
pub async fn redeem_race(
    instances: &[&Tokend],
    code: &str,
    n: usize,
) -> Result<(usize, usize, Vec<(u16, String)>)> {
    let client = reqwest::Client::new();
    let bases = (instances.iter())
        .map(|t| t.base_url())
        .collect::<Result<Vec<_>>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let url = format!("{}/v1/codes/redeem", bases[i % bases.len()]);
        let (client, body) = (
            client.clone(),
            serde_json::json!({"code": code}).to_string(),
        );
        tasks.spawn(async move {
            let r = client
                .post(url)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            let status = r.status().as_u16();
            let v: serde_json::Value = r.json().await?;
            anyhow::Ok((status, v["reason"].as_str().unwrap_or("").to_string()))
        });
    }
    let (mut won, mut replayed, mut other) = (0, 0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        match r?? {
            (200, _) => won += 1,
            (410, reason) if reason == "code_already_redeemed" => replayed += 1,
            answer => other.push(answer),
        }
    }
    Ok((won, replayed, other))
}

/// Polls `f` until it holds, at most `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if f().await? {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
