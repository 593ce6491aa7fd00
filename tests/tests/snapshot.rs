//! Issue #12: in memory mode a restart forgets nothing that keeps a token refused — logouts,
//! back-channel logouts, an operator's revocations (by sid and by sub), seen logout-token
//! `jti`s, ended refresh tokens — nor the live sessions (without their tokens): the sessions
//! snapshot in the state directory. Through the real binary, the real provider, SIGTERM and
//! SIGKILL, and a restart on the same state directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokend_e2e::flow::{LoggedIn, cookie_value, flow_config, log_in, set_cookies};
use tokend_e2e::{Tokend, TokendConfig, jwt_payload, now};
use tokend_shared::SessionQuery;

type R = anyhow::Result<()>;

fn sid_of(token: &str) -> String {
    jwt_payload(token)["sid"].as_str().unwrap_or("").to_string()
}

/// A state directory as systemd's `StateDirectory=` makes it (0700).
fn state_dir() -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(dir)
}

/// Fails if the snapshot file holds any of `secrets` (or a token's signature alone).
fn assert_file_free_of(path: &Path, secrets: &[&str]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    for s in secrets {
        assert!(s.len() >= 8, "secret too short to scan for");
        assert!(!text.contains(s), "the snapshot holds a secret:\n{text}");
        if let Some(sig) = s.split('.').nth(2).filter(|p| p.len() >= 16) {
            assert!(!text.contains(sig), "the snapshot holds a token signature");
        }
    }
    Ok(())
}

/// `(status, reason)` of a verification.
async fn verdict(t: &Tokend, token: &str) -> anyhow::Result<(u16, String)> {
    let a = t.verify(token).await?;
    Ok((
        a.status,
        if a.status == 200 {
            String::new()
        } else {
            a.reason()
        },
    ))
}

/// Every token answers as `expected`.
async fn check(t: &Tokend, expected: &[(&String, (u16, &str))]) -> R {
    for (token, (status, reason)) in expected {
        assert_eq!(verdict(t, token).await?, (*status, reason.to_string()));
    }
    Ok(())
}

/// Logs out (`/auth/logout`), back-channel logs out, revokes by sid and by sub as an operator,
/// sees a logout token; SIGTERM; restart on the same state directory: every token answers as
/// before, the logout token is still a replay, ended refresh tokens are refused without
/// asking the provider, the live session refreshes, and neither the file nor the output holds
/// a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_revocations_survive_a_restart() -> R {
    let (p, mut cfg) = flow_config(None, "", "").await?;
    let state = state_dir()?;
    // The default place: `snapshot.json` beside the JWKS disk cache.
    cfg.cache_file = Some(state.path().join("jwks.json"));
    let file = state.path().join("snapshot.json");
    let mut t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;

    let out = log_in(&p, &t, "alice", "out").await?;
    let bc = log_in(&p, &t, "alice", "bc").await?;
    let by_sid = log_in(&p, &t, "bob", "by-sid").await?;
    let by_sub = log_in(&p, &t, "carol", "by-sub").await?;
    let live = log_in(&p, &t, "dave", "live").await?;
    let a = t
        .post_cookie("/auth/logout", "ecosire_auth", &out.access)
        .await?;
    assert_eq!(a.status, 200);
    let sent = p.end_session("bc").await?;
    assert!(
        sent["backchannel"]
            .as_array()
            .is_some_and(|b| b.iter().any(|d| d["ok"] == true)),
        "{sent}"
    );
    let admin = t.admin()?;
    assert_eq!(
        admin.revoke_session(&sid_of(&by_sid.access)).await?.ended,
        1
    );
    assert_eq!(admin.revoke_user("carol").await?.ended, 1);
    let n = now();
    let logout_token = p
        .sign(
            "k1",
            "RS256",
            json!({"typ": "logout+jwt"}),
            json!({
                "iss": p.issuer, "aud": p.client_id, "iat": n, "exp": n + 600,
                "jti": format!("snapshot-{n}"), "sid": "some-other-sid",
                "events": {"http://schemas.openid.net/event/backchannel-logout": {}}
            }),
        )
        .await?;
    assert_eq!(t.backchannel_logout(&logout_token).await?.status, 200);

    let expected = [
        (&out.access, (401, "token_revoked")),
        (&bc.access, (401, "token_revoked")),
        (&by_sid.access, (401, "revoked_by_admin")),
        (&by_sub.access, (401, "revoked_by_admin")),
        (&live.access, (200, "")),
    ];
    check(&t, &expected).await?;

    assert!(t.terminate().await?.success());
    assert!(file.exists(), "written on shutdown");
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let all: Vec<&LoggedIn> = vec![&out, &bc, &by_sid, &by_sub, &live];
    let mut secrets: Vec<&str> = vec![&logout_token, &p.client_secret];
    for l in &all {
        secrets.extend([l.access.as_str(), l.refresh.as_str(), l.code.as_str()]);
    }
    assert_file_free_of(&file, &secrets)?;
    let doc: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    assert_eq!(doc["format"], "tokend-sessions-snapshot");
    assert_eq!(
        (&doc["issuer"], &doc["client_id"]),
        (&json!(p.issuer), &json!(p.client_id))
    );

    // Restart on the same state directory.
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    check(&t, &expected).await?;
    let a = t.backchannel_logout(&logout_token).await?;
    assert_eq!(a.status, 400, "a replay after the restart too");
    assert!(
        a.json()["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("jti replayed")),
        "{:?}",
        a.body
    );
    // The back-channel-logged-out session's refresh token (alive at the provider) is refused
    // without asking it.
    let grants = p.stats().await?["refresh_grants"].as_u64().unwrap_or(0);
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &bc.refresh)
        .await?;
    assert_eq!((a.status, a.reason()), (401, "no_session".into()));
    assert_eq!(
        p.stats().await?["refresh_grants"].as_u64().unwrap_or(0),
        grants,
        "not sent upstream"
    );
    // The live session came back (without its tokens): listed, and its browser refreshes.
    let listed = admin_sessions(&t).await?;
    assert_eq!(listed, vec![sid_of(&live.access)]);
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &live.refresh)
        .await?;
    assert_eq!(a.status, 200, "{:?}", a.body);
    let refreshed = cookie_value(&set_cookies(&a), "ecosire_auth").unwrap_or_default();
    assert_eq!(verdict(&t, &refreshed).await?.0, 200);
    let m = t.metrics().await?;
    assert_eq!(m.get("tokend_snapshot_loads_total{result=\"loaded\"}"), 1.0);
    // Logout, back-channel logout, by sid, and the logout token's other sid.
    assert_eq!(
        m.get("tokend_snapshot_loaded_entries{kind=\"revoked_sid\"}"),
        4.0
    );
    assert_eq!(
        m.get("tokend_snapshot_loaded_entries{kind=\"revoked_sub\"}"),
        1.0
    );
    assert_eq!(
        m.get("tokend_snapshot_loaded_entries{kind=\"session\"}"),
        1.0
    );
    assert!(t.output.text().contains("restored the sessions snapshot"));
    secrets.push(&refreshed);
    t.output.assert_free_of(&secrets);
    Ok(())
}

async fn admin_sessions(t: &Tokend) -> anyhow::Result<Vec<String>> {
    let page = t.admin()?.sessions(&SessionQuery::default()).await?;
    Ok(page.sessions.iter().filter_map(|s| s.sid.clone()).collect())
}

/// A tokend needing no provider (HS256) whose snapshot is `file`, written every second.
fn hs256_with(file: &Path) -> TokendConfig {
    let mut cfg = TokendConfig::hs256("snapshot-test-secret-0123456789abcdef");
    cfg.tail = format!(
        "\n[sessions]\nsnapshot_file = {:?}\nsnapshot_interval = \"1s\"\n",
        file
    );
    cfg
}

/// An operator's revocation reaches the file within the interval, without a shutdown: after
/// SIGKILL the restarted tokend still holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_the_periodic_write_survives_a_kill() -> R {
    let state = state_dir()?;
    let file = state.path().join("state.json");
    let cfg = hs256_with(&file);
    let t = Tokend::start(&cfg).await?;
    t.admin()?.revoke_user("erin").await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&file).is_ok_and(|s| s.contains("\"erin\"")) {
        anyhow::ensure!(std::time::Instant::now() < deadline, "not written in 10 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.signal("KILL")?;
    drop(t);
    let t = Tokend::start(&cfg).await?;
    let m = t.metrics().await?;
    assert_eq!(
        m.get("tokend_snapshot_loaded_entries{kind=\"revoked_sub\"}"),
        1.0
    );
    assert!(
        m.get("tokend_snapshot_writes_total{result=\"ok\"}") == 0.0,
        "nothing new yet"
    );
    Ok(())
}

/// The files in `dir` named `<name>.corrupt-…`.
fn moved_aside(dir: &Path, name: &str) -> anyhow::Result<Vec<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{name}.corrupt-")))
        })
        .collect())
}

/// A corrupt, a foreign and a future snapshot are each refused with a message naming the file
/// and where it went: moved aside (kept for the operator), counted, and tokend starts and
/// serves — then writes a fresh snapshot of its own on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_bad_snapshot_is_moved_aside_and_tokend_starts() -> R {
    let state = state_dir()?;
    let file = state.path().join("state.json");
    let cfg = hs256_with(&file);
    // A good file of this tokend to spoil.
    let mut t = Tokend::start(&cfg).await?;
    t.admin()?.revoke_user("frank").await?;
    assert!(t.terminate().await?.success());
    let good: Value = serde_json::from_slice(&std::fs::read(&file)?)?;

    let text = good.to_string();
    let mut foreign = good.clone();
    foreign["issuer"] = json!("https://elsewhere.example/application/o/x/");
    let mut future = good.clone();
    future["version"] = json!(7);
    let cases = [
        (
            text[..text.len() / 2].to_string(),
            "is corrupt or truncated",
        ),
        ("\u{1}\u{2}garbage".to_string(), "is corrupt or truncated"),
        (foreign.to_string(), "was written for issuer"),
        (future.to_string(), "was written by a newer tokend"),
    ];
    for (i, (content, message)) in cases.iter().enumerate() {
        std::fs::write(&file, content)?;
        let before = moved_aside(state.path(), "state.json")?.len();
        let mut t = Tokend::start(&cfg).await?;
        t.wait_ready().await?;
        let out = t.output.text();
        assert!(
            out.contains(message) && out.contains(&*file.to_string_lossy()),
            "case {i}: {message} naming the file, in:\n{out}"
        );
        assert!(out.contains("moved aside to"), "{out}");
        let aside = moved_aside(state.path(), "state.json")?;
        assert_eq!(aside.len(), before + 1, "case {i}");
        let m = t.metrics().await?;
        assert_eq!(
            m.get("tokend_snapshot_loads_total{result=\"refused\"}"),
            1.0
        );
        assert!(t.terminate().await?.success());
        let fresh: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
        assert_eq!(
            fresh["version"], 1,
            "case {i}: a fresh snapshot on shutdown"
        );
    }
    Ok(())
}

/// The snapshot's file and interval apply at the next start: a reload that changes them keeps
/// the running ones and says so (log, `tokend_config_restart_required`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_12_a_reload_keeps_the_running_snapshot_file() -> R {
    let state = state_dir()?;
    let (first, second) = (state.path().join("a.json"), state.path().join("b.json"));
    let cfg = hs256_with(&first);
    let mut t = Tokend::start(&cfg).await?;
    t.replace_config(&hs256_with(&second).to_toml(t.dir.path()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while t.metrics().await?.get("tokend_config_restart_required") != 1.0 {
        anyhow::ensure!(std::time::Instant::now() < deadline, "reload not seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = t.output.text();
    assert!(
        log.lines()
            .any(|l| l.contains("apply only after a restart") && l.contains("sessions.snapshot")),
        "{log}"
    );
    t.admin()?.revoke_user("grace").await?;
    assert!(t.terminate().await?.success());
    assert!(std::fs::read_to_string(&first)?.contains("\"grace\""));
    assert!(!second.exists());
    Ok(())
}
