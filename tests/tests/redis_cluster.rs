//! Issue #12 on a real Redis Cluster (three `redis-server` masters, `store.cluster = true`)
//! with TWO real tokend processes: a code issued on A is redeemed on B, exactly once under
//! 1,000 concurrent redemptions; the keys are spread over the masters, all expire, and none
//! shows a secret; the code count (capacity), the code and session listings and the
//! revocation resync see the keys of every master, not just one; a revocation on A holds on
//! B within a second; 20 refreshes over A and B make one grant; when a master goes away the
//! codes on it answer 503 `store_unavailable` (never a hang), verification goes on, the
//! revocation subscriber moves to another seed, and all recovers when the master is back; with
//! no node reachable at start, tokend starts, answers 503 and recovers once the cluster is up.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::json;
use tokend_e2e::flow::{concurrent_refreshes, log_in};
use tokend_e2e::redis_cluster::{RedisCluster, pair};
use tokend_e2e::redis_server::{Pair, eventually, redeem_race};
use tokend_e2e::{Answer, Tokend, jwt_payload, now};
use tokend_shared::SessionQuery;

type R = anyhow::Result<()>;

async fn issue(t: &Tokend, access: &str, refresh: &str) -> anyhow::Result<Answer> {
    t.post(
        "/v1/codes",
        json!({"access_token": access, "refresh_token": refresh}).to_string(),
    )
    .await
}

async fn issued(t: &Tokend, access: &str, refresh: &str) -> anyhow::Result<String> {
    let a = issue(t, access, refresh).await?;
    anyhow::ensure!(a.status == 201, "POST /v1/codes answered {}", a.status);
    Ok(a.json()["code"].as_str().unwrap_or_default().to_string())
}

/// Every key on every master: each expires, and none (nor its value) shows one of `secrets`
/// or a part of a JWT among them. Returns the nodes holding keys starting with `prefix`.
async fn check_cluster(
    cluster: &RedisCluster,
    prefix: &str,
    secrets: &[&str],
) -> anyhow::Result<BTreeSet<usize>> {
    let dump = cluster.dump().await?;
    assert!(!dump.is_empty(), "tokend wrote to the cluster");
    let mut holding = BTreeSet::new();
    for (node, key, ttl, value) in &dump {
        assert!(*ttl > 0, "{key} on node {node} has no TTL ({ttl})");
        let text = String::from_utf8_lossy(value);
        for s in secrets.iter().filter(|s| !s.is_empty()) {
            assert!(
                !key.contains(s) && !text.contains(s),
                "{key} shows a secret"
            );
            for part in s.split('.').filter(|p| p.len() >= 16) {
                assert!(!text.contains(part), "{key} shows part of a token");
            }
        }
        if key.starts_with(prefix) {
            holding.insert(*node);
        }
    }
    Ok(holding)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_cluster_codes_are_redeemed_once_counted_and_listed_across_every_master() -> R {
    let Some(cluster) = RedisCluster::start("issue_12_cluster_codes").await? else {
        return Ok(());
    };
    // 13 codes at most: enough that they land on every master (or nearly), few enough to fill.
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&cluster, "5s", "\n[codes]\nmax_outstanding = 13\n").await?;
    let tokens = provider.login("alice").await?;
    let refresh = tokens.refresh_token.clone().unwrap_or_default();
    anyhow::ensure!(!refresh.is_empty(), "the provider gave a refresh token");

    // Issued on A, redeemed on B; again on A is a replay.
    let code = issued(&a, &tokens.access_token, &refresh).await?;
    let redeemed = b
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    assert_eq!(
        redeemed.json()["access_token"],
        tokens.access_token.as_str()
    );
    let again = a
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(
        (again.status, again.reason().as_str()),
        (410, "code_already_redeemed")
    );

    // 1,000 concurrent redemptions of one code, spread over A and B: exactly one wins.
    let contested = issued(&b, &tokens.access_token, &refresh).await?;
    let started = Instant::now();
    let (won, replayed, other) = redeem_race(&[&a, &b], &contested, 1000).await?;
    eprintln!(
        "1000 concurrent redemptions over two instances on a 3-master cluster: {:?}",
        started.elapsed()
    );
    assert_eq!((won, replayed), (1, 999), "other answers: {other:?}");

    // Fill the capacity from both instances; the codes spread over the masters.
    let mut pending = Vec::new();
    for i in 0..13 {
        let t = if i % 2 == 0 { &a } else { &b };
        pending.push(issued(t, &tokens.access_token, &refresh).await?);
    }
    let mut secrets: Vec<&str> = vec![
        code.as_str(),
        contested.as_str(),
        tokens.access_token.as_str(),
        refresh.as_str(),
    ];
    secrets.extend(pending.iter().map(String::as_str));
    let holding = check_cluster(&cluster, "tokend:code:{", &secrets).await?;
    assert!(
        holding.len() >= 2,
        "13 codes on more than one master: {holding:?}"
    );

    // B counts (and lists) the codes of every master, A's included: it is full.
    let admin_b = b.admin()?;
    eventually("B counts all 13 codes", Duration::from_secs(10), || async {
        Ok(admin_b.overview().await?.store.codes_outstanding == 13)
    })
    .await?;
    eventually("B lists all 13 codes", Duration::from_secs(10), || async {
        Ok(admin_b.codes().await?.codes.len() == 13)
    })
    .await?;
    // A too, before it is asked: its count is its last scan plus its own puts since, so until
    // its monitor rescans it may not have seen B's last codes.
    let admin_a = a.admin()?;
    eventually("A counts all 13 codes", Duration::from_secs(10), || async {
        Ok(admin_a.overview().await?.store.codes_outstanding == 13)
    })
    .await?;
    for t in [&b, &a] {
        let full = issue(t, &tokens.access_token, &refresh).await?;
        assert_eq!(
            (full.status, full.reason().as_str()),
            (503, "capacity_exceeded"),
            "{:?}",
            full.body
        );
    }
    for t in [&a, &b] {
        t.output.assert_free_of(&secrets);
    }
    Ok(())
}

/// Polls `t` until it refuses `token` with `reason`; returns how long that took.
async fn refused_within(
    t: &Tokend,
    token: &str,
    reason: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let a = t.verify(token).await?;
        if a.status == 401 && a.reason() == reason {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "not refused with {reason} within {limit:?} (last answer {})",
            a.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `t`'s revocation subscriber is connected.
async fn subscribed(t: &Tokend) -> R {
    eventually("subscribed", Duration::from_secs(10), || async {
        Ok(t.metrics().await?.get("tokend_revocation_sync_connected") == 1.0)
    })
    .await
}

/// A third tokend on A's config (its own socket, any TCP port), started now: it knows only
/// what it reads from Redis.
async fn newcomer(a: &Tokend) -> anyhow::Result<Tokend> {
    let dir = tempfile::tempdir()?;
    let text = std::fs::read_to_string(a.config_path())?
        .replace(
            &*a.dir.path().to_string_lossy(),
            &dir.path().to_string_lossy(),
        )
        .lines()
        .map(|l| {
            if l.starts_with("http = ") {
                "http = \"127.0.0.1:0\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let secret = a.dir.path().join("client_secret");
    if secret.exists() {
        std::fs::copy(&secret, dir.path().join("client_secret"))?;
    }
    let path = dir.path().join("tokend.toml");
    std::fs::write(&path, text)?;
    let socket = a
        .socket
        .as_ref()
        .and_then(|s| s.file_name())
        .map(|f| dir.path().join(f));
    let c = Tokend::start_at(&path, dir, socket, true).await?;
    c.wait_ready().await?;
    Ok(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_cluster_revocations_reach_the_other_instance_and_a_newcomer_resyncs_all() -> R {
    let Some(cluster) = RedisCluster::start("issue_12_cluster_revocations").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&cluster, "5s", "").await?;
    let users = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "ivan", "judy", "mallory",
    ];
    let mut tokens = Vec::new();
    for u in users {
        let t = provider.login(u).await?.access_token;
        assert_eq!(b.verify(&t).await?.status, 200, "{u} verifies on B");
        tokens.push(t);
    }
    subscribed(&b).await?;

    // A back-channel logout received by A: refused on B within a second.
    let sid = jwt_payload(&tokens[0])["sid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let jti = format!("cluster-{}", now());
    let answer = a
        .backchannel_logout(&provider.logout_token(&sid, &jti).await?)
        .await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let took = refused_within(&b, &tokens[0], "token_revoked", Duration::from_secs(1))
        .await
        .map_err(|e| anyhow::anyhow!("{e}\nA:\n{}\nB:\n{}", a.output.text(), b.output.text()))?;
    eprintln!("back-channel logout on A refused on B (cluster) after {took:?}");

    // An operator's revocation of each other user on A: on B within a second each.
    let admin_a = a.admin()?;
    for (u, t) in users.iter().zip(&tokens).skip(1) {
        admin_a.revoke_user(u).await?;
        let took = refused_within(&b, t, "revoked_by_admin", Duration::from_secs(1)).await?;
        eprintln!("admin revocation of {u} on A refused on B (cluster) after {took:?}");
    }

    // The entries are spread over the masters, expire, and show no sid, user or token.
    let mut secrets = vec![sid.as_str(), jti.as_str()];
    secrets.extend(users);
    secrets.extend(tokens.iter().map(String::as_str));
    let holding = check_cluster(&cluster, "tokend:rev:{", &secrets).await?;
    assert!(
        holding.len() >= 2,
        "10 revocations on more than one master: {holding:?}"
    );

    // B writes (and announces) the list it learned once, at its writer's first tick; past
    // that, a tokend started now can learn the revocations only from the resync, which must
    // read every master (and it accepts a token nobody revoked).
    eventually("B wrote its list once", Duration::from_secs(10), || async {
        Ok(b.output
            .text()
            .contains("local revocation list was written to Redis again"))
    })
    .await?;
    let c = newcomer(&a).await?;
    let heidi = provider.login("heidi").await?.access_token;
    let control = c.verify(&heidi).await?;
    assert_eq!(control.status, 200, "{:?}", control.body);
    for (u, t) in users.iter().zip(&tokens) {
        eventually(
            &format!("C refuses {u}"),
            Duration::from_secs(10),
            || async { Ok(c.verify(t).await?.status == 401) },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", c.output.text()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_cluster_sessions_are_listed_from_every_master_and_twenty_refreshes_make_one_grant()
-> R {
    let Some(cluster) = RedisCluster::start("issue_12_cluster_sessions").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&cluster, "5s", "").await?;
    // Logins through A until their sessions sit on more than one master (each session's key
    // is its own slot; 10 all on one of three masters would be a 1-in-20,000 chance).
    let mut sessions = Vec::new();
    let mut secrets: Vec<String> = Vec::new();
    for i in 0..10 {
        let user = format!("user{i}");
        let s = log_in(&provider, &a, &user, &format!("jar-{i}")).await?;
        secrets.extend([s.access.clone(), s.refresh.clone(), s.code.clone()]);
        sessions.push(s);
        let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        if sessions.len() >= 3 && check_cluster(&cluster, "tokend:sess:{", &refs).await?.len() >= 2
        {
            break;
        }
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    let holding = check_cluster(&cluster, "tokend:sess:{", &refs).await?;
    assert!(holding.len() >= 2, "sessions on one master only");

    // B never saw these logins, yet lists every one of them, whichever master holds it.
    let want: BTreeSet<String> = sessions
        .iter()
        .map(|s| {
            jwt_payload(&s.access)["sid"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let listed: BTreeSet<String> = b
        .admin()?
        .sessions(&SessionQuery::default())
        .await?
        .sessions
        .into_iter()
        .filter_map(|s| s.sid)
        .collect();
    assert!(
        want.is_subset(&listed),
        "B lists {} of the {} sessions",
        want.intersection(&listed).count(),
        want.len()
    );

    // 20 concurrent refreshes with one refresh token over A and B: one upstream grant.
    let last = sessions
        .last()
        .map(|s| s.refresh.clone())
        .unwrap_or_default();
    provider.token_delay(300).await?;
    let before = provider.stats().await?["refresh_grants"]
        .as_u64()
        .unwrap_or(0);
    let (on_a, on_b) = tokio::join!(
        concurrent_refreshes(&a, &last, 10),
        concurrent_refreshes(&b, &last, 10),
    );
    let all: Vec<String> = on_a?.into_iter().chain(on_b?).collect();
    let grants = provider.stats().await?["refresh_grants"]
        .as_u64()
        .unwrap_or(0)
        - before;
    assert_eq!(
        grants, 1,
        "one upstream grant for 20 callers on two instances"
    );
    assert_eq!(all.len(), 20);
    assert!(
        !all[0].is_empty() && all.iter().all(|x| *x == all[0]),
        "every caller got the same new access token"
    );
    assert_eq!(b.verify(&all[0]).await?.status, 200);
    secrets.push(all[0].clone());
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    check_cluster(&cluster, "tokend:", &refs).await?;
    for t in [&a, &b] {
        t.output.assert_free_of(&refs);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_cluster_a_lost_master_means_503_not_a_hang_and_the_subscriber_fails_over() -> R {
    let Some(mut cluster) = RedisCluster::start("issue_12_cluster_a_lost_master").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&cluster, "300ms", "").await?;
    let alice = provider.login("alice").await?;
    let bob = provider.login("bob").await?;
    let refresh = alice.refresh_token.clone().unwrap_or_default();
    for t in [&a, &b] {
        assert_eq!(t.verify(&alice.access_token).await?.status, 200);
        subscribed(t).await?;
    }

    // The first seed — the node both subscribers listen on — goes away.
    cluster.kill(0).await?;
    // B's subscriber loses it and subscribes on another seed.
    eventually(
        "B subscribed again on another seed",
        Duration::from_secs(10),
        || async {
            let m = b.metrics().await?;
            Ok(
                m.get("tokend_revocation_sync_errors_total{op=\"subscribe\"}") >= 1.0
                    && m.get("tokend_revocation_sync_connected") == 1.0,
            )
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", b.output.text()))?;

    // Codes on the lost master's slots answer 503 at once, the others 201; none hangs.
    let (mut created, mut unavailable) = (0, 0);
    for i in 0..20 {
        let t = if i % 2 == 0 { &a } else { &b };
        let started = Instant::now();
        let r = issue(t, &alice.access_token, &refresh).await?;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "answered in {took:?}");
        match (r.status, r.reason().as_str()) {
            (201, _) => created += 1,
            (503, "store_unavailable") => {
                assert!(r.headers.contains_key("retry-after"));
                unavailable += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    eprintln!("one master of three away: {created} codes issued, {unavailable} answered 503");
    assert!(
        created >= 1 && unavailable >= 1,
        "{created} / {unavailable}"
    );
    for t in [&a, &b] {
        assert_eq!(t.verify(&alice.access_token).await?.status, 200);
        let ready = t.get("/readyz", &[]).await?;
        assert_eq!(ready.status, 200, "verification still works: ready");
        assert_eq!(ready.json()["store"]["healthy"], false);
    }

    // The master comes back (empty, with its slots): everything recovers, no restart.
    cluster.restart(0).await?;
    cluster.wait_ok().await?;
    for t in [&a, &b] {
        eventually(
            "the store is healthy again",
            Duration::from_secs(15),
            || async { Ok(t.get("/readyz", &[]).await?.json()["store"]["healthy"] == true) },
        )
        .await?;
        for _ in 0..10 {
            assert_eq!(issue(t, &alice.access_token, &refresh).await?.status, 201);
        }
    }
    // A revocation on A still reaches B within a second, through B's new subscription.
    a.admin()?.revoke_user("bob").await?;
    let took = refused_within(
        &b,
        &bob.access_token,
        "revoked_by_admin",
        Duration::from_secs(1),
    )
    .await?;
    eprintln!("after the failover, an admin revocation on A refused on B after {took:?}");
    for t in [&a, &b] {
        assert_eq!(t.get("/livez", &[]).await?.status, 200, "no crash");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_cluster_away_at_start_means_503_then_recovery_without_a_restart() -> R {
    let Some(mut cluster) = RedisCluster::start("issue_12_cluster_away_at_start").await? else {
        return Ok(());
    };
    for i in 0..3 {
        cluster.kill(i).await?;
    }
    // Both start with no node reachable: verification works, the store answers 503 at once.
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&cluster, "300ms", "").await?;
    let alice = provider.login("alice").await?;
    let refresh = alice.refresh_token.clone().unwrap_or_default();
    for t in [&a, &b] {
        assert_eq!(t.verify(&alice.access_token).await?.status, 200);
        let started = Instant::now();
        let r = issue(t, &alice.access_token, &refresh).await?;
        assert_eq!(
            (r.status, r.reason().as_str()),
            (503, "store_unavailable"),
            "{:?}",
            r.body
        );
        assert!(started.elapsed() < Duration::from_secs(2), "no hang");
    }
    // The cluster comes up: both recover by themselves, codes and revocations included.
    for i in 0..3 {
        cluster.restart(i).await?;
    }
    cluster.wait_ok().await?;
    for t in [&a, &b] {
        eventually("codes work again", Duration::from_secs(20), || async {
            Ok(issue(t, &alice.access_token, &refresh).await?.status == 201)
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}\n{}", t.output.text()))?;
        subscribed(t).await?;
    }
    let code = issued(&a, &alice.access_token, &refresh).await?;
    let redeemed = b
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    a.admin()?.revoke_user("alice").await?;
    refused_within(
        &b,
        &alice.access_token,
        "revoked_by_admin",
        Duration::from_secs(1),
    )
    .await?;
    Ok(())
}
