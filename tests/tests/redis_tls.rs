//! Issue #12: the Redis store over TLS (`rediss://`) with a private CA (`store.tls_ca_file`),
//! against a real `redis-server` speaking only TLS: with the CA, a code is issued and
//! redeemed; without it, the server's certificate is refused, the code endpoints answer 503
//! `store_unavailable`, and what tokend says names the certificate problem, no secret.
//! The same against a Redis Cluster speaking only TLS (three masters, `tls-cluster yes`,
//! `rediss://` seeds): with the CA a code issued on A is redeemed on B; without it, 503.

use std::time::Duration;

use serde_json::json;
use tokend_e2e::redis_cluster::RedisCluster;
use tokend_e2e::redis_server::{Pair, RedisServer, eventually, pair_with};
use tokend_e2e::{Provider, Tokend, TokendConfig};

type R = anyhow::Result<()>;

/// A tokend on `redis`'s store; `ca` is `store.tls_ca_file` (none: the system's roots).
async fn tokend(
    provider: &Provider,
    redis: &RedisServer,
    ca: Option<&std::path::Path>,
    key_dir: &tempfile::TempDir,
) -> anyhow::Result<Tokend> {
    let key_file = key_dir.path().join("store.key");
    std::fs::write(
        &key_file,
        "5f1c0a7e93b24d68a0c1e2f3041526374859a6b7c8d9eafb0c1d2e3f40516273\n",
    )?;
    let mut cfg = TokendConfig::for_provider(provider);
    cfg.tail = format!(
        "\n[store]\nkind = \"redis\"\nurl = {:?}\nencryption_key_file = {key_file:?}\n\
         timeout = \"5s\"\n",
        redis.url()
    );
    if let Some(ca) = ca {
        cfg.tail.push_str(&format!("tls_ca_file = {ca:?}\n"));
    }
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    Ok(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_rediss_with_a_private_ca_issues_and_redeems() -> R {
    let Some(redis) = RedisServer::start_tls("issue_12_rediss_with_a_private_ca").await? else {
        return Ok(());
    };
    assert!(redis.url().starts_with("rediss://127.0.0.1:"));
    let provider = Provider::start().await?;
    let keys = tempfile::tempdir()?;
    let t = tokend(&provider, &redis, Some(&redis.ca_file()), &keys).await?;
    let tokens = provider.login("alice").await?;
    let refresh = tokens.refresh_token.clone().unwrap_or_default();
    let issued = t
        .post(
            "/v1/codes",
            json!({"access_token": tokens.access_token, "refresh_token": refresh}).to_string(),
        )
        .await?;
    assert_eq!(issued.status, 201, "{:?}\n{}", issued.body, t.output.text());
    let code = issued.json()["code"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    // The record went over TLS into this very server.
    let dump = redis.dump().await?;
    assert!(
        dump.iter().any(|(k, _, _)| k.starts_with("tokend:code:{")),
        "{dump:?}"
    );
    let redeemed = t
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    assert_eq!(
        redeemed.json()["access_token"],
        tokens.access_token.as_str()
    );
    assert_eq!(redeemed.json()["refresh_token"], refresh.as_str());
    let ready = t.get("/readyz", &[]).await?;
    assert_eq!(ready.json()["store"]["healthy"], true, "{:?}", ready.body);
    // The revocation sync shares the store's client: it is subscribed over the same TLS.
    eventually(
        "the revocation sync connects",
        Duration::from_secs(10),
        || async { Ok(t.metrics().await?.get("tokend_revocation_sync_connected") == 1.0) },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", t.output.text()))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_rediss_without_the_ca_refuses_the_server_certificate() -> R {
    let Some(redis) = RedisServer::start_tls("issue_12_rediss_without_the_ca").await? else {
        return Ok(());
    };
    let provider = Provider::start().await?;
    let keys = tempfile::tempdir()?;
    let t = tokend(&provider, &redis, None, &keys).await?;
    let tokens = provider.login("alice").await?;
    let issued = t
        .post(
            "/v1/codes",
            json!({"access_token": tokens.access_token}).to_string(),
        )
        .await?;
    assert_eq!(
        (issued.status, issued.reason().as_str()),
        (503, "store_unavailable"),
        "{:?}",
        issued.body
    );
    assert!(issued.headers.contains_key("retry-after"));
    assert!(redis.dump().await?.is_empty(), "nothing reached Redis");
    assert_eq!(
        t.metrics().await?.get("tokend_revocation_sync_connected"),
        0.0
    );
    // What tokend says (the answer, /readyz, the log) names the certificate, and no secret.
    let ready = t.get("/readyz", &[]).await?;
    let error = ready.json()["store"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let log = t.output.text();
    eprintln!("503 body: {:?}\n/readyz store error: {error}", issued.body);
    for said in [format!("{:?}", issued.body), error.clone(), log.clone()] {
        assert!(!said.contains(&tokens.access_token), "token shown: {said}");
        assert!(!said.contains("5f1c0a7e93b24d68"), "sealing key shown");
    }
    assert!(
        error.to_lowercase().contains("certificate"),
        "/readyz: {error}"
    );
    let logged = log
        .lines()
        .find(|l| l.contains("Redis") && l.to_lowercase().contains("certificate"))
        .unwrap_or_else(|| panic!("no certificate problem in the log:\n{log}"));
    eprintln!("logged: {logged}");
    Ok(())
}

/// Two tokends on a TLS cluster's `rediss://` seeds, with its CA as `tls_ca_file` or not.
async fn cluster_pair(cluster: &RedisCluster, with_ca: bool) -> anyhow::Result<Pair> {
    let mut store = cluster.store_lines();
    assert!(store.contains("url = \"rediss://127.0.0.1:"), "{store}");
    assert!(store.contains("cluster_urls = [\"rediss://"), "{store}");
    if with_ca {
        let ca = cluster.ca_file().expect("a TLS cluster");
        store.push_str(&format!("tls_ca_file = {ca:?}\n"));
    }
    pair_with(&store, "5s", "").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_rediss_cluster_with_a_private_ca_redeems_across_instances() -> R {
    let Some(cluster) = RedisCluster::start_tls("issue_12_rediss_cluster_with_a_ca").await? else {
        return Ok(());
    };
    let Pair { provider, a, b, .. } = cluster_pair(&cluster, true).await?;
    let tokens = provider.login("alice").await?;
    let mut codes = Vec::new();
    // Several codes, so their records land on more than one master.
    for _ in 0..6 {
        let issued = a
            .post(
                "/v1/codes",
                json!({"access_token": tokens.access_token}).to_string(),
            )
            .await?;
        assert_eq!(issued.status, 201, "{:?}\n{}", issued.body, a.output.text());
        codes.push(
            issued.json()["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    let holding: std::collections::BTreeSet<usize> = (cluster.dump().await?.into_iter())
        .filter(|(_, k, _, _)| k.starts_with("tokend:code:{"))
        .map(|(node, ..)| node)
        .collect();
    assert!(holding.len() >= 2, "codes on masters {holding:?} only");
    for code in &codes {
        let redeemed = b
            .post("/v1/codes/redeem", json!({"code": code}).to_string())
            .await?;
        assert_eq!(
            redeemed.status,
            200,
            "{:?}\n{}",
            redeemed.body,
            b.output.text()
        );
        assert_eq!(
            redeemed.json()["access_token"],
            tokens.access_token.as_str()
        );
    }
    for t in [&a, &b] {
        let ready = t.get("/readyz", &[]).await?;
        assert_eq!(ready.json()["store"]["healthy"], true, "{:?}", ready.body);
        eventually(
            "the revocation sync connects over TLS",
            Duration::from_secs(10),
            || async { Ok(t.metrics().await?.get("tokend_revocation_sync_connected") == 1.0) },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", t.output.text()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_rediss_cluster_without_the_ca_refuses_the_certificates() -> R {
    let Some(cluster) = RedisCluster::start_tls("issue_12_rediss_cluster_without_the_ca").await?
    else {
        return Ok(());
    };
    let Pair { provider, a, .. } = cluster_pair(&cluster, false).await?;
    let tokens = provider.login("alice").await?;
    let issued = a
        .post(
            "/v1/codes",
            json!({"access_token": tokens.access_token}).to_string(),
        )
        .await?;
    assert_eq!(
        (issued.status, issued.reason().as_str()),
        (503, "store_unavailable"),
        "{:?}",
        issued.body
    );
    assert!(issued.headers.contains_key("retry-after"));
    assert!(cluster.dump().await?.is_empty(), "nothing reached Redis");
    let ready = a.get("/readyz", &[]).await?;
    let error = ready.json()["store"]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    eprintln!("503 body: {:?}\n/readyz store error: {error}", issued.body);
    assert_eq!(ready.json()["store"]["healthy"], false, "{:?}", ready.body);
    assert!(
        error.to_lowercase().contains("certificate"),
        "/readyz: {error}\n{}",
        a.output.text()
    );
    assert!(!error.contains(&tokens.access_token));
    Ok(())
}
