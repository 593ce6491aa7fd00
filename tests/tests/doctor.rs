//! `tokend doctor` through the binary against the test provider (issue #10): a good
//! deployment passes every check (text and `--json`), and each broken one — wrong client
//! secret, issuer without its trailing slash, unreachable internal URL, a provider whose clock
//! is off — fails exactly its check, with the fix, and a non-zero exit status. The client
//! secret never appears in doctor's output.

use std::path::PathBuf;

use serde_json::Value;
use tokend_e2e::{Finished, Provider, ProviderOptions, TokendConfig, free_port, run_tokend};

type R = anyhow::Result<()>;

/// Every check doctor runs on a full config, in order.
const CHECKS: [&str; 11] = [
    "config",
    "discovery",
    "issuer",
    "public_issuer",
    "jwks",
    "client_secret",
    "clock",
    "socket_directory",
    "socket_group",
    "redirect_uri",
    "post_logout_redirect_uri",
];

/// Writes `cfg` (with a login flow) into a fresh directory; returns it and the file.
fn write_config(cfg: &TokendConfig) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    let mut cfg = cfg.clone();
    cfg.tail = "\n[flow]\nredirect_uri = \"http://127.0.0.1:3000/api/auth/callback\"\n\
                frontend_url = \"http://127.0.0.1:3000\"\n\
                post_logout_redirect_uri = \"http://127.0.0.1:3000/\"\n"
        .to_string();
    let path = dir.path().join("tokend.toml");
    std::fs::write(&path, cfg.to_toml(dir.path()))?;
    Ok((dir, path))
}

/// `tokend doctor --json` on `cfg`: the run and its checks by name.
async fn doctor_json(cfg: &TokendConfig) -> anyhow::Result<(Finished, Vec<Value>)> {
    let (_dir, path) = write_config(cfg)?;
    let run = run_tokend(&path, &["doctor", "--json"]).await?;
    let checks: Vec<Value> = serde_json::from_str(&run.stdout)
        .map_err(|e| anyhow::anyhow!("--json output is not JSON ({e}):\n{}", run.stdout))?;
    Ok((run, checks))
}

fn check<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {checks:#?}"))
}

/// Only `failing` failed, and it says `detail` and `fix`.
fn only_failure(run: &Finished, checks: &[Value], failing: &str, detail: &str, fix: &str) {
    assert_eq!(run.code, 1, "a failed check exits 1: {checks:#?}");
    for c in checks {
        let name = c["check"].as_str().unwrap_or("");
        assert_eq!(c["ok"] == true, name != failing, "{c:#}");
    }
    let c = check(checks, failing);
    let d = c["detail"].as_str().unwrap_or("");
    let f = c["fix"].as_str().unwrap_or("");
    assert!(d.contains(detail), "{failing} detail lacks {detail:?}: {d}");
    assert!(f.contains(fix), "{failing} fix lacks {fix:?}: {f}");
}

fn assert_secret_free(run: &Finished, secrets: &[&str]) {
    for s in secrets {
        assert!(
            !run.stdout.contains(s) && !run.stderr.contains(s),
            "doctor printed a client secret:\n{}{}",
            run.stdout,
            run.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_deployment_passes_every_check() -> R {
    let p = Provider::start().await?;
    let cfg = TokendConfig::for_provider(&p);
    let (_dir, path) = write_config(&cfg)?;

    let text = run_tokend(&path, &["doctor"]).await?;
    assert_eq!(text.code, 0, "{}{}", text.stdout, text.stderr);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), CHECKS.len() + 1, "{}", text.stdout);
    for (line, name) in lines.iter().zip(CHECKS) {
        assert!(line.starts_with(&format!("✓ {name} ")), "{line}");
    }
    assert_eq!(
        lines.last().copied(),
        Some(format!("doctor: all {} checks passed", CHECKS.len()).as_str())
    );
    assert!(!text.stdout.contains('✗'));

    let (json, checks) = doctor_json(&cfg).await?;
    assert_eq!(json.code, 0);
    let names: Vec<&str> = checks.iter().filter_map(|c| c["check"].as_str()).collect();
    assert_eq!(names, CHECKS);
    for c in &checks {
        assert_eq!(c["ok"], true, "{c:#}");
        assert!(c["detail"].as_str().is_some_and(|d| !d.is_empty()), "{c:#}");
        assert_eq!(c["fix"], Value::Null, "{c:#}");
    }
    assert!(
        check(&checks, "client_secret")["detail"]
            .as_str()
            .unwrap_or("")
            .contains("accepted"),
        "the secret was really tried"
    );
    assert_secret_free(&text, &[&p.client_secret]);
    assert_secret_free(&json, &[&p.client_secret]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_deployment_fails_its_check_with_the_fix() -> R {
    let p = Provider::start().await?;
    let good = TokendConfig::for_provider(&p);

    // A secret copied from another environment: the provider refuses the client.
    let wrong = "wrong-secret-from-staging-0123456789";
    let mut cfg = good.clone();
    cfg.client_secret = Some(wrong.into());
    let (run, checks) = doctor_json(&cfg).await?;
    only_failure(
        &run,
        &checks,
        "client_secret",
        "invalid_client",
        "does not match",
    );
    assert_secret_free(&run, &[wrong, &p.client_secret]);

    // The issuer without its trailing slash.
    let mut cfg = good.clone();
    cfg.issuer = p.issuer.trim_end_matches('/').to_string();
    let (run, checks) = doctor_json(&cfg).await?;
    only_failure(
        &run,
        &checks,
        "issuer",
        "(trailing slash?)",
        &format!("provider.issuer = {:?}", p.issuer),
    );

    // An internal URL nothing listens on: only discovery (and the local checks) can run.
    let mut cfg = good.clone();
    cfg.internal_url = Some(format!("http://127.0.0.1:{}", free_port()?));
    let (run, checks) = doctor_json(&cfg).await?;
    assert_eq!(run.code, 1);
    let c = check(&checks, "discovery");
    assert_eq!(c["ok"], false, "{c:#}");
    assert!(
        c["fix"].as_str().unwrap_or("").contains("IPAddressAllow="),
        "{c:#}"
    );
    for name in ["issuer", "jwks", "client_secret", "clock"] {
        assert!(
            checks.iter().all(|c| c["check"] != name),
            "{name} needs discovery"
        );
    }
    for name in ["socket_directory", "socket_group", "redirect_uri"] {
        assert_eq!(check(&checks, name)["ok"], true);
    }
    let text = run_tokend(&write_config(&cfg)?.1, &["doctor"]).await?;
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains("✗ discovery"), "{}", text.stdout);
    assert!(text.stdout.contains("fix: "), "{}", text.stdout);

    // A provider without a signing key: `{}` as JWKS, tokens signed HS256 with the secret.
    p.jwks_mode("empty").await?;
    let (run, checks) = doctor_json(&good).await?;
    only_failure(&run, &checks, "jwks", "no signing keys", "[\"HS256\"]");
    let mut hs = good.clone();
    hs.algorithms = Some(vec!["HS256".into()]);
    let (run, checks) = doctor_json(&hs).await?;
    assert_eq!(run.code, 0, "HS256 mode: {checks:#?}");
    assert!(
        check(&checks, "jwks")["detail"]
            .as_str()
            .unwrap_or("")
            .contains("HS256 mode"),
        "{checks:#?}"
    );
    p.jwks_mode("normal").await?;

    // A provider whose clock is an hour ahead.
    p.date_skew(3600).await?;
    let (run, checks) = doctor_json(&good).await?;
    only_failure(&run, &checks, "clock", "ahead of", "synchronise");
    p.date_skew(-3600).await?;
    let (run, checks) = doctor_json(&good).await?;
    only_failure(&run, &checks, "clock", "behind", "synchronise");
    p.date_skew(0).await?;
    let (run, _) = doctor_json(&good).await?;
    assert_eq!(run.code, 0, "{}", run.stdout);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_socket_directory_and_invalid_config_are_reported() -> R {
    let p = Provider::start().await?;
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.socket_path = Some(PathBuf::from("/nonexistent-tokend-doctor/tokend.sock"));
    let (run, checks) = doctor_json(&cfg).await?;
    only_failure(
        &run,
        &checks,
        "socket_directory",
        "does not exist",
        "RuntimeDirectory=",
    );

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("tokend.toml");
    std::fs::write(&path, "[provider]\nissuer = 3\n")?;
    let run = run_tokend(&path, &["doctor"]).await?;
    assert_eq!(run.code, 1);
    assert!(run.stdout.starts_with("✗ config "), "{}", run.stdout);
    assert!(run.stdout.contains("fix: "), "{}", run.stdout);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_behind_an_internal_url_passes_with_the_public_issuer() -> R {
    // Authentik behind TLS at https://auth.test, reached by tokend at its plain-HTTP address.
    let p = Provider::start_with(ProviderOptions {
        public_host: Some("auth.test".into()),
        public_scheme: Some("https".into()),
        ..Default::default()
    })
    .await?;
    assert!(p.issuer.starts_with("https://auth.test/"), "{}", p.issuer);
    let mut cfg = TokendConfig::for_provider(&p);
    cfg.internal_url = Some(format!("http://127.0.0.1:{}", p.port));
    let (run, checks) = doctor_json(&cfg).await?;
    assert_eq!(run.code, 0, "{checks:#?}");
    let detail = check(&checks, "public_issuer")["detail"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        detail.contains("through internal_url") && detail.contains("https://auth.test"),
        "{detail}"
    );
    assert!(
        check(&checks, "discovery")["detail"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("http://127.0.0.1:{}/", p.port)),
        "discovery went to the internal URL: {checks:#?}"
    );
    assert_secret_free(&run, &[&p.client_secret]);
    Ok(())
}
