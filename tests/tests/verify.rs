//! Issue #2: tokend verifies real Authentik-style tokens over a Unix socket and localhost HTTP.
//! Every test starts the real binary against the real test provider.

use std::time::Duration;

use serde_json::{Value, json};
use tokend_e2e::{Provider, Tokend, TokendConfig, jwt_payload, now};

type R = anyhow::Result<()>;

async fn setup() -> anyhow::Result<(Provider, Tokend)> {
    let p = Provider::start().await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    Ok((p, t))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_token_over_socket_and_tcp() -> R {
    let (p, t) = setup().await?;
    let tokens = p.login("alice").await?;

    for answer in [
        t.verify(&tokens.access_token).await?,
        t.verify_unix(&tokens.access_token).await?,
    ] {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let v = answer.json();
        assert_eq!(v["active"], true);
        let c = &v["claims"];
        assert_eq!(c["sub"], "alice");
        assert_eq!(c["email"], "alice@example.com");
        assert_eq!(c["name"], "Alice Admin");
        assert_eq!(c["preferred_username"], "alice");
        assert_eq!(c["organizationId"], "org-1");
        assert_eq!(c["groups"], json!(["ecosire-admins"]));
        assert_eq!(c["role"], "admin");
        assert!(c["scope"].as_str().unwrap_or("").contains("openid"));
        assert_eq!(c["exp"], jwt_payload(&tokens.access_token)["exp"]);
        assert_eq!(c["extra"]["iss"], p.issuer.as_str());
        assert_eq!(c["extra"]["azp"], p.client_id.as_str());
        assert_eq!(
            answer.headers.get("cache-control").map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
    }

    // GET with Bearer over the socket; role rules for another user.
    let bob = p.login("bob").await?;
    let auth = format!("Bearer {}", bob.access_token);
    let a = t
        .unix("GET", "/v1/verify", &[("authorization", &auth)], None)
        .await?;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["claims"]["role"], "support");
    assert_eq!(a.json()["claims"]["organizationId"], "org-2");

    // No organizationId claim: falls back to sub; no group rule: default role.
    let carol = p.login("carol").await?;
    let a = t.verify(&carol.access_token).await?;
    assert_eq!(a.json()["claims"]["organizationId"], "carol");
    assert_eq!(a.json()["claims"]["role"], "user");

    t.output.assert_free_of(&[
        &tokens.access_token,
        &tokens.id_token,
        &bob.access_token,
        &p.client_secret,
    ]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cookie_is_read_before_bearer_and_never_the_query() -> R {
    let (p, t) = setup().await?;
    let good = p.login("alice").await?.access_token;
    let cookie = |v: &str| format!("theme=dark; ecosire_auth={v}");
    let bearer = |v: &str| format!("Bearer {v}");

    let a = t
        .get(
            "/v1/verify",
            &[
                ("cookie", &cookie(&good)),
                ("authorization", &bearer("junk")),
            ],
        )
        .await?;
    assert_eq!(a.status, 200, "cookie first");

    let a = t
        .get(
            "/v1/verify",
            &[
                ("cookie", &cookie("junk")),
                ("authorization", &bearer(&good)),
            ],
        )
        .await?;
    assert_eq!(
        (a.status, a.reason()),
        (401, "malformed".into()),
        "cookie wins even when bad"
    );

    let a = t
        .get("/v1/verify", &[("authorization", &bearer(&good))])
        .await?;
    assert_eq!(a.status, 200, "bearer alone");

    let a = t
        .get(&format!("/v1/verify?token={good}&access_token={good}"), &[])
        .await?;
    assert_eq!((a.status, a.reason()), (401, "missing_token".into()));
    assert_eq!(a.json()["active"], false);
    // RFC 6750 §3.1: a request with no token gets the bare challenge, no `error`
    // (issue #13 follow-up: forward auth already answered this way).
    assert_eq!(
        a.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer"),
        "no error code when no token came"
    );
    t.output.assert_free_of(&[&good]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failure_reason() -> R {
    let (p, t) = setup().await?;
    let base = p.claims_template("alice").await?;
    let with = |changes: Value| {
        let mut c = base.clone();
        for (k, v) in changes.as_object().cloned().unwrap_or_default() {
            if v.is_null() {
                c.as_object_mut().map(|o| o.remove(&k));
            } else {
                c[k] = v;
            }
        }
        c
    };
    let n = now();
    let good = p.sign("k1", "RS256", json!({}), base.clone()).await?;
    let mut tampered: Vec<&str> = good.split('.').collect();
    let other = p
        .sign("k1", "RS256", json!({}), with(json!({"sub": "mallory"})))
        .await?;
    let other_payload = other.split('.').nth(1).unwrap_or("").to_string();
    tampered[1] = &other_payload;
    let tampered = tampered.join(".");
    let logins = p.login("alice").await?;

    let cases: Vec<(&str, String)> = vec![
        ("malformed", "not-a-jwt".into()),
        ("malformed", "a.b.c".into()),
        ("malformed", "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d".into()),
        ("bad_signature", tampered),
        (
            "expired",
            p.sign(
                "k1",
                "RS256",
                json!({}),
                with(json!({"exp": n - 120, "iat": n - 400})),
            )
            .await?,
        ),
        (
            "not_yet_valid",
            p.sign("k1", "RS256", json!({}), with(json!({"nbf": n + 600})))
                .await?,
        ),
        (
            "not_yet_valid",
            p.sign(
                "k1",
                "RS256",
                json!({}),
                with(json!({"iat": n + 600, "exp": n + 900})),
            )
            .await?,
        ),
        (
            "wrong_issuer",
            p.sign(
                "k1",
                "RS256",
                json!({}),
                with(json!({"iss": "https://evil.example/application/o/x/"})),
            )
            .await?,
        ),
        (
            "wrong_issuer",
            p.sign(
                "k1",
                "RS256",
                json!({}),
                with(json!({"iss": p.issuer.trim_end_matches('/')})),
            )
            .await?,
        ),
        (
            "wrong_audience",
            p.sign(
                "k1",
                "RS256",
                json!({}),
                with(json!({"aud": "another-client"})),
            )
            .await?,
        ),
        (
            "wrong_audience",
            p.sign("k1", "RS256", json!({}), with(json!({"aud": ["a", "b"]})))
                .await?,
        ),
        (
            "unknown_kid",
            p.sign("k1", "RS256", json!({"kid": "no-such-kid"}), base.clone())
                .await?,
        ),
        (
            "unsupported_alg",
            p.sign("k1", "none", json!({}), base.clone()).await?,
        ),
        (
            "unsupported_alg",
            p.sign("k1", "HS256", json!({"kid": "k1"}), base.clone())
                .await?,
        ),
        (
            "unsupported_alg",
            p.sign("k1", "PS256", json!({}), base.clone()).await?,
        ),
        ("id_token_not_accepted", logins.id_token.clone()),
        (
            "id_token_not_accepted",
            p.sign(
                "k1",
                "RS256",
                json!({}),
                with(json!({"azp": null, "uid": null, "scope": null})),
            )
            .await?,
        ),
        (
            "wrong_token_type",
            p.sign("k1", "RS256", json!({"typ": "logout+jwt"}), base.clone())
                .await?,
        ),
        (
            "wrong_token_type",
            p.sign(
                "k1",
                "RS256",
                json!({}),
                with(json!({"events": {"http://schemas.openid.net/event/backchannel-logout": {}}})),
            )
            .await?,
        ),
        (
            "missing_claim",
            p.sign("k1", "RS256", json!({}), with(json!({"exp": null})))
                .await?,
        ),
        (
            "missing_claim",
            p.sign("k1", "RS256", json!({}), with(json!({"sub": null})))
                .await?,
        ),
    ];
    let mut secrets: Vec<String> = vec![good.clone(), logins.access_token.clone()];
    for (want, token) in &cases {
        for a in [t.verify(token).await?, t.verify_unix(token).await?] {
            assert_eq!(
                a.status,
                401,
                "{want}: {}",
                String::from_utf8_lossy(&a.body)
            );
            let v = a.json();
            assert_eq!(v["active"], false);
            assert_eq!(v["reason"], *want, "{v}");
            assert!(!v["message"].as_str().unwrap_or("").is_empty());
            assert!(
                !String::from_utf8_lossy(&a.body).contains(token.as_str()),
                "token echoed"
            );
        }
        if token.len() > 20 {
            secrets.push(token.clone());
        }
    }
    // Within the leeway (60 s) an expired token still verifies, as does the untouched one.
    let late = p
        .sign("k1", "RS256", json!({}), with(json!({"exp": n - 20})))
        .await?;
    assert_eq!(t.verify(&late).await?.status, 200);
    assert_eq!(t.verify(&good).await?.status, 200);

    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    t.output.assert_free_of(&refs);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() -> R {
    let (_p, t) = setup().await?;
    let a = t.post("/v1/verify", "{not json").await?;
    assert_eq!((a.status, a.reason()), (400, "bad_request".into()));
    let a = t.post("/v1/verify", r#"{"tokn": "x"}"#).await?;
    assert_eq!(a.status, 400);
    assert!(a.json()["message"].as_str().unwrap_or("").contains("tokn"));
    let a = t.post("/v1/verify", r#"{"token": ""}"#).await?;
    assert_eq!((a.status, a.reason()), (401, "missing_token".into()));
    let big = format!(r#"{{"token": "{}"}}"#, "a".repeat(200 * 1024));
    let a = t.post("/v1/verify", big).await?;
    assert_eq!((a.status, a.reason()), (413, "payload_too_large".into()));
    let long = format!(r#"{{"token": "{}"}}"#, "a.b".repeat(10_000));
    let a = t.post("/v1/verify", long).await?;
    assert_eq!((a.status, a.reason()), (401, "malformed".into()));
    let a = t.get("/nope", &[]).await?;
    assert_eq!((a.status, a.reason()), (404, "not_found".into()));
    let a = t.unix("DELETE", "/v1/verify", &[], None).await?;
    assert_eq!((a.status, a.reason()), (405, "method_not_allowed".into()));
    let a = t.get("/livez", &[]).await?;
    assert_eq!(a.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hs256_only_when_configured() -> R {
    let p = Provider::start().await?;
    let claims = p.claims_template("alice").await?;
    let hs = p.sign("k1", "HS256", json!({}), claims.clone()).await?;

    // Default config: HS256 is never accepted, even signed with the real client secret.
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    assert_eq!(t.verify(&hs).await?.reason(), "unsupported_alg");
    drop(t);

    // Authentik without a signing key: JWKS is `{}`; HS256 with the client secret.
    p.jwks_mode("empty").await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.algorithms = Some(vec!["HS256".into()]);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let a = t.verify(&hs).await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["claims"]["sub"], "alice");
    let rs = p.sign("k1", "RS256", json!({}), claims.clone()).await?;
    assert_eq!(t.verify(&rs).await?.reason(), "unsupported_alg");
    let wrong_secret = {
        let mut parts: Vec<String> = hs.split('.').map(str::to_string).collect();
        parts[2] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
        parts.join(".")
    };
    assert_eq!(t.verify(&wrong_secret).await?.reason(), "bad_signature");
    // Issue #8 (mutation testing): in HS256 mode a forced key refresh never asks the provider
    // for a JWKS nor replaces the client secret with its `{}`: HS256 tokens still verify.
    let jwks0 = p.jwks_requests().await?;
    let refreshed = t.admin()?.refresh_jwks().await?;
    assert!(refreshed.ok, "{refreshed:?}");
    assert_eq!(p.jwks_requests().await?, jwks0);
    assert_eq!(t.verify(&hs).await?.status, 200);
    t.output.assert_free_of(&[&hs, &p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_jwks_without_hs_mode_is_not_ready() -> R {
    let p = Provider::start().await?;
    p.jwks_mode("empty").await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    let mut body = Value::Null;
    for _ in 0..100 {
        let a = t.get("/readyz", &[]).await?;
        body = a.json();
        if body["reason"].as_str().unwrap_or("").contains("HS256") {
            assert_eq!(a.status, 503);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("readyz never explained the empty JWKS: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ec_keys_verify_and_alg_must_fit() -> R {
    // Authentik signs ES256, ES384 or ES512 with P-256, P-384 or P-521 keys.
    let p = Provider::start().await?;
    p.set_keys("k1", &["k1", "k2", "e1", "e3", "e5"]).await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let claims = p.claims_template("bob").await?;
    for (kid, alg) in [("e1", "ES256"), ("e3", "ES384"), ("e5", "ES512")] {
        let token = p.sign(kid, alg, json!({}), claims.clone()).await?;
        let a = t.verify(&token).await?;
        assert_eq!(a.status, 200, "{alg}: {}", String::from_utf8_lossy(&a.body));
        // The same token with the first character of its signature changed.
        let (signed, sig) = token.rsplit_once('.').unwrap_or_default();
        let first = if sig.starts_with('A') { "B" } else { "A" };
        let forged = format!("{signed}.{first}{}", &sig[1..]);
        assert_eq!(t.verify(&forged).await?.reason(), "bad_signature", "{alg}");
    }
    // The alg must fit the key: RS256 on an EC kid, ES256 on an RSA kid, ES384 on P-521.
    let rs_on_ec = p
        .sign("k1", "RS256", json!({"kid": "e1"}), claims.clone())
        .await?;
    assert_eq!(t.verify(&rs_on_ec).await?.reason(), "unsupported_alg");
    let es_on_rsa = p
        .sign("e1", "ES256", json!({"kid": "k2"}), claims.clone())
        .await?;
    assert_eq!(t.verify(&es_on_rsa).await?.reason(), "unsupported_alg");
    let es384_on_p521 = p.sign("e3", "ES384", json!({"kid": "e5"}), claims).await?;
    assert_eq!(t.verify(&es384_on_p521).await?.reason(), "unsupported_alg");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_by_one_unknown_kid_refetch() -> R {
    let p = Provider::start().await?;
    p.set_keys("k1", &["k1"]).await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let before = p.jwks_requests().await?;

    p.set_keys("k2", &["k1", "k2"]).await?;
    let rotated = p.login("alice").await?;
    let header = rotated.access_token.split('.').next().unwrap_or("");
    assert!(
        String::from_utf8_lossy(&base64_decode(header)).contains("\"k2\""),
        "provider signs with k2 now"
    );
    // Concurrent requests for the new kid share one refetch.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let token = rotated.access_token.clone();
        let addr = t.http_addr.clone().unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/v1/verify"))
                .json(&json!({"token": token}))
                .send()
                .await
                .map(|r| r.status().as_u16())
        }));
    }
    for task in tasks {
        assert_eq!(task.await??, 200);
    }
    assert_eq!(p.jwks_requests().await? - before, 1, "exactly one refetch");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withdrawn_key_is_refused_after_refresh() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.refresh_interval = "1s".into();
    cfg.max_stale = "1h".into();
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let old = p.login("alice").await?.access_token;
    assert_eq!(t.verify(&old).await?.status, 200, "verified and cached");

    p.set_keys("k2", &["k2"]).await?;
    let mut last = String::new();
    for _ in 0..60 {
        let a = t.verify(&old).await?;
        if a.status == 401 {
            assert_eq!(a.reason(), "unknown_kid");
            let fresh = p.login("alice").await?.access_token;
            assert_eq!(t.verify(&fresh).await?.status, 200);
            return Ok(());
        }
        last = String::from_utf8_lossy(&a.body).into();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("token of a withdrawn key still verifies: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_outage_keeps_verification_and_restart_uses_disk_cache() -> R {
    let mut p = Provider::start().await?;
    let dir = tempfile::tempdir()?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.cache_file = Some(dir.path().join("state/jwks.json"));
    std::fs::create_dir_all(dir.path().join("state"))?;
    cfg.refresh_interval = "1s".into();
    let mut t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let a1 = p.login("alice").await?.access_token;
    let a2 = p.login("bob").await?.access_token;
    assert_eq!(t.verify(&a1).await?.status, 200);
    assert!(
        dir.path().join("state/jwks.json").exists(),
        "disk cache written"
    );

    let m0 = t.metrics().await?;
    p.stop().await;
    // A background refresh fails meanwhile (issue #8: once only slept, never checked).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t
        .metrics()
        .await?
        .delta(&m0, "tokend_jwks_fetches_total{result=\"failure\"}")
        < 1.0
    {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no JWKS refresh failed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = t.verify(&a2).await?;
    assert_eq!(a.status, 200, "uncached token, provider down: {:?}", a.body);
    assert_eq!(t.get("/readyz", &[]).await?.status, 200);

    // Restart while the provider is down: ready from the disk cache.
    assert!(t.terminate().await?.success());
    let t2 = Tokend::start(&cfg).await?;
    t2.wait_ready().await?;
    assert_eq!(t2.verify(&a1).await?.status, 200);
    assert_eq!(t2.verify_unix(&a2).await?.status, 200);
    assert!(t2.output.text().contains("disk cache"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_without_provider_or_cache() -> R {
    let mut p = Provider::start().await?;
    let cfg = TokendConfig::for_provider(&p);
    p.stop().await;
    let t = Tokend::start(&cfg).await?;
    // The reason names the failed fetch, not the "waiting for the first fetch" of a tokend
    // that has not tried yet (issue #8: both matched the old check).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let v = loop {
        let a = t.get("/readyz", &[]).await?;
        assert_eq!(a.status, 503);
        let v = a.json();
        assert_eq!(v["ready"], false);
        let reason = v["reason"].as_str().unwrap_or("").to_string();
        if !reason.contains("waiting for the first") {
            break v;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "no fetch failed: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reason = v["reason"].as_str().unwrap_or("");
    assert!(
        reason.starts_with("no verification keys loaded: ")
            && reason.contains("/.well-known/openid-configuration"),
        "{v}"
    );
    assert_eq!(t.get("/livez", &[]).await?.status, 200);
    let a = t
        .verify("eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.e30.c2ln")
        .await?;
    assert_eq!((a.status, a.reason()), (503, "keys_unavailable".into()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_kid_flood_is_bounded() -> R {
    let (p, t) = setup().await?;
    let claims = p.claims_template("alice").await?;
    let mut tokens = Vec::new();
    for i in 0..200 {
        tokens.push(
            p.sign(
                "k1",
                "RS256",
                json!({"kid": format!("bogus-{i}")}),
                claims.clone(),
            )
            .await?,
        );
    }
    let before = p.jwks_requests().await?;
    let addr = t.http_addr.clone().unwrap_or_default();
    let client = reqwest::Client::new();
    let mut tasks = Vec::new();
    for token in tokens {
        let (client, addr) = (client.clone(), addr.clone());
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(format!("http://{addr}/v1/verify"))
                .json(&json!({"token": token}))
                .send()
                .await?;
            let status = r.status().as_u16();
            let v: Value = r.json().await?;
            anyhow::Ok((status, v["reason"].as_str().unwrap_or("").to_string()))
        }));
    }
    for task in tasks {
        assert_eq!(task.await??, (401, "unknown_kid".to_string()));
    }
    let fetched = p.jwks_requests().await? - before;
    assert!(
        fetched <= 1,
        "200 bogus kids caused {fetched} JWKS requests"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_url_sends_the_public_host() -> R {
    // The provider's public host is `localhost:PORT`; tokend reaches it via 127.0.0.1.
    let port = free_port()?;
    let public = format!("localhost:{port}");
    let p = Provider::start_with(tokend_e2e::ProviderOptions {
        port: Some(port),
        public_host: Some(public.clone()),
        ..Default::default()
    })
    .await?;
    assert!(p.issuer.contains("localhost"), "{}", p.issuer);

    // Configured with the internal address as issuer, discovery agrees (Authentik computes
    // the issuer from the Host it is asked with), but the browser-issued tokens do not.
    let mut wrong = TokendConfig::for_provider(&p);
    wrong.issuer = p.issuer.replace("localhost", "127.0.0.1");
    let t = Tokend::start(&wrong).await?;
    t.wait_ready().await?;
    let token = p.login("alice").await?.access_token;
    assert_eq!(t.verify(&token).await?.reason(), "wrong_issuer");
    drop(t);
    p.reset_stats().await?;

    let mut cfg = TokendConfig::for_provider(&p);
    cfg.internal_url = Some(format!("http://127.0.0.1:{}/", p.port));
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    assert_eq!(t.verify(&token).await?.status, 200);
    // tokend's own discovery and JWKS requests carried the public host (issue #8: the old
    // check also counted the test's own token request, so it could not fail).
    let seen = p.stats().await?["seen"].clone();
    for endpoint in ["discovery", "jwks"] {
        let ours: Vec<&serde_json::Value> = seen[endpoint]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["user_agent"]
                    .as_str()
                    .is_some_and(|ua| ua.starts_with("tokend/"))
            })
            .collect();
        assert!(
            !ours.is_empty(),
            "no {endpoint} request from tokend: {seen}"
        );
        for r in ours {
            assert_eq!(r["host"], public.as_str(), "{endpoint}: {r}");
        }
    }
    Ok(())
}

/// Issue #7: JWS header parameters tokend does not process (`crit` in any form, even `null`;
/// `cty`, a nested JWT; `zip`) are refused with the stable reason `unsupported_header`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_unprocessed_header_parameters_are_refused() -> R {
    let (p, t) = setup().await?;
    let claims = p.claims_template("alice").await?;
    let good = p.sign("k1", "RS256", json!({}), claims.clone()).await?;
    assert_eq!(t.verify(&good).await?.status, 200);
    let mut secrets = vec![good];
    for header in [
        json!({"crit": null}),
        json!({"crit": []}),
        json!({"crit": ""}),
        json!({"crit": ["exp"], "exp": 1}),
        json!({"cty": "JWT"}),
        json!({"zip": "DEF"}),
    ] {
        let token = p
            .sign("k1", "RS256", header.clone(), claims.clone())
            .await?;
        for a in [t.verify(&token).await?, t.verify_unix(&token).await?] {
            assert_eq!(
                (a.status, a.reason()),
                (401, "unsupported_header".into()),
                "{header}: {}",
                String::from_utf8_lossy(&a.body)
            );
            assert_eq!(a.json()["active"], false);
        }
        secrets.push(token);
    }
    let refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
    t.output.assert_free_of(&refs);
    Ok(())
}

/// Issue #7: an RSA JWK without `alg` verifies one family only: RS* by default (as Authentik
/// signs), PS* with `jwks.rsa_without_alg = "PS"` — never both with one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_7_rsa_key_without_alg_verifies_one_family() -> R {
    let p = Provider::start().await?;
    p.jwks_strip_alg(true).await?;
    let claims = p.claims_template("alice").await?;
    let rs = p.sign("k1", "RS256", json!({}), claims.clone()).await?;
    let ps = p.sign("k1", "PS256", json!({}), claims.clone()).await?;

    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let a = t.verify(&rs).await?;
    assert_eq!(a.status, 200, "RS256 by default: {:?}", a.body);
    let a = t.verify(&ps).await?;
    assert_eq!(
        (a.status, a.reason()),
        (401, "unsupported_alg".into()),
        "PS256 with an alg-less RSA key by default: {:?}",
        a.body
    );

    let mut cfg = TokendConfig::for_provider(&p);
    cfg.env = vec![("TOKEND_JWKS_RSA_WITHOUT_ALG".into(), "PS".into())];
    let t2 = Tokend::start(&cfg).await?;
    t2.wait_ready().await?;
    let a = t2.verify(&ps).await?;
    assert_eq!(
        a.status, 200,
        "PS256 with rsa_without_alg = PS: {:?}",
        a.body
    );
    let a = t2.verify(&rs).await?;
    assert_eq!(
        (a.status, a.reason()),
        (401, "unsupported_alg".into()),
        "RS256 with rsa_without_alg = PS: {:?}",
        a.body
    );
    t.output.assert_free_of(&[&rs, &ps]);
    t2.output.assert_free_of(&[&rs, &ps]);
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap_or_default()
}
