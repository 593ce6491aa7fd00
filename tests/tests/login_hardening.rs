//! Issue #7: the login flow made safe against hostile browsers and flaky clients — logins bound
//! to the browser that started them, codes redeemable only where they belong, logouts that end
//! the session after the access token expired, refreshes that survive their first caller,
//! and anonymous load that can neither lock users out nor reach the provider. Through the real
//! binary and the real provider.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokend_e2e::flow::{
    FRONTEND, LoggedIn, at_provider, concurrent_refreshes, cookie_value, flow_setup,
    flow_setup_with, location, log_in, query, set_cookies, start_login,
};

type R = anyhow::Result<()>;

fn login_error(url: &str) -> String {
    query(url).get("error").cloned().unwrap_or_default()
}

/// The value part of a `name=value` cookie header.
fn value_of(cookie: &str) -> &str {
    cookie.split_once('=').map_or("", |(_, v)| v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_completes_only_in_the_browser_that_started_the_login() -> R {
    let (p, t) = flow_setup("").await?;
    let m0 = t.metrics().await?;

    // Login CSRF (RFC 9700 §4.7): the attacker logs in as himself, stops before the callback
    // and sends the victim the callback URL. The victim's browser lacks the binding cookie.
    let attacker = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &attacker, "mallory", "attacker").await?;
    let a = t.get(&cb, &[]).await?;
    assert_eq!(a.status, 302);
    let loc = location(&a);
    assert!(loc.starts_with(&format!("{FRONTEND}/auth/login?")), "{loc}");
    assert_eq!(login_error(&loc), "browser_mismatch");
    assert!(!loc.contains("exchange"), "{loc}");
    // The state is spent: the attacker cannot finish it in his own browser either.
    let a = t.get(&cb, &[("cookie", &attacker.cookie)]).await?;
    assert_eq!(login_error(&location(&a)), "state_replayed");

    // The victim has a login of her own in progress: its cookie does not open his callback,
    // neither under its own name nor under the attacker's cookie name.
    let victim = start_login(&t, "/").await?;
    let attacker = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &attacker, "mallory", "attacker").await?;
    let a = t.get(&cb, &[("cookie", &victim.cookie)]).await?;
    assert_eq!(login_error(&location(&a)), "browser_mismatch");
    let attacker = start_login(&t, "/").await?;
    let cb = at_provider(&p, &t, &attacker, "mallory", "attacker").await?;
    let attacker_name = attacker.cookie.split('=').next().unwrap_or("");
    let forged = format!("{attacker_name}={}", value_of(&victim.cookie));
    let a = t.get(&cb, &[("cookie", &forged)]).await?;
    assert_eq!(login_error(&location(&a)), "browser_mismatch");

    let m1 = t.metrics().await?;
    assert_eq!(
        m1.delta(&m0, "tokend_codes_issued_total"),
        0.0,
        "no exchange code was minted for a refused callback"
    );
    t.output
        .assert_free_of(&[value_of(&victim.cookie), &p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_log_in_at_once_in_one_browser() -> R {
    let (p, t) = flow_setup("").await?;
    // Both logins start before either finishes; the browser holds both binding cookies.
    let first = start_login(&t, "/one").await?;
    let second = start_login(&t, "/two").await?;
    assert_ne!(
        first.cookie.split('=').next(),
        second.cookie.split('=').next(),
        "each login has its own cookie"
    );
    let jar = format!("{}; {}", first.cookie, second.cookie);
    let cb1 = at_provider(&p, &t, &first, "alice", "tabs").await?;
    let cb2 = at_provider(&p, &t, &second, "alice", "tabs").await?;
    // Finish the second tab first, then the first, each with the whole jar.
    let mut codes = Vec::new();
    for (cb, redirect) in [(cb2, "/two"), (cb1, "/one")] {
        let a = t.get(&cb, &[("cookie", &jar)]).await?;
        let front = location(&a);
        assert_eq!(
            query(&front).get("redirect").map(String::as_str),
            Some(redirect)
        );
        codes.push(
            query(&front)
                .get("exchange")
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no exchange code: {front}"))?,
        );
    }
    for code in &codes {
        let a = t
            .post("/auth/exchange", json!({"code": code}).to_string())
            .await?;
        assert_eq!(a.status, 200);
        assert!(cookie_value(&set_cookies(&a), "ecosire_auth").is_some());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_redeem_only_at_the_endpoint_of_their_kind() -> R {
    let (p, t) = flow_setup("").await?;
    // A flow code is not a way to read tokens out of /v1/codes/redeem…
    let front = tokend_e2e::flow::login_through_tokend(&p, &t, "alice", "/", "kinds").await?;
    let flow_code = query(&front)["exchange"].clone();
    let a = t
        .post("/v1/codes/redeem", json!({"code": flow_code}).to_string())
        .await?;
    assert_eq!((a.status, a.reason()), (404, "unknown_code".into()));
    assert!(!String::from_utf8_lossy(&a.body).contains("eyJ"));
    // …and the wrong endpoint did not burn it.
    let a = t
        .post("/auth/exchange", json!({"code": flow_code}).to_string())
        .await?;
    assert_eq!(a.status, 200);

    // An API code is not a way to plant cookies through /auth/exchange.
    let tokens = p.login("bob").await?;
    let a = t
        .post(
            "/v1/codes",
            json!({"access_token": tokens.access_token}).to_string(),
        )
        .await?;
    let api_code = a.json()["code"].as_str().unwrap_or("").to_string();
    let a = t
        .post("/auth/exchange", json!({"code": api_code}).to_string())
        .await?;
    assert_eq!((a.status, a.reason()), (404, "unknown_code".into()));
    assert!(set_cookies(&a).is_empty(), "no cookies for a foreign code");
    let a = t
        .post("/v1/codes/redeem", json!({"code": api_code}).to_string())
        .await?;
    assert_eq!(a.status, 200);
    t.output
        .assert_free_of(&[&flow_code, &api_code, &tokens.access_token]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_after_the_access_token_expired_still_ends_the_session() -> R {
    // 3-second access tokens, 1-second leeway: by the time the user logs out, the access
    // cookie — the only cookie the browser sends to /auth/logout — has expired.
    let (p, t) = flow_setup_with(Some(3), "leeway = \"1s\"\n", "").await?;
    let LoggedIn {
        access, refresh, ..
    } = log_in(&p, &t, "alice", "expiry").await?;
    assert_eq!(t.verify(&access).await?.status, 200);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let a = t.verify(&access).await?;
        if a.status == 401 {
            assert_eq!(a.reason(), "expired");
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the access token never expired");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let revocations = p.stats().await?["revocations"].as_u64().unwrap_or(0);
    let a = t
        .post_cookie("/auth/logout", "ecosire_auth", &access)
        .await?;
    assert_eq!(a.status, 200);
    assert!(
        a.json()["logout_url"]
            .as_str()
            .is_some_and(|u| u.contains("end-session"))
    );
    assert_eq!(
        p.stats().await?["revocations"].as_u64().unwrap_or(0) - revocations,
        1,
        "the provider saw one revocation"
    );
    // The refresh token is dead at the provider…
    let (status, body) = p.refresh_grant(&refresh).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // …and at tokend, which does not even ask.
    let grants = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    assert_eq!((a.status, a.reason()), (401, "no_session".into()));
    assert_eq!(
        p.stats().await?["refresh_grants"].as_u64().unwrap_or(0),
        grants
    );
    let a = t.admin_unix("GET", "/v1/admin/sessions", None).await?;
    assert_eq!(a.json()["sessions"], json!([]), "the session ended");

    // A logout with no usable cookie still clears the cookies and answers the URL.
    let a = t.post_with("/auth/logout", &[], "").await?;
    assert_eq!(a.status, 200);
    assert!(a.json()["logout_url"].as_str().is_some());
    assert_eq!(
        cookie_value(&set_cookies(&a), "ecosire_auth").as_deref(),
        Some("")
    );
    t.output.assert_free_of(&[&access, &refresh]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_survives_its_first_caller_going_away() -> R {
    let (p, t) = flow_setup("").await?;
    let LoggedIn { refresh, .. } = log_in(&p, &t, "bob", "slow").await?;
    p.token_delay(2000).await?;
    let before = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let url = format!("{}/auth/refresh", t.base_url()?);
    let cookie = format!("ecosire_refresh={refresh}");

    // The first caller gives up after 300 ms, mid-flight: its connection closes.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()?;
    let first = impatient.post(&url).header("cookie", &cookie).send().await;
    assert!(first.is_err(), "the first caller was meant to time out");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The others arrive while the upstream request is still in flight.
    let accesses = concurrent_refreshes(&t, &refresh, 5).await?;
    p.token_delay(0).await?;
    assert!(accesses.iter().all(|a| !a.is_empty() && *a == accesses[0]));
    assert_eq!(
        p.stats().await?["refresh_grants"].as_u64().unwrap_or(0) - before,
        1,
        "exactly one refresh grant reached the provider"
    );
    assert_eq!(t.verify(&accesses[0]).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_login_flood_cannot_lock_users_out() -> R {
    let (p, t) = flow_setup("max_pending_logins = 1000\n").await?;
    let m0 = t.metrics().await?;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let url = format!("{}/auth/login", t.base_url()?);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..32 {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for i in 0..625 {
                let r = client.get(&url).send().await?;
                let status = r.status().as_u16();
                let loc = r
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                anyhow::ensure!(!loc.contains("error="), "login {worker}/{i} refused: {loc}");
                *statuses.entry(status).or_default() += 1;
            }
            anyhow::Ok(statuses)
        });
    }
    let mut total = 0;
    while let Some(r) = tasks.join_next().await {
        let statuses = r??;
        assert_eq!(statuses.keys().copied().collect::<Vec<_>>(), [302]);
        total += statuses.values().sum::<usize>();
    }
    assert_eq!(total, 20_000);
    let m1 = t.metrics().await?;
    assert_eq!(
        m1.delta(&m0, "tokend_login_states_evicted_total"),
        19_000.0,
        "the oldest logins made room"
    );
    // A real login after the flood completes.
    let LoggedIn { access, .. } = log_in(&p, &t, "alice", "after-flood").await?;
    assert_eq!(t.verify(&access).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_tokend_did_not_hand_out_never_reach_the_provider() -> R {
    let (p, t) = flow_setup("refresh_rate_limit = 1\n").await?;
    let before = p.stats().await?;
    let client = reqwest::Client::new();
    let url = format!("{}/auth/refresh", t.base_url()?);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..10u32 {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let mut refused = 0;
            for i in 0..100u32 {
                let cookie = format!("ecosire_refresh=random-{worker}-{i}-{}", "x".repeat(100));
                let r = client.post(&url).header("cookie", cookie).send().await?;
                let status = r.status().as_u16();
                let v: Value = r.json().await?;
                anyhow::ensure!(
                    (status, v["reason"].as_str()) == (401, Some("no_session")),
                    "{status} {v}"
                );
                refused += 1;
            }
            anyhow::Ok(refused)
        });
    }
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        refused += r??;
    }
    assert_eq!(refused, 1000);
    let after = p.stats().await?;
    assert_eq!(
        after["token_requests"], before["token_requests"],
        "zero provider requests"
    );

    // Refresh grants that do go upstream are rate-limited: 1 per second here.
    let a_user = log_in(&p, &t, "alice", "rl-a").await?;
    let b_user = log_in(&p, &t, "bob", "rl-b").await?;
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &a_user.refresh)
        .await?;
    assert_eq!(a.status, 200);
    let b = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &b_user.refresh)
        .await?;
    assert_eq!((b.status, b.reason()), (503, "rate_limited".into()));
    let retry: u64 = b
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        set_cookies(&b).is_empty(),
        "a rate-limited refresh keeps the cookies"
    );
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let b = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &b_user.refresh)
        .await?;
    assert_eq!(
        b.status, 200,
        "the same refresh token works once the limit allows"
    );
    let m = t.metrics().await?;
    assert_eq!(
        m.get("tokend_refreshes_total{outcome=\"rate_limited\"}"),
        1.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_in_flight_are_bounded() -> R {
    let (p, t) = flow_setup("max_pending_refreshes = 1\nrefresh_grace = \"1s\"\n").await?;
    let alice = log_in(&p, &t, "alice", "bound-a").await?;
    let bob = log_in(&p, &t, "bob", "bound-b").await?;
    p.token_delay(1500).await?;
    let slow = {
        let url = format!("{}/auth/refresh", t.base_url()?);
        let cookie = format!("ecosire_refresh={}", alice.refresh);
        tokio::spawn(async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("cookie", cookie)
                .send()
                .await?;
            anyhow::Ok(r.status().as_u16())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Alice's refresh holds the only slot: Bob's is refused, with his cookies kept.
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &bob.refresh)
        .await?;
    assert_eq!((a.status, a.reason()), (503, "capacity_exceeded".into()));
    assert!(set_cookies(&a).is_empty());
    assert_eq!(slow.await??, 200);
    p.token_delay(0).await?;
    // Once Alice's result is past its grace window, the slot is free again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &bob.refresh)
        .await?;
    assert_eq!(a.status, 200);
    Ok(())
}
