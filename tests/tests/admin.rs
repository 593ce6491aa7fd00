//! The admin API (issue #11) through the real binary and the `tokend-shared` client: its own
//! socket (mode 0600, 404 on the apps' socket and TCP), peer-credential checks under another
//! uid, sessions, codes, the audit ring and live stream, and the actions with honest answers.
//! Every admin answer and tokend's output are scanned for tokens and codes.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::json;
use tokend_e2e::flow::{flow_setup, log_in, login_through_tokend, query};
use tokend_e2e::{Provider, Tokend, TokendConfig, is_root, jwt_payload, now, skip};
use tokend_shared::client::{AdminClient, ClientError};
use tokend_shared::{AuditKind, Order, Reason, SessionQuery, SessionSort};

type R = anyhow::Result<()>;

/// Every admin path, for the 404 checks on the apps' listeners.
const ADMIN_PATHS: [(&str, &str); 9] = [
    ("GET", "/v1/admin/overview"),
    ("GET", "/v1/admin/sessions"),
    ("GET", "/v1/admin/codes"),
    ("GET", "/v1/admin/events"),
    ("GET", "/v1/admin/events/stream"),
    ("GET", "/v1/admin/authentik/events"),
    ("POST", "/v1/admin/sessions/revoke"),
    ("POST", "/v1/admin/jwks/refresh"),
    ("POST", "/v1/admin/reload"),
];

fn my_uid() -> u32 {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(u32::MAX)
}

fn sid_of(token: &str) -> String {
    jwt_payload(token)["sid"].as_str().unwrap_or("").to_string()
}

/// Fails if any secret appears in `text` (an admin answer).
fn assert_no_secrets(text: &str, secrets: &[&str]) {
    for s in secrets {
        assert!(!s.is_empty());
        assert!(
            !text.contains(s),
            "an admin answer contains a secret:\n{text}"
        );
        if let Some(sig) = s.split('.').nth(2).filter(|p| p.len() >= 16) {
            assert!(!text.contains(sig), "an admin answer contains a signature");
        }
    }
}

/// Every read of the admin API as JSON text, for scanning.
async fn all_reads(admin: &AdminClient) -> anyhow::Result<String> {
    Ok(format!(
        "{}\n{}\n{}\n{}",
        serde_json::to_string(&admin.overview().await?)?,
        serde_json::to_string(&admin.sessions(&SessionQuery::default()).await?)?,
        serde_json::to_string(&admin.codes().await?)?,
        serde_json::to_string(&admin.events(0).await?)?,
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_is_on_its_own_0600_socket_and_404_elsewhere() -> R {
    let (p, t) = flow_setup("").await?;
    let admin_path = t.admin_socket.clone().expect("admin socket");
    assert_eq!(
        admin_path.file_name().and_then(|n| n.to_str()),
        Some("tokend-admin.sock"),
        "beside the apps' socket by default"
    );
    let mode = std::fs::metadata(&admin_path)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "admin socket mode {mode:o}");

    for (method, path) in ADMIN_PATHS {
        let body = (method == "POST").then(|| "{}".to_string());
        let tcp = if method == "GET" {
            t.get(path, &[]).await?
        } else {
            t.post(path, body.clone().unwrap_or_default()).await?
        };
        let unix = t.unix(method, path, &[], body).await?;
        for (via, a) in [("tcp", tcp), ("app socket", unix)] {
            assert_eq!(
                (a.status, a.reason()),
                (404, "not_found".into()),
                "{via} {method} {path}"
            );
        }
    }
    // …while the admin socket answers them, and nothing else.
    let admin = t.admin()?;
    let o = admin.overview().await?;
    assert_eq!(o.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(o.issuer, p.issuer);
    assert_eq!(
        o.config_path.as_deref(),
        Some(t.config_path().to_string_lossy().as_ref())
    );
    assert_eq!(o.keys.source, "provider");
    assert_eq!(o.keys.last_fetch_ok, Some(true));
    assert!(!o.keys.keys.is_empty());
    assert!(o.keys.keys.iter().all(|k| k.kid.is_some()), "{:?}", o.keys);
    // Issue #8: each key's kind, as the console shows it, follows its algorithm.
    for k in &o.keys.keys {
        let kind = match k.alg.as_deref() {
            Some("RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512") => "RSA",
            Some("ES256") => "EC P-256",
            Some("ES384") => "EC P-384",
            Some("ES512") => "EC P-521",
            Some("EdDSA") => "Ed25519",
            other => anyhow::bail!("the provider publishes no {other:?} key"),
        };
        assert_eq!(k.kind, kind, "{k:?}");
    }
    assert_eq!(o.store.kind, "memory");
    assert!(o.last_reload.is_none());
    let a = t.admin_unix("GET", "/v1/admin/nowhere", None).await?;
    assert_eq!((a.status, a.reason()), (404, "not_found".into()));
    let a = t.admin_unix("GET", "/v1/verify", None).await?;
    assert_eq!(a.status, 404, "the apps' API is not on the admin socket");

    // Verification counts by reason reach the overview.
    let alice = p.login("alice").await?.access_token;
    assert_eq!(t.verify(&alice).await?.status, 200);
    assert_eq!(t.verify("not-a-token").await?.reason(), "malformed");
    let o = admin.overview().await?;
    assert!(o.verifications.get("valid").copied().unwrap_or(0) >= 1);
    assert_eq!(o.verifications.get("malformed"), Some(&1));
    t.output.assert_free_of(&[&alice, &p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_app_socket_the_admin_socket_needs_its_own_path() -> R {
    let mut cfg = TokendConfig::hs256("admin-test-secret-0123456789abcdef");
    cfg.socket = false;
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let text = t.output.text();
    assert!(
        text.contains("admin API off") && text.contains("set admin.socket"),
        "{text}"
    );
    drop(t);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("ops.sock");
    cfg.tail = format!("\n[admin]\nsocket = {path:?}\n");
    let mut t = Tokend::start_in(&cfg, dir).await?;
    t.admin_socket = Some(path.clone());
    t.wait_ready().await?;
    let o = t.admin()?.overview().await?;
    assert_eq!(o.keys.source, "client_secret");
    let kinds: Vec<&str> = o.keys.keys.iter().map(|k| k.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["HMAC"],
        "issue #8: the client secret is the one key"
    );
    assert!(t.output.text().contains("admin API on its own socket"));
    Ok(())
}

/// Runs curl against the admin socket as `uid`:`gid` (no supplementary groups); returns the
/// status and body.
fn curl_as(uid: u32, gid: u32, socket: &std::path::Path, path: &str) -> (u16, String) {
    let out = std::process::Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            "--unix-socket",
        ])
        .arg(socket)
        .arg(format!("http://tokend{path}"))
        .output()
        .expect("setpriv runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_uid_is_refused_with_403_and_a_log_line_unless_allowed() -> R {
    if !is_root() {
        skip(
            "another_uid_is_refused_with_403_and_a_log_line_unless_allowed",
            "needs root to connect as another uid (setpriv)",
        );
        return Ok(());
    }
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    // World-connectable for this test only, so that the peer-credential check is what
    // refuses (and the file mode is not).
    cfg.tail = "\n[admin]\nsocket_mode = \"0666\"\n".into();
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    std::fs::set_permissions(t.dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let socket = t.admin_socket.clone().expect("admin socket");
    assert_eq!(
        std::fs::metadata(&socket)?.permissions().mode() & 0o777,
        0o666
    );

    let (status, body) = curl_as(65533, 65533, &socket, "/v1/admin/overview");
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["reason"], "forbidden");
    assert!(
        v["message"].as_str().unwrap_or("").contains("uid 65533"),
        "{v}"
    );
    let (status, _) = curl_as(65533, 65533, &socket, "/v1/admin/nowhere");
    assert_eq!(status, 403, "refused before routing");
    let log = t.output.text();
    assert!(
        log.lines()
            .any(|l| l.contains("admin API refused") && l.contains("uid=65533")),
        "{log}"
    );
    // Root passes (the tests run as root).
    assert!(t.admin()?.overview().await.is_ok());

    // Allowed by uid, then by group; the allow lists apply on reload, without a restart.
    cfg.tail = "\n[admin]\nsocket_mode = \"0666\"\nallowed_uids = [65533]\n".into();
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    let r = t.admin()?.reload().await?;
    assert!(r.ok, "{r:?}");
    let (status, body) = curl_as(65533, 65532, &socket, "/v1/admin/overview");
    assert_eq!(status, 200, "{body}");
    let (status, _) = curl_as(65532, 65532, &socket, "/v1/admin/overview");
    assert_eq!(status, 403, "another uid is not in allowed_uids");

    cfg.tail = "\n[admin]\nsocket_mode = \"0666\"\nallowed_groups = [65531]\n".into();
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    assert!(t.admin()?.reload().await?.ok);
    let (status, body) = curl_as(65532, 65531, &socket, "/v1/admin/sessions");
    assert_eq!(status, 200, "allowed by its group: {body}");
    let (status, _) = curl_as(65532, 65532, &socket, "/v1/admin/sessions");
    assert_eq!(status, 403);
    Ok(())
}

/// `nobody` (65534) is never an operator under the default peer check: under systemd's
/// PrivateUsers= it is every user outside tokend's namespace. The answer says so and what to
/// do; a config listing it is refused at load (config/invalid/admin-nobody-uid.toml).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_13_nobody_is_refused_with_the_way_out_even_in_an_allowed_group() -> R {
    if !is_root() {
        skip(
            "issue_13_nobody_is_refused_with_the_way_out_even_in_an_allowed_group",
            "needs root to connect as another uid (setpriv)",
        );
        return Ok(());
    }
    // HS256 with a closed issuer port: no provider needed.
    let mut cfg = TokendConfig::hs256("admin-test-client-secret-0123456789");
    cfg.tail = "\n[admin]\nsocket_mode = \"0666\"\nallowed_groups = [65531]\n".into();
    let t = Tokend::start(&cfg).await?;
    std::fs::set_permissions(t.dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let socket = t.admin_socket.clone().expect("admin socket");
    let (status, body) = curl_as(65534, 65531, &socket, "/v1/admin/overview");
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body)?;
    assert_eq!(v["reason"], "forbidden");
    let message = v["message"].as_str().unwrap_or("");
    assert!(
        message.contains("uid 65534 (nobody)")
            && message.contains("PrivateUsers=")
            && message.contains("peer_check = \"socket_permissions\""),
        "{v}"
    );
    let (status, _) = curl_as(65532, 65531, &socket, "/v1/admin/overview");
    assert_eq!(status, 200, "the group itself is allowed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_listed_filtered_sorted_and_paged_without_tokens() -> R {
    let (p, t) = flow_setup("").await?;
    let a1 = log_in(&p, &t, "alice", "laptop").await?;
    let a2 = log_in(&p, &t, "alice", "phone").await?;
    let b = log_in(&p, &t, "bob", "bob").await?;
    let admin = t.admin()?;

    let all = admin.sessions(&SessionQuery::default()).await?;
    assert_eq!(all.total, 3);
    assert!(
        all.sessions
            .windows(2)
            .all(|w| w[0].created >= w[1].created),
        "newest first"
    );
    let q = |f: fn(&mut SessionQuery)| {
        let mut q = SessionQuery::default();
        f(&mut q);
        q
    };
    let alice = admin
        .sessions(&q(|q| q.user = Some("alice".into())))
        .await?;
    assert_eq!(alice.total, 2);
    assert!(alice.sessions.iter().all(|s| s.sub == "alice"));
    let by_mail = admin
        .sessions(&q(|q| q.user = Some("bob@example.com".into())))
        .await?;
    assert_eq!(by_mail.total, 1);
    let org = admin.sessions(&q(|q| q.org = Some("org-1".into()))).await?;
    assert_eq!(org.total, 2);
    let admins = admin
        .sessions(&q(|q| q.role = Some("admin".into())))
        .await?;
    assert_eq!(admins.total, 2, "alice is in ecosire-admins");
    let page = admin
        .sessions(&q(|q| {
            q.sort = Some(SessionSort::User);
            q.order = Some(Order::Desc);
            q.limit = Some(1);
            q.offset = Some(0);
        }))
        .await?;
    assert_eq!((page.total, page.sessions.len()), (3, 1));
    assert_eq!(page.sessions[0].sub, "bob");
    let second = admin
        .sessions(&q(|q| {
            q.sort = Some(SessionSort::User);
            q.order = Some(Order::Asc);
            q.limit = Some(2);
            q.offset = Some(2);
        }))
        .await?;
    assert_eq!((second.offset, second.sessions.len()), (2, 1));
    assert_eq!(second.sessions[0].sub, "bob");
    let a = t
        .admin_unix("GET", "/v1/admin/sessions?sort=sideways", None)
        .await?;
    assert_eq!((a.status, a.reason()), (400, "bad_request".into()));

    let secrets = [
        a1.access.as_str(),
        a1.refresh.as_str(),
        a1.code.as_str(),
        a2.access.as_str(),
        a2.refresh.as_str(),
        b.access.as_str(),
        b.refresh.as_str(),
        b.code.as_str(),
    ];
    assert_no_secrets(&all_reads(&admin).await?, &secrets);
    t.output.assert_free_of(&secrets);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outstanding_codes_are_listed_by_hash_prefix_never_the_code() -> R {
    let (p, t) = flow_setup("").await?;
    let admin = t.admin()?;
    assert!(admin.codes().await?.codes.is_empty());
    // Up to the callback: the browser holds an exchange code it has not redeemed yet.
    let front = login_through_tokend(&p, &t, "alice", "/", "codes").await?;
    let code = query(&front)
        .get("exchange")
        .cloned()
        .expect("exchange code");
    // And an API code.
    let token = p.login("bob").await?.access_token;
    let a = t
        .post("/v1/codes", json!({"access_token": token}).to_string())
        .await?;
    assert_eq!(a.status, 201);
    let api_code = a.json()["code"].as_str().unwrap_or("").to_string();

    let list = admin.codes().await?;
    assert_eq!(list.codes.len(), 2, "{list:?}");
    let flow = list
        .codes
        .iter()
        .find(|c| c.kind == "flow")
        .expect("flow code");
    assert_eq!(flow.sub, "alice");
    let api = list
        .codes
        .iter()
        .find(|c| c.kind == "api")
        .expect("api code");
    assert_eq!(api.sub, "bob");
    for c in &list.codes {
        assert_eq!(c.hash_prefix.len(), 12);
        assert!(c.hash_prefix.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert!(
            c.ttl_left > 0 && c.ttl_left <= c.expires - c.created,
            "{c:?}"
        );
        assert!(c.expires > now());
        // Issue #8: the seconds left until `expires`, counted when the list was made.
        assert!(c.ttl_left >= c.expires - now(), "{c:?}");
    }
    assert_no_secrets(&all_reads(&admin).await?, &[&code, &api_code, &token]);

    // Redeemed: gone from the list, and the audit ring says so.
    let a = t
        .post("/auth/exchange", json!({"code": code}).to_string())
        .await?;
    assert_eq!(a.status, 200);
    let list = admin.codes().await?;
    assert_eq!(list.codes.len(), 1);
    assert_eq!(list.codes[0].kind, "api");
    let a = t
        .post("/auth/exchange", json!({"code": code}).to_string())
        .await?;
    assert_eq!(a.reason(), "code_already_redeemed");
    let kinds: Vec<AuditKind> = admin
        .events(0)
        .await?
        .events
        .iter()
        .map(|e| e.kind)
        .collect();
    for k in [
        AuditKind::LoginCompleted,
        AuditKind::CodeIssued,
        AuditKind::CodeRedeemed,
        AuditKind::CodeReplayed,
    ] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    let body = all_reads(&admin).await?;
    assert_no_secrets(&body, &[&code, &api_code, &token]);
    t.output.assert_free_of(&[&code, &api_code, &token]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_session_refuses_its_token_at_once_as_revoked_by_admin() -> R {
    let (p, t) = flow_setup("").await?;
    let laptop = log_in(&p, &t, "alice", "laptop").await?;
    let phone = log_in(&p, &t, "alice", "phone").await?;
    for _ in 0..2 {
        assert_eq!(t.verify(&laptop.access).await?.status, 200, "cached");
    }
    let sid = sid_of(&laptop.access);
    let admin = t.admin()?;
    let out = admin.revoke_session(&sid).await?;
    assert_eq!(out.ended, 1, "{out:?}");
    assert_eq!(out.sids, vec![sid.clone()]);
    assert_eq!(
        (out.refresh_tokens_revoked, out.refresh_tokens_failed),
        (1, 0)
    );
    assert!(out.tokens_refused_until > now());

    let a = t.verify(&laptop.access).await?;
    assert_eq!((a.status, a.reason()), (401, "revoked_by_admin".into()));
    let message = a.json()["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("administrator"), "{message}");
    assert!(!message.contains("logout"), "{message}");
    assert_eq!(
        t.verify(&phone.access).await?.status,
        200,
        "the other session lives"
    );
    // Its refresh token is dead at the provider.
    let (status, body) = p.refresh_grant(&laptop.refresh).await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = p.refresh_grant(&phone.refresh).await?;
    assert_eq!(status, 200, "the other session's refresh token is alive");

    // Again: nothing more ended, and the answer says so.
    let again = admin.revoke_session(&sid).await?;
    assert_eq!((again.ended, again.refresh_tokens_revoked), (0, 0));
    let events = admin.events(0).await?.events;
    let revokes: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::AdminRevoke)
        .collect();
    assert_eq!(revokes.len(), 2);
    assert_eq!(revokes[0].operator_uid, Some(my_uid()));
    assert_eq!(revokes[0].sid.as_deref(), Some(sid.as_str()));
    assert_eq!(revokes[0].sub.as_deref(), Some("alice"));
    assert_eq!(revokes[0].count, Some(1));
    // Issue #8 (mutation testing): the detail says what happened, the repeat says nothing did.
    assert_eq!(
        revokes[0].detail.as_deref(),
        Some("1 session(s) ended, 1 refresh token(s) revoked at the provider, 0 not")
    );
    assert_eq!(
        revokes[1].detail.as_deref(),
        Some("0 session(s) ended, 0 refresh token(s) revoked at the provider, 0 not")
    );
    assert!(
        t.output
            .text()
            .contains(&format!("operator_uid={}", my_uid()))
    );

    let a = t
        .admin_unix("POST", "/v1/admin/sessions/revoke", Some("{}".into()))
        .await?;
    assert_eq!((a.status, a.reason()), (400, "bad_request".into()));
    // Issue #8 (mutation testing): every guard on the target is needed — an empty sid, an
    // empty sub, and both at once are each refused, and nothing is revoked by them.
    for err in [admin.revoke_session("").await, admin.revoke_user("").await] {
        assert!(
            matches!(
                &err,
                Err(ClientError::Api {
                    status: 400,
                    reason: Reason::BadRequest,
                    ..
                })
            ),
            "{err:?}"
        );
    }
    let both = t
        .admin_unix(
            "POST",
            "/v1/admin/sessions/revoke",
            Some(r#"{"sid":"s","sub":"alice"}"#.into()),
        )
        .await?;
    assert_eq!((both.status, both.reason()), (400, "bad_request".into()));
    let secrets = [
        laptop.access.as_str(),
        laptop.refresh.as_str(),
        phone.access.as_str(),
        phone.refresh.as_str(),
    ];
    assert_no_secrets(&all_reads(&admin).await?, &secrets);
    t.output.assert_free_of(&secrets);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_user_answers_the_true_count() -> R {
    let (p, t) = flow_setup("").await?;
    let laptop = log_in(&p, &t, "alice", "laptop").await?;
    let phone = log_in(&p, &t, "alice", "phone").await?;
    let bob = log_in(&p, &t, "bob", "bob").await?;
    let admin = t.admin()?;
    let out = admin.revoke_user("alice").await?;
    assert_eq!(out.ended, 2, "{out:?}");
    assert_eq!(out.refresh_tokens_revoked, 2);
    let mut sids = out.sids.clone();
    sids.sort();
    let mut want = vec![sid_of(&laptop.access), sid_of(&phone.access)];
    want.sort();
    assert_eq!(sids, want);
    for token in [&laptop.access, &phone.access] {
        assert_eq!(t.verify(token).await?.reason(), "revoked_by_admin");
    }
    assert_eq!(t.verify(&bob.access).await?.status, 200);
    assert_eq!(admin.sessions(&SessionQuery::default()).await?.total, 1);

    // A user with no session registered by tokend: nothing ended, and the answer says the
    // user's tokens are refused from now on anyway.
    let carol = p.login("carol").await?.access_token;
    assert_eq!(t.verify(&carol).await?.status, 200);
    let out = admin.revoke_user("carol").await?;
    assert_eq!((out.ended, out.refresh_tokens_revoked), (0, 0));
    assert!(out.sids.is_empty());
    assert!(out.tokens_refused_until > now(), "{out:?}");
    assert_eq!(t.verify(&carol).await?.reason(), "revoked_by_admin");
    t.output
        .assert_free_of(&[&laptop.access, &phone.refresh, &bob.access, &carol]);
    Ok(())
}

/// Issue #8 (mutation testing of `admin/mod.rs`): the admin API reads a request body of up to
/// 16 KiB — a revoke padded to 4 KiB is served — and refuses a larger one with 413
/// `payload_too_large`, ending nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_an_admin_request_body_is_read_up_to_16_kib() -> R {
    let p = Provider::start().await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let carol = p.login("carol").await?.access_token;
    let dave = p.login("dave").await?.access_token;
    let revoke = |sub: &str, len: usize| {
        let mut body = format!("{{\"sub\":\"{sub}\"");
        body.push_str(&" ".repeat(len - body.len() - 1));
        body.push('}');
        body
    };
    let path = "/v1/admin/sessions/revoke";
    let a = t
        .admin_unix("POST", path, Some(revoke("carol", 4096)))
        .await?;
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(t.verify(&carol).await?.reason(), "revoked_by_admin");
    let a = t
        .admin_unix("POST", path, Some(revoke("dave", 17 * 1024)))
        .await?;
    assert_eq!((a.status, a.reason()), (413, "payload_too_large".into()));
    assert_eq!(t.verify(&dave).await?.status, 200, "nothing revoked");
    t.output.assert_free_of(&[&carol, &dave]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_refresh_and_reload_work_and_are_audited_with_the_uid() -> R {
    let (p, t) = flow_setup("").await?;
    let admin = t.admin()?;
    let before = p.jwks_requests().await?;
    let r = admin.refresh_jwks().await?;
    assert!(r.ok, "{r:?}");
    assert!(r.keys >= 1);
    let refreshed_keys = r.keys;
    assert!(
        p.jwks_requests().await? > before,
        "fetched from the provider"
    );

    let r = admin.reload().await?;
    assert!(r.ok, "{r:?}");
    assert_eq!(r.trigger, "admin");
    let o = admin.overview().await?;
    assert_eq!(o.last_reload.as_ref().map(|l| l.ok), Some(true));

    // A broken file: the answer says it failed, the old configuration stays.
    let good = std::fs::read_to_string(t.config_path())?;
    t.replace_config("[provider\n")?;
    let r = admin.reload().await?;
    assert!(!r.ok);
    assert!(
        r.error.as_deref().unwrap_or("").contains("tokend.toml"),
        "{r:?}"
    );
    let o = admin.overview().await?;
    assert_eq!(o.last_reload.map(|l| l.ok), Some(false));
    assert_eq!(o.issuer, p.issuer, "still the old configuration");
    t.replace_config(&good)?;

    let uid = my_uid();
    let events = admin.events(0).await?.events;
    let find = |k: AuditKind| events.iter().filter(move |e| e.kind == k);
    assert_eq!(find(AuditKind::AdminJwksRefresh).count(), 1);
    assert!(find(AuditKind::AdminJwksRefresh).all(|e| e.operator_uid == Some(uid)));
    // Issue #8 (mutation testing): the event carries the key count, in `count` and the detail.
    assert!(
        find(AuditKind::AdminJwksRefresh).all(|e| e.count == Some(refreshed_keys as u64)
            && e.detail.as_deref() == Some(format!("ok: {refreshed_keys} key(s)").as_str())),
        "{events:?}"
    );
    assert_eq!(find(AuditKind::AdminReload).count(), 2);
    assert!(find(AuditKind::AdminReload).all(|e| e.operator_uid == Some(uid)));
    assert!(
        find(AuditKind::AdminReload).any(|e| e
            .detail
            .as_deref()
            .unwrap_or("")
            .starts_with("failed"))
    );
    t.output.assert_free_of(&[&p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_stream_delivers_a_login_and_a_revoke() -> R {
    let (p, t) = flow_setup("").await?;
    let admin = t.admin()?;
    let mut stream = admin.stream().await?;
    let login = log_in(&p, &t, "alice", "live").await?;
    let sid = sid_of(&login.access);
    let mut next_of = async |kind: AuditKind| -> anyhow::Result<tokend_shared::AuditEvent> {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .map_err(|_| anyhow::anyhow!("no {kind:?} event within 10s"))??
                .ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
            if e.kind == kind {
                return Ok(e);
            }
        }
    };
    let e = next_of(AuditKind::LoginCompleted).await?;
    assert_eq!(
        (e.sub.as_deref(), e.sid.as_deref()),
        (Some("alice"), Some(sid.as_str()))
    );
    admin.revoke_session(&sid).await?;
    let e = next_of(AuditKind::AdminRevoke).await?;
    assert_eq!(e.operator_uid, Some(my_uid()));
    assert_eq!(e.count, Some(1));
    // Verification failures arrive aggregated by reason.
    assert_eq!(t.verify(&login.access).await?.reason(), "revoked_by_admin");
    let e = next_of(AuditKind::VerifyFailures).await?;
    assert_eq!(e.counts.get("revoked_by_admin"), Some(&1), "{e:?}");
    t.output
        .assert_free_of(&[&login.access, &login.refresh, &login.code]);
    Ok(())
}

/// The overview's last minute: after N verifications the window counts N (by outcome), their
/// rates are N over the window, and p50 <= p99.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_overview_shows_the_last_minute_rates_and_latency() -> R {
    let p = Provider::start().await?;
    let t = Tokend::start(&TokendConfig::for_provider(&p)).await?;
    t.wait_ready().await?;
    let admin = t.admin()?;
    let o = admin.overview().await?;
    assert!(o.latency.is_none(), "no verification yet: {:?}", o.latency);
    assert!(o.verification_rates.is_empty());
    assert!(o.authentik_events.is_none(), "[events] is not configured");

    let token = p.login("alice").await?.access_token;
    // Issue #8: the rates are over at least two seconds, so a count multiplied instead of
    // divided by them cannot pass for a rate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    const VALID: u64 = 40;
    const MALFORMED: u64 = 10;
    for _ in 0..VALID {
        assert_eq!(t.verify(&token).await?.status, 200);
    }
    for _ in 0..MALFORMED {
        assert_eq!(t.verify("not-a-token").await?.reason(), "malformed");
    }
    let o = admin.overview().await?;
    let l = o.latency.expect("latency after verifications");
    assert_eq!((l.window_seconds, l.count), (60, VALID + MALFORMED));
    assert!(
        l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms && l.p99_ms < 1000.0,
        "{l:?}"
    );
    // Issue #8: milliseconds, not seconds divided by 1000 (a bucket's value is at least 1 µs).
    assert!(l.p50_ms >= 0.001, "{l:?}");
    let valid = o.verification_rates.get("valid").copied().unwrap_or(0.0);
    let malformed = o
        .verification_rates
        .get("malformed")
        .copied()
        .unwrap_or(0.0);
    assert!(valid > 0.0 && malformed > 0.0, "{:?}", o.verification_rates);
    // Rates over the same window: their ratio is the counts'.
    assert!(
        (valid / malformed - (VALID as f64 / MALFORMED as f64)).abs() < 1e-9,
        "{:?}",
        o.verification_rates
    );
    // Rates are per second over at most a minute: at least N/60.
    assert!(valid >= VALID as f64 / 60.0 - 1e-9, "{valid}");
    // Issue #8: a rate is the count over the window's seconds so far — the seconds begun
    // since start (at least the 2 s slept), at most 60.
    let seconds = VALID as f64 / valid;
    assert!(
        (seconds - seconds.round()).abs() < 1e-9 && (2.0..=60.0).contains(&seconds),
        "{valid}/s for {VALID} verifications"
    );
    let uptime = o.uptime_seconds.min(60) as f64;
    assert!(
        (0.0..=2.0).contains(&(seconds - uptime)),
        "{seconds} s of rates, {uptime} s up"
    );
    assert_eq!(o.verification_rates.len(), 2, "{:?}", o.verification_rates);
    Ok(())
}

/// Issue #8 (mutation testing of `flow/`): the audit ring names the user and the session of
/// every flow step — the login, a refresh, a logout and a back-channel logout (with how many
/// sessions it ended) — so an operator can follow one session through the console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_8_flow_events_name_the_user_and_the_session() -> R {
    let (p, t) = flow_setup("").await?;
    let admin = t.admin()?;
    let one = log_in(&p, &t, "alice", "one").await?;
    let sid_one = sid_of(&one.access);
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &one.refresh)
        .await?;
    assert_eq!(a.status, 200, "refresh");
    let a = t
        .post_cookie("/auth/logout", "ecosire_auth", &one.access)
        .await?;
    assert_eq!(a.status, 200, "logout");

    let two = log_in(&p, &t, "bob", "two").await?;
    let sid_two = sid_of(&two.access);
    assert_ne!(sid_one, sid_two);
    p.end_browser_session("two").await?;

    let events = admin.events(0).await?.events;
    let only = |kind: AuditKind| {
        let found: Vec<_> = events.iter().filter(|e| e.kind == kind).collect();
        assert_eq!(found.len(), 1, "one {kind:?} in {events:?}");
        found[0].clone()
    };
    for (kind, sub, sid) in [
        (AuditKind::Refresh, "alice", &sid_one),
        (AuditKind::Logout, "alice", &sid_one),
    ] {
        let e = only(kind);
        assert_eq!(
            (e.sub.as_deref(), e.sid.as_deref()),
            (Some(sub), Some(sid.as_str())),
            "{e:?}"
        );
    }
    let logins: Vec<_> = events
        .iter()
        .filter(|e| e.kind == AuditKind::LoginCompleted)
        .map(|e| (e.sub.clone(), e.sid.clone()))
        .collect();
    assert_eq!(
        logins,
        vec![
            (Some("alice".into()), Some(sid_one.clone())),
            (Some("bob".into()), Some(sid_two.clone())),
        ]
    );
    // The provider's logout token names the session (and the user, as Authentik's does).
    let bc = only(AuditKind::BackchannelLogout);
    assert_eq!(bc.sid.as_deref(), Some(sid_two.as_str()), "{bc:?}");
    assert_eq!(bc.sub.as_deref(), Some("bob"), "{bc:?}");
    assert_eq!(bc.count, Some(1), "{bc:?}");
    t.output
        .assert_free_of(&[&one.access, &one.refresh, &two.access, &two.refresh]);
    Ok(())
}
