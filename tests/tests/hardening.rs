//! Issue #7: login-flow hardening — logout tokens need `exp`, revocations are immediate,
//! complete and lasting, reloads keep the JWKS refresh timer, env numbers are numbers, and
//! the organization fallback is configurable. Through the real binary and the real provider.

use serde_json::{Value, json};
use tokend_e2e::flow::{flow_setup, log_in};
use tokend_e2e::{Provider, Tokend, TokendConfig, check_config, jwt_payload, now};

type R = anyhow::Result<()>;

/// The `sid` claim of a token (not verified: for test set-up only).
fn sid_of(token: &str) -> anyhow::Result<String> {
    jwt_payload(token)["sid"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("token has no sid"))
}

fn logout_claims(issuer: &str, client_id: &str, sid: &str, jti: &str) -> Value {
    let n = now();
    json!({
        "iss": issuer, "aud": client_id, "iat": n, "exp": n + 120, "jti": jti, "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
    })
}

/// Issue #7: Back-Channel Logout 1.0 requires `exp`; a logout token without it is refused
/// (400) and ends nothing, while the same token with `exp` ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_logout_token_without_exp_is_refused() -> R {
    let (p, t) = flow_setup("").await?;
    let login = log_in(&p, &t, "alice", "no-exp").await?;
    let sid = sid_of(&login.access)?;
    assert_eq!(t.verify(&login.access).await?.status, 200);

    let mut no_exp = logout_claims(&p.issuer, &p.client_id, &sid, &format!("no-exp-{}", now()));
    no_exp.as_object_mut().map(|o| o.remove("exp"));
    let token = p
        .sign("k1", "RS256", json!({"typ": "logout+jwt"}), no_exp)
        .await?;
    let a = t.backchannel_logout(&token).await?;
    assert_eq!(a.status, 400, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["error"], "invalid_request");
    assert_eq!(
        t.verify(&login.access).await?.status,
        200,
        "a refused logout token ends nothing"
    );

    let with_exp = logout_claims(&p.issuer, &p.client_id, &sid, &format!("exp-{}", now()));
    let good = p
        .sign("k1", "RS256", json!({"typ": "logout+jwt"}), with_exp)
        .await?;
    assert_eq!(t.backchannel_logout(&good).await?.status, 200);
    let a = t.verify(&login.access).await?;
    assert_eq!((a.status, a.reason()), (401, "token_revoked".into()));
    t.output
        .assert_free_of(&[&token, &good, &login.access, &login.refresh]);
    Ok(())
}

/// Issue #7: `claims.organization_fallback = "none"`: a user without the organization claim
/// (carol) has no `organizationId` — in `/v1/verify` and in the admin session list — instead
/// of her `sub`; users with it keep theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_organization_fallback_none() -> R {
    let (p, t) = flow_setup("\n[claims]\norganization_fallback = \"none\"\n").await?;
    let carol = log_in(&p, &t, "carol", "carol").await?;
    let a = t.verify(&carol.access).await?;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let claims = &a.json()["claims"];
    assert_eq!(claims["sub"], "carol");
    assert!(claims.get("organizationId").is_none(), "{claims}");

    let alice = p.login("alice").await?.access_token;
    let a = t.verify(&alice).await?;
    assert_eq!(a.json()["claims"]["organizationId"], "org-1");

    let a = t.admin_unix("GET", "/v1/admin/sessions", None).await?;
    assert_eq!(a.status, 200);
    let sessions = a.json()["sessions"].as_array().cloned().unwrap_or_default();
    let mine = sessions
        .iter()
        .find(|s| s["sub"] == "carol")
        .ok_or_else(|| anyhow::anyhow!("no session of carol: {sessions:?}"))?;
    assert!(mine.get("organizationId").is_none(), "{mine}");
    t.output
        .assert_free_of(&[&carol.access, &carol.refresh, &alice]);
    Ok(())
}

/// Issue #7: `TOKEND_VERIFY_CACHE_MAX_ENTRIES=0` (the documented way to turn the cache off)
/// starts tokend, and then every verification is a cache miss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_env_cache_max_entries_zero_turns_the_cache_off() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.env = vec![("TOKEND_VERIFY_CACHE_MAX_ENTRIES".into(), "0".into())];
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let token = p.login("alice").await?.access_token;
    let m0 = t.metrics().await?;
    for _ in 0..3 {
        assert_eq!(t.verify(&token).await?.status, 200);
    }
    let m1 = t.metrics().await?;
    assert_eq!(m1.delta(&m0, "tokend_verify_cache_misses_total"), 3.0);
    assert_eq!(m1.delta(&m0, "tokend_verify_cache_hits_total"), 0.0);
    t.output.assert_free_of(&[&token]);
    Ok(())
}

/// Issue #7: a reload that keeps the key cache keeps its refresher and its timer. Reloading
/// every 0.7 s with `refresh_interval = "2s"` used to restart a 2 s wait each time, so the
/// keys were never refreshed while reloads went on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_frequent_reloads_do_not_starve_jwks_refresh() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.refresh_interval = "2s".into();
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let before = p.jwks_requests().await?;
    let m0 = t.metrics().await?;
    let started = std::time::Instant::now();
    let mut i = 0;
    while started.elapsed() < std::time::Duration::from_secs(6) {
        i += 1;
        cfg.tail = format!("\n[claims]\ndefault_role = \"role-{i}\"\n");
        t.replace_config(&cfg.to_toml(t.dir.path()))?;
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    let fetched = p.jwks_requests().await? - before;
    let m1 = t.metrics().await?;
    let reloads = m1.delta(&m0, "tokend_config_reloads_total{result=\"success\"}");
    assert!(reloads >= 5.0, "only {reloads} reloads happened");
    assert!(
        fetched >= 2,
        "{fetched} JWKS fetches in 6 s of reloads every 0.7 s with refresh_interval 2s"
    );
    Ok(())
}

/// Issue #7: an administrator's revocation is immediate and lasting: a token verified (and
/// cached) a moment before is refused right after, on repeat, over both listeners and by
/// cookie, and a refresh of the ended session is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_admin_revocation_is_immediate_and_lasting() -> R {
    let (p, t) = flow_setup("").await?;
    let login = log_in(&p, &t, "alice", "revoke").await?;
    let sid = sid_of(&login.access)?;
    for _ in 0..2 {
        assert_eq!(t.verify(&login.access).await?.status, 200);
    }
    let m0 = t.metrics().await?;
    assert!(
        m0.get("tokend_verify_cache_hits_total") >= 1.0,
        "the token is cached"
    );

    let a = t
        .admin_unix(
            "POST",
            "/v1/admin/sessions/revoke",
            Some(json!({"sid": sid}).to_string()),
        )
        .await?;
    assert_eq!((a.status, a.json()["ended"].clone()), (200, json!(1)));
    for _ in 0..3 {
        for a in [
            t.verify(&login.access).await?,
            t.verify_unix(&login.access).await?,
            t.get(
                "/v1/verify",
                &[("cookie", &format!("ecosire_auth={}", login.access))],
            )
            .await?,
        ] {
            assert_eq!((a.status, a.reason()), (401, "revoked_by_admin".into()));
        }
    }
    let grants = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &login.refresh)
        .await?;
    assert_eq!(a.status, 401, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(
        p.stats().await?["refresh_grants"].as_u64().unwrap_or(0),
        grants,
        "no refresh at the provider for an ended session"
    );
    t.output.assert_free_of(&[&login.access, &login.refresh]);
    Ok(())
}

/// Issue #7: a new login with an existing `sid` (the same browser session at the provider)
/// replaces the session; the earlier login's refresh token stays refused instead of becoming
/// a handle on the new session, while the earlier access token (same sid) still verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_new_login_with_the_same_sid_keeps_the_old_refresh_token_refused() -> R {
    let (p, t) = flow_setup("").await?;
    let first = log_in(&p, &t, "bob", "same-browser").await?;
    let second = log_in(&p, &t, "bob", "same-browser").await?;
    let sid = sid_of(&first.access)?;
    assert_eq!(
        sid_of(&second.access)?,
        sid,
        "the provider kept its session"
    );
    assert_ne!(first.refresh, second.refresh);

    let a = t.admin_unix("GET", "/v1/admin/sessions", None).await?;
    let sessions = a.json()["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1, "replaced, not added: {sessions:?}");

    assert_eq!(t.verify(&first.access).await?.status, 200);
    assert_eq!(t.verify(&second.access).await?.status, 200);

    let grants = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &first.refresh)
        .await?;
    assert_eq!(
        (a.status, a.reason()),
        (401, "no_session".into()),
        "{}",
        String::from_utf8_lossy(&a.body)
    );
    assert_eq!(
        p.stats().await?["refresh_grants"].as_u64().unwrap_or(0),
        grants,
        "the replaced session's refresh token never reaches the provider"
    );
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &second.refresh)
        .await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    t.output.assert_free_of(&[
        &first.access,
        &first.refresh,
        &second.access,
        &second.refresh,
    ]);
    Ok(())
}

/// Issue #7: revocations are remembered as long as the refresh tokens they refuse: by default
/// `sessions.revocation_ttl` is `cookies.refresh_max_age` (check-config shows it resolved).
#[test]
fn issue_7_revocation_ttl_defaults_to_refresh_max_age() -> R {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tokend.toml");
    std::fs::write(
        &path,
        "[listen]\nhttp = \"127.0.0.1:9180\"\n[provider]\n\
         issuer = \"https://auth.example.com/application/o/shop/\"\nclient_id = \"shop\"\n\
         [cookies]\nrefresh_max_age = \"14d\"\n",
    )?;
    let (code, stdout, stderr) = check_config(&path)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("revocation_ttl = \"1209600s\""), "{stdout}");
    Ok(())
}
