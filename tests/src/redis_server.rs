//! A real `redis-server` for the tests of the Redis store (issue #12): on a free loopback port,
//! in a temp dir, no persistence; stopped and started again on the same port at will, killed
//! when dropped. `raw` is a plain client of the `redis` crate for looking at what tokend wrote.
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
}

/// The path of `redis-server`, if installed.
fn binary() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| PathBuf::from(d).join("redis-server"))
        .find(|p| p.is_file())
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
        };
        server.restart().await?;
        Ok(Some(server))
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
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
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut c) = self.raw().await
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

    /// A plain connection for looking at the keys and values.
    pub async fn raw(&self) -> Result<redis::aio::MultiplexedConnection> {
        let client = redis::Client::open(self.url())?;
        Ok(client.get_multiplexed_async_connection().await?)
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
         kind = \"redis\"\nurl = {:?}\nencryption_key_file = {key_file:?}\ntimeout = {timeout:?}\n",
        redis.url()
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
