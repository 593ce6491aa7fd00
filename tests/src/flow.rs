//! Helpers for tests of the login flow: a provider whose client redirects to tokend, and the
//! browser's side of redirects and cookies.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::{Answer, Provider, ProviderOptions, Tokend, TokendConfig, free_port};

pub const FRONTEND: &str = "http://frontend.test";

/// A provider whose client redirects to tokend's callback, and tokend with the flow mounted;
/// `extra` goes into the `[flow]` section (and may open further sections).
pub async fn flow_setup(extra: &str) -> anyhow::Result<(Provider, Tokend)> {
    flow_setup_with(None, "", extra).await
}

/// [`flow_setup`] with the provider's access-token lifetime (seconds) and extra `[verify]`
/// lines.
pub async fn flow_setup_with(
    access_ttl: Option<u64>,
    verify_extra: &str,
    extra: &str,
) -> anyhow::Result<(Provider, Tokend)> {
    let (p, cfg) = flow_config(access_ttl, verify_extra, extra).await?;
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    Ok((p, t))
}

/// The provider and the config [`flow_setup_with`] starts tokend with, for a test that starts
/// (and restarts) tokend itself: the config's fixed TCP port is the one the provider's client
/// redirects to.
pub async fn flow_config(
    access_ttl: Option<u64>,
    verify_extra: &str,
    extra: &str,
) -> anyhow::Result<(Provider, TokendConfig)> {
    let port = free_port()?;
    let p = Provider::start_with(ProviderOptions {
        redirect_uris: vec![format!("http://127.0.0.1:{port}/auth/callback")],
        backchannel_logout_uri: Some(format!("http://127.0.0.1:{port}/auth/backchannel-logout")),
        access_ttl,
        ..Default::default()
    })
    .await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.http_port = Some(port);
    cfg.verify_extra = verify_extra.to_string();
    cfg.tail = format!(
        "\n[flow]\nredirect_uri = \"http://127.0.0.1:{port}/auth/callback\"\nfrontend_url = \"{FRONTEND}\"\norganization_scope = \"organization\"\n{extra}"
    );
    Ok((p, cfg))
}

pub fn location(a: &Answer) -> String {
    a.headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

pub fn query(url: &str) -> HashMap<String, String> {
    reqwest::Url::parse(url)
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

pub fn set_cookies(a: &Answer) -> Vec<String> {
    a.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect()
}

/// The value of cookie `name` among Set-Cookie headers.
pub fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        c.split(';')
            .next()
            .and_then(|kv| kv.strip_prefix(&format!("{name}=")))
            .map(str::to_string)
    })
}

pub fn cookie_attrs(cookies: &[String], name: &str) -> Vec<String> {
    cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').skip(1).map(|a| a.trim().to_string()).collect())
        .unwrap_or_default()
}

/// A login begun at `/auth/login`: the provider's authorization URL, and the browser-binding
/// cookie as a `Cookie` header value (`name=value`).
#[derive(Debug, Clone)]
pub struct Started {
    pub authorize: String,
    pub cookie: String,
}

/// `GET /auth/login?redirect=…` as a browser: follows nothing, keeps the binding cookie.
pub async fn start_login(t: &Tokend, redirect: &str) -> anyhow::Result<Started> {
    let a = t
        .get(
            &format!("/auth/login?redirect={}", urlencode(redirect)),
            &[],
        )
        .await?;
    anyhow::ensure!(a.status == 302, "/auth/login answered {}", a.status);
    let cookie = set_cookies(&a)
        .iter()
        .find(|c| c.contains("tokend_login_"))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("/auth/login set no binding cookie"))?;
    Ok(Started {
        authorize: location(&a),
        cookie,
    })
}

/// The provider logs `user` in for `started`; returns tokend's callback path and query.
pub async fn at_provider(
    p: &Provider,
    t: &Tokend,
    started: &Started,
    user: &str,
    jar: &str,
) -> anyhow::Result<String> {
    let back = browse(p, &started.authorize, user, jar).await?;
    anyhow::ensure!(
        back.starts_with(&t.base_url()?),
        "provider sent the browser to {back}"
    );
    Ok(back.trim_start_matches(&t.base_url()?).to_string())
}

/// Runs /auth/login → provider login → /auth/callback (with the binding cookie, as the
/// browser would send it); returns the frontend URL reached.
pub async fn login_through_tokend(
    p: &Provider,
    t: &Tokend,
    user: &str,
    redirect: &str,
    jar: &str,
) -> anyhow::Result<String> {
    let started = start_login(t, redirect).await?;
    let callback = at_provider(p, t, &started, user, jar).await?;
    let a = t.get(&callback, &[("cookie", &started.cookie)]).await?;
    anyhow::ensure!(a.status == 302, "callback answered {}", a.status);
    Ok(location(&a))
}

pub async fn browse(p: &Provider, url: &str, user: &str, jar: &str) -> anyhow::Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("{}/_test/browse", p.base()))
        .json(&json!({"url": url, "user": user, "session": jar}))
        .send()
        .await?;
    let v: Value = resp.json().await?;
    v["location"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("browse failed: {v}"))
}

pub fn urlencode(s: &str) -> String {
    reqwest::Url::parse_with_params("http://x/", &[("v", s)])
        .ok()
        .and_then(|u| u.query().map(|q| q.trim_start_matches("v=").to_string()))
        .unwrap_or_default()
}

/// A browser logged in through tokend: the exchange code it was given and the cookies it got.
#[derive(Debug, Clone)]
pub struct LoggedIn {
    pub code: String,
    pub access: String,
    pub refresh: String,
}

/// /auth/login → provider login → /auth/callback → /auth/exchange, in browser jar `jar`.
pub async fn log_in(p: &Provider, t: &Tokend, user: &str, jar: &str) -> anyhow::Result<LoggedIn> {
    let front = login_through_tokend(p, t, user, "/", jar).await?;
    let code = query(&front)
        .get("exchange")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no exchange code in {front}"))?;
    let a = t
        .post("/auth/exchange", json!({"code": code}).to_string())
        .await?;
    anyhow::ensure!(a.status == 200, "exchange answered {}", a.status);
    let cookies = set_cookies(&a);
    let cookie = |name: &str| {
        cookie_value(&cookies, name).ok_or_else(|| anyhow::anyhow!("no {name} cookie"))
    };
    Ok(LoggedIn {
        access: cookie("ecosire_auth")?,
        refresh: cookie("ecosire_refresh")?,
        code,
    })
}

/// `n` concurrent `POST /auth/refresh` with one refresh cookie; the access cookie each caller
/// got (empty when none), after asserting every answer was 200.
pub async fn concurrent_refreshes(
    t: &Tokend,
    refresh: &str,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let client = reqwest::Client::new();
    let url = format!("{}/auth/refresh", t.base_url()?);
    let cookie = format!("ecosire_refresh={refresh}");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (client, url, cookie) = (client.clone(), url.clone(), cookie.clone());
        tasks.spawn(async move {
            let r = client.post(url).header("cookie", cookie).send().await?;
            let status = r.status().as_u16();
            let cookies: Vec<String> = r
                .headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok().map(str::to_string))
                .collect();
            anyhow::ensure!(status == 200, "a refresh answered {status}");
            anyhow::Ok(cookie_value(&cookies, "ecosire_auth").unwrap_or_default())
        });
    }
    let mut accesses = Vec::new();
    while let Some(r) = tasks.join_next().await {
        accesses.push(r??);
    }
    Ok(accesses)
}
