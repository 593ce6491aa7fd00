//! Issue #12: the Redis store, with TWO real tokend processes sharing one real `redis-server`.
//! A code issued on one instance is redeemed on the other, exactly once even under 1,000
//! concurrent redemptions spread over both; a login started on one instance completes on the
//! other; Redis holds nothing usable in clear and every key expires; Redis killed mid-test
//! makes the code endpoints answer 503 `store_unavailable` (with Retry-After) while
//! verification goes on, and everything recovers, without a restart, when Redis is back.

use std::time::{Duration, Instant};

use serde_json::json;
use tokend_e2e::Tokend;
use tokend_e2e::flow::{at_provider, cookie_value, query, set_cookies, start_login};
use tokend_e2e::redis_server::{Pair, RedisServer, eventually, pair, redeem_race};

type R = anyhow::Result<()>;

async fn issue(t: &Tokend, access: &str, refresh: &str) -> anyhow::Result<String> {
    let a = t
        .post(
            "/v1/codes",
            json!({"access_token": access, "refresh_token": refresh}).to_string(),
        )
        .await?;
    anyhow::ensure!(a.status == 201, "POST /v1/codes answered {}", a.status);
    Ok(a.json()["code"].as_str().unwrap_or_default().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_code_from_one_instance_is_redeemed_once_across_both() -> R {
    let Some(redis) = RedisServer::start("issue_12_a_code_from_one_instance").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let tokens = provider.login("alice").await?;
    let refresh = tokens.refresh_token.clone().unwrap_or_default();
    anyhow::ensure!(!refresh.is_empty(), "the provider gave a refresh token");

    // Issued on A, redeemed on B; a second redemption on A is a replay.
    let code = issue(&a, &tokens.access_token, &refresh).await?;
    let redeemed = b
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    assert_eq!(
        redeemed.json()["access_token"],
        tokens.access_token.as_str()
    );
    assert_eq!(redeemed.json()["refresh_token"], refresh.as_str());
    let again = a
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(
        (again.status, again.reason().as_str()),
        (410, "code_already_redeemed")
    );

    // What Redis holds now and after the contest below: hashes and sealed values only.
    let contested = issue(&b, &tokens.access_token, &refresh).await?;
    let pending = issue(&a, &tokens.access_token, &refresh).await?;
    let secrets = [
        code.as_str(),
        contested.as_str(),
        pending.as_str(),
        tokens.access_token.as_str(),
        refresh.as_str(),
    ];
    let check_redis = |dump: Vec<(String, i64, Vec<u8>)>| {
        assert!(!dump.is_empty(), "tokend wrote to Redis");
        for (key, ttl, value) in dump {
            assert!(key.starts_with("tokend:code:{"), "{key}");
            assert!(ttl > 0, "{key} has no TTL ({ttl})");
            assert!(ttl <= (60 + 60) * 1000, "{key}: TTL {ttl} ms");
            let text = String::from_utf8_lossy(&value);
            for s in secrets {
                assert!(
                    !key.contains(s) && !text.contains(s),
                    "{key} shows a secret"
                );
                // Parts of a JWT (header, claims) would show a token as well.
                for part in s.split('.').filter(|p| p.len() >= 16) {
                    assert!(!text.contains(part), "{key} shows part of a token");
                }
            }
        }
    };
    check_redis(redis.dump().await?);

    // 1,000 concurrent redemptions of one code, spread over A and B: exactly one wins.
    let started = Instant::now();
    let (won, replayed, other) = redeem_race(&[&a, &b], &contested, 1000).await?;
    eprintln!(
        "1000 concurrent redemptions over two instances: {:?}",
        started.elapsed()
    );
    assert_eq!((won, replayed), (1, 999), "other answers: {other:?}");
    check_redis(redis.dump().await?);

    // B's admin API lists the one code left, which A minted (by its hash prefix only).
    let admin_b = b.admin()?;
    eventually("B lists A's code", Duration::from_secs(10), || async {
        let codes = admin_b.codes().await?.codes;
        Ok(codes.len() == 1 && codes[0].kind == "api")
    })
    .await?;
    assert_eq!(admin_b.overview().await?.store.kind, "redis");

    for t in [&a, &b] {
        t.output.assert_free_of(&secrets);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_login_started_on_one_instance_completes_on_the_other() -> R {
    let Some(redis) = RedisServer::start("issue_12_a_login_started_on_one").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    // The login state is made on A; the provider's redirect lands on B (as a load balancer
    // may send it), which takes the state and mints the exchange code; A redeems it.
    let started = start_login(&a, "/orders").await?;
    let callback = at_provider(&provider, &a, &started, "alice", "jar-1").await?;
    let answer = b.get(&callback, &[("cookie", &started.cookie)]).await?;
    assert_eq!(answer.status, 302);
    let front = tokend_e2e::flow::location(&answer);
    let code = query(&front)
        .get("exchange")
        .cloned()
        .unwrap_or_else(|| panic!("no exchange code in {front}"));
    let exchanged = a
        .post("/auth/exchange", json!({"code": code}).to_string())
        .await?;
    assert_eq!(exchanged.status, 200);
    let cookies = set_cookies(&exchanged);
    let access = cookie_value(&cookies, "ecosire_auth").unwrap_or_default();
    assert_eq!(a.verify(&access).await?.status, 200);
    assert_eq!(b.verify(&access).await?.status, 200);
    // The callback cannot be replayed on either instance.
    let replay = a.get(&callback, &[("cookie", &started.cookie)]).await?;
    let location = tokend_e2e::flow::location(&replay);
    assert!(location.contains("error=state_replayed"), "{location}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_redis_down_means_503_for_codes_not_for_verification_and_recovery() -> R {
    let Some(mut redis) = RedisServer::start("issue_12_redis_down").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "300ms").await?;
    let tokens = provider.login("alice").await?;
    let refresh = tokens.refresh_token.clone().unwrap_or_default();
    let before = issue(&a, &tokens.access_token, &refresh).await?;
    let ready = a.get("/readyz", &[]).await?;
    assert_eq!(ready.json()["store"]["kind"], "redis");
    assert_eq!(ready.json()["store"]["healthy"], true);

    redis.kill().await?;
    for t in [&a, &b] {
        let started = Instant::now();
        let issued = t
            .post(
                "/v1/codes",
                json!({"access_token": tokens.access_token}).to_string(),
            )
            .await?;
        let took = started.elapsed();
        assert_eq!(
            (issued.status, issued.reason().as_str()),
            (503, "store_unavailable")
        );
        assert!(issued.headers.contains_key("retry-after"));
        assert!(took < Duration::from_secs(2), "answered in {took:?}");
        eprintln!("POST /v1/codes with Redis down: 503 in {took:?}");
        let redeem = t
            .post("/v1/codes/redeem", json!({"code": before}).to_string())
            .await?;
        assert_eq!(
            (redeem.status, redeem.reason().as_str()),
            (503, "store_unavailable")
        );
        assert!(redeem.headers.contains_key("retry-after"));
        // Verification never touches the store.
        assert_eq!(t.verify(&tokens.access_token).await?.status, 200);
        let ready = t.get("/readyz", &[]).await?;
        assert_eq!(ready.status, 200, "verification still works: ready");
        assert_eq!(ready.json()["store"]["healthy"], false);
    }
    let overview = a.admin()?.overview().await?;
    assert!(!overview.store.healthy && overview.store.error.is_some());
    let metrics = a.metrics().await?;
    assert_eq!(metrics.get("tokend_store_up"), 0.0);
    assert!(
        metrics.get("tokend_store_errors_total{engine=\"redis\",op=\"take\"}") >= 1.0,
        "store errors counted"
    );

    // Redis comes back (empty: no persistence); both instances recover by themselves.
    redis.restart().await?;
    for t in [&a, &b] {
        eventually("codes work again", Duration::from_secs(10), || async {
            let r = t
                .post(
                    "/v1/codes",
                    json!({"access_token": tokens.access_token}).to_string(),
                )
                .await?;
            Ok(r.status == 201)
        })
        .await?;
    }
    let code = issue(&b, &tokens.access_token, &refresh).await?;
    let redeemed = a
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(redeemed.status, 200);
    eventually(
        "/readyz says the store is back",
        Duration::from_secs(10),
        || async { Ok(a.get("/readyz", &[]).await?.json()["store"]["healthy"] == true) },
    )
    .await?;
    for t in [&a, &b] {
        assert_eq!(
            t.get("/livez", &[]).await?.status,
            200,
            "no crash, no restart"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_store_changes_wait_for_a_restart() -> R {
    let Some(redis) = RedisServer::start("issue_12_store_changes_wait_for_a_restart").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let tokens = provider.login("alice").await?;
    let refresh = tokens.refresh_token.clone().unwrap_or_default();
    // [store] is the file's last section: a new prefix for A only.
    let text = std::fs::read_to_string(a.config_path())?;
    a.replace_config(&format!("{text}key_prefix = \"other:\"\n"))?;
    eventually("the reload is applied", Duration::from_secs(10), || async {
        Ok(a.metrics().await?.get("tokend_config_restart_required") == 1.0)
    })
    .await
    .map_err(|e| anyhow::anyhow!("{e}\n{}", a.output.text()))?;
    let log = a.output.text();
    let warning = log
        .lines()
        .find(|l| l.contains("apply only after a restart"))
        .unwrap_or_else(|| panic!("no restart-only warning:\n{log}"));
    assert!(warning.contains("store"), "{warning}");
    // A still writes under the running prefix, so B (which never reloaded) finds its codes.
    let code = issue(&a, &tokens.access_token, &refresh).await?;
    let redeemed = b
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(redeemed.status, 200);
    Ok(())
}
