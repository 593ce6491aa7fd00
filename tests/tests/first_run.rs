//! What a newcomer tripped over on a first run (issue #10), through the binary: a missing
//! socket directory said once with the fix, a failed start that leaves no socket file behind,
//! a missing config file that points at the example and `tokend dev`, duration errors with an
//! example, and `check-config` printing durations in one unit.

use std::path::PathBuf;

use tokend_e2e::{TokendConfig, check_config, run_tokend, tokend_bin};

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
    assert!(
        count(&all, "os error") <= 1,
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
    assert_eq!(count(&all, "os error"), 1, "the OS error once:\n{all}");
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
