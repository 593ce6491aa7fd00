//! Issue #4: Prometheus metrics (promtool-clean, each moving with its event) and hot reload
//! (rename, symlink swap, SIGHUP, invalid files, restart-only settings, provider changes).

use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use tokend_e2e::flow::{LoggedIn, at_provider, flow_setup, location, log_in, query, start_login};
use tokend_e2e::{Provider, ProviderOptions, Tokend, TokendConfig};

type R = anyhow::Result<()>;

/// `promtool check metrics` on the text; fails unless promtool is absent and we are not root
/// (CI runs as root and installs it).
fn promtool_check(text: &str) -> R {
    use std::io::Write;
    let child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !tokend_e2e::is_root() => {
            tokend_e2e::skip(
                "promtool check",
                "promtool not installed (bash tests/run installs it)",
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdin"))?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{report}"
    );
    assert!(report.trim().is_empty(), "promtool has remarks:\n{report}");
    Ok(())
}

/// Waits until `tokend_config_reloads_total{result}` reaches `n`.
async fn reloads_reach(t: &Tokend, result: &str, n: f64) -> R {
    let key = format!("tokend_config_reloads_total{{result=\"{result}\"}}");
    eventually(&format!("{n} reloads with result {result}"), || async {
        Ok(t.metrics().await?.get(&key) == n)
    })
    .await
}

/// Polls until `f` is true (at most 10 s).
async fn eventually<F, Fut>(what: &str, mut f: F) -> R
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<bool>>,
{
    for _ in 0..100 {
        if f().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("timed out waiting for {what}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_valid_and_move_with_their_events() -> R {
    let (p, t) = flow_setup("\n[codes]\nttl = \"2s\"\n").await?;
    let m0 = t.metrics().await?;
    promtool_check(&m0.text)?;
    let unix = t.unix("GET", "/metrics", &[], None).await?;
    assert_eq!(unix.status, 200, "metrics on the socket too");
    assert!(String::from_utf8_lossy(&unix.body).contains("tokend_build_info{version="));
    assert_eq!(m0.get("tokend_jwks_keys"), 2.0);
    assert!(m0.get("tokend_jwks_age_seconds") >= 0.0);
    assert!(m0.get("tokend_jwks_fetches_total{result=\"success\"}") >= 1.0);
    assert_eq!(m0.get("tokend_config_last_reload_success"), 1.0);

    // Login through tokend: flow steps, a code issued and redeemed, a session, token requests.
    let LoggedIn {
        code,
        access,
        refresh,
    } = log_in(&p, &t, "alice", "m").await?;
    let m1 = t.metrics().await?;
    assert_eq!(m1.get("tokend_sessions_active"), 1.0);
    for step in ["login", "callback", "exchange"] {
        let key = format!("tokend_login_flow_steps_total{{result=\"success\",step=\"{step}\"}}");
        assert_eq!(m1.delta(&m0, &key), 1.0, "{key}");
    }
    assert_eq!(m1.delta(&m0, "tokend_codes_issued_total"), 1.0);
    assert_eq!(m1.delta(&m0, "tokend_codes_redeemed_total"), 1.0);
    assert_eq!(
        m1.delta(
            &m0,
            "tokend_upstream_request_duration_seconds_count{endpoint=\"token\"}"
        ),
        1.0
    );

    // Verifications: a miss, a hit, a refusal by reason.
    t.verify(&access).await?;
    t.verify(&access).await?;
    t.verify("junk").await?;
    // Codes: replayed, unknown, and one left to expire (outstanding, then expired).
    t.post("/auth/exchange", json!({"code": code}).to_string())
        .await?;
    t.post(
        "/v1/codes/redeem",
        json!({"code": "x".repeat(43)}).to_string(),
    )
    .await?;
    t.post("/v1/codes", json!({"access_token": access}).to_string())
        .await?;
    let m2 = t.metrics().await?;
    assert_eq!(
        m2.delta(
            &m1,
            "tokend_verifications_total{reason=\"\",result=\"valid\"}"
        ),
        3.0
    );
    assert_eq!(
        m2.delta(
            &m1,
            "tokend_verifications_total{reason=\"malformed\",result=\"invalid\"}"
        ),
        1.0
    );
    assert!(m2.delta(&m1, "tokend_verify_cache_hits_total") >= 1.0);
    assert!(m2.delta(&m1, "tokend_verify_cache_misses_total") >= 1.0);
    assert!(m2.delta(&m1, "tokend_verify_duration_seconds_count") >= 3.0);
    assert_eq!(m2.delta(&m1, "tokend_codes_replayed_total"), 1.0);
    assert_eq!(m2.delta(&m1, "tokend_codes_unknown_total"), 1.0);
    assert_eq!(m2.get("tokend_codes_outstanding"), 1.0);

    // Unknown kids: one refetch, the next one held back by min_refetch_interval.
    let claims = p.claims_template("alice").await?;
    for kid in ["nope-1", "nope-2"] {
        let token = p
            .sign("k1", "RS256", json!({"kid": kid}), claims.clone())
            .await?;
        t.verify(&token).await?;
    }
    // Refresh (upstream), logout (revocation), a refused back-channel logout.
    t.post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    t.post_cookie("/auth/logout", "ecosire_auth", &access)
        .await?;
    t.post_with(
        "/auth/backchannel-logout",
        &[("content-type", "application/x-www-form-urlencoded")],
        "logout_token=junk",
    )
    .await?;
    // The code expires (2 s) and is swept (every 5 s): poll to a deadline rather than sleep
    // against a worst case (issue #8).
    let mut m3 = t.metrics().await?;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while m3.delta(&m2, "tokend_codes_expired_total") < 1.0 {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the code was never swept"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        m3 = t.metrics().await?;
    }
    for (key, want) in [
        ("tokend_jwks_unknown_kid_refetches_total", 1.0),
        ("tokend_jwks_unknown_kid_refetches_rate_limited_total", 1.0),
        ("tokend_jwks_fetches_total{result=\"success\"}", 1.0),
        ("tokend_refreshes_total{outcome=\"upstream\"}", 1.0),
        (
            "tokend_login_flow_steps_total{result=\"success\",step=\"refresh\"}",
            1.0,
        ),
        ("tokend_logouts_total", 1.0),
        (
            "tokend_upstream_request_duration_seconds_count{endpoint=\"revocation\"}",
            1.0,
        ),
        ("tokend_backchannel_logouts_total{result=\"failure\"}", 1.0),
        ("tokend_sessions_ended_total{reason=\"logout\"}", 1.0),
    ] {
        assert_eq!(m3.delta(&m2, key), want, "{key}");
    }
    assert_eq!(m3.get("tokend_sessions_active"), 0.0);
    assert_eq!(m3.delta(&m2, "tokend_codes_expired_total"), 1.0);
    assert_eq!(m3.get("tokend_codes_outstanding"), 0.0);
    promtool_check(&m3.text)?;
    // Labels never carry secrets.
    for secret in [&access, &refresh, &code, &p.client_secret] {
        assert!(!m3.text.contains(secret.as_str()));
    }
    Ok(())
}

fn role_of(a: &tokend_e2e::Answer) -> String {
    a.json()["claims"]["role"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_replaced_by_rename_reloads_and_bad_files_change_nothing() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let carol = p.login("carol").await?.access_token;
    assert_eq!(role_of(&t.verify(&carol).await?), "user");
    let m0 = t.metrics().await?;

    cfg.tail = "\n[claims]\ndefault_role = \"member\"\n".into();
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    eventually("the new default role", || async {
        Ok(role_of(&t.verify(&carol).await?) == "member")
    })
    .await?;
    let m1 = t.metrics().await?;
    assert!(
        m1.get("tokend_config_last_reload_timestamp_seconds")
            > m0.get("tokend_config_last_reload_timestamp_seconds")
    );
    assert_eq!(
        m1.delta(&m0, "tokend_config_reloads_total{result=\"success\"}"),
        1.0
    );
    assert_eq!(m1.get("tokend_config_last_reload_success"), 1.0);
    assert_eq!(m1.get("tokend_jwks_keys"), 2.0, "same provider: keys kept");

    // An invalid file: logged precisely, counted, and the running config stays.
    let bad = format!(
        "{}\n[claims]\ndefault_rol = \"x\"\n",
        cfg.to_toml(t.dir.path())
            .replace("[claims]\ndefault_role = \"member\"\n", "")
    );
    t.replace_config(&bad)?;
    reloads_reach(&t, "failure", 1.0).await?; // the failed reload
    let m2 = t.metrics().await?;
    assert_eq!(m2.get("tokend_config_last_reload_success"), 0.0);
    assert_eq!(
        role_of(&t.verify(&carol).await?),
        "member",
        "old config in force"
    );
    let log = t.output.text();
    assert!(log.contains("unknown field `default_rol`"), "{log}");
    assert!(log.contains("previous configuration stays in force"));

    // Restart-only settings are reported and not applied; the rest is.
    let mut next = cfg.clone();
    next.listen_extra = "max_connections = 7\n".into();
    next.tail = "\n[claims]\ndefault_role = \"guest\"\n".into();
    t.replace_config(&next.to_toml(t.dir.path()))?;
    eventually("the guest role", || async {
        Ok(role_of(&t.verify(&carol).await?) == "guest")
    })
    .await?;
    let m3 = t.metrics().await?;
    assert_eq!(m3.get("tokend_config_restart_required"), 1.0);
    assert_eq!(m3.get("tokend_config_last_reload_success"), 1.0);
    assert!(t.output.text().contains("apply only after a restart"));
    t.output.assert_free_of(&[&carol, &p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlink_swap_reloads() -> R {
    // Kubernetes ConfigMap layout: tokend.toml -> ..data/tokend.toml, ..data -> v1.
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.http = true;
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_path_buf();
    for v in ["v1", "v2"] {
        std::fs::create_dir(root.join(v))?;
    }
    std::fs::write(root.join("v1/tokend.toml"), cfg.to_toml(&root))?;
    std::os::unix::fs::symlink("v1", root.join("..data"))?;
    std::os::unix::fs::symlink("..data/tokend.toml", root.join("tokend.toml"))?;
    let t = Tokend::start_at(
        &root.join("tokend.toml"),
        dir,
        Some(root.join("tokend.sock")),
        true,
    )
    .await?;
    t.wait_ready().await?;
    let carol = p.login("carol").await?.access_token;
    assert_eq!(role_of(&t.verify(&carol).await?), "user");

    cfg.tail = "\n[claims]\ndefault_role = \"swapped\"\n".into();
    std::fs::write(root.join("v2/tokend.toml"), cfg.to_toml(&root))?;
    std::os::unix::fs::symlink("v2", root.join("..data_tmp"))?;
    std::fs::rename(root.join("..data_tmp"), root.join("..data"))?;
    eventually("the swapped config", || async {
        Ok(role_of(&t.verify(&carol).await?) == "swapped")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rereads_the_secret_file() -> R {
    // HS256 mode: the client secret is the key. A new secret in the file takes effect on
    // SIGHUP (the config file itself is unchanged, so the watcher does not reload).
    let p = Provider::start().await?;
    let other = Provider::start_with(ProviderOptions {
        client_secret: Some("a-second-secret-for-the-rotation-test-0123456789".into()),
        ..Default::default()
    })
    .await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.algorithms = Some(vec!["HS256".into()]);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let claims = p.claims_template("alice").await?;
    let old_secret_token = p.sign("k1", "HS256", json!({}), claims.clone()).await?;
    let new_secret_token = other.sign("k1", "HS256", json!({}), claims).await?;
    assert_eq!(t.verify(&old_secret_token).await?.status, 200);
    assert_eq!(t.verify(&new_secret_token).await?.reason(), "bad_signature");

    std::fs::write(
        t.dir.path().join("client_secret"),
        format!("{}\n", other.client_secret),
    )?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        t.verify(&new_secret_token).await?.reason(),
        "bad_signature",
        "no reload yet"
    );

    t.signal("HUP")?;
    eventually("the new secret", || async {
        Ok(t.verify(&new_secret_token).await?.status == 200)
    })
    .await?;
    assert_eq!(t.verify(&old_secret_token).await?.reason(), "bad_signature");
    assert!(t.output.text().contains("trigger=\"SIGHUP\"") || t.output.text().contains("SIGHUP"));
    t.output
        .assert_free_of(&[&p.client_secret, &other.client_secret, &old_secret_token]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_change_fetches_keys_before_the_swap() -> R {
    let p1 = Provider::start().await?;
    let p2 = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p1);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let t1 = p1.login("alice").await?.access_token;
    let t2 = p2.login("bob").await?.access_token;
    assert_eq!(t.verify(&t1).await?.status, 200);
    assert_eq!(
        t.verify(&t2).await?.reason(),
        "bad_signature",
        "p2's k1 is not p1's k1"
    );

    // A provider that cannot be reached: the reload fails, the old provider stays.
    let dead = tokend_e2e::free_port()?;
    cfg.issuer = format!("http://127.0.0.1:{dead}/application/o/tokend/");
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    reloads_reach(&t, "failure", 1.0).await?; // the refused reload
    assert_eq!(
        t.verify(&t1).await?.status,
        200,
        "old provider still in force"
    );
    assert!(t.output.text().contains("new provider is not usable"));

    // A reachable one: keys fetched, then swapped; no moment without keys.
    cfg.issuer = p2.issuer.clone();
    cfg.client_secret = Some(p2.client_secret.clone());
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    eventually("the new provider", || async {
        Ok(t.verify(&t2).await?.status == 200)
    })
    .await?;
    // Both test providers name their first key `k1`: the old token now meets the new key and
    // fails on its signature, before any claim is looked at.
    assert_eq!(t.verify(&t1).await?.reason(), "bad_signature");
    assert_eq!(t.get("/readyz", &[]).await?.status, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_changes_flow_settings_for_new_requests() -> R {
    let (p, t) = flow_setup("").await?;
    let a = t.get("/auth/login", &[]).await?;
    assert!(query(&location(&a))["scope"].contains("organization"));
    // A login begun before the reload, a session and an exchange code made before it…
    let before = start_login(&t, "/").await?;
    let LoggedIn { refresh, .. } = log_in(&p, &t, "alice", "pre-reload").await?;
    let tokens = p.login("carol").await?;
    let a = t
        .post(
            "/v1/codes",
            serde_json::json!({"access_token": tokens.access_token}).to_string(),
        )
        .await?;
    let code = a.json()["code"].as_str().unwrap_or("").to_string();
    // Drop the organization scope by rewriting the [flow] section.
    let text = std::fs::read_to_string(t.config_path())?
        .replace("organization_scope = \"organization\"\n", "");
    t.replace_config(&text)?;
    eventually("the new scope list", || async {
        let a = t.get("/auth/login", &[]).await?;
        Ok(!query(&location(&a))["scope"].contains("organization"))
    })
    .await?;
    // …survive it (issue #8: the login was once started after the reload): the login
    // completes, the code redeems, the session is still registered and refreshes.
    let callback = at_provider(&p, &t, &before, "bob", "x").await?;
    let a = t.get(&callback, &[("cookie", &before.cookie)]).await?;
    assert!(
        query(&location(&a)).contains_key("exchange"),
        "{}",
        location(&a)
    );
    let a = t
        .post(
            "/v1/codes/redeem",
            serde_json::json!({"code": code}).to_string(),
        )
        .await?;
    assert_eq!(a.status, 200);
    let a = t.admin_unix("GET", "/v1/admin/sessions", None).await?;
    let subs: Vec<String> = a.json()["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["sub"].as_str().map(str::to_string))
        .collect();
    assert!(subs.contains(&"alice".to_string()), "{subs:?}");
    let a = t
        .post_cookie("/auth/refresh", "ecosire_refresh", &refresh)
        .await?;
    assert_eq!(a.status, 200, "the session's refresh token is still known");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_request_fields_and_no_secrets() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.log_format = Some("json".into());
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let token = p.login("alice").await?.access_token;
    let a = t.verify(&token).await?;
    assert_eq!(a.status, 200);
    assert!(a.headers.contains_key("x-request-id"));
    let a = t
        .post_with(
            "/v1/verify",
            &[
                ("x-request-id", "req-42"),
                ("content-type", "application/json"),
            ],
            json!({"token": "junk"}).to_string(),
        )
        .await?;
    assert_eq!(
        a.headers.get("x-request-id").map(|v| v.as_bytes()),
        Some(&b"req-42"[..])
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let text = t.output.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON line: {l}")))
        .collect();
    let line = lines
        .iter()
        .find(|l| l["request_id"] == "req-42")
        .unwrap_or_else(|| panic!("no request line for req-42 in:\n{text}"));
    assert_eq!(line["path"], "/v1/verify");
    assert_eq!(line["status"], 401);
    assert_eq!(line["reason"], "malformed");
    assert!(line["latency_us"].is_u64());
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "ready: verification keys loaded")
    );
    t.output.assert_free_of(&[&token, &p.client_secret]);
    Ok(())
}

/// Regression (issue #4, found in review): a directory that never stays quiet for the
/// debounce interval must not postpone reloads for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_config_directory_does_not_starve_reloads_issue_4() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let carol = p.login("carol").await?.access_token;
    let noise = t.dir.path().join("noise.log");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let _ = std::fs::write(&noise, n.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    cfg.tail = "\n[claims]\ndefault_role = \"busy\"\n".into();
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    let result = eventually("a reload despite the noise", || async {
        Ok(role_of(&t.verify(&carol).await?) == "busy")
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await?;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_verified_token_cache_when_verification_settings_stay() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let token = p.login("bob").await?.access_token;
    assert_eq!(t.verify(&token).await?.status, 200);

    // A change elsewhere ([sessions]) keeps the cache: the next verification is a hit.
    cfg.tail = "\n[sessions]\nrevocation_ttl = \"40d\"\n".into();
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    reloads_reach(&t, "success", 1.0).await?; // the reload
    let before = t.metrics().await?;
    assert_eq!(t.verify(&token).await?.status, 200);
    let after = t.metrics().await?;
    assert_eq!(after.delta(&before, "tokend_verify_cache_hits_total"), 1.0);
    assert_eq!(
        after.delta(&before, "tokend_verify_cache_misses_total"),
        0.0
    );

    // A change to verification settings starts a fresh cache.
    cfg.verify_extra = "leeway = \"30s\"\n".into();
    t.replace_config(&cfg.to_toml(t.dir.path()))?;
    reloads_reach(&t, "success", 2.0).await?; // the second reload
    let before = t.metrics().await?;
    assert_eq!(t.verify(&token).await?.status, 200);
    let after = t.metrics().await?;
    assert_eq!(
        after.delta(&before, "tokend_verify_cache_misses_total"),
        1.0
    );
    Ok(())
}
