//! The revocation list shared by every tokend instance on one Redis (`[store] kind = "redis"`,
//! issue #12). Verification never waits for Redis: it reads the local lists in `sessions`;
//! this module keeps them current. A revocation made here is queued ([`Outbox::publish`]),
//! written to Redis (one key per entry, expiring with it; see `wire`) and announced on a
//! pub/sub channel by a writer task; a subscriber task applies what the others announce, and
//! resyncs fully (a SCAN of the list) every [`RESYNC_INTERVAL`] and on every (re)connection,
//! which also covers messages missed while disconnected. When Redis is unreachable the
//! revocation applies here at once, and everything this instance holds is written again when
//! Redis answers. Seen logout-token `jti`s are single-use across instances (SET NX).
//! Each outage is logged once when it starts and once when it ends.
//!
//! In a Redis Cluster (`store.cluster`) each entry is its own key in its own slot (its `SET`,
//! then its `PUBLISH`, the entries concurrently, never one pipeline), the resync scans every
//! master (see `store::redis_conn`), and the subscriber listens on one node: a `PUBLISH` on
//! any node of a cluster reaches the subscribers of every node. When that node goes away the
//! subscriber tries the next seed (`url`, then `cluster_urls`, round and round), resyncing
//! on the new subscription.

mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::try_join_all;
use tokio::sync::{mpsc, watch};

use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::sessions::{Change, Outbox, Sessions};
use crate::store::redis::{seal_key, within};
use crate::store::redis_conn::{Conn, client_for, urls};
use crate::store::{BoxFuture, OpenError, SealKey, Unavailable};
use crate::verify::now_unix;

/// How often the full list is read again (besides every (re)connection).
pub const RESYNC_INTERVAL: Duration = Duration::from_secs(30);

/// How often the writer retries after Redis failed, and the subscriber reconnects.
const RETRY: Duration = Duration::from_secs(1);

/// Applies a change another instance made (ends local sessions, forgets cached
/// verifications); built by the crate root, which holds the verifier in force.
pub type Apply = Arc<dyn Fn(Change) + Send + Sync>;

/// What both tasks and the outbox share.
struct Inner {
    /// Writes, reads and `jti` claims (one server or a cluster); reconnects by itself.
    manager: Conn,
    /// Open the dedicated pub/sub connection: the server, or each cluster seed in turn.
    clients: Vec<redis::Client>,
    /// Seals revocation entries (who and why are not left in clear).
    seal: SealKey,
    /// `store.key_prefix`.
    prefix: String,
    /// `store.timeout`, bounding every call.
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// The operations failing now (with the failure logged), so an outage is logged once
    /// when it starts and once when it ends, not per call.
    failing: Mutex<HashMap<&'static str, String>>,
}

/// The [`Outbox`] the sessions registry publishes to.
struct RedisOutbox {
    inner: Arc<Inner>,
    /// To the writer task.
    queue: mpsc::UnboundedSender<Change>,
}

impl std::fmt::Debug for RedisOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOutbox")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// Starts sharing `sessions`' revocations through `[store]`'s Redis: installs the outbox
/// and spawns the writer and the subscriber, which end when `stop` turns true. Connects
/// nothing before returning. Must be called within a tokio runtime.
pub fn start(
    config: &StoreConfig,
    sessions: &Arc<Sessions>,
    apply: Apply,
    metrics: &Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> Result<(), OpenError> {
    let clients = urls(config)
        .into_iter()
        .map(|url| client_for(config, url))
        .collect::<Result<_, _>>()?;
    let inner = Arc::new(Inner {
        manager: Conn::open(config)?,
        clients,
        seal: seal_key(config)?,
        prefix: config.key_prefix.clone(),
        timeout: config.timeout,
        metrics: metrics.clone(),
        failing: Mutex::new(HashMap::new()),
    });
    let (queue, rx) = mpsc::unbounded_channel();
    sessions.set_outbox(Arc::new(RedisOutbox {
        inner: inner.clone(),
        queue,
    }));
    tokio::spawn(writer(inner.clone(), rx, sessions.clone(), stop.clone()));
    tokio::spawn(subscriber(inner, apply, stop));
    Ok(())
}

impl Outbox for RedisOutbox {
    fn publish(&self, change: Change) {
        // Fails only when the writer ended (shutdown).
        let _ = self.queue.send(change);
    }

    fn claim_jti(&self, jti: &str, until: i64) -> BoxFuture<'_, Result<bool, Unavailable>> {
        let key = wire::jti_key(&self.inner.prefix, jti);
        Box::pin(async move {
            let ttl = until.saturating_sub(now_unix()).max(1);
            let mut conn = self.inner.manager.clone();
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key).arg(1).arg("NX").arg("EX").arg(ttl);
            let call = cmd.query_async::<Option<String>>(&mut conn);
            let set = self.inner.bounded("jti", call).await?;
            Ok(set.is_some())
        })
    }
}

impl Inner {
    /// Runs `call` within the timeout; logs the first failure of `op` and its recovery, and
    /// counts every failure.
    async fn bounded<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, Unavailable> {
        let result = within(self.timeout, call).await;
        self.note(op, result.as_ref().err().map(|e| e.0.as_str()));
        result
    }

    fn note(&self, op: &'static str, error: Option<&str>) {
        let mut failing = self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match error {
            Some(e) => {
                self.metrics.sync_errors.with_label_values(&[op]).inc();
                // Once per outage of `op`, whatever the errors in it (refused, timed out).
                if !failing.contains_key(op) {
                    tracing::warn!(op, error = %e, "revocation sync: Redis failed; revocations apply here and are shared when it answers");
                    failing.insert(op, e.to_string());
                }
            }
            None => {
                if failing.remove(op).is_some() {
                    tracing::info!(op, "revocation sync: Redis answers again");
                }
            }
        }
    }

    /// Writes the changes and announces each: its `SET`, then its `PUBLISH` (the announcement
    /// must find the entry), the entries all under way at once. Not one pipeline: in a
    /// cluster each entry's key, and the channel, hash to slots of their own.
    async fn write(&self, changes: &[Change]) -> Result<(), Unavailable> {
        let now = now_unix();
        let channel = wire::channel(&self.prefix);
        let mut calls = Vec::new();
        let mut published = 0;
        for change in changes {
            let ttl = wire::until(change).saturating_sub(now);
            if ttl <= 0 {
                continue;
            }
            let name = wire::key(&self.prefix, change);
            let value = match wire::encode(&self.seal, &name, change) {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "revocation sync: cannot encode a revocation");
                    continue;
                }
            };
            let mut set = redis::cmd("SET");
            set.arg(&name).arg(value).arg("EX").arg(ttl);
            let mut publish = redis::cmd("PUBLISH");
            publish.arg(&channel).arg(&name);
            let mut conn = self.manager.clone();
            calls.push(async move {
                set.query_async::<()>(&mut conn).await?;
                publish.query_async::<()>(&mut conn).await
            });
            published += 1;
        }
        if published == 0 {
            return Ok(());
        }
        self.bounded("publish", try_join_all(calls)).await?;
        self.metrics
            .sync_messages
            .with_label_values(&["published"])
            .inc_by(published);
        Ok(())
    }

    /// Reads one announced key and applies it.
    async fn received(&self, name: &str, apply: &Apply) {
        self.metrics
            .sync_messages
            .with_label_values(&["received"])
            .inc();
        let mut conn = self.manager.clone();
        let mut cmd = redis::cmd("GET");
        cmd.arg(name);
        let call = cmd.query_async::<Option<Vec<u8>>>(&mut conn);
        // A failure here is covered by the next resync.
        if let Ok(Some(value)) = self.bounded("read", call).await {
            self.apply_value(name, &value, apply);
        }
    }

    fn apply_value(&self, name: &str, value: &[u8], apply: &Apply) {
        match wire::decode(&self.seal, name, value) {
            Ok(change) => apply(change),
            Err(e) => tracing::warn!(error = %e, "revocation sync: an entry in Redis was refused"),
        }
    }

    /// Reads the whole list on every node (each master of a cluster) and applies it (what is
    /// known already changes nothing).
    async fn resync(&self, apply: &Apply) -> Result<usize, Unavailable> {
        let mut applied = 0;
        for conn in self.bounded("resync", self.manager.nodes()).await? {
            applied += self.resync_node(conn, apply).await?;
        }
        Ok(applied)
    }

    /// [`Self::resync`] on one node.
    async fn resync_node(
        &self,
        mut conn: crate::store::redis_conn::NodeConn,
        apply: &Apply,
    ) -> Result<usize, Unavailable> {
        let mut applied = 0;
        for pattern in wire::patterns(&self.prefix) {
            let mut cursor: u64 = 0;
            loop {
                let mut cmd = redis::cmd("SCAN");
                cmd.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000);
                let call = cmd.query_async::<(u64, Vec<String>)>(&mut conn);
                let (next, keys) = self.bounded("resync", call).await?;
                if !keys.is_empty() {
                    let mut pipe = redis::pipe();
                    for k in &keys {
                        pipe.cmd("GET").arg(k);
                    }
                    let values: Vec<Option<Vec<u8>>> =
                        self.bounded("resync", pipe.query_async(&mut conn)).await?;
                    for (name, value) in keys.iter().zip(values) {
                        if let Some(value) = value {
                            self.apply_value(name, &value, apply);
                            applied += 1;
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(applied)
    }
}

/// Writes what this instance revokes. After a failure (and once at start) it writes the whole
/// local list, retrying every [`RETRY`], so nothing made during an outage is lost, however
/// long it was.
async fn writer(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<Change>,
    sessions: Arc<Sessions>,
    mut stop: watch::Receiver<bool>,
) {
    let mut pending: Vec<Change> = Vec::new();
    // The whole list is written once at start too: what the sessions snapshot restored (it
    // is loaded before the first tick) may be missing from Redis (a Redis without
    // persistence restarted meanwhile).
    let mut behind = true;
    let mut retry = tokio::time::interval_at(tokio::time::Instant::now() + RETRY, RETRY);
    loop {
        tokio::select! {
            change = rx.recv() => match change {
                Some(change) => {
                    pending.push(change);
                    while let Ok(more) = rx.try_recv() {
                        pending.push(more);
                    }
                }
                None => return,
            },
            _ = retry.tick() => {}
            _ = stop.changed() => return,
        }
        if behind {
            pending = sessions.revocation_entries(now_unix());
        }
        if pending.is_empty() {
            continue;
        }
        match inner.write(&pending).await {
            Ok(()) => {
                if behind {
                    tracing::info!(
                        entries = pending.len(),
                        "revocation sync: the local revocation list was written to Redis again"
                    );
                }
                behind = false;
                pending.clear();
            }
            Err(_) => {
                behind = true;
                pending.clear();
            }
        }
    }
}

/// Applies what other instances announce; resyncs on every connection and every
/// [`RESYNC_INTERVAL`]; reconnects while Redis is away, to the next seed of a cluster at
/// once, and every [`RETRY`] once each was tried.
async fn subscriber(inner: Arc<Inner>, apply: Apply, mut stop: watch::Receiver<bool>) {
    let channel = wire::channel(&inner.prefix);
    // The seed tried next, and how many failed in a row.
    let (mut seed, mut failed) = (0, 0);
    loop {
        if *stop.borrow() {
            return;
        }
        let client = &inner.clients[seed % inner.clients.len()];
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok(pubsub)
        };
        let pubsub = match inner.bounded("subscribe", connected).await {
            Ok(p) => p,
            Err(_) => {
                inner.metrics.sync_connected.set(0);
                seed += 1;
                failed += 1;
                if failed < inner.clients.len() {
                    continue;
                }
                failed = 0;
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        failed = 0;
        inner.metrics.sync_connected.set(1);
        let (mut sink, mut stream) = pubsub.split();
        let mut tick = tokio::time::interval(RESYNC_INTERVAL);
        loop {
            tokio::select! {
                msg = stream.next() => match msg {
                    Some(msg) => {
                        if let Ok(name) = msg.get_payload::<String>() {
                            inner.received(&name, &apply).await;
                        }
                    }
                    None => {
                        inner.note("subscribe", Some("the pub/sub connection was lost"));
                        break;
                    }
                },
                // The first tick is at once: the resync after (re)subscribing.
                _ = tick.tick() => {
                    let alive = inner.bounded("subscribe", sink.ping::<redis::Value>()).await.is_ok();
                    let synced = alive && inner.resync(&apply).await.is_ok();
                    let result = if synced { "ok" } else { "error" };
                    inner.metrics.sync_resyncs.with_label_values(&[result]).inc();
                    if !alive {
                        break;
                    }
                }
                _ = stop.changed() => return,
            }
        }
        inner.metrics.sync_connected.set(0);
        // That node went away (or stopped answering): the next seed first.
        seed += 1;
    }
}
