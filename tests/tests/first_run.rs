//! What a newcomer tripped over on a first run (issue #10), through the binary: a missing
//! socket directory said once with the fix, a failed start that leaves no socket file behind,
//! a missing config file that points at the example and `tokend dev`, duration errors with an
//! example, `check-config` printing durations in one unit, an issuer without its trailing
//! slash named as such at run time, and a wrong client secret noticed once it is refused.

use std::path::PathBuf;

use std::time::Duration;

use tokend_e2e::flow::{FRONTEND, login_through_tokend};
use tokend_e2e::{
    Provider, ProviderOptions, Tokend, TokendConfig, check_config, free_port, run_tokend,
    tokend_bin,
};

type R = anyhow::Result<()>;

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// A config that needs no provider (HS256), written into a fresh directory.
fn hs256_config(
    edit: impl FnOnce(&mut TokendConfig),
) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = TokendConfig::hs256("first-run-hs256-secret-0123456789abcdef");
    edit(&mut cfg);
    let path = dir.path().join("tokend.toml");
    std::fs::write(&path, cfg.to_toml(dir.path()))?;
    Ok((dir, path))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_missing_socket_directory_is_said_once_with_the_fix() -> R {
    let scratch = tempfile::tempdir()?;
    let sock = scratch.path().join("run-tokend/tokend.sock");
    let (_dir, path) = hs256_config(|c| c.socket_path = Some(sock.clone()))?;
    let run = run_tokend(&path, &[]).await?;
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_ne!(run.code, 0, "{all}");
    assert_eq!(count(&all, "does not exist"), 1, "said once:\n{all}");
    assert!(all.contains("install -d"), "{all}");
    assert!(all.contains("RuntimeDirectory=tokend"), "{all}");
    // (Only this error's: a JWKS fetch from the unreachable issuer may fail with its own.)
    assert!(
        count(&all, "No such file or directory") <= 1,
        "the OS error at most once:\n{all}"
    );
    assert_eq!(count(&all, &sock.display().to_string()), 1, "{all}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_a_failed_start_leaves_no_socket_file() -> R {
    // The HTTP port is taken: the socket is bound first, then the start fails.
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port();
    let scratch = tempfile::tempdir()?;
    let sock = scratch.path().join("tokend.sock");
    let (_dir, path) = hs256_config(|c| {
        c.socket_path = Some(sock.clone());
        c.http_port = Some(port);
    })?;
    let run = run_tokend(&path, &[]).await?;
    let all = format!("{}{}", run.stdout, run.stderr);
    assert_ne!(run.code, 0, "{all}");
    assert_eq!(
        count(&all, &format!("127.0.0.1:{port}")),
        1,
        "said once:\n{all}"
    );
    // The bind's OS error once. (A JWKS fetch from the unreachable issuer may also have
    // failed with its own OS error before the bind did: that line is not this one.)
    assert_eq!(
        count(&all, "Address already in use (os error 98)"),
        1,
        "the OS error once:\n{all}"
    );
    assert!(!sock.exists(), "the socket file was left behind");
    drop(taken);
    Ok(())
}

#[test]
fn issue_10_missing_config_points_at_the_example_and_dev() -> R {
    let mut cmd = std::process::Command::new(tokend_bin());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TOKEND_") || k.starts_with("AUTHENTIK_") {
            cmd.env_remove(&*k);
        }
    }
    let default_exists = std::path::Path::new("/etc/tokend/tokend.toml").exists();
    if default_exists {
        // The default path is taken on this host; a missing --config file says the same.
        cmd.args(["--config", "/nonexistent-tokend/tokend.toml"]);
    }
    let out = cmd.arg("check-config").output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(stderr.contains("config/tokend.toml"), "{stderr}");
    assert!(stderr.contains("tokend dev"), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
    Ok(())
}

#[test]
fn issue_10_durations_errors_give_an_example_and_check_config_prints_seconds() -> R {
    let (_dir, path) = hs256_config(|c| c.verify_extra = "leeway = \"a minute\"\n".into())?;
    let (code, _, stderr) = check_config(&path)?;
    assert_eq!(code, 2);
    assert!(stderr.contains("expected a duration"), "{stderr}");
    assert!(stderr.contains("\"30s\", \"5m\", \"24h\""), "{stderr}");

    let (_dir, path) = hs256_config(|c| {
        c.verify_extra = "leeway = \"60s\"\n".into();
        c.max_stale = "24h".into();
    })?;
    let (code, stdout, stderr) = check_config(&path)?;
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("leeway = \"60s\""), "{stdout}");
    assert!(stdout.contains("max_stale = \"86400s\""), "{stdout}");
    assert!(
        !stdout.contains("1day") && !stdout.contains("\"1m\""),
        "{stdout}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_issuer_without_trailing_slash_is_named_in_log_readiness_and_verify() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    let configured = p.issuer.trim_end_matches('/').to_string();
    cfg.issuer = configured.clone();
    let t = Tokend::start(&cfg).await?;
    let said = format!(
        "issuer mismatch: configured {configured:?}, provider says {:?} (trailing slash?)",
        p.issuer
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let reason = loop {
        let a = t.get("/readyz", &[]).await?;
        assert_eq!(a.status, 503);
        let reason = a.json()["reason"].as_str().unwrap_or("").to_string();
        if reason.contains("issuer mismatch") {
            break reason;
        }
        anyhow::ensure!(std::time::Instant::now() < deadline, "readiness: {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(reason.contains(&said), "{reason}");
    assert!(
        !reason.contains("Host"),
        "not blamed on the Host header: {reason}"
    );

    let token = p.login("alice").await?.access_token;
    let a = t.verify(&token).await?;
    assert_eq!(
        (a.status, a.reason()),
        (503, "keys_unavailable".to_string())
    );
    let message = a.json()["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains(&said), "{message}");
    assert!(!message.contains("unreachable"), "{message}");

    let log = t.output.text();
    assert!(log.contains(&said), "{log}");
    assert!(
        !log.contains("keeping the last good keys"),
        "no keys were ever loaded:\n{log}"
    );
    t.output.assert_free_of(&[&token, &p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_wrong_client_secret_is_said_once_and_shown_by_readiness() -> R {
    let port = free_port()?;
    let p = Provider::start_with(ProviderOptions {
        redirect_uris: vec![format!("http://127.0.0.1:{port}/auth/callback")],
        ..Default::default()
    })
    .await?;
    let wrong = "wrong-secret-copied-from-staging-0123456789";
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.client_secret = Some(wrong.into());
    cfg.http_port = Some(port);
    cfg.tail = format!(
        "\n[flow]\nredirect_uri = \"http://127.0.0.1:{port}/auth/callback\"\nfrontend_url = \"{FRONTEND}\"\n"
    );
    let t = Tokend::start(&cfg).await?;
    t.wait_ready().await?;
    let ready = t.get("/readyz", &[]).await?.json();
    assert!(
        ready.get("warning").is_none(),
        "nothing refused yet: {ready}"
    );

    for (i, user) in ["alice", "bob"].iter().enumerate() {
        let reached = login_through_tokend(&p, &t, user, "/", &format!("jar{i}")).await?;
        assert_eq!(
            reached,
            format!("{FRONTEND}/auth/login?error=exchange_failed")
        );
    }
    let a = t.get("/readyz", &[]).await?;
    assert_eq!(a.status, 200, "verification still works");
    let warning = a.json()["warning"].as_str().unwrap_or("").to_string();
    assert!(warning.contains("invalid_client"), "{warning}");
    assert!(warning.contains("client_secret"), "{warning}");
    let log = t.output.text();
    assert_eq!(
        count(&log, "refused this client's credentials"),
        1,
        "said once, not per request:\n{log}"
    );
    // And each failed exchange says what the provider answered (issue #8).
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("code exchange failed")
                && l.contains("provider answered an error: invalid_client"))
            .count(),
        2,
        "{log}"
    );
    t.output.assert_free_of(&[wrong, &p.client_secret]);
    Ok(())
}

#[test]
fn issue_10_check_config_warns_about_an_issuer_without_trailing_slash() -> R {
    let (_dir, path) = hs256_config(|c| c.issuer = "http://127.0.0.1:9/application/o/x".into())?;
    let (code, _, stderr) = check_config(&path)?;
    assert_eq!(code, 0, "still valid: {stderr}");
    assert!(stderr.contains("warning: provider.issuer"), "{stderr}");
    assert!(stderr.contains("does not end with `/`"), "{stderr}");
    let (_dir, path) = hs256_config(|_| {})?;
    let (code, _, stderr) = check_config(&path)?;
    assert_eq!(code, 0);
    assert!(!stderr.contains("warning"), "{stderr}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_10_auth_session_without_cookie_says_no_session() -> R {
    let cfg = TokendConfig::hs256("first-run-hs256-secret-0123456789abcdef");
    let t = Tokend::start(&cfg).await?;
    for (method, path) in [("GET", "/auth/session"), ("POST", "/auth/refresh")] {
        let a = if method == "GET" {
            t.get(path, &[]).await?
        } else {
            t.post(path, "").await?
        };
        assert_eq!(
            (a.status, a.reason()),
            (401, "no_session".to_string()),
            "{path}"
        );
        let message = a.json()["message"].as_str().unwrap_or("").to_string();
        assert!(
            message.starts_with("no session: no `ecosire_"),
            "{path}: {message}"
        );
    }
    Ok(())
}
