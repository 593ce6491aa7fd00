//! Issue #12: the revocation list shared by TWO real tokend processes on one real
//! `redis-server`: a back-channel logout or an operator's revocation on A refuses the token on
//! B within a second (B verified it before, so B's own cache must let go too); a logout token
//! A accepted is a replay on B; a revocation made on A while Redis was down reaches B once
//! Redis is back (A writes its list again, B resyncs on reconnecting); Redis holds none of it
//! in clear.

use std::time::{Duration, Instant};

use tokend_e2e::redis_server::{Pair, RedisServer, eventually, pair};
use tokend_e2e::{Tokend, jwt_payload, now};

type R = anyhow::Result<()>;

/// `(status, reason)` of a verification.
async fn verdict(t: &Tokend, token: &str) -> anyhow::Result<(u16, String)> {
    let a = t.verify(token).await?;
    let reason = if a.status == 200 {
        String::new()
    } else {
        a.reason()
    };
    Ok((a.status, reason))
}

/// Polls B until it refuses `token` with `reason`; returns how long that took.
async fn refused_within(
    t: &Tokend,
    token: &str,
    reason: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        let v = verdict(t, token).await?;
        if v == (401, reason.to_string()) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < limit,
            "not refused with {reason} within {limit:?} (last answer {v:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn sid_of(token: &str) -> String {
    jwt_payload(token)["sid"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_backchannel_logout_on_a_refuses_the_token_on_b_within_a_second() -> R {
    let Some(redis) = RedisServer::start("issue_12_a_backchannel_logout_on_a").await? else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "5s").await?;
    let alice = provider.login("alice").await?;
    let bob = provider.login("bob").await?;
    // B has verified (and cached) both tokens.
    assert_eq!(verdict(&b, &alice.access_token).await?.0, 200);
    assert_eq!(verdict(&b, &bob.access_token).await?.0, 200);
    // Let B's subscriber settle (its first resync).
    eventually("B subscribed", Duration::from_secs(10), || async {
        Ok(b.metrics().await?.get("tokend_revocation_sync_connected") == 1.0)
    })
    .await?;

    let sid = sid_of(&alice.access_token);
    let jti = format!("sync-{}", now());
    let token = provider.logout_token(&sid, &jti).await?;
    let answer = a.backchannel_logout(&token).await?;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let took = refused_within(
        &b,
        &alice.access_token,
        "token_revoked",
        Duration::from_secs(1),
    )
    .await?;
    eprintln!("back-channel logout on A refused on B after {took:?}");
    assert_eq!(
        verdict(&b, &bob.access_token).await?.0,
        200,
        "bob unaffected"
    );

    // The same logout token replayed to B: A accepted it, so it is a replay everywhere.
    let replay = b.backchannel_logout(&token).await?;
    assert_eq!(replay.status, 400, "{:?}", replay.body);
    assert!(
        replay.json()["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("jti replayed")),
        "{:?}",
        replay.body
    );

    // An operator's revocation of bob on A: on B within a second, with its own reason.
    let ended = a.admin()?.revoke_user("bob").await?;
    assert_eq!(
        ended.ended, 0,
        "A held no session of bob's (he logged in at the provider)"
    );
    let took = refused_within(
        &b,
        &bob.access_token,
        "revoked_by_admin",
        Duration::from_secs(1),
    )
    .await?;
    eprintln!("admin revocation on A refused on B after {took:?}");

    // What Redis holds: hashed keys with TTLs, no sid, sub, jti or token in clear.
    let secrets = [
        sid.as_str(),
        jti.as_str(),
        "alice",
        "bob",
        alice.access_token.as_str(),
        bob.access_token.as_str(),
    ];
    let dump = redis.dump().await?;
    let shared: Vec<_> = dump
        .iter()
        .filter(|(k, _, _)| {
            ["tokend:rev:{", "tokend:jti:{"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .collect();
    assert_eq!(shared.len(), 3, "sid, sub and jti entries: {dump:?}");
    for (key, ttl, value) in &dump {
        assert!(*ttl > 0, "{key} has no TTL ({ttl})");
        let text = String::from_utf8_lossy(value);
        for s in secrets {
            assert!(!key.contains(s) && !text.contains(s), "{key} shows {s:?}");
        }
    }
    for t in [&a, &b] {
        t.output
            .assert_free_of(&[alice.access_token.as_str(), bob.access_token.as_str()]);
    }
    let m = b.metrics().await?;
    assert!(m.get("tokend_revocation_sync_messages_total{direction=\"received\"}") >= 2.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_revocation_made_while_redis_was_down_reaches_the_other_instance() -> R {
    let Some(mut redis) = RedisServer::start("issue_12_a_revocation_made_while_redis").await?
    else {
        return Ok(());
    };
    let Pair {
        provider,
        a,
        b,
        _key_dir: _keys,
    } = pair(&redis, "1s").await?;
    let carol = provider.login("carol").await?;
    assert_eq!(verdict(&b, &carol.access_token).await?.0, 200);
    redis.kill().await?;
    // A revokes with Redis away: it holds at once on A, and nothing crashes.
    let ended = a.admin()?.revoke_user("carol").await?;
    assert_eq!(ended.ended, 0);
    assert_eq!(
        verdict(&a, &carol.access_token).await?,
        (401, "revoked_by_admin".to_string())
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        verdict(&b, &carol.access_token).await?.0,
        200,
        "B cannot know yet"
    );
    // Redis comes back empty (no persistence): A writes its list again, B resyncs.
    redis.restart().await?;
    let took = refused_within(
        &b,
        &carol.access_token,
        "revoked_by_admin",
        Duration::from_secs(10),
    )
    .await?;
    eprintln!("after Redis restarted, B refused the revoked token after {took:?}");
    let log = a.output.text();
    assert!(
        log.contains("revocation sync: Redis failed"),
        "the outage is logged:\n{log}"
    );
    let failures = log.matches("revocation sync: Redis failed").count();
    // At most once for each of the sync's operations (publish, subscribe, read, resync, jti).
    assert!(
        failures <= 5,
        "logged once per operation, not per retry ({failures}):\n{log}"
    );
    Ok(())
}
