//! Building and starting the binaries under test: `tokend` and `tokentop` built with the
//! tests' own profile, and `tokend` commands with a clean environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};

/// The workspace root (parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(".."))
}

/// Path of the `tokend` binary, built once per test process with the profile the tests
/// themselves were built with (so `cargo test --release` tests a fresh release binary, not a
/// stale one), or `E2E_TOKEND_BIN` when set.
pub fn tokend_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("E2E_TOKEND_BIN", "tokend", "tokend"))
}

/// Path of the `tokentop` binary (the console, tui/), built like [`tokend_bin`], or
/// `E2E_TOKENTOP_BIN` when set.
pub fn tokentop_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| built_bin("E2E_TOKENTOP_BIN", "tokentop", "tokentop"))
}

/// `$env_var` when set; else builds `bin` of `package` with cargo (a no-op when it is up to
/// date), with the tests' own profile and target dir, and answers its path.
fn built_bin(env_var: &str, package: &str, bin: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    // Test binaries live in <target>/<profile dir>/deps/.
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps layout")
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .expect("target/<profile> layout")
        .to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .args(["--profile", &profile])
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(workspace_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "building {bin} ({profile}) failed");
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// Starts `tokend` with a clean environment (no TOKEND_*/AUTHENTIK_* from the test's own).
pub fn spawn_tokend(config: &Path, args: &[&str]) -> Result<Child> {
    tokend_command(config, args, &[], &[])
        .spawn()
        .context("starting tokend")
}

/// The command that starts `tokend --config <config> <args>` with a clean environment (none of
/// the test's own TOKEND_*, AUTHENTIK_*, CREDENTIALS_DIRECTORY or systemd variables) plus
/// `env`, through `launcher` when one is given (its program and arguments come first).
pub fn tokend_command(
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    launcher: &[&str],
) -> Command {
    let mut cmd = match launcher.split_first() {
        Some((program, launcher_args)) => {
            let mut c = Command::new(program);
            c.args(launcher_args).arg(tokend_bin());
            c
        }
        None => Command::new(tokend_bin()),
    };
    cmd.arg("--config").arg(config).args(args);
    const SYSTEMD_VARS: [&str; 6] = [
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "LISTEN_PID",
        "LISTEN_FDS",
        "LISTEN_FDNAMES",
    ];
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TOKEND_")
            || k.starts_with("AUTHENTIK_")
            || k == "CREDENTIALS_DIRECTORY"
            || SYSTEMD_VARS.contains(&&*k)
        {
            cmd.env_remove(&*k);
        }
    }
    cmd.envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// The answer of a tokend command run to its end: exit code, stdout, stderr.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tokend --config CONFIG ARGS…` to its end (30 s at most), with the tokend environment
/// cleaned as for the daemon.
pub async fn run_tokend(config: &Path, args: &[&str]) -> Result<Finished> {
    let child = tokend_command(config, args, &[], &[]).spawn()?;
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .context("tokend did not finish within 30s")??;
    Ok(Finished {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    })
}

/// The command `tokend dev <args>` (plus `--http 127.0.0.1:0` unless given) with a clean
/// environment and `XDG_RUNTIME_DIR=<runtime_dir>`.
pub fn dev_command(args: &[&str], runtime_dir: &Path) -> Command {
    let mut cmd = Command::new(tokend_bin());
    cmd.arg("dev").args(args);
    if !args.contains(&"--http") {
        cmd.args(["--http", "127.0.0.1:0"]);
    }
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TOKEND_") || k.starts_with("AUTHENTIK_") || k.starts_with("LISTEN_") {
            cmd.env_remove(&*k);
        }
    }
    cmd.env("XDG_RUNTIME_DIR", runtime_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Runs `tokend check-config` on a file; returns (exit code, stdout, stderr).
pub fn check_config(config: &Path) -> Result<(i32, String, String)> {
    let mut cmd = std::process::Command::new(tokend_bin());
    cmd.arg("check-config").arg("--config").arg(config);
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("TOKEND_") || k.starts_with("AUTHENTIK_") {
            cmd.env_remove(&*k);
        }
    }
    let out = cmd.output()?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    ))
}
