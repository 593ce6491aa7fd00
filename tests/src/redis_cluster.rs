//! A real Redis Cluster for the tests of the Redis store (issue #12): three `redis-server`
//! masters with cluster mode on, each on a free loopback port (its bus port too) in a temp
//! dir of its own, no persistence but their `nodes.conf` (so a node killed and started again
//! rejoins with its slots), joined by `redis-cli --cluster create`; killed when dropped.
//! `cluster-require-full-coverage no`: with one master away the others go on serving their
//! slots. [`pair`] runs two tokends on it, as [`crate::redis_server::pair`] does on one server.
//! [`RedisCluster::start_tls`]: one speaking only TLS, clients and cluster bus alike, every
//! node with one certificate (127.0.0.1) signed by a private CA made for the test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

use crate::redis_server::{
    Pair, answers_ping, binary_named, connect, make_certificates, pair_with,
};
use crate::{free_port, is_root, skip};

/// One master of the cluster.
struct Node {
    child: Option<Child>,
    port: u16,
    /// The cluster bus port (`--cluster-port`): chosen free, not `port + 10000`.
    bus: u16,
    dir: tempfile::TempDir,
    /// TLS only (`--port 0 --tls-port`, `tls-cluster`): the directory of `ca.pem`,
    /// `server.pem`, `server.key`.
    tls: Option<PathBuf>,
}

/// A running cluster of three masters, no replicas.
pub struct RedisCluster {
    nodes: Vec<Node>,
    /// The certificates of a TLS cluster (see [`Node::tls`]).
    certs: Option<tempfile::TempDir>,
}

/// Whether `name` is on `$PATH`.
fn installed(name: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
}

impl Node {
    async fn start(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().await?;
        }
        let port = self.port.to_string();
        let listen = match &self.tls {
            None => vec!["--port".into(), port],
            Some(certs) => {
                let file = |name: &str| certs.join(name).to_string_lossy().into_owned();
                [
                    ("--port", "0".into()),
                    ("--tls-port", port),
                    ("--tls-cert-file", file("server.pem")),
                    ("--tls-key-file", file("server.key")),
                    ("--tls-ca-cert-file", file("ca.pem")),
                    ("--tls-auth-clients", "no".into()),
                    ("--tls-cluster", "yes".into()),
                    ("--tls-replication", "yes".into()),
                ]
                .into_iter()
                .flat_map(|(k, v)| [k.to_string(), v])
                .collect()
            }
        };
        let child = Command::new("redis-server")
            .args(listen)
            .args(["--cluster-port", &self.bus.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args(["--cluster-node-timeout", "2000"])
            .args(["--cluster-require-full-coverage", "no"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting redis-server in cluster mode")?;
        self.child = Some(child);
        answers_ping(&self.url(), self.ca().as_deref()).await
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA file a `rediss://` node is checked against.
    fn ca(&self) -> Option<PathBuf> {
        self.tls.as_ref().map(|certs| certs.join("ca.pem"))
    }

    async fn raw(&self) -> Result<redis::aio::MultiplexedConnection> {
        connect(&self.url(), self.ca().as_deref()).await
    }
}

impl RedisCluster {
    /// Starts three masters and joins them; `None` (after a loud skip) when `redis-server`
    /// or `redis-cli` is absent and the tests do not run as root.
    pub async fn start(test: &str) -> Result<Option<Self>> {
        Self::start_with(test, None).await
    }

    /// [`Self::start`] speaking only TLS (clients and the cluster bus), with certificates from
    /// a CA of the test's own ([`Self::ca_file`]); also `None` (after a loud skip) when the
    /// `openssl` CLI is absent and the tests do not run as root.
    pub async fn start_tls(test: &str) -> Result<Option<Self>> {
        if binary_named("openssl").is_none() {
            anyhow::ensure!(
                !is_root(),
                "openssl is not installed (tests/run installs it as root)"
            );
            skip(test, "openssl is not installed (apt-get install openssl)");
            return Ok(None);
        }
        let certs = tempfile::tempdir()?;
        make_certificates(certs.path())?;
        Self::start_with(test, Some(certs)).await
    }

    async fn start_with(test: &str, certs: Option<tempfile::TempDir>) -> Result<Option<Self>> {
        if !installed("redis-server") || !installed("redis-cli") {
            anyhow::ensure!(
                !is_root(),
                "redis-server or redis-cli is not installed (tests/run installs them as root)"
            );
            skip(
                test,
                "redis-server or redis-cli is not installed (apt-get install redis-server \
                 redis-tools)",
            );
            return Ok(None);
        }
        let mut nodes = Vec::new();
        for _ in 0..3 {
            let mut node = Node {
                child: None,
                port: free_port()?,
                bus: free_port()?,
                dir: tempfile::tempdir()?,
                tls: certs.as_ref().map(|c| c.path().to_path_buf()),
            };
            node.start().await?;
            nodes.push(node);
        }
        let mut create = Command::new("redis-cli");
        if let Some(certs) = &certs {
            create
                .arg("--tls")
                .arg("--cacert")
                .arg(certs.path().join("ca.pem"));
        }
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        // Bounded: it waits for the nodes to join for as long as it takes, forever when their
        // bus connections fail (a certificate the others refuse).
        let out = tokio::time::timeout(Duration::from_secs(30), create.output())
            .await
            .context("redis-cli --cluster create: the nodes did not join within 30 s")?
            .context("running redis-cli --cluster create")?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = Self { nodes, certs };
        cluster.wait_ok().await?;
        Ok(Some(cluster))
    }

    /// Waits until every running node says `cluster_state:ok` and knows all three masters.
    pub async fn wait_ok(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut ok = true;
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                let info: String = match n.raw().await {
                    Ok(mut c) => redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query_async(&mut c)
                        .await
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                };
                ok &= info.contains("cluster_state:ok") && info.contains("cluster_size:3");
            }
            if ok {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "the cluster did not become ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The private CA's certificate (PEM) of a [`Self::start_tls`] cluster.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.certs.as_ref().map(|c| c.path().join("ca.pem"))
    }

    /// Every node's `redis://127.0.0.1:<port>` (`rediss://` for TLS), in order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// `[store]` lines for this cluster: `url` the first node, `cluster_urls` the others.
    pub fn store_lines(&self) -> String {
        let urls = self.urls();
        format!(
            "kind = \"redis\"\ncluster = true\nurl = {:?}\ncluster_urls = {:?}\n",
            urls[0],
            &urls[1..]
        )
    }

    /// Kills node `i` (SIGKILL, as a crash would).
    pub async fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Starts node `i` again (empty; it rejoins with its slots from `nodes.conf`).
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.nodes[i].start().await
    }

    /// Every key of node `i` with its TTL in ms and the bytes of its value (strings as they
    /// are, hashes and sorted sets as all their fields and values).
    pub async fn dump_node(&self, i: usize) -> Result<Vec<(String, i64, Vec<u8>)>> {
        let mut c = self.nodes[i].raw().await?;
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut c).await?;
        let mut out = Vec::new();
        for k in keys {
            let ttl: i64 = redis::cmd("PTTL").arg(&k).query_async(&mut c).await?;
            let kind: String = redis::cmd("TYPE").arg(&k).query_async(&mut c).await?;
            let bytes = match kind.as_str() {
                "string" => redis::cmd("GET").arg(&k).query_async(&mut c).await?,
                "hash" => redis::cmd("HGETALL")
                    .arg(&k)
                    .query_async::<Vec<Vec<u8>>>(&mut c)
                    .await?
                    .concat(),
                "zset" => redis::cmd("ZRANGE")
                    .arg(&k)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<Vec<u8>>>(&mut c)
                    .await?
                    .concat(),
                _ => Vec::new(),
            };
            out.push((k, ttl, bytes));
        }
        Ok(out)
    }

    /// [`Self::dump_node`] of every node, with the node's index.
    pub async fn dump(&self) -> Result<Vec<(usize, String, i64, Vec<u8>)>> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            for (k, ttl, v) in self.dump_node(i).await? {
                out.push((i, k, ttl, v));
            }
        }
        Ok(out)
    }
}

/// A provider and two tokends (A, B) with the login flow on this cluster (`timeout` is
/// `store.timeout`; `extra`, more config sections).
pub async fn pair(cluster: &RedisCluster, timeout: &str, extra: &str) -> Result<Pair> {
    pair_with(&cluster.store_lines(), timeout, extra).await
}
