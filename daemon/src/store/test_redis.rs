//! Throwaway Redis for the store's unit tests (issue #12): one `redis-server` on a free
//! loopback port, or a Redis Cluster of three such servers in cluster mode joined as masters by
//! `redis-cli --cluster create` (as the e2e harness's `tests/src/redis_cluster.rs` does, which
//! these tests cannot depend on); no persistence, killed on drop. Without `redis-server` or
//! `redis-cli` a test says SKIP loudly, and fails under CI.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokend_shared::Secret;

use crate::config::{StoreConfig, StoreKind};

/// A `redis-server` of the test's own; killed when dropped.
pub(crate) struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says SKIP loudly (and in `E2E_SKIP_LOG`); under CI a skip is a failure.
fn skip(test: &str, why: &str) {
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

impl RedisServer {
    /// Starts one, or `None` (after a loud skip) when `redis-server` is not installed.
    pub(crate) fn start(test: &str) -> Option<Self> {
        Self::start_with(test, &[])
    }

    /// [`RedisServer::start`] with extra `redis-server` arguments. A port found free can be
    /// taken by another test's server before this one binds it (tests run in parallel): the
    /// server that answers must be this one (its `dir`), else it starts again on other ports.
    pub(crate) fn start_with(test: &str, extra: &[&str]) -> Option<Self> {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            let port = free_port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(dir.path())
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let child = match child {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    skip(
                        test,
                        "redis-server is not installed (apt-get install redis-server)",
                    );
                    return None;
                }
                Err(e) => panic!("redis-server: {e}"),
            };
            let mut server = Self {
                child,
                port,
                _dir: dir,
            };
            let ours = server._dir.path().to_string_lossy().into_owned();
            let mut ask = vec!["--no-auth-warning"];
            if let Some(i) = extra.iter().position(|a| *a == "--requirepass") {
                ask.extend(["-a", extra[i + 1]]);
            }
            ask.extend(["CONFIG", "GET", "dir"]);
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if cli(port, &ask).contains(ours.as_str()) {
                    return Some(server);
                }
                if server.child.try_wait().ok().flatten().is_some() {
                    break; // it could not bind (the port or its cluster bus port was taken)
                }
                assert!(Instant::now() < deadline, "redis-server did not listen");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("redis-server did not start on five pairs of free ports");
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// `redis-cli -p <port> <args>`'s output (empty when it fails).
pub(crate) fn cli(port: u16, args: &[&str]) -> String {
    Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Three [`RedisServer`]s in cluster mode joined by `redis-cli --cluster create` as masters
/// (as the e2e harness's `tests/src/redis_cluster.rs` does); killed on drop.
pub(crate) struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts one, or `None` (after a loud skip) when `redis-server` or `redis-cli` is absent.
    pub(crate) fn start(test: &str) -> Option<Self> {
        if Command::new("redis-cli").arg("--version").output().is_err() {
            skip(
                test,
                "redis-cli is not installed (apt-get install redis-tools)",
            );
            return None;
        }
        let mut attempts = 0;
        let nodes = loop {
            let mut nodes = Vec::new();
            for _ in 0..3 {
                // The bus port chosen free too: `port + 10000` may be taken or past 65535.
                let bus = free_port().to_string();
                let cluster = ["--cluster-enabled", "yes", "--cluster-port", &bus];
                nodes.push(RedisServer::start_with(test, &cluster)?);
            }
            let created = Command::new("redis-cli")
                .args(["--cluster", "create"])
                .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
                .args(["--cluster-replicas", "0", "--cluster-yes"])
                .stdin(Stdio::null())
                .output()
                .expect("redis-cli --cluster create");
            if created.status.success() {
                break nodes;
            }
            // A node gone since it answered (another test's server took a port it needed):
            // once more on other ports, the nodes of this attempt killed as they drop.
            attempts += 1;
            assert!(attempts < 3, "{created:?}");
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !nodes.iter().all(|n| {
            let info = cli(n.port, &["CLUSTER", "INFO"]);
            info.contains("cluster_state:ok") && info.contains("cluster_size:3")
        }) {
            assert!(Instant::now() < deadline, "the cluster did not become ok");
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { nodes })
    }

    /// `[store]` for it: `cluster = true`, the first node as `url`, the others as seeds.
    pub(crate) fn config(&self) -> StoreConfig {
        StoreConfig {
            cluster: true,
            cluster_urls: (self.nodes[1..].iter())
                .map(|n| format!("redis://127.0.0.1:{}", n.port))
                .collect(),
            ..redis_config(self.nodes[0].port)
        }
    }

    /// Every node's port.
    pub(crate) fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// How many masters hold at least one key.
    pub(crate) fn masters_holding_keys(&self) -> usize {
        (self.nodes.iter())
            .filter(|n| cli(n.port, &["DBSIZE"]).trim() != "0")
            .count()
    }
}

pub(crate) fn redis_config(port: u16) -> StoreConfig {
    StoreConfig {
        kind: StoreKind::Redis,
        url: Some(format!("redis://127.0.0.1:{port}")),
        encryption_key: Some(Secret::new("11".repeat(32))),
        ..StoreConfig::default()
    }
}
