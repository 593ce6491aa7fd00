//! Issue #8: the README's promises about the login flow that no test held — callback error
//! names, refresh failures and the grace window, admin revocation by `sub`, the flow
//! endpoints without a `[flow]` section — each through the real binary and provider.

use std::time::Duration;

use serde_json::json;
use tokend_e2e::flow::{
    FRONTEND, LoggedIn, at_provider, cookie_value, flow_setup, location, log_in, query,
    set_cookies, start_login,
};
use tokend_e2e::{Provider, Tokend, TokendConfig};

type R = anyhow::Result<()>;

fn login_error(url: &str) -> String {
    query(url).get("error").cloned().unwrap_or_default()
}

/// The callback path with its `code` parameter replaced by `code` (or removed when `None`).
fn with_code(callback: &str, code: Option<&str>) -> String {
    let Ok(mut url) = reqwest::Url::parse(&format!("http://tokend{callback}")) else {
        return callback.to_string();
    };
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .into_owned()
        .filter(|(k, _)| k != "code")
        .collect();
    if let Some(c) = code {
        pairs.push(("code".into(), c.into()));
    }
    url.query_pairs_mut().clear().extend_pairs(pairs);
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_errors_carry_their_documented_names() -> R {
    let (p, t) = flow_setup("\n[codes]\nmax_outstanding = 1\n").await?;
    let m0 = t.metrics().await?;

    // missing_code: a valid state from the right browser, but no code.
    let started = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &started, "alice", "errors").await?;
    let a = t
        .get(&with_code(&cb, None), &[("cookie", &started.cookie)])
        .await?;
    assert_eq!(login_error(&location(&a)), "missing_code");

    // exchange_failed: a code the provider never issued.
    let started = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &started, "alice", "errors").await?;
    let a = t
        .get(
            &with_code(&cb, Some("not-a-code-the-provider-issued")),
            &[("cookie", &started.cookie)],
        )
        .await?;
    assert_eq!(login_error(&location(&a)), "exchange_failed");

    // invalid_access_token: the ID token is good, the access token is for another client.
    p.bad_id_token("access_wrong_audience").await?;
    let started = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &started, "alice", "errors").await?;
    let a = t.get(&cb, &[("cookie", &started.cookie)]).await?;
    assert_eq!(login_error(&location(&a)), "invalid_access_token");

    // capacity_exceeded: the code store is full (one outstanding code, parked by an app).
    let tokens = p.login("bob").await?;
    let a = t
        .post(
            "/v1/codes",
            json!({"access_token": tokens.access_token}).to_string(),
        )
        .await?;
    assert_eq!(a.status, 201);
    let started = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &started, "alice", "errors").await?;
    let a = t.get(&cb, &[("cookie", &started.cookie)]).await?;
    let loc = location(&a);
    assert!(loc.starts_with(&format!("{FRONTEND}/auth/login?")), "{loc}");
    assert_eq!(login_error(&loc), "capacity_exceeded");

    let m1 = t.metrics().await?;
    assert_eq!(
        m1.delta(
            &m0,
            "tokend_login_flow_steps_total{result=\"failure\",step=\"callback\"}"
        ),
        4.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_without_the_provider_says_provider_unavailable() -> R {
    // Discovery never succeeded (provider down, no disk cache): the login cannot be built.
    let mut p = Provider::start().await?;
    let port = tokend_e2e::free_port()?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.http_port = Some(port);
    cfg.tail = format!(
        "\n[flow]\nredirect_uri = \"http://127.0.0.1:{port}/auth/callback\"\nfrontend_url = \"{FRONTEND}\"\n"
    );
    p.stop().await;
    let t = Tokend::start(&cfg).await?;
    let a = t.get("/auth/login", &[]).await?;
    assert_eq!(a.status, 302);
    assert_eq!(login_error(&location(&a)), "provider_unavailable");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_grace_and_a_refused_refresh_token() -> R {
    let (p, t) = flow_setup("refresh_grace = \"2s\"\n").await?;
    let LoggedIn { refresh, .. } = log_in(&p, &t, "alice", "grace").await?;
    let grants = |v: &serde_json::Value| v["refresh_grants"].as_u64().unwrap_or(0);
    let before = grants(&p.stats().await?);

    // Within refresh_grace, the rotated-out refresh token gets the same new tokens, with no
    // second grant upstream.
    let first = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    assert_eq!(first.status, 200);
    let second = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    assert_eq!(second.status, 200);
    let access = |a: &tokend_e2e::Answer| cookie_value(&set_cookies(a), "ecosire_auth");
    assert_eq!(access(&first), access(&second));
    assert_eq!(grants(&p.stats().await?) - before, 1);
    let new_refresh = cookie_value(&set_cookies(&first), "ecosire_refresh").unwrap_or_default();

    // After it, the old refresh token is just unknown: refused here, cookies cleared.
    tokio::time::sleep(Duration::from_millis(2600)).await;
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    assert_eq!((a.status, a.reason()), (401, "no_session".into()));
    assert_eq!(grants(&p.stats().await?) - before, 1);

    // A refresh token the provider refuses (it was rotated behind tokend's back): 401
    // refresh_failed and both cookies cleared.
    let (status, _) = p.refresh_grant(&new_refresh).await?;
    assert_eq!(status, 200, "rotated at the provider directly");
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &new_refresh)
        .await?;
    assert_eq!((a.status, a.reason()), (401, "refresh_failed".into()));
    let cleared = set_cookies(&a);
    for name in ["ecosire_auth", "ecosire_refresh"] {
        assert_eq!(cookie_value(&cleared, name).as_deref(), Some(""), "{name}");
    }
    // The provider refused the grant, not the client: readiness carries no credentials
    // warning (issue #8; only `invalid_client` means a wrong client secret), and the log says
    // what the provider answered.
    let ready = t.get("/readyz", &[]).await?.json();
    assert!(ready.get("warning").is_none(), "{ready}");
    let log = t.output.text();
    assert!(
        log.lines()
            .any(|l| l.contains("refresh failed")
                && l.contains("the provider refused: invalid_grant")),
        "{log}"
    );
    t.output.assert_free_of(&[&refresh, &new_refresh]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_revokes_every_session_of_a_user() -> R {
    let (p, t) = flow_setup("").await?;
    // Two browsers, two sessions of alice; one of bob.
    let laptop = log_in(&p, &t, "alice", "laptop").await?;
    let phone = log_in(&p, &t, "alice", "phone").await?;
    let (a1, a2) = (laptop.access.clone(), phone.access.clone());
    let b = log_in(&p, &t, "bob", "bob").await?.access;
    let a = t
        .admin_unix(
            "POST",
            "/v1/admin/sessions/revoke",
            Some(json!({"sub": "alice"}).to_string()),
        )
        .await?;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["ended"], 2);
    for token in [&a1, &a2] {
        assert_eq!(t.verify(token).await?.reason(), "revoked_by_admin");
    }
    assert_eq!(t.verify(&b).await?.status, 200, "bob is still logged in");
    // Their refresh tokens are dead at the provider too (what a refresh mints after a session
    // ended carries no sid, so only revoking them keeps the sessions ended).
    for rt in [&laptop.refresh, &phone.refresh] {
        let (status, body) = p.refresh_grant(rt).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
    let a = t
        .admin_unix(
            "POST",
            "/v1/admin/sessions/revoke",
            Some(json!({"sid": "x", "sub": "y"}).to_string()),
        )
        .await?;
    assert_eq!((a.status, a.reason()), (400, "bad_request".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_endpoints_without_a_flow_section() -> R {
    let p = Provider::start().await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let a = t.get("/auth/login", &[]).await?;
    assert_eq!((a.status, a.reason()), (404, "flow_not_configured".into()));
    let a = t
        .post(
            "/auth/exchange",
            json!({"code": "c".repeat(43)}).to_string(),
        )
        .await?;
    assert_eq!((a.status, a.reason()), (404, "flow_not_configured".into()));
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", "some-refresh-token")
        .await?;
    assert_eq!((a.status, a.reason()), (404, "flow_not_configured".into()));
    Ok(())
}
