//! `[events]`: the Authentik events poller's settings, its API token's sources
//! (`api_token_file`, or the systemd credential `api_token_credential` in
//! `$CREDENTIALS_DIRECTORY`, read like the client secret) and their validation.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokend_shared::Secret;

use super::secret::read_bounded;
use super::{ConfigError, duration, invalid};

/// `[events]`: poll Authentik's Events API (`/api/v3/events/events/`) into a bounded ring for
/// the admin API. Off without this section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// `false` keeps the section but turns the poller off.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// File holding an Authentik API token (trailing newline ignored); relative to the config
    /// file. Exactly one of this and `api_token_credential`.
    pub api_token_file: Option<PathBuf>,
    /// Name of a systemd credential (`LoadCredential=NAME:…`) holding the token, read from
    /// `$CREDENTIALS_DIRECTORY/NAME`.
    pub api_token_credential: Option<String>,
    /// Time between two polls while Authentik answers.
    #[serde(default = "default_interval", with = "duration")]
    pub interval: Duration,
    /// Longest wait between polls after failures (the wait doubles from `interval` per failure).
    #[serde(default = "default_max_backoff", with = "duration")]
    pub max_backoff: Duration,
    /// Events kept (newest first); older ones are dropped.
    #[serde(default = "default_capacity")]
    pub capacity: usize,
    /// Events asked for per page (Authentik serves at most 100).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// Most pages read in one poll (a burst of more events than this leaves a gap).
    #[serde(default = "default_max_pages")]
    pub max_pages: u32,
    /// The token, read at load from the file or credential; never written back.
    #[serde(skip)]
    pub api_token: Option<Secret>,
}

fn yes() -> bool {
    true
}
fn default_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
fn default_capacity() -> usize {
    1000
}
fn default_page_size() -> u32 {
    100
}
fn default_max_pages() -> u32 {
    20
}

/// Largest ring: each event holds its free-form context, a few KB at most.
const MAX_CAPACITY: usize = 100_000;

impl EventsConfig {
    /// Checks the values and reads the token (`base_dir` resolves a relative file).
    pub(super) fn resolve(
        &mut self,
        base_dir: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<(), ConfigError> {
        if let Some(p) = self.api_token_file.as_mut()
            && p.is_relative()
        {
            *p = base_dir.join(&*p);
        }
        self.validate()?;
        if !self.enabled {
            return Ok(());
        }
        let (key, path) = match (&self.api_token_file, &self.api_token_credential) {
            (Some(file), None) => ("events.api_token_file", file.clone()),
            (None, Some(name)) => {
                let Some(dir) = credentials_dir else {
                    return Err(invalid(
                        "events.api_token_credential",
                        "$CREDENTIALS_DIRECTORY is not set: load the credential in the unit \
                         (LoadCredential=NAME:/path) or use api_token_file",
                    ));
                };
                ("events.api_token_credential", dir.join(name))
            }
            _ => {
                return Err(invalid(
                    "events",
                    "set exactly one of api_token_file and api_token_credential (an Authentik \
                     API token with expiring: false whose user has authentik_events.view_event)",
                ));
            }
        };
        let mut text = read_bounded(&path).map_err(|source| ConfigError::SecretFile {
            key,
            path: path.clone(),
            source,
        })?;
        let trimmed = text.trim_end_matches(['\r', '\n']).len();
        text.truncate(trimmed);
        if text.is_empty() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            // The text itself is never quoted: it is a secret.
            return Err(invalid(
                key,
                format!(
                    "{} does not hold one API token (empty, or whitespace inside)",
                    path.display()
                ),
            ));
        }
        self.api_token = Some(Secret::new(text));
        Ok(())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(name) = &self.api_token_credential
            && (name.is_empty() || name.contains('/') || name == "." || name == "..")
        {
            return Err(invalid(
                "events.api_token_credential",
                "a credential name: not empty, no `/`",
            ));
        }
        if self.interval < Duration::from_secs(1) {
            return Err(invalid("events.interval", "must be at least 1s"));
        }
        if self.max_backoff < self.interval {
            return Err(invalid(
                "events.max_backoff",
                "must be at least events.interval",
            ));
        }
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(invalid(
                "events.capacity",
                format!("must be 1..={MAX_CAPACITY}"),
            ));
        }
        if !(1..=100).contains(&self.page_size) {
            return Err(invalid(
                "events.page_size",
                "must be 1..=100 (Authentik's largest page)",
            ));
        }
        if !(1..=1000).contains(&self.max_pages) {
            return Err(invalid("events.max_pages", "must be 1..=1000"));
        }
        Ok(())
    }

    /// Whether `other` differs in anything the poller uses, the token included.
    pub fn differs(&self, other: &EventsConfig) -> bool {
        serde_json::to_value(self).ok() != serde_json::to_value(other).ok()
            || self.api_token.as_ref().map(Secret::expose)
                != other.api_token.as_ref().map(Secret::expose)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, load};

    #[test]
    fn issue_11_events_token_from_file_or_credential_never_shown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("api-token");
        std::fs::write(&file, "ak-api-token-value\n").expect("write");
        let c = load(
            &format!("{MINIMAL}\n[events]\napi_token_file = {file:?}\n"),
            &[],
        )
        .expect("valid");
        let e = c.events.as_ref().expect("events");
        assert_eq!(
            e.api_token.as_ref().map(|s| s.expose()),
            Some("ak-api-token-value")
        );
        assert_eq!(
            (e.interval.as_secs(), e.capacity, e.page_size),
            (30, 1000, 100)
        );
        assert!(!c.to_redacted_toml().contains("ak-api-token-value"));
        assert!(!format!("{c:?}").contains("ak-api-token-value"));

        std::fs::write(dir.path().join("authentik_api"), "from-credential").expect("write");
        let dir_s = dir.path().to_string_lossy().to_string();
        let c = load(
            &format!("{MINIMAL}\n[events]\napi_token_credential = \"authentik_api\"\n"),
            &[("CREDENTIALS_DIRECTORY", &dir_s)],
        )
        .expect("valid");
        let token = c.events.and_then(|e| e.api_token);
        assert_eq!(token.as_ref().map(|s| s.expose()), Some("from-credential"));

        let err = load(
            &format!("{MINIMAL}\n[events]\napi_token_credential = \"authentik_api\"\n"),
            &[],
        )
        .expect_err("no credentials directory");
        assert!(err.to_string().contains("CREDENTIALS_DIRECTORY"), "{err}");
        let err = load(&format!("{MINIMAL}\n[events]\n"), &[]).expect_err("no token");
        assert!(err.to_string().contains("exactly one"), "{err}");
        let err = load(
            &format!("{MINIMAL}\n[events]\napi_token_file = {file:?}\ninterval = \"100ms\"\n"),
            &[],
        )
        .expect_err("too fast");
        assert!(err.to_string().contains("events.interval"), "{err}");
        // Off: no token needed.
        let c = load(&format!("{MINIMAL}\n[events]\nenabled = false\n"), &[]).expect("off");
        assert!(c.events.is_some_and(|e| !e.enabled));
    }
}
