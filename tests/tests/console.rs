//! tokentop, the console (issue #11), as an operator uses it: the real binary in a real
//! terminal (tmux, 100×30) against a real tokend and provider, driven by keys and read from
//! the screen (`capture-pane`). A new login's session appears, a code's TTL counts down, a
//! revoke from the keys makes the session's token stop verifying, and the terminal is
//! restored on `q` and on SIGTERM.

use std::time::Duration;

use tokend_e2e::flow::{flow_setup, log_in, login_through_tokend, query};
use tokend_e2e::tmux::Tmux;
use tokend_e2e::{is_root, jwt_payload, skip, tokentop_bin};

type R = anyhow::Result<()>;

const WAIT: Duration = Duration::from_secs(15);

/// Whether tmux is here; if not, fails as root (tests/run installs it) and skips otherwise.
fn have_tmux(test: &str) -> bool {
    if Tmux::available() {
        return true;
    }
    assert!(
        !is_root(),
        "tmux is missing; tests/run installs it when root"
    );
    skip(
        test,
        "tmux is not installed (tests/run installs it when root)",
    );
    false
}

/// The TTL in seconds at the end of the Codes line naming `sub` (`44s`, `1m00s`).
fn ttl_of(screen: &str, sub: &str) -> Option<i64> {
    let line = screen
        .lines()
        .find(|l| l.contains(" flow ") && l.contains(sub))?;
    let last = line
        .trim_end_matches(['│', ' '])
        .split_whitespace()
        .last()?;
    let t = last.strip_suffix('s')?;
    match t.split_once('m') {
        Some((m, s)) => Some(m.parse::<i64>().ok()? * 60 + s.parse::<i64>().ok()?),
        None => t.parse().ok(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_tokentop_shows_a_login_counts_down_a_code_and_revokes_from_the_keys() -> R {
    let name = "issue_11_tokentop_shows_a_login_counts_down_a_code_and_revokes_from_the_keys";
    if !have_tmux(name) {
        return Ok(());
    }
    let (p, t) = flow_setup("").await?;
    // Found from tokend's own configuration file: tokend-admin.sock beside listen.socket.
    let config = t.config_path();
    let top = Tmux::start(
        tokentop_bin(),
        &["--config", &config.to_string_lossy()],
        100,
        30,
    )?;
    let admin = t.admin_socket.clone().expect("admin socket");
    let connected = format!("● connected to {}", admin.display());
    top.wait_for("connected", WAIT, |s| s.contains(&connected))
        .await?;
    top.send(&["2"])?;
    top.wait_for("an empty Sessions tab", WAIT, |s| {
        s.contains("no live sessions")
    })
    .await?;

    // A new login appears on the Sessions tab.
    let alice = log_in(&p, &t, "alice", "console").await?;
    let sid = jwt_payload(&alice.access)["sid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(sid.len() >= 8, "the provider gives sessions a sid");
    let screen = top
        .wait_for("alice's session", WAIT, |s| s.contains("alice@"))
        .await?;
    assert!(screen.contains("Sessions 1/1"), "{screen}");
    assert_eq!(t.verify(&alice.access).await?.status, 200);

    // Revoke it from the keys: filter by its sid, r, y.
    top.send(&["/", &sid[..8], "Enter"])?;
    top.wait_for("the filter", WAIT, |s| s.contains("filter \""))
        .await?;
    top.send(&["Enter"])?;
    top.wait_for("the session's details", WAIT, |s| {
        s.contains("refresh until")
    })
    .await?;
    top.send(&["r"])?;
    top.wait_for("the question", WAIT, |s| s.contains("y revoke"))
        .await?;
    top.send(&["y"])?;
    let screen = top
        .wait_for("the revoke's answer", WAIT, |s| {
            s.contains("revoked session")
        })
        .await?;
    assert!(screen.contains("1 session ended"), "{screen}");
    let a = t.verify(&alice.access).await?;
    assert_eq!((a.status, a.reason()), (401, "revoked_by_admin".into()));
    top.wait_for("the session gone", WAIT, |s| {
        s.contains("no live sessions") || s.contains("no session matches")
    })
    .await?;

    // A code's TTL counts down on the Codes tab (and the code itself is never shown).
    let front = login_through_tokend(&p, &t, "bob", "/", "codes").await?;
    let code = query(&front).get("exchange").cloned().unwrap_or_default();
    assert!(!code.is_empty(), "{front}");
    top.send(&["Escape", "3"])?;
    let first = top
        .wait_for("bob's code", WAIT, |s| ttl_of(s, "bob").is_some())
        .await?;
    let before = ttl_of(&first, "bob").unwrap_or(0);
    let since = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // A smaller number (waiting longer only if the console was slow to redraw), and one that
    // went down with the clock: not faster than time passed.
    let second = top
        .wait_for("a smaller TTL", WAIT, |s| {
            ttl_of(s, "bob").is_some_and(|t| t < before)
        })
        .await?;
    let after = ttl_of(&second, "bob").unwrap_or(i64::MAX);
    let elapsed = since.elapsed().as_secs() as i64;
    assert!(
        after < before && before - after <= elapsed + 2,
        "TTL {before}s then {after}s after {elapsed}s:\n{first}\n{second}"
    );
    assert!(!first.contains(&code) && !second.contains(&code));

    // The Events tab: tokend's audit (the login and the operator's revoke, live), and
    // Authentik's log, which this tokend does not poll (404 from the daemon).
    top.send(&["4"])?;
    let screen = top
        .wait_for("the audit events", WAIT, |s| s.contains("admin_revoke"))
        .await?;
    assert!(screen.contains("login_completed"), "{screen}");
    top.send(&["e"])?;
    top.wait_for("Authentik not configured", WAIT, |s| {
        s.contains("Authentik events") && s.contains("not configured")
    })
    .await?;

    // q quits and the terminal is back: normal screen, canonical mode and echo.
    top.send(&["q"])?;
    let screen = top
        .wait_for("tokentop's exit and stty's report", WAIT, |s| {
            s.contains("exited ") && s.contains("icanon")
        })
        .await?;
    assert!(screen.contains("exited 0"), "{screen}");
    assert!(
        screen.contains(" icanon") && screen.contains(" echo "),
        "{screen}"
    );
    assert_eq!(top.pane("#{alternate_on}")?, "0");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_11_tokentop_restores_the_terminal_on_sigterm_and_says_when_it_reconnects() -> R {
    let name = "issue_11_tokentop_restores_the_terminal_on_sigterm_and_says_when_it_reconnects";
    if !have_tmux(name) {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let missing = dir.path().join("nobody-here.sock");
    let top = Tmux::start(
        tokentop_bin(),
        &["--socket", &missing.to_string_lossy()],
        80,
        24,
    )?;
    let screen = top
        .wait_for("the reconnect status", WAIT, |s| {
            s.contains("reconnecting in") && s.contains("(attempt 2)")
        })
        .await?;
    assert!(screen.contains("cannot connect to"), "{screen}");
    assert_eq!(top.pane("#{alternate_on}")?, "1");

    // The pane runs `sh -c 'tokentop …; …'`: tokentop is the shell's child.
    let shell = top.pane("#{pane_pid}")?;
    let out = std::process::Command::new("ps")
        .args(["-o", "pid=", "--ppid", &shell])
        .output()?;
    let pid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!pid.is_empty(), "no child of {shell}");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(status.success());
    let screen = top
        .wait_for("tokentop's exit and stty's report", WAIT, |s| {
            s.contains("exited ") && s.contains("icanon")
        })
        .await?;
    assert!(screen.contains("exited 0"), "{screen}");
    assert!(
        screen.contains(" icanon") && screen.contains(" echo "),
        "{screen}"
    );
    assert_eq!(top.pane("#{alternate_on}")?, "0");
    Ok(())
}
