//! Issue #8: a test provider as strict as Authentik — an https public issuer reached through an
//! http internal URL (X-Forwarded-Proto/Host), `client_secret_basic` only, HS256 tokens without
//! `kid`, refreshes after the session ended minting tokens without `sid`, ID tokens a callback
//! must refuse, and JWKS with `x5c`/`x5t`/`x5t#S256`. Through the real binary and the real
//! provider.

use serde_json::{Value, json};
use tokend_e2e::flow::{
    FRONTEND, at_provider, cookie_value, flow_setup, location, log_in, set_cookies, start_login,
};
use tokend_e2e::{Provider, ProviderOptions, Tokend, TokendConfig, free_port, jwt_payload};

type R = anyhow::Result<()>;

const PUBLIC_HOST: &str = "auth.example.test";

/// The provider as deployed: public issuer `https://auth.example.test/…` (TLS ends at a proxy),
/// the provider itself on plain HTTP; tokend configured with the public issuer and the internal
/// URL, its flow mounted (the provider redirects to tokend and delivers back-channel logouts).
async fn https_setup() -> anyhow::Result<(Provider, Tokend)> {
    let port = free_port()?;
    let p = Provider::start_with(ProviderOptions {
        public_host: Some(PUBLIC_HOST.into()),
        public_scheme: Some("https".into()),
        redirect_uris: vec![format!("http://127.0.0.1:{port}/auth/callback")],
        backchannel_logout_uri: Some(format!("http://127.0.0.1:{port}/auth/backchannel-logout")),
        ..Default::default()
    })
    .await?;
    assert_eq!(
        p.issuer,
        format!("https://{PUBLIC_HOST}/application/o/tokend/")
    );
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.internal_url = Some(format!("http://127.0.0.1:{}", p.port));
    cfg.http_port = Some(port);
    cfg.tail = format!(
        "\n[flow]\nredirect_uri = \"http://127.0.0.1:{port}/auth/callback\"\nfrontend_url = \"{FRONTEND}\"\norganization_scope = \"organization\"\n"
    );
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    Ok((p, t))
}

/// Asserts every request tokend made to `endpoint` (at least one) came with the public host
/// and scheme: `Host` and `X-Forwarded-Host` = the public host, `X-Forwarded-Proto: https`.
async fn assert_public_origin(p: &Provider, endpoint: &str) -> R {
    let seen = p.seen_from_tokend(endpoint).await?;
    assert!(!seen.is_empty(), "tokend made no {endpoint} request");
    for e in &seen {
        assert_eq!(e["host"], PUBLIC_HOST, "{endpoint}: {e}");
        assert_eq!(e["x_forwarded_host"], PUBLIC_HOST, "{endpoint}: {e}");
        assert_eq!(e["x_forwarded_proto"], "https", "{endpoint}: {e}");
    }
    Ok(())
}

/// Issue #8: the real deployment — https public issuer, http internal URL. Discovery and JWKS
/// go through the internal URL with the public Host and `X-Forwarded-Proto: https` (else the
/// provider would advertise an `http://` issuer and discovery would fail the issuer check), and
/// tokens carrying the https issuer verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_https_public_issuer_through_internal_url() -> R {
    let (p, t) = https_setup().await?;
    let tokens = p.login("alice").await?;
    assert_eq!(jwt_payload(&tokens.access_token)["iss"], p.issuer.as_str());
    let a = t.verify(&tokens.access_token).await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_public_origin(&p, "discovery").await?;
    assert_public_origin(&p, "jwks").await?;
    t.output
        .assert_free_of(&[&tokens.access_token, &p.client_secret]);
    Ok(())
}

/// Issue #8: the whole login flow through the internal URL: the browser is sent to the public
/// https authorization endpoint, tokend exchanges the code, refreshes and revokes through the
/// internal URL, each time with the public Host and scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_login_flow_through_internal_url() -> R {
    let (p, t) = https_setup().await?;
    let started = start_login(&t, "/").await?;
    assert!(
        started
            .authorize
            .starts_with(&format!("https://{PUBLIC_HOST}/application/o/authorize/?")),
        "{}",
        started.authorize
    );
    let session = log_in(&p, &t, "alice", "browser").await?;
    let a = t.verify(&session.access).await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json()["claims"]["extra"]["iss"], p.issuer.as_str());
    assert_public_origin(&p, "token").await?;

    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &session.refresh)
        .await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let access2 = cookie_value(&set_cookies(&a), "ecosire_auth").unwrap_or_default();
    assert_eq!(t.verify(&access2).await?.status, 200);
    assert_eq!(p.stat("refresh_grants").await?, 1);

    let revocations = p.stat("revocations").await?;
    let a = t
        .post_cookie("/auth/logout", "ecosire_auth", &access2)
        .await?;
    assert_eq!(a.status, 200);
    assert_eq!(p.stat("revocations").await? - revocations, 1);
    assert_public_origin(&p, "revocation").await?;
    assert_public_origin(&p, "token").await?;
    t.output.assert_free_of(&[
        &session.access,
        &session.refresh,
        &session.code,
        &access2,
        &p.client_secret,
    ]);
    Ok(())
}

/// Issue #8: the provider accepts only `client_secret_basic` (what tokend sends) unless a test
/// allows more; with only `client_secret_post` allowed, tokend's code exchange and revocation
/// are refused — and a refused RFC 7009 call is not counted as a revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_client_secret_basic_only() -> R {
    let (p, t) = flow_setup("").await?;
    // The default (basic only) carries a whole login, refresh and logout.
    let session = log_in(&p, &t, "alice", "b1").await?;
    assert_eq!(p.stat("client_auth_failures").await?, 0);

    p.client_auth(&["client_secret_post"]).await?;
    let started = start_login(&t, "/").await?;
    let callback = at_provider(&p, &t, &started, "bob", "b2").await?;
    let codes = t.metrics().await?;
    let a = t.get(&callback, &[("cookie", &started.cookie)]).await?;
    assert_eq!(
        location(&a),
        format!("{FRONTEND}/auth/login?error=exchange_failed")
    );
    assert_eq!(
        t.metrics()
            .await?
            .delta(&codes, "tokend_codes_issued_total"),
        0.0
    );

    let (revocations, requests) = (
        p.stat("revocations").await?,
        p.stat("revocation_requests").await?,
    );
    let a = t
        .post_cookie("/auth/logout", "ecosire_auth", &session.access)
        .await?;
    assert_eq!(a.status, 200);
    assert_eq!(p.stat("revocation_requests").await? - requests, 1);
    assert_eq!(
        p.stat("revocations").await? - revocations,
        0,
        "a refused revocation is no revocation"
    );
    assert!(p.stat("client_auth_failures").await? >= 2);
    // The refresh token survived upstream (its revocation was refused).
    p.client_auth(&["client_secret_basic"]).await?;
    assert_eq!(p.refresh_grant(&session.refresh).await?.0, 200);
    t.output
        .assert_free_of(&[&session.access, &session.refresh, &p.client_secret]);
    Ok(())
}

/// Issue #8: in HS256 mode (Authentik without a signing key: JWKS `{}`, tokens signed with the
/// client secret) the token header has no `kid` member at all — and tokend verifies it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_hs256_tokens_without_kid_verify() -> R {
    let p = Provider::start().await?;
    p.jwks_mode("empty").await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.algorithms = Some(vec!["HS256".into()]);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let claims = p.claims_template("alice").await?;
    // A kid asked for, or a null kid member, never reaches an HS256 header.
    for header in [json!({}), json!({"kid": null})] {
        let token = p.sign("k1", "HS256", header, claims.clone()).await?;
        let head = header_of(&token)?;
        assert_eq!(head, json!({"alg": "HS256", "typ": "JWT"}), "{head}");
        let a = t.verify(&token).await?;
        assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
        t.output.assert_free_of(&[&token]);
    }
    t.output.assert_free_of(&[&p.client_secret]);
    Ok(())
}

/// Issue #8: Authentik keeps a session's refresh tokens when the session ends, and a refresh
/// with one then mints tokens without `sid`. The provider does so too; tokend cannot link such
/// a token to the ended session (a session tokend never registered is not its to end).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_refresh_after_session_end_mints_tokens_without_sid() -> R {
    let (p, t) = flow_setup("").await?;
    let tokens = p.login_in("bob", "outside").await?;
    let rt = tokens.refresh_token.clone().unwrap_or_default();
    assert!(jwt_payload(&tokens.access_token)["sid"].is_string());
    // Before the session ends, a refresh keeps the sid.
    let (status, body) = p.refresh_grant(&rt).await?;
    assert_eq!(status, 200, "{body}");
    assert!(jwt_payload(str_of(&body, "access_token")?)["sid"].is_string());
    let rt = str_of(&body, "refresh_token")?.to_string();

    p.end_session("outside").await?;
    let (status, body) = p.refresh_grant(&rt).await?;
    assert_eq!(status, 200, "refresh tokens outlive the session: {body}");
    for name in ["access_token", "id_token"] {
        let claims = jwt_payload(str_of(&body, name)?);
        assert_eq!(claims["sub"], "bob");
        assert!(claims.get("sid").is_none(), "{name} has a sid: {claims}");
    }
    let access = str_of(&body, "access_token")?;
    assert_eq!(t.verify(access).await?.status, 200);
    Ok(())
}

/// Issue #8: after a back-channel logout the ended session's tokens stay refused, including
/// what a refresh would mint: tokend refuses the refresh token locally (no provider request),
/// and revokes it at the provider, so a refresh sent there directly — which would mint tokens
/// without `sid`, not linkable to the session — answers 400 `invalid_grant`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_backchannel_logout_revokes_refresh_token_upstream() -> R {
    let (p, t) = flow_setup("").await?;
    let session = log_in(&p, &t, "alice", "b1").await?;
    let revocations = p.stat("revocations").await?;
    let resp = p.end_session("b1").await?;
    let delivered = resp["backchannel"].as_array().cloned().unwrap_or_default();
    assert!(
        delivered.iter().any(|b| b["ok"] == true),
        "delivered: {resp}"
    );
    assert_eq!(
        t.verify(&session.access).await?.reason(),
        "token_revoked",
        "the session's tokens are refused"
    );
    assert_eq!(p.stat("revocations").await? - revocations, 1);

    let grants = p.stat("refresh_grants").await?;
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &session.refresh)
        .await?;
    assert_eq!((a.status, a.reason()), (401, "no_session".into()));
    assert_eq!(
        p.stat("refresh_grants").await?,
        grants,
        "refused locally, not sent upstream"
    );

    let (status, body) = p.refresh_grant(&session.refresh).await?;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    t.output.assert_free_of(&[
        &session.access,
        &session.refresh,
        &session.code,
        &p.client_secret,
    ]);
    Ok(())
}

/// Issue #8: an ID token with the wrong nonce or the wrong audience (signed by the provider's
/// real key) ends the callback at `?error=invalid_id_token` and mints no exchange code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_callback_refuses_bad_id_tokens() -> R {
    let (p, t) = flow_setup("").await?;
    for (i, kind) in ["wrong_nonce", "wrong_audience"].into_iter().enumerate() {
        p.bad_id_token(kind).await?;
        let started = start_login(&t, "/").await?;
        let callback = at_provider(&p, &t, &started, "alice", &format!("jar{i}")).await?;
        let before = t.metrics().await?;
        let a = t.get(&callback, &[("cookie", &started.cookie)]).await?;
        assert_eq!(a.status, 302);
        assert_eq!(
            location(&a),
            format!("{FRONTEND}/auth/login?error=invalid_id_token"),
            "{kind}"
        );
        let after = t.metrics().await?;
        assert_eq!(
            after.delta(&before, "tokend_codes_issued_total"),
            0.0,
            "{kind}"
        );
        assert_eq!(after.get("tokend_sessions_active"), 0.0, "{kind}");
    }
    // The control spoils one exchange only: the next login goes through.
    let session = log_in(&p, &t, "alice", "good").await?;
    assert_eq!(t.verify(&session.access).await?.status, 200);
    t.output
        .assert_free_of(&[&session.access, &p.client_secret]);
    Ok(())
}

/// Issue #8: the JWKS carries certificates as Authentik publishes them (`x5c`, `x5t`,
/// `x5t#S256`), and tokend still loads the keys and verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_verifies_with_x5c_jwks() -> R {
    let p = Provider::start().await?;
    let jwks: Value = reqwest::get(format!("{}/application/o/tokend/jwks/", p.base()))
        .await?
        .json()
        .await?;
    let keys = jwks["keys"].as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 2);
    for k in &keys {
        assert!(k["x5c"][0].as_str().is_some_and(|c| c.len() > 500), "{k}");
        assert!(k["x5t"].is_string() && k["x5t#S256"].is_string(), "{k}");
    }
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let tokens = p.login("alice").await?;
    let a = t.verify(&tokens.access_token).await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    // Both published keys were loaded (k2 signs after a rotation without a refetch).
    let jwks_requests = p.jwks_requests().await?;
    p.set_keys("k2", &["k1", "k2"]).await?;
    let tokens = p.login("bob").await?;
    assert_eq!(t.verify(&tokens.access_token).await?.status, 200);
    assert_eq!(p.jwks_requests().await?, jwks_requests);
    Ok(())
}

fn header_of(token: &str) -> anyhow::Result<Value> {
    use base64::Engine;
    let part = token.split('.').next().unwrap_or("");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part)?;
    Ok(serde_json::from_slice(&bytes)?)
}

fn str_of<'a>(v: &'a Value, name: &str) -> anyhow::Result<&'a str> {
    v[name]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no {name} in {v}"))
}
