//! Issue #3: exchange codes, the whole login flow, sessions and back-channel logout — through
//! the real binary and the real provider.

use std::time::Duration;

use serde_json::{Value, json};
use tokend_e2e::flow::{
    FRONTEND, LoggedIn, at_provider, browse, concurrent_refreshes, cookie_attrs, cookie_value,
    flow_setup, location, log_in, login_through_tokend, query, set_cookies, start_login, urlencode,
};
use tokend_e2e::now;
use tokend_e2e::redis_server::eventually;

type R = anyhow::Result<()>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_flow_login_exchange_verify_refresh_logout() -> R {
    let (p, t) = flow_setup("").await?;
    let mut secrets: Vec<String> = vec![p.client_secret.clone()];

    // 1. /auth/login → authorization request at the public authorization endpoint.
    let a = t
        .get("/auth/login?redirect=%2Forders%2F42%3Ftab%3Ditems", &[])
        .await?;
    assert_eq!(a.status, 302);
    let authorize = location(&a);
    // The browser-binding cookie (issue #7): HttpOnly, Lax, host-only, Path=/, __Host- since
    // cookies are Secure, living as long as the login state.
    let login_cookies = set_cookies(&a);
    assert_eq!(login_cookies.len(), 1, "{login_cookies:?}");
    let binding = login_cookies[0].split(';').next().unwrap_or("").to_string();
    assert!(binding.starts_with("__Host-tokend_login_"), "{binding}");
    let mut attrs: Vec<String> = login_cookies[0]
        .split(';')
        .skip(1)
        .map(|x| x.trim().to_string())
        .collect();
    attrs.sort();
    assert_eq!(
        attrs,
        [
            "HttpOnly",
            "Max-Age=600",
            "Path=/",
            "SameSite=Lax",
            "Secure"
        ]
    );
    assert!(
        authorize.starts_with(&format!(
            "{}authorize",
            p.issuer.trim_end_matches("tokend/")
        )),
        "{authorize}"
    );
    let q = query(&authorize);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], p.client_id);
    assert_eq!(
        q["redirect_uri"],
        format!("{}/auth/callback", t.base_url()?)
    );
    for s in [
        "openid",
        "email",
        "profile",
        "offline_access",
        "organization",
    ] {
        assert!(
            q["scope"].split(' ').any(|x| x == s),
            "scope {s} in {}",
            q["scope"]
        );
    }
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);

    // 2. The provider logs alice in and sends the browser back to tokend's callback.
    let back = browse(&p, &authorize, "alice", "flow").await?;
    let cb = back.trim_start_matches(&t.base_url()?).to_string();
    // The provider's authorization code and the state are secrets too (issue #8).
    let cbq = query(&back);
    secrets.push(cbq.get("code").cloned().unwrap_or_default());
    secrets.push(cbq.get("state").cloned().unwrap_or_default());
    secrets.push(binding.split('=').nth(1).unwrap_or("").to_string());
    assert!(cb.starts_with("/auth/callback?"), "{back}");

    // 3. The callback redirects to the frontend with only a one-time code, and clears the
    // binding cookie.
    let a = t.get(&cb, &[("cookie", &binding)]).await?;
    assert_eq!(a.status, 302);
    let name = binding.split('=').next().unwrap_or("");
    assert_eq!(cookie_value(&set_cookies(&a), name).as_deref(), Some(""));
    assert!(cookie_attrs(&set_cookies(&a), name).contains(&"Max-Age=0".to_string()));
    let front = location(&a);
    assert!(
        front.starts_with(&format!("{FRONTEND}/auth/callback?")),
        "{front}"
    );
    let fq = query(&front);
    let code = fq["exchange"].clone();
    assert_eq!(code.len(), 43);
    assert_eq!(fq["redirect"], "/orders/42?tab=items");
    assert!(
        !front.contains("eyJ"),
        "a token in the redirect URL: {front}"
    );
    secrets.push(code.clone());

    // 4. The frontend trades the code for HttpOnly cookies; no token in the body.
    let a = t
        .post("/auth/exchange", json!({"code": code}).to_string())
        .await?;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json(), json!({"success": true}));
    let cookies = set_cookies(&a);
    let access = cookie_value(&cookies, "ecosire_auth").expect("access cookie");
    let refresh = cookie_value(&cookies, "ecosire_refresh").expect("refresh cookie");
    assert!(access.starts_with("eyJ"));
    assert!(!String::from_utf8_lossy(&a.body).contains(&access));
    let mut attrs = cookie_attrs(&cookies, "ecosire_auth");
    attrs.sort();
    assert_eq!(
        attrs,
        [
            "HttpOnly",
            "Max-Age=604800",
            "Path=/",
            "SameSite=Lax",
            "Secure"
        ]
    );
    let mut attrs = cookie_attrs(&cookies, "ecosire_refresh");
    attrs.sort();
    assert_eq!(
        attrs,
        [
            "HttpOnly",
            "Max-Age=2592000",
            "Path=/auth/refresh",
            "SameSite=Lax",
            "Secure"
        ]
    );
    secrets.push(access.clone());
    secrets.push(refresh.clone());
    // Single use.
    let again = t
        .post("/auth/exchange", json!({"code": code}).to_string())
        .await?;
    assert_eq!(
        (again.status, again.reason()),
        (410, "code_already_redeemed".into())
    );

    // 5. The cookie verifies; /auth/session answers the claims.
    let cookie = format!("ecosire_auth={access}");
    let a = t.get("/v1/verify", &[("cookie", &cookie)]).await?;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["claims"]["sub"], "alice");
    assert_eq!(a.json()["claims"]["organizationId"], "org-1");
    let a = t.get("/auth/session", &[("cookie", &cookie)]).await?;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["claims"]["role"], "admin");

    // 6. Refresh: new cookies from one upstream refresh.
    let before = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    assert_eq!(a.status, 200, "{:?}", String::from_utf8_lossy(&a.body));
    let cookies = set_cookies(&a);
    let access2 = cookie_value(&cookies, "ecosire_auth").expect("new access cookie");
    let refresh2 = cookie_value(&cookies, "ecosire_refresh").expect("rotated refresh cookie");
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh, "Authentik rotates refresh tokens");
    assert_eq!(
        p.stats().await?["refresh_grants"].as_u64().unwrap_or(0) - before,
        1
    );
    assert_eq!(t.verify(&access2).await?.status, 200);
    secrets.push(access2.clone());
    secrets.push(refresh2.clone());

    // 7. Logout: cookies cleared with the same attributes, refresh token revoked, end-session
    // URL; the session's access tokens stop verifying.
    let revocations = p.stats().await?["revocations"].as_u64().unwrap_or(0);
    let a = t
        .post_cookie("/auth/logout", "ecosire_auth", &access2)
        .await?;
    assert_eq!(a.status, 200);
    let logout_url = a.json()["logout_url"].as_str().unwrap_or("").to_string();
    assert!(
        logout_url.contains("/application/o/tokend/end-session/"),
        "{logout_url}"
    );
    let lq = query(&logout_url);
    assert!(lq.contains_key("id_token_hint"));
    assert_eq!(lq["post_logout_redirect_uri"], format!("{FRONTEND}/"));
    assert_eq!(lq["client_id"], p.client_id);
    let cleared = set_cookies(&a);
    for (name, path) in [
        ("ecosire_auth", "Path=/"),
        ("ecosire_refresh", "Path=/auth/refresh"),
    ] {
        assert_eq!(cookie_value(&cleared, name).as_deref(), Some(""));
        let attrs = cookie_attrs(&cleared, name);
        for want in ["HttpOnly", "SameSite=Lax", "Secure", "Max-Age=0", path] {
            assert!(
                attrs.iter().any(|x| x == want),
                "{name} lacks {want}: {attrs:?}"
            );
        }
    }
    assert_eq!(
        p.stats().await?["revocations"].as_u64().unwrap_or(0) - revocations,
        1
    );
    // The revocation worked (issue #8: a counter bumped before client authentication proved
    // nothing): the refresh token is dead at the provider itself.
    let (status, body) = p.refresh_grant(&refresh2).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    for token in [&access, &access2] {
        let a = t.verify(token).await?;
        assert_eq!((a.status, a.reason()), (401, "token_revoked".into()));
    }
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh2)
        .await?;
    assert_eq!(a.status, 401, "revoked refresh token refused");

    // The logout's log line tells the operator whether the provider confirmed the revocation
    // (issue #8): yes for this one; no for a logout with no session to end.
    let logouts = || -> Vec<String> {
        t.output
            .text()
            .lines()
            .filter(|l| l.contains(" logout ") && l.contains("revoked="))
            .map(str::to_string)
            .collect()
    };
    let before = logouts();
    let line = before.last().cloned().unwrap_or_default();
    assert!(line.contains("revoked=true"), "{line}");
    let a = t.post("/auth/logout", String::new()).await?;
    assert_eq!(a.status, 200);
    eventually(
        "the second logout's log line",
        Duration::from_secs(5),
        || async { Ok(logouts().len() > before.len()) },
    )
    .await?;
    let line = logouts().last().cloned().unwrap_or_default();
    assert!(
        line.contains("session=false") && line.contains("revoked=false"),
        "{line}"
    );

    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    t.output.assert_free_of(&refs);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_redemptions_one_success() -> R {
    let (p, t) = flow_setup("").await?;
    let tokens = p.login("bob").await?;
    let a = t
        .post(
            "/v1/codes",
            json!({"access_token": tokens.access_token, "refresh_token": tokens.refresh_token})
                .to_string(),
        )
        .await?;
    assert_eq!(a.status, 201, "{:?}", a.body);
    assert_eq!(a.json()["expires_in"], 60);
    let code = a.json()["code"].as_str().unwrap_or("").to_string();
    let body = json!({"code": code}).to_string();

    let client = reqwest::Client::new();
    let base = t.base_url()?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let body = body.clone();
        if i % 2 == 0 {
            let (client, url) = (client.clone(), format!("{base}/v1/codes/redeem"));
            tasks.spawn(async move {
                let r = client.post(url).body(body).send().await?;
                let status = r.status().as_u16();
                let v: Value = r.json().await?;
                anyhow::Ok((status, v))
            });
        } else {
            let socket = t.socket.clone().unwrap_or_default();
            tasks.spawn(async move {
                let a =
                    tokend_e2e::unix_request(&socket, "POST", "/v1/codes/redeem", &[], Some(body))
                        .await?;
                anyhow::Ok((a.status, a.json()))
            });
        }
    }
    let mut ok = Vec::new();
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, v) = r??;
        match status {
            200 => ok.push(v),
            410 => {
                assert_eq!(v["reason"], "code_already_redeemed");
                refused += 1;
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!(ok.len(), 1, "exactly one redemption succeeds");
    assert_eq!(refused, 999);
    assert_eq!(ok[0]["access_token"], tokens.access_token.as_str());
    assert_eq!(ok[0]["claims"]["sub"], "bob");
    t.output.assert_free_of(&[&code, &tokens.access_token]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn code_expiry_unknown_and_capacity() -> R {
    let (p, t) = flow_setup("\n[codes]\nttl = \"1s\"\nmax_outstanding = 2\n").await?;
    let token = p.login("alice").await?.access_token;
    let issue = || t.post("/v1/codes", json!({"access_token": token}).to_string());
    let first = issue().await?;
    assert_eq!(first.status, 201);
    let second = issue().await?;
    assert_eq!(second.status, 201);
    let third = issue().await?;
    assert_eq!(
        (third.status, third.reason()),
        (503, "capacity_exceeded".into())
    );

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let code = first.json()["code"].as_str().unwrap_or("").to_string();
    let a = t
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!((a.status, a.reason()), (410, "code_expired".into()));
    let a = t
        .post("/v1/codes/redeem", json!({"code": code}).to_string())
        .await?;
    assert_eq!(
        (a.status, a.reason()),
        (404, "unknown_code".into()),
        "an expired code is gone"
    );
    let a = t
        .post(
            "/v1/codes/redeem",
            json!({"code": "never-issued-code-0000000000000000000000"}).to_string(),
        )
        .await?;
    assert_eq!((a.status, a.reason()), (404, "unknown_code".into()));
    // Redeeming the expired first code removed it: one code fits again.
    assert_eq!(issue().await?.status, 201);
    // The second code expired untouched: only the sweeper can free its slot (issue #8: this
    // test once freed the slot by redeeming, so it passed without a sweep).
    let m0 = t.metrics().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    loop {
        let a = issue().await?;
        if a.status == 201 {
            break;
        }
        assert_eq!(a.reason(), "capacity_exceeded");
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the sweeper never freed the expired code's slot"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let m1 = t.metrics().await?;
    assert!(
        m1.delta(&m0, "tokend_codes_expired_total") >= 1.0,
        "the sweeper counted the expired code"
    );
    // Junk is never parked.
    let a = t
        .post("/v1/codes", json!({"access_token": "junk"}).to_string())
        .await?;
    assert_eq!((a.status, a.reason()), (401, "malformed".into()));
    t.output.assert_free_of(&[&token, &code]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_forged_replayed_expired_and_provider_errors() -> R {
    // 5 s: room for a whole login on a loaded 2-core machine (issue #8: 2 s with whole-second
    // expiry left 1–2 s).
    let (p, t) = flow_setup("state_ttl = \"5s\"\n").await?;
    let login_error = |url: &str| query(url).get("error").cloned().unwrap_or_default();

    // Forged state.
    let a = t
        .get("/auth/callback?code=abc&state=forged-state", &[])
        .await?;
    assert_eq!(a.status, 302);
    assert!(location(&a).starts_with(&format!("{FRONTEND}/auth/login?")));
    assert_eq!(login_error(&location(&a)), "invalid_state");
    let a = t.get("/auth/callback?code=abc", &[]).await?;
    assert_eq!(login_error(&location(&a)), "invalid_state");

    // Replayed state: the same callback URL twice (from the browser that started it).
    let started = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &started, "carol", "replay").await?;
    let cookie = [("cookie", started.cookie.as_str())];
    let first = t.get(&cb, &cookie).await?;
    assert!(query(&location(&first)).contains_key("exchange"));
    let second = t.get(&cb, &cookie).await?;
    assert_eq!(login_error(&location(&second)), "state_replayed");

    // Expired state: expiry is in whole seconds from the login's start, so 6 s after it the
    // 5 s state has surely expired.
    let begun = std::time::Instant::now();
    let started = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &started, "carol", "replay").await?;
    tokio::time::sleep(
        (begun + Duration::from_millis(6100)).saturating_duration_since(std::time::Instant::now()),
    )
    .await;
    let a = t.get(&cb, &[("cookie", &started.cookie)]).await?;
    assert_eq!(login_error(&location(&a)), "state_expired");

    // The provider reports an error: passed on by its stable name; unknown ones generalised.
    let a = t.get("/auth/login", &[]).await?;
    let state = query(&location(&a))["state"].clone();
    let a = t
        .get(
            &format!("/auth/callback?error=access_denied&state={state}"),
            &[],
        )
        .await?;
    assert_eq!(login_error(&location(&a)), "access_denied");
    let a = t.get("/auth/callback?error=%3Cscript%3E", &[]).await?;
    assert_eq!(login_error(&location(&a)), "provider_error");
    // Nothing here answers 500.
    let a = t.get("/auth/callback?state=%ff%fe&code=%00", &[]).await?;
    assert_eq!(a.status, 302);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_redirect_attempts_are_refused() -> R {
    let (p, t) = flow_setup("").await?;
    let attacks = [
        "//evil.com",
        "///evil.com",
        "/\\evil.com",
        "\\\\evil.com",
        "https://evil.com",
        "http:evil.com",
        "javascript:alert(1)",
        "evil.com",
        "%2F%2Fevil.com",
        "/%2Fevil.com",
        "/%5Cevil.com",
        "%252F%252Fevil.com",
        "/%252F%252Fevil.com",
        "/\t/evil.com",
        "/%09/evil.com",
        "/../evil.com",
        "/%2e%2e/evil.com",
        "//evil.com/%2F..",
        // Issue #7: encoded deeper than the decoding bound is refused, never passed on.
        "/%2525252525252F%2525252525252Fevil.com",
        "data:text/html,x",
        " //evil.com",
    ];
    for attack in attacks {
        let a = t
            .get(&format!("/auth/login?redirect={}", urlencode(attack)), &[])
            .await?;
        assert_eq!(a.status, 302, "{attack:?}");
        let loc = location(&a);
        assert!(
            loc.starts_with(&format!("{FRONTEND}/auth/login?")),
            "{attack:?} → {loc}"
        );
        assert_eq!(query(&loc)["error"], "invalid_redirect", "{attack:?}");
    }
    // A good path survives the whole round trip.
    let front = login_through_tokend(&p, &t, "alice", "/account/settings", "r").await?;
    assert_eq!(query(&front)["redirect"], "/account/settings");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_refreshes_one_upstream_request() -> R {
    let (p, t) = flow_setup("").await?;
    let refresh = log_in(&p, &t, "bob", "r20").await?.refresh;
    let before = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let m0 = t.metrics().await?;

    let accesses = concurrent_refreshes(&t, &refresh, 20).await?;
    assert_eq!(accesses.len(), 20);
    assert!(
        accesses.iter().all(|a| *a == accesses[0]),
        "all callers get the same new tokens"
    );
    let upstream = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0) - before;
    assert_eq!(upstream, 1, "one upstream refresh for 20 callers");
    let m1 = t.metrics().await?;
    assert_eq!(
        m1.delta(&m0, "tokend_refreshes_total{outcome=\"upstream\"}"),
        1.0
    );
    assert_eq!(
        m1.delta(&m0, "tokend_refreshes_total{outcome=\"coalesced\"}"),
        19.0
    );
    assert_eq!(t.verify(&accesses[0]).await?.status, 200);
    // The coalesced path logs no token either (issue #8).
    t.output.assert_free_of(&[&refresh, &accesses[0]]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_the_session_and_refuses_bad_tokens() -> R {
    let (p, t) = flow_setup("").await?;
    // Log in through tokend, keeping the provider's browser session "bc".
    let LoggedIn {
        access, refresh, ..
    } = log_in(&p, &t, "alice", "bc").await?;
    assert_eq!(
        t.verify(&access).await?.status,
        200,
        "cached before the logout"
    );
    let sid = tokend_e2e::jwt_payload(&access)["sid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!sid.is_empty());

    // Forged, expired, wrong-audience and nonce-carrying logout tokens are refused.
    let n = now();
    let good_claims = json!({
        "iss": p.issuer, "aud": p.client_id, "iat": n, "exp": n + 120,
        "jti": format!("jti-{n}"), "sid": sid,
        "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
    });
    let with = |k: &str, v: Value| {
        let mut c = good_claims.clone();
        c[k] = v;
        c
    };
    let logout_header = json!({"typ": "logout+jwt"});
    let valid = p
        .sign("k1", "RS256", logout_header.clone(), good_claims.clone())
        .await?;
    let mut forged: Vec<String> = valid.split('.').map(str::to_string).collect();
    forged[2] = forged[2].chars().rev().collect();
    let mut bad = vec![forged.join("."), "not-a-token".to_string()];
    for (claim, value) in [
        ("exp", json!(n - 600)),
        ("aud", json!("someone-else")),
        ("nonce", json!("n")),
        ("events", json!({})),
    ] {
        let claims = with(claim, value);
        bad.push(p.sign("k1", "RS256", logout_header.clone(), claims).await?);
    }
    // `typ: JWT` (Authentik before 2025.12) is accepted — this one fails for its missing
    // `jti` alone; a complete `typ: JWT` logout token passes below.
    let mut no_jti = good_claims.clone();
    no_jti.as_object_mut().map(|o| o.remove("jti"));
    bad.push(p.sign("k1", "RS256", json!({"typ": "JWT"}), no_jti).await?);
    let at_typ = json!({"typ": "at+jwt"});
    bad.push(p.sign("k1", "RS256", at_typ, good_claims.clone()).await?);
    for token in &bad {
        let a = t
            .post_with(
                "/auth/backchannel-logout",
                &[("content-type", "application/x-www-form-urlencoded")],
                format!("logout_token={token}"),
            )
            .await?;
        assert_eq!(
            a.status,
            400,
            "accepted: {}",
            String::from_utf8_lossy(&a.body)
        );
        assert_eq!(a.json()["error"], "invalid_request");
    }
    assert_eq!(t.verify(&access).await?.status, 200, "still logged in");

    // The provider's own back-channel logout (RP-initiated logout of the browser session).
    p.end_browser_session("bc").await?;
    let a = t.verify(&access).await?;
    assert_eq!((a.status, a.reason()), (401, "token_revoked".into()));
    let a = t
        .get(
            "/auth/session",
            &[("cookie", &format!("ecosire_auth={access}"))],
        )
        .await?;
    assert_eq!(a.status, 401);
    // Authentik keeps refresh tokens alive when a session ends (as the test provider does): a
    // refresh must not revive the logged-out session (issue #3, found in review).
    let grants = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let failed = t.metrics().await?;
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    assert_eq!((a.status, a.reason()), (401, "no_session".into()));
    assert_eq!(
        cookie_value(&set_cookies(&a), "ecosire_auth").as_deref(),
        Some(""),
        "cleared"
    );
    let after = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    assert_eq!(after, grants, "not sent upstream");
    let m = t.metrics().await?;
    assert_eq!(
        m.delta(&failed, "tokend_refreshes_total{outcome=\"failed\"}"),
        1.0
    );

    // A replayed logout token is refused (jti seen), a fresh one for another session accepted.
    let replay = p
        .sign(
            "k1",
            "RS256",
            logout_header.clone(),
            with("sid", json!("other-sid")),
        )
        .await?;
    let post = |token: String| {
        t.post_with(
            "/auth/backchannel-logout",
            &[("content-type", "application/x-www-form-urlencoded")],
            format!("logout_token={token}"),
        )
    };
    assert_eq!(post(replay.clone()).await?.status, 200);
    assert_eq!(post(replay.clone()).await?.status, 400, "replayed jti");

    // A complete logout token with `typ: JWT` (Authentik before 2025.12) is accepted.
    let mut jwt_typ = with("sid", json!("jwt-typ-sid"));
    jwt_typ["jti"] = json!(format!("jwt-typ-{n}"));
    let a = post(
        p.sign("k1", "RS256", json!({"typ": "JWT"}), jwt_typ)
            .await?,
    )
    .await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));

    // Sub-only logout token: every token of that user issued before it stops verifying.
    let bob = p.login("bob").await?.access_token;
    assert_eq!(t.verify(&bob).await?.status, 200);
    let mut sub_only = good_claims.clone();
    sub_only.as_object_mut().map(|o| o.remove("sid"));
    sub_only["sub"] = json!("bob");
    sub_only["jti"] = json!(format!("sub-only-{n}"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        post(p.sign("k1", "RS256", logout_header, sub_only).await?)
            .await?
            .status,
        200
    );
    assert_eq!(t.verify(&bob).await?.reason(), "token_revoked");
    t.output
        .assert_free_of(&[&access, &refresh, &bob, &valid, &p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_lists_and_revokes_sessions_only_on_the_admin_socket() -> R {
    let (p, t) = flow_setup("").await?;
    let LoggedIn { access, code, .. } = log_in(&p, &t, "alice", "adm").await?;
    assert_eq!(t.verify(&access).await?.status, 200);

    for a in [
        t.get("/v1/admin/sessions", &[]).await?,
        t.unix("GET", "/v1/admin/sessions", &[], None).await?,
    ] {
        assert_eq!(
            (a.status, a.reason()),
            (404, "not_found".into()),
            "not over TCP nor on the apps' socket"
        );
    }
    let a = t.admin_unix("GET", "/v1/admin/sessions", None).await?;
    assert_eq!(a.status, 200);
    let sessions = a.json()["sessions"].as_array().cloned().unwrap_or_default();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["sub"], "alice");
    assert_eq!(sessions[0]["organizationId"], "org-1");
    let field = |s: &Value, name: &str| {
        s[name]
            .as_i64()
            .ok_or_else(|| anyhow::anyhow!("session field {name} missing: {s}"))
    };
    let seen = field(&sessions[0], "last_seen")?;
    assert!(seen >= field(&sessions[0], "created")?);
    // Last-seen moves with every verification, cached ones included (issue #8: the old check
    // compared two `unwrap_or(0)`s and passed on missing fields).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(t.verify(&access).await?.status, 200);
    let a = t.admin_unix("GET", "/v1/admin/sessions", None).await?;
    let later = field(&a.json()["sessions"][0], "last_seen")?;
    assert!(later > seen, "last_seen {seen} → {later}");
    let sid = sessions[0]["sid"].as_str().unwrap_or("").to_string();
    assert!(
        !String::from_utf8_lossy(&a.body).contains(&access),
        "no tokens listed"
    );

    let a = t
        .admin_unix("POST", "/v1/admin/sessions/revoke", Some("{}".into()))
        .await?;
    assert_eq!((a.status, a.reason()), (400, "bad_request".into()));
    let a = t
        .admin_unix(
            "POST",
            "/v1/admin/sessions/revoke",
            Some(json!({"sid": sid}).to_string()),
        )
        .await?;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["ended"], 1);
    assert_eq!(t.verify(&access).await?.reason(), "revoked_by_admin");
    let a = t.admin_unix("GET", "/v1/admin/sessions", None).await?;
    assert_eq!(a.json()["sessions"], json!([]));
    let m = t.metrics().await?;
    assert_eq!(
        m.get("tokend_sessions_ended_total{reason=\"admin_revocation\"}"),
        1.0
    );
    t.output.assert_free_of(&[&access, &code]);
    Ok(())
}
