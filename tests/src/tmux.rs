//! A program in a detached tmux session of a fixed size, on a tmux server of its own: keys in
//! (`send-keys`), the screen out (`capture-pane -p`). For the console's end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A tmux server with one session running a program; killed on drop.
pub struct Tmux {
    /// The server's socket (`tmux -S`), in `_dir`.
    socket: PathBuf,
    /// Holds the socket's directory.
    _dir: tempfile::TempDir,
}

const SESSION: &str = "e2e";

impl Tmux {
    /// Whether tmux is installed.
    pub fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Runs `program args…` in a `width`×`height` session. When the program ends, the pane
    /// shows `exited <status>` and the terminal's `stty` settings, and stays open.
    pub fn start(program: &Path, args: &[&str], width: u16, height: u16) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let socket = dir.path().join("tmux.sock");
        let mut line = shell_quote(&program.to_string_lossy());
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        let script = format!("{line}; echo \"exited $?\"; stty -a; sleep 600");
        let t = Self { socket, _dir: dir };
        t.tmux(&[
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sh",
            "-c",
            &script,
        ])?;
        Ok(t)
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .env("TERM", "xterm-256color")
            .env_remove("TMUX")
            .output()
            .context("running tmux")?;
        if !out.status.success() {
            bail!(
                "tmux {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `send-keys`: each argument is a key name (`Enter`, `Escape`, `Down`) or literal text.
    pub fn send(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["send-keys", "-t", SESSION];
        args.extend_from_slice(keys);
        self.tmux(&args).map(drop)
    }

    /// The visible screen, as text.
    pub fn capture(&self) -> Result<String> {
        self.tmux(&["capture-pane", "-p", "-t", SESSION])
    }

    /// A `#{…}` format of the pane (e.g. `pane_pid`, `alternate_on`).
    pub fn pane(&self, format: &str) -> Result<String> {
        Ok(self
            .tmux(&["display-message", "-p", "-t", SESSION, format])?
            .trim()
            .to_string())
    }

    /// Captures until `pred` holds (every 100 ms, up to `timeout`); the last screen either way
    /// is in the error.
    pub async fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let screen = self.capture()?;
            if pred(&screen) {
                return Ok(screen);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("timed out waiting for {what}; the screen:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}
