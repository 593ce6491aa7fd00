//! `tokend dev`'s login flow (issue #10) through the real binary, as a browser drives it:
//! `/auth/login` → the dev login page → callback → exchange → cookies, then refresh with
//! rotation, logout and the dev issuer's end-session back-channel logout. The daemon's output
//! is scanned for every token it handled.

use std::collections::HashMap;

use serde_json::json;
use tokend_e2e::flow::{location, query, set_cookies};
use tokend_e2e::{Answer, Tokend};

async fn started() -> Tokend {
    let t = Tokend::start_dev(&[]).await.expect("tokend dev starts");
    t.wait_ready().await.expect("ready");
    t
}

/// A browser's cookie jar for one origin-less test: name → value, as Set-Cookie leaves them.
#[derive(Default)]
struct Jar(HashMap<String, String>);

impl Jar {
    fn take(&mut self, a: &Answer) {
        for c in set_cookies(a) {
            let Some((name, rest)) = c.split_once('=') else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or("").to_string();
            if value.is_empty() || c.to_ascii_lowercase().contains("max-age=0") {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_string(), value);
            }
        }
    }

    fn header(&self) -> String {
        self.0
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn get(&self, name: &str) -> String {
        self.0.get(name).cloned().unwrap_or_default()
    }
}

/// GET `url` (any origin) with the jar's cookies, no redirects followed.
async fn browse(http: &reqwest::Client, jar: &mut Jar, url: &str) -> Answer {
    let resp = http
        .get(url)
        .header("cookie", jar.header())
        .send()
        .await
        .expect("GET");
    into_answer(jar, resp).await
}

async fn into_answer(jar: &mut Jar, resp: reqwest::Response) -> Answer {
    let a = Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: resp.bytes().await.expect("body"),
    };
    jar.take(&a);
    a
}

/// Logs `user` in through tokend's flow and the dev login page; returns the jar with
/// tokend's cookies.
async fn log_in(t: &Tokend, http: &reqwest::Client, user: &str) -> Jar {
    let base = t.base_url().expect("base");
    let mut jar = Jar::default();
    let a = browse(http, &mut jar, &format!("{base}/auth/login?redirect=/")).await;
    assert_eq!(a.status, 302);
    let authorize = location(&a);
    assert!(
        authorize.contains("/dev-only-not-for-production/application/o/authorize/"),
        "{authorize}"
    );
    let q = query(&authorize);
    assert_eq!(q["code_challenge_method"], "S256");
    assert!(q.contains_key("nonce"));

    let page = browse(http, &mut jar, &authorize).await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body).to_string();
    assert!(html.contains("DEV ONLY"), "{html}");
    let handle = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("request handle")
        .to_string();
    let form_target = authorize.split('?').next().unwrap_or("").to_string();
    let resp = http
        .post(&form_target)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("request={handle}&user={user}"))
        .send()
        .await
        .expect("login form");
    let a = into_answer(&mut jar, resp).await;
    assert_eq!(a.status, 302, "{}", String::from_utf8_lossy(&a.body));
    let callback = location(&a);
    assert!(
        callback.starts_with(&format!("{base}/auth/callback?")),
        "{callback}"
    );

    let a = browse(http, &mut jar, &callback).await;
    assert_eq!(a.status, 302);
    let landing = location(&a);
    assert!(
        landing.starts_with(&format!("{base}/dev/app/auth/callback?exchange=")),
        "{landing}"
    );
    let app = browse(http, &mut jar, &landing).await;
    assert_eq!(app.status, 200, "the dev app's callback page");
    let code = query(&landing)["exchange"].clone();
    let resp = http
        .post(format!("{base}/auth/exchange"))
        .header("content-type", "application/json")
        .header("cookie", jar.header())
        .body(json!({"code": code}).to_string())
        .send()
        .await
        .expect("exchange");
    let a = into_answer(&mut jar, resp).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let cookies = set_cookies(&a).join("\n");
    assert!(cookies.contains("HttpOnly"), "{cookies}");
    assert!(
        !cookies.contains("Secure"),
        "dev cookies work on http://127.0.0.1: {cookies}"
    );
    assert!(!jar.get("ecosire_auth").is_empty() && !jar.get("ecosire_refresh").is_empty());
    jar
}

#[tokio::test]
async fn dev_login_flow_end_to_end_with_refresh_and_logout() {
    let t = started().await;
    let base = t.base_url().expect("base");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut jar = log_in(&t, &http, "sam").await;
    let access = jar.get("ecosire_auth");
    let refresh = jar.get("ecosire_refresh");

    let s = browse(&http, &mut jar, &format!("{base}/auth/session")).await;
    assert_eq!(s.status, 200, "{}", String::from_utf8_lossy(&s.body));
    let claims = s.json()["claims"].clone();
    assert_eq!(claims["role"], "support");
    assert_eq!(claims["email"], "sam@example.com");
    assert_eq!(claims["organizationId"], "org-1");
    assert!(
        claims["extra"]["sid"]
            .as_str()
            .is_some_and(|s| s.len() == 64)
    );
    assert!(
        claims["extra"]["nonce"].is_string(),
        "Authentik echoes the nonce"
    );
    let v = t.verify(&access).await.expect("verify");
    assert_eq!(v.status, 200);
    let sessions = t
        .admin_unix("GET", "/v1/admin/sessions", None)
        .await
        .expect("admin");
    assert_eq!(sessions.status, 200);
    assert_eq!(
        sessions.json()["sessions"].as_array().map(Vec::len),
        Some(1)
    );

    // Refresh: new tokens (the dev issuer rotates the refresh token).
    let resp = http
        .post(format!("{base}/auth/refresh"))
        .header("cookie", format!("ecosire_refresh={refresh}"))
        .send()
        .await
        .expect("refresh");
    let a = into_answer(&mut jar, resp).await;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let access2 = jar.get("ecosire_auth");
    let refresh2 = jar.get("ecosire_refresh");
    assert_ne!(access2, access);
    assert_ne!(refresh2, refresh, "rotated");
    assert_eq!(t.verify(&access2).await.expect("v").status, 200);

    // Logout: the session ends; the logout URL is the dev issuer's end-session.
    let resp = http
        .post(format!("{base}/auth/logout"))
        .header("cookie", jar.header())
        .send()
        .await
        .expect("logout");
    let a = into_answer(&mut jar, resp).await;
    assert_eq!(a.status, 200);
    let logout_url = a.json()["logout_url"].as_str().unwrap_or("").to_string();
    assert!(
        logout_url.contains("/application/o/tokend-dev/end-session/"),
        "{logout_url}"
    );
    let before = t.metrics().await.expect("metrics");
    let end = browse(&http, &mut jar, &logout_url).await;
    assert_eq!(end.status, 302, "back to post_logout_redirect_uri");
    assert_eq!(location(&end), format!("{base}/dev/app/"));
    let after = t.metrics().await.expect("metrics");
    assert_eq!(
        after.delta(
            &before,
            "tokend_backchannel_logouts_total{result=\"success\"}"
        ),
        1.0,
        "end-session sends a back-channel logout, as Authentik does"
    );
    let forged = browse(
        &http,
        &mut jar,
        &logout_url.replace("id_token_hint=", "id_token_hint=x"),
    )
    .await;
    assert_eq!(forged.status, 302);
    let v = t.verify(&access2).await.expect("v");
    assert_eq!((v.status, v.reason().as_str()), (401, "token_revoked"));

    // A second login, cancelled on the dev page: the frontend hears access_denied.
    let mut jar2 = Jar::default();
    let a = browse(&http, &mut jar2, &format!("{base}/auth/login?redirect=/")).await;
    let authorize = location(&a);
    let page = browse(&http, &mut jar2, &authorize).await;
    let html = String::from_utf8_lossy(&page.body).to_string();
    let handle = html
        .split("name=\"request\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("handle")
        .to_string();
    let resp = http
        .post(authorize.split('?').next().unwrap_or(""))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("request={handle}&user=cancel"))
        .send()
        .await
        .expect("cancel");
    let a = into_answer(&mut jar2, resp).await;
    let back = browse(&http, &mut jar2, &location(&a)).await;
    assert_eq!(
        location(&back),
        format!("{base}/dev/app/auth/login?error=access_denied")
    );

    t.output
        .assert_free_of(&[&access, &refresh, &access2, &refresh2]);
}
