//! Issue #13: forward auth for reverse proxies. A real nginx (Debian package) runs the
//! committed docs/forward-auth/nginx.conf, asks the real tokend (`auth_request` → `/v1/auth`
//! over its Unix socket) and protects an echo app that shows which headers reached it; the
//! tokens come from the real test provider.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::{Value, json};
use tokend_e2e::nginx::{EchoApp, Nginx};
use tokend_e2e::{Provider, Tokend, TokendConfig, is_root, now};

type R = anyhow::Result<()>;

/// Provider, tokend (its socket reachable by nginx's workers: group www-data when root), the
/// echo app and nginx; `None` when nginx is absent and skipped.
struct Stack {
    p: Provider,
    t: Tokend,
    app: EchoApp,
    nginx: Nginx,
    http: reqwest::Client,
}

async fn stack(test: &str, tail: &str) -> anyhow::Result<Option<Stack>> {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    if is_root() {
        // As in production: nginx's workers (www-data) connect through the socket's group.
        cfg.listen_extra = "socket_group = \"www-data\"\n".into();
    }
    cfg.tail = tail.into();
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let t = Tokend::start_in(&cfg, dir).await?;
    t.wait_ready().await?;
    let app = EchoApp::start().await?;
    let socket = t.socket.clone().expect("socket");
    let Some(nginx) = Nginx::start(test, &socket, app.port).await? else {
        return Ok(None);
    };
    Ok(Some(Stack {
        p,
        t,
        app,
        nginx,
        http: reqwest::Client::new(),
    }))
}

/// An answer through nginx: status, headers, and (200) the headers the app received.
struct Through {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Through {
    /// Every value of `name` the app received.
    fn upstream(&self, name: &str) -> Vec<String> {
        let v: Value = serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not the app's answer ({}): {}", self.status, self.body));
        v["headers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|h| h[0].as_str() == Some(name))
            .filter_map(|h| h[1].as_str().map(str::to_string))
            .collect()
    }

    fn one(&self, name: &str) -> Option<String> {
        let all = self.upstream(name);
        assert!(all.len() <= 1, "{name} twice: {all:?}");
        all.into_iter().next()
    }
}

impl Stack {
    async fn get(&self, headers: &[(&str, &str)]) -> anyhow::Result<Through> {
        self.send(reqwest::Method::GET, headers).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Through> {
        let mut req = self.http.request(method, self.nginx.url("/app/page"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await?;
        Ok(Through {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await?,
        })
    }

    async fn with_cookie(&self, token: &str) -> anyhow::Result<Through> {
        self.get(&[("cookie", &format!("theme=dark; ecosire_auth={token}"))])
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_nginx_lets_valid_tokens_through_with_identity_headers() -> R {
    let Some(s) = stack(
        "issue_13_nginx_lets_valid_tokens_through_with_identity_headers",
        "",
    )
    .await?
    else {
        return Ok(());
    };
    let m0 = s.t.metrics().await?;

    // No token: nginx answers 401 with tokend's challenge; the app sees nothing.
    let a = s.get(&[]).await?;
    assert_eq!(a.status, 401, "{}\n{}", a.body, s.nginx.error_log());
    assert_eq!(
        a.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"tokend\"")
    );
    assert_eq!(s.app.hits(), 0);

    // A valid token in the access cookie: the page, with the identity as the app saw it. What
    // the client sent under the identity headers' names never arrives.
    let alice = s.p.login("alice").await?;
    let cookie = format!("ecosire_auth={}", alice.access_token);
    let a = s
        .get(&[
            ("cookie", &cookie),
            ("x-auth-request-user", "mallory"),
            ("x-auth-request-role", "admin"),
            ("x-auth-request-org", "org-evil"),
        ])
        .await?;
    assert_eq!(a.status, 200, "{}\n{}", a.body, s.nginx.error_log());
    assert_eq!(a.one("x-auth-request-user").as_deref(), Some("alice"));
    assert_eq!(
        a.one("x-auth-request-email").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        a.one("x-auth-request-preferred-username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        a.one("x-auth-request-groups").as_deref(),
        Some("ecosire-admins")
    );
    assert_eq!(a.one("x-auth-request-org").as_deref(), Some("org-1"));
    assert_eq!(a.one("x-auth-request-role").as_deref(), Some("admin"));
    assert_eq!(s.app.hits(), 1);

    // Bearer works too; a POST as well (auth_request keeps the method), and carol (no org
    // claim: falls back to sub; no group rule: the default role).
    let bob = s.p.login("bob").await?;
    let bearer = format!("Bearer {}", bob.access_token);
    let a = s
        .send(reqwest::Method::POST, &[("authorization", &bearer)])
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.one("x-auth-request-user").as_deref(), Some("bob"));
    assert_eq!(a.one("x-auth-request-role").as_deref(), Some("support"));

    // An expired token: 401, with the error in the challenge.
    let mut claims = s.p.claims_template("alice").await?;
    claims["exp"] = json!(now() - 600);
    claims["iat"] = json!(now() - 900);
    let expired = s.p.sign("k1", "RS256", json!({}), claims).await?;
    let a = s.with_cookie(&expired).await?;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"tokend\", error=\"invalid_token\"")
    );

    // Revoked by an administrator (by sub; the login did not go through tokend's flow, so no
    // session is registered, but the sub's tokens are refused): 401 at once, though cached.
    assert_eq!(s.with_cookie(&alice.access_token).await?.status, 200);
    let out = s.t.admin()?.revoke_user("alice").await?;
    assert!(out.tokens_refused_until > now(), "{out:?}");
    assert_eq!(s.with_cookie(&alice.access_token).await?.status, 401);
    assert_eq!(s.app.hits(), 3, "refused requests never reached the app");

    // Counted like verifications, by outcome.
    let m1 = s.t.metrics().await?;
    let invalid =
        |r: &str| format!("tokend_verifications_total{{reason=\"{r}\",result=\"invalid\"}}");
    assert_eq!(m1.delta(&m0, &invalid("missing_token")), 1.0);
    assert_eq!(m1.delta(&m0, &invalid("expired")), 1.0);
    assert_eq!(m1.delta(&m0, &invalid("revoked_by_admin")), 1.0);
    assert_eq!(
        m1.delta(
            &m0,
            "tokend_verifications_total{reason=\"\",result=\"valid\"}"
        ),
        3.0
    );

    s.t.output.assert_free_of(&[
        &alice.access_token,
        &bob.access_token,
        &expired,
        &s.p.client_secret,
    ]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_nginx_claims_cannot_inject_headers_and_long_groups_are_cut() -> R {
    let test = "issue_13_nginx_claims_cannot_inject_headers_and_long_groups_are_cut";
    let Some(s) = stack(test, "\n[forward_auth]\nmax_header_bytes = 1024\n").await? else {
        return Ok(());
    };
    // CR/LF in claims: no header of their making reaches the app, the values arrive encoded.
    let mut claims = s.p.claims_template("alice").await?;
    claims["preferred_username"] = json!("eve\r\nX-Injected: 1");
    claims["email"] = json!("zoë@example.com");
    claims["groups"] = json!(["staff", "ops\r\nX-Injected: 2", "a,b"]);
    let injected = s.p.sign("k1", "RS256", json!({}), claims).await?;
    let a = s.with_cookie(&injected).await?;
    assert_eq!(a.status, 200, "{}\n{}", a.body, s.nginx.error_log());
    assert!(a.upstream("x-injected").is_empty(), "{}", a.body);
    assert_eq!(
        a.one("x-auth-request-preferred-username").as_deref(),
        Some("eve%0D%0AX-Injected: 1")
    );
    assert_eq!(
        a.one("x-auth-request-email").as_deref(),
        Some("zo%C3%AB@example.com")
    );
    assert_eq!(
        a.one("x-auth-request-groups").as_deref(),
        Some("staff,ops%0D%0AX-Injected: 2,a%2Cb")
    );

    // 300 groups do not fit 1024 bytes: whole groups, in order, then the marker; counted.
    let m0 = s.t.metrics().await?;
    let groups: Vec<String> = (0..300).map(|i| format!("group-{i:03}")).collect();
    let mut claims = s.p.claims_template("alice").await?;
    claims["groups"] = json!(groups);
    let many = s.p.sign("k1", "RS256", json!({}), claims).await?;
    let a = s.with_cookie(&many).await?;
    assert_eq!(a.status, 200, "{}\n{}", a.body, s.nginx.error_log());
    let got = a.one("x-auth-request-groups").expect("groups");
    let items: Vec<&str> = got.split(',').collect();
    assert_eq!(items.last(), Some(&"%E2%80%A6"), "{got}");
    assert!(items.len() > 20 && items.len() < 300, "{}", items.len());
    for (i, g) in items[..items.len() - 1].iter().enumerate() {
        assert_eq!(*g, groups[i]);
    }
    assert_eq!(a.one("x-auth-request-user").as_deref(), Some("alice"));
    let m1 = s.t.metrics().await?;
    assert_eq!(m1.delta(&m0, "tokend_forward_auth_truncated_total"), 1.0);

    s.t.output.assert_free_of(&[&injected, &many]);
    Ok(())
}

/// `/v1/auth` itself on both listeners, and the authentik header set by a hot reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_auth_endpoint_on_both_listeners_and_the_authentik_set() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let alice = p.login("alice").await?;
    let cookie = format!("ecosire_auth={}", alice.access_token);

    for (over, a) in [
        ("tcp", t.get("/v1/auth", &[]).await?),
        ("unix", t.unix("GET", "/v1/auth", &[], None).await?),
    ] {
        assert_eq!(a.status, 401, "{over}");
        let h = |n: &str| {
            a.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        assert_eq!(
            h("www-authenticate").as_deref(),
            Some("Bearer realm=\"tokend\""),
            "{over}"
        );
        assert_eq!(h("x-auth-request-reason").as_deref(), Some("missing_token"));
        assert_eq!(h("cache-control").as_deref(), Some("no-store"));
    }
    let a = t
        .get("/v1/auth", &[("authorization", "Bearer not.a.token")])
        .await?;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"tokend\", error=\"invalid_token\"")
    );
    assert_eq!(
        a.headers
            .get("x-auth-request-reason")
            .and_then(|v| v.to_str().ok()),
        Some("malformed")
    );

    for (over, a) in [
        ("tcp", t.get("/v1/auth", &[("cookie", &cookie)]).await?),
        (
            "unix",
            t.unix("HEAD", "/v1/auth", &[("cookie", &cookie)], None)
                .await?,
        ),
    ] {
        assert_eq!(a.status, 200, "{over}");
        assert!(a.body.is_empty(), "{over}: no body");
        assert_eq!(a.headers["x-auth-request-user"], "alice");
        assert_eq!(a.headers["cache-control"], "no-store");
        assert!(a.headers.get("x-auth-request-reason").is_none());
        assert!(a.headers.get("x-authentik-username").is_none());
        let all = format!("{:?}", a.headers);
        assert!(
            !all.contains(&alice.access_token),
            "the token is never echoed"
        );
    }

    // authentik's outpost names, applied by a reload.
    cfg.tail = "\n[forward_auth]\nheaders = \"authentik\"\n".into();
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let a = loop {
        let a = t.get("/v1/auth", &[("cookie", &cookie)]).await?;
        if a.headers.contains_key("x-authentik-username") {
            break a;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "reload not applied:\n{}",
            t.output.text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(a.headers["x-authentik-username"], "alice");
    assert_eq!(a.headers["x-authentik-uid"], "alice");
    assert_eq!(a.headers["x-authentik-email"], "alice@example.com");
    assert_eq!(a.headers["x-authentik-name"], "Alice Admin");
    assert_eq!(a.headers["x-authentik-groups"], "ecosire-admins");
    assert!(a.headers.get("x-auth-request-user").is_none());

    t.output
        .assert_free_of(&[&alice.access_token, &p.client_secret]);
    Ok(())
}
