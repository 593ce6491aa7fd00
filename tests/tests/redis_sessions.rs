//! Issue #12: sessions shared by TWO real tokend processes on one real `redis-server`: a login
//! finished through A refreshes on B and shows in B's admin listing; a logout on B ends it on
//! A within a second; 20 concurrent refreshes with one refresh token spread over A and B make
//! one upstream grant and all get the same tokens; Redis away → `/auth/refresh` answers 503
//! `store_unavailable` with Retry-After while verification still answers 200; last-seen is
//! written behind, not per request; Redis holds no token, `sid` or user in clear, and every key
//! expires.

use std::time::{Duration, Instant};

use tokend_e2e::flow::{cookie_value, log_in, set_cookies};
use tokend_e2e::redis_server::{Pair, RedisServer, eventually, pair};
use tokend_e2e::{Answer, Tokend, jwt_payload};
use tokend_shared::SessionQuery;

type R = anyhow::Result<()>;

/// `POST /auth/refresh` with the refresh cookie.
async fn refresh(t: &Tokend, refresh: &str) -> anyhow::Result<Answer> {
    t.post_cookie("/auth/refresh", "ecosire_refresh", refresh)
        .await
}

/// The cookie `name` an answer set.
fn cookie(a: &Answer, name: &str) -> String {
    cookie_value(&set_cookies(a), name).unwrap_or_default()
}

async fn status(t: &Tokend, token: &str) -> anyhow::Result<u16> {
    Ok(t.verify(token).await?.status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_login_via_a_refreshes_on_b_and_a_logout_on_b_ends_it_on_a() -> R {
    let Some(redis) = RedisServer::start("issue_12_a_login_via_a_refreshes_on_b").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let alice = log_in(&provider, &a, "alice", "jar-a").await?;
    let sid = jwt_payload(&alice.access)["sid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!sid.is_empty());

    // B never saw this login, yet lists it (from the store) …
    let listed = b.admin()?.sessions(&SessionQuery::default()).await?;
    assert!(
        listed
            .sessions
            .iter()
            .any(|s| s.sid.as_deref() == Some(&sid)),
        "B lists A's session: {listed:?}"
    );
    // … and refreshes it.
    let refreshed = refresh(&b, &alice.refresh).await?;
    assert_eq!(refreshed.status, 200, "{:?}", refreshed.body);
    let access2 = cookie(&refreshed, "ecosire_auth");
    let refresh2 = cookie(&refreshed, "ecosire_refresh");
    assert!(!access2.is_empty() && !refresh2.is_empty() && refresh2 != alice.refresh);
    assert_eq!(jwt_payload(&access2)["sid"].as_str(), Some(sid.as_str()));
    // The token B just rotated, presented to A within `flow.refresh_grace`: B's outcome,
    // shared, not a second grant.
    let late = refresh(&a, &alice.refresh).await?;
    assert_eq!(late.status, 200, "{:?}", late.body);
    assert_eq!(cookie(&late, "ecosire_auth"), access2);
    // A refreshes with the token B rotated to.
    let on_a = refresh(&a, &refresh2).await?;
    assert_eq!(on_a.status, 200, "{:?}", on_a.body);
    let access3 = cookie(&on_a, "ecosire_auth");
    let refresh3 = cookie(&on_a, "ecosire_refresh");

    // What Redis holds: no token, sid or user in clear; every key expires.
    let secrets = [
        alice.refresh.as_str(),
        refresh2.as_str(),
        refresh3.as_str(),
        alice.access.as_str(),
        access2.as_str(),
        access3.as_str(),
        sid.as_str(),
        "alice",
    ];
    let dump = redis.dump().await?;
    assert!(
        dump.iter().any(|(k, _, _)| k.starts_with("tokend:sess:{")),
        "{dump:?}"
    );
    for (key, ttl, value) in &dump {
        assert!(*ttl > 0, "{key} has no TTL ({ttl})");
        let text = String::from_utf8_lossy(value);
        for s in secrets {
            assert!(
                !key.contains(s) && !text.contains(s),
                "{key} shows a secret"
            );
        }
    }

    // A logout on B ends the session on A within a second.
    eventually("A subscribed", Duration::from_secs(10), || async {
        Ok(a.metrics().await?.get("tokend_revocation_sync_connected") == 1.0)
    })
    .await?;
    assert_eq!(
        status(&a, &access3).await?,
        200,
        "A verified (and cached) it"
    );
    let out = b
        .post_cookie("/auth/logout", "ecosire_auth", &access3)
        .await?;
    assert_eq!(out.status, 200, "{:?}", out.body);
    let started = Instant::now();
    while status(&a, &access3).await? != 401 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(1),
            "A still accepts the token 1 s after the logout on B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("logout on B refused on A after {:?}", started.elapsed());
    let after = refresh(&a, &refresh3).await?;
    assert_eq!(
        (after.status, after.reason().as_str()),
        (401, "no_session"),
        "{:?}",
        after.body
    );
    // Its current refresh token, rotated on A after B last saw the session, is dead at the
    // provider too: B learnt it from the store's record and revoked it (issue #8).
    let (code, body) = provider.refresh_grant(&refresh3).await?;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let listed = a.admin()?.sessions(&SessionQuery::default()).await?;
    assert!(
        !listed
            .sessions
            .iter()
            .any(|s| s.sid.as_deref() == Some(&sid)),
        "ended everywhere: {listed:?}"
    );
    for t in [&a, &b] {
        t.output.assert_free_of(&secrets[..6]);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_twenty_refreshes_spread_over_two_instances_make_one_grant() -> R {
    let Some(redis) = RedisServer::start("issue_12_twenty_refreshes_spread").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let bob = log_in(&provider, &a, "bob", "jar-b").await?;
    // A slow token endpoint, so the callers on both instances overlap the grant.
    provider.token_delay(300).await?;
    let before = provider.stats().await?["refresh_grants"]
        .as_u64()
        .unwrap_or(0);
    let (on_a, on_b) = tokio::join!(
        tokend_e2e::flow::concurrent_refreshes(&a, &bob.refresh, 10),
        tokend_e2e::flow::concurrent_refreshes(&b, &bob.refresh, 10),
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
    assert_eq!(status(&b, &all[0]).await?, 200);
    let name = "tokend_refreshes_total{outcome=\"coalesced\"}";
    let coalesced = a.metrics().await?.get(name) + b.metrics().await?.get(name);
    assert_eq!(coalesced, 19.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_without_redis_refresh_answers_503_and_verification_still_works() -> R {
    let Some(mut redis) = RedisServer::start("issue_12_without_redis_refresh_answers_503").await?
    else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "1s").await?;
    let carol = log_in(&provider, &a, "carol", "jar-c").await?;
    assert_eq!(status(&b, &carol.access).await?, 200);
    let dave = log_in(&provider, &a, "dave", "jar-d").await?;
    let out = a
        .post_cookie("/auth/logout", "ecosire_auth", &dave.access)
        .await?;
    assert_eq!(out.status, 200);
    redis.kill().await?;
    // A refresh token whose session ended here is refused without asking the store (issue #8):
    // 401, and the browser's cookies go, even with Redis away.
    let ended = refresh(&a, &dave.refresh).await?;
    assert_eq!(
        (ended.status, ended.reason().as_str()),
        (401, "no_session"),
        "{:?}",
        ended.body
    );
    for t in [&a, &b] {
        let answer = refresh(t, &carol.refresh).await?;
        assert_eq!(answer.status, 503, "{:?}", answer.body);
        assert_eq!(answer.reason(), "store_unavailable");
        assert!(answer.headers.contains_key("retry-after"));
        assert!(
            cookie(&answer, "ecosire_refresh").is_empty(),
            "cookies kept: the session is not over"
        );
        let started = Instant::now();
        assert_eq!(status(t, &carol.access).await?, 200);
        assert!(started.elapsed() < Duration::from_millis(500));
    }
    let m = a.metrics().await?;
    assert!(
        m.get("tokend_store_operations_total{engine=\"redis\",op=\"refresh_outcome\",outcome=\"unavailable\"}")
            >= 1.0,
        "the shared sessions' failures are counted"
    );
    // Redis back (empty: no persistence): A still knows its session and refreshes it.
    redis.restart().await?;
    eventually("refresh on A again", Duration::from_secs(10), || async {
        Ok(refresh(&a, &carol.refresh).await?.status == 200)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_last_seen_is_written_behind_not_per_request() -> R {
    let Some(redis) = RedisServer::start("issue_12_last_seen_is_written_behind").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b: _b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let dave = log_in(&provider, &a, "dave", "jar-d").await?;
    let mut raw = redis.raw().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("tokend:sess:{*")
        .query_async(&mut raw)
        .await?;
    anyhow::ensure!(keys.len() == 1, "one session record: {keys:?}");
    let seen = |raw: &mut redis::aio::MultiplexedConnection| {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&keys[0]).arg("l");
        let raw = raw.clone();
        async move {
            let mut raw = raw;
            anyhow::Ok(cmd.query_async::<i64>(&mut raw).await?)
        }
    };
    let evals = |raw: &redis::aio::MultiplexedConnection| {
        let mut raw = raw.clone();
        async move {
            let info: String = redis::cmd("INFO")
                .arg("commandstats")
                .query_async(&mut raw)
                .await?;
            let calls = info
                .lines()
                .find(|l| l.starts_with("cmdstat_eval:"))
                .and_then(|l| l.split("calls=").nth(1))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            anyhow::Ok(calls)
        }
    };
    let first = seen(&mut raw).await?;
    let writes_before = evals(&raw).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // 60 verifications over 6 s (the first one verifies, the rest hit the cache).
    for _ in 0..60 {
        assert_eq!(status(&a, &dave.access).await?, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = seen(&mut raw).await?;
    assert!(last > first, "last-seen moved in Redis ({first} → {last})");
    let writes = evals(&raw).await? - writes_before;
    assert!(
        (1..=3).contains(&writes),
        "written behind in batches, not per request: {writes} writes for 60 requests"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_an_operator_revocation_on_b_ends_a_session_made_on_a() -> R {
    let Some(redis) = RedisServer::start("issue_12_an_operator_revocation_on_b").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let erin = log_in(&provider, &a, "erin", "jar-e").await?;
    let sid = jwt_payload(&erin.access)["sid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let before = provider.stats().await?["revocations"].as_u64().unwrap_or(0);
    // B never held the session: it ends it from the store's record.
    let outcome = b.admin()?.revoke_session(&sid).await?;
    assert_eq!(outcome.ended, 1, "{outcome:?}");
    let revoked = provider.stats().await?["revocations"].as_u64().unwrap_or(0) - before;
    assert!(revoked >= 1, "its refresh token revoked at the provider");
    let after = refresh(&a, &erin.refresh).await?;
    assert_eq!(
        (after.status, after.reason().as_str()),
        (401, "no_session"),
        "{:?}",
        after.body
    );
    eventually("A refuses the token", Duration::from_secs(2), || async {
        Ok(status(&a, &erin.access).await? == 401)
    })
    .await?;
    let left = redis.dump().await?;
    assert!(
        !left.iter().any(|(k, _, _)| k.starts_with("tokend:sess:{")),
        "the record is gone: {left:?}"
    );
    Ok(())
}

/// Issue #8 (mutation testing of `flow/shared.rs`): an operator's revocation of a user on B,
/// which never held their sessions, ends that user's sessions made on A from the store's
/// records (their refresh token dead at the provider) — and no other user's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_revoking_a_user_on_b_ends_their_sessions_made_on_a_and_no_other() -> R {
    let Some(redis) = RedisServer::start("issue_8_revoking_a_user_on_b").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let erin = log_in(&provider, &a, "erin", "jar-e").await?;
    let fred = log_in(&provider, &a, "fred", "jar-f").await?;
    let sub = jwt_payload(&erin.access)["sub"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let outcome = b.admin()?.revoke_user(&sub).await?;
    assert_eq!(
        outcome.ended, 1,
        "B ended erin's session from the store's record: {outcome:?}"
    );
    let (code, body) = provider.refresh_grant(&erin.refresh).await?;
    assert_eq!(
        (code, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "erin's refresh token is dead at the provider: {body}"
    );
    let after = refresh(&a, &fred.refresh).await?;
    assert_eq!(
        after.status, 200,
        "fred's session goes on: {:?}",
        after.body
    );
    Ok(())
}

/// Issue #8 (mutation testing of `flow/logout.rs`): a logout on an instance that never held
/// the session finds its current refresh token in the store's record and revokes it at the
/// provider — once, whether or not the browser's refresh cookie names the same token. (A, which
/// holds the session, learns of the logout and revokes the token it knows as well: the count
/// is B's own requests to the revocation endpoint.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_a_logout_on_b_revokes_the_current_refresh_token_of_a_session_made_on_a_once() -> R
{
    let Some(redis) = RedisServer::start("issue_8_a_logout_on_b_revokes").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    const B_REVOCATIONS: &str =
        "tokend_upstream_request_duration_seconds_count{endpoint=\"revocation\"}";
    for (user, with_refresh_cookie) in [("frank", false), ("grace", true)] {
        let who = log_in(&provider, &a, user, &format!("jar-{user}")).await?;
        // Rotated on A: the store's record holds the new refresh token.
        let r = refresh(&a, &who.refresh).await?;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let (access, current) = (cookie(&r, "ecosire_auth"), cookie(&r, "ecosire_refresh"));
        let before = b.metrics().await?;
        let mut cookies = format!("ecosire_auth={access}");
        if with_refresh_cookie {
            cookies.push_str(&format!("; ecosire_refresh={current}"));
        }
        let out = b
            .post_with("/auth/logout", &[("cookie", cookies.as_str())], "")
            .await?;
        assert_eq!(out.status, 200, "{user}: {:?}", out.body);
        assert_eq!(
            b.metrics().await?.delta(&before, B_REVOCATIONS),
            1.0,
            "{user} (refresh cookie sent: {with_refresh_cookie}): B revoked one token"
        );
        let (code, body) = provider.refresh_grant(&current).await?;
        assert_eq!(
            (code, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{user}: the current refresh token is dead at the provider: {body}"
        );
        for t in [&a, &b] {
            t.output.assert_free_of(&[&who.refresh, &access, &current]);
        }
    }
    Ok(())
}
