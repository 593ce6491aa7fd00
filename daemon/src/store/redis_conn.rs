//! The connection to Redis that the store, its sessions and the revocation sync share: one
//! server (`store.url`, the crate's `ConnectionManager`) or a Redis Cluster (`store.cluster`,
//! the crate's cluster connection, seeded by `url` and `cluster_urls`), behind one [`Conn`]
//! so every command and Lua script is written once; and the walk over every node that a
//! `SCAN` needs in a cluster.
//!
//! Both reconnect by themselves and connect nothing until the first call. In a cluster the
//! crate routes each command by its key's slot (following `MOVED`/`ASK`), `PING` and
//! `SCRIPT LOAD` go to every master, and a pipeline must stay within one slot: tokend's
//! multi-key work is therefore a single multi-key command the crate splits per shard (`DEL`),
//! or concurrent single-key calls, or a pipeline bound to one node ([`NodeConn`]).
//!
//! Why `SCAN` per master rather than index sets: the code count, the session listing and the
//! revocation resync read what is in Redis now, expiries included, with no second structure
//! that a crash between two writes (or a key expiring on its own) would leave stale. A `SCAN`
//! only sees the node it runs on, so [`Conn::nodes`] lists the masters (`CLUSTER SLOTS`, the
//! addresses as the crate's slot map has them) and each is scanned to its end with its own
//! cursor, the reads of what it found pipelined to that same node. A master that does not
//! answer fails the whole walk (the caller keeps its last count, or resyncs later) rather than
//! giving a partial answer; the health check `PING`s each master the same way.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::{Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value};

use super::OpenError;
use crate::config::StoreConfig;

/// A connection to Redis: one server or a cluster. Cheap to clone (both are handles to one
/// multiplexed connection per node).
#[derive(Clone)]
pub enum Conn {
    /// `store.url` alone: one server (or a Sentinel-managed one behind a stable address).
    Server(ConnectionManager),
    /// `store.cluster = true`: every master of the cluster, found from the seeds.
    Cluster(ClusterConnection),
}

/// A connection bound to one node: what a `SCAN` cursor and the reads of the keys it found
/// must go to (in a cluster, the master that holds them; a pipeline of them spans slots).
#[derive(Clone)]
pub struct NodeConn {
    /// The shared connection the calls go through (the cluster one routes them by address).
    conn: Conn,
    /// The cluster master's `host`, `port` as the crate's slot map names it; `None` for a
    /// single server.
    node: Option<(String, u16)>,
}

impl std::fmt::Debug for NodeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConn")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

/// Every Redis URL of `[store]`: `url`, then `cluster_urls` (cluster seeds).
pub fn urls(config: &StoreConfig) -> Vec<&str> {
    let mut out = vec![config.url.as_deref().unwrap_or_default()];
    if config.cluster {
        out.extend(config.cluster_urls.iter().map(String::as_str));
    }
    out
}

/// A client for one Redis URL with `[store]`'s ACL user, password, and for `rediss://` the
/// CA certificates of `tls_ca_file` (else the system's roots); connects nothing yet.
pub fn client_for(config: &StoreConfig, url: &str) -> Result<redis::Client, OpenError> {
    let bad = |e: redis::RedisError| OpenError::Url(e.to_string());
    let info = url.into_connection_info().map_err(bad)?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &config.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    let info = info.set_redis_settings(settings);
    match &config.tls_ca {
        Some(pem) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            },
        )
        .map_err(|e| OpenError::Ca(e.to_string())),
        None => redis::Client::open(info).map_err(bad),
    }
}

impl Conn {
    /// A lazily connecting connection for `[store]`, every call bounded by `store.timeout`,
    /// reconnecting by itself. Must be called within a tokio runtime.
    pub fn open(config: &StoreConfig) -> Result<Self, OpenError> {
        let bad = |e: redis::RedisError| OpenError::Url(e.to_string());
        if !config.cluster {
            let client = client_for(config, config.url.as_deref().unwrap_or_default())?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_secs(1));
            return ConnectionManager::new_lazy_with_config(client, manager_config)
                .map(Conn::Server)
                .map_err(bad);
        }
        // The seeds are parsed here, so what `build` refuses below is the CA file (the crate
        // reports a certificate it cannot parse as an I/O error, not as a client config one).
        let seeds = urls(config)
            .into_iter()
            .map(IntoConnectionInfo::into_connection_info)
            .collect::<Result<Vec<_>, _>>()
            .map_err(bad)?;
        let mut builder = ClusterClientBuilder::new(seeds)
            .connection_timeout(config.timeout)
            .response_timeout(config.timeout)
            // Enough for a MOVED/ASK while slots migrate; `store.timeout` bounds it all.
            .retries(3)
            .max_retry_wait(1000);
        if let Some(user) = &config.username {
            builder = builder.username(user);
        }
        if let Some(password) = &config.password {
            builder = builder.password(password.expose());
        }
        if let Some(pem) = &config.tls_ca {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.clone()),
            });
        }
        let client = builder.build().map_err(|e| match &config.tls_ca {
            Some(_) => OpenError::Ca(e.to_string()),
            None => bad(e),
        })?;
        Ok(Conn::Cluster(
            client.get_pending_async_connection_with_config(ClusterConfig::new()),
        ))
    }

    /// The nodes holding keys: the server itself, or every master of the cluster as
    /// `CLUSTER SLOTS` names them — all that own slots, including one that is away (a call to
    /// it fails, so a walk over them is never silently partial).
    pub async fn nodes(&self) -> redis::RedisResult<Vec<NodeConn>> {
        let Conn::Cluster(cluster) = self else {
            return Ok(vec![NodeConn {
                conn: self.clone(),
                node: None,
            }]);
        };
        let mut cluster = cluster.clone();
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SLOTS");
        let ranges: Vec<Value> = cmd.query_async(&mut cluster).await?;
        let mut masters: Vec<(String, u16)> = Vec::new();
        for range in ranges {
            // [first slot, last slot, [host, port, id, …] (the master), replicas…]
            let Value::Array(parts) = range else {
                return Err(unexpected("CLUSTER SLOTS: a slot range is not an array"));
            };
            let Some(Value::Array(master)) = parts.get(2) else {
                return Err(unexpected("CLUSTER SLOTS: a slot range names no master"));
            };
            // A bulk string, as Redis sends it and the crate's own slot map reads it.
            let host = match master.first() {
                Some(Value::BulkString(b)) => String::from_utf8(b.clone()).ok(),
                _ => None,
            };
            let port = match master.get(1) {
                Some(Value::Int(p)) => u16::try_from(*p).ok(),
                _ => None,
            };
            let (Some(host), Some(port)) = (host, port) else {
                return Err(unexpected(
                    "CLUSTER SLOTS: a master's address is not host, port",
                ));
            };
            if !masters.contains(&(host.clone(), port)) {
                masters.push((host, port));
            }
        }
        if masters.is_empty() {
            return Err(unexpected("CLUSTER SLOTS: no master owns a slot"));
        }
        Ok(masters
            .into_iter()
            .map(|node| NodeConn {
                conn: self.clone(),
                node: Some(node),
            })
            .collect())
    }
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((ErrorKind::Client, what))
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Server(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Server(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Server(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl NodeConn {
    fn route(&self) -> Option<SingleNodeRoutingInfo> {
        self.node
            .as_ref()
            .map(|(host, port)| SingleNodeRoutingInfo::ByAddress {
                host: host.clone(),
                port: *port,
            })
    }
}

impl ConnectionLike for NodeConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let route = self.route();
        match (&mut self.conn, route) {
            (Conn::Cluster(c), Some(route)) => {
                Box::pin(c.route_command(cmd.clone(), RoutingInfo::SingleNode(route)))
            }
            (conn, _) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        let route = self.route();
        match (&mut self.conn, route) {
            (Conn::Cluster(c), Some(route)) => {
                Box::pin(c.route_pipeline(pipeline.clone(), offset, count, route))
            }
            (conn, _) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
