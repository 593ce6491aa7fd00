//! `tokend dev` (issue #10) through the real binary: it starts with no config and no provider,
//! mints Authentik-shaped tokens that verify over the socket and TCP, refuses expired and
//! logged-out ones, stays on loopback (the login flow is in `dev_flow.rs`),
//! reloads a given config file, and none of it exists in normal mode. Every test scans
//! tokend's output for the secrets it handled.

use std::time::Duration;

use serde_json::{Value, json};
use tokend_e2e::{Tokend, TokendConfig, jwt_payload, now};

/// `POST /dev/token` over TCP; the answer's JSON.
async fn mint(t: &Tokend, body: Value) -> Value {
    let a = t.post("/dev/token", body.to_string()).await.expect("mint");
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    a.json()
}

fn token_of(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

fn header_of(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').next().unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

async fn started() -> Tokend {
    let t = Tokend::start_dev(&[]).await.expect("tokend dev starts");
    t.wait_ready().await.expect("ready");
    t
}

#[tokio::test]
async fn dev_starts_without_config_and_its_tokens_verify_like_authentiks() {
    let t = started().await;
    let out = t.output.text();
    let addr = t.http_addr.clone().expect("http address");
    let socket = t.socket.clone().expect("socket");
    assert!(out.contains("NOT FOR PRODUCTION"), "{out}");
    assert!(
        out.contains(&format!("http://{addr}")),
        "banner names the real address: {out}"
    );
    assert!(
        out.contains(&socket.display().to_string()),
        "banner names the socket: {out}"
    );
    assert!(
        socket.starts_with(t.dir.path().join("tokend-dev")),
        "default socket under $XDG_RUNTIME_DIR/tokend-dev"
    );
    // The admin socket beside it, named by the banner, and answering (issue #11).
    let admin = t.admin_socket.clone().expect("admin socket");
    assert!(
        out.contains(&format!(" admin socket {}", admin.display())),
        "banner names the admin socket: {out}"
    );
    let overview = t
        .admin()
        .expect("client")
        .overview()
        .await
        .expect("overview");
    assert_eq!(overview.version, env!("CARGO_PKG_VERSION"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(t.dir.path().join("tokend-dev"))
        .expect("dev dir")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);

    // Defaults: the first built-in user.
    let v = mint(&t, json!({})).await;
    let token = token_of(&v);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300);
    let sid = v["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 64, "sid is 64 hex, as Authentik's");
    let h = header_of(&token);
    assert_eq!(h["alg"], "RS256");
    assert_eq!(h["typ"], "JWT");
    assert!(h["kid"].as_str().is_some_and(|k| k.len() == 86), "{h}");
    let c = jwt_payload(&token);
    let iss = c["iss"].as_str().expect("iss");
    assert!(
        iss.contains("/dev-only-not-for-production/application/o/tokend-dev/")
            && iss.starts_with("http://127.0.0.1:")
            && out.contains(iss),
        "issuer {iss} says it is not for production, and the banner shows it"
    );
    assert_eq!(
        c["aud"], "tokend-dev",
        "aud is the client id, a plain string"
    );
    assert_eq!(c["azp"], "tokend-dev");
    assert_eq!(c["sub"], v["sub"]);
    assert_eq!(c["sid"], sid);
    assert!(c["uid"].as_str().is_some_and(|u| u.len() == 40), "{c}");
    assert!(c["jti"].as_str().is_some_and(|u| u.len() == 40), "{c}");
    assert_eq!(c["acr"], "goauthentik.io/providers/oauth2/default");
    assert_eq!(c["amr"], json!(["pwd"]));
    assert_eq!(c["email_verified"], false);
    for claim in [
        "email",
        "name",
        "given_name",
        "preferred_username",
        "nickname",
        "groups",
        "organizationId",
        "auth_time",
        "scope",
    ] {
        assert!(!c[claim].is_null(), "{claim} missing: {c}");
    }
    assert!(c.get("nbf").is_none(), "Authentik sets no nbf");
    let (exp, iat) = (
        c["exp"].as_i64().unwrap_or(0),
        c["iat"].as_i64().unwrap_or(0),
    );
    assert_eq!(exp - iat, 300);
    assert!((iat - now()).abs() < 30);

    // Over the socket and over TCP, the same answer.
    let tcp = t.verify(&token).await.expect("verify tcp");
    assert_eq!(tcp.status, 200, "{}", String::from_utf8_lossy(&tcp.body));
    let unix = t.verify_unix(&token).await.expect("verify unix");
    assert_eq!(unix.status, 200);
    let claims = &tcp.json()["claims"];
    assert_eq!(claims, &unix.json()["claims"]);
    assert_eq!(claims["role"], "admin", "jane is in ecosire-admins");
    assert_eq!(claims["email"], "jane@example.com");
    let bearer = format!("Bearer {token}");
    let get = t
        .unix("GET", "/v1/verify", &[("authorization", &bearer)], None)
        .await
        .expect("GET verify");
    assert_eq!(get.status, 200);

    // Every field given, over the socket.
    let a = t
        .unix(
            "POST",
            "/dev/token",
            &[("content-type", "application/json")],
            Some(
                json!({"sub": "u-42", "email": "ann@example.org", "name": "Ann B",
                       "groups": ["ecosire-support"], "organizationId": "org-9", "ttl": 60,
                       "scope": "openid email profile organization"})
                .to_string(),
            ),
        )
        .await
        .expect("mint over the socket");
    assert_eq!(a.status, 200);
    let custom = a.json();
    assert_eq!(custom["sub"], "u-42");
    assert_eq!(custom["expires_in"], 60);
    let token2 = token_of(&custom);
    let v2 = t.verify_unix(&token2).await.expect("verify");
    assert_eq!(v2.status, 200);
    let c2 = &v2.json()["claims"];
    assert_eq!(c2["sub"], "u-42");
    assert_eq!(c2["email"], "ann@example.org");
    assert_eq!(c2["name"], "Ann B");
    assert_eq!(c2["organizationId"], "org-9");
    assert_eq!(c2["role"], "support");
    let p2 = jwt_payload(&token2);
    assert_eq!(
        p2["exp"].as_i64().unwrap_or(0) - p2["iat"].as_i64().unwrap_or(0),
        60
    );

    // `role` picks the group of the configured rule.
    let r = mint(&t, json!({"sub": "u-43", "role": "support"})).await;
    let token3 = token_of(&r);
    assert_eq!(
        t.verify(&token3).await.expect("v").json()["claims"]["role"],
        "support"
    );
    let bad_role = t
        .post("/dev/token", json!({"role": "emperor"}).to_string())
        .await
        .expect("bad role");
    assert_eq!(
        (bad_role.status, bad_role.reason().as_str()),
        (400, "bad_request")
    );

    // ttl: zero and negative are allowed (expired tokens for testing clients); bounded.
    let expired = mint(&t, json!({"ttl": -120})).await;
    let token4 = token_of(&expired);
    let e = t.verify(&token4).await.expect("verify expired");
    assert_eq!((e.status, e.reason().as_str()), (401, "expired"));
    let e = t.verify_unix(&token4).await.expect("verify expired");
    assert_eq!((e.status, e.reason().as_str()), (401, "expired"));
    let zero = mint(&t, json!({"ttl": 0})).await;
    assert_eq!(zero["expires_in"], 0);
    let token5 = token_of(&zero);
    for ttl in [86_401, -86_401, 10_000_000] {
        let a = t
            .post("/dev/token", json!({"ttl": ttl}).to_string())
            .await
            .expect("out of range");
        assert_eq!(
            (a.status, a.reason().as_str()),
            (400, "bad_request"),
            "ttl {ttl}"
        );
    }
    let unknown = t
        .post("/dev/token", json!({"subject": "x"}).to_string())
        .await
        .expect("unknown field");
    assert_eq!(unknown.status, 400);

    t.output
        .assert_free_of(&[&token, &token2, &token3, &token4, &token5]);
}

#[tokio::test]
async fn dev_logout_by_sid_and_by_sub_revokes_through_back_channel_logout() {
    let t = started().await;
    let a = mint(&t, json!({"sub": "user-a"})).await;
    let b = mint(&t, json!({"sub": "user-a"})).await;
    let c = mint(&t, json!({"sub": "user-c"})).await;
    let (ta, tb, tc) = (token_of(&a), token_of(&b), token_of(&c));
    for tok in [&ta, &tb, &tc] {
        assert_eq!(t.verify(tok).await.expect("v").status, 200);
    }
    let before = t.metrics().await.expect("metrics");

    // By sid: only that session.
    let out = t
        .post("/dev/logout", json!({"sid": a["sid"]}).to_string())
        .await
        .expect("logout sid");
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    assert_eq!(out.json(), json!({"sent": true}));
    let v = t.verify(&ta).await.expect("v");
    assert_eq!((v.status, v.reason().as_str()), (401, "token_revoked"));
    let v = t.verify_unix(&ta).await.expect("v");
    assert_eq!((v.status, v.reason().as_str()), (401, "token_revoked"));
    assert_eq!(
        t.verify(&tb).await.expect("v").status,
        200,
        "another session of the user"
    );

    // By sub, over the socket: every token of the user.
    let out = t
        .unix(
            "POST",
            "/dev/logout",
            &[("content-type", "application/json")],
            Some(json!({"sub": "user-a"}).to_string()),
        )
        .await
        .expect("logout sub");
    assert_eq!(out.status, 200);
    assert_eq!(out.json(), json!({"sent": true}));
    let v = t.verify(&tb).await.expect("v");
    assert_eq!((v.status, v.reason().as_str()), (401, "token_revoked"));
    assert_eq!(t.verify(&tc).await.expect("v").status, 200, "another user");

    // It went through tokend's back-channel endpoint, as a real logout token.
    let after = t.metrics().await.expect("metrics");
    assert_eq!(
        after.delta(
            &before,
            "tokend_backchannel_logouts_total{result=\"success\"}"
        ),
        2.0,
        "{}",
        after.text
    );

    // Unknown sid, empty body.
    let unknown = t
        .post("/dev/logout", json!({"sid": "0".repeat(64)}).to_string())
        .await
        .expect("unknown sid");
    assert_eq!(
        (unknown.status, unknown.reason().as_str()),
        (404, "not_found")
    );
    let empty = t.post("/dev/logout", "{}").await.expect("empty");
    assert_eq!(
        (empty.status, empty.reason().as_str()),
        (400, "bad_request")
    );

    t.output.assert_free_of(&[&ta, &tb, &tc]);
}

#[tokio::test]
async fn dev_refuses_non_loopback_addresses() {
    let dir = tempfile::tempdir().expect("dir");
    let mut t = Tokend::spawn_dev(&["--http", "0.0.0.0:0"], dir).expect("spawn");
    let status = t.wait_exit().await.expect("exits");
    assert!(!status.success());
    let out = t.output.text();
    assert!(out.contains("not a loopback address"), "{out}");
    assert!(out.contains("--http 0.0.0.0:0"), "{out}");

    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("dev.toml");
    std::fs::write(&file, "[listen]\nhttp = \"0.0.0.0:9999\"\n").expect("write");
    let file = file.to_string_lossy().to_string();
    let mut t = Tokend::spawn_dev(&["--config", &file, "--http", "[::1]:0"], dir).expect("spawn");
    let status = t.wait_exit().await.expect("exits");
    assert!(!status.success(), "the file's address is refused too");
    let out = t.output.text();
    assert!(
        out.contains("listen.http of the configuration file"),
        "{out}"
    );
}

#[tokio::test]
async fn dev_routes_do_not_exist_in_normal_mode() {
    let t = Tokend::start(&TokendConfig::hs256("a-client-secret-of-some-length"))
        .await
        .expect("tokend");
    for path in ["/dev/token", "/dev/logout"] {
        let a = t.post(path, "{}").await.expect("post");
        assert_eq!(
            (a.status, a.reason().as_str()),
            (404, "not_found"),
            "{path}"
        );
        let a = t
            .unix(
                "POST",
                path,
                &[("content-type", "application/json")],
                Some("{}".into()),
            )
            .await
            .expect("post");
        assert_eq!(a.status, 404, "{path} over the socket");
    }
    let a = t.get("/dev/app/", &[]).await.expect("get");
    assert_eq!(a.status, 404);
    assert!(!t.output.text().contains("NOT FOR PRODUCTION"));
}

/// Polls until a freshly minted token of jane's maps to `role`.
async fn wait_for_role(t: &Tokend, role: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    for _ in 0..100 {
        let token = token_of(&mint(t, json!({"sub": "jane"})).await);
        let v = t.verify(&token).await.expect("verify");
        tokens.push(token);
        if v.status == 200 && v.json()["claims"]["role"] == role {
            return tokens;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("role never became {role}:\n{}", t.output.text());
}

fn dev_file(role: &str) -> String {
    format!(
        "[claims]\ndefault_role = \"user\"\nroles = [{{ group = \"ecosire-admins\", role = \"{role}\" }}]\n\n[log]\nlevel = \"debug\"\n"
    )
}

#[tokio::test]
async fn dev_uses_a_config_file_without_provider_and_reloads_it() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("dev.toml");
    std::fs::write(&file, dev_file("boss")).expect("write");
    let file_arg = file.to_string_lossy().to_string();
    let mut t = Tokend::spawn_dev(&["--config", &file_arg], dir).expect("spawn");
    t.wait_listening().await.expect("listening");
    t.wait_ready().await.expect("ready");
    assert!(
        t.output.text().contains(&file_arg),
        "the banner names the file"
    );
    let mut tokens = wait_for_role(&t, "boss").await;

    // File watch.
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, dev_file("chief")).expect("write");
    std::fs::rename(&tmp, &file).expect("rename");
    tokens.extend(wait_for_role(&t, "chief").await);

    // SIGHUP.
    std::fs::write(&file, dev_file("head")).expect("write");
    t.signal("HUP").expect("hup");
    tokens.extend(wait_for_role(&t, "head").await);
    let m = t.metrics().await.expect("metrics");
    assert!(
        m.get("tokend_config_reloads_total{result=\"success\"}") >= 2.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.get("tokend_config_reloads_total{result=\"failure\"}"),
        0.0,
        "{}",
        m.text
    );

    // The dev issuer stays in place of any [provider] across reloads.
    let c = jwt_payload(tokens.last().expect("a token"));
    assert!(
        c["iss"]
            .as_str()
            .unwrap_or("")
            .contains("/dev-only-not-for-production/")
    );

    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    t.output.assert_free_of(&refs);
}
