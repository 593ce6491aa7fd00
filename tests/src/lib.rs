//! End-to-end harness: starts the real `tokend` binary and a real OIDC provider
//! (panva's `oidc-provider`, laid out like Authentik, in `tests/provider/`), and talks to
//! tokend over its Unix socket and its TCP port.
//!
//! `env!("CARGO_BIN_EXE_tokend")` only exists inside the daemon package, so [`tokend_bin`]
//! (and [`tokentop_bin`], the console) builds the binary with cargo (a no-op when it is up to
//! date) and finds it in the target dir. [`tmux`] runs the console in a real terminal.

pub mod flow;
mod metrics;
pub mod nginx;
mod output;
mod process;
mod provider;
pub mod redis_cluster;
pub mod redis_server;
mod request;
pub mod tmux;
mod tokend;

pub use metrics::Metrics;
pub use output::Output;
pub use process::*;
pub use provider::*;
pub use request::{Answer, unix_request};
pub use tokend::*;

use anyhow::Result;
use serde_json::Value;

/// Skips part of a test, loudly: under CI (`CI` set, as `.ci/run` is) a skip is a failure —
/// CI must run everything; elsewhere a `SKIP:` line goes to stderr and, when `E2E_SKIP_LOG`
/// names a file (`tests/run` sets it), to that file, which the test command summarises (the
/// test runner may hide stderr).
pub fn skip(test: &str, why: &str) {
    let line = format!("SKIP: {test}: {why}");
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{line} — but CI is set, and CI must run every test"
    );
    eprintln!("{line}");
    if let Some(path) = std::env::var_os("E2E_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// Whether the tests run as root (as CI does): some checks (socket group, installed tools)
/// are only possible, or only required, then.
pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A TCP port that was free a moment ago, for a listener a test must name before it starts
/// (a redirect URI, a restart on the same address).
///
/// Chosen below the kernel's ephemeral range, never by `bind(0)`: a port from that range can
/// be handed to any outgoing connection (the provider's, tokend's to Redis) between this call
/// and the listener's bind, which then fails with "Address already in use" — seen once in CI
/// (`issue_12_store_changes_wait_for_a_restart`). Below the range only another explicit bind
/// can take it; the start is random so that parallel test processes rarely pick the same one.
pub fn free_port() -> Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const FROM: u16 = 10_000;
    if low > FROM + 1000 {
        let span = u64::from(low - FROM);
        let mut seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        for _ in 0..500 {
            let port = FROM + (seed % span) as u16;
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
            seed = seed.rotate_left(17).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Decodes a JWT's payload without checking anything (for test assertions only).
pub fn jwt_payload(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).unwrap_or("");
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    /// Regression (a CI flake of `issue_12_store_changes_wait_for_a_restart`): the port comes
    /// from below the ephemeral range, where outgoing connections never take it.
    #[test]
    fn issue_8_free_port_is_below_the_ephemeral_range_and_bindable() -> anyhow::Result<()> {
        let low: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")?
            .split_whitespace()
            .next()
            .unwrap_or("32768")
            .parse()?;
        for _ in 0..20 {
            let port = super::free_port()?;
            assert!(port < low, "{port} is in the ephemeral range from {low}");
            std::net::TcpListener::bind(("127.0.0.1", port))?;
        }
        Ok(())
    }
}
