//! A child process's collected stdout and stderr, and the scans for secrets in it.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

/// Collected stdout+stderr of a child process.
#[derive(Clone, Default)]
pub struct Output(Arc<Mutex<String>>);

impl Output {
    pub fn text(&self) -> String {
        self.0.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub(crate) fn capture(
        &self,
        stream: impl AsyncRead + Unpin + Send + 'static,
        echo: &'static str,
    ) {
        let out = self.0.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if std::env::var_os("E2E_ECHO").is_some() {
                    eprintln!("[{echo}] {line}");
                }
                if let Ok(mut s) = out.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
    }

    /// Fails if any of `secrets` (tokens, codes, client secrets) appears in the output.
    pub fn assert_free_of(&self, secrets: &[&str]) {
        let text = self.text();
        assert!(!text.is_empty(), "no output captured to scan");
        for s in secrets {
            assert!(s.len() >= 8, "secret too short to scan for meaningfully");
            // A token's signature part alone would be enough to leak; scan for it too.
            let parts: Vec<&str> = s.split('.').collect();
            assert!(
                !text.contains(s),
                "tokend output contains a secret:\n{text}"
            );
            if parts.len() == 3 && parts[2].len() >= 16 {
                assert!(
                    !text.contains(parts[2]),
                    "tokend output contains a token signature:\n{text}"
                );
            }
        }
    }
}
